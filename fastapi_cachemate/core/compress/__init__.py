"""The seed's compressors (``ZlibCompressManager``), kept so that imports of them keep working.

Entries are compressed by the native core (zstd, chosen by ``compression_mode`` and
``compression_min_size_bytes``): a compressor passed to ``CacheSetup.setup(compress_manager=
...)`` is kept (``CacheSetup.compress_manager()`` returns it) and not used for entries.
"""
