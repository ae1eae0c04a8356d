"""Fuzz targets of fastapi_cachemate._native, used by fuzz/driver.c.

Adding a target is one line in TARGETS: the module function's name, how to call it on
the fuzz input, the exception class names it may raise on hostile bytes, and how to make
its seed corpus from valid encodings. A target whose function is not in this build is
skipped with a message.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_700_000_000.0  # the fixed `now` of read_entry

Call = Callable[[bytes], object]


class Target(NamedTuple):
    function: str  # the _native function that must exist
    make: Callable[[ModuleType], Call]  # the call on one input
    allowed: tuple[str, ...]  # exception names allowed ("MalformedError" is the module's)
    seeds: Callable[[ModuleType], Iterable[bytes]]


def _load_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def native() -> ModuleType:
    """The instrumented build named by CM_FUZZ_NATIVE, else the installed one."""
    path = os.environ.get("CM_FUZZ_NATIVE")
    if path:
        return _load_file("fastapi_cachemate._native", Path(path))
    import fastapi_cachemate._native as module

    return module


# ---- sample values: the seeds are their encodings ----

UTC = dt.timezone.utc
SAMPLES: list[Any] = [
    None,
    True,
    0,
    -1,
    127,
    128,
    -33,
    65536,
    2**32,
    2**64 - 1,
    -(2**63),
    1.5,
    -0.0,
    "",
    "ascii",
    "é" * 40,
    "x" * 300,
    b"",
    b"\x00" * 300,
    [],
    [1, [2, [3]]],
    {},
    {"a": 1, "b": [None, True]},
    {1: "int key", b"k": 2.5},
    {
        "items": [
            {
                "id": i,
                "name": f"user {i}",
                "score": i / 3,
                "ok": i % 2 == 0,
                "tags": ["a", "b"],
                "geo": None,
            }
            for i in range(5)
        ],
        "total": 5,
    },
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    dt.datetime(2600, 1, 1, tzinfo=UTC),
    dt.datetime(1960, 1, 1, tzinfo=UTC),
    dt.date(2024, 2, 29),
    dt.time(1, 2, 3, 4),
    dt.time(5, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
    dt.datetime(2020, 1, 1, 12),
    uuid.UUID(int=2**127 + 5),
    Decimal("-1.25E+7"),
    Decimal("NaN"),
    [list(range(20)), {str(i): i for i in range(20)}],
]


def _seeds_unpackb(m: ModuleType) -> Iterable[bytes]:
    for value in SAMPLES:
        yield m.packb(value)
    yield m.packb(SAMPLES)


def _seeds_decompress(m: ModuleType) -> Iterable[bytes]:
    for value in SAMPLES[-20:]:
        yield m.compress(m.packb(value))
    yield m.compress(b"x" * 100_000)
    yield m.compress(b"")


def _seeds_read_entry(m: ModuleType) -> Iterable[bytes]:
    body = m.packb(SAMPLES)
    for compression in (0, 1, 2):
        for size in (0, 10, 5000):
            yield m.write_entry(
                status=200,
                headers=[(b"content-type", b"application/json")],
                body=body[:size] * (1 + size // max(len(body), 1)),
                created=NOW - 30,
                ttl=60,
                grace=10,
                compute_ms=12.5,
                tags=["users", "page:1"],
                fingerprint=b"\x01" * 8,
                compression=compression,
                min_size=100,
            )


# ---- the call wrappers ----


def _unpackb(m: ModuleType) -> Call:
    """Decode; what decodes must encode again and decode to the same value."""

    def call(data: bytes) -> object:
        value = m.unpackb(data)
        again = m.unpackb(m.packb(value))
        if repr(again) != repr(value):
            raise AssertionError(f"round trip changed {value!r} into {again!r}")
        return value

    return call


def _unpackb_twin(m: ModuleType) -> Call:
    """The C decoder and its pure-Python twin must give the same value or message."""
    twin = _load_file("cm_pure_msgpack", ROOT / "fastapi_cachemate/_pure/msgpack.py")

    def outcome(fn: Callable[[bytes], object], err: type[BaseException], data: bytes) -> str:
        try:
            return "ok " + repr(fn(data))
        except err as exc:
            return "error " + str(exc)

    def call(data: bytes) -> object:
        ours = outcome(m.unpackb, m.MalformedError, data)
        theirs = outcome(twin.unpackb, twin.MalformedError, data)
        if ours != theirs:
            raise AssertionError(f"C: {ours[:300]}\ntwin: {theirs[:300]}")
        return None

    return call


TARGETS: dict[str, Target] = {
    "unpackb": Target("unpackb", _unpackb, ("MalformedError",), _seeds_unpackb),
    "unpackb_twin": Target("unpackb", _unpackb_twin, (), _seeds_unpackb),
    "decompress": Target(
        "decompress",
        lambda m: lambda d: m.decompress(d, max_size=1 << 20),
        ("MalformedError", "ValueError"),
        _seeds_decompress,
    ),
    "read_entry": Target(
        "read_entry", lambda m: lambda d: m.read_entry(d, NOW), (), _seeds_read_entry
    ),
}


def load(name: str) -> tuple[Call, tuple[type[BaseException], ...]] | None:
    """(call, allowed exception classes), or None (with a message) when the function is
    missing from this build."""
    if name not in TARGETS:
        raise SystemExit(f"unknown fuzz target {name!r}; targets: {', '.join(TARGETS)}")
    target = TARGETS[name]
    m = native()
    if not hasattr(m, target.function):
        print(f"fuzz: skipping {name}: _native.{target.function} does not exist in this build")
        return None
    classes = tuple(getattr(m if n == "MalformedError" else builtins, n) for n in target.allowed)
    return target.make(m), classes


def write_seeds(name: str, directory: str) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for seed in TARGETS[name].seeds(native()):
        (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        count += 1
    print(f"fuzz: {count} seeds for {name} in {out}")


if __name__ == "__main__":
    print(" ".join(TARGETS))
