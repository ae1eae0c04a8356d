"""What the per-endpoint counters cost next to a memory hit, measured in one process.

A hit bumps one counter: ``row.hit()``, a METH_NOARGS method of a preallocated
``EndpointStats`` row that increments one uint64 in C. This benchmark puts that next to:

1. the kernel part of a memory hit: ``MemoryStore.get`` + ``read_entry`` (no HTTP at all,
   the harshest baseline: the smallest thing a hit can cost);
2. a memory hit through FastAPI: a raw ASGI GET on an app whose route reads the entry from a
   ``MemoryStore`` and returns it as a ``Response`` (what the request path does on a hit),
   with and without the ``row.hit()`` call, the two apps measured in interleaved rounds;
3. the real thing: a memory hit through ``@cache_response`` (the memory backend), one app
   counting, one whose route was planned with a row whose ``hit`` is an empty C method.

The counter's own cost is measured directly too: ``row.hit()`` against a METH_NOARGS C method
that does nothing (``[].clear``), the difference being what the increment itself adds; the
whole ``row.hit()`` call (loop overhead included) is what the table sets against the hits.

Times are CPU time (``time.process_time``), the least of the rounds (the least disturbed:
the machine is shared); ratios only compare numbers measured side by side in this run.

Run: ``.venv/bin/python -m benchmarks.stats_overhead``.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi_cachemate import _native

__all__ = ["measure", "run"]

ROUNDS = 15
BODY = b'{"items": [' + b'{"id": 1, "name": "a user"}, ' * 40 + b"{}]}"
KEY = b"fastapi_cachemate:{" + b"0" * 32 + b"}"


# One GET /hit, the same for every app measured here.
_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/hit",
    "raw_path": b"/hit",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench")],
    "client": ("127.0.0.1", 1),
    "server": ("bench", 80),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _caller(
    loop: asyncio.AbstractEventLoop, app: Any, send: Callable[[Any], Any]
) -> Callable[[], object]:
    """A no-argument call that runs one request through app on loop."""

    def call() -> object:
        return loop.run_until_complete(app(dict(_SCOPE), _receive, send))

    return call


def _per_call(fn: Callable[[], object], n: int) -> float:
    """CPU seconds per call of fn over n calls."""
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n


def _interleaved(cases: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """Least CPU seconds per call of each case (the least disturbed round) over ROUNDS
    rounds that alternate them."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(ROUNDS):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(_per_call(cases[name], n))
    return {name: min(values) for name, values in samples.items()}


def _paired(off: Callable[[], object], on: Callable[[], object], n: int) -> tuple[float, float]:
    """(median seconds per call of off, median of the per-pair differences on - off) over n
    pairs called back to back, alternating which goes first: slow drifts of a shared machine
    hit both sides of a pair alike, and the median ignores preempted calls."""
    clock = time.perf_counter_ns
    offs: list[int] = []
    diffs: list[int] = []
    for i in range(n):
        if i % 2:
            t0 = clock()
            on()
            t1 = clock()
            off()
            t2 = clock()
            t_on, t_off = t1 - t0, t2 - t1
        else:
            t0 = clock()
            off()
            t1 = clock()
            on()
            t2 = clock()
            t_off, t_on = t1 - t0, t2 - t1
        offs.append(t_off)
        diffs.append(t_on - t_off)
    return statistics.median(offs) / 1e9, statistics.median(diffs) / 1e9


def _kernel_cases() -> dict[str, Callable[[], object]]:
    store = _native.MemoryStore()
    blob = _native.write_entry(
        status=200,
        headers=[(b"content-type", b"application/json")],
        body=BODY,
        created=time.time(),
        ttl=3600.0,
    )
    store.set(KEY, blob, time.time() + 3600, time.time())
    row = _native.Stats().endpoint("/bench")
    now = time.time()

    def hit_off() -> object:
        return _native.read_entry(store.get(KEY, now), now)  # type: ignore[arg-type]

    def hit_on() -> object:
        entry = _native.read_entry(store.get(KEY, now), now)  # type: ignore[arg-type]
        row.hit()
        return entry

    return {"kernel hit, counters off": hit_off, "kernel hit, counters on": hit_on}


def _asgi_cases() -> dict[str, Callable[[], object]]:
    from fastapi import FastAPI
    from fastapi.responses import Response

    store = _native.MemoryStore()
    blob = _native.write_entry(
        status=200,
        headers=[(b"content-type", b"application/json")],
        body=BODY,
        created=time.time(),
        ttl=3600.0,
    )
    store.set(KEY, blob, time.time() + 3600, time.time())
    loop = asyncio.new_event_loop()

    def make_app(counting: bool) -> Any:
        """One app, one route (so routing costs the same for both)."""
        row = _native.Stats().endpoint("/hit")
        app = FastAPI()

        @app.get("/hit")
        async def hit() -> Response:
            now = time.time()
            entry = _native.read_entry(store.get(KEY, now), now)  # type: ignore[arg-type]
            assert entry is not None
            response = Response(entry.body, status_code=entry.status)
            response.raw_headers = entry.headers
            if counting:
                row.hit()
            return response

        return app

    async def send(message: Any) -> None:
        return None

    def request(app: Any) -> Callable[[], object]:
        return _caller(loop, app, send)

    return {
        "ASGI memory hit, counters off": request(make_app(False)),
        "ASGI memory hit, counters on": request(make_app(True)),
    }


