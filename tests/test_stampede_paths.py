"""The request path's other decisions: stale-if-error, failed refreshes, how a refresh
re-enters the app, the refresh registry's bounds and shutdown, one failure per request."""

# No "from __future__ import annotations": the endpoints use names local to the tests.

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from fastapi_cachemate import BaseCacheSettings, CacheSetup, metrics
from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._runtime.flow import REFRESH_HOLD_OFF
from fastapi_cachemate._runtime.lease import Lease
from fastapi_cachemate._runtime.reentry import MARKER, refresh_scope, refresh_ticket
from fastapi_cachemate._runtime.tasks import RefreshTasks
from fastapi_cachemate.cache import cache_response
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.types import Backend
from fastapi_cachemate.invalidation import invalidate_namespace
from tests.support.apps import REFRESH_APP_TTL as TTL
from tests.support.apps import build_refresh_app, cache_lifespan, served
from tests.support.clock import FakeClock
from tests.support.entries import key_of
from tests.support.servers import RedisServer

STATUS = "x-cache-status"


def counts() -> dict[str, int]:
    """This test's counters of /thing/{n} (zeroed by the autouse fixture), nonzero only."""
    row = metrics.snapshot()["endpoints"].get("/thing/{n}", {})
    return {k: v for k, v in row.items() if v and not k.startswith("bytes_")}


@pytest.fixture(autouse=True)
def zeroed() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


async def stored_entry(n: int) -> Any:
    """The entry at /thing/{n}'s key, read with the cache's clock."""
    backend = CacheSetup.backend()
    app_key, fingerprint = key_of(_APP[0], "/thing/{n}", f"/thing/{n}")
    raw = await backend.fetch(app_key)
    assert raw is not None
    return kernels.read_entry(raw, CacheSetup.runtime().clock(), fingerprint)


_APP: list[FastAPI] = []


async def refresh_of(n: int) -> Awaitable[Any]:
    key, _ = key_of(_APP[0], "/thing/{n}", f"/thing/{n}")
    task = CacheSetup.runtime().refreshes.get(key)
    assert task is not None, "no refresh running"
    return task


@pytest.mark.parametrize("failure", ["raise", "503", "500-exc"])
async def test_stale_if_error_serves_the_stale_entry_marked(
    make_backend: Callable[[], Backend] | None, failure: str
) -> None:
    app = build_refresh_app(make_backend, BaseCacheSettings(), stale_if_error=60)
    _APP[:] = [app]
    clock = FakeClock(time.time())
    async with served(app) as client:
        CacheSetup.runtime().clock = clock
        first = await client.get("/thing/1")
        assert first.headers[STATUS] == "MISS"
        created = (await stored_entry(1)).created
        clock.now += TTL + 30  # stale, inside stale_if_error (no stale_while_revalidate)
        app.state.mode = failure
        stale = await client.get("/thing/1")
        assert stale.status_code == 200
        assert stale.headers[STATUS] == "STALE_IF_ERROR"
        assert stale.content == first.content
        assert stale.headers["cache-control"] == "max-age=0"
        entry = await stored_entry(1)
        assert entry.created == created  # the failure stored nothing
        # a 4xx is an answer, not an error: it is sent
        app.state.mode = "404"
        assert (await client.get("/thing/1")).status_code == 404
        # the endpoint works again: a new entry
        app.state.mode = "ok"
        fresh = await client.get("/thing/1")
        assert fresh.headers[STATUS] == "MISS"
        assert (await stored_entry(1)).created == clock.now
        # past ttl + stale_if_error: the failure is the answer
        clock.now += TTL + 61
        app.state.mode = failure
        if failure == "raise":
            with pytest.raises(RuntimeError, match="database is down"):
                await client.get("/thing/1")
        else:
            assert (await client.get("/thing/1")).status_code in (500, 503)


