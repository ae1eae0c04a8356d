"""The CLI (python -m fastapi_cachemate) as a subprocess, against a real redis-server with
entries written by kernels.write_entry, and against a real HTTP metrics endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from fastapi_cachemate import _native, metrics
from tests.support.cli import KEY_A, KEY_B, KEY_C, OTHER, PREFIX, ROOT, cli, entry
from tests.support.servers import RedisServer, free_port


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/7"


@pytest.fixture
def r(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


# --- usage ---------------------------------------------------------------------------------


def test_help_and_usage_exit_codes() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for command in ("stats", "inspect", "purge", "bench"):
        assert command in top.stdout
        sub = cli(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: fastapi-cachemate " + command in sub.stdout
    assert cli().returncode == 2
    assert cli("frobnicate").returncode == 2
    missing = cli("inspect", "k")
    assert missing.returncode == 2
    assert "--url" in missing.stderr
    assert cli("purge", "--url", "redis://x").returncode == 2  # neither --namespace nor --tag
    both = cli("purge", "--url", "redis://x", "--namespace", "a", "--tag", "t")
    assert both.returncode == 2
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("fastapi-cachemate ")


def test_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'fastapi-cachemate = "fastapi_cachemate.__main__:main"' in text


# --- inspect -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compression", "codec"),
    [(_native.COMPRESS_DISABLED, "identity"), (_native.COMPRESS_ALL, "zstd")],
)
def test_inspect_json(r: redis.Redis, url: str, compression: int, codec: str) -> None:
    body = b'{"items": [' + b'"x", ' * 2000 + b'"y"]}'
    blob = entry(body, tags=("users", "page:1"), compression=compression, ttl=120.0, grace=30.0)
    r.set(KEY_A, blob, px=150_000)
    out = cli("inspect", KEY_A, "--url", url, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["key"] == KEY_A
    assert info["status"] == 200
    assert info["state"] == "fresh"
    assert info["ttl"] == 120.0
    assert info["grace"] == 30.0
    assert info["age"] >= 0
    assert abs(info["remaining"] - (120.0 - info["age"])) < 0.01  # remaining = ttl - age
    assert 0 < info["redis_pttl_ms"] <= 150_000
    assert info["compute_ms"] == 12.5
    assert info["tags"] == ["users", "page:1"]
    assert info["etag"] == _native.body_etag(body).decode()
    assert info["headers"] == [["content-type", "application/json"], ["x-thing", "1"]]
    assert info["size_body"] == len(body)
    assert info["size_stored"] == len(blob)
    assert info["codec"] == codec
    if codec == "zstd":
        assert info["size_body_stored"] == len(_native.compress(body)) < len(body)
    else:
        assert info["size_body_stored"] == len(body)
    assert "body" not in info


def test_inspect_text_and_body(r: redis.Redis, url: str) -> None:
    r.set(KEY_A, entry(b"hello body", tags=("t1",)))
    out = cli("inspect", KEY_A, "--url", url, "--body")
    assert out.returncode == 0, out.stderr
    assert "status:        200" in out.stdout
    assert "state:         fresh" in out.stdout
    assert "tags:          t1" in out.stdout
    assert "  content-type: application/json" in out.stdout
    assert out.stdout.rstrip().endswith("hello body")
    assert "redis_pttl_ms: None" in out.stdout  # stored without an expiry


def test_inspect_stale_and_expired(r: redis.Redis, url: str) -> None:
    now = time.time()
    r.set(KEY_A, entry(b"s", created=now - 100, ttl=60, grace=3600))
    r.set(KEY_B, entry(b"e", created=now - 100, ttl=60, grace=10))
    stale = json.loads(cli("inspect", KEY_A, "--url", url, "--json").stdout)
    expired = json.loads(cli("inspect", KEY_B, "--url", url, "--json").stdout)
    assert stale["state"] == "stale"
    assert stale["remaining"] < 0
    assert abs(stale["remaining"] - (60 - stale["age"])) < 0.01  # remaining = ttl - age
    assert stale["age"] >= 100
    assert expired["state"] == "expired"


def test_inspect_failures(r: redis.Redis, url: str) -> None:
    missing = cli("inspect", KEY_A, "--url", url)
    assert missing.returncode == 1
    assert f"no entry at {KEY_A}" in missing.stderr
    r.set(KEY_B, b"not msgpack at all")
    garbage = cli("inspect", KEY_B, "--url", url)
    assert garbage.returncode == 1
    assert "not a readable fastapi-cachemate entry" in garbage.stderr
    down = cli("inspect", KEY_A, "--url", f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 1
    assert "redis" in down.stderr
    assert "Traceback" not in down.stderr


def test_inspect_twin_written_entry(r: redis.Redis, url: str) -> None:
    from fastapi_cachemate import _pure

    r.set(KEY_C, entry(b"x" * 5000, compression=_pure.COMPRESS_ALL, kernels=_pure))
    info = json.loads(cli("inspect", KEY_C, "--url", url, "--json").stdout)
    assert info["codec"] == "zstd"
    assert info["size_body"] == 5000


# --- stats from Redis ----------------------------------------------------------------------


def fill(r: redis.Redis) -> dict[str, bytes]:
    now = time.time()
    blobs = {
        KEY_A: entry(b"a" * 100, tags=("users",)),
        KEY_B: entry(b"b" * 3000, tags=("users", "orders"), compression=_native.COMPRESS_ALL),
        KEY_C: entry(b"c", created=now - 100, ttl=60, grace=3600, tags=("orders",)),
        OTHER: entry(b"other namespace", tags=("users",)),
    }
    for key, blob in blobs.items():
        r.set(key, blob)
    r.set(KEY_A + ":lock", b"token")
    r.set(KEY_B + ":gen", b"3")
    r.set(f"{PREFIX}:{{not-an-entry}}", b"x")
    return blobs


def test_stats_from_redis(r: redis.Redis, url: str) -> None:
    blobs = fill(r)
    out = cli("stats", "--url", url, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["prefix"] == PREFIX
    assert result["entries"] == 3
    assert result["entry_bytes"] == sum(len(blobs[k]) for k in (KEY_A, KEY_B, KEY_C))
    assert result["locks"] == 1
    assert result["generations"] == 1
    assert result["other_keys"] == 1
    assert "fresh" not in result
    text = cli("stats", "--url", url)
    assert text.returncode == 0
    assert "entries:     3" in text.stdout


def test_stats_from_redis_decoded(r: redis.Redis, url: str) -> None:
    fill(r)
    r.set(f"{PREFIX}:{{{'e' * 32}}}", b"garbage")
    result = json.loads(cli("stats", "--url", url, "--decode", "--json").stdout)
    assert result["entries"] == 4
    assert (result["fresh"], result["stale"], result["expired"]) == (2, 1, 0)
    assert result["unreadable"] == 1
    assert result["body_bytes"] == 100 + 3000 + 1
    assert result["tags"] == {"users": 2, "orders": 2}
    other = json.loads(cli("stats", "--url", url, "--prefix", "other", "--json").stdout)
    assert other["entries"] == 1


def _junk_in_every_kind_of_key(r: redis.Redis) -> None:
    """Entries of another type and of junk bytes, a generation and a lock of another type,
    a tag set that is a hash."""
    r.rpush(KEY_A, b"a", b"list")
    r.set(KEY_B, b"\xff junk")
    r.hset(KEY_C + ":gen", b"f", b"v")
    r.rpush(KEY_C + ":lock", b"x")
    r.hset(f"{PREFIX}:tag:{{users}}", b"f", b"v")


def test_stats_with_junk_in_the_cache_keys(r: redis.Redis, url: str) -> None:
    _junk_in_every_kind_of_key(r)
    decoded = cli("stats", "--url", url, "--decode", "--json")
    assert decoded.returncode == 0, decoded.stderr
    result = json.loads(decoded.stdout)
    assert (result["entries"], result["unreadable"]) == (2, 2)
    assert (result["locks"], result["generations"]) == (1, 1)
    plain = cli("stats", "--url", url, "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["entry_bytes"] == len(b"\xff junk")


def test_purge_with_junk_in_the_cache_keys(r: redis.Redis, url: str) -> None:
    _junk_in_every_kind_of_key(r)
    for target in (("--namespace", PREFIX), ("--tag", "users")):
        refused = cli("purge", "--url", url, *target)
        assert refused.returncode == 1
        assert "WRONGTYPE" in refused.stderr
        assert "--scan removes by SCAN + UNLINK" in refused.stderr
        assert "Traceback" not in refused.stderr
    by_tag = cli("purge", "--url", url, "--tag", "users", "--scan")
    assert by_tag.returncode == 0, by_tag.stderr
    by_scan = cli("purge", "--url", url, "--namespace", PREFIX, "--scan")
    assert by_scan.returncode == 0, by_scan.stderr
    assert r.exists(KEY_A, KEY_B, KEY_C + ":gen", KEY_C + ":lock") == 0


def test_stats_redis_down() -> None:
    out = cli("stats", "--url", f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 1
    assert out.stderr.startswith("fastapi-cachemate stats: redis")


# --- purge ---------------------------------------------------------------------------------


def test_purge_namespace(r: redis.Redis, url: str) -> None:
    fill(r)
    dry = cli("purge", "--url", url, "--namespace", PREFIX, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 3 entries" in dry.stdout
    assert r.exists(KEY_A, KEY_B, KEY_C) == 3
    out = cli("purge", "--url", url, "--namespace", PREFIX, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["entries"] == 3
    assert r.exists(KEY_A, KEY_B, KEY_C) == 0
    assert r.exists(OTHER) == 1  # another namespace is untouched


def test_purge_namespace_scan(r: redis.Redis, url: str) -> None:
    fill(r)
    out = cli("purge", "--url", url, "--namespace", PREFIX, "--scan", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["entries"] == 3
    assert result["how"] == "SCAN + UNLINK in batches"
    # entries, their locks and generations; not a key of another shape under the prefix
    assert r.exists(KEY_A, KEY_B, KEY_C, KEY_A + ":lock", KEY_B + ":gen") == 0
    assert r.exists(OTHER, f"{PREFIX}:{{not-an-entry}}") == 2


def test_purge_tags(r: redis.Redis, url: str) -> None:
    fill(r)
    # --scan: these entries were written directly, so they are in no tag set (the
    # invalidation API's index); the scan decodes every entry and reads its tags
    out = cli("purge", "--url", url, "--tag", "orders", "--scan")
    assert out.returncode == 0, out.stderr
    assert "removed 2 entries of tag(s) orders" in out.stdout
    assert r.exists(KEY_A) == 1
    assert r.exists(KEY_B, KEY_C) == 0
    assert r.exists(OTHER) == 1  # tagged users, but in another namespace
    out = cli(
        "purge", "--url", url, "--tag", "users", "--tag", "nothing", "--prefix", "other", "--scan"
    )
    assert out.returncode == 0
    assert "removed 1 entry" in out.stdout
    assert r.exists(OTHER) == 0
    assert r.exists(KEY_A) == 1


def test_purge_rejects_braces(url: str) -> None:
    out = cli("purge", "--url", url, "--namespace", "a{b}")
    assert out.returncode == 1
    assert "'{'" in out.stderr


# --- stats from a metrics route -------------------------------------------------------------


@pytest.fixture
def metrics_server() -> Iterator[str]:
    from prometheus_client import CollectorRegistry, generate_latest

    from fastapi_cachemate.prometheus import CacheCollector

    metrics.reset()
    registry = CollectorRegistry()
    registry.register(CacheCollector())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(registry) if self.path == "/metrics" else b"nothing here\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        metrics.reset()


def test_stats_from_metrics_route(metrics_server: str) -> None:
    row = metrics.endpoint("/items/{id}")
    for _ in range(3):
        row.hit()
    row.miss()
    row.stored(1000, 250)
    row.not_stored(metrics.REASON_PRIVATE)
    metrics.endpoint("/users").backend_error()
    metrics.set_breaker_state("half_open")
    out = cli("stats", "--metrics-url", metrics_server + "/metrics", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    items = result["endpoints"]["/items/{id}"]
    assert items == {**dict.fromkeys(metrics.STATS_COUNTERS, 0), **row.snapshot()}
    assert result["totals"]["backend_errors"] == 1
    assert result["totals"]["hits"] == 3
    assert result["breaker"] == "half_open"
    text = cli("stats", "--metrics-url", metrics_server + "/metrics")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].split()[0] == "endpoint"
    assert any(line.startswith("/items/{id}") and "75.0%" in line for line in lines)
    assert any(line.startswith("TOTAL") for line in lines)
    assert "bytes stored: 1000 B raw -> 250 B (25.0%)" in text.stdout
    assert "breaker: half_open" in text.stdout


def test_stats_shows_the_near_cache(metrics_server: str) -> None:
    from fastapi_cachemate.core.backends.near import COUNTERS

    metrics.endpoint("/items/{id}").hit()
    COUNTERS.near_hits += 5
    COUNTERS.near_invalidations += 2
    COUNTERS.near_flushes += 1
    out = cli("stats", "--metrics-url", metrics_server + "/metrics", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["near"]["near_hits"] == 5
    text = cli("stats", "--metrics-url", metrics_server + "/metrics")
    expected = "near cache: hits 5, fills 0, invalidations 2, flushes 1, races 0"
    assert expected in text.stdout.splitlines()


def test_stats_from_a_route_without_metrics(metrics_server: str) -> None:
    out = cli("stats", "--metrics-url", metrics_server + "/elsewhere")
    assert out.returncode == 1
    assert "not a Prometheus text exposition" in out.stderr
    down = cli("stats", "--metrics-url", f"http://127.0.0.1:{free_port()}/metrics")
    assert down.returncode == 1
    assert "cannot read" in down.stderr


# --- bench ---------------------------------------------------------------------------------


def test_bench_runs_python_m_benchmarks(tmp_path: Path) -> None:
    package = tmp_path / "benchmarks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import sys\nprint('benchmarks ran with', sys.argv[1:])\nsys.exit(3)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    out = subprocess.run(
        [sys.executable, "-m", "fastapi_cachemate", "bench", "--quick", "x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 3
    assert "benchmarks ran with ['--quick', 'x']" in out.stdout


def test_bench_without_benchmarks(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-m", "fastapi_cachemate", "bench"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "no benchmarks package" in out.stderr


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 65_536, 1_000_000])
@pytest.mark.parametrize("compression", [_native.COMPRESS_DISABLED, _native.COMPRESS_ALL])
def test_describe_entry_sizes(size: int, compression: int) -> None:
    from fastapi_cachemate.__main__ import describe_entry

    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    blob = entry(body, compression=compression, tags=("t",) * 40)
    info = describe_entry(KEY_A.encode(), blob, time.time())
    assert info["size_body"] == size
    assert info["size_stored"] == len(blob)
    if compression == _native.COMPRESS_ALL:
        assert info["codec"] == "zstd"
        assert info["size_body_stored"] == len(_native.compress(body))
    else:
        assert info["codec"] == "identity"
        assert info["size_body_stored"] == size
