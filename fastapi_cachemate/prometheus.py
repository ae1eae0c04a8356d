"""Prometheus exposition of the cache counters (optional: needs ``prometheus-client``).

Quick start::

    from fastapi_cachemate.prometheus import metrics_route
    metrics_route(app)            # GET /metrics, text exposition format

Metrics (every one labelled ``endpoint``, the route's path template)::

    fastapi_cachemate_requests_total{result="hit|miss|stale|bypass|no_cache"}   counter
    fastapi_cachemate_stored_total                                              counter
    fastapi_cachemate_not_stored_total{reason="status|set_cookie|no_store|..."} counter
    fastapi_cachemate_refreshes_total, ..._refresh_failures_total               counter
    fastapi_cachemate_lock_waits_total, ..._lock_timeouts_total                 counter
    fastapi_cachemate_backend_errors_total                                      counter
    fastapi_cachemate_bytes_stored_total{stage="raw|compressed"}                counter
    fastapi_cachemate_breaker_open        (no endpoint label; 1 while open)     gauge
    fastapi_cachemate_breaker_state       (0 closed, 1 open, 2 half-open)       gauge
    fastapi_cachemate_near_events_total{event="hits|fills|invalidations|flushes|races"}
                                          (no endpoint label; the near cache)   counter

Two modes, chosen by prometheus_client's own switch, the ``PROMETHEUS_MULTIPROC_DIR``
environment variable:

- **One process** (no ``PROMETHEUS_MULTIPROC_DIR``): ``CacheCollector`` is registered in the
  registry (``prometheus_client.REGISTRY`` by default) and reads the native counters at each
  scrape: exact, and free between scrapes.
- **Several workers** (``PROMETHEUS_MULTIPROC_DIR`` set, e.g. ``uvicorn --workers 4`` or
  gunicorn): a scrape reaches one worker, and a collector only sees its own process. So each
  worker copies its native counters into prometheus_client ``Counter`` / ``Gauge`` objects,
  which write the multiprocess files that ``MultiProcessCollector`` sums: ``MultiprocessSync``
  adds the growth of each counter since its last copy. It copies on every scrape it serves,
  from a daemon thread every ``interval`` seconds (5 by default), at ``CacheSetup.close()``
  (the app's shutdown) and at exit; so a scrape
  sees its own worker exactly and every other worker at most ``interval`` seconds late. The
  breaker gauges use ``multiprocess_mode="livemax"``: 1 if any live worker's breaker is
  open (call ``prometheus_client.multiprocess.mark_process_dead(pid)`` from gunicorn's
  ``child_exit`` hook to drop a dead worker's gauges, as prometheus_client documents).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any, Final

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastapi_cachemate.prometheus needs the prometheus-client package: "
        "pip install prometheus-client"
    ) from exc

from fastapi_cachemate import metrics
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.core.backends.near import NEAR_COUNTERS

__all__ = [
    "METRIC_NAMES",
    "CacheCollector",
    "MultiprocessSync",
    "counters_from_exposition",
    "exposition",
    "metrics_route",
    "metrics_router",
    "multiprocess_mode",
    "multiprocess_sync",
    "near_from_exposition",
    "register_collector",
]

logger = logging.getLogger(__name__)

NAMESPACE: Final = "fastapi_cachemate"

# (name without _total, help, extra label or None, {label value: native counter})
_COUNTERS: Final[tuple[tuple[str, str, str | None, dict[str, str]], ...]] = (
    (
        "requests",
        "Requests to cached endpoints, by how the cache answered them.",
        "result",
        {
            "hit": "hits",
            "miss": "misses",
            "stale": "stale_served",
            "bypass": "bypass",
            "no_cache": "no_cache",
        },
    ),
    ("stored", "Responses stored in the cache.", None, {"": "stored"}),
    (
        "not_stored",
        "Responses not stored, by reason.",
        "reason",
        {reason: f"not_stored_{reason}" for reason in metrics.NOT_STORED_REASONS},
    ),
    ("refreshes", "Background refreshes that stored a new entry.", None, {"": "refreshes"}),
    ("refresh_failures", "Background refreshes that failed.", None, {"": "refresh_failures"}),
    ("lock_waits", "Requests that waited for another's computation.", None, {"": "lock_waits"}),
    (
        "lock_timeouts",
        "Waits for another's computation that timed out.",
        None,
        {"": "lock_timeouts"},
    ),
    ("backend_errors", "Failed backend calls.", None, {"": "backend_errors"}),
    (
        "bytes_stored",
        "Bytes stored: response bodies (raw) and the entries written (compressed).",
        "stage",
        {"raw": "bytes_before_compression", "compressed": "bytes_after_compression"},
    ),
)
_BREAKER_OPEN_HELP: Final = "1 while the backend circuit breaker is open, else 0."
_NEAR_HELP: Final = (
    "Near cache events: hits answered from process memory, copies made (fills), copies "
    "evicted by Redis's invalidations, whole flushes, GET replies dropped by the race rule."
)
_NEAR_NAME: Final = "near_events"
#: label value -> the near counter (``near_hits`` -> ``hits``...)
_NEAR_EVENTS: Final = {name.removeprefix("near_"): name for name in NEAR_COUNTERS}
_BREAKER_STATE_HELP: Final = "Backend circuit breaker: 0 closed, 1 open, 2 half-open."

#: every metric family name, as the text format's ``# TYPE`` lines give them
METRIC_NAMES: Final[tuple[str, ...]] = (
    *(f"{NAMESPACE}_{name}" for name, _, _, _ in _COUNTERS),
    f"{NAMESPACE}_breaker_open",
    f"{NAMESPACE}_breaker_state",
    f"{NAMESPACE}_{_NEAR_NAME}",
)


def multiprocess_mode() -> bool:
    """Whether prometheus_client runs in multiprocess mode in this process."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def _breaker_gauges(state: str) -> tuple[int, int]:
    return int(state == "open"), metrics.BREAKER_STATES.index(state)


