"""A circuit breaker with a per-call timeout, in front of every backend call.

Contract
--------
``value = await breaker.call(lambda: backend.fetch(key), timeout)``

* ``call`` takes a *factory* (a zero-argument callable returning an awaitable), so that no
  coroutine is created (and none left un-awaited) when the breaker short-circuits.
* Each call made runs under ``timeout`` seconds. Past it, the call is cancelled and counts as
  a failure and as a timeout. The timeout is enforced by :class:`Deadlines` (3.11+: one shared
  timer per 5 ms slot of deadlines instead of one timer per call; it fires at most 5 ms late;
  ``wait_for`` on 3.10), the same cancellation semantics as ``asyncio.timeout``.
* Failures are the backend's errors, narrowly: ``redis.exceptions.RedisError``, ``OSError``
  (``ConnectionError`` and the builtin ``TimeoutError`` are subclasses) and
  ``asyncio.TimeoutError`` (``failure_types=`` replaces this tuple). A failure is counted and
  re-raised as :class:`BackendUnavailable` with the original as ``__cause__``, so the caller
  has ONE exception to catch to degrade (a miss, no store, no lock). Any other exception (a
  bug in the caller's code, say) propagates unchanged and does not change the state.
  Cancellation of the caller propagates unchanged and does not change the state either.
* States:

  - ``closed``: calls go through. ``failures`` *consecutive* failures open the breaker; a
    success resets the streak.
  - ``open``: :class:`BackendUnavailable` is raised at once, no call is made
    (``short_circuited`` counts them). The first call at least ``reset_after`` seconds after
    the opening moves the breaker to ``half_open`` and becomes the probe.
  - ``half_open``: exactly one call (the probe) goes through at a time, the others are
    short-circuited. Probe success -> ``closed``; probe failure -> ``open`` again (a new
    ``reset_after`` period). A probe that ends neither way (cancelled, or an exception that is
    not a failure) frees the slot for the next caller's probe.

  ``state`` is the recorded state: an ``open`` breaker whose period has elapsed still reads
  ``open`` until the next call probes.
* Results of calls that started before the last state change do not change the state (a burst
  of 100 concurrent timeouts opens the breaker once, not 100 times; a slow success from
  before the opening does not close it). They are counted in the statistics.
* Logging: exactly one record per state change, on ``logging.getLogger(__name__)``: WARNING
  when it opens, INFO for half-open and closed, with ``extra`` fields ``breaker`` (the name),
  ``state``, ``previous_state``, ``consecutive_failures`` and ``error`` (``"Type: message"``
  of the failure that caused the change, or None). Individual failures are not logged (they
  are counted).
* ``stats`` (a :class:`BreakerStats`, live, mutable; ``snapshot()`` copies it):
  ``calls`` (every ``call()``, short-circuited included), ``successes``, ``failures`` (timeouts
  included), ``timeouts``, ``short_circuited``, ``state_changes``.
* ``clock`` is any monotonic seconds function (injected in tests). Not thread-safe: one breaker
  per event loop (per backend).

Defaults (see docs/resilience.md): ``backend_timeout`` 0.25 s, ``breaker_failures`` 5,
``breaker_reset`` 5 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

__all__ = [
    "DEFAULT_FAILURE_TYPES",
    "BackendUnavailable",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "Deadlines",
    "with_timeout",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_FAILURE_TYPES: tuple[type[BaseException], ...] = (
    RedisError,
    OSError,
    asyncio.TimeoutError,
)


class BackendUnavailable(Exception):
    """The backend call was not made (breaker open) or failed with a counted error.

    ``short_circuited`` is True when no call was made; otherwise ``__cause__`` is the error.
    """

    def __init__(self, message: str, *, short_circuited: bool) -> None:
        super().__init__(message)
        self.short_circuited = short_circuited


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclasses.dataclass
class BreakerStats:
    calls: int = 0
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    short_circuited: int = 0
    state_changes: int = 0

    def snapshot(self) -> BreakerStats:
        return dataclasses.replace(self)


class CircuitBreaker:
    """Stops calling a dead backend for ``reset_after`` seconds, then probes it."""

    def __init__(
        self,
        failures: int,
        reset_after: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "backend",
        failure_types: tuple[type[BaseException], ...] = DEFAULT_FAILURE_TYPES,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be >= 1")
        if reset_after <= 0:
            raise ValueError("reset_after must be > 0")
        self.failures = failures
        self.reset_after = reset_after
        self.name = name
        self.stats = BreakerStats()
        self._clock = clock
        self._failure_types = failure_types
        self._state = BreakerState.CLOSED
        self._generation = 0  # bumped at every state change
        self._streak = 0  # consecutive failures while closed
        self._opened_at = 0.0
        self._probing = False
        self._deadlines = Deadlines()

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._streak

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value} streak={self._streak}>"

    async def call(self, factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Await ``factory()`` under ``timeout`` seconds, unless the breaker is open."""
        self.stats.calls += 1
        probe = self._admit()
        generation = self._generation
        try:
            result = await self._deadlines.run(factory, timeout)
        except self._failure_types as exc:
            self.stats.failures += 1
            if isinstance(exc, asyncio.TimeoutError):
                self.stats.timeouts += 1
            if probe:
                self._probing = False
            if generation == self._generation:
                self._on_failure(exc)
            raise BackendUnavailable(
                f"{self.name}: {type(exc).__name__}: {exc}", short_circuited=False
            ) from exc
        except BaseException:
            if probe:
                self._probing = False
            raise
        self.stats.successes += 1
        if probe:
            self._probing = False
        if generation == self._generation:
            self._on_success()
        return result

    # --- state machine ------------------------------------------------------------------
    def _admit(self) -> bool:
        """Whether this call is the half-open probe; raises when it must not be made."""
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.reset_after:
                self._short_circuit()
            self._change(BreakerState.HALF_OPEN, None)
        if self._probing:
            self._short_circuit()
        self._probing = True
        return True

    def _short_circuit(self) -> None:
        self.stats.short_circuited += 1
        raise BackendUnavailable(f"{self.name}: circuit {self._state.value}", short_circuited=True)

    def _on_success(self) -> None:
        self._streak = 0
        if self._state is not BreakerState.CLOSED:
            self._change(BreakerState.CLOSED, None)

    def _on_failure(self, exc: BaseException) -> None:
        self._streak += 1
        if self._state is BreakerState.HALF_OPEN or self._streak >= self.failures:
            self._opened_at = self._clock()
            self._change(BreakerState.OPEN, exc)

    def _change(self, state: BreakerState, exc: BaseException | None) -> None:
        previous = self._state
        self._state = state
        self._generation += 1
        self.stats.state_changes += 1
        level = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        logger.log(
            level,
            "cache backend circuit %s -> %s",
            previous.value,
            state.value,
            extra={
                "breaker": self.name,
                "state": state.value,
                "previous_state": previous.value,
                "consecutive_failures": self._streak,
                "error": None if exc is None else f"{type(exc).__name__}: {exc}",
            },
        )
        if state is BreakerState.CLOSED:
            self._streak = 0


