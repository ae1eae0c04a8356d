"""Lock managers: RedisLockManager (across processes) and MemoryLockManager (in process)."""

from __future__ import annotations

__all__ = ["check_lock_ttl", "check_ttl_ms"]


def check_ttl_ms(ttl_ms: int) -> None:
    if ttl_ms <= 0:
        raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")


def check_lock_ttl(lock_ttl: int | None) -> None:
    if lock_ttl is not None and lock_ttl < 0:
        raise ValueError(f"lock_ttl must be seconds >= 0 (0 or None: the default), got {lock_ttl}")
