"""Lease / acquire_or_wait: one computation per key across processes, on the backend lock.

Against the shipped lock managers: MemoryLockManager (with an injected clock where expiry
matters) and RedisLockManager on a real redis-server, including a holder in another process
killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from fastapi_cachemate._runtime.breaker import BackendUnavailable, CircuitBreaker
from fastapi_cachemate._runtime.lease import (
    Backoff,
    Found,
    Lease,
    NoLease,
    acquire_or_wait,
    lock_ttl_ms,
    try_acquire,
)
from fastapi_cachemate._runtime.singleflight import SingleFlight
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.types import LockManager
from tests.support.clock import FakeClock
from tests.support.locks import Counted, CountingRedisLocks
from tests.support.servers import RedisServer

LOGGER = "fastapi_cachemate._runtime.lease"
ROOT = Path(__file__).resolve().parent.parent


class CountingMemoryLocks(MemoryLockManager):
    """The shipped in-process lock manager, counting try_lock and extend calls."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self.extends = Counted()
        self.try_locks = 0

    async def try_lock(self, key: bytes, ttl_ms: int) -> str | None:
        self.try_locks += 1
        return await super().try_lock(key, ttl_ms)

    async def extend(self, key: bytes, token: str, ttl_ms: int) -> bool:
        ok = await super().extend(key, token, ttl_ms)
        await self.extends.bump()
        return ok


class SeedStyleLocks(LockManager):
    """A custom lock manager written for the seed: acquire/release only, no extend."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    async def acquire(self, lock_key: str) -> bool:
        if lock_key in self.keys:
            return False
        self.keys.add(lock_key)
        return True

    async def release(self, lock_key: str) -> bool:
        had = lock_key in self.keys
        self.keys.discard(lock_key)
        return had


class Store:
    """The cache entries (the holder stores, the waiters fetch); counts fetches."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.fetches = Counted()

    def fetcher(self, key: bytes) -> Callable[[], Awaitable[bytes | None]]:
        async def fetch() -> bytes | None:
            value = self.values.get(key)
            await self.fetches.bump()
            return value

        return fetch


FAST = Backoff(initial=0.005, max_delay=0.02)


# --- sizing and backoff ---------------------------------------------------------------------


def test_lock_ttl_is_sized_from_the_compute_time() -> None:
    assert lock_ttl_ms(5) == 5000
    assert lock_ttl_ms(5, None) == 5000
    assert lock_ttl_ms(5, 1.0) == 5000  # 2 s < 5 s
    assert lock_ttl_ms(5, 4.0) == 8000
    assert lock_ttl_ms(5, 4.0, factor=3) == 12000
    assert lock_ttl_ms(5, 100.0, max_seconds=60) == 60000
    assert lock_ttl_ms(0.0001) == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    b = Backoff(initial=0.02, factor=2, max_delay=0.25, jitter=0.5)
    it = b.delays(rng=lambda: 0.0)
    assert [round(next(it), 6) for _ in range(7)] == [0.02, 0.04, 0.08, 0.16, 0.25, 0.25, 0.25]
    it = b.delays(rng=lambda: 1.0)
    assert [round(next(it), 6) for _ in range(3)] == [0.01, 0.02, 0.04]

    rng = random.Random(7)
    delays = b.delays(rng.random)
    for _ in range(100):
        d = next(delays)
        assert 0.01 <= d <= 0.25
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)


# --- in-process lock manager ----------------------------------------------------------------


async def test_waiters_see_the_value_the_holder_stored() -> None:
    locks, store = CountingMemoryLocks(), Store()
    key, lock_key = b"entry", b"lock:entry"
    computations = 0

    holder = await acquire_or_wait(
        locks, lock_key, store.fetcher(key), ttl_ms=5000, wait_timeout=5, backoff=FAST
    )
    assert isinstance(holder, Lease)

    waiters = [
        asyncio.create_task(
            acquire_or_wait(
                locks, lock_key, store.fetcher(key), ttl_ms=5000, wait_timeout=30, backoff=FAST
            )
        )
        for _ in range(5)
    ]
    async with holder:
        computations += 1
        await store.fetches.reach(10)  # the waiters are polling
        store.values[key] = b"computed"
    outcomes = await asyncio.gather(*waiters)
    assert computations == 1
    for outcome in outcomes:
        assert isinstance(outcome, Found)
        assert outcome.value == b"computed"
        assert outcome.polls >= 1
    assert len(locks) == 0  # unlocked on exit


