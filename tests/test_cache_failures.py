"""The cache never breaks a request: bad entries, a dead backend, unstorable responses, no setup."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._request import pipeline
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.settings import BaseCacheSettings
from tests.support.apps import build_app, client_for, served
from tests.support.entries import key_of
from tests.support.fixtures import AppFactory
from tests.support.servers import RedisServer

STATUS = "x-cache-status"


def _entry(fingerprint: bytes, **overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        "body": b"{}",
        "created": time.time(),
        "ttl": 60.0,
        "fingerprint": fingerprint,
    }
    fields.update(overrides)
    blob: bytes = kernels.write_entry(**fields)
    return blob


# What the seed (v0.1.1) stored: a marker byte (0 plain, 1 zlib) + orjson of
# {"content": ..., "meta": {"compute_ms": ...}} (core/helpers.py _pack_payload).
SEED_JSON = b'{"content":{"item_id":9,"q":null},"meta":{"compute_ms":1.5}}'


def _other_version(fp: bytes, version: int) -> bytes:
    blob = _entry(fp)
    assert blob[:6] == b"\x9e\xa3cmE\x01"  # docs/entry-format.md: fixarray 14, "cmE", 1
    return blob[:5] + bytes([version]) + blob[6:]


BAD_ENTRIES: dict[str, Callable[[bytes], bytes]] = {
    "seed format": lambda fp: b"\x00" + SEED_JSON,
    "seed format, zlib": lambda fp: b"\x01" + zlib.compress(SEED_JSON, 5),
    "format version 0": lambda fp: _other_version(fp, 0),
    "format version 2 (newer)": lambda fp: _other_version(fp, 2),
    "truncated to the header": lambda fp: _entry(fp)[:6],
    "garbage": lambda fp: b"\x00garbage\xff" * 3,
    "empty": lambda fp: b"",
    "truncated": lambda fp: _entry(fp)[:-7],
    "bit-flipped": lambda fp: bytes([_entry(fp)[0] ^ 0x40]) + _entry(fp)[1:],
    "foreign fingerprint": lambda fp: _entry(b"\x01" * 8),
    "no fingerprint": lambda fp: _entry(b""),
    "expired": lambda fp: _entry(fp, created=time.time() - 3600),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
async def test_bad_bytes_at_the_key_are_a_miss_and_get_overwritten(
    app_factory: AppFactory, case: str
) -> None:
    app = app_factory()
    async with served(app) as client:
        key, fingerprint = key_of(app, "/async/{item_id}", "/async/9")
        backend = CacheSetup.backend()
        await backend.store(key, BAD_ENTRIES[case](fingerprint), 60_000)
        response = await client.get("/async/9")
        assert response.status_code == 200
        assert response.headers[STATUS] == "MISS"
        assert response.json() == {"item_id": 9, "q": None}
        stored = await backend.fetch(key)
        assert stored is not None
        entry = kernels.read_entry(stored, time.time(), fingerprint)
        assert entry is not None
        assert entry.body == response.content
        again = await client.get("/async/9")
        assert again.headers[STATUS] == "HIT"
    assert app.state.calls["async"] == 1


@pytest.mark.redis
async def test_a_value_of_another_redis_type_is_a_miss_and_gets_overwritten(
    redis_server: RedisServer, clean_cache_setup: None
) -> None:
    """GET on a list answers WRONGTYPE (a RedisError): a miss for that request, then the
    SET replaces the list. One error is no outage: the breaker stays closed."""
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    await client.flushdb()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        settings = BaseCacheSettings(backend_timeout=5)  # see tests/support/fixtures.py
        CacheSetup.setup(backend=RedisBackend(client), prefix="wrongtype", settings=settings)
        yield
        await CacheSetup.reset()

    app = build_app(lifespan)
    async with served(app) as http:
        key, _ = key_of(app, "/async/{item_id}", "/async/9")
        await client.rpush(key, b"not", b"an", b"entry")
        first = await http.get("/async/9")
        assert first.status_code == 200
        assert first.headers[STATUS] == "MISS"
        assert first.json() == {"item_id": 9, "q": None}
        assert await client.type(key) == b"string"
        assert (await http.get("/async/9")).headers[STATUS] == "HIT"
        assert CacheSetup.runtime().breaker.state.value == "closed"
    assert app.state.calls["async"] == 1


@pytest.mark.redis
async def test_the_decorator_uses_the_keyers_key(redis_server: RedisServer) -> None:
    """key_of() above computes what the decorator stores (checked on Redis's keyspace)."""
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    await client.flushdb()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        settings = BaseCacheSettings(backend_timeout=5)  # see tests/support/fixtures.py
        CacheSetup.setup(backend=RedisBackend(client), prefix="keycheck", settings=settings)
        yield
        await CacheSetup.reset()

    app = build_app(lifespan)
    async with served(app) as http:
        assert (await http.get("/async/4")).headers[STATUS] == "MISS"
        stored = await client.keys("keycheck:*}")  # entries, not their K:gen keys
        assert stored == [key_of(app, "/async/{item_id}", "/async/4")[0]]


@pytest.mark.redis
async def test_backend_stopped_the_endpoint_answers(
    redis_process: RedisServer, clean_cache_setup: None
) -> None:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # No client retries: redis-py's default retries with backoff (about 4 s a call);
        # bounding that is the circuit breaker's job (tests/test_breaker.py), not this test's.
        client = aioredis.Redis(
            host=redis_process.host,
            port=redis_process.port,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), retries=0),
        )
        # a generous backend_timeout: a reconnect after the restart on a loaded machine must
        # not time out (that would be one more failure: a correct miss, not what is counted)
        settings = BaseCacheSettings(backend_timeout=5)
        CacheSetup.setup(backend=RedisBackend(client), settings=settings)
        yield
        await CacheSetup.close()

    app = build_app(lifespan)
    async with served(app) as client:
        assert (await client.get("/model/1")).headers[STATUS] == "MISS"
        assert (await client.get("/model/1")).headers[STATUS] == "HIT"
        redis_process.stop()
        for _ in range(2):
            down = await client.get("/model/1")
            assert down.status_code == 200
            assert down.headers[STATUS] == "MISS"
            assert down.json() == {"id": 1, "name": "item 1"}
        redis_process.start()
        assert (await client.get("/model/1")).headers[STATUS] == "MISS"
        assert (await client.get("/model/1")).headers[STATUS] == "HIT"
    assert app.state.calls["model"] == 4


