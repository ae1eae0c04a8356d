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

Counter names are ``STATS_COUNTERS`` (see ``_native.pyi``); the reasons a response is not
stored are ``NOT_STORED_REASONS``, and ``reason_index(text)`` maps the request path's reason
strings (``"status 404"``, ``"set-cookie"``, ``"cache-control: no-store"``, ...) onto them.

Endpoint names: the route's path template (``endpoint_name(route)``, e.g. ``/items/{id}``),
so the set of names is bounded by the app's routes, never by its URLs.
"""

from __future__ import annotations

import weakref
from typing import Any, Final, Protocol, TypedDict

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate.core.backends.near import COUNTERS as NEAR_COUNTERS

# The twin's classes stand for both implementations in annotations (same methods).
EndpointStats = kernels.EndpointStats
Stats = kernels.Stats

__all__ = [
    "BREAKER_STATES",
    "NOT_STORED_REASONS",
    "STATS",
    "STATS_COUNTERS",
    "CacheStats",
    "EndpointStats",
    "Stats",
    "endpoint",
    "endpoint_name",
    "hit_ratio",
    "reason_index",
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


def reason_index(reason: str) -> int:
    """The ``NOT_STORED_REASONS`` index of a reason given as text.

    Accepts the reason names themselves (``"too_large"``) and the request path's phrases:
    ``"status 404"`` -> status, ``"set-cookie"`` -> set_cookie, ``"cache-control: no-store"``
    (no-store wins over private when both are named) -> no_store, ``"cache-control:
    private"`` -> private, ``"vary: *"`` -> vary_star. Anything else is ``error``.
    """
    text = reason.strip().lower()
    key = text.replace("-", "_")
    if key in NOT_STORED_REASONS:
        return NOT_STORED_REASONS.index(key)
    if text.startswith("status"):
        return REASON_STATUS
    if "set-cookie" in text or "set_cookie" in text:
        return REASON_SET_COOKIE
    if "no-store" in text or "no_store" in text:
        return REASON_NO_STORE
    if "private" in text:
        return REASON_PRIVATE
    if text.startswith("vary"):
        return REASON_VARY_STAR
    if "authorization" in text:
        return REASON_AUTHORIZATION
    if "too large" in text or "max_entry_bytes" in text:
        return REASON_TOO_LARGE
    if "stream" in text or "file" in text:
        return REASON_STREAMING
    return REASON_ERROR


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
