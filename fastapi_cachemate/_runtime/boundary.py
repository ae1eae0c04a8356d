"""The boundary between the cache and a backend or a lock manager (STYLE.md, docs/resilience.md).

A backend may be the user's own code, a mock or a broken server. Every call the cache makes
to one goes through :func:`call`, which is the only place where what comes back is judged:

* anything the call raises that is an ``Exception`` (``RedisError``, ``OSError``, timeouts,
  and also ``RuntimeError``, ``TypeError``, ``NotImplementedError``, ...), a method that
  returns something that cannot be awaited, and a reply of the wrong type or shape (the
  ``check`` of the call raises :class:`BadReply`) become ONE exception,
  :class:`~fastapi_cachemate._runtime.breaker.BackendUnavailable`, with the original as its cause;
* with a breaker, the call, its await and its check run inside ``breaker.call`` and the
  request path's breaker counts every ``Exception`` (:data:`FAILURES`) like a connection
  error: a backend that answers junk opens it as a dead one does;
* ``BaseException``s that are not ``Exception``s (cancellation, ``KeyboardInterrupt``,
  ``SystemExit``) propagate unchanged.

The callers degrade on ``BackendUnavailable`` (a miss, no store, no lock) and count and log
it (``Flow._failed``: one record per state change). Nothing else in the package catches
errors of its own code.

The checks below are the replies' contracts (``core/types.py``): a value is bytes or None,
a lock token a str or None, a yes/no a bool (an int 0/1 or None accepted), a count an int.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fastapi_cachemate._runtime.breaker import BackendUnavailable, CircuitBreaker, with_timeout
from fastapi_cachemate.core.types import Backend, ComputeTicket, LockManager

__all__ = [
    "FAILURES",
    "BadReply",
    "blob",
    "call",
    "count",
    "extends",
    "flag",
    "ignored",
    "shares_store",
    "ticket_of",
    "token",
    "token_and_blob",
    "unreachable",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What the request path's circuit breaker counts as a failure of a backend call.
FAILURES: Final[tuple[type[BaseException], ...]] = (Exception,)


class BadReply(TypeError):
    """A backend or lock manager answered a value of the wrong type or shape."""


def _bad(what: str, value: object) -> BadReply:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return BadReply(f"expected {what}, got {type(value).__name__} {text}")


# --- the replies' checks ----------------------------------------------------------------------
def blob(value: object) -> bytes | None:
    """A stored value: bytes (a bytearray or memoryview is copied) or None."""
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _bad("bytes or None", value)


def token(value: object) -> str | None:
    """A lock token: a str (the lock is held) or None (it is taken)."""
    if value is None or isinstance(value, str):
        return value
    raise _bad("a lock token (str) or None", value)


def flag(value: object) -> bool:
    """A yes/no reply: a bool, an int (Redis's 0/1) or None (no)."""
    if value is None:
        return False
    if isinstance(value, int):  # bool included
        return bool(value)
    raise _bad("a bool", value)


def count(value: object) -> int:
    """A number of keys: an int >= 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _bad("a count (int >= 0)", value)


def ignored(value: object) -> None:
    """A reply the cache does not read (close)."""
    return


def token_and_blob(value: object) -> tuple[str | None, bytes | None]:
    """``Backend.lock_and_fetch``'s (token or None, value or None)."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise _bad("a (token, value) pair", value)
    return token(value[0]), blob(value[1])


def ticket_of(key: bytes) -> Callable[[object], ComputeTicket]:
    """The check of ``Backend.begin_compute(key)``: a ComputeTicket for that very key."""

    def check(value: object) -> ComputeTicket:
        if not isinstance(value, ComputeTicket) or value.key != key:
            raise _bad(f"a ComputeTicket for {key!r}", value)
        generation, started = value.generation, value.started
        if generation is not None and (
            isinstance(generation, bool) or not isinstance(generation, int)
        ):
            raise _bad("an int or None generation", generation)
        if isinstance(started, bool) or not isinstance(started, (int, float)):
            raise _bad("a float started time", started)
        return value

    return check


# --- the call -----------------------------------------------------------------------------
async def _reply(factory: Callable[[], Awaitable[Any]], check: Callable[[Any], T]) -> T:
    return check(await factory())


async def call(
    factory: Callable[[], Awaitable[Any]],
    check: Callable[[Any], T],
    *,
    breaker: CircuitBreaker | None = None,
    timeout: float | None = None,
) -> T:
    """``check(await factory())``; any failure of it raised as ``BackendUnavailable``.

    breaker: the call runs through it (it must count :data:`FAILURES`), bounded by
    ``timeout``; without one, bounded by ``timeout`` if given (an in-process backend: none).
    """
    if breaker is not None:
        assert timeout is not None
        return await breaker.call(lambda: _reply(factory, check), timeout)
    try:
        if timeout is None:
            return check(await factory())
        return await with_timeout(lambda: _reply(factory, check), timeout)
    except Exception as exc:
        raise BackendUnavailable(f"{type(exc).__name__}: {exc}", short_circuited=False) from exc


_UNREACHABLE: Final = (OSError, asyncio.TimeoutError, RedisConnectionError, RedisTimeoutError)


def unreachable(exc: BackendUnavailable) -> bool:
    """Whether the failure says the backend cannot be reached (no call made, a connection
    error, a timeout), rather than that it answered badly: one more call (an unlock)
    would only wait for it too."""
    if exc.short_circuited:
        return True
    return isinstance(exc.__cause__, _UNREACHABLE)


# --- the lock manager's synchronous questions ----------------------------------------------------
def shares_store(locks: LockManager, backend: Backend) -> bool:
    """``locks.shares_store(backend)``, True only when it answers True (a mock's truthy
    object or an exception: False, the locks are then taken by their own calls)."""
    try:
        return locks.shares_store(backend) is True
    except Exception as exc:
        logger.warning(
            "cache: %s.shares_store raised %s: %s; its locks are taken on their own",
            type(locks).__name__,
            type(exc).__name__,
            exc,
        )
        return False


def extends(locks: LockManager) -> bool:
    """Whether the lock manager overrides ``LockManager.extend`` (the seed's has none)."""
    return getattr(type(locks), "extend", LockManager.extend) is not LockManager.extend
