"""The test suite's map, and the fixtures shared by all of it: real Redis servers, a clean
CacheSetup, and (through the plugin tests/support/fixtures.py) the FastAPI-layer apps.

Where the tests are. Unit tests of one module are named after it, tests/test_<module>.py:

- package root: test_cache.py (cache.py at decoration time), test_cache_setup.py,
  test_settings.py, test_invalidation.py (invalidation.py, through a real app),
  test_metrics.py (metrics.py), test_prometheus.py, test_cli.py (__main__.py);
- _request/: test_answer.py (answer.py: validators, freshness, 304s, stale and
  collapsed answers), test_rules.py (rules.py: the client's Cache-Control);
- _route/: test_hitfirst.py, test_keyer.py, test_render.py;
- _runtime/: test_breaker.py, test_flow.py, test_lease.py, test_singleflight.py,
  test_tasks.py; test_log.py (_log.py);
- the C kernels and their Python twins (_native, _pure) in tests/native/, leak checks in
  tests/isolated/;
- core/: test_backends.py (what every backend does), test_backends_memory.py,
  test_backends_redis.py, test_locks.py (core/locks/);
- outside the package: test_bench_callgrind.py (benchmarks/callgrind_hit.py),
  test_support_servers.py (tests/support/servers.py and the fixtures over it),
  test_quality.py (the static checks).

End-to-end tests, named by the behaviour they show:

- what is cached and sent: test_cache_response.py, test_storable_responses.py,
  test_collapsed_and_stale_headers.py, test_request_counters.py;
- what never goes wrong: test_cache_bad_input.py, test_cache_failures.py,
  test_cache_poisoning.py, test_key_poisoning.py, test_fail_open.py (every backend and
  lock failure, junk in every key the cache owns), test_custom_backends.py;
- invalidation in every backend: test_invalidation_backends.py, test_invalidation_latency.py;
- Redis: test_cache_redis.py (commands per request), test_backends_cluster.py,
  test_cli_cluster.py;
- load and processes: test_stampede.py, test_stampede_paths.py, test_stampede_processes.py,
  test_prometheus_workers.py, test_uvicorn.py;
- compatibility: test_seed_readme.py (every block of the seed README), test_seed_compat.py
  (the seed's names, managers and setting values);
- distribution: test_packaging.py, test_build_zstd.py.

tests/support/ holds what tests share and never a test: servers.py (redis-server, cluster,
uvicorn processes), apps.py (every test app, ``served()``), fixtures.py (the plugin below),
keyprobe.py, entries.py, locks.py, backends.py, cli.py, pinger.py. Test modules import
helpers from there, never from one another.

Fixtures defined here:

- ``redis_server`` (session): a redis-server on a free 127.0.0.1 port; ``.host``, ``.port``,
  ``.url``. A missing redis-server is a failure with the install hint, never a skip.
- ``redis_client`` (function): a ``redis.asyncio.Redis`` on that server's database 0,
  flushed before the test, closed after it.
- ``redis_process`` (function): a separate redis-server of its own for fault tests:
  ``.stop()`` and ``.start()`` again on the same port, ``.running``, ``.url``.
- ``redis_cluster`` (session, started only when a test asks for it): 3 masters with
  ``--cluster-enabled yes`` formed by ``redis-cli --cluster create``: a
  ``tests.support.servers.LocalCluster``; ``.nodes`` (or iterating it) gives the (host, port)
  startup nodes, ``.servers`` the RedisServer processes (``.stop()`` / ``.start()`` one for
  faults).
- ``redis_cluster_client`` (function): a ``redis.asyncio.RedisCluster`` over it, flushed.
- ``cache_backend`` (function, parametrised ``memory`` / ``redis``): a MemoryBackend, or a
  RedisBackend over its own client on ``redis_server`` (flushed); ``cache_locks``: the
  matching lock manager.
- ``clean_cache_setup`` (function): CacheSetup reset before and after the test.

Fixtures of tests/support/fixtures.py (registered by ``pytest_plugins`` below):
``backend_kind``, ``make_backend``, ``app_factory``, ``http_app``, ``key_kernels``.

Helpers in tests/support/servers.py: ``command_calls(client)`` / ``command_delta(before,
after)`` count the commands a piece of code sent (INFO commandstats).
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
