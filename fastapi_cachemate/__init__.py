"""fastapi-cachemate: a response cache for FastAPI with a C hot path."""

from fastapi_cachemate._log import JsonFormatter
from fastapi_cachemate._route.keyer import request_unkeyed
from fastapi_cachemate._runtime.breaker import BackendUnavailable
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.core.coders.orjson import OrjsonCoderManager
from fastapi_cachemate.core.compress.zlib import ZlibCompressManager
from fastapi_cachemate.core.types import (
    Backend,
    ByPass,
    CoderManager,
    CompressionMode,
    CompressManager,
    LockManager,
)
from fastapi_cachemate.settings import (
    DEFAULT_BYPASS_HEADER,
    MAX_LOCK_TTL_SECONDS,
    BaseCacheSettings,
)

from fastapi_cachemate.cache import cache_response, is_bypass  # isort: skip  (after CacheSetup)

__all__ = [
    "DEFAULT_BYPASS_HEADER",
    "MAX_LOCK_TTL_SECONDS",
    "Backend",
    "BackendUnavailable",
    "BaseCacheSettings",
    "ByPass",
    "CacheSetup",
    "CoderManager",
    "CompressManager",
    "CompressionMode",
    "JsonFormatter",
    "LockManager",
    "OrjsonCoderManager",
    "ZlibCompressManager",
    "__version__",
    "cache_response",
    "is_bypass",
    "request_unkeyed",
]

__version__ = "0.2.0"