def _cache_response_cases() -> dict[str, Callable[[], object]]:
    """The real request path: two apps, one route each under @cache_response on the memory
    backend, warmed; the "off" app's route was planned with a row whose hit() is an empty C
    method (``[].clear``), so that the two differ only by the counter."""
    from types import SimpleNamespace

    from fastapi import FastAPI

    from fastapi_cachemate import CacheSetup, metrics
    from fastapi_cachemate.cache import cache_response

    CacheSetup.setup()
    loop = asyncio.new_event_loop()
    nothing: list[int] = []
    off_row = SimpleNamespace(
        name="/hit",
        hit=nothing.clear,
        miss=nothing.clear,
        stored=lambda raw, stored: None,
        not_stored=lambda reason: None,
    )

    def make_app() -> Any:
        app = FastAPI()

        @app.get("/hit")
        @cache_response(ttl=3600)
        async def hit() -> dict[str, Any]:
            return {"items": [{"id": i, "name": "a user"} for i in range(40)]}

        return app

    statuses: list[bytes] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.extend(v for k, v in message["headers"] if k == b"x-cache-status")

    def request(app: Any) -> Callable[[], object]:
        return _caller(loop, app, send)

    on, off = make_app(), make_app()
    request(on)()  # plans the route with its real row
    real_endpoint = metrics.endpoint
    setattr(metrics, "endpoint", lambda name: off_row)  # noqa: B010 - the request path's
    try:
        request(off)()  # plans the route with the empty row
    finally:
        setattr(metrics, "endpoint", real_endpoint)  # noqa: B010
    request(on)()
    request(off)()
    assert statuses[-2:] == [b"HIT", b"HIT"], statuses
    return {
        "cache_response memory hit, counters off": request(off),
        "cache_response memory hit, counters on": request(on),
    }


def measure(n_kernel: int = 20_000, n_asgi: int = 1_000, n_pairs: int = 4_000) -> dict[str, float]:
    """Seconds per call: the counter, empty calls, and the hits with counters off / on (least
    of interleaved rounds, CPU time), and for each hit the paired median difference."""
    row = _native.Stats().endpoint("/bench")
    nothing: list[int] = []
    add = row.add
    results = _interleaved(
        {
            "row.hit()": row.hit,
            "empty method call": nothing.clear,
            "row.add(0)": lambda: add(0),
            "empty lambda": lambda: nothing.clear(),
        },
        200_000,
    )
    for cases, n, pairs in (
        (_kernel_cases(), n_kernel, n_pairs * 5),
        (_asgi_cases(), n_asgi, n_pairs),
        (_cache_response_cases(), n_asgi, n_pairs),
    ):
        results.update(_interleaved(cases, n))
        (off_name, off), (_, on) = cases.items()
        kind = off_name.removesuffix(", counters off")
        results[f"{kind}, paired off"], results[f"{kind}, paired diff"] = _paired(off, on, pairs)
    return results


def run() -> str:
    """Markdown: the measured times and what the counter costs as a share of each hit."""
    r = measure()
    counter = max(r["row.hit()"] - r["empty method call"], 0.0)
    call = r["row.hit()"]
    lines = [
        "### Counters: cost next to a memory hit",
        "",
        f"CPU time per call, least of {ROUNDS} interleaved rounds "
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}).",
        "",
        "| what | time per call | counter share (`row.hit()` call) | on - off, paired median |",
        "| --- | ---: | ---: | ---: |",
        f"| `row.hit()` | {call * 1e9:.0f} ns | | |",
        f"| `[].clear()` (empty C method) | {r['empty method call'] * 1e9:.0f} ns | | |",
        f"| `row.add(0)`: an index argument, as a `stats.hit(endpoint_id)` design would take "
        f"| {(r['row.add(0)'] - r['empty lambda'] + r['empty method call']) * 1e9:.0f} ns | | |",
    ]
    for kind in ("kernel hit", "ASGI memory hit", "cache_response memory hit"):
        off = r[f"{kind}, counters off"]
        on = r[f"{kind}, counters on"]
        diff = r[f"{kind}, paired diff"]
        lines.append(
            f"| {kind}, counters off | {off * 1e6:.2f} µs | {100 * call / off:.2f} % "
            f"| {diff * 1e9:+.0f} ns ({100 * diff / r[f'{kind}, paired off']:+.2f} %) |"
        )
        lines.append(f"| {kind}, counters on | {on * 1e6:.2f} µs | | |")
    lines += [
        "",
        f"The counter adds about {counter * 1e9:.0f} ns over an empty method call; a whole "
        f"`row.hit()` call is {100 * call / r['cache_response memory hit, counters off']:.2f} % "
        "of a memory hit through `@cache_response`. Last column: the median of on - off over "
        "back-to-back pairs of calls (wall clock, alternating order), as a share of the "
        "median off call.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
