"""fastapi_cachemate.prometheus: exposition parsed by prometheus_client's own parser, in one
process and in multiprocess mode (worker subprocesses writing real multiprocess files)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from fastapi_cachemate import metrics
from fastapi_cachemate.prometheus import (
    METRIC_NAMES,
    CacheCollector,
    metrics_route,
    register_collector,
)

ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def zeroed() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """({family name: type}, {(sample name, sorted labels): value})."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def bump_some() -> None:
    a = metrics.endpoint("/items/{id}")
    for _ in range(3):
        a.hit()
    a.miss()
    a.stale()
    a.stored(4096, 1024)
    a.not_stored(metrics.REASON_SET_COOKIE)
    a.not_stored(metrics.REASON_STATUS)
    a.not_stored(metrics.REASON_STATUS)
    b = metrics.endpoint("/users")
    b.bypass()
    b.no_cache()
    b.refresh()
    b.refresh_failure()
    b.lock_wait()
    b.lock_timeout()
    b.backend_error()


def check_bumped(samples: Samples, times: int = 1) -> None:
    e = "/items/{id}"
    p = "fastapi_cachemate_"
    assert samples[key(p + "requests_total", endpoint=e, result="hit")] == 3 * times
    assert samples[key(p + "requests_total", endpoint=e, result="miss")] == times
    assert samples[key(p + "requests_total", endpoint=e, result="stale")] == times
    assert samples[key(p + "requests_total", endpoint="/users", result="bypass")] == times
    assert samples[key(p + "requests_total", endpoint="/users", result="no_cache")] == times
    assert samples[key(p + "stored_total", endpoint=e)] == times
    assert samples[key(p + "not_stored_total", endpoint=e, reason="status")] == 2 * times
    assert samples[key(p + "not_stored_total", endpoint=e, reason="set_cookie")] == times
    assert samples[key(p + "not_stored_total", endpoint=e, reason="private")] == 0
    assert samples[key(p + "bytes_stored_total", endpoint=e, stage="raw")] == 4096 * times
    assert samples[key(p + "bytes_stored_total", endpoint=e, stage="compressed")] == 1024 * times
    for name in ("refreshes", "refresh_failures", "lock_waits", "lock_timeouts", "backend_errors"):
        assert samples[key(f"{p}{name}_total", endpoint="/users")] == times
        assert samples[key(f"{p}{name}_total", endpoint=e)] == 0


def test_collector_output_parses() -> None:
    registry = CollectorRegistry()
    assert register_collector(registry) is not None
    assert register_collector(registry) is None  # once per registry
    bump_some()
    metrics.set_breaker_state("open")
    types, samples = parse(generate_latest(registry).decode())
    assert set(types) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        expected = "gauge" if name.startswith("fastapi_cachemate_breaker") else "counter"
        assert types[name] == expected
    check_bumped(samples)
    assert samples[key("fastapi_cachemate_breaker_open")] == 1
    assert samples[key("fastapi_cachemate_breaker_state")] == 1


def test_collector_reads_live_values() -> None:
    registry = CollectorRegistry()
    registry.register(CacheCollector())
    row = metrics.endpoint("/x")
    row.hit()
    _, first = parse(generate_latest(registry).decode())
    row.hit()
    _, second = parse(generate_latest(registry).decode())
    sample = key("fastapi_cachemate_requests_total", endpoint="/x", result="hit")
    assert (first[sample], second[sample]) == (1, 2)
    assert second[key("fastapi_cachemate_breaker_open")] == 0


async def test_metrics_route() -> None:
    registry = CollectorRegistry()
    app = FastAPI()
    metrics_route(app, "/internal/metrics", registry=registry)
    bump_some()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/internal/metrics")
        schema = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    _, samples = parse(response.text)
    check_bumped(samples)
    assert "/internal/metrics" not in schema.json()["paths"]


WORKER = textwrap.dedent(
    """
    import sys
    from fastapi_cachemate import metrics
    from fastapi_cachemate.prometheus import exposition, multiprocess_mode, multiprocess_sync

    assert multiprocess_mode()
    times = int(sys.argv[1])
    sync = multiprocess_sync(interval=3600)
    a = metrics.endpoint("/items/{id}")
    b = metrics.endpoint("/users")
    for i in range(times):
        a.hit(); a.hit(); a.hit(); a.miss(); a.stale(); a.stored(4096, 1024)
        a.not_stored(metrics.REASON_SET_COOKIE)
        a.not_stored(metrics.REASON_STATUS); a.not_stored(metrics.REASON_STATUS)
        b.bypass(); b.no_cache(); b.refresh(); b.refresh_failure()
        b.lock_wait(); b.lock_timeout(); b.backend_error()
        sync.sync()  # deltas: each sync adds only what was gained since the last one
    sync.sync()
    if sys.argv[2] == "open":
        metrics.set_breaker_state("open")
        sync.sync()
    if sys.argv[2] == "expose":
        sys.stdout.write(exposition().decode())
    """
)


def run_worker(tmp: Path, times: int, mode: str) -> str:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp), PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(times), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_multiprocess_workers_are_summed(tmp_path: Path) -> None:
    run_worker(tmp_path, 2, "open")
    run_worker(tmp_path, 3, "quiet")
    assert any(tmp_path.iterdir())
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    types, samples = parse(generate_latest(registry).decode())
    assert set(METRIC_NAMES) <= set(types)
    check_bumped(samples, times=5)
    # livemax over the workers: one had its breaker open
    assert samples[key("fastapi_cachemate_breaker_open")] == 1


def test_multiprocess_exposition_includes_other_workers(tmp_path: Path) -> None:
    run_worker(tmp_path, 4, "quiet")
    text = run_worker(tmp_path, 1, "expose")  # syncs itself, reads both workers' files
    _, samples = parse(text)
    check_bumped(samples, times=5)
    assert samples[key("fastapi_cachemate_breaker_open")] == 0


def test_sync_after_reset_counts_the_new_value(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from fastapi_cachemate import metrics
        from fastapi_cachemate.prometheus import multiprocess_sync
        sync = multiprocess_sync(interval=3600)
        row = metrics.endpoint("/r")
        for _ in range(5):
            row.hit()
        sync.sync()
        metrics.reset()
        row.hit(); row.hit()
        sync.sync()
        sync.start()
        sync.stop()  # joins the thread, then syncs once more: nothing new
        """
    )
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    _, samples = parse(generate_latest(registry).decode())
    assert samples[key("fastapi_cachemate_requests_total", endpoint="/r", result="hit")] == 7


def test_missing_prometheus_client_names_the_package() -> None:
    script = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n"
        "    import fastapi_cachemate.prometheus\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pip install prometheus-client" in proc.stdout


def test_near_cache_counters_are_exported() -> None:
    from fastapi_cachemate.core.backends.near import COUNTERS
    from fastapi_cachemate.prometheus import near_from_exposition

    registry = CollectorRegistry()
    registry.register(CacheCollector())
    COUNTERS.near_hits += 3
    COUNTERS.near_invalidations += 2
    COUNTERS.near_flushes += 1
    text = generate_latest(registry).decode()
    _, samples = parse(text)
    assert samples[key("fastapi_cachemate_near_events_total", event="hits")] == 3
    assert samples[key("fastapi_cachemate_near_events_total", event="invalidations")] == 2
    assert samples[key("fastapi_cachemate_near_events_total", event="flushes")] == 1
    assert near_from_exposition(text) == {
        "near_hits": 3,
        "near_fills": 0,
        "near_invalidations": 2,
        "near_flushes": 1,
        "near_races": 0,
    }
    assert metrics.snapshot()["near"]["near_hits"] == 3
