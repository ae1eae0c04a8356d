"""The near cache: a bounded in-process copy of Redis entries, kept coherent by Redis.

A ``RedisBackend`` with a near cache keeps the entries it reads in a native ``MemoryStore``
(LRU, byte budget, per-item expiry at the entry's own end of life), so that a hot key is
answered from process memory instead of a GET. Redis tells the process when any key under
the cache's prefix changes (``CLIENT TRACKING ... BCAST PREFIX``, see ``tracking.py``); every
such message evicts the copy. docs/design.md ("Near cache") has the protocol and the
argument; in short:

- a copy is served only while tracking is established on every node (``ready``) and the
  request path's circuit breaker is closed; losing the channel, a ``FLUSHDB`` / ``FLUSHALL``
  (a null invalidation), a topology change or the breaker opening flushes everything;
- the race between a GET's reply and the invalidation of the same key (they travel on
  different connections): a fetch is registered (:meth:`NearCache.begin_fetch`) before its
  GET is sent, every invalidation of the key that arrives meanwhile marks it, and a marked
  fetch, or one that began before the last flush, keeps nothing;
- the process's own stores: the invalidation that Redis sends for the process's own write
  is counted in advance (:meth:`NearCache.writing`), so the first GET after the write is kept
  (at most one GET per key per process after a write). Only fetches that began after the
  write was acknowledged may let that many invalidations pass; see ``_Fetch.exempt``.

Stored values are entries with an uncompressed body (a zstd body is decompressed once when
the copy is made), so a near hit costs what an in-process ``MemoryBackend`` hit costs.
Everything here is synchronous (nothing awaited): each method is atomic in the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Final

from fastapi_cachemate._kernels import kernels

__all__ = ["COUNTERS", "NEAR_COUNTERS", "NearCache", "NearCounters"]

logger = logging.getLogger(__name__)

_MAGIC: Final = "cmE"
_CODEC_ZSTD: Final = 1

#: the near cache's counters, in this order (``NearCounters.snapshot``)
NEAR_COUNTERS: Final[tuple[str, ...]] = (
    "near_hits",  # requests answered from the near copy
    "near_fills",  # copies made after a GET
    "near_invalidations",  # copies evicted by an invalidation message from Redis
    "near_flushes",  # whole near cache flushed (channel lost, FLUSHDB, breaker, topology)
    "near_races",  # GET replies not kept: an invalidation or a flush arrived meanwhile
)


class NearCounters:
    """The process's near-cache counters (plain ints: bumped from the event loop only)."""

    __slots__ = NEAR_COUNTERS

    def __init__(self) -> None:
        self.near_hits = 0
        self.near_fills = 0
        self.near_invalidations = 0
        self.near_flushes = 0
        self.near_races = 0

    def reset(self) -> None:
        for name in NEAR_COUNTERS:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in NEAR_COUNTERS}


#: process-wide, as the endpoint counters are (``metrics.snapshot`` reports them)
COUNTERS: Final = NearCounters()


class _Fetch:
    """One GET whose reply may become a near copy."""

    __slots__ = ("dirty", "epoch", "exempt", "key")

    def __init__(self, key: bytes, epoch: int, exempt: int) -> None:
        self.key = key
        self.epoch = epoch  # NearCache._epoch when it began: a flush since voids it
        self.dirty = False  # an invalidation of key arrived since it began
        # How many of the next invalidations of key need not mark it: this process's own
        # writes of key, all acknowledged before the fetch began, whose invalidations had
        # not arrived yet. They were sent by Redis before it ran this GET, and messages of
        # one connection arrive in order, so the first `exempt` arrivals precede the GET.
        self.exempt = exempt


def near_copy(raw: bytes) -> tuple[bytes, float] | None:
    """(the entry with an uncompressed body, when it ends: created + ttl + grace), or None
    for bytes that are not an entry this version reads (they are never copied)."""
    try:
        fields = kernels.unpackb(raw)
    except (ValueError, TypeError):
        return None
    if (
        type(fields) is not list
        or len(fields) != 14
        or fields[0] != _MAGIC
        or fields[1] != 1
        or not all(isinstance(fields[i], (int, float)) for i in (2, 3, 4))
    ):
        return None
    ends = float(fields[2]) + float(fields[3]) + float(fields[4])
    if fields[12] == _CODEC_ZSTD and isinstance(fields[13], bytes):
        try:
            fields[13] = kernels.decompress(fields[13], max(0, int(fields[11])))
        except (ValueError, TypeError):
            return None
        fields[12] = 0
        raw = kernels.packb(fields)
    return raw, ends