async def test_too_large_to_store_is_served_not_stored(app_factory: AppFactory) -> None:
    app = app_factory(max_entry_bytes=1000)
    async with served(app) as client:
        for _ in range(2):
            response = await client.get("/big")
            assert response.status_code == 200
            assert response.headers[STATUS] == "MISS"
            assert len(response.content) == 50_000
        assert (await client.get("/json")).headers[STATUS] == "MISS"
        assert (await client.get("/json")).headers[STATUS] == "HIT"
    assert app.state.calls["big"] == 2


async def test_encoding_error_skips_the_store(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**_: Any) -> bytes:
        raise ValueError("cannot encode this entry")

    app = app_factory()
    async with served(app) as client:
        monkeypatch.setattr(kernels, "write_entry", refuse)
        for _ in range(2):
            response = await client.get("/async/1")
            assert response.status_code == 200
            assert response.headers[STATUS] == "MISS"
    assert app.state.calls["async"] == 2


async def test_decorator_before_setup_answers_and_logs_once(
    clean_cache_setup: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline._Unconfigured, "logged", False)
    app = build_app(lifespan=None)
    caplog.set_level(logging.WARNING, logger="fastapi_cachemate._request.pipeline")
    async with client_for(app) as client:
        for url in ("/async/1", "/async/1", "/model/2", "/json"):
            response = await client.get(url)
            assert response.status_code == 200
            assert STATUS not in response.headers
        assert (await client.get("/model/2")).json() == {"id": 2, "name": "item 2"}
    assert app.state.calls["async"] == 2
    warnings = [r for r in caplog.records if "CacheSetup.setup()" in r.getMessage()]
    assert len(warnings) == 1


async def test_after_close_answers_from_the_endpoint(clean_cache_setup: None) -> None:
    app = build_app(lifespan=None)
    CacheSetup.setup()
    async with client_for(app) as client:
        assert (await client.get("/async/1")).headers[STATUS] == "MISS"
        await CacheSetup.close()
        after = await client.get("/async/1")
        assert after.status_code == 200
        assert STATUS not in after.headers
    assert app.state.calls["async"] == 2
