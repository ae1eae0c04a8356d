"""Refresh decisions (csrc/refresh.c): the C functions against the twin on a grid, and the
properties of the rule in docs/design.md ("Refresh rule") on both implementations."""

from __future__ import annotations

import itertools
import math
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastapi_cachemate import _native, _pure

INF = math.inf
NAN = math.nan
DBL_MAX = 1.7976931348623157e308

SPECIAL = [NAN, -INF, -1.0, -0.0, 0.0, 5e-324, 1e-9, 1.0, 37.5, 1000.0, 60_000.0, DBL_MAX, INF]


def seed_should_early_update(
    compute_ms: float, remaining_ms: float, max_planing: float, buffer: float
) -> bool:
    """The seed's rule, verbatim (fastapi_cachemate/core/utils.py, v0.1.1)."""
    if remaining_ms <= compute_ms:
        return False
    buffer_ms = compute_ms * buffer
    sliding_window = min(3 * compute_ms, max_planing)
    threshold = buffer_ms + sliding_window
    return remaining_ms <= threshold


def test_grid_c_equals_twin() -> None:
    values = [NAN, -1.0, 0.0, 1e-9, 0.5, 3.0, 100.0, 30_000.0, DBL_MAX, INF]
    remaining = [*values, 2.0, 60.0, 400.0, 3000.0, 59_999.0]
    count = 0
    for c, r, t, p, b in itertools.product(values, remaining, values, values, [0.0, 0.2, NAN, INF]):
        expected = _pure.refresh_due(c, r, t, p, b)
        assert _native.refresh_due(c, r, t, p, b) is expected, (c, r, t, p, b)
        window = _native.refresh_window(c, t, p, b)
        twin_window = _pure.refresh_window(c, t, p, b)
        assert window == twin_window, (c, t, p, b)
        assert not math.isnan(window)
        count += 1
    assert count == 10 * 15 * 10 * 10 * 4


def test_xfetch_grid_c_equals_twin() -> None:
    us = [NAN, -INF, -1.0, -0.0, 0.0, 5e-324, 1e-300, 1e-9, 0.1, 0.5, 0.999999, 1.0, 2.0, INF]
    for c, r, beta, u in itertools.product(SPECIAL, SPECIAL, [NAN, -1.0, 0.0, 0.5, 1.0, 4.0], us):
        expected = _pure.xfetch_due(c, r, beta, u)
        assert _native.xfetch_due(c, r, beta, u) is expected, (c, r, beta, u)


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)


@given(c=anything, r=anything, t=anything, p=anything, b=anything)
def test_random_c_equals_twin(c: float, r: float, t: float, p: float, b: float) -> None:
    assert _native.refresh_due(c, r, t, p, b) is _pure.refresh_due(c, r, t, p, b)
    assert _native.refresh_window(c, t, p, b) == _pure.refresh_window(c, t, p, b)


@given(c=anything, r=anything, beta=anything, u=anything)
def test_random_xfetch_c_equals_twin(c: float, r: float, beta: float, u: float) -> None:
    assert _native.xfetch_due(c, r, beta, u) is _pure.xfetch_due(c, r, beta, u)


@pytest.mark.parametrize("remaining", [0.0, -0.0, -1.0, -1e9, -INF, NAN, INF])
@pytest.mark.parametrize("compute", [0.0, 50.0, 1e6, INF, NAN])
def test_never_due_at_or_past_expiry(kernels: ModuleType, remaining: float, compute: float) -> None:
    assert kernels.refresh_due(compute, remaining, 60_000.0, 30_000.0, 0.2) is False
    assert kernels.xfetch_due(compute, remaining, 1.0, 0.0) is False


@pytest.mark.parametrize(
    ("compute", "ttl", "cap", "buffer"),
    [
        (0.0, 60_000.0, 30_000.0, 0.2),  # instant endpoint: the seed never fires
        (1e-6, 1_000.0, 30_000.0, 0.2),
        (100.0, 60_000.0, 30_000.0, 0.2),  # compute < cap
        (45_000.0, 600_000.0, 30_000.0, 0.2),  # compute > cap: the seed never fires
        (60_000.0, 600_000.0, 1_000.0, 0.0),
    ],
)
def test_fires_in_the_last_stretch(
    kernels: ModuleType, compute: float, ttl: float, cap: float, buffer: float
) -> None:
    window = kernels.refresh_window(compute, ttl, cap, buffer)
    assert window >= 0.05 * ttl
    assert window >= buffer * compute + min(3 * compute, cap)
    for fraction in (1.0, 0.5, 0.01):
        assert kernels.refresh_due(compute, window * fraction, ttl, cap, buffer) is True
    assert kernels.refresh_due(compute, window * 1.01 + 1.0, ttl, cap, buffer) is False
    assert kernels.refresh_due(compute, ttl, ttl, cap, buffer) is (ttl <= window)


