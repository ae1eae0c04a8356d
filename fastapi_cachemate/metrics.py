"""The cache's counters, from Python: one ``Stats`` per process, one row per endpoint.

The request path takes its endpoint's row once (``row = metrics.endpoint(name)``, at
decoration or first request) and bumps it per event with a method that does nothing but
increment a 64-bit integer in C (``row.hit()``; see ``benchmarks/stats_overhead.py`` for
what that costs next to a memory hit). Everything else reads:

- ``snapshot()``: ``{"endpoints": {name: {counter: int}}, "totals": {counter: int},
  "breaker": "closed" | "open" | "half_open", "near": {counter: int}}``
  (``CacheSetup.stats()`` returns it; ``near``: the near cache's process-wide counters,
  ``core/backends/near.NEAR_COUNTERS``);
- ``STATS``: the process's ``Stats`` (``_native.Stats``, or its twin under
  ``FASTAPI_CACHEMATE_PURE=1``); ``reset()`` zeroes it (tests).

Counter names are ``STATS_COUNTERS`` (see ``_native.pyi``); the reason counters are
``NOT_STORED_REASONS``. Why a response was not stored is a :class:`NotStored` member, made
where the decision is made (``rules``, ``http``, ``cache``, ``flow``) and counted by
``not_stored(row, reason)``: no text is parsed on the way, so no reason can be counted as
another. Every reason has its own ``not_stored_<reason>`` counter (``NOT_STORED_COUNTERS``).

Endpoint names: the route's path template (``endpoint_name(route)``, e.g. ``/items/{id}``),
so the set of names is bounded by the app's routes, never by its URLs.
"""

from __future__ import annotations

import enum
import weakref
from typing import Any, Final, Protocol, TypedDict

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate.core.backends.near import COUNTERS as NEAR_COUNTERS

# The twin's classes stand for both implementations in annotations (same methods).
EndpointStats = kernels.EndpointStats
Stats = kernels.Stats

__all__ = [
    "BREAKER_STATES",
    "NOT_STORED_COUNTERS",
    "NOT_STORED_REASONS",
    "STATS",
    "STATS_COUNTERS",
    "CacheStats",
    "EndpointStats",
    "NotStored",
    "Stats",
    "endpoint",
    "endpoint_name",
    "hit_ratio",
    "not_stored",
    "reset",
    "set_breaker_state",
    "snapshot",
    "track_breaker",
]

STATS: Final[Stats] = kernels.Stats()
STATS_COUNTERS: Final[tuple[str, ...]] = kernels.STATS_COUNTERS
NOT_STORED_REASONS: Final[tuple[str, ...]] = kernels.NOT_STORED_REASONS
#: gauge value -> name, in the order of BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN
BREAKER_STATES: Final[tuple[str, ...]] = ("closed", "open", "half_open")

REASON_STATUS: Final = NOT_STORED_REASONS.index("status")
REASON_SET_COOKIE: Final = NOT_STORED_REASONS.index("set_cookie")
REASON_NO_STORE: Final = NOT_STORED_REASONS.index("no_store")
REASON_PRIVATE: Final = NOT_STORED_REASONS.index("private")
REASON_VARY_STAR: Final = NOT_STORED_REASONS.index("vary_star")
REASON_VARY_UNKEYED: Final = NOT_STORED_REASONS.index("vary_unkeyed")
REASON_HEAD: Final = NOT_STORED_REASONS.index("head")
REASON_HEAD_EMPTY_BODY: Final = NOT_STORED_REASONS.index("head_empty_body")
REASON_AUTHORIZATION: Final = NOT_STORED_REASONS.index("authorization")
REASON_TOO_LARGE: Final = NOT_STORED_REASONS.index("too_large")
REASON_STREAMING: Final = NOT_STORED_REASONS.index("streaming")
REASON_ERROR: Final = NOT_STORED_REASONS.index("error")


class CacheStats(TypedDict):
    """What ``snapshot()`` and ``CacheSetup.stats()`` return."""

    endpoints: dict[str, dict[str, int]]
    totals: dict[str, int]
    breaker: str
    near: dict[str, int]


class _HasState(Protocol):
    @property
    def state(self) -> Any: ...


_tracked: list[weakref.ref[Any]] = []


def endpoint(name: str) -> EndpointStats:
    """The counters of the endpoint ``name`` (created on the first call, then the same)."""
    return STATS.endpoint(name)


