"""Stats / EndpointStats on the C extension and its twin (the ``kernels`` fixture)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_cachemate import _native, _pure

BUMPS = {
    "hit": "hits",
    "miss": "misses",
    "stale": "stale_served",
    "bypass": "bypass",
    "no_cache": "no_cache",
    "refresh": "refreshes",
    "refresh_failure": "refresh_failures",
    "lock_wait": "lock_waits",
    "lock_timeout": "lock_timeouts",
    "backend_error": "backend_errors",
}
REASONS = (
    "status",
    "set_cookie",
    "no_store",
    "private",
    "vary_star",
    "vary_unkeyed",
    "head",
    "head_empty_body",
    "authorization",
    "too_large",
    "streaming",
    "error",
)


def test_constants(kernels: ModuleType) -> None:
    assert kernels.NOT_STORED_REASONS == REASONS
    assert kernels.STATS_COUNTERS[:14] == (
        "hits",
        "misses",
        "stale_served",
        "bypass",
        "no_cache",
        "stored",
        "not_stored",
        "refreshes",
        "refresh_failures",
        "lock_waits",
        "lock_timeouts",
        "backend_errors",
        "bytes_before_compression",
        "bytes_after_compression",
    )
    assert kernels.STATS_COUNTERS[14:] == tuple(f"not_stored_{r}" for r in REASONS)
    assert (kernels.BREAKER_CLOSED, kernels.BREAKER_OPEN, kernels.BREAKER_HALF_OPEN) == (0, 1, 2)


def test_new_row_is_all_zero(kernels: ModuleType) -> None:
    stats = kernels.Stats()
    row = stats.endpoint("/items/{id}")
    assert row.name == "/items/{id}"
    assert row.snapshot() == dict.fromkeys(kernels.STATS_COUNTERS, 0)
    assert list(row.snapshot()) == list(kernels.STATS_COUNTERS)
    assert len(stats) == 1


def test_endpoint_returns_the_same_row(kernels: ModuleType) -> None:
    stats = kernels.Stats()
    a = stats.endpoint("a")
    assert stats.endpoint("a") is a
    assert stats.endpoint("b") is not a
    assert stats.endpoints() == ["a", "b"]


@pytest.mark.parametrize(("method", "counter"), sorted(BUMPS.items()))
def test_each_bump_touches_its_counter_only(kernels: ModuleType, method: str, counter: str) -> None:
    row = kernels.Stats().endpoint("e")
    getattr(row, method)()
    getattr(row, method)()
    snap = row.snapshot()
    assert snap[counter] == 2
    assert sum(snap.values()) == 2


def test_stored_counts_bytes(kernels: ModuleType) -> None:
    row = kernels.Stats().endpoint("e")
    row.stored(1000, 300)
    row.stored(24, 24)
    snap = row.snapshot()
    assert snap["stored"] == 2
    assert snap["bytes_before_compression"] == 1024
    assert snap["bytes_after_compression"] == 324
    assert sum(snap.values()) == 2 + 1024 + 324


@pytest.mark.parametrize("reason", range(len(REASONS)))
def test_not_stored_by_reason(kernels: ModuleType, reason: int) -> None:
    row = kernels.Stats().endpoint("e")
    row.not_stored(reason)
    snap = row.snapshot()
    assert snap["not_stored"] == 1
    assert snap[f"not_stored_{REASONS[reason]}"] == 1
    assert sum(snap.values()) == 2


def test_add(kernels: ModuleType) -> None:
    row = kernels.Stats().endpoint("e")
    row.add(0)
    row.add(kernels.STATS_COUNTERS.index("lock_waits"), 41)
    row.add(len(kernels.STATS_COUNTERS) - 1, 0)
    snap = row.snapshot()
    assert snap["hits"] == 1
    assert snap["lock_waits"] == 41
    assert sum(snap.values()) == 42


def test_counters_wrap_at_64_bits(kernels: ModuleType) -> None:
    row = kernels.Stats().endpoint("e")
    row.add(0, 2**64 - 1)
    assert row.snapshot()["hits"] == 2**64 - 1
    row.hit()
    assert row.snapshot()["hits"] == 0
    row.stored(2**64 - 1, 5)
    row.stored(3, 0)
    assert row.snapshot()["bytes_before_compression"] == 2


def test_totals_and_snapshot(kernels: ModuleType) -> None:
    stats = kernels.Stats()
    a, b = stats.endpoint("a"), stats.endpoint("b")
    a.hit()
    b.hit()
    b.miss()
    b.stored(10, 5)
    assert stats.snapshot() == {"a": a.snapshot(), "b": b.snapshot()}
    totals = stats.totals()
    assert totals["hits"] == 2
    assert totals["misses"] == 1
    assert totals["bytes_after_compression"] == 5
    assert kernels.Stats().totals() == dict.fromkeys(kernels.STATS_COUNTERS, 0)


def test_reset_keeps_rows(kernels: ModuleType) -> None:
    stats = kernels.Stats()
    row = stats.endpoint("a")
    row.hit()
    stats.breaker_state = kernels.BREAKER_OPEN
    stats.reset()
    assert stats.endpoint("a") is row
    assert row.snapshot()["hits"] == 0
    assert stats.breaker_state == kernels.BREAKER_CLOSED
    row.hit()
    assert stats.snapshot()["a"]["hits"] == 1
    row.reset()
    assert stats.totals()["hits"] == 0


def test_breaker_gauge(kernels: ModuleType) -> None:
    stats = kernels.Stats()
    assert stats.breaker_state == 0
    for state in (2, 1, 0):
        stats.breaker_state = state
        assert stats.breaker_state == state
    with pytest.raises(ValueError, match="breaker_state"):
        stats.breaker_state = 3
    with pytest.raises(TypeError):
        stats.breaker_state = "open"
    with pytest.raises(AttributeError):
        del stats.breaker_state
    assert stats.breaker_state == 0


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda r: r.stored(-1, 0), ValueError),
        (lambda r: r.stored(0, -1), ValueError),
        (lambda r: r.stored(2**64, 0), OverflowError),
        (lambda r: r.stored(1.5, 0), TypeError),
        (lambda r: r.stored("1", 0), TypeError),
        (lambda r: r.not_stored(len(REASONS)), ValueError),
        (lambda r: r.not_stored(-1), ValueError),
        (lambda r: r.not_stored(2**70), ValueError),
        (lambda r: r.not_stored("status"), TypeError),
        (lambda r: r.add(14 + len(REASONS)), ValueError),
        (lambda r: r.add(0, -1), ValueError),
        (lambda r: r.add(0, None), TypeError),
    ],
)
def test_errors_change_nothing(kernels: ModuleType, call: Any, exc: type[Exception]) -> None:
    row = kernels.Stats().endpoint("e")
    with pytest.raises(exc):
        call(row)
    assert sum(row.snapshot().values()) == 0


def test_bad_names_and_arity(kernels: ModuleType) -> None:
    stats = kernels.Stats()
    with pytest.raises(TypeError):
        stats.endpoint(b"a")
    row = stats.endpoint("e")
    with pytest.raises(TypeError):
        row.stored(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        row.hit(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        kernels.Stats(1)  # type: ignore[call-arg]


def test_endpoint_stats_not_instantiable() -> None:
    with pytest.raises(TypeError):
        _native.EndpointStats()  # type: ignore[misc]


def test_row_outlives_stats(kernels: ModuleType) -> None:
    stats = kernels.Stats()
    row = stats.endpoint("e")
    del stats
    row.hit()
    assert row.snapshot()["hits"] == 1


_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(sorted(BUMPS)), st.integers(0, 3)),
        st.tuples(
            st.just("stored"), st.integers(0, 3), st.integers(0, 2**40), st.integers(0, 2**40)
        ),
        st.tuples(st.just("not_stored"), st.integers(0, 3), st.integers(-1, 10)),
        st.tuples(
            st.just("add"), st.integers(0, 3), st.integers(-1, 24), st.integers(0, 2**64 - 1)
        ),
        st.tuples(
            st.just("reset"),
        ),
    ),
    max_size=60,
)


def _apply(stats: Any, ops: list[tuple[Any, ...]]) -> list[str]:
    outcomes = []
    for op in ops:
        name = op[0]
        try:
            if name == "reset":
                stats.reset()
            else:
                row = stats.endpoint(f"e{op[1]}")
                getattr(row, name)(*op[2:])
            outcomes.append("ok")
        except (TypeError, ValueError, OverflowError) as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_c_equals_twin(ops: list[tuple[Any, ...]]) -> None:
    c, py = _native.Stats(), _pure.Stats()
    assert _apply(c, ops) == _apply(py, ops)
    assert c.snapshot() == py.snapshot()
    assert c.totals() == py.totals()
    assert c.endpoints() == py.endpoints()
