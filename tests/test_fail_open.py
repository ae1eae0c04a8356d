"""Fail-open is total: whatever a backend or a lock manager raises or answers, and whatever
bytes (or Redis types) sit in the keys the cache owns, requests are answered 200 with the
endpoint's body; the failures are counted, logged once per state change and fed to the
breaker. The endpoint's own exceptions still propagate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from unittest.mock import AsyncMock

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI

from fastapi_cachemate import (
    Backend,
    BaseCacheSettings,
    CacheSetup,
    LockManager,
    cache_response,
    metrics,
)
from fastapi_cachemate._runtime.breaker import BackendUnavailable
from fastapi_cachemate.core import layout
from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.locks.redis import RedisLockManager
from fastapi_cachemate.core.scripts import new_token
from fastapi_cachemate.invalidation import invalidate_tags, invalidates
from tests.support.apps import client_for, custom_app, served
from tests.support.backends import SeedDictBackend, SeedRedisBackend
from tests.support.entries import key_of
from tests.support.servers import RedisServer

pytestmark = pytest.mark.usefixtures("clean_cache_setup")

STATUS = "x-cache-status"
BODY = {"item_id": 5, "q": None}


# --- the faults: what a broken method does instead of answering ---------------------------------
async def _raise(exc: Exception) -> Any:
    raise exc


def _raising(exc_type: type[Exception]) -> Callable[..., Any]:
    return lambda *args, **kwargs: _raise(exc_type("injected"))


def _answering(value: Any) -> Callable[..., Any]:
    async def answer(*args: Any, **kwargs: Any) -> Any:
        return value

    return answer


def _raises_before_awaiting(*args: Any, **kwargs: Any) -> Any:
    raise ValueError("injected, synchronously")


def _not_awaitable(*args: Any, **kwargs: Any) -> Any:
    return None


FAULTS: dict[str, Callable[..., Any]] = {
    "RuntimeError": _raising(RuntimeError),
    "TypeError": _raising(TypeError),
    "KeyError": _raising(KeyError),
    "NotImplementedError": _raising(NotImplementedError),
    "ZeroDivisionError": _raising(ZeroDivisionError),
    "raises before awaiting": _raises_before_awaiting,
    "not awaitable": _not_awaitable,
    "an object": _answering(object()),
    "a float": _answering(2.5),
    "a 3-tuple": _answering((1, 2, 3)),
    "a dict": _answering({"a": 1}),
}


def _break(target: Any, method: str, fault: str) -> None:
    setattr(target, method, FAULTS[fault])  # the instance's attribute hides the class's


def _backend_errors() -> int:
    return CacheSetup.stats()["totals"]["backend_errors"]


async def _answered_twice(app: FastAPI, path: str = "/async/5") -> list[httpx.Response]:
    async with served(app) as client:
        return [await client.get(path) for _ in range(2)]


def _assert_served(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code == 200
        assert response.json() == BODY


# --- custom backends and lock managers in every failure mode ------------------------------------
#: the methods each kind of backend has called on a miss
BACKEND_METHODS = {
    "memory": ("fetch", "begin_compute", "store_if_generation"),
    "redis": ("fetch", "begin_compute", "lock_and_fetch", "store_if_generation_and_unlock"),
    "seed": ("get", "set"),  # a seed-interface backend: the defaults call these
}


def _cases(methods_by_kind: dict[str, tuple[str, ...]]) -> list[Any]:
    """(kind, method, fault) for every method of every kind and every fault."""
    return [
        pytest.param(kind, method, fault, marks=[pytest.mark.redis] if kind == "redis" else [])
        for kind, methods in methods_by_kind.items()
        for method in methods
        for fault in FAULTS
    ]


def _redis_server(request: pytest.FixtureRequest) -> RedisServer:
    """The session's redis-server, its database flushed."""
    server: RedisServer = request.getfixturevalue("redis_server")
    with redis.Redis(host=server.host, port=server.port) as client:
        client.flushdb()
    return server


