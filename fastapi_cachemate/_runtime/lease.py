"""The cross-process half of "one computation per key": a lease on the backend lock.

In one process, :class:`~fastapi_cachemate._runtime.singleflight.SingleFlight` lets one caller
per key through; that caller then uses this module so that one *process* computes while
the others wait for the stored entry.

Contract
--------
::

    outcome = await acquire_or_wait(locks, lock_key, fetch, ttl_ms=..., wait_timeout=...)
    if isinstance(outcome, Found):        # another process stored it while we waited
        return outcome.value
    if isinstance(outcome, NoLease):      # waited too long, or the backend is unavailable
        return await compute()            # compute, but do NOT store (someone holds the lock)
    async with outcome:                   # a Lease: we hold the lock
        value = await compute()
        await store(value)
    remember(outcome.elapsed)             # the measured compute time sizes the next TTL

* :func:`acquire_or_wait` calls ``locks.try_lock(lock_key, ttl_ms)`` once.
  Held -> a :class:`Lease`. With ``recheck=True`` (the default) it first calls ``fetch()``
  once more, because the previous holder may have stored and unlocked between the caller's
  miss and our lock: a value -> the lock is released and the value returned as :class:`Found`.
  Taken -> it waits: it sleeps with exponential backoff and jitter (:class:`Backoff`), then
  calls ``fetch()``; a value that is not None -> :class:`Found`; None -> one more ``try_lock``
  (+ recheck), because the holder may have died and its lock expired, or released the lock
  without storing (the endpoint failed): the first waiter to retry takes over -> a
  :class:`Lease`; still taken -> the next delay. When ``wait_timeout`` seconds have passed
  (the last delay is clipped to it, then one last poll) -> ``NoLease("timeout")``. A waiter
  can only recover a dead holder's lock if ``wait_timeout`` is at least that lock's TTL.
* Backend errors fail open, they are never raised: every lock call is made at the boundary
  (``boundary.call``: whatever it raises or answers that is not a reply of the right type
  becomes :class:`~fastapi_cachemate._runtime.breaker.BackendUnavailable`), and a
  ``BackendUnavailable`` from a lock call, from ``fetch`` or from ``take`` ->
  ``NoLease("unavailable", error=...)``. Anything else (a bug) propagates. ``fetch`` and
  ``take`` are the caller's: make their backend calls at the boundary yourself, and make
  them return None for a miss *and* for undecodable bytes.
* Every lock call (``try_lock``, ``extend``, ``unlock``) goes through ``breaker.call(...,
  call_timeout)`` when a breaker is given, else it is only bounded by ``call_timeout``.
* :class:`Lease` (``async with lease:``): on entry it starts a background extender that calls
  ``locks.extend(key, token, ttl_ms)`` every ``extend_every`` seconds (default: a third of the
  TTL, so two extensions can fail before the lock lapses) while the body runs. ``extend``
  returning False means the lock expired or is someone else's: ``lease.lost`` becomes True
  (logged at WARNING once) and the extender stops; the body is not interrupted (it may still
  store: a complete value is never worse than none). An extend that raises a backend error is
  logged at WARNING once per lease, counted in ``extend_errors``, and retried at the next tick.
  A lock manager that does not override ``LockManager.extend`` (the seed's interface) gets no
  extender: its lock simply lasts ``ttl_ms``.
  On exit (normal, exception or cancellation) it stops the extender and calls
  ``locks.unlock(key, token)``; a failure there is logged (WARNING), never raised: the lock
  then expires after at most ``ttl_ms``. ``lease.elapsed`` is the time spent inside the block
  (the compute time to remember), ``lease.extensions`` the number of successful extends.
  ``await lease.release()`` does the exit work without ``async with``; both are idempotent.
  ``lease.forget()`` stops the extender and skips the unlock (the backend just failed: the
  lock lapses by itself); a later exit does nothing.
  A Lease is entered once; enter (or release) a returned Lease at once: until then nothing
  extends or unlocks it.
* :func:`try_acquire` is the non-waiting half (for background refreshes: if someone else holds
  the lock, someone else refreshes). It raises ``BackendUnavailable`` on backend errors.
* :func:`lock_ttl_ms` sizes the TTL: ``max(min_seconds, factor * last_compute_seconds)`` in ms,
  optionally capped: the lock must outlive the computation even if every extension is lost,
  but a dead holder blocks the key for at most that long.

Everything is bounded by the loop clock; logging on ``logging.getLogger(__name__)`` with
``extra={"lock_key": key.hex(), ...}``. Not thread-safe (one event loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Generic, Literal, TypeVar

from fastapi_cachemate._runtime import boundary
from fastapi_cachemate._runtime.breaker import BackendUnavailable, CircuitBreaker
from fastapi_cachemate.core.types import LockManager

__all__ = [
    "Backoff",
    "Found",
    "Lease",
    "NoLease",
    "acquire_or_wait",
    "lock_ttl_ms",
    "try_acquire",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# what a lock call (through the boundary module) or the caller's fetch raise when the backend is
# unavailable: fail open on it only
_UNAVAILABLE: tuple[type[BaseException], ...] = (BackendUnavailable,)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Delays between polls: ``initial * factor**n`` capped at ``max_delay``, then jittered.

    Each delay is drawn uniformly from ``[d * (1 - jitter), d]``, so that waiters in many
    processes spread their polls instead of arriving together.
    """

    initial: float = 0.02
    factor: float = 2.0
    max_delay: float = 0.25
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.factor >= 1 and self.max_delay >= self.initial):
            raise ValueError("need initial > 0, factor >= 1, max_delay >= initial")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """An endless sequence of delays in seconds; ``rng`` returns floats in [0, 1)."""
        delay = self.initial
        while True:
            yield delay * (1.0 - self.jitter * rng())
            delay = min(self.max_delay, delay * self.factor)