async def test_a_failed_refresh_keeps_the_entry_and_a_later_one_replaces_it(
    make_backend: Callable[[], Backend] | None, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_refresh_app(make_backend, BaseCacheSettings(stale_while_revalidate=30))
    _APP[:] = [app]
    clock = FakeClock(time.time())
    async with served(app) as client:
        CacheSetup.runtime().clock = clock
        first = await client.get("/thing/2")
        created = (await stored_entry(2)).created
        clock.now += TTL + 5
        app.state.mode = "raise"
        caplog.set_level(logging.WARNING, logger="fastapi_cachemate")
        stale = await client.get("/thing/2")
        assert stale.headers[STATUS] == "STALE"
        assert stale.content == first.content
        await asyncio.wait_for(await refresh_of(2), 30)
        assert (await stored_entry(2)).created == created  # not overwritten
        assert any("background refresh" in r.getMessage() for r in caplog.records)
        app.state.mode = "ok"
        # a failed refresh holds further ones off for REFRESH_HOLD_OFF (not every due hit
        # re-runs a failing endpoint)
        assert (await client.get("/thing/2")).headers[STATUS] == "STALE"
        assert CacheSetup.runtime().refreshes.stats.spawned == 1
        clock.now += REFRESH_HOLD_OFF
        assert (await client.get("/thing/2")).headers[STATUS] == "STALE"
        await asyncio.wait_for(await refresh_of(2), 30)
        entry = await stored_entry(2)
        assert entry.created == clock.now
        assert entry.state == kernels.FRESH
        hit = await client.get("/thing/2")
        assert hit.headers[STATUS] == "HIT"
        assert hit.json() == {"n": 2, "call": 3}
    # the refreshes went through the whole app (its middleware saw them, marked), each
    # with a session of its own, closed when it ended
    (middleware,) = app.state.middleware
    assert middleware.seen["refresh"] == 2
    assert counts() == {
        "misses": 1,
        "stored": 2,
        "stale_served": 3,
        "hits": 1,
        "refreshes": 1,
        "refresh_failures": 1,
        "not_stored": 1,  # the failed refresh's endpoint raised
        "not_stored_error": 1,
    }
    assert len(app.state.sessions) == 5 + 2  # one per request (5) and per refresh (2)
    assert all(s.closed for s in app.state.sessions)


async def test_early_refresh_on_a_due_hit_xfetch(
    make_backend: Callable[[], Backend] | None,
) -> None:
    # a huge beta makes XFetch fire on every hit with any compute time
    settings = BaseCacheSettings(refresh_strategy="xfetch", xfetch_beta=1e12)
    app = build_refresh_app(make_backend, settings)
    _APP[:] = [app]
    async with served(app) as client:
        assert (await client.get("/thing/3")).headers[STATUS] == "MISS"
        hit = await client.get("/thing/3")
        assert hit.headers[STATUS] == "HIT"
        await asyncio.wait_for(await refresh_of(3), 30)
        assert app.state.calls == 2
        assert (await client.get("/thing/3")).json()["call"] == 2


async def test_refreshes_are_bounded_and_close_cancels_them(
    make_backend: Callable[[], Backend] | None,
) -> None:
    settings = BaseCacheSettings(stale_while_revalidate=30, max_refresh_tasks=1, close_timeout=0.05)
    app = build_refresh_app(make_backend, settings)
    _APP[:] = [app]
    clock = FakeClock(time.time())
    async with served(app) as client:
        runtime = CacheSetup.runtime()
        runtime.clock = clock
        for n in (4, 5):
            assert (await client.get(f"/thing/{n}")).headers[STATUS] == "MISS"
        clock.now += TTL + 1
        app.state.gate.clear()  # refreshes block
        for n in (4, 5):
            assert (await client.get(f"/thing/{n}")).headers[STATUS] == "STALE"
        assert len(runtime.refreshes) == 1
        assert runtime.refreshes.stats.rejected == 1
        blocked = await refresh_of(4)
    # the lifespan's CacheSetup.close() waited close_timeout, then cancelled the refresh
    assert isinstance(blocked, asyncio.Task)
    assert blocked.cancelled()
    assert len(runtime.refreshes) == 0


async def test_close_drains_a_refresh_that_finishes_in_time(
    make_backend: Callable[[], Backend] | None,
) -> None:
    settings = BaseCacheSettings(stale_while_revalidate=30, close_timeout=30)
    app = build_refresh_app(make_backend, settings)
    _APP[:] = [app]
    clock = FakeClock(time.time())
    async with served(app) as client:
        CacheSetup.runtime().clock = clock
        await client.get("/thing/6")
        clock.now += TTL + 1
        app.state.gate.clear()
        assert (await client.get("/thing/6")).headers[STATUS] == "STALE"
        refresh = await refresh_of(6)
        asyncio.get_running_loop().call_soon(app.state.gate.set)
    assert isinstance(refresh, asyncio.Task)
    assert refresh.done()
    assert not refresh.cancelled()
    assert app.state.calls == 2


@pytest.mark.redis
async def test_after_a_backend_failure_a_request_makes_no_more_backend_calls(
    redis_process: RedisServer, clean_cache_setup: None
) -> None:
    def make_backend() -> Backend:
        return RedisBackend(aioredis.Redis(host=redis_process.host, port=redis_process.port))

    app = build_refresh_app(
        make_backend, BaseCacheSettings(backend_timeout=0.25, breaker_failures=100)
    )
    async with served(app) as client:
        assert (await client.get("/thing/7")).headers[STATUS] == "MISS"
        breaker = CacheSetup.runtime().breaker
        redis_process.stop()
        before = breaker.stats.snapshot()
        response = await client.get("/thing/8")  # a miss: fetch, lock, store... if it could
        after = breaker.stats.snapshot()
        assert response.status_code == 200
        assert response.headers[STATUS] == "MISS"
        assert after.calls - before.calls == 1
        assert after.failures - before.failures == 1


def test_refresh_scope_is_a_server_scope_of_the_same_request() -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "https",
        "server": ("example.org", 443),
        "client": ("10.0.0.1", 5555),
        "root_path": "",
        "path": "/thing/1",
        "raw_path": b"/thing/1",
        "query_string": b"a=1",
        "method": "HEAD",
        "headers": [
            (b"host", b"example.org"),
            (b"authorization", b"Bearer t"),
            (b"if-none-match", b'"x"'),
            (b"cache-control", b"no-cache"),
            (b"content-length", b"3"),
        ],
        "state": {"pool": "the pool"},
        "app": object(),
        "route": object(),
        "endpoint": object(),
        "path_params": {"n": "1"},
        "fastapi_astack": object(),
        "extensions": {"other": {}},
    }
    new = refresh_scope(scope)
    assert set(new) == {
        "type",
        "asgi",
        "http_version",
        "scheme",
        "server",
        "client",
        "root_path",
        "path",
        "raw_path",
        "query_string",
        "method",
        "headers",
        "state",
    }
    assert new["method"] == "HEAD"
    assert new["headers"] == [(b"host", b"example.org"), (b"authorization", b"Bearer t")]
    assert new["state"] == scope["state"]
    assert new["state"] is not scope["state"]
    assert refresh_ticket(new) is None
    scope["method"] = "GET"
    assert refresh_scope(scope)["method"] == "GET"
    assert refresh_ticket({"extensions": {MARKER: "forged"}}) is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"stale_while_revalidate": -1}, ValueError),
        ({"stale_if_error": float("nan")}, ValueError),
        ({"stale_while_revalidate": "5"}, TypeError),
        ({"stale_if_error": True}, TypeError),
    ],
)
def test_stale_options_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        cache_response(ttl=5, **kwargs)


