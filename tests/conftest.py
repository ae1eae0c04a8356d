"""Fixtures shared by the whole suite: real Redis servers and a clean CacheSetup.

- ``redis_server`` (session): a redis-server on a free 127.0.0.1 port; ``.host``, ``.port``,
  ``.url``. A missing redis-server is a failure with the install hint, never a skip.
- ``redis_client`` (function): a ``redis.asyncio.Redis`` on that server's database 0,
  flushed before the test, closed after it.
- ``redis_process`` (function): a separate redis-server of its own for fault tests:
  ``.stop()`` and ``.start()`` again on the same port, ``.running``, ``.url``.
- ``redis_cluster`` (session, started only when a test asks for it): 3 masters with
  ``--cluster-enabled yes`` formed by ``redis-cli --cluster create``: a
  ``tests.servers.LocalCluster``; ``.nodes`` (or iterating it) gives the (host, port) startup
  nodes, ``.servers`` the RedisServer processes (``.stop()`` / ``.start()`` one for faults).
- ``redis_cluster_client`` (function): a ``redis.asyncio.RedisCluster`` over it, flushed.
- ``cache_backend`` (function, parametrised ``memory`` / ``redis``): a MemoryBackend, or a
  RedisBackend over its own client on ``redis_server`` (flushed); ``cache_locks``: the
  matching lock manager.
- ``clean_cache_setup`` (function): CacheSetup reset before and after the test.

Helpers in tests/servers.py: ``command_calls(client)`` / ``command_delta(before, after)``
count the commands a piece of code sent (INFO commandstats).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.locks.redis import RedisLockManager
from fastapi_cachemate.core.types import Backend, LockManager
from tests.support.servers import (
    LocalCluster,
    RedisServer,
    require_redis_binaries_or_fail,
    start_or_fail,
)

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    require_redis_binaries_or_fail()
    server = RedisServer()
    start_or_fail(server)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port, db=0)
    try:
        await client.flushdb()
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_process() -> Iterator[RedisServer]:
    require_redis_binaries_or_fail()
    server = RedisServer()
    start_or_fail(server)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    require_redis_binaries_or_fail()
    cluster = LocalCluster(masters=3)
    start_or_fail(cluster)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def redis_cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[AsyncRedisCluster]:
    client = AsyncRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster.nodes]
    )
    try:
        await client.initialize()
        await client.flushdb(target_nodes=AsyncRedisCluster.PRIMARIES)
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def cache_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    backend: Backend
    if request.param == "memory":
        backend = MemoryBackend(max_bytes=1024 * 1024)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.Redis(host=server.host, port=server.port, db=0)
        await client.flushdb()
        backend = RedisBackend(client)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def cache_locks(cache_backend: Backend) -> LockManager:
    if isinstance(cache_backend, RedisBackend):
        return RedisLockManager(cache_backend)
    assert isinstance(cache_backend, MemoryBackend)
    return MemoryLockManager(cache_backend)


@pytest.fixture
async def clean_cache_setup() -> AsyncIterator[None]:
    from fastapi_cachemate.cache_setup import CacheSetup

    await CacheSetup.reset()
    try:
        yield
    finally:
        await CacheSetup.reset()
