"""Stampede protection in one process, on a real redis-server: one computation per key,
background refresh without waiting, stale serving, a Redis stopped under load.

Synchronisation is by events (``app.state.gate``, ``computing``, ``all_arrived``, the refresh
task itself); the only duration asserted is the bound the design promises (a dead backend adds
at most its timeout, plus a generous margin for a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import httpx
import pytest
import redis.asyncio as aioredis

from fastapi_cachemate import BaseCacheSettings, CacheSetup
from fastapi_cachemate._runtime.breaker import BreakerState
from tests.support.apps import STAMPEDE_TTL, build_stampede_app, served
from tests.support.clock import FakeClock
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis

STATUS = "x-cache-status"
# What a request may take beyond backend_timeout while Redis is down: generous for a loaded
# 2-core machine (the redis-py default client alone would take seconds per call).
MARGIN = 1.0


async def stored_key(redis_client: aioredis.Redis, name: str = "stampede") -> bytes:
    """The one entry's key (``<name>:{<hash>}``; its lock is ``<name>:{<hash>}:lock``)."""
    stored = [k for k in await redis_client.keys(f"{name}:{{*}}") if isinstance(k, bytes)]
    assert len(stored) == 1, stored
    return stored[0]


async def computations(redis_client: aioredis.Redis, name: str = "stampede") -> int:
    return int(await redis_client.get(f"{name}:computations") or 0)


async def get_all(client: httpx.AsyncClient, url: str, n: int) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.get(url) for _ in range(n))))


def statuses(responses: list[httpx.Response]) -> Counter[str]:
    return Counter(r.headers.get(STATUS, "-") for r in responses)


async def test_200_concurrent_cold_requests_compute_once(
    redis_server: RedisServer, redis_client: aioredis.Redis, clean_cache_setup: None
) -> None:
    # a generous backend timeout: 200 requests at once on a loaded 2-core machine must not
    # time out their lookups (that would fail open: correct, but more computations)
    app = build_stampede_app(
        redis_server.url, expected=200, settings=BaseCacheSettings(backend_timeout=2)
    )
    app.state.gate.clear()  # the computation waits until every request has arrived
    async with served(app, timeout=60) as client:
        pending = [asyncio.ensure_future(client.get("/item/1")) for _ in range(200)]
        await asyncio.wait_for(app.state.all_arrived.wait(), 60)
        app.state.gate.set()
        responses = await asyncio.gather(*pending)
        again = await client.get("/item/1")
    assert [r.status_code for r in responses] == [200] * 200
    assert {r.content for r in responses} == {b'{"n":1,"computation":1}'}
    assert await computations(redis_client) == 1
    assert statuses(responses)["MISS"] >= 1
    assert again.headers[STATUS] == "HIT"
    # every session was a request's own, and each was closed with its request
    assert len(app.state.sessions) == 201
    assert all(s.closed for s in app.state.sessions)
    assert await redis_client.keys("*:lock") == []


@pytest.fixture
def fake_clock() -> FakeClock:
    """The cache's clock (entries' created and freshness); Redis expiries stay real."""
    return FakeClock(time.time())


async def test_steady_load_across_expiries(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    clean_cache_setup: None,
    fake_clock: FakeClock,
) -> None:
    """Per TTL cycle one computation (at most two are allowed), and while it runs (the endpoint
    blocked on app.state.gate) every request is answered from the entry: HIT, then STALE."""
    # backend_timeout: see the first test (a timed-out lookup fails open: a MISS, correct
    # but not what this test counts)
    settings = BaseCacheSettings(stale_while_revalidate=STAMPEDE_TTL / 2, backend_timeout=2)
    app = build_stampede_app(redis_server.url, settings=settings)
    load = 40
    cycles = 4
    async with served(app, timeout=60) as client:
        CacheSetup.runtime().clock = fake_clock
        first = await client.get("/item/7")
        assert first.headers[STATUS] == "MISS"
        key = await stored_key(redis_client)
        created = fake_clock.now
        for cycle in range(cycles):
            done_before = await computations(redis_client)
            assert done_before == cycle + 1
            # fresh, not due: plain hits, nothing starts
            fake_clock.now = created + STAMPEDE_TTL * 0.3
            assert statuses(await get_all(client, "/item/7", load)) == {"HIT": load}
            assert key not in CacheSetup.runtime().refreshes
            app.state.gate.clear()
            app.state.computing.clear()
            if cycle % 2 == 0:
                # inside the early-refresh window (5 % of the ttl): a hit starts ONE refresh
                fake_clock.now = created + STAMPEDE_TTL * 0.98
                assert statuses(await get_all(client, "/item/7", load)) == {"HIT": load}
                expect_while_running = "HIT"
            else:
                # nobody came during the window: the entry is stale, served, refreshed
                fake_clock.now = created + STAMPEDE_TTL * 1.2
                assert statuses(await get_all(client, "/item/7", load)) == {"STALE": load}
                expect_while_running = "STALE"
            refresh = CacheSetup.runtime().refreshes.get(key)
            assert refresh is not None
            await asyncio.wait_for(app.state.computing.wait(), 30)
            # the recomputation is blocked: requests do not wait for it
            assert statuses(await get_all(client, "/item/7", load)) == {expect_while_running: load}
            fake_clock.now = created + STAMPEDE_TTL * 1.3  # past the ttl, inside the grace window
            assert statuses(await get_all(client, "/item/7", load)) == {"STALE": load}
            assert await computations(redis_client) == done_before + 1
            created = fake_clock.now  # the refresh stores at this (fake) time
            app.state.gate.set()
            await asyncio.wait_for(refresh, 30)
            fresh = await get_all(client, "/item/7", load)
            assert statuses(fresh) == {"HIT": load}
            assert {r.json()["computation"] for r in fresh} == {done_before + 1}
    assert await computations(redis_client) == cycles + 1
    # every refresh resolved its own dependencies: a new session per computation, all closed
    assert all(s.closed for s in app.state.sessions)