async def test_lease_forget_skips_the_unlock() -> None:
    locks = MemoryLockManager()
    token = await locks.try_lock(b"k:lock", 60_000)
    assert token is not None
    lease = Lease(locks, b"k:lock", token, 60_000)
    async with lease:
        lease.forget()
    assert await locks.try_lock(b"k:lock", 1000) is None  # still held: it lapses by itself
    await lease.release()  # nothing more to do
    assert await locks.try_lock(b"k:lock", 1000) is None


async def test_refresh_tasks_run_in_the_context_given() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    token = var.set("request")
    seen: list[str] = []

    async def read() -> None:
        seen.append(var.get())

    try:
        tasks = RefreshTasks(limit=2)
        assert tasks.spawn(b"a", read)
        assert tasks.spawn(b"b", read, context=contextvars.Context())
        await tasks.aclose(5)
    finally:
        var.reset(token)
    assert sorted(seen) == ["request", "unset"]


async def test_a_refresh_held_by_another_process_is_not_retried_on_every_hit(
    make_backend: Callable[[], Backend] | None,
) -> None:
    app = build_refresh_app(make_backend, BaseCacheSettings(stale_while_revalidate=30))
    _APP[:] = [app]
    clock = FakeClock(time.time())
    async with served(app) as client:
        runtime = CacheSetup.runtime()
        runtime.clock = clock
        await client.get("/thing/9")
        key, _ = key_of(app, "/thing/{n}", "/thing/9")
        # another process refreshes: it holds the key's lock
        assert await CacheSetup.lock_manager().try_lock(key + b":lock", 60_000) is not None
        clock.now += TTL + 1
        assert (await client.get("/thing/9")).headers[STATUS] == "STALE"
        await asyncio.wait_for(await refresh_of(9), 30)  # found the lock taken: did nothing
        for _ in range(10):
            assert (await client.get("/thing/9")).headers[STATUS] == "STALE"
        assert runtime.refreshes.stats.spawned == 1
        assert app.state.calls == 1
        assert counts() == {
            "misses": 1,
            "stored": 1,
            "stale_served": 11,  # the refresh that found the lock taken is no failure
        }


