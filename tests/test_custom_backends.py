"""A user's Backend implementing only the seed's interface caches, and RedisLockManager
takes its locks on any backend whose client is a redis-py asyncio client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from fastapi_cachemate import CacheSetup
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.redis import RedisLockManager
from fastapi_cachemate.core.types import Backend, LockManager
from tests.support.apps import custom_app, served
from tests.support.backends import SeedDictBackend, SeedRedisBackend
from tests.support.entries import key_of
from tests.support.servers import RedisServer

pytestmark = pytest.mark.usefixtures("clean_cache_setup")

STATUS = "x-cache-status"


@pytest.fixture(params=["dict", pytest.param("redis", marks=pytest.mark.redis)])
def seed_backend_factory(request: pytest.FixtureRequest) -> Callable[[], Backend]:
    """Makes a seed-interface-only backend: in process, or over a real (flushed) Redis."""
    if request.param == "dict":
        return SeedDictBackend
    server: RedisServer = request.getfixturevalue("redis_server")
    request.getfixturevalue("redis_client")  # flushes the database

    def make() -> Backend:
        return SeedRedisBackend(aioredis.Redis(host=server.host, port=server.port))

    return make


async def test_a_seed_interface_backend_caches(
    seed_backend_factory: Callable[[], Backend],
) -> None:
    app = custom_app(seed_backend_factory)
    async with served(app) as client:
        first = await client.get("/async/3")
        second = await client.get("/async/3")
        key, _ = key_of(app, "/async/{item_id}", "/async/3")
        _, stored = await CacheSetup.backend().get(key.decode())
    assert (first.status_code, first.headers[STATUS]) == (200, "MISS")
    assert (second.status_code, second.headers[STATUS]) == (200, "HIT")
    assert second.content == first.content == b'{"item_id":3,"q":null}'
    assert stored is not None  # written through the seed's set()
    assert app.state.calls["async"] == 1


@pytest.mark.redis
async def test_redis_lock_manager_over_a_seed_redis_backend_caches(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    taken: list[bytes] = []

    class WatchedLocks(RedisLockManager):
        async def try_lock(self, key: bytes, ttl_ms: int) -> str | None:
            taken.append(key)
            return await super().try_lock(key, ttl_ms)

    def make_backend() -> Backend:
        return SeedRedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))

    def make_locks(backend: Backend) -> LockManager:
        return WatchedLocks(backend)

    app = custom_app(make_backend, make_locks)
    async with served(app) as client:
        assert (await client.get("/async/4")).headers[STATUS] == "MISS"
        assert (await client.get("/async/4")).headers[STATUS] == "HIT"
        key, _ = key_of(app, "/async/{item_id}", "/async/4")
    assert taken == [key + b":lock"]  # the miss computed under the Redis lock
    assert await redis_client.exists(key + b":lock") == 0  # and released it
    assert await redis_client.exists(key) == 1


@pytest.mark.redis
async def test_redis_lock_manager_locks_on_a_seed_backends_client(
    redis_client: aioredis.Redis, redis_server: RedisServer
) -> None:
    backend = SeedRedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))
    locks = RedisLockManager(backend)
    try:
        token = await locks.try_lock(b"p:{k}:lock", 5_000)
        assert token is not None
        assert await redis_client.get(b"p:{k}:lock") == token.encode()
        assert await locks.try_lock(b"p:{k}:lock", 5_000) is None
        assert await locks.extend(b"p:{k}:lock", token, 9_000) is True
        assert await locks.unlock(b"p:{k}:lock", token) is True
        assert await redis_client.exists(b"p:{k}:lock") == 0
        # the seed's calls, through the backend's set()
        assert await locks.acquire("seed-lock") is True
        assert await locks.acquire("seed-lock") is False
        assert await locks.release("seed-lock") is True
        # its store has no combined lock-and-store calls: the locks are taken on their own
        assert locks.shares_store(backend) is False
    finally:
        await backend.close()


@pytest.mark.redis
async def test_redis_lock_manager_shares_a_redis_backends_store(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))
    try:
        assert RedisLockManager(backend).shares_store(backend) is True
    finally:
        await backend.close()
