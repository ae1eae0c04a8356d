"""A real uvicorn process over TCP serving examples/app.py: MISS then HIT."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
READY = "Application startup complete"
START_TIMEOUT = 30.0


@contextmanager
def uvicorn_process(app: str, env: dict[str, str]) -> Iterator[str]:
    """Start uvicorn on a free port; yield its base URL once the lifespan has run."""
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
        first = client.get("/blogs/42")
        second = client.get("/blogs/42")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"blog_id": 42}
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert second.headers["cache-control"] == "max-age=300"
    assert second.headers["content-length"] == "14"


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