async def test_a_waiter_serves_what_the_lock_holder_stored(
    make_backend: Callable[[], Backend] | None,
) -> None:
    app = build_refresh_app(make_backend, BaseCacheSettings())
    _APP[:] = [app]
    async with served(app) as client:
        key, fingerprint = key_of(app, "/thing/{n}", "/thing/10")
        locks = CacheSetup.lock_manager()
        token = await locks.try_lock(key + b":lock", 60_000)  # "another process" computes
        assert token is not None
        waiter = asyncio.ensure_future(client.get("/thing/10"))
        flight = CacheSetup.runtime().flight
        for _ in range(100_000):  # yield to the loop until the request is past its lookup
            if key in flight:
                break
            await asyncio.sleep(0)
        assert key in flight
        blob = kernels.write_entry(
            status=200,
            headers=[(b"content-type", b"application/json"), (b"content-length", b"9")],
            body=b'{"x":"y"}',
            created=time.time(),
            ttl=TTL,
            fingerprint=fingerprint,
        )
        await CacheSetup.backend().store(key, blob, 60_000)
        assert await locks.unlock(key + b":lock", token)
        response = await asyncio.wait_for(waiter, 30)
        assert response.status_code == 200
        assert response.headers[STATUS] == "MISS"
        assert response.content == b'{"x":"y"}'
    assert app.state.calls == 0
    assert counts() == {"misses": 1, "lock_waits": 1}


async def test_a_wait_that_times_out_computes_without_storing_or_serves_stale(
    make_backend: Callable[[], Backend] | None,
) -> None:
    settings = BaseCacheSettings(lock_wait_timeout=0.1)
    app = build_refresh_app(make_backend, settings, stale_if_error=60)
    _APP[:] = [app]
    clock = FakeClock(time.time())
    async with served(app) as client:
        CacheSetup.runtime().clock = clock
        key, _ = key_of(app, "/thing/{n}", "/thing/11")
        first = await client.get("/thing/11")
        created = (await stored_entry(11)).created
        # "another process" holds the lock and never finishes
        assert await CacheSetup.lock_manager().try_lock(key + b":lock", 60_000) is not None
        clock.now += TTL + 1  # stale: a miss with a stale-if-error fallback
        stale = await client.get("/thing/11")
        assert stale.headers[STATUS] == "STALE_IF_ERROR"
        assert stale.content == first.content
        clock.now += 120  # past stale_if_error: nothing to fall back on
        computed = await client.get("/thing/11")
        assert computed.headers[STATUS] == "MISS"
        assert computed.json() == {"n": 11, "call": 2}
        assert (await stored_entry(11)).created == created  # not stored: the lock is not ours
    assert counts() == {
        "misses": 3,
        "stored": 1,
        "lock_waits": 2,
        "lock_timeouts": 2,
    }


async def test_a_refresh_re_enters_a_mounted_sub_application(clean_cache_setup: None) -> None:
    """scope["app"] is the mounted FastAPI (it sets it on entry), root_path/path are what it
    was given: the refresh routes the same way and stores the entry of the same key."""
    sub = FastAPI()
    calls: list[int] = []

    @sub.get("/v/{n}")
    @cache_response(ttl=TTL, stale_while_revalidate=30)
    async def v(n: int) -> dict[str, int]:
        calls.append(n)
        return {"n": n, "call": len(calls)}

    root = FastAPI(lifespan=cache_lifespan(prefix="mounted"))
    root.mount("/sub", sub)
    clock = FakeClock(time.time())
    async with served(root) as client:
        runtime = CacheSetup.runtime()
        runtime.clock = clock
        assert (await client.get("/sub/v/1")).json() == {"n": 1, "call": 1}
        clock.now += TTL + 1
        stale = await client.get("/sub/v/1")
        assert stale.headers[STATUS] == "STALE"
        assert runtime.refreshes.stats.spawned == 1
        (task,) = [t for t in asyncio.all_tasks() if t.get_name().startswith("cache-refresh:")]
        await asyncio.wait_for(task, 30)
        hit = await client.get("/sub/v/1")
        assert hit.headers[STATUS] == "HIT"
        assert hit.json() == {"n": 1, "call": 2}
    assert calls == [1, 1]


async def test_an_invalidation_during_a_refresh_fences_it_out(
    make_backend: Callable[[], Backend] | None,
) -> None:
    """The refresh began (generation read) before the invalidation: it must not write its
    now outdated result back (the generation fence holds for background refreshes too)."""
    app = build_refresh_app(make_backend, BaseCacheSettings(stale_while_revalidate=30))
    _APP[:] = [app]
    clock = FakeClock(time.time())
    async with served(app) as client:
        CacheSetup.runtime().clock = clock
        await client.get("/thing/12")
        clock.now += TTL + 1
        app.state.gate.clear()
        assert (await client.get("/thing/12")).headers[STATUS] == "STALE"
        refresh = await refresh_of(12)
        for _ in range(100_000):  # yield to the loop until the refresh's endpoint runs
            if app.state.calls == 2:
                break
            await asyncio.sleep(0)
        assert app.state.calls == 2
        assert await invalidate_namespace() == 1
        app.state.gate.set()
        await asyncio.wait_for(refresh, 30)
        after = await client.get("/thing/12")
        assert after.headers[STATUS] == "MISS"  # nothing was written back
        assert after.json() == {"n": 12, "call": 3}
    assert counts()["refresh_failures"] == 1
