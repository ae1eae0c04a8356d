"""What a request costs on a real redis-server: a hit is exactly one command (one GET)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.settings import BaseCacheSettings
from tests.support.apps import build_app, cache_lifespan, served
from tests.support.servers import RedisServer

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
    def make_backend() -> RedisBackend:
        return RedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))

    settings = BaseCacheSettings(backend_timeout=5)  # see tests/support/fixtures.py
    return build_app(cache_lifespan(make_backend, settings))


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


async def test_a_miss_is_lookup_lock_recheck_pttl_begin_store_unlock(
    redis_app: FastAPI, redis_client: aioredis.Redis
) -> None:
    """commandstats also counts the commands the scripts run."""
    async with served(redis_app) as client:
        await client.get("/async/1")  # opens the connection (HELLO / CLIENT SETINFO)
        before = await _command_calls(redis_client)
        miss = await client.get("/async/2")
        after = await _command_calls(redis_client)
    assert miss.headers["x-cache-status"] == "MISS"
    # GET K (the miss); SET K:lock NX PX (the lock), GET K (recheck under the lock) and
    # PTTL K:lock (junk without expiry?) in one pipeline round trip;
    # EVALSHA begin (GET K:gen, SET K:gen "0"); EVALSHA compare-and-set (GET K:gen, SET K);
    # EVALSHA unlock (GET K:lock, DEL K:lock), the last two in one pipeline round trip.
    # docs/resilience.md, docs/keys-and-invalidation.md
    assert _delta(before, after) == {"get": 5, "set": 3, "evalsha": 3, "del": 1, "pttl": 1}
    assert await redis_client.keys("*:lock") == []
    ttl_ms = [await redis_client.pttl(key) for key in await redis_client.keys("*}")]
    assert all(0 < t <= 60_000 for t in ttl_ms)
