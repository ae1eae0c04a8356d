"""MemoryLockManager: locks within one process, with the Redis manager's semantics.

A small dict ``key -> (token, expires_at)`` on ``time.monotonic()``, not the MemoryStore:
a lock must never be evicted by the cache's byte budget (an evicted lock lets a second
computation start, and taking a lock must never evict a cached response), unlock and
extend are compare-and-delete / compare-and-extend on the token, and the number of locks
held at once is small (one per key being computed). Expired locks are dropped when their
key is taken again and by an amortised sweep when the dict grows.

Every method runs without awaiting anything, so each is atomic with respect to the event
loop; a threading.Lock makes them safe from threads too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.locks import check_lock_ttl, check_ttl_ms
from fastapi_cachemate.core.scripts import new_token
from fastapi_cachemate.core.types import LockManager

__all__ = ["MemoryLockManager"]

_MIN_SWEEP = 64


class MemoryLockManager(LockManager):
    """In-process locks with a token per acquisition, expiry and extend.

    backend is accepted for symmetry with ``RedisLockManager(backend)`` and not used: the
    locks live in their own table.
    """

    def __init__(
        self,
        backend: MemoryBackend | None = None,
        lock_ttl: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_lock_ttl(lock_ttl)
        self._lock_ttl = lock_ttl
        self._clock = clock
        self._locks: dict[bytes, tuple[str, float]] = {}
        self._mutex = threading.Lock()
        self._sweep_at = _MIN_SWEEP
        self._lock_token = str(uuid.uuid4())

    @property
    def lock_ttl(self) -> int:
        """The seed methods' lock TTL in seconds."""
        return self._lock_ttl or self.default_lock_ttl

    def __len__(self) -> int:
        """Locks in the table (expired ones not yet dropped included)."""
        return len(self._locks)

    def _sweep(self, now: float) -> None:
        expired = [key for key, (_, expires_at) in self._locks.items() if expires_at <= now]
        for key in expired:
            del self._locks[key]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._locks))

    def _take(self, key: bytes, token: str, ttl_ms: int) -> bool:
        with self._mutex:
            now = self._clock()
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return False
            if len(self._locks) >= self._sweep_at:
                self._sweep(now)
            self._locks[key] = (token, now + ttl_ms / 1000.0)
            return True

    def _owned(self, key: bytes, token: str, now: float) -> bool:
        held = self._locks.get(key)
        return held is not None and held[0] == token and held[1] > now

    # --- the seed's interface -------------------------------------------------------------
    async def acquire(self, lock_key: str) -> bool:
        return self._take(lock_key.encode(), self._lock_token, self.lock_ttl * 1000)

    async def release(self, lock_key: str) -> bool:
        return await self.unlock(lock_key.encode(), self._lock_token)

    # --- what the cache calls ---------------------------------------------------------------
    async def try_lock(self, key: bytes, ttl_ms: int) -> str | None:
        check_ttl_ms(ttl_ms)
        token = new_token()
        return token if self._take(key, token, ttl_ms) else None

    async def unlock(self, key: bytes, token: str) -> bool:
        with self._mutex:
            if not self._owned(key, token, self._clock()):
                return False
            del self._locks[key]
            return True

    async def extend(self, key: bytes, token: str, ttl_ms: int) -> bool:
        check_ttl_ms(ttl_ms)
        with self._mutex:
            now = self._clock()
            if not self._owned(key, token, now):
                return False
            self._locks[key] = (token, now + ttl_ms / 1000.0)
            return True
