"""fastapi-cachemate: a response cache for FastAPI with a C hot path."""

from fastapi_cachemate._route.keyer import request_unkeyed
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.settings import MAX_LOCK_TTL_SECONDS, BaseCacheSettings

from fastapi_cachemate.cache import cache_response, is_bypass  # isort: skip  (after CacheSetup)

__all__ = [
    "MAX_LOCK_TTL_SECONDS",
    "BaseCacheSettings",
    "CacheSetup",
    "__version__",
    "cache_response",
    "is_bypass",
    "request_unkeyed",
]

__version__ = "0.2.0"
