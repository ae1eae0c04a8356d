"""Logging: one record per backend state change with structured extra fields; per-request
events at DEBUG only; JsonFormatter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

import fastapi_cachemate
from fastapi_cachemate import _log
from fastapi_cachemate._runtime import flow as flow_module
from tests.support.apps import build_app, redis_lifespan, served
from tests.support.fixtures import AppFactory
from tests.support.servers import RedisServer

LOGGER = "fastapi_cachemate._runtime.flow"  # the request path's backend calls


@pytest.fixture(autouse=True)
def healthy() -> Iterator[None]:
    """The process-wide lost/back flag starts and ends 'ok' (another test may stop a server)."""
    flow_module._backend_health.down = False
    yield
    flow_module._backend_health.down = False


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.mark.redis
async def test_backend_lost_and_back_one_record_each(
    redis_process: RedisServer, clean_cache_setup: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    app = build_app(redis_lifespan(redis_process))
    async with served(app) as client:
        await client.get("/model/1")
        redis_process.stop()
        for _ in range(3):
            assert (await client.get("/model/1")).status_code == 200
        redis_process.start()
        await client.get("/model/1")
        await client.get("/model/1")

    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1
    lost = warnings[0]
    assert "backend lost" in lost.getMessage()
    assert lost.state == "lost"  # type: ignore[attr-defined]
    assert lost.previous_state == "ok"  # type: ignore[attr-defined]
    assert lost.operation == "fetch"  # type: ignore[attr-defined]
    assert lost.endpoint == "/model/{item_id}"  # type: ignore[attr-defined]
    assert lost.key.startswith("fastapi_cachemate:{")  # type: ignore[attr-defined]
    assert lost.error.startswith("ConnectionError")  # type: ignore[attr-defined]
    infos = records(caplog, logging.INFO)
    assert len(infos) == 1
    assert "backend back" in infos[0].getMessage()
    assert infos[0].state == "ok"  # type: ignore[attr-defined]
    # the failures in between: DEBUG (3 fetches, minus the one that changed state; after its
    # first failure a request makes no further backend call: no lock, no store)
    failures = [r for r in records(caplog, logging.DEBUG) if "failed" in r.getMessage()]
    assert len(failures) == 2


async def test_per_request_events_never_above_debug(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "fastapi_cachemate")
    app = app_factory(max_entry_bytes=1000)
    async with served(app) as client:
        for path in ("/big", "/big", "/cookie", "/private", "/stream", "/async/1", "/async/1"):
            await client.get(path)
        await client.post("/post")
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert loud == []
    too_large = [r for r in caplog.records if getattr(r, "reason", None) == "too_large"]
    assert len(too_large) == 2
    assert too_large[0].endpoint == "/big"  # type: ignore[attr-defined]
    cookie = [r for r in caplog.records if getattr(r, "reason", None) == "set-cookie"]
    assert len(cookie) == 1
    assert cookie[0].endpoint == "/cookie"  # type: ignore[attr-defined]


def test_backend_health_alone(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.health")
    caplog.set_level(logging.DEBUG, "tests.health")
    health = _log.BackendHealth(logger)
    health.recovered("fetch", key=b"k", endpoint="/e")  # not down: nothing
    assert caplog.records == []
    health.failed(OSError("x"), "fetch", key=b"k", endpoint="/e")
    health.failed(OSError("y"), "store", key="k2", endpoint="/e")
    health.recovered("fetch", key=b"k", endpoint="/e")
    health.recovered("fetch", key=b"k", endpoint="/e")
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.INFO]
    assert caplog.records[1].key == "k2"  # type: ignore[attr-defined]
    assert health.down is False


def test_fields() -> None:
    assert _log.fields() == {}
    assert _log.fields(key=b"p:{x}", endpoint="/e", reason="r", state=None, n=1) == {
        "key": "p:{x}",
        "endpoint": "/e",
        "reason": "r",
        "n": 1,
    }


def test_json_formatter() -> None:
    record = logging.LogRecord(
        "fastapi_cachemate.cache", logging.WARNING, "f", 1, "hi %s", ("x",), None
    )
    for name, value in _log.fields(key=b"k", endpoint="/e", reason="too_large", size=3).items():
        setattr(record, name, value)
    out = json.loads(fastapi_cachemate.JsonFormatter().format(record))
    assert out["message"] == "hi x"
    assert out["level"] == "WARNING"
    assert out["logger"] == "fastapi_cachemate.cache"
    assert (out["key"], out["endpoint"], out["reason"], out["size"]) == ("k", "/e", "too_large", 3)
    assert "args" not in out
    assert "msg" not in out
