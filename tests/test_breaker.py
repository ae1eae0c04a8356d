"""CircuitBreaker: closed / open / half-open, timeouts, counters, one log line per change."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from fastapi_cachemate._runtime.breaker import (
    BackendUnavailable,
    BreakerState,
    BreakerStats,
    CircuitBreaker,
    Deadlines,
)
from tests.support.clock import FakeClock
from tests.support.servers import RedisServer

LOGGER = "fastapi_cachemate._runtime.breaker"


class Backend:
    """Counts calls; fails with the exception it is told to raise."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BaseException | None = None

    async def op(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, reset_after=5.0, clock=clock, name="test")


async def fail(breaker: CircuitBreaker, backend: Backend, times: int) -> None:
    for _ in range(times):
        with pytest.raises(BackendUnavailable) as info:
            await breaker.call(backend.op, 1.0)
        assert info.value.short_circuited is False
        assert info.value.__cause__ is backend.error


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The state, read through a call (mypy would keep an earlier assert's narrowing)."""
    return breaker.state


def changes(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int]]:
    return [
        (r.previous_state, r.state, r.levelno)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == LOGGER
    ]


async def test_closed_passes_results_and_resets_streak(breaker: CircuitBreaker) -> None:
    backend = Backend()
    assert await breaker.call(backend.op, 1.0) == "ok"
    backend.error = RedisConnectionError("down")
    await fail(breaker, backend, 2)
    assert breaker.consecutive_failures == 2
    backend.error = None
    assert await breaker.call(backend.op, 1.0) == "ok"
    assert breaker.consecutive_failures == 0
    backend.error = OSError("refused")
    await fail(breaker, backend, 2)  # 2 more: not consecutive with the first 2
    assert state_of(breaker) is BreakerState.CLOSED