async def test_holder_extends_past_the_original_ttl() -> None:
    locks, store = CountingMemoryLocks(), Store()
    lease = await acquire_or_wait(locks, b"lock", store.fetcher(b"k"), ttl_ms=150, wait_timeout=1)
    assert isinstance(lease, Lease)
    assert lease.extend_every == pytest.approx(0.05)
    t0 = time.monotonic()
    async with lease:
        await locks.extends.reach(5)  # 5 extends, 50 ms apart: well past the 150 ms TTL
        assert time.monotonic() - t0 > 0.15
        assert await locks.try_lock(b"lock", 1000) is None  # still ours
        assert lease.extensions >= 4
        assert not lease.lost
    assert len(locks) == 0
    assert lease.elapsed > 0.15
    assert lease.lost is False


async def test_a_dead_holder_is_recovered_after_the_lock_ttl() -> None:
    clock = FakeClock()
    locks, store = CountingMemoryLocks(clock), Store()
    # a holder that took the lock and died: no extend, no unlock
    assert await locks.try_lock(b"lock", 200) is not None
    waiter = asyncio.create_task(
        acquire_or_wait(
            locks, b"lock", store.fetcher(b"k"), ttl_ms=5000, wait_timeout=30, backoff=FAST
        )
    )
    await store.fetches.reach(2)  # polling, the lock still taken
    assert not waiter.done()
    clock.now += 0.2  # the dead holder's TTL runs out
    outcome = await waiter
    assert isinstance(outcome, Lease)  # took over at its next poll
    async with outcome:
        assert len(locks) == 1
        assert await locks.try_lock(b"lock", 1000) is None
    assert len(locks) == 0


async def test_wait_is_bounded_then_no_lease() -> None:
    locks, store = CountingMemoryLocks(), Store()
    assert await locks.try_lock(b"lock", 60_000) is not None  # held for a minute
    outcome = await acquire_or_wait(
        locks, b"lock", store.fetcher(b"k"), ttl_ms=5000, wait_timeout=0.05, backoff=FAST
    )
    assert isinstance(outcome, NoLease)
    assert outcome.reason == "timeout"
    assert outcome.error is None
    assert outcome.polls >= 1
    assert outcome.waited >= 0.05
    assert outcome.polls == store.fetches.n


async def test_zero_wait_timeout_does_not_poll() -> None:
    locks, store = CountingMemoryLocks(), Store()
    await locks.try_lock(b"lock", 60_000)
    outcome = await acquire_or_wait(locks, b"lock", store.fetcher(b"k"), ttl_ms=1, wait_timeout=0)
    assert isinstance(outcome, NoLease)
    assert outcome.reason == "timeout"
    assert store.fetches.n == 0


async def test_failed_holder_unlocks_and_a_waiter_takes_over() -> None:
    locks, store = CountingMemoryLocks(), Store()
    holder = await try_acquire(locks, b"lock", 60_000)
    assert holder is not None
    waiter = asyncio.create_task(
        acquire_or_wait(
            locks, b"lock", store.fetcher(b"k"), ttl_ms=60_000, wait_timeout=30, backoff=FAST
        )
    )

    async def failing_computation() -> None:
        async with holder:
            await store.fetches.reach(1)  # the waiter is waiting
            raise ZeroDivisionError  # the endpoint failed: nothing stored

    with pytest.raises(ZeroDivisionError):
        await failing_computation()
    outcome = await waiter
    # it did not wait for the 60 s TTL: the lock was released, the waiter took it
    assert isinstance(outcome, Lease)
    await outcome.release()
    assert len(locks) == 0


