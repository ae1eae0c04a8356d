"""The path of one request through the cache, stage by stage::

    plan -> refuse -> key -> lookup -> fresh  -> answer (hit, 304)
                                    -> stale  -> answer (STALE) + one background refresh
                                    -> miss   -> compute once -> store -> answer (MISS)

- plan (``plan.RoutePlans``): the route's keyer, rules, renderer and counters, built on
  its first request;
- refuse (``rules.refuse``): BYPASS / NO_CACHE requests call the endpoint and say why in
  X-Cache-Status and Cache-Status;
- key (``RouteKeyer.key``): the key and the fingerprint of what identifies the response;
  from here on the request is one :class:`~context.CachedRequest`;
- lookup (``Flow.fetch`` and ``Flow.decode``): one backend call; an error, unreadable,
  foreign or expired bytes are a miss (and the store that follows overwrites them);
- fresh: the stored status, headers and body, sent as they are (``answer.hit``: no
  validation, no JSON), and one background refresh when it is due;
- stale: inside stale-while-revalidate, served while one background refresh runs;
- miss (``Flow.miss``): one computation (``compute``) for all concurrent requests of the
  key, in this process and across processes, stored unless the rules say it must not be.

On a route whose dependencies have no effects (``hitfirst.blocker``), :meth:`Pipeline.answer_first`
runs plan, refuse, key and lookup before FastAPI validates anything; a fresh hit is sent from
there, and anything else goes on to FastAPI and to :meth:`Pipeline.respond`, which reuses that
lookup instead of fetching again.

The cache never turns a request into an error: everything it does can fail into a plain
call of the endpoint. Errors of the endpoint itself (and of its response model) propagate
as they would without the cache.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate import metrics
from fastapi_cachemate._kernels import Entry, kernels
from fastapi_cachemate._request import answer
from fastapi_cachemate._request.compute import NO_HEADERS, computation
from fastapi_cachemate._request.context import CachedEndpoint, CachedRequest, Lookup
from fastapi_cachemate._request.plan import RoutePlan, RoutePlans
from fastapi_cachemate._request.rules import (
    NOT_BUFFERED,
    REFUSED_AUTHORIZATION,
    REFUSED_KEY,
    Refusal,
    refuse,
)
from fastapi_cachemate._request.status import (
    CACHE_STATUS_HEADER,
    STALE,
    STALE_IF_ERROR,
    STATUS_HEADER,
    CacheStatuses,
    x_cache_status,
)
from fastapi_cachemate._route import hitfirst
from fastapi_cachemate._route.render import merge_returned
from fastapi_cachemate._runtime.flow import Computed, Flow, Shared
from fastapi_cachemate._runtime.reentry import RefreshTicket, refresh_ticket
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.metrics import NotStored
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = ["Pipeline"]

logger = logging.getLogger(__name__)


_NEAR = (b"detail=near",)  # Cache-Status parameter of a hit answered by the near cache


class _Unconfigured:
    logged = False


class Pipeline:
    """The cache in front of one decorated endpoint."""

    __slots__ = ("_plans", "endpoint")

    def __init__(self, endpoint: CachedEndpoint) -> None:
        self.endpoint = endpoint
        self._plans = RoutePlans(endpoint)

    async def respond(
        self,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The endpoint's answer to this request, from the cache when it may be."""
        endpoint = self.endpoint
        if not CacheSetup.is_configured():
            _log_unconfigured()
            return await endpoint.call(args, kwargs)
        settings = CacheSetup.settings()
        plan = self._plans.for_request(request, CacheSetup.prefix(), self.answer_first)
        refused = refuse(
            request, None if plan is None else plan.rules, CacheSetup.bypass(), settings
        )
        if refused is not None:
            stats = self._plans.stats(plan)
            return await _uncached(endpoint, refused, stats, sub_response, args, kwargs)
        assert plan is not None
        req = self._keyed(plan, request, sub_response, args, kwargs, settings)
        if req is None:
            return await _uncached(endpoint, REFUSED_KEY, plan.stats, sub_response, args, kwargs)
        ticket = refresh_ticket(request.scope)
        if ticket is not None:  # a background refresh re-entering the app (see reentry)
            return await _compute_for_background_refresh(endpoint, req, ticket)
        lookup = await _lookup(req)
        entry = lookup.entry
        fwd = b"uri-miss" if lookup.missing else b"miss"
        if entry is not None:
            if entry.state == kernels.FRESH:
                hit = _fresh_hit(req, lookup)
                if hit is not None:
                    return hit
                fwd = b"request"  # client_cache_control="revalidate": the shared computation
            elif req.flow.servable_stale(entry):
                plan.stats.stale()
                req.flow.start_background_refresh(entry, request.scope)
                return answer.stale(entry, request, sub_response, x_cache_status=STALE)
            else:
                fwd = b"stale"
        return await _miss(endpoint, req, entry, fwd)

    async def answer_first(self, request: Request) -> Response | None:
        """The hit-first path (``hitfirst``), before FastAPI's handler: the response of a
        fresh hit, or None after leaving the lookup in the scope for :meth:`respond`.

        The same stages as :meth:`respond`; anything it does not answer here (refused,
        unkeyable, miss, stale, revalidation) is left to :meth:`respond`.
        """
        if not CacheSetup.is_configured():
            return None
        plan = self._plans.for_request(request, CacheSetup.prefix(), self.answer_first)
        if plan is None or not plan.hit_first or hitfirst.overridden(plan.route):
            return None
        settings = CacheSetup.settings()
        if (
            refuse(request, plan.rules, CacheSetup.bypass(), settings) is not None
            or refresh_ticket(request.scope) is not None
        ):
            return None
        req = self._keyed(plan, request, NO_HEADERS, (), {}, settings)
        if req is None:
            return None
        lookup = await _lookup(req)
        entry = lookup.entry
        if entry is not None and entry.state == kernels.FRESH:
            hit = _fresh_hit(req, lookup)
            if hit is not None:
                return hit
        request.scope[hitfirst.LOOKUP_SCOPE_KEY] = lookup
        return None

    def _keyed(
        self,
        plan: RoutePlan,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        settings: BaseCacheSettings,
    ) -> CachedRequest | None:
        """The key stage: the request with its key and its backend calls, or None when its
        key cannot be built (answered as BYPASS)."""
        assert plan.keyer is not None
        assert plan.rules is not None
        keyed_request = plan.rules.key_request(request)
        try:
            key, fingerprint = plan.keyer.key(keyed_request)
        except (ValueError, UnicodeError) as exc:
            logger.debug(
                "cache_response: request %s not keyed (%s): bypassed", request.url.path, exc
            )
            return None
        endpoint = self.endpoint
        swr, sie = endpoint.stale_while_revalidate, endpoint.stale_if_error
        flow = Flow(
            CacheSetup.runtime(),
            CacheSetup.backend(),
            CacheSetup.lock_manager(),
            settings,
            key,
            stale_while_revalidate=settings.stale_while_revalidate if swr is None else swr,
            stale_if_error=settings.stale_if_error if sie is None else sie,
            stats=plan.stats,
        )
        return CachedRequest(request, sub_response, args, kwargs, plan, key, fingerprint, flow)


