"""The resilient request path: one computation per key, background refresh, stale serving,
fail-open backend calls. The pipeline (``_request/pipeline.py``) calls it at three points
(lookup, hit, miss); it knows nothing of FastAPI's rendering (the pipeline passes a
``compute`` callable).

Per configuration (``CacheSetup.setup()`` makes one :class:`Runtime`): a circuit breaker for
the backend, a :class:`SingleFlight`, a bounded :class:`RefreshTasks` registry (drained by
``CacheSetup.close()``) and the clock (``time.time``; tests replace it).

Per request, one :class:`Flow`:

- every backend call (fetch, store, lock) goes through the breaker with
  ``settings.backend_timeout``; the first ``BackendUnavailable`` marks the request *down*
  and it makes no further backend call (compute, answer, store nothing), so a dead backend
  adds at most one timeout to a request while the breaker is closed, nothing while it is
  open;
- a miss (:meth:`Flow.miss`): the in-process single flight, then across processes
  ``acquire_or_wait`` on ``key + b":lock"``: a held lease computes and stores (the lock is
  extended while computing and its TTL comes from the last measured compute time, or
  ``ttl_lock_seconds`` on a cold miss); a waiter that finds the value serves it; a waiter
  that times out computes without storing (or serves a stale entry it holds); an
  unavailable backend computes without storing;
- a hit: when :meth:`Flow.early_refresh_due` says so (``refresh_due`` or ``xfetch_due``),
  ONE background refresh (:meth:`Flow.start_background_refresh`): deduplicated per key in
  the process (``RefreshTasks``) and across processes by a non-waiting ``try_acquire`` of
  the lock; see ``_runtime/reentry.py`` for how it gets fresh dependencies (it re-enters
  the app through ASGI);
- stale entries: inside ``stale_while_revalidate`` past the TTL the entry is served
  (``STALE``) while one refresher recomputes; inside ``stale_if_error`` it is kept as the
  fallback of the miss: if the computation raises (not a 4xx ``HTTPException``), answers
  5xx or the wait for another process times out, the stale entry is served
  (``STALE_IF_ERROR``). A failed computation never stores anything, so it never replaces a
  good entry.
"""

from __future__ import annotations

import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, NamedTuple, TypeVar

from starlette.exceptions import HTTPException

from fastapi_cachemate import _log, metrics
from fastapi_cachemate._kernels import Entry, kernels
from fastapi_cachemate._runtime import boundary
from fastapi_cachemate._runtime.breaker import BackendUnavailable, BreakerState, CircuitBreaker
from fastapi_cachemate._runtime.lease import (
    Found,
    Lease,
    NoLease,
    acquire_or_wait,
    lock_ttl_ms,
    try_acquire,
)
from fastapi_cachemate._runtime.reentry import RefreshTicket, reenter, refresh_scope
from fastapi_cachemate._runtime.singleflight import SingleFlight
from fastapi_cachemate._runtime.tasks import RefreshTasks
from fastapi_cachemate.core import layout
from fastapi_cachemate.core.backends.near import NearCache
from fastapi_cachemate.core.types import Backend, ComputeTicket, LockManager
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = [
    "Computed",
    "Flow",
    "Outcome",
    "Runtime",
    "Shared",
]

logger = logging.getLogger(__name__)
#: one record when the backend is lost, one when it is back (per process); DEBUG in between
_backend_health = _log.BackendHealth(logger)

#: seconds (of the cache's clock) during which hits start no refresh of a key whose refresh
#: another process holds, or whose last refresh failed
REFRESH_HOLD_OFF = 1.0

Headers = tuple[tuple[bytes, bytes], ...]
T = TypeVar("T")


