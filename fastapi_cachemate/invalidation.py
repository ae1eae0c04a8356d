"""Invalidation: by endpoint and parameters, by tag, the whole namespace, and from a write
endpoint in one line (docs/invalidation.md).

- ``await invalidate(get_blog, blog_id=42)``: the entry that a ``GET`` with those parameters
  would hit (the same key, built by the route's own ``RouteKeyer``), on every route that
  serves the endpoint (each ``include_router`` inclusion has its own key).
- ``await invalidate_tags("blog:42")``: every entry computed with that tag
  (``@cache_response(ttl=..., tags=["blog:{blog_id}"])``, templated from the request's
  parameters by ``TagTemplates``).
- ``await invalidate_namespace()``: every entry under ``CacheSetup.prefix()``.
- ``@invalidates(get_blog, tags=["blog:{blog_id}", "blogs"])`` on a POST/PUT/PATCH/DELETE
  handler: after the handler succeeded, the tags (templated from its parameters) and the
  endpoints (called with the handler's parameters of the same names) are invalidated.

Every call is bounded (docs/keys-and-invalidation.md) and returns the number of entries
removed. A backend that fails (whatever it raises, or a reply that is not a count) makes
the call raise ``fastapi_cachemate._runtime.breaker.BackendUnavailable`` (the error as its
``__cause__``); ``@invalidates`` logs it and the write's response goes out unchanged. A
computation that was in flight when the invalidation landed does not store its result
(generations). With no configured cache (``CacheSetup.setup()`` not called), every
call is a no-op answering 0.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import string
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, ParamSpec, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, replace_params
from starlette.types import ASGIApp

from fastapi_cachemate._route.introspect import is_subclass, request_aliases
from fastapi_cachemate._route.keyer import RouteKeyer
from fastapi_cachemate._runtime import boundary
from fastapi_cachemate._runtime.breaker import BackendUnavailable
from fastapi_cachemate.cache_setup import CacheSetup

__all__ = [
    "CachedEndpointSpec",
    "TagTemplates",
    "invalidate",
    "invalidate_namespace",
    "invalidate_tags",
    "invalidates",
    "register_app",
    "register_cached_endpoint",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_REQUEST_PARAM = "__invalidates_request__"


# --- tag templates ----------------------------------------------------------------------------


class TagTemplates:
    """Tags like ``"blog:{blog_id}"`` templated from an endpoint's parameters.

    Templates use ``str.format`` fields naming the endpoint's parameters (attribute and
    index access work: ``"{filters.slug}"``). Compiled once, at decoration time, where
    ``check`` refuses a field that names no parameter; ``render`` runs per request on the
    values FastAPI resolved (the same ones the endpoint receives), so that a GET endpoint's
    tags and a write endpoint's tags format one value the same way.
    """

    __slots__ = ("fields", "templates")

    def __init__(self, templates: Iterable[str] = ()) -> None:
        if isinstance(templates, str):
            raise TypeError(f"tags must be a sequence of strings, not the string {templates!r}")
        checked: list[str] = []
        fields: set[str] = set()
        for template in templates:
            if not isinstance(template, str):
                raise TypeError(f"a tag must be a str, got {template!r}")
            try:
                parsed = list(string.Formatter().parse(template))
            except ValueError as exc:
                raise ValueError(f"tag {template!r} is not a valid template: {exc}") from exc
            for _, field, _, _ in parsed:
                if field is None:
                    continue
                root = _field_root(field)
                if not root or root.isdigit():
                    raise ValueError(
                        f"tag {template!r}: every field must name a parameter "
                        "(positional fields like '{}' or '{0}' cannot be filled)"
                    )
                fields.add(root)
            checked.append(template)
        self.templates: tuple[str, ...] = tuple(dict.fromkeys(checked))
        self.fields = frozenset(fields)

    def __bool__(self) -> bool:
        return bool(self.templates)

    def __repr__(self) -> str:
        return f"TagTemplates({list(self.templates)!r})"

    def check(self, parameters: Iterable[str], where: str) -> None:
        """ValueError when a field names none of parameters (decoration time)."""
        missing = self.fields - set(parameters)
        if missing:
            raise ValueError(
                f"{where}: tags {list(self.templates)!r} use {sorted(missing)!r}, which "
                "are not parameters of the endpoint"
            )

    def render(self, values: Mapping[str, Any]) -> list[str]:
        """The tags for one request; KeyError (naming it) for a missing parameter."""
        return [template.format_map(_Values(values)) for template in self.templates]


def _field_root(field: str) -> str:
    for at, char in enumerate(field):
        if char in ".[":
            return field[:at]
    return field


class _Values(dict[str, Any]):
    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)

    def __missing__(self, name: str) -> Any:
        raise KeyError(f"tag template field {name!r} has no value in this request")


def parameter_names(func: Callable[..., Any]) -> list[str]:
    """The names an endpoint's parameters have (the function under any decorators)."""
    target = inspect.unwrap(func)
    try:
        return list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return []