def lock_ttl_ms(
    min_seconds: float,
    last_compute_seconds: float | None = None,
    *,
    factor: float = 2.0,
    max_seconds: float | None = None,
) -> int:
    """The lock TTL in ms: ``max(min_seconds, factor * last_compute_seconds)``, capped."""
    seconds = float(min_seconds)
    if last_compute_seconds is not None and last_compute_seconds > 0:
        seconds = max(seconds, factor * last_compute_seconds)
    if max_seconds is not None:
        seconds = min(seconds, max_seconds)
    return max(1, round(seconds * 1000))


@dataclasses.dataclass(frozen=True)
class Found(Generic[T]):
    """The value another process stored while we waited."""

    value: T
    waited: float
    polls: int


@dataclasses.dataclass(frozen=True)
class NoLease:
    """No lock and no value: compute without storing."""

    reason: Literal["timeout", "unavailable"]
    waited: float
    polls: int
    error: BaseException | None = None


class _Calls:
    """Lock-manager calls at the boundary (``boundary.call``): through the breaker (if
    any), each bounded by ``timeout``; any failure raised as ``BackendUnavailable``."""

    __slots__ = ("breaker", "timeout")

    def __init__(self, breaker: CircuitBreaker | None, timeout: float) -> None:
        self.breaker = breaker
        self.timeout = timeout

    async def __call__(
        self, factory: Callable[[], Awaitable[object]], check: Callable[[object], R]
    ) -> R:
        return await boundary.call(factory, check, breaker=self.breaker, timeout=self.timeout)


