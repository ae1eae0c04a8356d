"""RefreshTasks: one task per key, a limit, strong references, logged failures, aclose."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from fastapi_cachemate._runtime.tasks import RefreshTasks, RefreshTaskStats

LOGGER = "fastapi_cachemate._runtime.tasks"


class Job:
    """A refresh that runs until released; records what happened to it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = False
        self.cancelled = False
        self.factory_calls = 0

    def factory(self) -> Callable[[], Coroutine[Any, Any, None]]:
        def make() -> Coroutine[Any, Any, None]:
            self.factory_calls += 1
            return self.run()

        return make

    async def run(self) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.finished = True


async def test_dedup_per_key() -> None:
    tasks = RefreshTasks(limit=10)
    a, again, b = Job(), Job(), Job()
    assert tasks.spawn(b"a", a.factory()) is True
    assert tasks.spawn(b"a", again.factory()) is False
    assert again.factory_calls == 0  # refused: no coroutine created
    assert tasks.spawn(b"b", b.factory()) is True
    assert len(tasks) == 2
    assert b"a" in tasks
    a.release.set()
    task = tasks.get(b"a")
    assert task is not None
    await task
    await asyncio.sleep(0)  # one pass: the done callback runs
    assert b"a" not in tasks
    assert tasks.spawn(b"a", again.factory()) is True  # finished: the key may run again
    again.release.set()
    b.release.set()
    await tasks.aclose(10.0)
    assert a.finished
    assert again.finished
    assert b.finished
    assert tasks.stats == RefreshTaskStats(
        spawned=3, deduplicated=1, rejected=0, failed=0, cancelled=0
    )


async def test_limit() -> None:
    tasks = RefreshTasks(limit=3)
    jobs = [Job() for _ in range(5)]
    results = [tasks.spawn(bytes([i]), job.factory()) for i, job in enumerate(jobs)]
    assert results == [True, True, True, False, False]
    assert [j.factory_calls for j in jobs] == [1, 1, 1, 0, 0]
    assert len(tasks) == 3
    jobs[0].release.set()
    task = tasks.get(b"\x00")
    assert task is not None
    await task
    await asyncio.sleep(0)
    assert len(tasks) == 2
    assert tasks.spawn(b"\x03", jobs[3].factory()) is True  # room again
    assert tasks.stats.rejected == 2
    for job in jobs:
        job.release.set()
    await tasks.aclose(10.0)
    assert len(tasks) == 0


async def test_running_tasks_are_held_by_the_registry() -> None:
    tasks = RefreshTasks(limit=10)
    started = asyncio.Event()

    async def orphan() -> None:
        started.set()
        # a Future only this coroutine knows: nothing but the registry holds the task
        await asyncio.get_running_loop().create_future()

    tasks.spawn(b"k", orphan)
    await started.wait()
    task = tasks.get(b"k")
    assert task is not None
    ref = weakref.ref(task)
    del task
    gc.collect()  # the loop only holds weak references to tasks
    assert ref() is not None
    assert not ref().done()  # type: ignore[union-attr]
    await tasks.aclose(0.0)
    assert tasks.stats.cancelled == 1


async def test_exceptions_are_logged_never_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    caplog.set_level(logging.DEBUG, LOGGER)
    tasks = RefreshTasks(limit=10, name="refresh-test")

    async def boom() -> None:
        raise ZeroDivisionError("endpoint raised in a refresh")

    assert tasks.spawn(b"\xab\xcd", boom)
    task = tasks.get(b"\xab\xcd")
    assert task is not None
    await asyncio.wait([task])
    await asyncio.sleep(0)
    del task
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].refresh_key == "abcd"  # type: ignore[attr-defined]
    assert errors[0].registry == "refresh-test"  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ZeroDivisionError)
    assert tasks.stats.failed == 1
    assert len(tasks) == 0


async def test_aclose_drains_running_tasks() -> None:
    tasks = RefreshTasks(limit=10)
    done: list[int] = []

    async def short(i: int) -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # a few loop passes: still running when aclose starts
        done.append(i)

    for i in range(5):
        tasks.spawn(bytes([i]), functools.partial(short, i))
    await tasks.aclose(60.0)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert tasks.stats.cancelled == 0
    assert len(tasks) == 0


async def test_aclose_cancels_what_outlives_the_timeout() -> None:
    tasks = RefreshTasks(limit=10)
    quick, stuck = Job(), Job()
    quick.release.set()
    tasks.spawn(b"quick", quick.factory())
    tasks.spawn(b"stuck", stuck.factory())
    await stuck.started.wait()
    await tasks.aclose(0.0)
    assert quick.finished
    assert stuck.cancelled
    assert not stuck.finished
    assert tasks.stats.cancelled == 1
    assert len(tasks) == 0
    # closed: refuses new tasks without creating their coroutine
    late = Job()
    assert tasks.spawn(b"late", late.factory()) is False
    assert late.factory_calls == 0
    assert tasks.closed
    await tasks.aclose(0.0)  # idempotent


async def test_aclose_cancelled_cancels_every_task() -> None:
    tasks = RefreshTasks(limit=10)
    jobs = [Job() for _ in range(3)]
    for i, job in enumerate(jobs):
        tasks.spawn(bytes([i]), job.factory())
    await jobs[-1].started.wait()
    closer = asyncio.create_task(tasks.aclose(3600.0))
    await asyncio.sleep(0)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    for _ in range(3):
        await asyncio.sleep(0)
    assert all(job.cancelled for job in jobs)
    assert len(tasks) == 0


def test_rejects_bad_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        RefreshTasks(0)


def test_a_new_event_loop_forgets_the_tasks_of_the_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = RefreshTasks(limit=1)
    old_job, new_job = Job(), Job()
    old_loop, new_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:

        async def spawn_old() -> bool:
            started = tasks.spawn(b"k", old_job.factory())
            await old_job.started.wait()
            return started

        assert old_loop.run_until_complete(spawn_old()) is True

        async def in_new_loop() -> bool:
            started = tasks.spawn(b"k", new_job.factory())  # same key, limit 1: still accepted
            new_job.release.set()
            await tasks.aclose(10.0)
            return started

        assert new_loop.run_until_complete(in_new_loop()) is True
        assert new_job.finished
        assert any("another event loop" in r.getMessage() for r in caplog.records)
    finally:
        old_task = next(t for t in asyncio.all_tasks(old_loop))
        old_task.cancel()
        old_loop.run_until_complete(asyncio.wait([old_task]))
        old_loop.close()
        new_loop.close()
    assert old_job.cancelled
