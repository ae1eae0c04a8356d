"""Multiprocess mode for real: uvicorn --workers 2 with PROMETHEUS_MULTIPROC_DIR, cached
requests over TCP, then the workers' multiprocess files summed by prometheus_client.
And a forked child (gunicorn --preload style) adds only its own growth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import deque
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
READY = "Application startup complete"
WORKERS = 2
REQUESTS = 30

APP = textwrap.dedent(
    """
    import os
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from fastapi_cachemate import CacheSetup
    from fastapi_cachemate.cache import cache_response
    from fastapi_cachemate.prometheus import metrics_route


    @asynccontextmanager
    async def lifespan(app):
        CacheSetup.setup()
        yield
        await CacheSetup.close()


    app = FastAPI(lifespan=lifespan)
    metrics_route(app, interval=3600)  # the close() and exit syncs are what this test reads


    @app.get("/items/{n}")
    @cache_response(ttl=60)
    async def items(n: int):
        return {"n": n, "pid": os.getpid()}
    """
)


def read_dir(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


def requests_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "fastapi_cachemate_requests_total")


@pytest.mark.slow
def test_uvicorn_workers_are_summed(tmp_path: Path) -> None:
    (tmp_path / "mpapp.py").write_text(APP)
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    port = free_port()
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=str(prom_dir),
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "mpapp:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
        ],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: deque[str] = deque(maxlen=200)
    started = threading.Semaphore(0)

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            if READY in line:
                started.release()
        for _ in range(WORKERS):
            started.release()  # ended: wake the waiter, which then sees it is not running

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    pids: set[int] = set()
    try:
        for _ in range(WORKERS):
            if not started.acquire(timeout=60) or proc.poll() is not None:
                pytest.fail(f"uvicorn did not start:\n{''.join(log)}")
        base = f"http://127.0.0.1:{port}"
        for _ in range(REQUESTS):
            # a new connection each time, so that both workers can take requests
            with httpx.Client(base_url=base, timeout=10) as client:
                response = client.get("/items/1", headers={"connection": "close"})
                assert response.status_code == 200
                assert response.headers["x-cache-status"] in {"MISS", "HIT"}
                pids.add(response.json()["pid"])
        with httpx.Client(base_url=base, timeout=10) as client:
            scrape = client.get("/metrics")
        assert scrape.status_code == 200
        live = {family.name for family in text_string_to_metric_families(scrape.text)}
        assert "fastapi_cachemate_requests" in live
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == 0, "".join(log)
    samples = read_dir(prom_dir)
    # every request, whichever worker served it, is in the summed files
    assert requests_total(samples) == REQUESTS
    miss = samples[
        ("fastapi_cachemate_requests_total", (("endpoint", "/items/{n}"), ("result", "miss")))
    ]
    # one miss per worker that served (each worker has its own in-process store)
    assert miss == len(pids), pids
    assert samples[("fastapi_cachemate_stored_total", (("endpoint", "/items/{n}"),))] == len(pids)


FORK = textwrap.dedent(
    """
    import os
    from fastapi_cachemate import metrics
    from fastapi_cachemate.prometheus import multiprocess_sync

    sync = multiprocess_sync(interval=3600)
    sync.start()
    row = metrics.endpoint("/f")
    for _ in range(5):
        row.hit()
    sync.sync()  # the parent's 5 are in the parent's file
    pid = os.fork()
    if pid == 0:
        row.hit(); row.hit()  # the child's own growth: 2
        assert sync._thread is not None and sync._thread.is_alive()  # restarted after fork
        sync.sync()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    row.miss()
    sync.stop()
    """
)


def test_forked_child_adds_only_its_growth(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", FORK], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    samples = read_dir(tmp_path)
    hits = samples[("fastapi_cachemate_requests_total", (("endpoint", "/f"), ("result", "hit")))]
    misses = samples[("fastapi_cachemate_requests_total", (("endpoint", "/f"), ("result", "miss")))]
    assert (hits, misses) == (7, 1)
