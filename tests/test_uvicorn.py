"""A real uvicorn process over TCP serving examples/app.py: MISS then HIT."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
# uvicorn runs the lifespan ("Application startup complete") before it binds the socket;
# "Uvicorn running on" comes once it listens.
READY = "Uvicorn running on"
START_TIMEOUT = 30.0


@contextmanager
def uvicorn_process(app: str, env: dict[str, str]) -> Iterator[str]:
    """Start uvicorn on a free port; yield its base URL once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = threading.Event()
    log: deque[str] = deque(maxlen=100)

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            if READY in line:
                ready.set()
        ready.set()  # the process ended: wake the waiter, which then sees it is not running

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        if not ready.wait(START_TIMEOUT) or proc.poll() is not None:
            pytest.fail(f"uvicorn did not start:\n{''.join(log)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


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
