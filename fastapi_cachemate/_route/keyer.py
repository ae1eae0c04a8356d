"""Cache keys: what identifies a response of one route, prepared once, built per request.

``RouteKeyer.for_route`` walks FastAPI's dependant tree of the route once (``introspect``)
and prepares a native ``KeySpec``; ``RouteKeyer.key`` then takes the few request parts that
the route can see (method, path, query items, the scope's headers, cookies when needed) and
lets the native ``build_key`` encode and hash them. docs/keys.md says what enters a key and why.

Three modes, fixed per route:

- declared (the usual case): the declared query names; one value (the last) for a scalar
  parameter, every value in order for a list parameter, exactly as FastAPI reads them.
- all items: a query model with ``extra="allow"`` receives every query item: all of them, in
  request order, enter the key.
- raw: the endpoint or a dependency takes the raw ``Request`` (or ``WebSocket`` /
  ``HTTPConnection``) and can read anything: the undecoded path and query string, the scheme,
  the root path and the Host header enter the key, and HEAD is not folded onto GET.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._route import introspect
from fastapi_cachemate.core import layout

__all__ = [
    "RouteKeyer",
    "RouteLike",
    "UnkeyableRequestError",
    "check_endpoint",
    "effective_route",
    "parse_vary",
    "request_unkeyed",
]

logger = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


def request_unkeyed(dependency: _F) -> _F:
    """Mark a dependency whose Request parameter reads nothing that changes a response.

    A dependency that takes ``request: Request`` only to reach ``request.app.state`` (a db
    pool, a client) would otherwise put every route that uses it in raw mode (every query
    item, the raw path and Host in the key). Marking it is a promise: it reads no query
    item, header, cookie or path through that Request.
    """
    setattr(dependency, introspect.UNKEYED_REQUEST_ATTR, True)
    return dependency


_DECLARED = "declared"
_ALL_ITEMS = "all-items"
_RAW = "raw"

# RFC 9110 token: the characters a header field name may have.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# What a client leaves unencoded in a path (RFC 3986 pchar and "/"): key_for's canonical form.
_PATH_SAFE = "/:@!$&'()*+,;=~"


class RouteLike(Protocol):
    """What for_route reads of a route: an APIRoute, or the route context that recent
    FastAPI runs for a route of an included router (``effective_route``)."""

    @property
    def path(self) -> str: ...
    @property
    def endpoint(self) -> Callable[..., Any]: ...
    @property
    def dependant(self) -> Dependant | None: ...


def effective_route(scope: MutableMapping[str, Any]) -> APIRoute | RouteLike:
    """The route FastAPI runs for this request, with every dependency it solves.

    Recent FastAPI versions (0.165 here) keep ``include_router(..., prefix=...,
    dependencies=[...])`` and the app's own ``dependencies=[...]`` out of the APIRoute: the
    APIRoute in ``scope["route"]`` then lacks those dependencies (and the include prefix),
    and the route context in ``scope["fastapi"]["effective_route_context"]`` has them. That
    context is built once per inclusion, so it can key a per-route cache of keyers as the
    APIRoute does. Older versions copy routes on inclusion: ``scope["route"]`` is complete.
    """
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        context = fastapi_scope.get("effective_route_context")
        if context is not None and getattr(context, "dependant", None) is not None:
            return context  # type: ignore[no-any-return]
    route: APIRoute = scope["route"]
    return route


class UnkeyableRequestError(ValueError):
    """A request whose key cannot be built: only a scope that is not valid ASGI (a missing
    field, header names that are not bytes). Any path, query string and header value of a
    valid scope, however odd, gives a key. The decorator answers such a request from the
    endpoint, without the cache (BYPASS); it is never a 500."""


def check_endpoint(func: Any) -> None:
    """Analyse an endpoint as FastAPI will, at decoration time.

    Raises TypeError or ValueError naming the parameter for declarations the cache cannot
    key: a plain class used as a ``Depends()`` filter whose attributes FastAPI never fills
    (no ``__init__`` of its own), header or cookie models with ``extra="allow"``.
    FastAPI's own errors for invalid declarations propagate unchanged.
    """
    introspect.check_endpoint(func)


def parse_vary(vary: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``vary`` into (header names, cookie names).

    A header is given by its name (any case: keys use lower case); a cookie as
    ``"cookie:<name>"`` (the name is case-sensitive, as cookies are). ``"*"`` is refused: a
    response that varies on everything cannot be shared.
    """
    if isinstance(vary, str):
        raise TypeError(f"vary must be a sequence of names, not the string {vary!r}")
    headers: set[str] = set()
    cookies: set[str] = set()
    for item in vary:
        if not isinstance(item, str):
            raise TypeError(f"vary: {item!r} is not a string")
        text = item.strip()
        if text[:7].lower() == "cookie:":
            name = text[7:].strip()
            if not name or any(c in name for c in ';=, \t"\\'):
                raise ValueError(f"vary: {item!r} does not name a cookie")
            cookies.add(name)
        elif text == "*":
            raise ValueError("vary: '*' cannot be cached; do not cache this endpoint instead")
        elif _TOKEN.match(text):
            headers.add(text.lower())
        else:
            raise ValueError(f"vary: {item!r} is not a header name (or 'cookie:<name>')")
    return tuple(sorted(headers)), tuple(sorted(cookies))


