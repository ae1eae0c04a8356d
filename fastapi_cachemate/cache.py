"""``cache_response`` and ``is_bypass`` (the seed's import path: ``fastapi_cachemate.cache``).

The decorator rewrites the endpoint's signature so that FastAPI injects a ``Request`` and a
``Response`` (the endpoint's own parameters of those types are reused when it declares
them), and wraps the endpoint in one pipeline per request::

    policy -> key -> lookup -> decode -> hit  -> Response from the stored bytes
                                      -> miss -> call -> render -> store -> Response

- policy (``_policy.refusal``, then ``_http.RouteHTTP.refuse``): BYPASS / NO_CACHE
  requests call the endpoint and say why in X-Cache-Status and Cache-Status;
- key: the route's ``RouteKeyer`` (built once per route from FastAPI's dependant tree)
  gives the key and an 8-byte fingerprint of what identifies the response;
- lookup: one ``Backend.fetch``; a backend error is a miss (logged);
- decode: ``kernels.read_entry`` with the fingerprint; malformed, foreign or expired bytes
  are a miss, and the store that follows overwrites them;
- hit: the stored status, headers and body, sent as they are (no validation, no JSON),
  with the HTTP headers of ``_http.RouteHTTP.hit`` (Age, max-age, Cache-Status; a 304);
- miss: the endpoint (a plain ``def`` in the threadpool, as FastAPI does), rendered as
  FastAPI would (``_render``), stored through ``kernels.write_entry`` unless it must not
  be (``_http.RouteHTTP.verdict``: statuses, Set-Cookie, no-store/private, Vary: *, ...).

On a route whose dependencies have no effects (``_hitfirst.blocker``), the route's ASGI app
is wrapped so that ``answer_first`` (policy, key, lookup, decode, hit: the same steps) runs
before FastAPI validates anything; a fresh hit is sent from there, and anything else goes on
to FastAPI and to ``respond``, which reuses that lookup instead of fetching again.

The cache never turns a request into an error: everything it does can fail into a plain
call of the endpoint. Errors of the endpoint itself (and of its response model) propagate
as they would without the cache.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar, overload

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate import _hitfirst, _log, metrics
from fastapi_cachemate._flow import Computed, Flow, Shared
from fastapi_cachemate._http import (
    CACHE_STATUS_HEADER,
    REFUSED_AUTHORIZATION,
    RouteHTTP,
    StatusTTLs,
    Verdict,
)
from fastapi_cachemate._introspect import is_subclass
from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._keyspec import RouteKeyer, check_endpoint, effective_route, parse_vary
from fastapi_cachemate._policy import CacheStatuses, Refusal, is_bypass, refusal
from fastapi_cachemate._refresh import RefreshTicket, refresh_ticket
from fastapi_cachemate._render import RouteRenderer, merge_returned, without_headers
from fastapi_cachemate._response import raw_response
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.core.types import Backend, ComputeTicket
from fastapi_cachemate.invalidation import (
    TagTemplates,
    parameter_names,
    register_app,
    register_cached_endpoint,
)
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = ["CacheStatuses", "cache_response", "is_bypass"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_REQUEST_PARAM = "__dependencies_request__"
_RESPONSE_PARAM = "__dependencies_response__"
_STATUS_HEADER = b"x-cache-status"
_STATUS_VALUES = {status: status.value.encode("ascii") for status in CacheStatuses}
# X-Cache-Status values beyond the seed's (CacheStatuses is issue 4's: not extended here)
_STALE = b"STALE"  # past its ttl, inside stale_while_revalidate: one refresh runs
_STALE_IF_ERROR = b"STALE_IF_ERROR"  # the endpoint failed: the stale entry stands in
_COMPRESSION = {
    "all": kernels.COMPRESS_ALL,
    "smart": kernels.COMPRESS_SMART,
    "disabled": kernels.COMPRESS_DISABLED,
}
_REFUSED_ROUTE = Refusal.of(CacheStatuses.CACHE_NOT, b"bypass", b"unkeyable-route")
_REFUSED_KEY = Refusal.of(CacheStatuses.CACHE_BYPASS, b"bypass", b"unkeyable-request")
_NOT_BUFFERED = Refusal.of(CacheStatuses.CACHE_NOT, b"uri-miss", b"not-buffered")
_NEAR = (b"detail=near",)  # Cache-Status parameter of a hit answered by the near cache
_NO_HEADERS = raw_response(200, [], b"")  # merge_returned's injected response: adds nothing


class _CacheDecorator(Protocol):
    @overload
    def __call__(self, func: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, Awaitable[R]]: ...


def cache_response(
    ttl: float = 60,
    *,
    vary: Sequence[str] = (),
    tags: Sequence[str] = (),
    statuses: Mapping[int | str, float] | Iterable[int | str] | None = None,
    public: bool = False,
    stale_while_revalidate: float | None = None,
    stale_if_error: float | None = None,
) -> _CacheDecorator:
    """Cache the endpoint's rendered response for ttl seconds.

    :param ttl: seconds an entry is fresh (an int or a float, > 0).
    :param vary: request header names whose values enter the key (and the Vary header),
        or ``"cookie:<name>"``.
    :param tags: tags of the entries, templated from the endpoint's parameters
        (``"blog:{blog_id}"``); ``invalidate_tags("blog:42")`` drops them.
    :param statuses: the response statuses that are stored: None (2xx except 206, for
        ttl), or the complete list as ``{status: ttl}`` (e.g. ``{200: 300, 301: 3600,
        404: 30}``) or as statuses stored for ttl; ``"2xx"``-style classes are accepted.
    :param public: also cache requests that carry Authorization although the key does
        not hold it (the response is the same for every user).
    :param stale_while_revalidate: seconds past ttl during which the stale entry is served
        while one background refresh recomputes it (None: the setting of that name).
    :param stale_if_error: seconds past ttl during which the stale entry is served when
        the endpoint fails (raises, answers 5xx) (None: the setting of that name).

    Use it under the route decorator (``@app.get(...)`` first, then
    ``@cache_response(ttl=...)``), on ``async def`` or plain ``def`` endpoints.
    """
    ttl = _checked_ttl(ttl)
    vary = _checked_vary(vary)
    templates = TagTemplates(tags)
    http = (StatusTTLs(ttl, statuses), bool(public))
    stale = (
        _checked_seconds("stale_while_revalidate", stale_while_revalidate),
        _checked_seconds("stale_if_error", stale_if_error),
    )

    def decorator(func: Callable[..., Any], /) -> Callable[..., Awaitable[Any]]:
        return _wrap(func, ttl, vary, templates, stale, http)

    return decorator


# --- decoration time ------------------------------------------------------------------------


def _checked_ttl(ttl: object) -> float:
    if callable(ttl):
        raise TypeError(
            "cache_response must be called with its arguments: use @cache_response(ttl=60), "
            "not @cache_response"
        )
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"cache_response(ttl=...) must be a number of seconds, got {ttl!r}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"cache_response(ttl=...) must be a positive number of seconds, got {ttl}")
    return float(ttl)


def _checked_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"cache_response({name}=...) must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"cache_response({name}=...) must be >= 0 seconds, got {value}")
    return float(value)


def _checked_vary(vary: object) -> tuple[str, ...]:
    if isinstance(vary, (str, bytes)) or not isinstance(vary, Sequence):
        raise TypeError(
            "cache_response(vary=...) must be a sequence of header names "
            f"(or 'cookie:<name>'), got {vary!r}"
        )
    checked = tuple(vary)
    parse_vary(checked)  # raises TypeError / ValueError naming the bad item
    return checked


def _checked_endpoint(func: object) -> Callable[..., Any]:
    if not callable(func):
        raise TypeError(f"cache_response(...) decorates a callable endpoint, got {func!r}")
    if inspect.isclass(func):
        raise TypeError(f"cache_response(...) decorates a function, got the class {func!r}")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"cache_response(...) cannot cache {getattr(func, '__qualname__', func)!r}: "
            "a generator endpoint streams its response"
        )
    return func


def _is_coroutine(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    dunder_call = getattr(func, "__call__", None)  # noqa: B004
    return dunder_call is not None and inspect.iscoroutinefunction(dunder_call)


def _signature(func: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(func, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        # Annotations only importable under TYPE_CHECKING: FastAPI resolves them later.
        return inspect.signature(func)


class _Injected(NamedTuple):
    """Where the wrapper finds the Request and the Response among FastAPI's kwargs."""

    request: str
    response: str
    own_request: bool  # the endpoint declares it: pass it on
    own_response: bool
    signature: inspect.Signature  # what FastAPI reads


