"""What the per-endpoint counters cost next to a memory hit, measured in one process.

A hit bumps one counter: ``row.hit()``, a METH_NOARGS method of a preallocated
``EndpointStats`` row that increments one uint64 in C. This benchmark puts that next to:

1. the kernel part of a memory hit: ``MemoryStore.get`` + ``read_entry`` (no HTTP at all,
   the harshest baseline: the smallest thing a hit can cost);
2. a memory hit through FastAPI: a raw ASGI GET on an app whose route reads the entry from a
   ``MemoryStore`` and returns it as a ``Response`` (what the request path does on a hit),
   with and without the ``row.hit()`` call, the two routes measured in interleaved rounds.

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
import time
from collections.abc import Callable
from typing import Any

from fastapi_cachemate import _native

__all__ = ["measure", "run"]

ROUNDS = 15
BODY = b'{"items": [' + b'{"id": 1, "name": "a user"}, ' * 40 + b"{}]}"
KEY = b"fastapi_cachemate:{" + b"0" * 32 + b"}"


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

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope = {
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

    def request(app: Any) -> Callable[[], object]:
        def call() -> object:
            return loop.run_until_complete(app(dict(scope), receive, send))

        return call

    return {
        "ASGI memory hit, counters off": request(make_app(False)),
        "ASGI memory hit, counters on": request(make_app(True)),
    }


def measure(n_kernel: int = 20_000, n_asgi: int = 1_000) -> dict[str, float]:
    """Seconds per call: the counter, an empty call, and the hits with counters off / on."""
    row = _native.Stats().endpoint("/bench")
    nothing: list[int] = []
    add = row.add
    counter = _interleaved(
        {
            "row.hit()": row.hit,
            "empty method call": nothing.clear,
            "row.add(0)": lambda: add(0),
            "empty lambda": lambda: nothing.clear(),
        },
        200_000,
    )
    results = dict(counter)
    results.update(_interleaved(_kernel_cases(), n_kernel))
    results.update(_interleaved(_asgi_cases(), n_asgi))
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
        "| what | time per call | counter share (`row.hit()` call) | measured on/off difference |",
        "| --- | ---: | ---: | ---: |",
        f"| `row.hit()` | {call * 1e9:.0f} ns | | |",
        f"| `[].clear()` (empty C method) | {r['empty method call'] * 1e9:.0f} ns | | |",
        f"| `row.add(0)`: an index argument, as a `stats.hit(endpoint_id)` design would take "
        f"| {(r['row.add(0)'] - r['empty lambda'] + r['empty method call']) * 1e9:.0f} ns | | |",
    ]
    for kind in ("kernel hit", "ASGI memory hit"):
        off = r[f"{kind}, counters off"]
        on = r[f"{kind}, counters on"]
        lines.append(
            f"| {kind}, counters off | {off * 1e6:.2f} µs | {100 * call / off:.2f} % "
            f"| {100 * (on - off) / off:+.2f} % |"
        )
        lines.append(f"| {kind}, counters on | {on * 1e6:.2f} µs | | |")
    lines += [
        "",
        f"The counter adds about {counter * 1e9:.0f} ns over an empty method call; a whole "
        f"`row.hit()` call is {100 * call / r['ASGI memory hit, counters off']:.2f} % of a "
        "memory hit through FastAPI (the on/off difference of whole hits is within the "
        "rounds' noise at that size).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
