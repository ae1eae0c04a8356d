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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar, overload

import redis.exceptions
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate._http import CACHE_STATUS_HEADER, RouteHTTP, StatusTTLs
from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._keyspec import RouteKeyer, check_endpoint, effective_route, parse_vary
from fastapi_cachemate._policy import CacheStatuses, Refusal, is_bypass, refusal
from fastapi_cachemate._render import RouteRenderer, merge_returned, without_headers
from fastapi_cachemate._response import raw_response
from fastapi_cachemate.cache_setup import CacheSetup
from fastapi_cachemate.core.types import Backend
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = ["CacheStatuses", "cache_response", "is_bypass"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: What a backend call may raise that means "the backend is unavailable": a miss.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    OSError,  # includes ConnectionError and, since 3.11, asyncio.TimeoutError
    TimeoutError,
)

_REQUEST_PARAM = "__dependencies_request__"
_RESPONSE_PARAM = "__dependencies_response__"
_STATUS_HEADER = b"x-cache-status"
_STATUS_VALUES = {status: status.value.encode("ascii") for status in CacheStatuses}
_COMPRESSION = {
    "all": kernels.COMPRESS_ALL,
    "smart": kernels.COMPRESS_SMART,
    "disabled": kernels.COMPRESS_DISABLED,
}


class _CacheDecorator(Protocol):
    @overload
    def __call__(self, func: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, Awaitable[R]]: ...


_REFUSED_ROUTE = Refusal.of(CacheStatuses.CACHE_NOT, b"bypass", b"unkeyable-route")
_REFUSED_KEY = Refusal.of(CacheStatuses.CACHE_BYPASS, b"bypass", b"unkeyable-request")
_NOT_BUFFERED = Refusal.of(CacheStatuses.CACHE_NOT, b"uri-miss", b"not-buffered")
_NO_HEADERS = raw_response(200, [], b"")  # merge_returned's injected response: adds nothing


def cache_response(
    ttl: float = 60,
    *,
    vary: Sequence[str] = (),
    statuses: Mapping[int | str, float] | Iterable[int | str] | None = None,
    public: bool = False,
) -> _CacheDecorator:
    """Cache the endpoint's rendered response for ttl seconds.

    :param ttl: seconds an entry is fresh (an int or a float, > 0).
    :param vary: request header names whose values enter the key (and the Vary header),
        or ``"cookie:<name>"``.
    :param statuses: the response statuses that are stored: None (2xx except 206, for
        ttl), or the complete list as ``{status: ttl}`` (e.g. ``{200: 300, 301: 3600,
        404: 30}``) or as statuses stored for ttl; ``"2xx"``-style classes are accepted.
    :param public: also cache requests that carry Authorization although the key does
        not hold it (the response is the same for every user).

    Use it under the route decorator (``@app.get(...)`` first, then
    ``@cache_response(ttl=...)``), on ``async def`` or plain ``def`` endpoints.
    """
    ttl = _checked_ttl(ttl)
    vary = _checked_vary(vary)
    status_ttls = StatusTTLs(ttl, statuses)
    public = bool(public)

    def decorator(func: Callable[..., Any], /) -> Callable[..., Awaitable[Any]]:
        return _wrap(func, ttl, vary, status_ttls, public)

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


def _is_subclass(annotation: object, cls: type) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, cls)


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
        if not request and _is_subclass(param.annotation, Request):
            request = param.name
        elif not response and _is_subclass(param.annotation, Response):
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
    func: object, ttl: float, vary: tuple[str, ...], statuses: StatusTTLs, public: bool
) -> Callable[..., Awaitable[Any]]:
    endpoint = _checked_endpoint(func)
    check_endpoint(endpoint)  # what the key cannot cover is an error now, not per request
    injected = _injected(endpoint)
    added = tuple(
        name
        for name, own in (
            (injected.request, injected.own_request),
            (injected.response, injected.own_response),
        )
        if not own
    )
    cached = _CachedEndpoint(endpoint, ttl, vary, added, statuses, public)

    @functools.wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = _take(kwargs, injected.request, keep=injected.own_request)
        response = _take(kwargs, injected.response, keep=injected.own_response)
        if not isinstance(request, Request) or not isinstance(response, Response):
            # Called directly (a test, another function), not by FastAPI: no request to cache.
            return await cached.call(args, kwargs)
        return await cached.respond(request, response, args, kwargs)

    wrapper.__signature__ = injected.signature  # type: ignore[attr-defined]
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
    http: RouteHTTP | None  # None when keyer is None