def test_the_seed_had_dead_zones() -> None:
    """Where the seed's rule never fires, at any remaining time (refresh_due does, above)."""
    remaining = [x / 10 for x in range(1, 6_000_001, 997)]
    assert not any(seed_should_early_update(0.0, r, 30_000, 0.2) for r in remaining)
    assert not any(seed_should_early_update(45_000.0, r, 30_000, 0.2) for r in remaining)
    assert any(_native.refresh_due(0.0, r, 60_000.0, 30_000.0, 0.2) for r in remaining)
    assert any(_native.refresh_due(45_000.0, r, 600_000.0, 30_000.0, 0.2) for r in remaining)


@given(
    c=st.floats(min_value=0, max_value=1e7),
    r=st.floats(min_value=1e-3, max_value=1e8),
    t=st.floats(min_value=0, max_value=1e8),
    p=st.floats(min_value=0, max_value=1e7),
    b=st.floats(min_value=0, max_value=10),
)
def test_fires_whenever_the_seed_fires(c: float, r: float, t: float, p: float, b: float) -> None:
    if seed_should_early_update(c, r, p, b):
        assert _native.refresh_due(c, r, t, p, b) is True
        assert _pure.refresh_due(c, r, t, p, b) is True


@given(
    c=anything,
    t=anything,
    p=anything,
    b=anything,
    rs=st.lists(st.floats(min_value=1e-9, max_value=1e12), min_size=2, max_size=20),
)
def test_monotonic_in_remaining(c: float, t: float, p: float, b: float, rs: list[float]) -> None:
    """Among positive remaining times, due for r implies due for every smaller r."""
    for module in (_native, _pure):
        decisions = [module.refresh_due(c, r, t, p, b) for r in sorted(rs)]
        assert decisions == sorted(decisions, reverse=True)


def test_xfetch_formula(kernels: ModuleType) -> None:
    # 100 ms * 1.0 * -ln(0.5) = 69.3 ms
    assert kernels.xfetch_due(100.0, 69.0, 1.0, 0.5) is True
    assert kernels.xfetch_due(100.0, 70.0, 1.0, 0.5) is False
    assert kernels.xfetch_due(100.0, 138.0, 2.0, 0.5) is True
    assert kernels.xfetch_due(100.0, 1e-9, 1.0, 1.0) is False  # -ln 1 = 0
    assert kernels.xfetch_due(100.0, 1e300, 1.0, 0.0) is True  # the limit u -> 0
    assert kernels.xfetch_due(100.0, 1e300, 1.0, -1.0) is True
    assert kernels.xfetch_due(100.0, 1.0, 1.0, NAN) is False
    assert kernels.xfetch_due(0.0, 1.0, 1.0, 0.0) is False  # 0 * inf is not due
    assert kernels.xfetch_due(100.0, 1.0, 0.0, 0.0) is False
    assert kernels.xfetch_due(NAN, 1.0, 1.0, 0.0) is False
    assert kernels.xfetch_due(INF, 1.0, 1.0, 0.5) is True


@given(
    c=st.floats(min_value=0, max_value=1e6),
    r=st.floats(min_value=1e-6, max_value=1e6),
    beta=st.floats(min_value=0, max_value=10),
    u1=st.floats(min_value=0, max_value=1),
    u2=st.floats(min_value=0, max_value=1),
)
def test_xfetch_monotonic_in_u(c: float, r: float, beta: float, u1: float, u2: float) -> None:
    lo, hi = sorted((u1, u2))
    for module in (_native, _pure):
        if module.xfetch_due(c, r, beta, hi):
            assert module.xfetch_due(c, r, beta, lo)


def test_ints_accepted_other_types_refused(kernels: ModuleType) -> None:
    assert kernels.refresh_due(0, 100, 60_000, 30_000, 0) is True
    assert kernels.xfetch_due(100, 69, 1, 0.5) is True
    with pytest.raises(TypeError):
        kernels.refresh_due("1", 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(TypeError):
        kernels.xfetch_due(1.0, None, 1.0, 0.5)
    with pytest.raises(TypeError):
        kernels.refresh_window(1.0, 1.0, 1.0)
    assert kernels.REFRESH_TTL_FLOOR == 0.05
