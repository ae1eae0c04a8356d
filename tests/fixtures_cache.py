"""Fixtures of the FastAPI-layer tests: an app set up on the memory backend or on Redis.

Also what tests of custom backends share: ``SeedDictBackend`` and ``SeedRedisBackend`` (a
user's backends implementing only the seed's four methods), ``custom_app`` (the test app
set up on given backend and lock manager factories) and ``key_of`` (the key the decorator
uses for a request).

Imported by the tests/test_cache_*.py modules (``from tests.fixtures_cache import *``) so that
tests/conftest.py stays the backends' file.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.routing import APIRoute

from fastapi_cachemate import BaseCacheSettings, CacheSetup
from fastapi_cachemate._route.keyer import RouteKeyer
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.types import Backend, LockManager
from tests.apps import Lifespan, build_app
from tests.servers import RedisServer

# Fixtures are registered under their ``name=``; a test module imports the functions:
#   from tests.fixtures_cache import app_factory_fixture, backend_kind_fixture
__all__ = [
    "AppFactory",
    "SeedDictBackend",
    "SeedRedisBackend",
    "app_factory_fixture",
    "backend_kind_fixture",
    "custom_app",
    "key_of",
]

AppFactory = Callable[..., FastAPI]


@pytest.fixture(
    name="backend_kind", params=["memory", pytest.param("redis", marks=pytest.mark.redis)]
)
def backend_kind_fixture(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def _lifespan(
    make_backend: Callable[[], Backend] | None,
    settings: BaseCacheSettings,
    make_locks: Callable[[Backend], LockManager] | None = None,
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        backend = None if make_backend is None else make_backend()
        locks = None if make_locks is None or backend is None else make_locks(backend)
        CacheSetup.setup(backend=backend, lock_manager=locks, settings=settings, prefix="test")
        try:
            yield
        finally:
            await CacheSetup.close()

    return lifespan


@pytest.fixture(name="app_factory")
def app_factory_fixture(
    request: pytest.FixtureRequest, backend_kind: str, clean_cache_setup: None
) -> AppFactory:
    """build(**settings) -> the test app, set up on the parametrised backend by its lifespan."""
    server: RedisServer | None = None
    if backend_kind == "redis":
        server = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_client")  # flushes the database before the test

    def build(**settings: Any) -> FastAPI:
        make_backend: Callable[[], Backend] | None = None
        if server is not None:
            host, port = server.host, server.port

            def make_backend() -> Backend:
                return RedisBackend(client=aioredis.Redis(host=host, port=port))

        # The first command of a new client connects (TCP, HELLO, CLIENT SETINFO): on a loaded
        # 2-core machine that can exceed the default backend_timeout (0.25 s), and a timed-out
        # call fails open (a correct miss, not what these tests check). Timeouts are the
        # business of tests/test_stampede*.py and tests/test_breaker.py.
        settings.setdefault("backend_timeout", 5.0)
        app = build_app(_lifespan(make_backend, BaseCacheSettings(**settings)))
        app.state.backend_kind = backend_kind
        return app

    return build


def custom_app(
    make_backend: Callable[[], Backend],
    make_locks: Callable[[Backend], LockManager] | None = None,
    **settings: Any,
) -> FastAPI:
    """The test app (tests/apps.py), its lifespan setting the cache up on make_backend()
    and make_locks(backend) (None: the default lock manager), prefix "test"."""
    settings.setdefault("backend_timeout", 5.0)  # see app_factory
    return build_app(_lifespan(make_backend, BaseCacheSettings(**settings), make_locks))


def key_of(app: FastAPI, route_path: str, url_path: str) -> tuple[bytes, bytes]:
    """The (key, fingerprint) the decorator uses for a GET of url_path on that route."""
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == route_path)
    return RouteKeyer.for_route(route, prefix=CacheSetup.prefix()).key_for(path=url_path)


class SeedDictBackend(Backend):
    """A user's in-process backend with the seed's four methods only."""

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
