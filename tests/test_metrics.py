"""fastapi_cachemate.metrics and CacheSetup.stats(): the Python-facing counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastapi_cachemate import CacheSetup, metrics
from fastapi_cachemate._runtime.breaker import BackendUnavailable, CircuitBreaker


@pytest.fixture(autouse=True)
def zeroed() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


# Written out, not derived from NOT_STORED_COUNTERS: a reason mapped to another's counter fails.
REASON_COUNTERS = {
    metrics.NotStored.STATUS: "not_stored_status",
    metrics.NotStored.SET_COOKIE: "not_stored_set_cookie",
    metrics.NotStored.NO_STORE: "not_stored_no_store",
    metrics.NotStored.PRIVATE: "not_stored_private",
    metrics.NotStored.VARY_STAR: "not_stored_vary_star",
    metrics.NotStored.VARY_UNKEYED: "not_stored_vary_unkeyed",
    metrics.NotStored.HEAD: "not_stored_head",
    metrics.NotStored.HEAD_EMPTY_BODY: "not_stored_head_empty_body",
    metrics.NotStored.AUTHORIZATION: "not_stored_authorization",
    metrics.NotStored.TOO_LARGE: "not_stored_too_large",
    metrics.NotStored.STREAMING: "not_stored_streaming",
    metrics.NotStored.ERROR: "not_stored_error",
}


def test_every_not_stored_reason_has_a_counter_of_its_own() -> None:
    assert set(REASON_COUNTERS) == set(metrics.NotStored)
    assert set(metrics.NOT_STORED_COUNTERS) == set(metrics.NotStored)
    counters = [f"not_stored_{name}" for name in metrics.NOT_STORED_COUNTERS.values()]
    assert len(set(counters)) == len(counters)  # no two reasons share one
    assert set(counters) == {f"not_stored_{r}" for r in metrics.NOT_STORED_REASONS}
    assert set(counters) <= set(metrics.STATS_COUNTERS)


@pytest.mark.parametrize("reason", list(metrics.NotStored), ids=lambda r: r.name)
def test_not_stored_counts_the_reason_on_its_own_counter(reason: metrics.NotStored) -> None:
    row = metrics.endpoint("/r")
    metrics.not_stored(row, reason)
    metrics.not_stored(row, reason)
    counted = {k: v for k, v in row.snapshot().items() if v}
    assert counted == {"not_stored": 2, REASON_COUNTERS[reason]: 2}


def test_snapshot_shape_and_totals() -> None:
    a = metrics.endpoint("/a")
    b = metrics.endpoint("/b/{id}")
    assert metrics.endpoint("/a") is a
    a.hit()
    a.hit()
    b.miss()
    b.stored(2048, 512)
    b.not_stored(metrics.REASON_SET_COOKIE)
    snap = metrics.snapshot()
    assert set(snap) == {"endpoints", "totals", "breaker", "near"}
    assert snap["endpoints"]["/a"]["hits"] == 2
    assert snap["endpoints"]["/b/{id}"]["not_stored_set_cookie"] == 1
    assert snap["totals"]["hits"] == 2
    assert snap["totals"]["misses"] == 1
    assert snap["totals"]["bytes_before_compression"] == 2048
    assert snap["totals"]["bytes_after_compression"] == 512
    assert snap["breaker"] == "closed"
    assert CacheSetup.stats() == snap


def test_reset_zeroes_but_keeps_rows() -> None:
    row = metrics.endpoint("/a")
    row.hit()
    metrics.reset()
    assert metrics.snapshot()["endpoints"]["/a"]["hits"] == 0
    row.hit()
    assert metrics.snapshot()["totals"]["hits"] == 1


def test_hit_ratio() -> None:
    assert metrics.hit_ratio({}) is None
    assert metrics.hit_ratio({"hits": 3, "stale_served": 1, "misses": 4}) == 0.5
    assert metrics.hit_ratio({"misses": 2}) == 0.0


def test_set_breaker_state() -> None:
    metrics.set_breaker_state("open")
    assert metrics.snapshot()["breaker"] == "open"
    metrics.set_breaker_state(2)
    assert metrics.snapshot()["breaker"] == "half_open"
    with pytest.raises(ValueError, match="breaker state"):
        metrics.set_breaker_state("ajar")
    assert metrics.snapshot()["breaker"] == "half_open"


async def test_tracked_breaker_drives_the_gauge() -> None:
    clock = [0.0]
    breaker = CircuitBreaker(failures=1, reset_after=10.0, clock=lambda: clock[0])
    metrics.track_breaker(breaker)

    async def fail() -> None:
        raise ConnectionError("down")

    async def ok() -> int:
        return 1

    assert metrics.snapshot()["breaker"] == "closed"
    with pytest.raises(BackendUnavailable):
        await breaker.call(fail, 1.0)
    assert metrics.snapshot()["breaker"] == "open"
    clock[0] = 11.0
    assert await breaker.call(ok, 1.0) == 1
    assert metrics.snapshot()["breaker"] == "closed"


def test_tracked_breaker_is_weak() -> None:
    class Fake:
        state = "open"

    fake = Fake()
    metrics.track_breaker(fake)
    assert metrics.snapshot()["breaker"] == "open"
    metrics.set_breaker_state("closed")
    del fake
    assert metrics.snapshot()["breaker"] == "closed"


def test_endpoint_name() -> None:
    from fastapi.routing import APIRoute

    async def get_item(item_id: int) -> int:
        return item_id

    route = APIRoute("/items/{item_id}", get_item)
    assert metrics.endpoint_name(route) == "/items/{item_id}"

    class Named:
        name = "thing"

    assert metrics.endpoint_name(Named()) == "thing"
