"""Writing and reading a stored entry against the seed's path, as ratios in one process.

The seed (fastapi-cachemate 0.1.1) stored ``orjson.dumps({"content": result, "meta":
{"compute_ms": ms}})``, compressed with ``zlib.compress(data, 5)`` when the mode said so
(smart: at least 1024 bytes), behind a one-byte marker; a hit stripped the marker, ran
``zlib.decompress`` and ``orjson.loads`` (and FastAPI then validated and rendered the result
again, which is not counted here). This project stores the rendered response with
``write_entry`` (zstd, smart mode, the same 1024-byte threshold) and a hit is one
``read_entry`` call that returns the body ready to send. Our write includes rendering the
result with orjson, so both sides start from the same Python object.

Run: ``.venv/bin/python -m benchmarks.codec_entry`` (needs the bench extra:
``.venv/bin/pip install -e ".[bench]"``).
"""

from __future__ import annotations

import platform
import time
import timeit
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from fastapi_cachemate import _native

__all__ = ["payload", "run"]

MIN_SIZE = 1024
HEADERS = [(b"content-type", b"application/json")]
FP = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def payload(items: int) -> dict[str, Any]:
    """A JSON-like API answer: a page of users with nested data."""
    return {
        "page": 1,
        "total": items * 10,
        "items": [
            {
                "id": i,
                "uuid": f"6f1c{i:04x}-9a7b-4c3e-8d2f-{i * 7919:012x}",
                "name": f"User number {i}",
                "email": f"user{i}@example.com",
                "active": i % 3 != 0,
                "score": round(i * 1.618, 3),
                "created_at": f"2024-03-{1 + i % 28:02d}T12:{i % 60:02d}:00Z",
                "roles": ["reader", "writer"] if i % 2 else ["reader"],
                "address": {"city": f"City {i % 17}", "zip": f"{10000 + i}"},
            }
            for i in range(items)
        ],
    }


# --- the seed's path -----------------------------------------------------------------------


def seed_write(result: Any, compute_ms: float) -> bytes:
    encoded = orjson.dumps({"content": result, "meta": {"compute_ms": compute_ms}})
    if len(encoded) >= MIN_SIZE:
        return b"\x01" + zlib.compress(encoded, 5)
    return b"\x00" + encoded


def seed_read(raw: bytes) -> Any:
    marker, data = raw[:1], raw[1:]
    if marker == b"\x01":
        data = zlib.decompress(data)
    return orjson.loads(data)


# --- ours ----------------------------------------------------------------------------------


def our_write(result: Any, compute_ms: float) -> bytes:
    body = orjson.dumps(result)
    return _native.write_entry(
        status=200,
        headers=[*HEADERS, (b"content-length", str(len(body)).encode())],
        body=body,
        created=1_700_000_000.0,
        ttl=300.0,
        grace=30.0,
        compute_ms=compute_ms,
        fingerprint=FP,
        compression=_native.COMPRESS_SMART,
        min_size=MIN_SIZE,
    )


def our_read(raw: bytes) -> Any:
    return _native.read_entry(raw, 1_700_000_010.0, FP)


def best_seconds(fn: Callable[[], object], budget: float = 0.4, repeat: int = 5) -> float:
    """The best time per call over `repeat` runs of about budget/repeat seconds each."""
    number, elapsed = 1, 0.0
    while True:  # calibrate
        elapsed = timeit.timeit(fn, number=number)
        if elapsed >= budget / repeat / 4:
            break
        number *= 4
    number = max(1, int(number * (budget / repeat) / max(elapsed, 1e-9)))
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


SIZES = [("small", 2), ("medium", 42), ("large", 820)]


def run() -> str:
    lines = [
        "Stored entry: the seed's orjson + zlib(5) path against write_entry / read_entry "
        f"(zstd, smart mode, min_size {MIN_SIZE}).",
        "",
        "| payload | JSON bytes | seed stored | ours stored | seed write µs | ours write µs "
        "| write ratio | seed read µs | ours read µs | read ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, items in SIZES:
        result = payload(items)
        body = orjson.dumps(result)
        seed_raw = seed_write(result, 12.5)
        our_raw = our_write(result, 12.5)
        entry = our_read(our_raw)
        assert entry is not None
        assert entry.body == body
        assert seed_read(seed_raw)["content"] == result
        sw = best_seconds(lambda r=result: seed_write(r, 12.5))  # type: ignore[misc]
        ow = best_seconds(lambda r=result: our_write(r, 12.5))  # type: ignore[misc]
        sr = best_seconds(lambda d=seed_raw: seed_read(d))  # type: ignore[misc]
        orr = best_seconds(lambda d=our_raw: our_read(d))  # type: ignore[misc]
        lines.append(
            f"| {name} | {len(body):,} | {len(seed_raw):,} | {len(our_raw):,} "
            f"| {sw * 1e6:.1f} | {ow * 1e6:.1f} | {sw / ow:.2f} "
            f"| {sr * 1e6:.1f} | {orr * 1e6:.1f} | {sr / orr:.2f} |"
        )
    lines += [
        "",
        f"Python {platform.python_version()}, zstd {_native.ZSTD_VERSION}, "
        f"zlib {zlib.ZLIB_RUNTIME_VERSION}, orjson {orjson.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "ratio = seed time / our time (higher is better). "
        "Command: `.venv/bin/python -m benchmarks.codec_entry`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
