"""Backends written by a user: the shipped Backend interface used from outside the package."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from fastapi_cachemate.core.types import Backend

__all__ = ["DictBackend", "SeedDictBackend", "SeedRedisBackend"]


class DictBackend(Backend):
    """A backend that implements only the seed's abstract methods."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.calls: list[str] = []
        self.closed = 0

    async def get(self, key: str) -> tuple[int, bytes | None]:
        self.calls.append(f"get {key}")
        value, ttl = self.data.get(key, (None, -2))
        return ttl * 1000, value

    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        self.calls.append(f"set {key} {ttl}")
        if nx and key in self.data:
            return None
        self.data[key] = (data.encode() if isinstance(data, str) else data, ttl)
        return True

    async def close(self) -> None:
        self.closed += 1

    @property
    def client(self) -> Any:
        return self.data


class SeedDictBackend(Backend):
    """A user's in-process backend with the seed's four methods only, with expiry."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, float]] = {}  # key -> (value, expires at)

    async def get(self, key: str) -> tuple[int, bytes | None]:
        value, expires_at = self.data.get(key, (None, 0.0))
        left = expires_at - time.monotonic()
        if value is None or left <= 0:
            return -2, None
        return int(left * 1000), value

    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        if nx and (await self.get(key))[1] is not None:
            return None
        value = data.encode() if isinstance(data, str) else data
        self.data[key] = (value, time.monotonic() + ttl)
        return True

    async def close(self) -> None:
        self.data.clear()

    @property
    def client(self) -> Any:
        return self.data


class SeedRedisBackend(Backend):
    """A user's Redis backend with the seed's four methods only (the seed's RedisBackend)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def get(self, key: str) -> tuple[int, bytes | None]:
        async with self._client.pipeline() as pipe:
            pipe.get(key)
            pipe.pttl(key)
            raw, ttl = await pipe.execute()
        return int(ttl), raw

    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        return await self._client.set(key, data, ex=ttl, nx=nx)

    async def close(self) -> None:
        await self._client.aclose()

    @property
    def client(self) -> aioredis.Redis:
        return self._client
