"""fastapi_cachemate.metrics and CacheSetup.stats(): the Python-facing counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastapi_cachemate import CacheSetup, metrics
from fastapi_cachemate._breaker import BackendUnavailable, CircuitBreaker


@pytest.fixture(autouse=True)
def zeroed() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("status 404", "status"),
        ("status 500", "status"),
        ("set-cookie", "set_cookie"),
        ("cache-control: no-store", "no_store"),
        ("cache-control: no-store, private", "no_store"),
        ("cache-control: private", "private"),
        ("vary: *", "vary_star"),
        ("authorization", "authorization"),
        ("body of 3 bytes > max_entry_bytes", "too_large"),
        ("too_large", "too_large"),
        ("streaming", "streaming"),
        ("something else entirely", "error"),
        ("error", "error"),
    ],
)
def test_reason_index(text: str, reason: str) -> None:
    assert metrics.NOT_STORED_REASONS[metrics.reason_index(text)] == reason


def test_every_reason_name_maps_to_itself() -> None:
    for i, name in enumerate(metrics.NOT_STORED_REASONS):
        assert metrics.reason_index(name) == i


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