class Lease:
    """A held backend lock; ``async with`` it around the computation (see the module doc)."""

    __slots__ = (
        "_calls",
        "_entered_at",
        "_extender",
        "_released",
        "elapsed",
        "extend_errors",
        "extend_every",
        "extensions",
        "key",
        "locks",
        "lost",
        "token",
        "ttl_ms",
    )

    def __init__(
        self,
        locks: LockManager,
        key: bytes,
        token: str,
        ttl_ms: int,
        *,
        extend_every: float | None = None,
        breaker: CircuitBreaker | None = None,
        call_timeout: float = 0.25,
    ) -> None:
        self.locks = locks
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms
        self.extend_every = extend_every if extend_every is not None else ttl_ms / 3000.0
        self.lost = False
        self.extensions = 0
        self.extend_errors = 0
        self.elapsed = 0.0
        self._calls = _Calls(breaker, call_timeout)
        self._entered_at: float | None = None
        self._extender: asyncio.Task[None] | None = None
        self._released = False

    def __repr__(self) -> str:
        return f"<Lease {self.key.hex()[:16]} ttl={self.ttl_ms}ms lost={self.lost}>"

    async def __aenter__(self) -> Lease:
        if self._entered_at is not None:
            raise RuntimeError("a Lease is entered once")
        loop = asyncio.get_running_loop()
        self._entered_at = loop.time()
        if boundary.extends(self.locks) and not self._released:
            self._extender = loop.create_task(
                self._extend_loop(), name=f"lease-extend:{self.key.hex()[:32]}"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    async def release(self) -> None:
        """Stop the extender and unlock; errors are logged, never raised. Idempotent."""
        if self._released:
            return
        extender = self._stop()
        if extender is not None:
            await asyncio.wait([extender])  # not `await extender`: our own cancel is not ours
        await self.unlock()

    async def unlock(self) -> None:
        """The unlock call alone, also after ``forget()`` (the call that was to release the
        lock failed); errors are logged, never raised."""
        try:
            released = await self._calls(
                lambda: self.locks.unlock(self.key, self.token), boundary.flag
            )
        except _UNAVAILABLE as exc:
            logger.warning(
                "lock unlock failed, it expires by itself: %s",
                exc,
                extra={"lock_key": self.key.hex(), "ttl_ms": self.ttl_ms},
            )
            return
        if not released and not self.lost:
            self.lost = True
            logger.warning(
                "lock was lost before unlock (expired or taken over)",
                extra={"lock_key": self.key.hex(), "ttl_ms": self.ttl_ms},
            )

    def forget(self) -> None:
        """Stop extending and never unlock here: the lock expires by itself within
        ``ttl_ms``, or a call of the holder's unlocks it (``Flow.store``: the store's round
        trip).

        For a holder whose backend just failed: one more call (the unlock) would only add
        its timeout to the request. Idempotent; ``release()`` afterwards does nothing.
        """
        if not self._released:
            self._stop()

    def _stop(self) -> asyncio.Task[None] | None:
        """Mark the lease released, record how long it was held, cancel the extender (which
        is returned, for the caller to wait for)."""
        self._released = True
        if self._entered_at is not None:
            self.elapsed = asyncio.get_running_loop().time() - self._entered_at
        extender, self._extender = self._extender, None
        if extender is not None:
            extender.cancel()
        return extender

    async def _extend_loop(self) -> None:
        while True:
            await asyncio.sleep(self.extend_every)
            try:
                kept = await self._calls(
                    lambda: self.locks.extend(self.key, self.token, self.ttl_ms), boundary.flag
                )
            except _UNAVAILABLE as exc:
                self.extend_errors += 1
                if self.extend_errors == 1:
                    logger.warning(
                        "lock extend failed, retrying: %s",
                        exc,
                        extra={"lock_key": self.key.hex(), "ttl_ms": self.ttl_ms},
                    )
                continue
            if not kept:
                self.lost = True
                logger.warning(
                    "lock lost while computing (expired or taken over)",
                    extra={"lock_key": self.key.hex(), "ttl_ms": self.ttl_ms},
                )
                return
            self.extensions += 1


async def try_acquire(
    locks: LockManager,
    lock_key: bytes,
    ttl_ms: int,
    *,
    extend_every: float | None = None,
    breaker: CircuitBreaker | None = None,
    call_timeout: float = 0.25,
) -> Lease | None:
    """One ``try_lock``: a :class:`Lease` (not entered yet) or None if the lock is taken.

    Raises :class:`BackendUnavailable` when the lock manager fails or the breaker is open.
    """
    calls = _Calls(breaker, call_timeout)
    token = await calls(lambda: locks.try_lock(lock_key, ttl_ms), boundary.token)
    if token is None:
        return None
    return Lease(
        locks,
        lock_key,
        token,
        ttl_ms,
        extend_every=extend_every,
        breaker=breaker,
        call_timeout=call_timeout,
    )


async def acquire_or_wait(
    locks: LockManager,
    lock_key: bytes,
    fetch: Callable[[], Awaitable[T | None]],
    *,
    ttl_ms: int,
    wait_timeout: float,
    backoff: Backoff = Backoff(),  # frozen: shared safely
    extend_every: float | None = None,
    breaker: CircuitBreaker | None = None,
    call_timeout: float = 0.25,
    rng: Callable[[], float] = random.random,
    recheck: bool = True,
    take: Callable[[], Awaitable[tuple[str | None, T | None]]] | None = None,
) -> Lease | Found[T] | NoLease:
    """Hold the lock, or wait for the holder's value, or give up (see the module doc).

    ``take``: one round trip that tries the lock and reads the value, in that order (a lock
    that lives in the value's store: ``Backend.lock_and_fetch``): (the token, or None when
    the lock is taken; the value now, as ``fetch`` gives it). With it, the attempt and its
    recheck are one call, and so is each poll. Like ``fetch``, it makes its backend call at
    the boundary itself (it raises ``BackendUnavailable``).
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + wait_timeout
    polls = 0

    async def take_attempt(
        take: Callable[[], Awaitable[tuple[str | None, T | None]]],
    ) -> Lease | Found[T] | None:
        token, value = await take()
        lease = None
        if token is not None:
            lease = Lease(
                locks,
                lock_key,
                token,
                ttl_ms,
                extend_every=extend_every,
                breaker=breaker,
                call_timeout=call_timeout,
            )
        if value is None:
            return lease
        if lease is not None:  # the previous holder stored and unlocked just before
            await lease.release()
        return Found(value, loop.time() - start, polls)

    async def attempt() -> Lease | Found[T] | None:
        if take is not None and recheck:
            return await take_attempt(take)
        lease = await try_acquire(
            locks,
            lock_key,
            ttl_ms,
            extend_every=extend_every,
            breaker=breaker,
            call_timeout=call_timeout,
        )
        if lease is None or not recheck:
            return lease
        # the previous holder may have stored and unlocked between our miss and our lock
        try:
            value = await fetch()
        except BaseException:
            await lease.release()
            raise
        if value is None:
            return lease
        await lease.release()
        return Found(value, loop.time() - start, polls)

    try:
        got = await attempt()
        if got is not None:
            return got
        for delay in backoff.delays(rng):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return NoLease("timeout", loop.time() - start, polls)
            await asyncio.sleep(min(delay, remaining))
            polls += 1
            if take is None or not recheck:  # else the attempt reads the value too
                value = await fetch()
                if value is not None:
                    return Found(value, loop.time() - start, polls)
            got = await attempt()
            if got is not None:
                return got
    except _UNAVAILABLE as exc:
        return NoLease("unavailable", loop.time() - start, polls, exc)
    raise AssertionError("unreachable: Backoff.delays is endless")  # pragma: no cover