def _backend_factory(kind: str, request: pytest.FixtureRequest) -> Callable[[], Backend]:
    if kind == "memory":
        return lambda: MemoryBackend(max_bytes=1 << 20)
    if kind == "seed":
        return SeedDictBackend
    server = _redis_server(request)
    return lambda: RedisBackend(aioredis.Redis(host=server.host, port=server.port))


@pytest.mark.parametrize(("kind", "method", "fault"), _cases(BACKEND_METHODS))
async def test_a_broken_backend_method_is_answered_by_the_endpoint(
    request: pytest.FixtureRequest, kind: str, method: str, fault: str
) -> None:
    make = _backend_factory(kind, request)

    def make_broken() -> Backend:
        backend = make()
        _break(backend, method, fault)
        return backend

    app = custom_app(make_broken)
    _assert_served(await _answered_twice(app))
    assert _backend_errors() >= 1
    assert app.state.calls["async"] == 2  # nothing was served from the broken backend


LOCK_METHODS = {
    "memory": ("try_lock", "unlock"),
    "redis": ("try_lock", "unlock"),
    "seed": ("acquire", "release"),  # a seed-interface lock manager: the defaults call these
}


class SeedLocks(LockManager):
    """A user's lock manager with the seed's two methods only (always free)."""

    async def acquire(self, lock_key: str) -> bool:
        return True

    async def release(self, lock_key: str) -> bool:
        return True


@pytest.mark.parametrize(("kind", "method", "fault"), _cases(LOCK_METHODS))
async def test_a_broken_lock_manager_method_is_answered_by_the_endpoint(
    request: pytest.FixtureRequest, kind: str, method: str, fault: str
) -> None:
    make = _backend_factory("redis" if kind == "redis" else "memory", request)
    make_locks: dict[str, Callable[[Backend], LockManager]] = {
        "memory": lambda backend: MemoryLockManager(),
        "redis": RedisLockManager,
        "seed": lambda backend: SeedLocks(),
    }

    def make_broken(backend: Backend) -> LockManager:
        locks = make_locks[kind](backend)
        _break(locks, method, fault)
        return locks

    if kind == "redis" and method == "try_lock":
        # a RedisBackend takes its lock in its own lock_and_fetch: break a custom backend's
        make = _seed_redis_factory(request)
    app = custom_app(make, make_broken)
    responses = await _answered_twice(app)
    _assert_served(responses)
    if method in ("try_lock", "acquire"):
        assert _backend_errors() >= 1  # no lock: computed, not stored
        assert app.state.calls["async"] == 2
    else:  # the unlock failed after the store: the lock expires by itself
        assert responses[1].headers[STATUS] == "HIT"


def _seed_redis_factory(request: pytest.FixtureRequest) -> Callable[[], Backend]:
    server = _redis_server(request)
    return lambda: SeedRedisBackend(aioredis.Redis(host=server.host, port=server.port))


async def test_the_seeds_mock_pattern_serves_requests() -> None:
    app = FastAPI()
    calls: list[int] = []

    @app.get("/blogs/{blog_id}")
    @cache_response(ttl=300)
    async def get_blog(blog_id: int) -> dict[str, int]:
        calls.append(blog_id)
        return {"blog_id": blog_id}

    CacheSetup.setup(AsyncMock(spec=Backend), AsyncMock(spec=LockManager))
    async with client_for(app) as client:
        responses = [await client.get("/blogs/7") for _ in range(8)]
    assert [r.status_code for r in responses] == [200] * 8
    assert all(r.json() == {"blog_id": 7} for r in responses)
    assert calls == [7] * 8
    assert _backend_errors() >= 1
    assert CacheSetup.runtime().breaker.state.value == "open"  # fed like a dead backend