#: A call whose cancellation was swallowed (Python 3.11's ``asyncio.wait_for`` loses a
#: cancellation that races with its inner future's completion, and redis-py's connect uses
#: it: the client's retry loop then runs on, seconds with redis-py's default retries) is
#: cancelled again, every RECANCEL_AFTER seconds, at most RECANCEL_MAX times.
RECANCEL_AFTER = 0.05
RECANCEL_MAX = 20


class _Slot:
    __slots__ = ("cancels", "done", "fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.fired = False
        self.done = False
        self.cancels = 0  # cancel() calls made for this call (each one uncancel()-ed)


class Deadlines:
    """Per-call timeouts for one event loop, cheaper than one ``asyncio.timeout`` per call.

    ``asyncio.timeout`` schedules a timer and cancels it for every call: on a busy loop the
    timer heap fills with cancelled handles and each call pays for it (measured: ~16 us per
    call against ~6 us here, on the 2-core test machine). Here the calls whose deadlines fall
    in the same ``resolution``-wide slot share ONE timer; a call adds itself to the slot's
    set and removes itself when it ends. When a slot's timer fires, the tasks still in it are
    cancelled and their call raises ``TimeoutError`` (``asyncio.TimeoutError``), at most
    ``resolution`` seconds after the deadline.

    Semantics as ``asyncio.timeout``: the task's cancel request is withdrawn (``uncancel``) when
    it is turned into a TimeoutError; a cancellation from outside (the request's own, an outer
    timeout) stays a ``CancelledError``, also when both happen at once. On Python 3.10 (no
    ``uncancel``), ``run`` is ``asyncio.wait_for``. Bound to the loop of its last use.
    """

    __slots__ = ("_loop", "_slots", "resolution")

    def __init__(self, resolution: float = 0.005) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be > 0")
        self.resolution = resolution
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[int, set[_Slot]] = {}

    def __len__(self) -> int:
        """The number of armed timers (slots), for tests and introspection."""
        return len(self._slots)

    def _fire(self, slot_id: int) -> None:
        for slot in self._slots.pop(slot_id, ()):
            self._cancel(slot)

    def _cancel(self, slot: _Slot) -> None:
        if slot.done:
            return
        slot.fired = True
        slot.cancels += 1
        slot.task.cancel()
        if slot.cancels <= RECANCEL_MAX and self._loop is not None:
            # still running then: the call swallowed it (see RECANCEL_AFTER)
            self._loop.call_later(RECANCEL_AFTER, self._cancel, slot)

    async def run(self, factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """``await factory()``, raising ``TimeoutError`` once ``timeout`` seconds have passed."""
        if sys.version_info < (3, 11):  # pragma: no cover - 3.10
            return await with_timeout(factory, timeout)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - not inside a task
            return await with_timeout(factory, timeout)
        if loop is not self._loop:
            self._loop = loop
            self._slots = {}
        slot_id = math.ceil((loop.time() + timeout) / self.resolution)
        members = self._slots.get(slot_id)
        if members is None:
            members = self._slots[slot_id] = set()
            loop.call_at(slot_id * self.resolution, self._fire, slot_id)
        slot = _Slot(task)
        members.add(slot)
        cancelling = task.cancelling()
        try:
            return await factory()
        except BaseException as exc:
            if slot.fired:
                slot.fired = False  # withdraw our cancel requests, once each
                left = task.cancelling()
                for _ in range(slot.cancels):
                    left = task.uncancel()
                if left <= cancelling and isinstance(exc, asyncio.CancelledError):
                    raise TimeoutError from exc
            raise
        finally:
            slot.done = True
            if slot.fired:  # fired, but the call ended otherwise (it swallowed the cancel)
                for _ in range(slot.cancels):
                    task.uncancel()
            else:
                members.discard(slot)


if sys.version_info >= (3, 11):

    async def with_timeout(factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """``await factory()`` bounded by ``timeout`` s (``asyncio.TimeoutError`` past it)."""
        async with asyncio.timeout(timeout):
            return await factory()

else:  # pragma: no cover - 3.10

    async def with_timeout(factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """``await factory()`` bounded by ``timeout`` s (``asyncio.TimeoutError`` past it)."""
        return await asyncio.wait_for(factory(), timeout)