async def test_cancelled_holder_unlocks_and_stops_its_extender() -> None:
    locks = CountingMemoryLocks()
    lease = await try_acquire(locks, b"lock", 60_000, extend_every=0.001)
    assert lease is not None
    inside = asyncio.Event()

    async def compute() -> None:
        async with lease:
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(compute())
    await inside.wait()
    await locks.extends.reach(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(locks) == 0
    n = locks.extends.n
    for _ in range(10):
        await asyncio.sleep(0)
    assert locks.extends.n == n  # the extender is gone
    assert lease._extender is None


async def test_recheck_after_lock_returns_a_value_stored_meanwhile() -> None:
    locks, store = CountingMemoryLocks(), Store()
    store.values[b"k"] = b"stored between our miss and our lock"
    outcome = await acquire_or_wait(
        locks, b"lock", store.fetcher(b"k"), ttl_ms=1000, wait_timeout=1
    )
    assert isinstance(outcome, Found)
    assert outcome.value == b"stored between our miss and our lock"
    assert len(locks) == 0  # the lock it took was released
    outcome2 = await acquire_or_wait(
        locks, b"lock", store.fetcher(b"k"), ttl_ms=1000, wait_timeout=1, recheck=False
    )
    assert isinstance(outcome2, Lease)
    await outcome2.release()


class BrokenUnlock(CountingMemoryLocks):
    async def unlock(self, key: bytes, token: str) -> bool:
        raise RedisConnectionError("connection reset")


async def test_unlock_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    locks = BrokenUnlock()
    lease = await try_acquire(locks, b"lock", 1000)
    assert lease is not None
    async with lease:
        pass
    await lease.release()  # idempotent: no second attempt, no second log
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert "unlock failed" in records[0].getMessage()
    assert records[0].lock_key == b"lock".hex()  # type: ignore[attr-defined]


async def test_lost_lock_is_flagged_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    clock = FakeClock()
    locks = CountingMemoryLocks(clock)
    lease = await try_acquire(locks, b"lock", 60_000, extend_every=0.001)
    assert lease is not None
    async with lease:
        await locks.extends.reach(1)
        clock.now += 61  # expired (a long pause, a clock jump) ...
        other = await locks.try_lock(b"lock", 60_000)  # ... and taken by another
        assert other is not None
        await locks.extends.reach(2)
        for _ in range(5):
            await asyncio.sleep(0)
        assert lease.lost
        n = locks.extends.n
    assert locks.extends.n == n  # the extender stopped at the first refusal
    assert await locks.unlock(b"lock", other)  # the other's lock was left alone by us
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.getMessage() for r in records] == [
        "lock lost while computing (expired or taken over)"
    ]


class FlakyExtend(CountingMemoryLocks):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def extend(self, key: bytes, token: str, ttl_ms: int) -> bool:
        if self.failures:
            self.failures -= 1
            await self.extends.bump()
            raise RedisConnectionError("blip")
        return await super().extend(key, token, ttl_ms)


async def test_extend_errors_are_retried_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    locks = FlakyExtend(failures=3)
    lease = await try_acquire(locks, b"lock", 60_000, extend_every=0.001)
    assert lease is not None
    async with lease:
        await locks.extends.reach(5)
    assert lease.extend_errors == 3
    assert lease.extensions >= 1
    assert not lease.lost
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert "extend failed" in records[0].getMessage()


async def test_seed_style_lock_manager_gets_no_extender() -> None:
    locks = SeedStyleLocks()
    lease = await try_acquire(locks, b"lock", 1000)
    assert lease is not None
    assert await try_acquire(locks, b"lock", 1000) is None
    async with lease:
        assert lease._extender is None
    assert locks.keys == set()


class DownLocks(CountingMemoryLocks):
    async def try_lock(self, key: bytes, ttl_ms: int) -> str | None:
        self.try_locks += 1
        raise RedisConnectionError("refused")