async def test_failures_are_logged_once_per_state_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = SeedDictBackend()
    app = custom_app(lambda: backend, breaker_failures=100)
    async with served(app) as client:
        assert (await client.get("/async/5")).headers[STATUS] == "MISS"  # healthy: stored
        errors_before = _backend_errors()
        _break(backend, "get", "RuntimeError")
        with caplog.at_level(logging.DEBUG, logger="fastapi_cachemate"):
            for _ in range(4):
                assert (await client.get("/async/5")).json() == BODY
            del backend.get  # healed: the class's method again
            assert (await client.get("/async/5")).headers[STATUS] == "HIT"
    changes = [r for r in caplog.records if getattr(r, "state", None) in ("lost", "ok")]
    assert [(r.levelno, r.state) for r in changes] == [  # type: ignore[attr-defined]
        (logging.WARNING, "lost"),
        (logging.INFO, "ok"),
    ]
    assert "RuntimeError: injected" in changes[0].getMessage()
    assert _backend_errors() - errors_before == 4


async def test_the_breaker_opens_on_junk_replies_as_on_connection_errors() -> None:
    def make_broken() -> Backend:
        backend = SeedDictBackend()
        _break(backend, "get", "an object")
        return backend

    app = custom_app(make_broken, breaker_failures=2, breaker_reset=3600)
    async with served(app) as client:
        for _ in range(4):
            assert (await client.get("/async/5")).json() == BODY
        breaker = CacheSetup.runtime().breaker
        assert breaker.state.value == "open"
        assert breaker.stats.failures == 2
        assert breaker.stats.short_circuited == 2  # no call made while open


async def test_the_endpoints_own_exception_propagates() -> None:
    app = FastAPI()

    @app.get("/boom")
    @cache_response(ttl=60)
    async def boom() -> dict[str, int]:
        raise RuntimeError("the endpoint's own bug")

    backend = SeedDictBackend()
    _break(backend, "get", "TypeError")
    CacheSetup.setup(backend, SeedLocks())
    async with client_for(app) as client:
        with pytest.raises(RuntimeError, match="the endpoint's own bug"):
            await client.get("/boom")


# --- junk in every kind of key the cache owns ---------------------------------------------------
Writer = Callable[[aioredis.Redis, bytes], Awaitable[Any]]

JUNK_VALUES: dict[str, Writer] = {
    "empty string": lambda r, k: r.set(k, b""),
    "junk bytes": lambda r, k: r.set(k, b"\xff\x00junk"),
    "a number": lambda r, k: r.set(k, b"1.5"),
    "a list": lambda r, k: r.rpush(k, b"a", b"b"),
    "a hash": lambda r, k: r.hset(k, b"f", b"v"),
    "a set": lambda r, k: r.sadd(k, b"m"),
}

TAG = "blog:5"


def _owned_key(kind: str, key: bytes, prefix: str) -> bytes:
    if kind == "entry":
        return key
    if kind == "generation":
        return layout.generation_key(key)
    if kind == "lock":
        return key + b":lock"
    return layout.tag_key(prefix.encode(), TAG)


def _tagged_app(
    make_backend: Callable[[], Backend],
    make_locks: Callable[[Backend], LockManager] | None = None,
    **settings: Any,
) -> FastAPI:
    app = custom_app(make_backend, make_locks, **settings)

    @app.get("/tagged/{item_id}")
    @cache_response(ttl=60, tags=["blog:{item_id}"])
    async def tagged(item_id: int, q: str | None = None) -> dict[str, Any]:
        app.state.calls["tagged"] += 1
        return {"item_id": item_id, "q": q}

    @app.put("/tagged/{item_id}")
    @invalidates(tags=["blog:{item_id}"])
    async def write(item_id: int) -> dict[str, int]:
        return {"written": item_id}

    return app