# --- the stages -----------------------------------------------------------------------------


async def _lookup(req: CachedRequest) -> Lookup:
    """The backend's entry at the request's key: the hit-first path's lookup when it made
    one for this key (one backend call per request), else a fetch."""
    flow = req.flow
    scope: MutableMapping[str, Any] = req.request.scope
    earlier = scope.pop(hitfirst.LOOKUP_SCOPE_KEY, None)
    if isinstance(earlier, Lookup) and earlier.key == req.key:
        flow.down = earlier.down
        return earlier
    raw = await flow.fetch()
    entry = flow.decode(raw, req.fingerprint)
    return Lookup(req.key, raw is None, entry, flow.down, flow.from_near)


def _fresh_hit(req: CachedRequest, lookup: Lookup) -> Response | None:
    """The answer for a FRESH entry, and one background refresh when it is due; None
    when the client asks for a newer one (``client_cache_control="revalidate"``).
    A near-cache copy says so: ``Cache-Status: ...; hit; ttl=N; detail=near``."""
    entry = lookup.entry
    assert entry is not None
    plan = req.plan
    assert plan.rules is not None
    if plan.rules.revalidation_due(req.request, entry, req.settings):
        return None
    plan.stats.hit()
    flow = req.flow
    if flow.early_refresh_due(entry):
        flow.start_background_refresh(entry, req.request.scope)
    return answer.hit(entry, req.request, req.sub_response, params=_NEAR if lookup.near else ())


