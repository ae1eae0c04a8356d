"""What a request costs on a real redis-server: a hit is exactly one command (one GET)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.core.backends.redis import RedisBackend
from tests.apps import build_app, served
from tests.servers import RedisServer

pytestmark = pytest.mark.redis


async def _command_calls(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name != "cmdstat_info"
    }


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


@pytest.fixture
async def redis_app(
    redis_server: RedisServer, redis_client: aioredis.Redis, clean_cache_setup: None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        CacheSetup.setup(backend=RedisBackend(client))
        yield
        await CacheSetup.close()

    return build_app(lifespan)


@pytest.mark.parametrize("url", ["/async/1", "/model/3", "/html", "/big", "/injected"])
async def test_a_hit_is_one_get(redis_app: FastAPI, redis_client: aioredis.Redis, url: str) -> None:
    async with served(redis_app) as client:
        miss = await client.get(url)
        assert miss.headers["x-cache-status"] == "MISS"
        before = await _command_calls(redis_client)
        hit = await client.get(url)
        after = await _command_calls(redis_client)
    assert hit.headers["x-cache-status"] == "HIT"
    assert _delta(before, after) == {"get": 1}


async def test_a_miss_is_one_get_and_one_set(
    redis_app: FastAPI, redis_client: aioredis.Redis
) -> None:
    async with served(redis_app) as client:
        await client.get("/async/1")  # opens the connection (HELLO / CLIENT SETINFO)
        before = await _command_calls(redis_client)
        miss = await client.get("/async/2")
        after = await _command_calls(redis_client)
    assert miss.headers["x-cache-status"] == "MISS"
    assert _delta(before, after) == {"get": 1, "set": 1}
    ttl_ms = [await redis_client.pttl(key) for key in await redis_client.keys("*")]
    assert all(0 < t <= 60_000 for t in ttl_ms)
