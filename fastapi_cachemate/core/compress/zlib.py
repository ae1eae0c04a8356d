"""ZlibCompressManager: the seed's zlib compressor (level 5), same calls and output."""

from __future__ import annotations

import zlib

from fastapi_cachemate.core.types import CompressManager

__all__ = ["ZLIB_LEVEL", "ZlibCompressManager"]

ZLIB_LEVEL = 5  # the seed's


class ZlibCompressManager(CompressManager):
    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, ZLIB_LEVEL)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)