def _frame(*parts: str) -> str:
    # Length-prefixed, so that distinct tuples of parts never give the same string.
    return "".join(f"{len(p)}:{p}" for p in parts)


def _keep_last(items: Sequence[tuple[str, str]], scalar: frozenset[str]) -> list[tuple[str, str]]:
    """Drop all but the last value of scalar names: QueryParams.get returns the last."""
    seen: set[str] = set()
    kept: list[tuple[str, str]] = []
    for item in reversed(items):
        name = item[0]
        if name in scalar:
            if name in seen:
                continue
            seen.add(name)
        kept.append(item)
    kept.reverse()
    return kept


class RouteKeyer:
    """The key builder of one route: introspection once, the native builder per request."""

    __slots__ = (
        "_has_query",
        "_mode",
        "_scalar",
        "_spec",
        "_wants_cookies",
        "cookie_names",
        "header_names",
        "query_names",
        "raw_readers",
        "reads_body",
        "route_id",
    )

    def __init__(
        self,
        *,
        prefix: str,
        route_id: str,
        mode: str,
        query_names: tuple[str, ...] | None,
        scalar_names: frozenset[str],
        header_names: tuple[str, ...],
        cookie_names: tuple[str, ...],
        raw_readers: tuple[str, ...] = (),
        reads_body: bool = False,
    ) -> None:
        layout.check_prefix(prefix)
        self._mode = mode
        self._scalar = scalar_names
        self._has_query = query_names is None or bool(query_names)
        self._wants_cookies = bool(cookie_names)
        self.route_id = route_id
        self.query_names = query_names
        self.header_names = header_names
        self.cookie_names = cookie_names
        self.raw_readers = raw_readers
        self.reads_body = reads_body
        self._spec = kernels.KeySpec(prefix, route_id, query_names, header_names, cookie_names)

    @property
    def reads_request(self) -> bool:
        """True when the endpoint or a dependency takes the raw Request: it can read any
        header, and only the declared and varied ones (and Host) are in the key."""
        return self._mode == _RAW

    @property
    def prefix(self) -> str:
        return self._spec.prefix

    @classmethod
    def for_route(
        cls,
        route: APIRoute | RouteLike,
        *,
        prefix: str,
        vary: Sequence[str] = (),
        injected: Collection[str] = (),
    ) -> RouteKeyer:
        """Prepare the keyer of a route: pass ``effective_route(request.scope)``, so that
        dependencies added by ``include_router`` and the app are seen (see there).

        injected: names of top-level parameters that a wrapping decorator added to the
        endpoint's signature (a ``Request`` it needs for itself). Parameters that are not in
        the signature of the function the decorator wrapped (``__wrapped__``) are recognised
        without it.
        """
        endpoint = route.endpoint
        dependant = route.dependant
        if dependant is None:
            raise ValueError(f"route {route.path!r} has no dependant: not a FastAPI route")
        name = introspect.describe_endpoint(endpoint)
        provider = getattr(route, "dependency_overrides_provider", None)
        plan = introspect.plan_for_dependant(
            dependant,
            endpoint_name=name,
            top_level_readers=introspect.own_raw_readers(endpoint, frozenset(injected)),
            overrides=getattr(provider, "dependency_overrides", None),
        )
        vary_headers, vary_cookies = parse_vary(vary)
        headers = set(plan.header_names) | set(vary_headers)
        cookies = set(plan.cookie_names) | set(vary_cookies)
        query_names: tuple[str, ...] | None
        scalar_names = plan.scalar_query_names
        if plan.raw_readers:
            mode = _RAW
            query_names = None
            headers.add("host")
            logger.debug("route %s reads the raw request: %s", route.path, plan.raw_readers)
        elif plan.all_query_reasons:
            mode = _ALL_ITEMS
            query_names = None
            # Every value of a name may reach the endpoint as a model's extra field: keep
            # them all, even of names that some parameter reads one value of.
            scalar_names = frozenset()
        else:
            mode = _DECLARED
            query_names = tuple(sorted(plan.query_names))
        route_id = f"{route.path}\x00{name}\x00{mode}"
        return cls(
            prefix=prefix,
            route_id=route_id,
            mode=mode,
            query_names=query_names,
            scalar_names=scalar_names,
            header_names=tuple(sorted(headers)),
            cookie_names=tuple(sorted(cookies)),
            raw_readers=tuple(plan.raw_readers),
            reads_body=plan.reads_body,
        )

    def key(self, request: Request) -> tuple[bytes, bytes]:
        """(key, 8-byte fingerprint) of this request; UnkeyableRequestError, never another."""
        try:
            scope = request.scope
            method: str = scope["method"]
            query: Sequence[tuple[str, str]] = ()
            if self._mode == _RAW:
                raw_path = scope.get("raw_path")
                path = _frame(
                    str(scope.get("scheme", "")),
                    str(scope.get("root_path", "")),
                    scope["path"],
                    "" if raw_path is None else raw_path.decode("latin-1"),
                    scope.get("query_string", b"").decode("latin-1"),
                )
            else:
                if method == "HEAD":
                    method = "GET"
                path = scope["path"]
                if self._has_query and scope.get("query_string"):
                    params = request.query_params
                    query = params.multi_items()
                    if self._scalar and len(query) != len(params):
                        query = _keep_last(query, self._scalar)
            cookies = request.cookies if self._wants_cookies else None
            return kernels.build_key(self._spec, method, path, query, scope["headers"], cookies)
        except (KeyError, AttributeError, TypeError, ValueError, OverflowError) as exc:
            # Only a scope that is not valid ASGI gets here (a missing or mistyped field).
            raise UnkeyableRequestError(f"no cache key for this request: {exc!r}") from exc

    def key_for(
        self,
        *,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
        cookies: Mapping[str, str] | None = None,
        method: str = "GET",
        scheme: str = "http",
    ) -> tuple[bytes, bytes]:
        """The same key a request with these parts would get (for invalidation by parameters).

        path is the decoded path (``request.url.path``); query the decoded items in order;
        header names in any case. For a route that reads the raw Request, the request is
        assumed to be sent the way browsers and httpx send it: the path percent-encoded
        except for RFC 3986 path characters, the query form-encoded, no root path, and a
        Host header given in ``headers``.
        """
        method = method.upper()
        items = [(str(k), str(v)) for k, v in query]
        hdrs = [(bytes(n).lower(), bytes(v)) for n, v in headers]
        if self._mode == _RAW:
            key_path = _frame(scheme, "", path, quote(path, safe=_PATH_SAFE), urlencode(items))
            items = []
        else:
            if method == "HEAD":
                method = "GET"
            key_path = path
            if not self._has_query:
                items = []
            elif self._scalar and len({k for k, _ in items}) != len(items):
                items = _keep_last(items, self._scalar)
        jar = dict(cookies or {}) if self._wants_cookies else None
        try:
            return kernels.build_key(self._spec, method, key_path, items, hdrs, jar)
        except (ValueError, TypeError, OverflowError) as exc:
            raise UnkeyableRequestError(f"no cache key for these parts: {exc}") from exc

    def __repr__(self) -> str:
        return (
            f"RouteKeyer(mode={self._mode}, query={self.query_names}, "
            f"headers={self.header_names}, cookies={self.cookie_names})"
        )