class CacheCollector:
    """A prometheus_client collector reading this process's native counters at each scrape."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        snap = metrics.snapshot()
        endpoints = snap["endpoints"]
        for name, help_text, label, series in _COUNTERS:
            labels = ["endpoint"] if label is None else ["endpoint", label]
            family = CounterMetricFamily(f"{self.namespace}_{name}", help_text, labels=labels)
            for endpoint, counts in endpoints.items():
                for value_label, counter in series.items():
                    values = [endpoint] if label is None else [endpoint, value_label]
                    family.add_metric(values, counts[counter])
            yield family
        is_open, state = _breaker_gauges(snap["breaker"])
        yield GaugeMetricFamily(f"{self.namespace}_breaker_open", _BREAKER_OPEN_HELP, is_open)
        yield GaugeMetricFamily(f"{self.namespace}_breaker_state", _BREAKER_STATE_HELP, state)
        near = CounterMetricFamily(f"{self.namespace}_{_NEAR_NAME}", _NEAR_HELP, labels=["event"])
        for event, counter in _NEAR_EVENTS.items():
            near.add_metric([event], snap["near"][counter])
        yield near


_registered: list[CollectorRegistry] = []
_lock = threading.Lock()


def register_collector(registry: CollectorRegistry | None = None) -> CacheCollector | None:
    """Register ``CacheCollector`` in ``registry`` (default ``prometheus_client.REGISTRY``)
    once; returns it, or None when this registry already has it."""
    target = prometheus_client.REGISTRY if registry is None else registry
    with _lock:
        if any(r is target for r in _registered):
            return None
        collector = CacheCollector()
        target.register(collector)
        _registered.append(target)
        return collector


class MultiprocessSync:
    """Copies the native counters into prometheus_client multiprocess metrics (see module doc).

    ``sync()`` is safe to call from any thread; ``start()`` runs it every ``interval``
    seconds from a daemon thread (restarted in a forked child) and once at exit. One per
    process: get it from ``multiprocess_sync()``.
    """

    def __init__(self, interval: float = 5.0, namespace: str = NAMESPACE) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self.interval = interval
        self._counters: list[tuple[Counter, str | None, dict[str, str]]] = []
        for name, help_text, label, series in _COUNTERS:
            labels = ["endpoint"] if label is None else ["endpoint", label]
            counter = Counter(f"{namespace}_{name}", help_text, labels, registry=None)
            self._counters.append((counter, label, series))
        self._breaker_open = Gauge(
            f"{namespace}_breaker_open",
            _BREAKER_OPEN_HELP,
            registry=None,
            multiprocess_mode="livemax",
        )
        self._breaker_state = Gauge(
            f"{namespace}_breaker_state",
            _BREAKER_STATE_HELP,
            registry=None,
            multiprocess_mode="livemax",
        )
        self._near = Counter(f"{namespace}_{_NEAR_NAME}", _NEAR_HELP, ["event"], registry=None)
        self._last: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._atexit = False

    def sync(self) -> None:
        """Add to the prometheus_client counters what the native ones gained since the last
        sync (all of a counter's value when it went down: a reset)."""
        with self._lock:
            snap = metrics.snapshot()
            for endpoint, counts in snap["endpoints"].items():
                for counter, label, series in self._counters:
                    for value_label, native in series.items():
                        value = counts[native]
                        last = self._last.get((endpoint, native))
                        delta = value if last is None or value < last else value - last
                        if delta or last is None:  # a new series is exported at 0 too
                            child = (
                                counter.labels(endpoint)
                                if label is None
                                else counter.labels(endpoint, value_label)
                            )
                            child.inc(delta)
                        self._last[(endpoint, native)] = value
            is_open, state = _breaker_gauges(snap["breaker"])
            self._breaker_open.set(is_open)
            self._breaker_state.set(state)
            for event, native in _NEAR_EVENTS.items():
                value = snap["near"][native]
                last = self._last.get(("", native))
                delta = value if last is None or value < last else value - last
                self._near.labels(event).inc(delta)
                self._last[("", native)] = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except (OSError, ValueError) as exc:  # a multiprocess file gone or unwritable
                logger.warning("prometheus: sync of the cache counters failed: %s", exc)

    def start(self) -> None:
        """Sync every ``interval`` seconds from a daemon thread, and at exit."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="fastapi-cachemate-prometheus-sync", daemon=True
            )
            self._thread.start()
            if not self._atexit:
                self._atexit = True
                atexit.register(self.sync)

    def stop(self) -> None:
        """Stop the thread (then one last sync)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None
        self.sync()

    def _after_fork(self) -> None:
        # The thread did not survive the fork. The child inherits the native counters and
        # _last: what the parent synced is in the parent's files already, so only the
        # child's growth goes into the child's (per-pid) files.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        was_running = self._thread is not None
        self._thread = None
        if was_running:
            self.start()


_sync: MultiprocessSync | None = None


def multiprocess_sync(interval: float = 5.0) -> MultiprocessSync:
    """This process's ``MultiprocessSync`` (created on the first call with ``interval``).

    Use this one rather than a new instance: each instance copies the counters from zero, so
    two of them in one process would count everything twice.
    """
    global _sync
    if _sync is None:
        _sync = MultiprocessSync(interval)
        os.register_at_fork(after_in_child=_sync._after_fork)
    return _sync


def exposition(registry: CollectorRegistry | None = None) -> bytes:
    """The text exposition this process answers a scrape with (what the route returns).

    Multiprocess mode: syncs this worker, then reads every worker's files (plus ``registry``'s
    own collectors when one is given). One process: ``registry`` (default ``REGISTRY``), with
    ``CacheCollector`` registered in it on first use.
    """
    if multiprocess_mode():
        multiprocess_sync().sync()
        target = CollectorRegistry()
        MultiProcessCollector(target)  # type: ignore[no-untyped-call]
        return bytes(prometheus_client.generate_latest(target))
    register_collector(registry)
    target = prometheus_client.REGISTRY if registry is None else registry
    return bytes(prometheus_client.generate_latest(target))


def counters_from_exposition(text: str) -> tuple[dict[str, dict[str, int]], str | None]:
    """The inverse of the exposition: ({endpoint: {counter: int}}, breaker state or None)
    from the text of a metrics route (other metrics in it are ignored)."""
    from prometheus_client.parser import text_string_to_metric_families

    by_name = {f"{NAMESPACE}_{name}": (label, series) for name, _, label, series in _COUNTERS}
    endpoints: dict[str, dict[str, int]] = {}
    breaker: str | None = None
    for family in text_string_to_metric_families(text):
        if family.name == f"{NAMESPACE}_breaker_state":
            for sample in family.samples:
                index = int(sample.value)
                if 0 <= index < len(metrics.BREAKER_STATES):
                    breaker = metrics.BREAKER_STATES[index]
            continue
        found = by_name.get(family.name)
        if found is None:
            continue
        label, series = found
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # _created samples
            endpoint = sample.labels.get("endpoint")
            counter = series.get("" if label is None else sample.labels.get(label, ""))
            if endpoint is None or counter is None:
                continue
            counts = endpoints.setdefault(endpoint, dict.fromkeys(metrics.STATS_COUNTERS, 0))
            counts[counter] += int(sample.value)
            if counter.startswith("not_stored_"):
                counts["not_stored"] += int(sample.value)
    return endpoints, breaker


def near_from_exposition(text: str) -> dict[str, int]:
    """The near cache's counters (``near_hits``...) summed over the workers of a metrics
    route's text; empty when it has none."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name != f"{NAMESPACE}_{_NEAR_NAME}":
            continue
        for sample in family.samples:
            counter = _NEAR_EVENTS.get(sample.labels.get("event", ""))
            if sample.name.endswith("_total") and counter is not None:
                counts[counter] = counts.get(counter, 0) + int(sample.value)
    return counts


def _handler(registry: CollectorRegistry | None) -> Any:
    from fastapi.responses import Response

    def metrics_endpoint() -> Response:
        return Response(exposition(registry), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return metrics_endpoint


async def _final_sync() -> None:
    if _sync is not None:
        _sync.sync()


def _prepare(registry: CollectorRegistry | None, interval: float) -> None:
    if multiprocess_mode():
        multiprocess_sync(interval).start()
        # the app's shutdown (CacheSetup.close() in its lifespan) syncs a last time
        CacheSetup.add_close_callback(_final_sync)
    else:
        register_collector(registry)


def metrics_router(
    path: str = "/metrics",
    *,
    registry: CollectorRegistry | None = None,
    interval: float = 5.0,
    include_in_schema: bool = False,
) -> Any:
    """An ``APIRouter`` with ``GET path`` serving ``exposition(registry)``.

    In multiprocess mode this also starts this worker's sync thread (every ``interval`` s).
    """
    from fastapi import APIRouter

    _prepare(registry, interval)
    router = APIRouter()
    router.add_api_route(
        path,
        _handler(registry),
        methods=["GET"],
        include_in_schema=include_in_schema,
        name="fastapi_cachemate_metrics",
    )
    return router


def metrics_route(
    app: Any,
    path: str = "/metrics",
    *,
    registry: CollectorRegistry | None = None,
    interval: float = 5.0,
    include_in_schema: bool = False,
) -> None:
    """Add ``GET path`` to a FastAPI app (see ``metrics_router``)."""
    app.include_router(
        metrics_router(
            path, registry=registry, interval=interval, include_in_schema=include_in_schema
        )
    )