class _Slot(NamedTuple):
    """Where one request's entry lives: the backend, the settings, its key and fingerprint."""

    backend: Backend
    settings: BaseCacheSettings
    key: bytes
    fingerprint: bytes


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
        "_statuses",
        "_ttl",
        "_vary",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        ttl: float,
        vary: tuple[str, ...],
        injected: tuple[str, ...],
        statuses: StatusTTLs | None = None,
        public: bool = False,
    ) -> None:
        self._func = func
        self._is_coroutine = _is_coroutine(func)
        self._name = getattr(func, "__qualname__", repr(func))
        self._ttl = ttl
        self._vary = vary
        self._injected = injected
        self._statuses = StatusTTLs(ttl) if statuses is None else statuses
        self._public = public
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
        refused = refusal(request, CacheSetup.bypass(), settings)
        if refused is not None:
            return await self._uncached(refused, sub_response, args, kwargs)
        plan = self._plan(request)
        if plan is None or plan.keyer is None or plan.http is None:
            return await self._uncached(_REFUSED_ROUTE, sub_response, args, kwargs)
        refused = plan.http.refuse(request)  # Authorization, a request body, ...
        if refused is not None:
            return await self._uncached(refused, sub_response, args, kwargs)
        keyed = _key(plan.keyer, plan.http.key_request(request))
        if keyed is None:
            return await self._uncached(_REFUSED_KEY, sub_response, args, kwargs)
        slot = _Slot(CacheSetup.backend(), settings, *keyed)
        raw = await _lookup(slot)
        entry = _decode(raw, slot)
        fwd = b"uri-miss" if raw is None else b"miss"
        if entry is not None:
            if not plan.http.revalidation_due(request, entry, settings):
                return plan.http.hit(entry, request, sub_response)
            fwd = b"request"  # client_cache_control="revalidate": the shared computation
        return await self._miss(plan, slot, request, sub_response, args, kwargs, fwd=fwd)

    # --- the steps ------------------------------------------------------------------------

    def _plan(self, request: Request) -> _Plan | None:
        if not isinstance(request.scope.get("route"), APIRoute):
            return None
        # What FastAPI runs: with an included router's prefix, dependencies and response
        # class (FastAPI 0.165 keeps them out of scope["route"]); one object per inclusion.
        route: Any = effective_route(request.scope)
        prefix = CacheSetup.prefix()
        plan = self._plans.get(id(route))
        if plan is None or plan.route is not route or plan.prefix != prefix:
            keyer = self._keyer(route, prefix)
            http = None if keyer is None else RouteHTTP(keyer, self._statuses, public=self._public)
            plan = _Plan(route, prefix, keyer, RouteRenderer(route), http)
            self._plans[id(route)] = plan
        return plan

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
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
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
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        fwd: bytes = b"uri-miss",
    ) -> Any:
        assert plan.http is not None
        # Headers already on the injected response were set by this request's dependencies:
        # they run on every request, so they are not part of the entry.
        dependency_headers = list(sub_response.raw_headers)
        result, rendered, compute_ms = await self._compute(
            plan, request, sub_response, args, kwargs
        )
        if rendered is None:  # streaming or file: passed through, never stored
            result.raw_headers.append((_STATUS_HEADER, _STATUS_VALUES[CacheStatuses.CACHE_NOT]))
            result.raw_headers.append((CACHE_STATUS_HEADER, _NOT_BUFFERED.cache_status))
            return result
        stored_headers = without_headers(rendered.raw_headers, dependency_headers)
        # Not storable (verdict.storable False) must release any waiters at once: they
        # must not be given this response (it may carry one client's cookie or data).
        verdict = plan.http.verdict(request, rendered.status_code, stored_headers, rendered.body)
        stored = False
        if verdict.storable:
            stored_headers.extend(verdict.added)
            stored = await _save(
                slot, rendered, stored_headers, verdict.ttl, compute_ms, etag=verdict.etag
            )
        else:
            logger.debug("cache: response for %r not stored (%s)", slot.key, verdict.reason)
        return plan.http.miss(
            rendered,
            request,
            verdict,
            stored=stored,
            fwd=fwd,
            dependency_headers=dependency_headers,
        )

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