@pytest.mark.redis
@pytest.mark.parametrize("junk", JUNK_VALUES)
@pytest.mark.parametrize("kind", ["entry", "generation", "lock", "tag set"])
async def test_junk_in_an_owned_redis_key_is_answered_by_the_endpoint(
    redis_server: RedisServer, redis_client: aioredis.Redis, kind: str, junk: str
) -> None:
    def make() -> Backend:
        return RedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))

    app = _tagged_app(make, lock_wait_timeout=0.05)  # a junk lock is never released
    async with served(app) as client:
        key, _ = key_of(app, "/tagged/{item_id}", "/tagged/5")
        await JUNK_VALUES[junk](redis_client, _owned_key(kind, key, CacheSetup.prefix()))
        responses = [await client.get("/tagged/5") for _ in range(2)]
        written = await client.put("/tagged/5")
    _assert_served(responses)
    assert written.status_code == 200
    assert written.json() == {"written": 5}


#: what may sit at a lock key without an expiry: no lock of ours (each has one)
LOCK_JUNK: dict[str, Writer] = {
    **JUNK_VALUES,
    "a token without expiry": lambda r, k: r.set(k, new_token()),
}
#: the store's lock_and_fetch (RedisBackend's own locks), or a lock manager's try_lock
LOCK_PATHS: dict[str, Callable[[Backend], LockManager] | None] = {
    "lock_and_fetch": None,
    "try_lock": lambda backend: RedisLockManager(RedisBackend(backend.client)),
}


@pytest.mark.redis
@pytest.mark.parametrize("junk", LOCK_JUNK)
@pytest.mark.parametrize("path", LOCK_PATHS)
async def test_junk_at_the_lock_key_is_taken_over_without_waiting(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    path: str,
    junk: str,
) -> None:
    def make() -> Backend:
        return RedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))

    metrics.reset()
    # A waiter for the junk "lock" would wait lock_wait_timeout, then compute without storing.
    app = _tagged_app(make, LOCK_PATHS[path], lock_wait_timeout=60)
    async with served(app) as client:
        assert CacheSetup.lock_manager().shares_store(CacheSetup.backend()) is (path != "try_lock")
        key, _ = key_of(app, "/tagged/{item_id}", "/tagged/5")
        await LOCK_JUNK[junk](redis_client, key + b":lock")
        with caplog.at_level(logging.WARNING, logger="fastapi_cachemate"):
            first = await asyncio.wait_for(client.get("/tagged/5"), timeout=30)  # << 60 s
            second = await client.get("/tagged/5")
    _assert_served([first, second])
    assert first.headers[STATUS] == "MISS"
    assert second.headers[STATUS] == "HIT"  # the entry was stored under the lock taken over
    assert app.state.calls["tagged"] == 1
    assert [r.getMessage() for r in caplog.records if getattr(r, "reason", "") == "junk_lock"] == [
        f"junk at lock key {key + b':lock'!r} (no expiry: no lock of ours) removed; the lock "
        "is taken"
    ]
    assert metrics.snapshot()["totals"]["lock_waits"] == 0


@pytest.mark.parametrize("kind", ["entry", "generation", "lock", "tag set"])
async def test_junk_in_an_owned_key_of_the_in_process_store_is_answered(kind: str) -> None:
    app = _tagged_app(lambda: MemoryBackend(max_bytes=1 << 20))
    async with served(app) as client:
        key, _ = key_of(app, "/tagged/{item_id}", "/tagged/5")
        owned = _owned_key(kind, key, CacheSetup.prefix())
        await CacheSetup.backend().store(owned, b"\xff\x00junk", 60_000)
        responses = [await client.get("/tagged/5") for _ in range(2)]
    _assert_served(responses)
    assert responses[1].headers[STATUS] == "HIT"  # the junk entry was overwritten


@pytest.mark.redis
async def test_invalidating_a_junk_tag_set_raises_backend_unavailable(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    CacheSetup.setup(
        RedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port)),
        settings=BaseCacheSettings(),
        prefix="test",
    )
    await redis_client.set(layout.tag_key(b"test", TAG), b"junk")
    with pytest.raises(BackendUnavailable) as caught:
        await invalidate_tags(TAG)
    assert "WRONGTYPE" in str(caught.value.__cause__)
