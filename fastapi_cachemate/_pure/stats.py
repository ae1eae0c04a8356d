"""Twin of csrc/stats.c: per-process, per-endpoint cache counters.

Semantics (the C type follows them exactly; the tests run on both):

- ``Stats.endpoint(name)`` returns the row of that endpoint (a str), created on the first
  call with every counter at 0, the same object afterwards.
- A row's counters are ``STATS_COUNTERS`` (in that order), unsigned 64-bit, wrapping modulo
  2**64. ``hit``, ``miss``, ``stale``, ``bypass``, ``no_cache``, ``refresh``,
  ``refresh_failure``, ``lock_wait``, ``lock_timeout``, ``backend_error`` add 1 to their
  counter; ``stored(raw, stored)`` adds 1 to ``stored`` and the sizes to
  ``bytes_before_compression`` / ``bytes_after_compression``; ``not_stored(reason)`` adds 1 to
  ``not_stored`` and to ``not_stored_<NOT_STORED_REASONS[reason]>``; ``add(counter, n=1)`` adds
  n to one counter only.
- ``Stats.reset()`` zeroes every row in place (rows held by endpoints stay the ones read) and
  sets ``breaker_state`` to ``BREAKER_CLOSED``.
- Errors: a non-int count or index is a TypeError (bool is an int, as in C); a negative count,
  an index out of range or a breaker state outside 0..2 is a ValueError; a count above
  2**64 - 1 an OverflowError; a name that is not exactly a str a TypeError.
"""

from __future__ import annotations

__all__ = [
    "BREAKER_CLOSED",
    "BREAKER_HALF_OPEN",
    "BREAKER_OPEN",
    "NOT_STORED_REASONS",
    "STATS_COUNTERS",
    "EndpointStats",
    "Stats",
]

NOT_STORED_REASONS: tuple[str, ...] = (
    "status",
    "set_cookie",
    "no_store",
    "private",
    "vary_star",
    "vary_unkeyed",
    "head",
    "head_empty_body",
    "authorization",
    "too_large",
    "streaming",
    "error",
)
STATS_COUNTERS: tuple[str, ...] = (
    "hits",
    "misses",
    "stale_served",
    "bypass",
    "no_cache",
    "stored",
    "not_stored",
    "refreshes",
    "refresh_failures",
    "lock_waits",
    "lock_timeouts",
    "backend_errors",
    "bytes_before_compression",
    "bytes_after_compression",
    *(f"not_stored_{reason}" for reason in NOT_STORED_REASONS),
)
BREAKER_CLOSED = 0
BREAKER_OPEN = 1
BREAKER_HALF_OPEN = 2

_MASK = (1 << 64) - 1
_HITS, _MISSES, _STALE, _BYPASS, _NO_CACHE, _STORED, _NOT_STORED = range(7)
_REFRESHES, _REFRESH_FAILURES, _LOCK_WAITS, _LOCK_TIMEOUTS, _BACKEND_ERRORS = range(7, 12)
_BYTES_RAW, _BYTES_STORED, _NOT_STORED_0 = 12, 13, 14
_N = len(STATS_COUNTERS)


def _count(value: object, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0")
    if value > _MASK:
        raise OverflowError(f"{what} is too large for 64 bits")
    return int(value)


def _index(value: object, n: int, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")
    if not 0 <= value < n:
        raise ValueError(f"{what} must be in 0..{n - 1}")
    return int(value)


class EndpointStats:
    """The counters of one endpoint (from ``Stats.endpoint(name)``)."""

    __slots__ = ("_c", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._c = [0] * _N

    @property
    def name(self) -> str:
        return self._name

    def _bump(self, i: int) -> None:
        self._c[i] = (self._c[i] + 1) & _MASK

    def hit(self) -> None:
        self._bump(_HITS)

    def miss(self) -> None:
        self._bump(_MISSES)

    def stale(self) -> None:
        self._bump(_STALE)

    def bypass(self) -> None:
        self._bump(_BYPASS)

    def no_cache(self) -> None:
        self._bump(_NO_CACHE)

    def refresh(self) -> None:
        self._bump(_REFRESHES)

    def refresh_failure(self) -> None:
        self._bump(_REFRESH_FAILURES)

    def lock_wait(self) -> None:
        self._bump(_LOCK_WAITS)

    def lock_timeout(self) -> None:
        self._bump(_LOCK_TIMEOUTS)

    def backend_error(self) -> None:
        self._bump(_BACKEND_ERRORS)

    def stored(self, raw_bytes: int, stored_bytes: int, /) -> None:
        raw = _count(raw_bytes, "raw_bytes")
        stored = _count(stored_bytes, "stored_bytes")
        c = self._c
        c[_STORED] = (c[_STORED] + 1) & _MASK
        c[_BYTES_RAW] = (c[_BYTES_RAW] + raw) & _MASK
        c[_BYTES_STORED] = (c[_BYTES_STORED] + stored) & _MASK

    def not_stored(self, reason: int, /) -> None:
        r = _index(reason, len(NOT_STORED_REASONS), "reason")
        self._bump(_NOT_STORED)
        self._bump(_NOT_STORED_0 + r)

    def add(self, counter: int, n: int = 1, /) -> None:
        i = _index(counter, _N, "counter")
        self._c[i] = (self._c[i] + _count(n, "n")) & _MASK

    def snapshot(self) -> dict[str, int]:
        return dict(zip(STATS_COUNTERS, self._c, strict=True))

    def reset(self) -> None:
        self._c[:] = [0] * _N

    def __repr__(self) -> str:
        return f"<EndpointStats {self._name!r} hits={self._c[_HITS]} misses={self._c[_MISSES]}>"


class Stats:
    """Per-process cache counters, one EndpointStats row per endpoint, and the breaker gauge."""

    __slots__ = ("_breaker_state", "_rows")

    def __init__(self) -> None:
        self._rows: dict[str, EndpointStats] = {}
        self._breaker_state = BREAKER_CLOSED

    def endpoint(self, name: str, /) -> EndpointStats:
        if type(name) is not str:
            raise TypeError(f"name must be str, not {type(name).__name__}")
        row = self._rows.get(name)
        if row is None:
            row = self._rows[name] = EndpointStats(name)
        return row

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: row.snapshot() for name, row in self._rows.items()}

    def totals(self) -> dict[str, int]:
        sums = [0] * _N
        for row in self._rows.values():
            for i, v in enumerate(row._c):
                sums[i] = (sums[i] + v) & _MASK
        return dict(zip(STATS_COUNTERS, sums, strict=True))

    def endpoints(self) -> list[str]:
        return list(self._rows)

    def reset(self) -> None:
        for row in self._rows.values():
            row.reset()
        self._breaker_state = BREAKER_CLOSED

    @property
    def breaker_state(self) -> int:
        return self._breaker_state

    @breaker_state.setter
    def breaker_state(self, value: int) -> None:
        self._breaker_state = _index(value, 3, "breaker_state")

    def __len__(self) -> int:
        return len(self._rows)