async def test_opens_after_n_consecutive_failures_and_short_circuits(
    breaker: CircuitBreaker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    backend = Backend()
    backend.error = RedisConnectionError("down")
    await fail(breaker, backend, 3)
    assert state_of(breaker) is BreakerState.OPEN
    assert backend.calls == 3
    for _ in range(10):
        with pytest.raises(BackendUnavailable) as info:
            await breaker.call(backend.op, 1.0)
        assert info.value.short_circuited is True
    assert backend.calls == 3  # no call made while open
    assert breaker.stats == BreakerStats(
        calls=13, successes=0, failures=3, timeouts=0, short_circuited=10, state_changes=1
    )
    assert changes(caplog) == [("closed", "open", logging.WARNING)]
    record = next(r for r in caplog.records if r.name == LOGGER)
    assert record.breaker == "test"  # type: ignore[attr-defined]
    assert "down" in record.error  # type: ignore[attr-defined]
    assert record.consecutive_failures == 3  # type: ignore[attr-defined]


async def test_short_circuit_creates_no_coroutine(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    backend = Backend()
    backend.error = OSError("x")
    await fail(breaker, backend, 3)
    made: list[int] = []

    def factory() -> Awaitable[str]:
        made.append(1)
        return backend.op()

    with pytest.raises(BackendUnavailable):
        await breaker.call(factory, 1.0)
    assert made == []


async def test_half_open_probe_success_closes(
    breaker: CircuitBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    backend = Backend()
    backend.error = RedisConnectionError("down")
    await fail(breaker, backend, 3)
    clock.now += 4.999
    with pytest.raises(BackendUnavailable):
        await breaker.call(backend.op, 1.0)
    assert backend.calls == 3
    clock.now += 0.001
    backend.error = None
    assert await breaker.call(backend.op, 1.0) == "ok"
    assert backend.calls == 4
    assert state_of(breaker) is BreakerState.CLOSED
    assert changes(caplog) == [
        ("closed", "open", logging.WARNING),
        ("open", "half_open", logging.INFO),
        ("half_open", "closed", logging.INFO),
    ]
    assert breaker.stats.state_changes == 3


async def test_half_open_probe_failure_reopens_for_a_new_period(
    breaker: CircuitBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    backend = Backend()
    backend.error = RedisConnectionError("down")
    await fail(breaker, backend, 3)
    clock.now += 5.0
    await fail(breaker, backend, 1)  # the probe
    assert state_of(breaker) is BreakerState.OPEN
    clock.now += 4.0  # the new period counts from the failed probe
    with pytest.raises(BackendUnavailable) as info:
        await breaker.call(backend.op, 1.0)
    assert info.value.short_circuited
    assert backend.calls == 4
    assert changes(caplog) == [
        ("closed", "open", logging.WARNING),
        ("open", "half_open", logging.INFO),
        ("half_open", "open", logging.WARNING),
    ]


async def test_one_probe_at_a_time(breaker: CircuitBreaker, clock: FakeClock) -> None:
    backend = Backend()
    backend.error = OSError("down")
    await fail(breaker, backend, 3)
    clock.now += 5.0
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> str:
        started.set()
        await release.wait()
        return "probe"

    probe = asyncio.create_task(breaker.call(slow_probe, 10.0))
    await started.wait()
    assert state_of(breaker) is BreakerState.HALF_OPEN
    for _ in range(5):
        with pytest.raises(BackendUnavailable) as info:
            await breaker.call(backend.op, 1.0)
        assert info.value.short_circuited
    assert backend.calls == 3
    release.set()
    assert await probe == "probe"
    assert state_of(breaker) is BreakerState.CLOSED


async def test_cancelled_probe_frees_the_slot(breaker: CircuitBreaker, clock: FakeClock) -> None:
    backend = Backend()
    backend.error = OSError("down")
    await fail(breaker, backend, 3)
    clock.now += 5.0
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    probe = asyncio.create_task(breaker.call(hang, 10.0))
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert state_of(breaker) is BreakerState.HALF_OPEN
    backend.error = None
    assert await breaker.call(backend.op, 1.0) == "ok"  # the next caller probes
    assert state_of(breaker) is BreakerState.CLOSED


async def test_timeouts_count_as_failures(breaker: CircuitBreaker) -> None:
    never = asyncio.Event()

    async def hang() -> str:
        await never.wait()
        return "never"

    for _ in range(3):
        with pytest.raises(BackendUnavailable) as info:
            await breaker.call(hang, 0.0)
        assert isinstance(info.value.__cause__, asyncio.TimeoutError)
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.stats.timeouts == 3
    assert breaker.stats.failures == 3


async def test_other_exceptions_propagate_and_do_not_count(breaker: CircuitBreaker) -> None:
    backend = Backend()
    backend.error = ValueError("a bug, not an outage")
    for _ in range(5):
        with pytest.raises(ValueError, match="a bug"):
            await breaker.call(backend.op, 1.0)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.stats.failures == 0
    assert breaker.consecutive_failures == 0


async def test_redis_response_error_counts_by_default(breaker: CircuitBreaker) -> None:
    backend = Backend()
    backend.error = ResponseError("LOADING")
    await fail(breaker, backend, 3)
    assert state_of(breaker) is BreakerState.OPEN


async def test_failure_types_can_be_narrowed(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 5.0, clock, failure_types=(RedisConnectionError,))
    backend = Backend()
    backend.error = ResponseError("WRONGTYPE")
    with pytest.raises(ResponseError):
        await breaker.call(backend.op, 1.0)
    assert state_of(breaker) is BreakerState.CLOSED


async def test_a_burst_of_concurrent_failures_opens_once(
    breaker: CircuitBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    release, all_started = asyncio.Event(), asyncio.Event()
    started = 0

    async def slow_fail() -> str:
        nonlocal started
        started += 1
        if started == 50:
            all_started.set()
        await release.wait()
        raise RedisConnectionError("down")

    tasks = [asyncio.create_task(breaker.call(slow_fail, 10.0)) for _ in range(50)]
    await all_started.wait()
    release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, BackendUnavailable) for o in outcomes)
    assert changes(caplog) == [("closed", "open", logging.WARNING)]
    assert breaker.stats.failures == 50
    # the period starts at the opening, not at the last straggler
    clock.now += 5.0
    assert await breaker.call(Backend().op, 1.0) == "ok"


async def test_a_straggling_success_does_not_close_an_open_breaker(
    breaker: CircuitBreaker,
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_ok() -> str:
        started.set()
        await release.wait()
        return "late"

    straggler = asyncio.create_task(breaker.call(slow_ok, 10.0))
    await started.wait()
    backend = Backend()
    backend.error = OSError("down")
    await fail(breaker, backend, 3)
    release.set()
    assert await straggler == "late"
    assert state_of(breaker) is BreakerState.OPEN


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError, match="reset_after"):
        CircuitBreaker(1, 0)


# --- against a real redis-server -----------------------------------------------------------


@pytest.mark.redis
async def test_real_redis_stopped_opens_then_probe_closes_after_restart(
    redis_process: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    client = aioredis.Redis.from_url(redis_process.url, socket_timeout=1.0)
    breaker = CircuitBreaker(failures=3, reset_after=5.0, clock=clock, name="redis")
    sent = 0

    def get() -> Awaitable[Any]:
        nonlocal sent
        sent += 1
        return client.get("k")

    try:
        await client.set("k", b"v")
        assert await breaker.call(get, 0.5) == b"v"

        redis_process.stop()
        errors: list[BaseException | None] = []
        for _ in range(3):
            with pytest.raises(BackendUnavailable) as info:
                await breaker.call(get, 0.5)
            errors.append(info.value.__cause__)
        assert state_of(breaker) is BreakerState.OPEN
        assert all(isinstance(e, RedisConnectionError | OSError) for e in errors), errors
        sent_when_opened = sent
        for _ in range(100):
            with pytest.raises(BackendUnavailable) as info:
                await breaker.call(get, 0.5)
            assert info.value.short_circuited
        assert sent == sent_when_opened  # returned at once: no call was made

        redis_process.start()  # same port, empty (no persistence)
        clock.now += 5.0
        assert await breaker.call(get, 0.5) is None  # the probe reaches the new server
        assert state_of(breaker) is BreakerState.CLOSED
        assert await breaker.call(get, 0.5) is None
        assert [(p, s) for p, s, _ in changes(caplog)] == [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ]
    finally:
        await client.aclose()


# --- Deadlines: the per-call timeout ---------------------------------------------------------


# Deadlines' shared timers (slots) and their cancel bookkeeping exist from Python 3.11 on;
# 3.10 bounds each call with asyncio.wait_for instead.
slots_only = pytest.mark.skipif(sys.version_info < (3, 11), reason="Deadlines' slots are 3.11+")


async def hang_forever() -> str:
    await asyncio.Event().wait()
    return "never"


async def test_deadline_raises_timeout_and_withdraws_its_cancel() -> None:
    deadlines = Deadlines()
    with pytest.raises(asyncio.TimeoutError):  # TimeoutError itself from 3.11 on
        await deadlines.run(hang_forever, 0.0)
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):  # 3.10 has no cancellation counter (nor uses one)
        assert task.cancelling() == 0  # type: ignore[attr-defined,unused-ignore]
    await asyncio.sleep(0)  # and no cancellation is left pending for the next await
    assert await deadlines.run(Backend().op, 1.0) == "ok"


@slots_only
async def test_deadline_is_not_reached_by_a_quick_call() -> None:
    deadlines = Deadlines(resolution=3600.0)  # one slot for the whole test, however slow
    for _ in range(100):
        assert await deadlines.run(Backend().op, 60.0) == "ok"
    assert len(deadlines) == 1  # 100 calls in one slot share one timer
    assert all(not members for members in deadlines._slots.values())  # and left it


@slots_only
async def test_concurrent_calls_share_timers() -> None:
    deadlines = Deadlines(resolution=3600.0)  # one slot for the whole test
    started = asyncio.Event()
    count = 0

    async def wait() -> str:
        nonlocal count
        count += 1
        if count == 500:
            started.set()
        await asyncio.Event().wait()
        return "never"

    tasks = [asyncio.create_task(deadlines.run(wait, 1.0)) for _ in range(500)]
    await started.wait()
    assert len(deadlines) <= 2  # 500 deadlines, at most 2 timers (a slot boundary)
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)


async def test_an_outside_cancel_stays_a_cancel() -> None:
    deadlines = Deadlines()
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        return await hang_forever()

    task = asyncio.create_task(deadlines.run(hang, 60.0))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@slots_only  # 3.10's wait_for can lose a cancel that races its timeout (bpo-42130)
async def test_an_outside_cancel_at_the_same_time_as_the_deadline_wins() -> None:
    deadlines = Deadlines()
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        return await hang_forever()

    # a deadline already past: its slot's timer is due at the very next pass
    task = asyncio.create_task(deadlines.run(hang, -1.0))
    await started.wait()
    task.cancel()  # the request is cancelled in the same pass
    with pytest.raises(asyncio.CancelledError):
        await task


@slots_only
async def test_an_outer_shorter_bound_is_the_outer_ones() -> None:
    deadlines = Deadlines()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(deadlines.run(hang_forever, 3600.0), 0.001)
    assert len(deadlines) == 1  # its slot stays armed (fires in an hour, finds nobody)
    assert all(not members for members in deadlines._slots.values())


@slots_only
async def test_a_call_that_swallows_the_cancel_leaves_no_cancel_behind() -> None:
    deadlines = Deadlines()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "swallowed"
        return "never"

    assert await deadlines.run(stubborn, 0.0) == "swallowed"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # type: ignore[attr-defined,unused-ignore]


def test_deadlines_reject_a_bad_resolution() -> None:
    with pytest.raises(ValueError, match="resolution"):
        Deadlines(0)


@slots_only
async def test_a_call_that_swallows_the_cancel_and_goes_on_is_cancelled_again() -> None:
    """Python 3.11's wait_for can lose a cancellation that races with its inner future (and
    redis-py's connect uses it): the call goes on (its retry loop). It is cancelled again
    until it stops, and the caller still gets its TimeoutError, without a cancel left over."""
    deadlines = Deadlines()
    swallowed: list[int] = []

    async def stubborn_then_hang() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.append(1)
        await asyncio.Event().wait()  # "retries": until cancelled again
        return "never"

    call = asyncio.ensure_future(deadlines.run(stubborn_then_hang, 0.0))
    done, _ = await asyncio.wait({call}, timeout=60)  # bounds a failure; not a measurement
    assert call in done
    assert isinstance(call.exception(), TimeoutError)
    assert swallowed == [1]
    assert call.cancelling() == 0  # type: ignore[attr-defined,unused-ignore]
