"""BaseCacheSettings: the seed's settings, same names and meanings, plus the new features'."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fastapi_cachemate.core.types import MAX_LOCK_TTL_SECONDS, CompressionMode

__all__ = ["DEFAULT_BYPASS_HEADER", "MAX_LOCK_TTL_SECONDS", "BaseCacheSettings"]

DEFAULT_BYPASS_HEADER: str = "X-BYPASS-CACHE"


class BaseCacheSettings(BaseSettings):
    """Settings of the cache. Subclass it with your own fields and env_prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    # --- the seed's fields --------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    # 0 or less: the default, MAX_LOCK_TTL_SECONDS (the seed's lock manager read 0 so)
    ttl_lock_seconds: int = Field(default=MAX_LOCK_TTL_SECONDS)
    bypass_header: str = Field(default=DEFAULT_BYPASS_HEADER)
    bypass_value: str | None = Field(default=None)
    # milliseconds (the seed's comment said seconds; its arithmetic is in ms)
    # Negative values (the seed accepted them) count as 0 in the refresh arithmetic.
    max_planing_execution_time: int = Field(default=MAX_LOCK_TTL_SECONDS * 1000)
    buffer: float = Field(default=0.2)
    compression_mode: CompressionMode = Field(default="smart")
    compression_min_size_bytes: int = Field(default=1024, ge=0)

    # --- beyond the seed ----------------------------------------------------------------
    compression_level: int = Field(default=3, ge=-7, le=22)
    # "bypass": a request's Cache-Control no-cache / no-store skips the cache (the seed's);
    # "ignore": client directives are ignored; "revalidate": no-cache / max-age=0 refresh
    # the entry through the same single computation as everyone else.
    client_cache_control: Literal["bypass", "ignore", "revalidate"] = "bypass"
    # "revalidate": an entry younger than this (seconds) is served even to a no-cache request,
    # so that clients cannot make the endpoint run on every request.
    revalidate_min_age: float = Field(default=1.0, ge=0)
    refresh_strategy: Literal["window", "xfetch"] = "window"
    xfetch_beta: float = Field(default=1.0, gt=0)
    stale_while_revalidate: float = Field(default=0.0, ge=0)  # seconds served stale past ttl
    stale_if_error: float = Field(default=0.0, ge=0)  # seconds a stale entry may cover errors
    backend_timeout: float = Field(default=0.25, gt=0)  # seconds, every backend call
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failures that open it
    breaker_reset: float = Field(default=5.0, gt=0)  # seconds before a probe
    lock_wait_timeout: float | None = Field(default=None, gt=0)  # None: the lock's TTL
    # background refreshes running at once per process (more are skipped, not queued)
    max_refresh_tasks: int = Field(default=64, ge=1)
    memory_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # the near cache of a RedisBackend: bytes of entries kept in each process, evicted when
    # Redis says they changed (docs/design.md, "Near cache"); 0 turns it off
    near_cache_max_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    max_entry_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # seconds CacheSetup.close() lets background work (refreshes) finish before cancelling it
    close_timeout: float = Field(default=5.0, ge=0)

    @field_validator("ttl_lock_seconds", mode="after")
    @classmethod
    def _lock_ttl_default(cls, value: int) -> int:
        """The seed accepted any int; 0 or less means the default lock TTL."""
        return value if value > 0 else MAX_LOCK_TTL_SECONDS