class NearCache:
    """Entries read from Redis, in process memory, evicted by Redis's invalidations."""

    def __init__(self, max_bytes: int, prefix: str) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"near cache max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.prefix = prefix
        #: what tracking is asked for: every key of the cache starts with it
        self.tracking_prefix = prefix.encode() + b":"
        self._store = kernels.MemoryStore(max_bytes)
        #: tracking is established on every node: copies may be served and made
        self.ready = False
        self._epoch = 0
        self._fetching: dict[bytes, list[_Fetch]] = {}
        self._own: dict[bytes, int] = {}  # own writes of a key whose invalidation is due
        self._writing: dict[bytes, int] = {}  # own writes of a key not acknowledged yet
        self.counters = COUNTERS
        self.tracker: Any = None  # tracking.Tracker, once started
        self._ready_event = asyncio.Event()

    def __len__(self) -> int:
        return len(self._store)

    @property
    def nbytes(self) -> int:
        return int(self._store.nbytes)

    # --- the request path -------------------------------------------------------------------
    def get(self, key: bytes, healthy: bool) -> bytes | None:
        """The near copy of key, or None. healthy: the backend's breaker is closed (else
        nothing is served, and what is held is flushed)."""
        tracker = self.tracker
        if not self.ready:
            if tracker is not None:
                tracker.ensure_running()
            return None
        if not healthy:
            if len(self._store):
                self.flush("the backend's circuit breaker is not closed")
            return None
        if tracker is not None and not tracker.quiet():
            return None  # an invalidation (or the channel's end) is waiting to be read
        raw: bytes | None = self._store.get(key, time.time())
        if raw is not None:
            self.counters.near_hits += 1
        return raw

    def begin_fetch(self, key: bytes) -> _Fetch | None:
        """Register a GET of key about to be sent; None when no copy can be made now."""
        if not self.ready:
            return None
        exempt = self._own.get(key, 0) if not self._writing.get(key) else 0
        fetch = _Fetch(key, self._epoch, exempt)
        self._fetching.setdefault(key, []).append(fetch)
        return fetch

    def end_fetch(self, fetch: _Fetch, raw: bytes | None) -> None:
        """The GET's reply (None: nothing, or the GET failed): kept as the near copy unless
        an invalidation of the key or a flush arrived since begin_fetch."""
        pending = self._fetching.get(fetch.key)
        if pending is not None:
            with contextlib.suppress(ValueError):
                pending.remove(fetch)
            if not pending:
                del self._fetching[fetch.key]
        if raw is None:
            return
        if fetch.dirty or fetch.epoch != self._epoch or not self.ready:
            self.counters.near_races += 1
            return
        copy = near_copy(raw)
        if copy is None:
            return
        value, ends = copy
        now = time.time()
        if ends <= now:
            return
        self._store.set(fetch.key, value, ends, now)
        self.counters.near_fills += 1

    def writing(self, key: bytes) -> None:
        """This process is about to write key: drop its copy; Redis will send one
        invalidation of key for the write, counted here."""
        self.discard((key,))
        self._writing[key] = self._writing.get(key, 0) + 1
        self._own[key] = self._own.get(key, 0) + 1

    def written(self, key: bytes, applied: bool) -> None:
        """The write of key is acknowledged (applied: Redis wrote it) or failed / refused
        (no invalidation is counted on then; one that comes anyway only marks fetches)."""
        left = self._writing.get(key, 0) - 1
        if left > 0:
            self._writing[key] = left
        else:
            self._writing.pop(key, None)
        if not applied:
            self._uncount(key)

    def discard(self, keys: Iterable[bytes]) -> None:
        """Drop the copies of keys and void the GETs of them in flight (this process is
        about to delete or invalidate them)."""
        store = self._store
        for key in keys:
            store.delete(key)
            for fetch in self._fetching.get(key, ()):
                fetch.dirty = True

    # --- what Redis tells ---------------------------------------------------------------------
    def invalidated(self, keys: Iterable[bytes] | None) -> None:
        """An invalidation message: these keys changed (None: the whole database did)."""
        if keys is None:
            self.flush("Redis flushed the database")
            return
        store = self._store
        counters = self.counters
        fetching = self._fetching
        for key in keys:
            if store.delete(key):
                counters.near_invalidations += 1
            for fetch in fetching.get(key, ()):
                if fetch.exempt > 0:
                    fetch.exempt -= 1
                else:
                    fetch.dirty = True
            self._uncount(key)

    def _uncount(self, key: bytes) -> None:
        own = self._own.get(key, 0) - 1
        if own > 0:
            self._own[key] = own
        else:
            self._own.pop(key, None)

    def flush(self, reason: str) -> None:
        """Drop every copy and void every GET in flight."""
        self._epoch += 1
        self._own.clear()
        self._store.clear()
        self.counters.near_flushes += 1
        logger.debug("near cache flushed: %s", reason)

    def set_ready(self, ready: bool, reason: str) -> None:
        """Tracking is established on every node (True), or lost (False: flushed)."""
        if not ready:
            if self.ready or len(self._store):
                self.flush(reason)
            self.ready = False
            if self._ready_event.is_set():  # a new one: the next wait may be in another loop
                self._ready_event = asyncio.Event()
            return
        if not self.ready:
            self._epoch += 1
            self.ready = True
            self._ready_event.set()

    async def wait_ready(self) -> None:
        """Return once tracking is established (starting it if needed)."""
        if self.tracker is not None:
            self.tracker.ensure_running()
        await self._ready_event.wait()
