"""``cache_response`` and ``is_bypass`` (the seed's import path: ``fastapi_cachemate.cache``).

At decoration, ``cache_response(...)`` checks its arguments and the endpoint (what the key
cannot cover is an error now, not per request), and rewrites the endpoint's signature so
that FastAPI injects a ``Request`` and a ``Response`` (the endpoint's own parameters of
those types are reused when it declares them). Per request, the wrapper hands them to the
endpoint's ``Pipeline`` (``_request/pipeline.py``: plan, refuse, key, lookup, answer or
compute and store).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar, overload

from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate._request.context import CachedEndpoint
from fastapi_cachemate._request.pipeline import Pipeline
from fastapi_cachemate._request.rules import StatusTTLs, is_bypass
from fastapi_cachemate._request.status import CacheStatuses
from fastapi_cachemate._route.introspect import is_subclass
from fastapi_cachemate._route.keyer import check_endpoint, parse_vary
from fastapi_cachemate.invalidation import (
    TagTemplates,
    parameter_names,
    register_cached_endpoint,
)

__all__ = ["CacheStatuses", "cache_response", "is_bypass"]

P = ParamSpec("P")
R = TypeVar("R")

_REQUEST_PARAM = "__dependencies_request__"
_RESPONSE_PARAM = "__dependencies_response__"


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
    checked_vary = _checked_vary(vary)
    templates = TagTemplates(tags)
    status_ttls = StatusTTLs(_checked_ttl(ttl), statuses)
    swr = _checked_seconds("stale_while_revalidate", stale_while_revalidate)
    sie = _checked_seconds("stale_if_error", stale_if_error)

    def decorator(func: Callable[..., Any], /) -> Callable[..., Awaitable[Any]]:
        endpoint = _checked_endpoint(func)
        check_endpoint(endpoint)  # what the key cannot cover is an error now, not per request
        templates.check(parameter_names(endpoint), f"cache_response on {endpoint.__qualname__}")
        injected = _injected(endpoint)
        cached = CachedEndpoint(
            endpoint,
            is_coroutine=_is_coroutine(endpoint),
            vary=checked_vary,
            injected=injected.added,
            tags=templates,
            statuses=status_ttls,
            public=bool(public),
            stale_while_revalidate=swr,
            stale_if_error=sie,
        )
        return _wrap(cached, injected)

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

    @property
    def added(self) -> tuple[str, ...]:
        """The parameters the decorator added (not the endpoint's own)."""
        return tuple(
            name
            for name, own in ((self.request, self.own_request), (self.response, self.own_response))
            if not own
        )


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


def _wrap(cached: CachedEndpoint, injected: _Injected) -> Callable[..., Awaitable[Any]]:
    """The endpoint FastAPI calls: it takes the injected Request and Response out of the
    arguments and hands the request to the endpoint's pipeline."""
    pipeline = Pipeline(cached)

    @functools.wraps(cached.func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = _take(kwargs, injected.request, keep=injected.own_request)
        response = _take(kwargs, injected.response, keep=injected.own_response)
        if not isinstance(request, Request) or not isinstance(response, Response):
            # Called directly (a test, another function), not by FastAPI: no request to cache.
            return await cached.call(args, kwargs)
        return await pipeline.respond(request, response, args, kwargs)

    wrapper.__signature__ = injected.signature  # type: ignore[attr-defined]
    register_cached_endpoint(wrapper, vary=cached.vary, injected=injected.added, tags=cached.tags)
    return wrapper


def _take(kwargs: dict[str, Any], name: str, *, keep: bool) -> Any:
    """An injected argument: left for the endpoint when it declared it, else removed."""
    return kwargs.get(name) if keep else kwargs.pop(name, None)
