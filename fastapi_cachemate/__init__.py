"""fastapi-cachemate: a response cache for FastAPI with a C hot path."""

from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.settings import MAX_LOCK_TTL_SECONDS, BaseCacheSettings

__all__ = ["MAX_LOCK_TTL_SECONDS", "BaseCacheSettings", "CacheSetup", "__version__"]

__version__ = "0.2.0"
