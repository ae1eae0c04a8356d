"""Pure-Python twins of the C kernels in ``fastapi_cachemate._native``.

Each module here mirrors one file of csrc/ with the same names and signatures; the test
suite runs against both through one fixture, and ``FASTAPI_CACHEMATE_PURE=1`` makes the
package use these instead of the extension.
"""

from fastapi_cachemate._pure.blake2b import blake2b
from fastapi_cachemate._pure.compress import ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL, compress, decompress
from fastapi_cachemate._pure.entry import (
    COMPRESS_ALL,
    COMPRESS_DISABLED,
    COMPRESS_SMART,
    ENTRY_FORMAT_VERSION,
    ENTRY_MAX_BODY,
    EXPIRED,
    FRESH,
    STALE,
    Entry,
    body_etag,
    read_entry,
    write_entry,
)
from fastapi_cachemate._pure.errors import MalformedError
from fastapi_cachemate._pure.keys import KeySpec, build_key, key_material
from fastapi_cachemate._pure.refresh import (
    REFRESH_TTL_FLOOR,
    refresh_due,
    refresh_window,
    xfetch_due,
)
from fastapi_cachemate._pure.stats import (
    BREAKER_CLOSED,
    BREAKER_HALF_OPEN,
    BREAKER_OPEN,
    NOT_STORED_REASONS,
    STATS_COUNTERS,
    EndpointStats,
    Stats,
)
from fastapi_cachemate._pure.store import STORE_EXPIRED_SCAN, STORE_ITEM_OVERHEAD, MemoryStore

__all__ = [
    "BREAKER_CLOSED",
    "BREAKER_HALF_OPEN",
    "BREAKER_OPEN",
    "COMPRESS_ALL",
    "COMPRESS_DISABLED",
    "COMPRESS_SMART",
    "ENTRY_FORMAT_VERSION",
    "ENTRY_MAX_BODY",
    "EXPIRED",
    "FRESH",
    "NOT_STORED_REASONS",
    "REFRESH_TTL_FLOOR",
    "STALE",
    "STATS_COUNTERS",
    "STORE_EXPIRED_SCAN",
    "STORE_ITEM_OVERHEAD",
    "ZSTD_MAX_LEVEL",
    "ZSTD_MIN_LEVEL",
    "EndpointStats",
    "Entry",
    "KeySpec",
    "MalformedError",
    "MemoryStore",
    "Stats",
    "blake2b",
    "body_etag",
    "build_key",
    "compress",
    "decompress",
    "key_material",
    "read_entry",
    "refresh_due",
    "refresh_window",
    "write_entry",
    "xfetch_due",
]