class Runtime:
    """What the request path keeps per configuration (one per ``CacheSetup.setup()``)."""

    __slots__ = (
        "breaker",
        "clock",
        "elsewhere",
        "fetches",
        "flight",
        "in_process",
        "near",
        "refreshes",
        "settings",
    )

    #: most keys remembered as "refreshed by another process" (the map is pruned beyond it)
    ELSEWHERE_MAX = 1024

    def __init__(self, settings: BaseCacheSettings, *, in_process: bool = False) -> None:
        self.settings = settings
        #: the backend lives in this process (MemoryBackend): no I/O to time out, no outage
        #: to detect; its calls skip the breaker (~5 us per hit)
        self.in_process = in_process
        # counts every failure of a backend call (boundary.FAILURES), not only I/O errors
        self.breaker = CircuitBreaker(
            settings.breaker_failures,
            settings.breaker_reset,
            name="cache-backend",
            failure_types=boundary.FAILURES,
        )
        self.flight = SingleFlight()  # computations
        # Lookups: concurrent requests of one key share one backend GET (a hot key under
        # load costs one round trip per batch of requests, not per request). The GET is made
        # while each of them waits, so what it reads is as fresh as each one's own would be.
        self.fetches = SingleFlight()
        self.refreshes = RefreshTasks(settings.max_refresh_tasks, name="cache-refresh")
        # key -> clock() deadline before which hits start no refresh of it: another process
        # holds its lock (one SET NX per hit otherwise), or the last refresh failed (a
        # failing endpoint is not re-run back to back by every due hit)
        self.elsewhere: dict[bytes, float] = {}
        #: seconds since the epoch: entries' created and freshness (tests inject a clock)
        self.clock: Callable[[], float] = time.time
        #: the RedisBackend's near cache (CacheSetup.setup() attaches it), or None
        self.near: NearCache | None = None

    def refreshed_elsewhere(self, key: bytes) -> bool:
        deadline = self.elsewhere.get(key)
        if deadline is None:
            return False
        if self.clock() < deadline:
            return True
        del self.elsewhere[key]
        return False

    def remember_elsewhere(self, key: bytes, seconds: float) -> None:
        elsewhere = self.elsewhere
        if len(elsewhere) >= self.ELSEWHERE_MAX:
            now = self.clock()
            for stale in [k for k, deadline in elsewhere.items() if deadline <= now]:
                del elsewhere[stale]
            if len(elsewhere) >= self.ELSEWHERE_MAX:
                elsewhere.clear()
        elsewhere[key] = self.clock() + seconds

    async def aclose(self, timeout: float) -> None:
        """Refuse new refreshes; let running ones finish for ``timeout`` s, cancel the rest."""
        await self.refreshes.aclose(timeout)


class Shared(NamedTuple):
    """A response that every concurrent request of the key may send (immutable)."""

    status: int
    headers: Headers  # as stored: without any request's dependency headers
    body: bytes
    etag: bytes  # the entry's validator (If-None-Match of each request)
    created: float  # when it was computed: Age and max-age of each request
    ttl: float


class Computed(NamedTuple):
    """One computation of the endpoint, as the single flight and the store see it (the
    request path keeps what its own answer needs)."""

    blob: bytes | None  # the entry to store; None: must not or cannot be stored
    shared: Shared | None  # what followers may send; None: not shareable (private...)
    failed: bool  # a 5xx answer: a stale entry may replace it (stale-if-error)
    ticket: ComputeTicket | None = None  # Backend.begin_compute's, before computing
    ttl: float = 0.0  # the entry's ttl (per status): what blob is stored for
    body_size: int = 0  # the body's length in bytes (counted when stored)
    stored: bool = False  # the blob was written (by this request, under the lease)


class Outcome(NamedTuple):
    """What the request sends after a miss."""

    kind: Literal["own", "shared", "stale"]
    computed: Computed | None = None  # "own": this request's own computation
    shared: Shared | None = None  # "shared": a computation of another request or process


class _Failed:
    """The leader's computation answered 5xx: followers fall back or compute."""

    __slots__ = ()


class _Stale:
    """The leader gave up waiting for another process and serves its stale entry."""

    __slots__ = ()


_FAILED = _Failed()
_STALE = _Stale()
_Lead = Shared | _Failed | _Stale | None