def _log_unconfigured() -> None:
    if not _Unconfigured.logged:
        _Unconfigured.logged = True
        logger.warning(
            "cache_response: CacheSetup.setup() has not been called (or the cache is closed): "
            "endpoints are answered without the cache"
        )


def _key(keyer: RouteKeyer, request: Request) -> tuple[bytes, bytes] | None:
    try:
        return keyer.key(request)
    except (ValueError, UnicodeError) as exc:
        logger.debug("cache_response: request %s not keyed (%s): bypassed", request.url.path, exc)
        return None


async def _lookup(slot: _Slot) -> bytes | None:
    try:
        return await slot.backend.fetch(slot.key)
    except BACKEND_ERRORS as exc:
        logger.warning("cache: backend fetch failed for %r (%s): a miss", slot.key, exc)
        return None


def _decode(raw: bytes | None, slot: _Slot) -> Any:
    """The entry if it is fresh and was computed for this key, else None (a miss)."""
    if raw is None:
        return None
    entry = kernels.read_entry(raw, time.time(), slot.fingerprint)
    if entry is None:
        logger.warning("cache: unreadable or foreign entry at %r: a miss, overwritten", slot.key)
        return None
    # STALE (inside the grace window) is the refresh path's (issue 5); EXPIRED is a miss.
    if entry.state != kernels.FRESH:
        return None
    return entry


async def _save(
    slot: _Slot,
    rendered: Response,
    headers: list[tuple[bytes, bytes]],
    ttl: float,
    compute_ms: float,
    *,
    etag: bytes | None = None,
) -> bool:
    """Store the rendered response under the slot's key, unless it cannot be (logged).

    The caller decided that it may be (``RouteHTTP.verdict``). True when it was stored.
    """
    blob = _encode(slot, rendered, headers, ttl, compute_ms, etag=etag)
    if blob is None:
        return False
    try:
        await slot.backend.store(slot.key, blob, max(1, math.ceil(ttl * 1000)))
    except BACKEND_ERRORS as exc:
        logger.warning("cache: backend store failed for %r (%s): not cached", slot.key, exc)
        return False
    return True


def _encode(
    slot: _Slot,
    rendered: Response,
    headers: list[tuple[bytes, bytes]],
    ttl: float,
    compute_ms: float,
    *,
    etag: bytes | None = None,
) -> bytes | None:
    """The entry's bytes, or None (logged) when this response cannot be stored."""
    settings = slot.settings
    body = rendered.body
    if len(body) > settings.max_entry_bytes:
        logger.info(
            "cache: response for %r not stored: body of %d bytes > max_entry_bytes",
            slot.key,
            len(body),
        )
        return None
    try:
        blob: bytes = kernels.write_entry(
            status=rendered.status_code,
            headers=headers,
            body=body,
            created=time.time(),
            ttl=ttl,
            compute_ms=compute_ms,
            etag=etag,
            fingerprint=slot.fingerprint,
            compression=_COMPRESSION[settings.compression_mode],
            min_size=settings.compression_min_size_bytes,
            level=settings.compression_level,
        )
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        logger.warning("cache: response for %r not stored: %s", slot.key, exc)
        return None
    return blob
