"""compress / decompress of fastapi_cachemate._native against the zstandard package (same
level) and the seed's zlib level 5 (``zlib.compress(data, 5)``).

Three JSON-encoded API payloads (a page of a list of dicts): small (~0.5 KB), medium
(~10 KB) and large (~200 KB). Everything runs in this one process; each timing is the best
of several repeats of a timed loop. Ratios are their time / our time: above 1 means we are
faster. The zstandard compressor and decompressor objects are created once and reused, as a
careful user of that package would.

    .venv/bin/python -m benchmarks.codec_compress
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from typing import Any

import zstandard

from fastapi_cachemate import _native

Fn = Callable[[], object]

# CPU time of this process, not wall time: on a shared machine (the CI runner, other builds)
# being descheduled then does not count against whichever library happened to be running.
# Everything measured here is single-threaded, so the two agree on an idle machine.
_clock = time.process_time

__all__ = ["LEVEL", "PAYLOADS", "make_payload", "measure", "run"]

LEVEL = 3
SEED_ZLIB_LEVEL = 5
TARGETS = {"small": 500, "medium": 10_000, "large": 200_000}
REPEATS = 9
LOOP_SECONDS = 0.02

_CITIES = ["Paris", "Berlin", "Zürich", "Lisbon", "Oslo", "Kraków", "Austin", "Tokyo"]


def _item(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "uuid": f"{i * 2654435761 % 2**32:08x}-4e2f-9c1a-{i:012d}",
        "name": f"user {i}",
        "email": f"user{i}@example.com",
        "active": i % 3 != 0,
        "score": round(i * 1.37, 2),
        "age": 18 + i % 60,
        "tags": ["alpha", "beta", "gamma"][: 1 + i % 3],
        "address": {"city": _CITIES[i % len(_CITIES)], "zip": f"{10000 + i}", "geo": None},
        "created_at": f"2024-01-{1 + i % 28:02d}T12:00:00Z",
    }


def make_payload(target: int) -> bytes:
    """JSON of {"items": [...], "total": n, "page": 1}: the item count closest to target bytes."""
    items: list[dict[str, Any]] = []
    best = json.dumps({"items": items, "total": 0, "page": 1}).encode()
    while len(best) < target:
        items.append(_item(len(items)))
        body = json.dumps({"items": items, "total": len(items), "page": 1}).encode()
        if abs(len(body) - target) > abs(len(best) - target):
            break
        best = body
    return best


PAYLOADS = {name: make_payload(size) for name, size in TARGETS.items()}


def _calls_for(fn: Callable[[], object]) -> int:
    n = 1
    while True:
        t0 = _clock()
        for _ in range(n):
            fn()
        dt = _clock() - t0
        if dt >= LOOP_SECONDS / 4:
            return max(1, int(n * LOOP_SECONDS / dt))
        n *= 2


def measure(*fns: Callable[[], object]) -> list[float]:
    """Seconds per call of each fn: the best of REPEATS rounds of loops of ~LOOP_SECONDS.

    The functions take turns inside every round, so a change of load on the machine
    touches all of them alike instead of skewing one ratio.
    """
    counts = [_calls_for(fn) for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(REPEATS):
        for i, (fn, n) in enumerate(zip(fns, counts, strict=True)):
            t0 = _clock()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (_clock() - t0) / n)
    return best


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def run() -> str:
    """Measure everything and return the markdown table."""
    zc = zstandard.ZstdCompressor(level=LEVEL)
    zd = zstandard.ZstdDecompressor()
    lines = [
        f"zstd level {LEVEL} (ours: system libzstd {_native.ZSTD_VERSION}; zstandard "
        f"{zstandard.__version__} bundles libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))}),"
        f" seed: zlib level {SEED_ZLIB_LEVEL}. CPU µs per call, best of {REPEATS}; ratio = their "
        "time / our time.",
        "",
        _row(
            [
                "payload",
                "op",
                "ours µs",
                "zstandard µs",
                "ratio vs zstandard",
                "zlib-5 µs",
                "ratio vs zlib-5",
                "sizes ours / zstandard / zlib-5",
            ]
        ),
        _row(["---"] * 8),
    ]
    for name, data in PAYLOADS.items():
        ours_frame = _native.compress(data, LEVEL)
        theirs_frame = zc.compress(data)
        zlib_blob = zlib.compress(data, SEED_ZLIB_LEVEL)
        assert _native.decompress(ours_frame) == data
        assert zd.decompress(theirs_frame) == data
        assert zlib.decompress(zlib_blob) == data
        sizes = f"{len(data)} → {len(ours_frame)} / {len(theirs_frame)} / {len(zlib_blob)}"
        cases: list[
            tuple[str, Callable[[], object], Callable[[], object], Callable[[], object]]
        ] = [
            (
                "compress",
                lambda d=data: _native.compress(d, LEVEL),
                lambda d=data: zc.compress(d),
                lambda d=data: zlib.compress(d, SEED_ZLIB_LEVEL),
            ),
            (
                "decompress",
                lambda f=ours_frame: _native.decompress(f),
                lambda f=theirs_frame: zd.decompress(f),
                lambda b=zlib_blob: zlib.decompress(b),
            ),
        ]
        for op, ours_fn, zstd_fn, zlib_fn in cases:
            ours, theirs, seed = measure(ours_fn, zstd_fn, zlib_fn)
            lines.append(
                _row(
                    [
                        f"{name} ({len(data) / 1000:.1f} KB)",
                        op,
                        f"{ours * 1e6:.2f}",
                        f"{theirs * 1e6:.2f}",
                        f"{theirs / ours:.2f}",
                        f"{seed * 1e6:.2f}",
                        f"{seed / ours:.2f}",
                        sizes,
                    ]
                )
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
