"""Helpers for the leak scripts: each script runs in its own process (test_leaks.py).

assert_no_leak(fn) calls fn many times and fails if the resident memory keeps growing:
a leak of even one small object per call shows as megabytes over the rounds.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def assert_no_leak(
    fn: Callable[[], object], *, calls: int = 20_000, rounds: int = 5, slack: int = 1 << 20
) -> None:
    """Warm up, then run `rounds` rounds of `calls` calls; RSS may not grow past `slack`."""
    for _ in range(calls):
        fn()
    gc.collect()
    start = rss_bytes()
    for _ in range(rounds):
        for _ in range(calls):
            fn()
        gc.collect()
    grown = rss_bytes() - start
    name = getattr(fn, "__name__", repr(fn))
    assert grown <= slack, f"{name}: RSS grew {grown} bytes over {rounds * calls} calls"


def raises(fn: Callable[[], object], exc: type[BaseException]) -> Callable[[], None]:
    """A call that must raise exc: for looping error paths."""

    def call() -> None:
        try:
            fn()
        except exc:
            return
        raise AssertionError(f"{fn!r} did not raise {exc.__name__}")

    call.__name__ = f"raises_{getattr(fn, '__name__', 'call')}"
    return call
