"""Fixtures of the FastAPI-layer tests, registered for the whole suite by tests/conftest.py.

- ``backend_kind`` (parametrised ``memory`` / ``redis``): which backend the app is set up on.
- ``make_backend``: a factory of that backend (None: the default in-process store; for
  ``redis``, a RedisBackend on ``redis_server``, whose database is flushed first).
- ``app_factory``: ``build(**settings)`` -> ``build_app`` (tests/support/apps.py) set up on
  that backend by its lifespan, prefix ``test``.
- ``http_app``: the same for ``build_http_app``.
- ``key_kernels`` (parametrised ``c`` / ``python``): the key builder of _route/keyer.py replaced by
  the C kernels or by their pure-Python twin for the test.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from fastapi_cachemate import BaseCacheSettings, _native, _pure
from fastapi_cachemate._route import keyer
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.types import Backend
from tests.support.apps import Lifespan, build_app, build_http_app, cache_lifespan
from tests.support.servers import RedisServer

__all__ = ["AppFactory", "BackendFactory", "HttpApp"]

AppFactory = Callable[..., FastAPI]
HttpApp = Callable[..., FastAPI]
BackendFactory = Callable[[], Backend] | None


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_backend(
    request: pytest.FixtureRequest, backend_kind: str, clean_cache_setup: None
) -> BackendFactory:
    """Makes the parametrised backend: None for memory (the default store), else a
    RedisBackend with a client of its own on redis_server, whose database is flushed.
    CacheSetup is reset before and after the test."""
    if backend_kind != "redis":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    request.getfixturevalue("redis_client")  # flushes the database before the test
    host, port = server.host, server.port

    def make() -> Backend:
        return RedisBackend(client=aioredis.Redis(host=host, port=port))

    return make


def _app_factory(
    builder: Callable[[Lifespan], FastAPI], make_backend: BackendFactory, backend_kind: str
) -> AppFactory:
    def build(**settings: Any) -> FastAPI:
        # The first command of a new client connects (TCP, HELLO, CLIENT SETINFO): on a loaded
        # 2-core machine that can exceed the default backend_timeout (0.25 s), and a timed-out
        # call fails open (a correct miss, not what these tests check). Timeouts are the
        # business of tests/test_stampede*.py and tests/test_breaker.py.
        settings.setdefault("backend_timeout", 5.0)
        app = builder(cache_lifespan(make_backend, BaseCacheSettings(**settings), "test"))
        app.state.backend_kind = backend_kind
        return app

    return build


@pytest.fixture
def app_factory(
    make_backend: BackendFactory, backend_kind: str, clean_cache_setup: None
) -> AppFactory:
    """build(**settings) -> the test app, set up on the parametrised backend by its lifespan."""
    return _app_factory(build_app, make_backend, backend_kind)


@pytest.fixture
def http_app(make_backend: BackendFactory, backend_kind: str, clean_cache_setup: None) -> HttpApp:
    """build(**settings) -> the HTTP test app on the parametrised backend."""
    return _app_factory(build_http_app, make_backend, backend_kind)


@pytest.fixture(params=[_native, _pure], ids=["c", "python"])
def key_kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Run a test with the C key builder and with its pure-Python twin."""
    module: ModuleType = request.param
    monkeypatch.setattr(keyer, "kernels", module)
    return module