def endpoint_name(route: Any) -> str:
    """The name the counters of a route go under: its path template (``route.path``).

    Falls back to ``route.name``, then ``repr(route)`` for objects without a path.
    """
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    name = getattr(route, "name", None)
    return name if isinstance(name, str) and name else repr(route)


class NotStored(enum.Enum):
    """Why a response was not stored; the value is its Cache-Status ``detail`` token
    (``STATUS``'s detail carries the code: ``status-404``)."""

    STATUS = "status"  # the status is not among the stored ones (or an HTTPException)
    SET_COOKIE = "set-cookie"
    NO_STORE = "no-store"
    PRIVATE = "private"
    VARY_STAR = "vary-star"
    VARY_UNKEYED = "vary-unkeyed"  # Vary names a request header the key does not hold
    HEAD = "head"  # the endpoint saw HEAD: its answer is not the GET's
    HEAD_EMPTY_BODY = "head-empty-body"
    AUTHORIZATION = "authorization"
    TOO_LARGE = "too-large"
    STREAMING = "streaming"
    ERROR = "error"  # the endpoint raised, the entry could not be encoded, the backend failed


#: The ``not_stored_<reason>`` counter of each reason (a ``NOT_STORED_REASONS`` name).
NOT_STORED_COUNTERS: Final[dict[NotStored, str]] = {
    NotStored.STATUS: "status",
    NotStored.SET_COOKIE: "set_cookie",
    NotStored.NO_STORE: "no_store",
    NotStored.PRIVATE: "private",
    NotStored.VARY_STAR: "vary_star",
    NotStored.VARY_UNKEYED: "vary_unkeyed",
    NotStored.HEAD: "head",
    NotStored.HEAD_EMPTY_BODY: "head_empty_body",
    NotStored.AUTHORIZATION: "authorization",
    NotStored.TOO_LARGE: "too_large",
    NotStored.STREAMING: "streaming",
    NotStored.ERROR: "error",
}

_REASON_INDEX: Final[dict[NotStored, int]] = {
    reason: NOT_STORED_REASONS.index(name) for reason, name in NOT_STORED_COUNTERS.items()
}


def not_stored(row: EndpointStats, reason: NotStored) -> None:
    """Count a response of row's endpoint that was not stored, for reason: ``not_stored``
    and its ``not_stored_<reason>``."""
    row.not_stored(_REASON_INDEX[reason])


def set_breaker_state(state: str | int) -> None:
    """Set the breaker gauge: ``"closed"``, ``"open"``, ``"half_open"`` (or a
    ``BreakerState``, whose value is one of those), or the gauge's int."""
    if isinstance(state, int):
        STATS.breaker_state = state
        return
    value = getattr(state, "value", state)
    if value not in BREAKER_STATES:
        raise ValueError(f"breaker state must be one of {BREAKER_STATES}, got {state!r}")
    STATS.breaker_state = BREAKER_STATES.index(value)


def track_breaker(breaker: _HasState) -> None:
    """Read the gauge from ``breaker.state`` at every ``snapshot()`` (and Prometheus scrape).

    The breaker is held by a weak reference; the last one tracked wins. This costs the
    breaker nothing: no callback runs on its state changes.
    """
    _tracked[:] = [weakref.ref(breaker)]


def _refresh_breaker() -> None:
    if not _tracked:
        return
    breaker = _tracked[0]()
    if breaker is None:
        _tracked.clear()
        return
    set_breaker_state(breaker.state)


def snapshot() -> CacheStats:
    """Every counter of this process, per endpoint and summed, and the breaker state."""
    _refresh_breaker()
    return {
        "endpoints": STATS.snapshot(),
        "totals": STATS.totals(),
        "breaker": BREAKER_STATES[STATS.breaker_state],
        "near": NEAR_COUNTERS.snapshot(),
    }


def hit_ratio(counts: dict[str, int]) -> float | None:
    """(hits + stale_served) / (hits + stale_served + misses), None before any lookup."""
    served = counts.get("hits", 0) + counts.get("stale_served", 0)
    looked_up = served + counts.get("misses", 0)
    return None if looked_up == 0 else served / looked_up


def reset() -> None:
    """Zero every counter of this process (rows held by endpoints stay valid)."""
    STATS.reset()
    NEAR_COUNTERS.reset()
    _tracked.clear()
