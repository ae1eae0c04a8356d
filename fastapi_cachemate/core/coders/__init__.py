"""The seed's value coders (``OrjsonCoderManager``), kept so that imports of them keep working.

Entries are written by the native core (MessagePack + zstd, docs/entry-format.md): a coder
passed to ``CacheSetup.setup(coder_manager=...)`` is kept (``CacheSetup.coder_manager()``
returns it) and not used for entries.
"""
