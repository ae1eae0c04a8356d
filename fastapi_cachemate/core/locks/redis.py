"""RedisLockManager: locks across processes, in the same Redis (or cluster) as the cache.

The cache's calls: ``try_lock(key, ttl_ms)`` is ``SET key token NX PX ttl_ms`` with a
fresh random token per acquisition and ``PTTL key``, in one pipeline round trip: a key
without an expiry is junk, never a lock (each has one), and is replaced by the lock with
one more EVALSHA (``scripts.TAKE_OVER_SCRIPT``), so that no request waits for it.
``unlock(key, token)`` deletes the key only if it still holds that token,
``extend(key, token, ttl_ms)`` pushes its expiry only if it does: both are Lua scripts run
by EVALSHA (redis-py's ``register_script`` falls back to loading the
script on NOSCRIPT). The scripts touch only the one key they are given, so they run on a
cluster too. Errors propagate (the request path bounds and counts them).

The seed's ``acquire(lock_key)`` / ``release(lock_key)`` keep their behaviour: one token
per manager, lock TTL from the ``lock_ttl`` argument, else from the configured settings'
``ttl_lock_seconds``, else 5 seconds; a Redis error is logged and answers False.
"""

from __future__ import annotations

import logging
import uuid

import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.asyncio.cluster import RedisCluster

from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks import check_lock_ttl, check_ttl_ms
from fastapi_cachemate.core.scripts import (
    EXTEND_SCRIPT,
    TAKE_OVER_SCRIPT,
    UNLOCK_SCRIPT,
    junk_lock_removed,
    new_token,
)
from fastapi_cachemate.core.types import Backend, LockManager

__all__ = ["EXTEND_SCRIPT", "UNLOCK_SCRIPT", "RedisLockManager"]

logger = logging.getLogger(__name__)

_SEED_ERRORS = (redis_exceptions.RedisError, OSError, TimeoutError)


class RedisLockManager(LockManager):
    UNLOCK_SCRIPT = UNLOCK_SCRIPT  # the seed's attribute name

    def __init__(self, backend: Backend, lock_ttl: int | None = None) -> None:
        """backend: a RedisBackend, or any Backend whose ``client`` is a redis-py asyncio
        client (``redis.asyncio.Redis`` or ``RedisCluster``): the locks are taken on it."""
        client = backend.client if isinstance(backend, Backend) else None
        if not isinstance(client, (aioredis.Redis, RedisCluster)):
            raise TypeError(
                "RedisLockManager(backend=...) needs a Backend whose client is a "
                "redis.asyncio.Redis or RedisCluster (e.g. RedisBackend(client)), got "
                f"{type(backend).__name__} with client {type(client).__name__}"
            )
        check_lock_ttl(lock_ttl)
        self._backend = backend
        self._client = client
        self._lock_ttl = lock_ttl
        self._lock_token = str(uuid.uuid4())
        self._unlock = client.register_script(UNLOCK_SCRIPT)
        self._extend = client.register_script(EXTEND_SCRIPT)
        self._take_over = client.register_script(TAKE_OVER_SCRIPT)

    @property
    def lock_ttl(self) -> int:
        """The seed methods' lock TTL in seconds (resolved now: settings may change)."""
        return self._lock_ttl or self.default_lock_ttl

    # --- the seed's interface -------------------------------------------------------------
    async def acquire(self, lock_key: str) -> bool:
        try:
            is_lock = await self._backend.set(
                lock_key, self._lock_token, ttl=self.lock_ttl, nx=True
            )
        except _SEED_ERRORS as exc:
            logger.error("RedisLockManager: acquire %r failed: %s", lock_key, exc)
            return False
        return bool(is_lock)

    async def release(self, lock_key: str) -> bool:
        try:
            released = await self._unlock(keys=[lock_key], args=[self._lock_token])
        except _SEED_ERRORS as exc:
            logger.error("RedisLockManager: release %r failed: %s", lock_key, exc)
            return False
        if released == 1:
            logger.debug("RedisLockManager: released %r", lock_key)
            return True
        logger.warning("RedisLockManager: lock %r was not released (not ours any more)", lock_key)
        return False

    # --- what the cache calls ---------------------------------------------------------------
    async def try_lock(self, key: bytes, ttl_ms: int) -> str | None:
        """SET key token NX PX ttl_ms and PTTL key (one round trip): the new token, or None
        when the lock is taken. Junk at key (no expiry) is replaced by the lock."""
        check_ttl_ms(ttl_ms)
        token = new_token()
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(key, token, nx=True, px=ttl_ms)
            pipe.pttl(key)
            taken, pttl = await pipe.execute()
        if not taken and pttl == -1:
            outcome = await self._take_over(keys=[key], args=[token, ttl_ms])
            if outcome == 2:
                junk_lock_removed(key)
            taken = bool(outcome)
        return token if taken else None

    async def unlock(self, key: bytes, token: str) -> bool:
        """Delete the lock if token still owns it (EVALSHA of a compare-and-delete)."""
        released = await self._unlock(keys=[key], args=[token])
        return bool(released == 1)

    async def extend(self, key: bytes, token: str, ttl_ms: int) -> bool:
        """Set the lock's expiry to ttl_ms from now if token still owns it."""
        check_ttl_ms(ttl_ms)
        extended = await self._extend(keys=[key], args=[token, ttl_ms])
        return bool(extended == 1)

    def shares_store(self, backend: Backend) -> bool:
        """The locks are in this RedisBackend's Redis: its store can release one (same
        script). A custom backend over the same client has no such combined calls."""
        return backend is self._backend and isinstance(backend, RedisBackend)