def _injected(func: Callable[..., Any]) -> _Injected:
    signature = _signature(func)
    request = response = ""
    for param in signature.parameters.values():
        if not request and is_subclass(param.annotation, Request):
            request = param.name
        elif not response and is_subclass(param.annotation, Response):
            response = param.name
    extra: list[inspect.Parameter] = []
    if not request:
        extra.append(
            inspect.Parameter(_REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )
    if not response:
        extra.append(
            inspect.Parameter(_RESPONSE_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
        )
    return _Injected(
        request=request or _REQUEST_PARAM,
        response=response or _RESPONSE_PARAM,
        own_request=bool(request),
        own_response=bool(response),
        signature=_with_parameters(signature, extra),
    )


def _with_parameters(
    signature: inspect.Signature, extra: list[inspect.Parameter]
) -> inspect.Signature:
    """The signature with extra keyword-only parameters (before a **kwargs, if any)."""
    if not extra:
        return signature
    params = list(signature.parameters.values())
    at = len(params)
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        at -= 1
    return signature.replace(parameters=[*params[:at], *extra, *params[at:]])


def _wrap(
    func: object,
    ttl: float,
    vary: tuple[str, ...],
    tags: TagTemplates,
    stale: tuple[float | None, float | None] = (None, None),
    http: tuple[StatusTTLs, bool] | None = None,
) -> Callable[..., Awaitable[Any]]:
    endpoint = _checked_endpoint(func)
    check_endpoint(endpoint)  # what the key cannot cover is an error now, not per request
    tags.check(parameter_names(endpoint), f"cache_response on {endpoint.__qualname__}")
    injected = _injected(endpoint)
    added = tuple(
        name
        for name, own in (
            (injected.request, injected.own_request),
            (injected.response, injected.own_response),
        )
        if not own
    )
    cached = _CachedEndpoint(endpoint, ttl, vary, added, tags, stale, http)

    @functools.wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = _take(kwargs, injected.request, keep=injected.own_request)
        response = _take(kwargs, injected.response, keep=injected.own_response)
        if not isinstance(request, Request) or not isinstance(response, Response):
            # Called directly (a test, another function), not by FastAPI: no request to cache.
            return await cached.call(args, kwargs)
        return await cached.respond(request, response, args, kwargs)

    wrapper.__signature__ = injected.signature  # type: ignore[attr-defined]
    register_cached_endpoint(wrapper, vary=vary, injected=added, tags=tags)
    return wrapper


def _take(kwargs: dict[str, Any], name: str, *, keep: bool) -> Any:
    """An injected argument: left for the endpoint when it declared it, else removed."""
    return kwargs.get(name) if keep else kwargs.pop(name, None)


# --- request time ---------------------------------------------------------------------------


class _Plan(NamedTuple):
    """What one route needs per request, built on its first request."""

    route: Any  # an APIRoute or FastAPI's effective route context (see _plan)
    prefix: str
    keyer: RouteKeyer | None  # None: this route cannot be keyed (logged once), not cached
    renderer: RouteRenderer
    stats: metrics.EndpointStats  # the route's counters (metrics.endpoint_name)
    http: RouteHTTP | None  # None when keyer is None
    hit_first: bool  # hits are answered before FastAPI's handler (_hitfirst)


class _Slot(NamedTuple):
    """Where one request's entry lives: the backend, the settings, its key and fingerprint."""

    backend: Backend
    settings: BaseCacheSettings
    key: bytes
    fingerprint: bytes
    stats: metrics.EndpointStats


class _Unconfigured:
    logged = False


class _CachedEndpoint:
    """One decorated endpoint: its settings, its per-route plans and the pipeline."""

    __slots__ = (
        "_func",
        "_injected",
        "_is_coroutine",
        "_name",
        "_plans",
        "_public",
        "_stale",
        "_statuses",
        "_tags",
        "_vary",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        ttl: float,
        vary: tuple[str, ...],
        injected: tuple[str, ...],
        tags: TagTemplates,
        stale: tuple[float | None, float | None] = (None, None),
        http: tuple[StatusTTLs, bool] | None = None,
    ) -> None:
        self._func = func
        self._tags = tags
        self._is_coroutine = _is_coroutine(func)
        self._name = getattr(func, "__qualname__", repr(func))
        self._vary = vary
        self._injected = injected
        self._stale = stale  # (stale_while_revalidate, stale_if_error); None: the settings'
        self._statuses, self._public = (StatusTTLs(ttl), False) if http is None else http
        self._plans: dict[int, _Plan] = {}

    async def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._is_coroutine:
            return await self._func(*args, **kwargs)
        return await run_in_threadpool(self._func, *args, **kwargs)

    async def respond(
        self,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if not CacheSetup.is_configured():
            _log_unconfigured()
            return await self.call(args, kwargs)
        settings = CacheSetup.settings()
        plan = self._plan(request)
        refused = self._refusal(request, plan, settings)
        if refused is not None:
            return await self._uncached(refused, self._stats(plan), sub_response, args, kwargs)
        assert plan is not None
        assert plan.http is not None
        http = plan.http
        slot = self._slot(plan, settings, request)
        if slot is None:
            return await self._uncached(_REFUSED_KEY, plan.stats, sub_response, args, kwargs)
        flow = self._flow(slot)
        ticket = refresh_ticket(request.scope)
        if ticket is not None:  # a background refresh re-entering the app (see _refresh)
            return await self._refresh(
                plan, slot, flow, ticket, request, sub_response, args, kwargs
            )
        lookup = await _lookup(slot, flow, request.scope)
        entry = lookup.entry
        fwd = b"uri-miss" if lookup.missing else b"miss"
        if entry is not None:
            if entry.state == kernels.FRESH:
                hit = self._fresh_hit(http, slot, flow, lookup, request, sub_response)
                if hit is not None:
                    return hit
                fwd = b"request"  # client_cache_control="revalidate": the shared computation
            elif flow.servable_stale(entry):
                slot.stats.stale()
                flow.spawn_refresh(entry, request.scope)
                return http.stale(entry, request, sub_response, x_cache_status=_STALE)
            else:
                fwd = b"stale"
        return await self._miss(
            plan, slot, flow, entry, request, sub_response, args, kwargs, fwd=fwd
        )

    async def answer_first(self, request: Request) -> Response | None:
        """The hit-first path (``_hitfirst``), before FastAPI's handler: the response of a
        fresh hit, or None after leaving the lookup in the scope for ``respond``.

        The same steps as ``respond``; anything it does not answer here (refused,
        unkeyable, miss, stale, revalidation) is left to ``respond``.
        """
        if not CacheSetup.is_configured():
            return None
        plan = self._plan(request)
        if plan is None or not plan.hit_first or _hitfirst.overridden(plan.route):
            return None
        settings = CacheSetup.settings()
        if (
            self._refusal(request, plan, settings) is not None
            or refresh_ticket(request.scope) is not None
        ):
            return None
        assert plan.http is not None
        slot = self._slot(plan, settings, request)
        if slot is None:
            return None
        flow = self._flow(slot)
        lookup = await _lookup(slot, flow, request.scope)
        entry = lookup.entry
        if entry is not None and entry.state == kernels.FRESH:
            hit = self._fresh_hit(plan.http, slot, flow, lookup, request, _NO_HEADERS)
            if hit is not None:
                return hit
        request.scope[_hitfirst.LOOKUP_SCOPE_KEY] = lookup
        return None

    def _refusal(
        self, request: Request, plan: _Plan | None, settings: BaseCacheSettings
    ) -> Refusal | None:
        """Why this request does not use the cache (None: it does; plan.http is then set)."""
        refused = refusal(request, CacheSetup.bypass(), settings)
        if refused is not None:
            return refused
        if plan is None or plan.keyer is None or plan.http is None:
            return _REFUSED_ROUTE
        return plan.http.refuse(request)  # Authorization, a request body, ...

    def _slot(self, plan: _Plan, settings: BaseCacheSettings, request: Request) -> _Slot | None:
        """Where the request's entry lives; None when its key cannot be built (BYPASS)."""
        assert plan.keyer is not None
        assert plan.http is not None
        keyed = _key(plan.keyer, plan.http.key_request(request))
        if keyed is None:
            return None
        return _Slot(CacheSetup.backend(), settings, *keyed, plan.stats)

    def _fresh_hit(
        self,
        http: RouteHTTP,
        slot: _Slot,
        flow: Flow,
        lookup: _hitfirst.Lookup,
        request: Request,
        sub_response: Response,
    ) -> Response | None:
        """The answer for a FRESH entry, and one background refresh when it is due; None
        when the client asks for a newer one (``client_cache_control="revalidate"``).
        A near-cache copy says so: ``Cache-Status: ...; hit; ttl=N; detail=near``."""
        entry = lookup.entry
        if http.revalidation_due(request, entry, slot.settings):
            return None
        slot.stats.hit()
        if flow.refresh_due(entry):
            flow.spawn_refresh(entry, request.scope)
        return http.hit(entry, request, sub_response, params=_NEAR if lookup.near else ())

    # --- the steps ------------------------------------------------------------------------

    def _flow(self, slot: _Slot) -> Flow:
        settings = slot.settings
        swr, sie = self._stale
        return Flow(
            CacheSetup.runtime(),
            slot.backend,
            CacheSetup.lock_manager(),
            settings,
            slot.key,
            stale_while_revalidate=settings.stale_while_revalidate if swr is None else swr,
            stale_if_error=settings.stale_if_error if sie is None else sie,
            stats=slot.stats,
        )

    def _plan(self, request: Request) -> _Plan | None:
        if not isinstance(request.scope.get("route"), APIRoute):
            return None
        # What FastAPI runs: with an included router's prefix, dependencies and response
        # class (FastAPI 0.165 keeps them out of scope["route"]); one object per inclusion.
        route: Any = effective_route(request.scope)
        prefix = CacheSetup.prefix()
        plan = self._plans.get(id(route))
        if plan is None or plan.route is not route or plan.prefix != prefix:
            stats = metrics.endpoint(metrics.endpoint_name(route))
            keyer = self._keyer(route, prefix)
            http = None if keyer is None else RouteHTTP(keyer, self._statuses, public=self._public)
            hit_first = keyer is not None and self._hit_first(route)
            plan = _Plan(route, prefix, keyer, RouteRenderer(route), stats, http, hit_first)
            self._plans[id(route)] = plan
            register_app(request.app)  # invalidate(endpoint, ...) finds its routes there
        if plan.hit_first and not _hitfirst.installed(route):
            _hitfirst.install(route, self.answer_first)  # on first use, or FastAPI rebuilt it
        return plan

    def _hit_first(self, route: Any) -> bool:
        blocker = _hitfirst.blocker(route.dependant)
        if blocker is not None:
            logger.debug(
                "cache_response: hits of %s (%s) run FastAPI's handler: %s",
                self._name,
                route.path,
                blocker,
            )
        return blocker is None

    def _stats(self, plan: _Plan | None) -> metrics.EndpointStats:
        """The plan's counters, or (a request without an APIRoute) the endpoint's name's."""
        return plan.stats if plan is not None else metrics.endpoint(self._name)

    def _keyer(self, route: Any, prefix: str) -> RouteKeyer | None:
        try:
            return RouteKeyer.for_route(
                route, prefix=prefix, vary=self._vary, injected=self._injected
            )
        except (TypeError, ValueError):
            logger.exception(
                "cache_response: %s (%s) cannot be keyed: it is served uncached",
                self._name,
                route.path,
            )
            return None

    async def _uncached(
        self,
        refused: Refusal,
        stats: metrics.EndpointStats,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if refused.status is CacheStatuses.CACHE_BYPASS:
            stats.bypass()
        else:
            stats.no_cache()
            if refused is REFUSED_AUTHORIZATION:
                stats.not_stored(metrics.REASON_AUTHORIZATION)
        result = await self.call(args, kwargs)
        added = [
            (_STATUS_HEADER, _STATUS_VALUES[refused.status]),
            (CACHE_STATUS_HEADER, refused.cache_status),
        ]
        if not isinstance(result, Response):
            sub_response.raw_headers.extend(added)
            return result  # FastAPI renders it and merges sub_response's headers
        merged = merge_returned(result, sub_response)
        target = result if merged is None else merged
        target.raw_headers.extend(added)
        return target

    async def _miss(
        self,
        plan: _Plan,
        slot: _Slot,
        flow: Flow,
        previous: Any,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        fwd: bytes = b"uri-miss",
    ) -> Any:
        """One computation for all concurrent requests of the key (``Flow.miss``)."""
        assert plan.http is not None
        slot.stats.miss()
        outcome = await flow.miss(
            self._computation(plan, slot, flow, request, sub_response, args, kwargs),
            previous,
            slot.fingerprint,
            revalidate=fwd == b"request",
        )
        if outcome.kind == "stale":
            return plan.http.stale(
                previous,
                request,
                sub_response,
                x_cache_status=_STALE_IF_ERROR,
                detail=b"stale-if-error",
            )
        if outcome.kind == "shared":
            assert outcome.shared is not None
            shared = _SharedEntry.of(outcome.shared, flow.now())
            return plan.http.collapsed(shared, request, sub_response, fwd=fwd)
        assert outcome.computed is not None
        computed = outcome.computed
        return self._answer(plan.http, computed, request, fwd, stored=computed.stored)

    async def _refresh(
        self,
        plan: _Plan,
        slot: _Slot,
        flow: Flow,
        ticket: RefreshTicket,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """A background refresh: compute and store (unless it failed); no lookup, no lock."""
        assert plan.http is not None
        computation = self._computation(plan, slot, flow, request, sub_response, args, kwargs)
        computed = await computation()
        stored = False
        if ticket.key == slot.key:
            ticket.stored = stored = await flow.store_refreshed(computed)
        return self._answer(plan.http, computed, request, b"stale", stored=stored)

    def _answer(
        self, http: RouteHTTP, computed: Computed, request: Request, fwd: bytes, *, stored: bool
    ) -> Any:
        """This request's own computation, with the HTTP headers of a miss."""
        if computed.rendered is None:  # streaming or file: passed through, never stored
            result = computed.result
            result.raw_headers.append((_STATUS_HEADER, _STATUS_VALUES[CacheStatuses.CACHE_NOT]))
            result.raw_headers.append((CACHE_STATUS_HEADER, _NOT_BUFFERED.cache_status))
            return result
        rendered: Response = computed.rendered
        verdict, dependency_headers = computed.http
        return http.miss(
            rendered,
            request,
            verdict,
            stored=stored and computed.blob is not None,
            fwd=fwd,
            dependency_headers=dependency_headers,
        )

    def _computation(
        self,
        plan: _Plan,
        slot: _Slot,
        flow: Flow,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Callable[[], Awaitable[Computed]]:
        """This request's computation: call, render, and the entry it would store."""
        # Headers already on the injected response were set by this request's dependencies:
        # they run on every request, so they are not part of the entry.
        dependency_headers = list(sub_response.raw_headers)
        http = plan.http
        assert http is not None
        stats = slot.stats

        async def compute() -> Computed:
            # Before computing: the key's generation (an invalidation from now on fences this
            # computation out) and its tag registrations (docs/keys-and-invalidation.md).
            ticket = await self._begin(slot, flow, kwargs)
            try:
                result, rendered, compute_ms = await self._compute(
                    plan, request, sub_response, args, kwargs
                )
            except Exception as exc:  # the endpoint's own error: it propagates, nothing stored
                stats.not_stored(_raised_reason(exc))
                raise
            if rendered is None:  # streaming or file: passed through, never stored
                stats.not_stored(metrics.REASON_STREAMING)
                return Computed(result, None, None, None, failed=False)
            stored_headers = without_headers(rendered.raw_headers, dependency_headers)
            status = rendered.status_code
            verdict = http.verdict(request, status, stored_headers, rendered.body)
            answer = (verdict, dependency_headers)
            if not verdict.storable:
                # Not shareable: the waiters are released at once and compute for themselves
                # (this response may carry one client's cookie or data).
                reason = verdict.reason or ""
                stats.not_stored(metrics.reason_index(reason))
                logger.debug(
                    "cache: response for %r not stored (%s)",
                    slot.key,
                    reason,
                    extra=_log.fields(key=slot.key, endpoint=stats.name, reason=reason),
                )
                return Computed(result, rendered, None, None, status >= 500, http=answer)
            stored_headers.extend(verdict.added)
            created = flow.now()
            shared = Shared(
                status,
                tuple(stored_headers),
                bytes(rendered.body),
                verdict.etag,
                created,
                verdict.ttl,
            )
            if ticket is None:  # tags not rendered or the backend failed: served, not stored
                stats.not_stored(metrics.REASON_ERROR)
                return Computed(result, rendered, None, shared, False, http=answer)
            blob = _encode(slot, rendered, stored_headers, compute_ms, flow, created, verdict)
            return Computed(result, rendered, blob, shared, False, ticket, answer, verdict.ttl)

        return compute

    async def _begin(self, slot: _Slot, flow: Flow, kwargs: dict[str, Any]) -> ComputeTicket | None:
        """The ticket to store with, or None: the response is then not stored (its tags
        cannot be rendered, or the backend is unavailable)."""
        try:
            tags = self._tags.render(kwargs) if self._tags else []
        except (KeyError, AttributeError, IndexError, ValueError, TypeError) as exc:
            logger.warning("cache: tags of %s not rendered (%s): not stored", self._name, exc)
            return None
        return await flow.begin(tags, self._statuses.longest())

    async def _compute(
        self,
        plan: _Plan,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Response | None, float]:
        """(what the endpoint returned, its rendering or None, milliseconds both took)."""
        started = time.perf_counter()
        try:
            result = await self.call(args, kwargs)
        except HTTPException as exc:
            # A raised status that statuses= stores: the app's handler renders it, once.
            handled = None if plan.http is None else await plan.http.handled(exc, request)
            if handled is None:
                raise
            rendered = merge_returned(handled, _NO_HEADERS)
            return handled, rendered, (time.perf_counter() - started) * 1000.0
        rendered = await plan.renderer.render(result, sub_response, is_coroutine=self._is_coroutine)
        return result, rendered, (time.perf_counter() - started) * 1000.0


def _raised_reason(exc: Exception) -> int:
    """The not-stored reason of an endpoint that raised: an HTTPException's is its status."""
    return metrics.REASON_STATUS if isinstance(exc, HTTPException) else metrics.REASON_ERROR


def _log_unconfigured() -> None:
    if not _Unconfigured.logged:
        _Unconfigured.logged = True
        logger.warning(
            "cache_response: CacheSetup.setup() has not been called (or the cache is closed): "
            "endpoints are answered without the cache"
        )


async def _lookup(slot: _Slot, flow: Flow, scope: MutableMapping[str, Any]) -> _hitfirst.Lookup:
    """The backend's entry at the slot's key: the hit-first path's lookup when it made one
    for this key (one backend call per request), else a fetch."""
    earlier = scope.pop(_hitfirst.LOOKUP_SCOPE_KEY, None)
    if isinstance(earlier, _hitfirst.Lookup) and earlier.key == slot.key:
        flow.down = earlier.down
        return earlier
    raw = await flow.fetch()
    entry = flow.decode(raw, slot.fingerprint)
    return _hitfirst.Lookup(slot.key, raw is None, entry, flow.down, flow.from_near)


def _key(keyer: RouteKeyer, request: Request) -> tuple[bytes, bytes] | None:
    try:
        return keyer.key(request)
    except (ValueError, UnicodeError) as exc:
        logger.debug("cache_response: request %s not keyed (%s): bypassed", request.url.path, exc)
        return None


class _SharedEntry(NamedTuple):
    """A Shared computation as RouteHTTP.collapsed reads it (an Entry's fields)."""

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


def _encode(
    slot: _Slot,
    rendered: Response,
    headers: list[tuple[bytes, bytes]],
    compute_ms: float,
    flow: Flow,
    created: float,
    verdict: Verdict,
) -> bytes | None:
    """The entry's bytes, or None (logged) when this response cannot be stored."""
    settings = slot.settings
    body = rendered.body
    if len(body) > settings.max_entry_bytes:
        slot.stats.not_stored(metrics.REASON_TOO_LARGE)
        logger.debug(  # per request: counted (not_stored_too_large), DEBUG only
            "cache: response for %r not stored: body of %d bytes > max_entry_bytes",
            slot.key,
            len(body),
            extra=_log.fields(key=slot.key, endpoint=slot.stats.name, reason="too_large"),
        )
        return None
    try:
        blob: bytes = kernels.write_entry(
            status=rendered.status_code,
            headers=headers,
            body=body,
            created=created,
            ttl=verdict.ttl,
            grace=flow.grace,
            compute_ms=compute_ms,
            etag=verdict.etag,
            fingerprint=slot.fingerprint,
            compression=(
                _COMPRESSION[settings.compression_mode]
                if slot.backend.compress_entries
                else kernels.COMPRESS_DISABLED
            ),
            min_size=settings.compression_min_size_bytes,
            level=settings.compression_level,
        )
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        slot.stats.not_stored(metrics.REASON_ERROR)
        logger.warning(
            "cache: response for %r not stored: %s",
            slot.key,
            exc,
            extra=_log.fields(key=slot.key, endpoint=slot.stats.name, reason="error"),
        )
        return None
    return blob
