"""A real uvicorn process over TCP serving examples/app.py: MISS then HIT."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.servers import RedisServer, uvicorn_server


@contextmanager
def uvicorn_process(app: str, env: dict[str, str]) -> Iterator[str]:
    """Start uvicorn on a free port; yield its base URL once it listens."""
    with uvicorn_server(app, env) as server:
        yield server.url


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CACHEMATE_REDIS_URL"}
    env.update(extra)
    return env


def _miss_then_hit(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        started = time.time()
        first = client.get("/blogs/42")
        second = client.get("/blogs/42")
        elapsed = time.time() - started
        # a conditional request: 304 with the validators and the server's Date, no body
        etag = second.headers["etag"]
        not_modified = client.get("/blogs/42", headers={"if-none-match": f'W/{etag}, "x"'})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"blog_id": 42}
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    # max-age is the remaining freshness: the README's 300 less the whole seconds gone by
    assert first.headers["cache-control"] == "max-age=300"
    max_age = int(second.headers["cache-control"].removeprefix("max-age="))
    assert math.floor(300 - elapsed) <= max_age <= 300
    assert max_age + int(second.headers["age"]) <= 300
    assert second.headers["content-length"] == "14"
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert not_modified.headers.get_list("date") == [not_modified.headers["date"]]
    assert not_modified.headers["cache-control"].startswith("max-age=")
    assert "content-length" not in not_modified.headers


def test_uvicorn_in_process_store() -> None:
    with uvicorn_process("examples.app:app", _env()) as base_url:
        _miss_then_hit(base_url)


@pytest.mark.redis
def test_uvicorn_on_redis(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        client.flushdb()
        with uvicorn_process(
            "examples.app:app", _env(CACHEMATE_REDIS_URL=redis_server.url)
        ) as base_url:
            _miss_then_hit(base_url)
        # one entry (and its generation key, docs/keys-and-invalidation.md)
        assert len(client.keys("*}")) == 1
    finally:
        client.close()
