"""Lock managers and counters that tell a test when something happened (no polling, no sleeps)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.redis import RedisLockManager

__all__ = ["SAFETY", "Counted", "CountingRedisLocks"]

SAFETY = 60.0  # seconds: only turns a hang into a failure, never reached when things work


class Counted:
    """A counter whose value can be awaited (no polling, no sleeps)."""

    def __init__(self) -> None:
        self.n = 0
        self._cond = asyncio.Condition()

    async def bump(self) -> None:
        async with self._cond:
            self.n += 1
            self._cond.notify_all()

    async def reach(self, n: int) -> None:
        """Wait until the count reaches n; a safety net turns a hang into a failure."""

        async def wait() -> None:
            async with self._cond:
                await self._cond.wait_for(lambda: self.n >= n)

        await asyncio.wait_for(wait(), SAFETY)


class CountingRedisLocks(RedisLockManager):
    """The shipped Redis lock manager, counting extend calls."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__(RedisBackend(client))
        self.extends = Counted()

    async def extend(self, key: bytes, token: str, ttl_ms: int) -> bool:
        ok = await super().extend(key, token, ttl_ms)
        await self.extends.bump()
        return ok
