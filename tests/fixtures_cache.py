"""Fixtures of the FastAPI-layer tests: an app set up on the memory backend or on Redis.

Imported by the tests/test_cache_*.py modules (``from tests.fixtures_cache import *``) so that
tests/conftest.py stays the backends' file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from fastapi_cachemate import BaseCacheSettings, CacheSetup
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.types import Backend
from tests.apps import Lifespan, build_app
from tests.servers import RedisServer

# Fixtures are registered under their ``name=``; a test module imports the functions:
#   from tests.fixtures_cache import app_factory_fixture, backend_kind_fixture
__all__ = ["AppFactory", "app_factory_fixture", "backend_kind_fixture"]

AppFactory = Callable[..., FastAPI]


@pytest.fixture(
    name="backend_kind", params=["memory", pytest.param("redis", marks=pytest.mark.redis)]
)
def backend_kind_fixture(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def _lifespan(make_backend: Callable[[], Backend] | None, settings: BaseCacheSettings) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        backend = None if make_backend is None else make_backend()
        CacheSetup.setup(backend=backend, settings=settings, prefix="test")
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