# --- the registry the decorators fill ----------------------------------------------------------


@dataclass(frozen=True)
class CachedEndpointSpec:
    """What ``cache_response`` knows of an endpoint that invalidation needs to rebuild its
    keys: the ``vary`` names and the parameters it injected into the signature."""

    vary: tuple[str, ...] = ()
    injected: tuple[str, ...] = ()
    tags: TagTemplates | None = None


_specs: weakref.WeakKeyDictionary[Callable[..., Any], CachedEndpointSpec] = (
    weakref.WeakKeyDictionary()
)
_apps: weakref.WeakSet[Any] = weakref.WeakSet()


def register_cached_endpoint(
    endpoint: Callable[..., Any],
    *,
    vary: Sequence[str] = (),
    injected: Sequence[str] = (),
    tags: TagTemplates | None = None,
) -> None:
    """Called by ``cache_response`` for the function it returns (what FastAPI routes to)."""
    _specs[endpoint] = CachedEndpointSpec(tuple(vary), tuple(injected), tags)


def register_app(app: ASGIApp) -> None:
    """Make ``app``'s routes known to ``invalidate`` (cached endpoints and ``@invalidates``
    register the app of every request they serve; call this to invalidate by endpoint
    before any request, e.g. from a worker that serves none)."""
    _apps.add(app)


# --- by endpoint and parameters ----------------------------------------------------------------


def _routes_of(app: Any) -> Iterator[Any]:
    """Every route-like FastAPI runs for app: what ``effective_route`` returns in a request
    (the APIRoute, or the route context of an ``include_router`` inclusion), and the routes
    of mounted sub-applications."""
    router = getattr(app, "router", app)
    for route in getattr(router, "routes", ()):
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_route_contexts"):  # FastAPI >= 0.165 inclusions
            for context in route.effective_route_contexts():
                if getattr(context, "dependant", None) is not None:
                    yield context
                elif isinstance(context.original_route, APIRoute):
                    yield context.original_route
        elif isinstance(route, Mount) and route.app is not None:
            for inner in _routes_of(route.app):
                yield _Mounted(route.path, inner)


class _Mounted:
    """A route of a mounted sub-application, seen with the mount's path in front."""

    def __init__(self, mount_path: str, route: Any) -> None:
        self._route = route
        self.path_format = mount_path.rstrip("/") + route.path_format

    def __getattr__(self, name: str) -> Any:
        return getattr(self._route, name)


def _serves(route: Any, target: Callable[..., Any]) -> bool:
    endpoint = getattr(route, "endpoint", None)
    while endpoint is not None:
        if endpoint is target:
            return True
        endpoint = getattr(endpoint, "__wrapped__", None)
    return False


def _cached_wrapper(route: Any) -> Callable[..., Any] | None:
    endpoint = getattr(route, "endpoint", None)
    while endpoint is not None:
        try:
            if endpoint in _specs:
                return endpoint  # type: ignore[no-any-return]
        except TypeError:  # an unhashable callable object: not one of ours
            return None
        endpoint = getattr(endpoint, "__wrapped__", None)
    return None


