"""Pure-Python twins of the C kernels in ``fastapi_cachemate._native``.

Each module here mirrors one file of csrc/ with the same names and signatures; the test
suite runs against both through one fixture, and ``FASTAPI_CACHEMATE_PURE=1`` makes the
package use these instead of the extension.
"""

from fastapi_cachemate._pure.blake2b import blake2b
from fastapi_cachemate._pure.compress import ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL, compress, decompress
from fastapi_cachemate._pure.errors import MalformedError
from fastapi_cachemate._pure.keys import KeySpec, build_key, key_material
from fastapi_cachemate._pure.refresh import (
    REFRESH_TTL_FLOOR,
    refresh_due,
    refresh_window,
    xfetch_due,
)

__all__ = [
    "REFRESH_TTL_FLOOR",
    "ZSTD_MAX_LEVEL",
    "ZSTD_MIN_LEVEL",
    "KeySpec",
    "MalformedError",
    "blake2b",
    "build_key",
    "compress",
    "decompress",
    "key_material",
    "refresh_due",
    "refresh_window",
    "xfetch_due",
]
