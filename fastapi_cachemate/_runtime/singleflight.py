"""In-process single-flight: concurrent callers of one key await one computation.

Contract
--------
``result, leader = await flight.run(key, fn)``

* The first caller for ``key`` becomes the *leader*: it awaits ``fn()`` **in its own task**
  (so the computation sees the leader's own request, context variables and dependencies).
  Callers that arrive while it runs are *followers*: they do not call their ``fn`` and await
  the leader's outcome instead. ``leader`` is True for the caller whose ``fn`` produced the
  result.
* The result is shared: every follower gets the very object the leader got (treat it as
  read-only, e.g. bytes or a frozen entry).
* An exception raised by ``fn`` (an ``Exception``) propagates to the leader and to every
  follower waiting at that time (the same exception object).
* Leader cancelled (client gone, ``asyncio.timeout`` around the request, ...): its ``fn`` is
  cancelled with it, because that computation may use objects of the leader's request that
  are being torn down. The followers are not cancelled and do not hang: they wake up and the
  first of them to run *takes over*: it becomes the new leader and runs **its own** ``fn``;
  the others follow it. The cancelled leader's ``CancelledError`` propagates only to itself.
  The same takeover happens for any other ``BaseException`` that is not an ``Exception``
  (``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``): they propagate to the leader only.
* A follower cancelled while waiting: only that follower gets ``CancelledError``; the leader's
  computation and the other followers are unaffected.
* No growth: a key's entry is removed when its computation ends, whatever the outcome, so the
  map holds only keys being computed right now (``len(flight)``).
* No timeouts here: bound the wait with ``asyncio.timeout``/``wait_for`` around ``run``.
  A follower that times out is just a cancelled follower (above).
* Not thread-safe. A ``SingleFlight`` belongs to the event loop it is used in: used in
  another loop (a new loop per test, an app restarted in-process), it forgets the
  computations of the previous loop, which can never finish in the new one.

Cost: two dict operations and one small object per computation; a Future only when a
follower arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class _Handover:
    """The leader left without a result: a follower must take over."""

    __slots__ = ()


_HANDOVER = _Handover()


class _Flight:
    """One computation in progress; its Future exists once a follower needs one."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] | None = None


class SingleFlight:
    """Deduplicates concurrent computations of one key inside one event loop."""

    __slots__ = ("_flights", "_loop")

    def __init__(self) -> None:
        # key -> the computation in progress (its Future: what the followers await)
        self._flights: dict[bytes, _Flight] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        """The number of keys being computed right now."""
        return len(self._flights)

    def __contains__(self, key: object) -> bool:
        return key in self._flights

    async def run(self, key: bytes, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, leader)``: await ``fn()`` once per key among concurrent callers."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._flights = {}
            self._loop = loop
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, fn), True
            future = flight.future
            if future is None:
                future = flight.future = loop.create_future()
            # shield: a cancelled follower must not cancel the shared Future
            outcome = await asyncio.shield(future)
            if outcome is _HANDOVER:
                continue  # the leader is gone: take over, or follow whoever did
            result: T = outcome
            return result, False

    async def _lead(self, key: bytes, fn: Callable[[], Awaitable[T]]) -> T:
        flight = _Flight()
        self._flights[key] = flight
        try:
            result = await fn()
        except Exception as exc:
            future = self._finish(key, flight)
            if future is not None:
                future.set_exception(exc)
                future.exception()  # mark retrieved: no "exception was never retrieved" log
            raise
        except BaseException:
            # cancelled (or interpreter exit): the followers take over
            future = self._finish(key, flight)
            if future is not None:
                future.set_result(_HANDOVER)
            raise
        future = self._finish(key, flight)
        if future is not None:
            future.set_result(result)
        return result

    def _finish(self, key: bytes, flight: _Flight) -> asyncio.Future[Any] | None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        return flight.future