async def test_backend_errors_fail_open() -> None:
    store = Store()
    outcome = await acquire_or_wait(
        DownLocks(), b"lock", store.fetcher(b"k"), ttl_ms=1000, wait_timeout=5
    )
    assert isinstance(outcome, NoLease)
    assert outcome.reason == "unavailable"
    assert isinstance(outcome.error, BackendUnavailable)
    assert isinstance(outcome.error.__cause__, RedisConnectionError)

    locks = CountingMemoryLocks()
    await locks.try_lock(b"lock", 60_000)

    async def fetch_down() -> bytes | None:
        raise BackendUnavailable("open", short_circuited=True)

    outcome = await acquire_or_wait(
        locks, b"lock", fetch_down, ttl_ms=1000, wait_timeout=5, backoff=FAST
    )
    assert isinstance(outcome, NoLease)
    assert outcome.reason == "unavailable"
    assert outcome.polls == 1


async def test_bugs_in_fetch_propagate() -> None:
    locks = CountingMemoryLocks()
    await locks.try_lock(b"lock", 60_000)

    async def fetch_bug() -> bytes | None:
        raise TypeError("bug")

    with pytest.raises(TypeError, match="bug"):
        await acquire_or_wait(locks, b"lock", fetch_bug, ttl_ms=1000, wait_timeout=5, backoff=FAST)


async def test_an_open_breaker_means_no_lock_call() -> None:
    now = [0.0]
    breaker = CircuitBreaker(1, 10.0, clock=lambda: now[0])
    down = DownLocks()
    store = Store()
    first = await acquire_or_wait(
        down, b"lock", store.fetcher(b"k"), ttl_ms=1000, wait_timeout=5, breaker=breaker
    )
    assert isinstance(first, NoLease)
    assert down.try_locks == 1
    second = await acquire_or_wait(
        down, b"lock", store.fetcher(b"k"), ttl_ms=1000, wait_timeout=5, breaker=breaker
    )
    assert isinstance(second, NoLease)
    assert isinstance(second.error, BackendUnavailable)
    assert second.error.short_circuited
    assert down.try_locks == 1  # short-circuited: the lock manager was not called


async def test_a_lease_is_entered_once() -> None:
    lease = await try_acquire(CountingMemoryLocks(), b"lock", 1000)
    assert lease is not None
    async with lease:
        with pytest.raises(RuntimeError, match="once"):
            await lease.__aenter__()


# --- against a real redis-server ------------------------------------------------------------


@pytest.fixture
def client(redis_client: aioredis.Redis) -> aioredis.Redis:
    return redis_client


@pytest.mark.redis
async def test_redis_holder_extends_past_the_original_ttl(client: aioredis.Redis) -> None:
    locks = CountingRedisLocks(client)
    lease = await acquire_or_wait(
        locks, b"lock:k", lambda: client.get(b"k"), ttl_ms=200, wait_timeout=1
    )
    assert isinstance(lease, Lease)
    t0 = time.monotonic()
    async with lease:
        await locks.extends.reach(5)  # ~67 ms apart: past the 200 ms TTL
        assert time.monotonic() - t0 > 0.2
        assert await client.pttl(b"lock:k") > 0
        assert await client.get(b"lock:k") == lease.token.encode()
        assert await locks.try_lock(b"lock:k", 1000) is None
    assert await client.exists(b"lock:k") == 0
    assert not lease.lost


@pytest.mark.redis
async def test_redis_waiters_in_other_clients_see_the_stored_value(
    redis_server: RedisServer, client: aioredis.Redis
) -> None:
    # each waiter has its own connection pool and lock manager, like another worker process
    others = [aioredis.Redis.from_url(redis_server.url) for _ in range(4)]
    polls = Counted()

    def fetcher(c: aioredis.Redis) -> Callable[[], Awaitable[bytes | None]]:
        async def fetch() -> bytes | None:
            value = await c.get(b"entry")
            assert value is None or isinstance(value, bytes)
            await polls.bump()
            return value

        return fetch

    try:
        holder = await acquire_or_wait(
            CountingRedisLocks(client), b"lock:entry", fetcher(client), ttl_ms=5000, wait_timeout=1
        )
        assert isinstance(holder, Lease)
        waiters = [
            asyncio.create_task(
                acquire_or_wait(
                    CountingRedisLocks(c),
                    b"lock:entry",
                    fetcher(c),
                    ttl_ms=5000,
                    wait_timeout=30,
                    backoff=FAST,
                )
            )
            for c in others
        ]
        async with holder:
            await polls.reach(1 + 8)  # the holder's recheck + the waiters polling
            await client.set(b"entry", b"computed", px=60_000)
        outcomes = await asyncio.gather(*waiters)
        assert all(isinstance(o, Found) and o.value == b"computed" for o in outcomes)
        assert await client.exists(b"lock:entry") == 0
    finally:
        for c in others:
            await c.aclose()