def _as_text(value: Any) -> str:
    """A parameter value as a client writes it in a URL (FastAPI parses it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _as_text(value.value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)  # int, float, str, UUID, Decimal...


def _as_items(name: str, value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return [(name, _as_text(v)) for v in value]
    return [(name, _as_text(value))]


@dataclass
class _RequestParts:
    path: str
    query: list[tuple[str, str]]
    headers: list[tuple[bytes, bytes]]
    cookies: dict[str, str]


def _request_parts(
    route: Any,
    params: Mapping[str, Any],
    headers: Mapping[str, str] | None,
    cookies: Mapping[str, str] | None,
    *,
    open_query: bool,
) -> _RequestParts:
    """The path, query, headers and cookies a request with params would send to route."""
    path_format: str = route.path_format
    convertors = getattr(route, "param_convertors", {})
    path_names = set(convertors)
    path_values = {k: v for k, v in params.items() if k in path_names}
    missing = path_names - set(path_values)
    if missing:
        raise TypeError(f"{path_format}: missing path parameter(s) {sorted(missing)}")
    path, _ = replace_params(path_format, convertors, dict(path_values))
    query_fields, header_fields, cookie_fields = _fields(route.dependant)
    query_alias = request_aliases(query_fields)
    header_alias = request_aliases(header_fields, headers=True)
    cookie_alias = request_aliases(cookie_fields)
    query: list[tuple[str, str]] = []
    hdrs: list[tuple[bytes, bytes]] = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    jar = dict(cookies or {})
    for name, value in params.items():
        if name in path_names:
            continue
        if name in query_alias:
            query.extend(_as_items(query_alias[name], value))
        elif name in header_alias:
            hdrs.extend(
                (header_alias[name].lower().encode("latin-1"), v.encode("latin-1"))
                for _, v in _as_items(name, value)
            )
        elif name in cookie_alias:
            if value is not None:
                jar[cookie_alias[name]] = _as_text(value)
        elif open_query:
            query.extend(_as_items(name, value))
        else:
            known = sorted({*path_names, *query_alias, *header_alias, *cookie_alias})
            raise TypeError(f"{path_format}: no parameter named {name!r} (known: {known})")
    return _RequestParts(path, query, hdrs, jar)


def _fields(dependant: Dependant) -> tuple[list[Any], list[Any], list[Any]]:
    """The query, header and cookie fields of a dependant tree (FastAPI's own fields)."""
    query: list[Any] = []
    header: list[Any] = []
    cookie: list[Any] = []
    pending = [dependant]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        query.extend(current.query_params)
        header.extend(current.header_params)
        cookie.extend(current.cookie_params)
        pending.extend(current.dependencies)
    return query, header, cookie


def keys_for(
    target: Callable[..., Any] | APIRoute | Any,
    params: Mapping[str, Any],
    *,
    app: ASGIApp | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    prefix: str | None = None,
) -> list[bytes]:
    """The keys a GET of target with params would have, one per route serving target."""
    routes: list[Any]
    if callable(target) and not hasattr(target, "dependant"):
        apps = [app] if app is not None else list(_apps)
        routes = [r for a in apps for r in _routes_of(a) if _serves(r, target)]
        if not routes:
            name = getattr(target, "__qualname__", repr(target))
            raise LookupError(
                f"invalidate: no route of {'the given app' if app is not None else 'a known app'}"
                f" serves {name}: pass app=..., or call register_app(app) at startup"
            )
    else:
        routes = [target]
    prefix = CacheSetup.prefix() if prefix is None else prefix
    keys: list[bytes] = []
    for route in routes:
        wrapper = _cached_wrapper(route)
        spec = _specs.get(wrapper) if wrapper is not None else None
        if spec is None:
            name = getattr(route, "path_format", repr(route))
            raise LookupError(f"invalidate: {name} is not a cache_response endpoint")
        base = route._route if isinstance(route, _Mounted) else route
        keyer = RouteKeyer.for_route(base, prefix=prefix, vary=spec.vary, injected=spec.injected)
        parts = _request_parts(
            route, params, headers, cookies, open_query=keyer.query_names is None
        )
        methods = getattr(route, "methods", None) or {"GET"}
        method = "GET" if "GET" in methods else sorted(methods)[0]
        key, _ = keyer.key_for(
            path=parts.path,
            query=parts.query,
            headers=parts.headers,
            cookies=parts.cookies,
            method=method,
        )
        keys.append(key)
    return list(dict.fromkeys(keys))


async def invalidate(
    target: Callable[..., Any] | APIRoute | Any,
    /,
    *,
    app: ASGIApp | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> int:
    """Invalidate the entry a GET of target with these parameters would hit.

    target: the cached endpoint (the function under ``@app.get(...)``) or one of its
    routes. Parameters by their Python names (or the names the request carries): path
    parameters fill the path, the others are query parameters, Header() and Cookie()
    parameters go to the headers and cookies; ``headers=`` and ``cookies=`` give the
    ``vary`` ones. Values are written as a client writes them (``True`` -> ``"true"``,
    enums by value, dates ISO); a list gives one item per value; None leaves it out.
    A parameter named app, headers, cookies or params goes in ``params={...}``.
    The number of entries removed.
    """
    if not CacheSetup.is_configured():
        return 0
    values = {**(params or {}), **kwargs}
    keys = keys_for(target, values, app=app, headers=headers, cookies=cookies)
    backend = CacheSetup.backend()
    return await _backend_call(lambda: backend.invalidate_keys(*keys))


async def invalidate_tags(*tags: str) -> int:
    """Invalidate every entry computed with any of these tags; entries removed."""
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"a tag must be a str, got {tag!r}")
    if not tags or not CacheSetup.is_configured():
        return 0
    backend, prefix = CacheSetup.backend(), CacheSetup.prefix()
    return await _backend_call(lambda: backend.invalidate_tags(prefix, *tags))


async def invalidate_namespace() -> int:
    """Invalidate every entry under the configured prefix; entries removed."""
    if not CacheSetup.is_configured():
        return 0
    backend, prefix = CacheSetup.backend(), CacheSetup.prefix()
    return await _backend_call(lambda: backend.invalidate_namespace(prefix))


async def _backend_call(factory: Callable[[], Awaitable[Any]]) -> int:
    """The invalidation's backend call at the boundary: its count of entries removed, or
    ``BackendUnavailable`` for whatever it raised or answered otherwise. Not through the
    request path's breaker nor bounded by backend_timeout: a tag or namespace walk takes
    as long as its key count, and a write's invalidation must not be skipped because
    reads timed out."""
    return await boundary.call(factory, boundary.count)


# --- the one-line form for write endpoints -------------------------------------------------------


def invalidates(
    *endpoints: Callable[..., Any],
    tags: Sequence[str] = (),
    namespace: bool = False,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Invalidate after a write endpoint succeeded.

    Put it under the route decorator::

        @app.put("/blogs/{blog_id}")
        @invalidates(get_blog, tags=["blog:{blog_id}", "blogs"])
        async def update_blog(blog_id: int, body: BlogIn) -> Blog: ...

    tags are templated from the handler's parameters; each endpoint is invalidated with
    the handler's parameters that it also takes (``get_blog(blog_id)`` gets blog_id);
    namespace=True clears everything. It runs once the handler returned (not when it
    raised or returned a Response with a status >= 400). A failing backend is logged (the
    write happened; stale entries then expire with their ttl), never raised.
    """
    templates = TagTemplates(tags)
    for endpoint in endpoints:
        if not callable(endpoint):
            raise TypeError(f"invalidates(...) takes endpoints, got {endpoint!r}")

    def decorator(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"invalidates(...) decorates an async def endpoint, got {func!r}")
        names = parameter_names(func)
        where = f"invalidates on {getattr(func, '__qualname__', func)}"
        templates.check(names, where)
        targets = [(endpoint, set(parameter_names(endpoint))) for endpoint in endpoints]
        signature = inspect.signature(func)
        own_request = next(
            (p.name for p in signature.parameters.values() if is_subclass(p.annotation, Request)),
            None,
        )
        added = bool(endpoints) and own_request is None

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            request = kwargs.pop(_REQUEST_PARAM, None) if added else None
            if own_request is not None:
                request = kwargs.get(own_request)
            result = await func(*args, **kwargs)
            if isinstance(result, Response) and result.status_code >= 400:
                return result
            app = request.app if isinstance(request, Request) else None
            if app is not None:
                register_app(app)
            await _after_write(templates, targets, namespace, dict(kwargs), app, where)
            return result

        if added:
            params = list(signature.parameters.values())
            extra = inspect.Parameter(
                _REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request
            )
            at = len(params)
            if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
                at -= 1
            wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
                parameters=[*params[:at], extra, *params[at:]]
            )
        return wrapper

    return decorator


async def _after_write(
    templates: TagTemplates,
    targets: list[tuple[Callable[..., Any], set[str]]],
    namespace: bool,
    values: dict[str, Any],
    app: Any,
    where: str,
) -> None:
    if not CacheSetup.is_configured():
        return
    try:
        if namespace:
            await invalidate_namespace()
            return
        if templates:
            await invalidate_tags(*templates.render(values))
        for endpoint, names in targets:
            params = {k: v for k, v in values.items() if k in names}
            await invalidate(endpoint, app=app, params=params)
    except BackendUnavailable as exc:  # the backend failed or answered junk
        logger.error("%s: invalidation failed (%s): entries expire with their ttl", where, exc)