async def _miss(
    endpoint: CachedEndpoint, req: CachedRequest, previous: Entry | None, fwd: bytes
) -> Any:
    """One computation for all concurrent requests of the key (``Flow.miss``)."""
    req.plan.stats.miss()
    flow = req.flow
    outcome = await flow.miss(
        computation(endpoint, req), previous, req.fingerprint, revalidate=fwd == b"request"
    )
    if outcome.kind == "stale":
        assert previous is not None
        return answer.stale(
            previous,
            req.request,
            req.sub_response,
            x_cache_status=STALE_IF_ERROR,
            detail=b"stale-if-error",
        )
    if outcome.kind == "shared":
        assert outcome.shared is not None
        shared = _SharedEntry.of(outcome.shared, flow.now())
        return answer.collapsed(shared, req.request, req.sub_response, fwd=fwd)
    assert outcome.computed is not None
    return _answer_computed(req, outcome.computed, fwd, stored=outcome.computed.stored)


async def _compute_for_background_refresh(
    endpoint: CachedEndpoint, req: CachedRequest, ticket: RefreshTicket
) -> Any:
    """The request a background refresh sends the app: compute and store (unless it
    failed); no lookup, no lock (the refresh holds it)."""
    computed = await computation(endpoint, req)()
    stored = False
    if ticket.key == req.key:
        ticket.stored = stored = await req.flow.store_background_refresh(computed)
    return _answer_computed(req, computed, b"stale", stored=stored)


def _answer_computed(req: CachedRequest, computed: Computed, fwd: bytes, *, stored: bool) -> Any:
    """This request's own computation, with the HTTP headers of a miss."""
    own = req.computation
    assert own is not None
    if own.rendered is None:  # streaming or file: passed through, never stored
        result = own.result
        result.raw_headers.append((STATUS_HEADER, x_cache_status(CacheStatuses.CACHE_NOT)))
        result.raw_headers.append((CACHE_STATUS_HEADER, NOT_BUFFERED.cache_status))
        return result
    assert own.verdict is not None
    return answer.miss(
        own.rendered,
        req.request,
        own.verdict,
        stored=stored and computed.blob is not None,
        fwd=fwd,
        dependency_headers=own.dependency_headers,
    )


async def _uncached(
    endpoint: CachedEndpoint,
    refused: Refusal,
    stats: metrics.EndpointStats,
    sub_response: Response,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A refused request: the endpoint's own answer, with why in both status headers."""
    if refused.status is CacheStatuses.CACHE_BYPASS:
        stats.bypass()
    else:
        stats.no_cache()
        if refused is REFUSED_AUTHORIZATION:
            metrics.not_stored(stats, NotStored.AUTHORIZATION)
    result = await endpoint.call(args, kwargs)
    added = [
        (STATUS_HEADER, x_cache_status(refused.status)),
        (CACHE_STATUS_HEADER, refused.cache_status),
    ]
    if not isinstance(result, Response):
        sub_response.raw_headers.extend(added)
        return result  # FastAPI renders it and merges sub_response's headers
    merged = merge_returned(result, sub_response)
    target = result if merged is None else merged
    target.raw_headers.extend(added)
    return target


class _SharedEntry(NamedTuple):
    """A computation shared by another request, as ``answer.collapsed`` reads it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes
    age: float
    remaining: float

    @classmethod
    def of(cls, shared: Shared, now: float) -> _SharedEntry:
        return cls(
            shared.status,
            list(shared.headers),
            shared.body,
            shared.etag,
            max(0.0, now - shared.created),
            shared.created + shared.ttl - now,
        )


def _log_unconfigured() -> None:
    if not _Unconfigured.logged:
        _Unconfigured.logged = True
        logger.warning(
            "cache_response: CacheSetup.setup() has not been called (or the cache is closed): "
            "endpoints are answered without the cache"
        )
