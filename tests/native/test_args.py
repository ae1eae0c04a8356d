"""Argument parsing of the kernels' entry points (csrc/args.c), C and twin alike.

Every entry point that takes more than one argument parses them through one helper; the
calls below hold for the C functions as for their Python twins.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from fastapi_cachemate import _native

ENTRY = {"status": 200, "headers": [], "body": b"x", "created": 0.0, "ttl": 1.0}


def accepted(k: ModuleType) -> list[Callable[[], Any]]:
    frame = k.compress(b"data")
    return [
        lambda: k.KeySpec("p", "/r", None),
        lambda: k.KeySpec(prefix="p", route="/r", query_names=["a"], cookie_names=["c"]),
        lambda: k.KeySpec("p", "/r", None, header_names=["h"]),
        lambda: k.MemoryStore(),
        lambda: k.MemoryStore(10),
        lambda: k.MemoryStore(max_bytes=10),
        lambda: k.blake2b(b"x", 16, b"k"),
        lambda: k.blake2b(b"x", digest_size=16, key=b"k"),
        lambda: k.compress(b"x", level=1),
        lambda: k.compress(b"x", 1),
        lambda: k.decompress(frame, max_size=100),
        lambda: k.write_entry(**ENTRY),
        lambda: k.write_entry(**ENTRY, grace=1.0, tags=["t"], level=1),
        lambda: k.read_entry(b"", 0.0),
        lambda: k.read_entry(b"", 0.0, None),
        lambda: k.refresh_due(10.0, 5.0, 100.0, 50.0, 0.1),
        lambda: k.MemoryStore().keys(),
        lambda: k.MemoryStore().keys(b"p"),
    ]


def refused(k: ModuleType) -> list[Callable[[], Any]]:
    spec = k.KeySpec("p", "/r", None)
    return [
        lambda: k.KeySpec("p"),  # missing required
        lambda: k.KeySpec("p", "/r", None, (), (), 1),  # too many
        lambda: k.KeySpec("p", "/r", None, prefix="q"),  # given twice
        lambda: k.KeySpec("p", "/r", None, colour=1),  # unknown keyword
        lambda: k.MemoryStore(1, 2),
        lambda: k.MemoryStore(size=1),
        lambda: k.MemoryStore("10"),
        lambda: k.blake2b(data=b"x"),  # positional-only by keyword
        lambda: k.blake2b(b"x", 16, b"k", 1),
        lambda: k.blake2b(b"x", digest_size=1.5),
        lambda: k.compress(),
        lambda: k.compress(b"x", 1, 2),
        lambda: k.compress(b"x", 1, level=1),
        lambda: k.decompress(b"x", size=1),
        lambda: k.write_entry(200, [], b"x", 0.0, 1.0),  # keyword-only
        lambda: k.write_entry(**{**ENTRY, "colour": 1}),
        lambda: k.write_entry(status=200, headers=[], body=b"x", created=0.0),  # no ttl
        lambda: k.read_entry(b""),
        lambda: k.read_entry(b"", 0.0, None, 1),
        lambda: k.build_key(spec, "GET", "/", []),
        lambda: k.build_key(spec, "GET", "/", [], [], None, 1),
        lambda: k.refresh_due(1.0, 2.0),
        lambda: k.xfetch_due(1.0, 2.0, 3.0, 4.0, 5.0),
        lambda: k.MemoryStore().get(b"k"),
        lambda: k.MemoryStore().set(b"k", b"v", 1.0),
        lambda: k.MemoryStore().keys(b"a", b"b"),
        lambda: k.Stats().endpoint("e").add(),
        lambda: k.Stats().endpoint("e").stored(1),
    ]


def test_accepted_calls(kernels: ModuleType) -> None:
    for call in accepted(kernels):
        call()


@pytest.mark.parametrize("index", range(len(refused(_native))))
def test_refused_calls_raise_type_error(kernels: ModuleType, index: int) -> None:
    with pytest.raises(TypeError):
        refused(kernels)[index]()