def _is_error(exc: BaseException) -> bool:
    """Whether stale-if-error covers this exception of the endpoint (not a 4xx answer)."""
    if isinstance(exc, HTTPException):
        return exc.status_code >= 500
    return True


class Flow:
    """One request's view of the cache: its key, its backend calls, its decisions."""

    __slots__ = (
        "backend",
        "down",
        "from_near",
        "key",
        "locks",
        "runtime",
        "settings",
        "stale_if_error",
        "stale_while_revalidate",
        "stats",
        "unreachable",
    )

    def __init__(
        self,
        runtime: Runtime,
        backend: Backend,
        locks: LockManager,
        settings: BaseCacheSettings,
        key: bytes,
        *,
        stale_while_revalidate: float,
        stale_if_error: float,
        stats: metrics.EndpointStats,
    ) -> None:
        self.runtime = runtime
        self.backend = backend
        self.locks = locks
        self.settings = settings
        self.key = key
        self.stale_while_revalidate = stale_while_revalidate
        self.stale_if_error = stale_if_error
        self.stats = stats  # the endpoint's counters (fastapi_cachemate.metrics)
        self.down = False  # a backend call failed in this request: no more backend calls
        # the failure was the backend's absence (a connection error, a timeout, an open
        # breaker), not a bad reply: a held lock is then left to expire, not unlocked
        self.unreachable = False
        self.from_near = False  # the lookup was answered by the near cache

    @property
    def grace(self) -> float:
        """What the entry's grace is written from: how long past its TTL it is of use."""
        return max(self.stale_while_revalidate, self.stale_if_error)

    def now(self) -> float:
        return self.runtime.clock()

    # --- backend calls: through the breaker, none after the first failure ----------------
    async def _call(
        self, operation: str, factory: Callable[[], Awaitable[Any]], check: Callable[[Any], T]
    ) -> T:
        """One backend call at the boundary (``boundary.call``): through the breaker
        unless the backend lives in this process. A failure (whatever was raised or
        answered) marks the request down, is counted and logged (once per state change),
        and is raised as ``BackendUnavailable``."""
        runtime = self.runtime
        try:
            if runtime.in_process:
                value = await boundary.call(factory, check)
            else:
                value = await boundary.call(
                    factory, check, breaker=runtime.breaker, timeout=self.settings.backend_timeout
                )
        except BackendUnavailable as exc:
            self._failed(operation, exc)
            raise
        if _backend_health.down:
            _backend_health.recovered(operation, key=self.key, endpoint=self.stats.name)
        return value

    async def fetch(self) -> bytes | None:
        """The raw bytes at the key; None for a miss or an unavailable backend."""
        try:
            return await self._fetch()
        except BackendUnavailable:
            return None

    async def _fetch(self) -> bytes | None:
        if self.down:
            raise BackendUnavailable(
                "cache: backend failed earlier in this request", short_circuited=True
            )
        if self.runtime.in_process:
            return await self._fetch_once()
        near = self.runtime.near
        if near is not None:
            raw = near.get(self.key, self.runtime.breaker.state is BreakerState.CLOSED)
            if raw is not None:
                self.from_near = True
                return raw
        try:
            raw, _ = await self.runtime.fetches.run(self.key, self._fetch_once)
        except BackendUnavailable:
            self.down = True  # the shared call failed (reported once, by the one that made it)
            raise
        return raw

    async def _fetch_once(self) -> bytes | None:
        """The backend call of a lookup, through the breaker (made by one request at a time
        per key: ``Runtime.fetches``)."""
        backend, key = self.backend, self.key
        return await self._call("fetch", lambda: backend.fetch(key), boundary.blob)

    def _ttl_ms(self, ttl: float) -> int:
        """How long the backend keeps an entry of ttl seconds: ttl + grace, in ms."""
        return max(1, int((ttl + self.grace) * 1000 + 0.999))

    async def begin(self, tags: list[str], ttl: float) -> ComputeTicket | None:
        """``Backend.begin_compute`` before computing (the key's generation, its tags);
        None when the backend is unavailable (the computation is then not stored)."""
        if self.down:
            return None
        backend, key = self.backend, self.key
        tags_ttl_ms = self._ttl_ms(ttl)
        try:
            return await self._call(
                "begin_compute",
                lambda: backend.begin_compute(key, tags=tags, tags_ttl_ms=tags_ttl_ms),
                boundary.ticket_of(key),
            )
        except BackendUnavailable:
            return None

    async def store(self, computed: Computed, ttl: float, lease: Lease | None = None) -> bool:
        """Store the computed entry (ttl + grace in the backend) unless an invalidation
        landed since its ``begin``; True if stored. With the lease this computation holds,
        when its lock lives in the backend's store, the store releases it in the same round
        trip (``Backend.store_if_generation_and_unlock``); else the lease releases it.

        Counted: stored (the body's length and the blob's), or not_stored (error) when the
        backend is unavailable. A store refused by the generation check is not counted.
        """
        blob, ticket = computed.blob, computed.ticket
        if blob is None or ticket is None:
            return False
        if self.down:
            metrics.not_stored(self.stats, metrics.NotStored.ERROR)
            return False
        backend = self.backend
        ttl_ms = self._ttl_ms(ttl)
        unlock = None
        if (
            lease is not None
            and not self.runtime.in_process
            and boundary.shares_store(self.locks, backend)
        ):
            lease.forget()  # stop extending it: the store's round trip unlocks it
            unlock = (lease.key, lease.token)

        def store() -> Awaitable[Any]:
            if unlock is None:
                return backend.store_if_generation(ticket, blob, ttl_ms)
            return backend.store_if_generation_and_unlock(ticket, blob, ttl_ms, *unlock)

        try:
            stored = await self._call("store", store, boundary.flag)
        except BackendUnavailable:
            metrics.not_stored(self.stats, metrics.NotStored.ERROR)
            if lease is not None and unlock is not None and not self.unreachable:
                await lease.unlock()  # the store that was to release it failed: release it
            return False
        if not stored:
            logger.debug("cache: %r was invalidated while computed: not stored", self.key)
            return False
        self.stats.stored(computed.body_size, len(blob))
        return True

    def _failed(self, operation: str, exc: BackendUnavailable) -> None:
        """A backend call of this request failed: no more calls in this request."""
        self.down = True
        self.unreachable = boundary.unreachable(exc)
        if exc.short_circuited:  # no call was made (breaker open): nothing new to report
            logger.debug("cache: backend %s skipped for %r: %s", operation, self.key, exc)
            return
        self.stats.backend_error()
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        _backend_health.failed(cause, operation, key=self.key, endpoint=self.stats.name)

    # --- decoding ---------------------------------------------------------------------------
    def decode(self, raw: bytes | None, fingerprint: bytes) -> Entry | None:
        """The entry (any state), or None for a miss, unreadable or foreign bytes."""
        if raw is None:
            return None
        entry = kernels.read_entry(raw, self.now(), fingerprint)
        if entry is None:
            logger.warning(
                "cache: unreadable or foreign entry at %r: a miss, overwritten",
                self.key,
                extra=_log.fields(key=self.key, endpoint=self.stats.name, reason="unreadable"),
            )
        return entry

    def servable_stale(self, entry: Entry) -> bool:
        """A STALE entry inside stale_while_revalidate: served while one refresher runs."""
        return bool(
            entry.state == kernels.STALE and -entry.remaining <= self.stale_while_revalidate
        )

    def error_fallback(self, entry: Entry | None) -> Entry | None:
        """The entry if stale_if_error still covers it (the miss's fallback), else None."""
        if entry is None or entry.state != kernels.STALE:
            return None
        return entry if -entry.remaining <= self.stale_if_error else None

    # --- hits: the early refresh -----------------------------------------------------------
    def early_refresh_due(self, entry: Entry) -> bool:
        """Whether this FRESH entry should be refreshed early, in the background, now."""
        settings = self.settings
        remaining_ms = entry.remaining * 1000.0
        if settings.refresh_strategy == "xfetch":
            return bool(
                kernels.xfetch_due(
                    entry.compute_ms, remaining_ms, settings.xfetch_beta, random.random()
                )
            )
        return bool(
            kernels.refresh_due(
                entry.compute_ms,
                remaining_ms,
                entry.ttl * 1000.0,
                settings.max_planing_execution_time,
                settings.buffer,
            )
        )

    def start_background_refresh(self, entry: Entry, scope: MutableMapping[str, Any]) -> bool:
        """Start the background refresh of this key (at most one per key and process).

        The task re-enters the app with a copy of this request's scope (see ``refresh``):
        it captures no object of this request. False when refused (running, limit, closed).
        """
        app = scope.get("app")
        if app is None or self.runtime.refreshed_elsewhere(self.key):
            return False
        created, compute_ms = entry.created, entry.compute_ms
        refresher = Flow(  # the task's own: nothing of this request's state (its "down")
            self.runtime,
            self.backend,
            self.locks,
            self.settings,
            self.key,
            stale_while_revalidate=self.stale_while_revalidate,
            stale_if_error=self.stale_if_error,
            stats=self.stats,
        )
        return self.runtime.refreshes.spawn(
            self.key,
            lambda: refresher._background_refresh(app, refresh_scope(scope), created, compute_ms),
            context=contextvars.Context(),  # a new request's context, not this one's
        )

    async def _background_refresh(
        self, app: Any, scope: dict[str, Any], seen_created: float, compute_ms: float
    ) -> None:
        settings = self.settings
        ttl_ms = lock_ttl_ms(settings.ttl_lock_seconds, compute_ms / 1000.0)
        try:
            lease = await try_acquire(
                self.locks,
                layout.lock_key(self.key),
                ttl_ms,
                breaker=self.runtime.breaker,
                call_timeout=settings.backend_timeout,
            )
        except BackendUnavailable as exc:
            logger.debug("cache: refresh of %r skipped, backend unavailable: %s", self.key, exc)
            return
        if lease is None:
            # another process refreshes it: do not try again on every hit meanwhile
            self.runtime.remember_elsewhere(self.key, REFRESH_HOLD_OFF)
            return
        async with lease:
            # Refreshed by another process between our read and our lock? Then we are done.
            try:
                raw = await self._fetch()
            except BackendUnavailable:
                return
            entry = None if raw is None else kernels.read_entry(raw, self.now())
            if entry is not None and entry.created > seen_created:
                return
            ticket = RefreshTicket(self.key)
            try:
                await reenter(app, scope, ticket)
            except Exception as exc:  # the endpoint's own error: reported here, never raised
                self.stats.refresh_failure()
                self.runtime.remember_elsewhere(self.key, REFRESH_HOLD_OFF)
                logger.warning(
                    "cache: background refresh of %r failed (the entry is kept): %s: %s",
                    self.key,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                return
            if ticket.stored:
                self.stats.refresh()
            else:
                self.stats.refresh_failure()
                self.runtime.remember_elsewhere(self.key, REFRESH_HOLD_OFF)
                logger.info(
                    "cache: background refresh of %r stored nothing (status %s)",
                    self.key,
                    ticket.status,
                )

    # --- misses: one computation -------------------------------------------------------------
    async def miss(
        self,
        compute: Callable[[], Awaitable[Computed]],
        previous: Entry | None,
        fingerprint: bytes,
        *,
        revalidate: bool,
    ) -> Outcome:
        """Compute once for all concurrent requests of the key (in this process and across).

        previous: the entry read at the key (stale or expired) or None; its compute time
        sizes the lock, and inside stale_if_error it is served when the computation fails.
        revalidate: previous is fresh but the client asked for a newer one
        (client_cache_control="revalidate"): only an entry created after it counts as found.
        """
        newer_than = previous.created if revalidate and previous is not None else None
        fallback = self.error_fallback(previous)
        compute_s = None if previous is None else previous.compute_ms / 1000.0
        own: Computed | None = None

        async def lead() -> _Lead:
            nonlocal own
            led = await self._lead(compute, compute_s, fingerprint, fallback, newer_than)
            if isinstance(led, Computed):
                own = led
                if led.failed:
                    return _FAILED
                return led.shared
            return led

        try:
            shared, leader = await self.runtime.flight.run(self.key, lead)
        except Exception as exc:
            if fallback is not None and _is_error(exc):
                logger.warning(
                    "cache: endpoint failed for %r, stale entry served: %s: %s",
                    self.key,
                    type(exc).__name__,
                    exc,
                )
                return Outcome("stale")
            raise
        if leader and own is not None:
            if own.failed and fallback is not None:
                return Outcome("stale")
            return Outcome("own", computed=own)
        if isinstance(shared, Shared):
            return Outcome("shared", shared=shared)
        if shared is _FAILED and fallback is not None:
            return Outcome("stale")
        if isinstance(shared, _Stale) and fallback is not None:
            return Outcome("stale")  # the holder is slow: serve the stale entry meanwhile
        # Not shareable (private, streaming, 5xx without fallback): this request computes
        # for itself and stores nothing (the leader decided about the store).
        return Outcome("own", computed=await compute())

    async def _lead(
        self,
        compute: Callable[[], Awaitable[Computed]],
        compute_s: float | None,
        fingerprint: bytes,
        fallback: Entry | None,
        newer_than: float | None = None,
    ) -> Computed | Shared | _Stale:
        """The single-flight leader: hold the lease and compute, or find the value."""
        if self.down:
            return await compute()  # nothing stored: its begin finds the request down
        settings = self.settings
        ttl_ms = lock_ttl_ms(settings.ttl_lock_seconds, compute_s)
        wait = settings.lock_wait_timeout
        if wait is None:
            wait = ttl_ms / 1000.0

        def usable(raw: bytes | None) -> Entry | None:
            entry = self.decode(raw, fingerprint)
            if entry is None or entry.state != kernels.FRESH:
                return None
            if newer_than is not None and entry.created <= newer_than:
                return None  # the entry being revalidated: compute a newer one
            return entry

        async def fresh() -> Entry | None:
            return usable(await self._fetch())

        lock_key = layout.lock_key(self.key)
        take = None
        if boundary.shares_store(self.locks, self.backend):
            backend, key = self.backend, self.key

            async def take() -> tuple[str | None, Any]:
                token, raw = await self._call(
                    "lock_and_fetch",
                    lambda: backend.lock_and_fetch(lock_key, ttl_ms, key),
                    boundary.token_and_blob,
                )
                return token, usable(raw)

        got = await acquire_or_wait(
            self.locks,
            lock_key,
            fresh,
            ttl_ms=ttl_ms,
            wait_timeout=wait,
            breaker=self.runtime.breaker,
            call_timeout=settings.backend_timeout,
            take=take,
        )
        if isinstance(got, Found) or (isinstance(got, NoLease) and got.reason == "timeout"):
            self.stats.lock_wait()  # this request waited for another process's computation
        if isinstance(got, Found):
            entry = got.value
            return Shared(
                entry.status, tuple(entry.headers), entry.body, entry.etag, entry.created, entry.ttl
            )
        if isinstance(got, NoLease):
            if got.reason == "timeout":
                self.stats.lock_timeout()
            if got.reason == "unavailable":
                if not self.down and isinstance(got.error, BackendUnavailable):
                    self._failed("lock", got.error)  # a lock manager call: count it here
                self.down = True
                return await compute()  # nothing stored: its begin finds the request down
            if fallback is not None:
                return _STALE  # the holder is slow: serve the stale entry meanwhile
            return await compute()  # never stored: someone else holds the lock
        async with got:
            computed = await compute()
            if await self.store(computed, computed.ttl, got):
                computed = computed._replace(stored=True)
            if self.unreachable:
                got.forget()  # the backend is unavailable: the lock expires by itself
        return computed

    async def store_background_refresh(self, computed: Computed) -> bool:
        """The background refresh's store (it holds the lease already), for its ttl."""
        if computed.failed:
            return False
        return await self.store(computed, computed.ttl)