async def test_redis_stopped_under_load(
    redis_process: RedisServer,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    clean_cache_setup: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis-py's default client (retries with backoff: seconds per call on a dead server):
    the backend timeout and the breaker bound every request; caching resumes by itself."""
    settings = BaseCacheSettings(backend_timeout=0.25, breaker_failures=5, breaker_reset=0.5)
    cache_client = aioredis.Redis(host=redis_process.host, port=redis_process.port)
    app = build_stampede_app(
        redis_process.url,
        name="outage",
        settings=settings,
        cache_client=cache_client,
        counter_url=redis_server.url,  # the endpoint's counters survive the outage
    )
    async with served(app, timeout=60) as client:
        assert (await client.get("/item/1")).headers[STATUS] == "MISS"
        assert (await client.get("/item/1")).headers[STATUS] == "HIT"
        # The baseline of this run: the same load, the cache not used (the endpoint's own
        # cost on this machine now, however loaded it is).
        uncached = {"cache-control": "no-cache"}
        baseline: list[float] = []

        async def timed_uncached(url: str) -> None:
            started = time.perf_counter()
            assert (await client.get(url, headers=uncached)).headers[STATUS] == "NO_CACHE"
            baseline.append(time.perf_counter() - started)

        for _ in range(8):
            await asyncio.gather(*(timed_uncached(f"/item/{i % 4}") for i in range(20)))
        bound = settings.backend_timeout + max(baseline) + MARGIN
        redis_process.stop()
        caplog.clear()
        caplog.set_level(logging.INFO, logger="fastapi_cachemate")
        durations: list[float] = []
        slow: list[tuple[str, float, str]] = []  # diagnostics of a failure: url, s, breaker

        async def timed(url: str) -> httpx.Response:
            started = time.perf_counter()
            response = await client.get(url)
            took = time.perf_counter() - started
            durations.append(took)
            if took >= bound:
                slow.append((url, took, repr(CacheSetup.runtime().breaker)))
            return response

        answered: list[httpx.Response] = []
        for _ in range(8):
            answered += await asyncio.gather(*(timed(f"/item/{i % 4}") for i in range(20)))
        assert [r.status_code for r in answered] == [200] * len(answered)
        assert {r.headers[STATUS] for r in answered} == {"MISS"}
        # a dead backend adds at most one backend_timeout to what the request costs anyway
        assert max(durations) < bound, (sorted(durations)[-5:], max(baseline), slow)
        breaker = CacheSetup.runtime().breaker
        assert breaker.state is not BreakerState.CLOSED
        # errors are logged once per state change, not per request: the breaker's changes
        # and the request path's "backend lost" (_log.BackendHealth), one record each
        records = [r for r in caplog.records if r.levelno >= logging.WARNING]
        lost = [r for r in records if "backend lost" in r.getMessage()]
        assert len(lost) == 1
        assert 1 <= len(records) - len(lost) <= breaker.stats.state_changes
        redis_process.start()
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while "HIT" not in seen:
            assert time.monotonic() < deadline, seen[-10:]
            response = await client.get("/item/9")
            assert response.status_code == 200
            seen.append(response.headers[STATUS])
            await asyncio.sleep(0.05)  # request pacing of the load, not a synchronisation
        assert CacheSetup.runtime().breaker.state is BreakerState.CLOSED
    # every answer of the outage was computed then by the endpoint (none is the cached #1);
    # concurrent requests of one key still share one computation (the single flight)
    assert min(r.json()["computation"] for r in answered) > 1
    assert await computations(redis_client, "outage") <= 1 + len(baseline) + len(answered) + len(
        seen
    )
