"""Lock managers: RedisLockManager (across processes) and MemoryLockManager (in process)."""

from __future__ import annotations

import secrets

from fastapi_cachemate.settings import MAX_LOCK_TTL_SECONDS

__all__ = ["configured_lock_ttl", "new_token"]


def configured_lock_ttl(lock_ttl: int | None) -> int:
    """The seed methods' lock TTL in seconds: the argument, else the configured settings'
    ``ttl_lock_seconds``, else 5 (the seed always used 5)."""
    if lock_ttl:
        return lock_ttl
    from fastapi_cachemate.cache_setup import CacheSetup  # cycle: cache_setup imports locks

    if CacheSetup.is_configured():
        return CacheSetup.settings().ttl_lock_seconds
    return MAX_LOCK_TTL_SECONDS


def new_token() -> str:
    """A fresh random lock token (128 bits), one per acquisition."""
    return secrets.token_hex(16)


def check_ttl_ms(ttl_ms: int) -> None:
    if ttl_ms <= 0:
        raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")


def check_lock_ttl(lock_ttl: int | None) -> None:
    if lock_ttl is not None and lock_ttl < 0:
        raise ValueError(f"lock_ttl must be seconds >= 0 (0 or None: the default), got {lock_ttl}")
