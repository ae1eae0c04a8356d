"""SingleFlight: one computation per key among concurrent callers, in one event loop."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

import pytest

from fastapi_cachemate._runtime.singleflight import SingleFlight


class Gate:
    """A computation that counts its runs and finishes when the test opens the gate."""

    def __init__(self, value: object = "value") -> None:
        self.value = value
        self.runs = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> object:
        self.runs += 1
        self.started.set()
        await self.release.wait()
        return self.value


async def until_waiting(flight: SingleFlight, tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Let every task reach its await (no sleep: each loop pass runs all ready tasks)."""
    for _ in range(5):
        await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)


async def test_200_concurrent_callers_one_computation() -> None:
    flight = SingleFlight()
    gate = Gate(b"body")
    tasks = [asyncio.create_task(flight.run(b"k", gate)) for _ in range(200)]
    await gate.started.wait()
    await until_waiting(flight, tasks)
    assert len(flight) == 1
    gate.release.set()
    results = await asyncio.gather(*tasks)
    assert gate.runs == 1
    assert [r for r, _ in results] == [b"body"] * 200
    assert sum(leader for _, leader in results) == 1
    assert results[0][1] is True  # the first caller led
    assert len(flight) == 0  # no growth


async def test_result_is_the_same_object_for_everyone() -> None:
    flight = SingleFlight()
    gate = Gate(value=object())
    tasks = [asyncio.create_task(flight.run(b"k", gate)) for _ in range(3)]
    await gate.started.wait()
    gate.release.set()
    results = await asyncio.gather(*tasks)
    assert all(r is gate.value for r, _ in results)


async def test_exception_is_shared_and_entry_removed() -> None:
    flight = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def boom() -> bytes:
        nonlocal runs
        runs += 1
        await release.wait()
        raise ValueError("endpoint failed")

    tasks = [asyncio.create_task(flight.run(b"k", boom)) for _ in range(50)]
    for _ in range(3):
        await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert runs == 1
    assert all(isinstance(o, ValueError) and str(o) == "endpoint failed" for o in outcomes)
    assert len(flight) == 0
    # the next call computes again (failures are not cached)
    ok = Gate(b"again")
    ok.release.set()
    assert await flight.run(b"k", ok) == (b"again", True)


async def test_exception_without_followers_is_not_reported_as_unretrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    flight = SingleFlight()

    async def boom() -> bytes:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await flight.run(b"k", boom)
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []


async def test_keys_are_independent() -> None:
    flight = SingleFlight()
    a, b = Gate(b"a"), Gate(b"b")
    ta = [asyncio.create_task(flight.run(b"A", a)) for _ in range(10)]
    tb = [asyncio.create_task(flight.run(b"B", b)) for _ in range(10)]
    await a.started.wait()
    await b.started.wait()
    assert len(flight) == 2
    b.release.set()  # B finishes while A still runs
    assert {r for r, _ in await asyncio.gather(*tb)} == {b"b"}
    assert not any(t.done() for t in ta)
    assert b"A" in flight
    assert b"B" not in flight
    a.release.set()
    assert {r for r, _ in await asyncio.gather(*ta)} == {b"a"}
    assert (a.runs, b.runs) == (1, 1)
    assert len(flight) == 0


async def test_cancelled_leader_hands_over_to_one_follower() -> None:
    flight = SingleFlight()
    first = Gate(b"first")
    leader = asyncio.create_task(flight.run(b"k", first))
    await first.started.wait()

    followers_fn = Gate(b"second")
    followers = [asyncio.create_task(flight.run(b"k", followers_fn)) for _ in range(20)]
    await until_waiting(flight, followers)
    assert followers_fn.runs == 0

    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    # exactly one follower took over with its own fn; the others follow it
    await followers_fn.started.wait()
    await until_waiting(flight, followers)
    assert followers_fn.runs == 1
    assert len(flight) == 1
    followers_fn.release.set()
    results = await asyncio.gather(*followers)
    assert [r for r, _ in results] == [b"second"] * 20
    assert sum(is_leader for _, is_leader in results) == 1
    assert first.runs == 1
    assert followers_fn.runs == 1
    assert len(flight) == 0


async def test_cancelled_leader_without_followers_leaves_no_entry() -> None:
    flight = SingleFlight()
    gate = Gate()
    task = asyncio.create_task(flight.run(b"k", gate))
    await gate.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(flight) == 0


async def test_cancelled_follower_does_not_disturb_the_others() -> None:
    flight = SingleFlight()
    gate = Gate(b"v")
    leader = asyncio.create_task(flight.run(b"k", gate))
    await gate.started.wait()
    quitter = asyncio.create_task(flight.run(b"k", gate))
    stayer = asyncio.create_task(flight.run(b"k", gate))
    await until_waiting(flight, [quitter, stayer])
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert not leader.done()
    assert not stayer.done()
    gate.release.set()
    assert await leader == (b"v", True)
    assert await stayer == (b"v", False)
    assert gate.runs == 1


async def test_exception_raised_after_follower_cancelled_is_retrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    flight = SingleFlight()
    release = asyncio.Event()

    async def boom() -> bytes:
        await release.wait()
        raise RuntimeError("late")

    leader = asyncio.create_task(flight.run(b"k", boom))
    await asyncio.sleep(0)
    follower = asyncio.create_task(flight.run(b"k", boom))
    await asyncio.sleep(0)
    follower.cancel()
    release.set()
    with pytest.raises(RuntimeError):
        await leader
    with pytest.raises(asyncio.CancelledError):
        await follower
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []


def test_a_new_event_loop_forgets_the_computations_of_the_old_one() -> None:
    flight = SingleFlight()
    old_loop, new_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    stuck = Gate(b"old")
    try:

        async def start_old() -> asyncio.Task[tuple[object, bool]]:
            task = asyncio.create_task(flight.run(b"k", stuck))
            await stuck.started.wait()
            return task

        old_task = old_loop.run_until_complete(start_old())
        assert b"k" in flight

        async def in_new_loop() -> tuple[object, bool]:
            fresh = Gate(b"new")
            fresh.release.set()
            return await flight.run(b"k", fresh)  # leads: the old computation is forgotten

        assert new_loop.run_until_complete(in_new_loop()) == (b"new", True)
    finally:
        old_task.cancel()
        old_loop.run_until_complete(asyncio.wait([old_task]))
        old_loop.close()
        new_loop.close()