HOLDER = """
import asyncio, sys
import redis.asyncio as aioredis
from fastapi_cachemate._runtime.lease import Lease, acquire_or_wait
from tests.support.locks import CountingRedisLocks

async def main() -> None:
    client = aioredis.Redis.from_url(sys.argv[1])
    locks = CountingRedisLocks(client)
    lease = await acquire_or_wait(
        locks, b"lock:slow", lambda: client.get(b"slow-entry"), ttl_ms=300, wait_timeout=1
    )
    assert isinstance(lease, Lease), lease
    async with lease:
        print("locked", lease.token, flush=True)
        await locks.extends.reach(4)  # 4 x 100 ms: past the 300 ms TTL
        print("extended", lease.extensions, flush=True)
        await asyncio.Event().wait()  # computing forever, extending the lock

asyncio.run(main())
"""


@pytest.mark.redis
async def test_redis_killed_holder_lets_others_recover_after_the_lock_ttl(
    redis_server: RedisServer, client: aioredis.Redis
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        redis_server.url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    try:
        line = (await proc.stdout.readline()).decode().split()
        assert line[0] == "locked", line
        token = line[1]
        assert await client.get(b"lock:slow") == token.encode()
        line = (await proc.stdout.readline()).decode().split()
        assert line == ["extended", "4"], line
        # past its first TTL, alive and extending: nobody else gets the lock
        locks = CountingRedisLocks(client)
        assert await client.pttl(b"lock:slow") > 0
        assert await locks.try_lock(b"lock:slow", 1000) is None
    finally:
        proc.kill()  # SIGKILL: no unlock, no more extends
        await proc.wait()
    fetches = Counted()

    async def fetch() -> bytes | None:
        await fetches.bump()
        value = await client.get(b"slow-entry")
        assert value is None or isinstance(value, bytes)
        return value

    outcome = await acquire_or_wait(
        locks, b"lock:slow", fetch, ttl_ms=5000, wait_timeout=30, backoff=FAST
    )
    assert isinstance(outcome, Lease)  # recovered once the dead holder's lock expired
    assert fetches.n >= 2  # it had to wait (recheck + at least one poll)
    async with outcome:
        assert await client.get(b"lock:slow") == outcome.token.encode()
    assert await client.exists(b"lock:slow") == 0


# --- composed with SingleFlight: the miss path's shape ---------------------------------------


class Worker:
    """One simulated worker process: its own client, lock manager and single flight."""

    def __init__(self, client: aioredis.Redis, polls: Counted) -> None:
        self.client = client
        self.locks = CountingRedisLocks(client)
        self.flight = SingleFlight()
        self.polls = polls

    async def fetch(self) -> bytes | None:
        value = await self.client.get(b"entry")
        assert value is None or isinstance(value, bytes)
        await self.polls.bump()
        return value

    async def compute_once(self) -> bytes:
        outcome = await acquire_or_wait(
            self.locks, b"lock:entry", self.fetch, ttl_ms=5000, wait_timeout=30, backoff=FAST
        )
        if isinstance(outcome, Found):
            return outcome.value
        assert isinstance(outcome, Lease), outcome
        async with outcome:
            await self.client.incr(b"computations")  # counted in Redis
            await self.polls.reach(2)  # the recheck + the other worker's leader polling
            value = b"computed"
            await self.client.set(b"entry", value, px=60_000)
        return value

    async def request(self) -> bytes:
        value, _ = await self.flight.run(b"entry", self.compute_once)
        return value


@pytest.mark.redis
async def test_two_workers_100_concurrent_cold_requests_each_compute_once(
    redis_server: RedisServer, client: aioredis.Redis
) -> None:
    other = aioredis.Redis.from_url(redis_server.url)
    polls = Counted()
    try:
        workers = [Worker(client, polls), Worker(other, polls)]
        requests = [asyncio.create_task(w.request()) for _ in range(100) for w in workers]
        results = await asyncio.gather(*requests)
        assert results == [b"computed"] * 200
        assert await client.get(b"computations") == b"1"
        assert await client.exists(b"lock:entry") == 0
        assert [len(w.flight) for w in workers] == [0, 0]
    finally:
        await other.aclose()


async def test_cancelled_leader_releases_the_lock_and_a_follower_takes_over() -> None:
    locks, store = CountingMemoryLocks(), Store()
    flight = SingleFlight()
    computations: list[str] = []
    holding = asyncio.Event()

    def compute_once(name: str) -> Callable[[], Awaitable[bytes]]:
        async def run() -> bytes:
            outcome = await acquire_or_wait(
                locks, b"lock", store.fetcher(b"k"), ttl_ms=60_000, wait_timeout=30, backoff=FAST
            )
            if isinstance(outcome, Found):
                return outcome.value
            assert isinstance(outcome, Lease)
            async with outcome:
                computations.append(name)
                if name == "leader":
                    holding.set()
                    await asyncio.Event().wait()  # until cancelled (client went away)
                store.values[b"k"] = name.encode()
            return name.encode()

        return run

    leader = asyncio.create_task(flight.run(b"k", compute_once("leader")))
    await holding.wait()
    followers = [
        asyncio.create_task(flight.run(b"k", compute_once(f"follower-{i}"))) for i in range(10)
    ]
    for _ in range(5):
        await asyncio.sleep(0)  # the followers are waiting on the flight
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    results = await asyncio.gather(*followers)
    # one follower took over the flight and, the lock being released, the lock at once
    assert len(computations) == 2
    assert computations[0] == "leader"
    assert {value for value, _ in results} == {computations[1].encode()}
    assert sum(is_leader for _, is_leader in results) == 1
    assert len(locks) == 0


@pytest.mark.redis
async def test_redis_stopped_the_lease_fails_open_then_resumes(redis_process: RedisServer) -> None:
    # no client-side retries: a refused connection is a failure at once (docs/resilience.md)
    client = aioredis.Redis.from_url(redis_process.url, retry=Retry(NoBackoff(), 0))
    now = [0.0]
    breaker = CircuitBreaker(2, 5.0, clock=lambda: now[0], name="redis")
    locks = CountingRedisLocks(client)

    async def fetch() -> bytes | None:
        value = await breaker.call(lambda: client.get(b"entry"), 0.25)
        assert value is None or isinstance(value, bytes)
        return value

    def attempt() -> Awaitable[Lease | Found[bytes] | NoLease]:
        return acquire_or_wait(
            locks, b"lock:entry", fetch, ttl_ms=5000, wait_timeout=5, breaker=breaker
        )

    try:
        redis_process.stop()
        outcomes = [await attempt() for _ in range(4)]
        for outcome in outcomes:
            assert isinstance(outcome, NoLease)
            assert outcome.reason == "unavailable"
            assert isinstance(outcome.error, BackendUnavailable)
        assert [o.error.short_circuited for o in outcomes] == [False, False, True, True]  # type: ignore[union-attr]
        assert breaker.stats.short_circuited == 2

        redis_process.start()
        now[0] += 5.0  # the breaker's next call probes
        lease = await attempt()
        assert isinstance(lease, Lease)
        async with lease:
            assert await client.get(b"lock:entry") == lease.token.encode()
        assert await client.exists(b"lock:entry") == 0
        assert breaker.state.value == "closed"
    finally:
        await client.aclose()
