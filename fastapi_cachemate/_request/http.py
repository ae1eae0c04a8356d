"""HTTP semantics of the cache: what may be stored, and what a hit, a miss or a 304 carries.

One ``RouteHTTP`` per route (built with the route's ``RouteKeyer``, on its first request)
answers the questions ``cache.py`` asks on the way:

- ``refuse(request)``: requests that must neither be served from nor stored to the cache:
  a request with ``Authorization`` unless the endpoint opted in (``public=True``) or the key
  holds it (``vary=["Authorization"]``, a security scheme); a request with a body
  (``Content-Length`` > 0 or ``Transfer-Encoding``); for an endpoint that reads the raw
  Request, a request with a host/URL override header (``X-Forwarded-Host``,
  ``X-Original-URL``, ...) that the key does not hold.
- ``key_request(request)``: HEAD is keyed as GET (for raw-Request endpoints too), so that it
  is answered from the GET entry.
- ``revalidation_due(request, entry, settings)``: ``client_cache_control="revalidate"``.
- ``verdict(...)``: may this rendered response be stored, for how long, and with which
  headers the cache adds (``Vary``, ``ETag``). ``Verdict.storable`` False is the signal for
  the single-flight to release its waiters: they must not share this response.
- ``hit(...)`` / ``miss(...)``: the Response, with ``Age``, ``Cache-Control: max-age``
  (remaining freshness unless the endpoint set its own), ``Vary``, ``ETag``,
  ``X-Cache-Status`` and ``Cache-Status`` (RFC 9211); a 304 for a matching
  ``If-None-Match`` (weak comparison, lists, ``*``); no body for HEAD.

Nothing here does I/O; ``cache.py`` does the lookups and the stores.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from fastapi.utils import is_body_allowed_for_status_code
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._request.response import raw_response
from fastapi_cachemate._request.rules import (
    CACHE_NAME,
    CacheStatuses,
    Refusal,
    cache_status,
    client_max_age,
    header_refusal,
    vary_names,
)
from fastapi_cachemate._route.keyer import RouteKeyer
from fastapi_cachemate.metrics import NotStored
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = [
    "CACHE_STATUS_HEADER",
    "STATUS_HEADER",
    "UNKEYED_OVERRIDE_HEADERS",
    "RouteHTTP",
    "StatusTTLs",
    "Verdict",
    "etag_matches",
    "freshness",
]

STATUS_HEADER = b"x-cache-status"
CACHE_STATUS_HEADER = b"cache-status"

#: Request headers that some frameworks and proxies use to override the host, the URL or
#: the method. An endpoint that reads the raw Request might read them; unless the key holds
#: them, such a request does not use the cache (it could poison the entry for everyone).
UNKEYED_OVERRIDE_HEADERS = frozenset(
    {
        b"x-forwarded-host",
        b"x-forwarded-server",
        b"x-forwarded-prefix",
        b"x-host",
        b"x-original-host",
        b"x-original-url",
        b"x-rewrite-url",
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
    }
)

#: What a 304 repeats of the 200 it stands for (RFC 9110 section 15.4.5).
_NOT_MODIFIED_HEADERS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"}
)

_CACHE_CONTROL = b"cache-control"
_X_HIT = (STATUS_HEADER, CacheStatuses.CACHE_HIT.value.encode("ascii"))
_X_MISS = (STATUS_HEADER, CacheStatuses.CACHE_MISS.value.encode("ascii"))
_HIT = b"hit"
_HIT_TTL = CACHE_NAME + b"; hit; ttl="
_FOREVER = 1e15  # seconds: beyond any ttl; keeps int() away from inf

REFUSED_AUTHORIZATION = Refusal.of(CacheStatuses.CACHE_NOT, b"request", b"authorization")
REFUSED_BODY = Refusal.of(CacheStatuses.CACHE_NOT, b"request", b"request-body")
REFUSED_OVERRIDE = Refusal.of(CacheStatuses.CACHE_NOT, b"request", b"unkeyed-header")


# --- what may be stored, and for how long ---------------------------------------------------


class StatusTTLs:
    """Which response statuses are stored, each with its TTL (seconds).

    ``statuses=None``: 2xx except 206, for ``ttl``. Otherwise the complete list: a mapping
    ``{status: ttl}`` or an iterable of statuses (each for ``ttl``). A status is an int
    (200..599 except 206 and 304, which a cache cannot store whole) or a class ``"2xx"`` ..
    ``"5xx"``; an exact status wins over its class.
    """

    __slots__ = ("_classes", "_exact", "default")

    def __init__(
        self, ttl: float, statuses: Mapping[int | str, float] | Iterable[int | str] | None = None
    ) -> None:
        self.default = ttl
        self._exact: dict[int, float] = {}
        self._classes: dict[int, float] = {}
        if statuses is None:
            self._classes[2] = ttl
            return
        if isinstance(statuses, (str, bytes)):
            raise TypeError(
                f"cache_response(statuses=...) must be a mapping or a list, got {statuses!r}"
            )
        items = (
            list(statuses.items())
            if isinstance(statuses, Mapping)
            else [(status, ttl) for status in statuses]
        )
        for status, status_ttl in items:
            seconds = _checked_seconds(status, status_ttl)
            if isinstance(status, str):
                self._classes[_status_class(status)] = seconds
            else:
                self._exact[_checked_status(status)] = seconds

    def longest(self) -> float:
        """The longest TTL of any stored status (how long a key's tag registrations last:
        they are made before the computation, whose status is not known yet)."""
        return max([*self._exact.values(), *self._classes.values()], default=0.0)

    def ttl_for(self, status: int) -> float | None:
        """The TTL of a response with this status, or None: not stored."""
        ttl = self._exact.get(status)
        if ttl is not None:
            return ttl
        if status == 206 or status == 304:
            return None
        return self._classes.get(status // 100)


def _checked_status(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"cache_response(statuses=...): {status!r} is not a status code")
    if not 200 <= status <= 599 or status in (206, 304):
        raise ValueError(
            f"cache_response(statuses=...): {status} cannot be cached "
            "(200..599, not 206 Partial Content nor 304 Not Modified)"
        )
    return status


def _status_class(status: str) -> int:
    if len(status) == 3 and status[0] in "2345" and status[1:].lower() == "xx":
        return int(status[0])
    raise ValueError(
        f"cache_response(statuses=...): {status!r} is not a status or a class ('2xx'..'5xx')"
    )


def _checked_seconds(status: object, ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"cache_response(statuses=...): the ttl of {status!r} must be a number")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"cache_response(statuses=...): the ttl of {status!r} must be > 0")
    return float(ttl)


class Verdict(NamedTuple):
    """May a rendered response be stored? ``reason`` is None when it may; else why not,
    counted as it is (``metrics.not_stored``), and ``detail`` its Cache-Status detail.

    ``added`` are the headers the cache adds (stored with the entry and sent on the miss):
    ``Vary`` for the keyed request headers the response does not list yet, and ``ETag``
    unless the endpoint set one. ``etag`` is what ``write_entry`` stores and what
    If-None-Match is compared with.
    """

    ttl: float
    reason: NotStored | None
    added: tuple[tuple[bytes, bytes], ...] = ()
    etag: bytes = b""
    own_cache_control: bool = False
    detail: str = ""

    @classmethod
    def refused(cls, reason: NotStored, detail: str | None = None) -> Verdict:
        """Not storable, for reason (detail: its token unless given)."""
        return cls(0.0, reason, detail=reason.value if detail is None else detail)

    @property
    def storable(self) -> bool:
        return self.reason is None


# --- validators and freshness ---------------------------------------------------------------


def _entity_tags(value: bytes) -> Iterable[bytes]:
    """The entity-tags of one If-None-Match value: ``*``, ``"x"`` or ``W/"x"`` (the W/
    dropped: weak comparison), skipping anything malformed up to the next comma."""
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in b" \t,":
            i += 1
            continue
        if c == 0x2A:  # "*"
            yield b"*"
            i += 1
            continue
        if value.startswith(b"W/", i):
            i += 2
        if i < n and value[i] == 0x22:  # '"'
            end = value.find(b'"', i + 1)
            if end == -1:
                return
            yield value[i : end + 1]
            i = end + 1
            continue
        comma = value.find(b",", i)
        if comma == -1:
            return
        i = comma + 1


def etag_matches(values: list[bytes], etag: bytes) -> bool:
    """RFC 9110 section 13.1.2: does If-None-Match (its header values) match this ETag?

    Weak comparison (``W/"a"`` matches ``"a"``), any member of a list, and ``*``.
    """
    if not etag:
        return False
    opaque = etag[2:] if etag.startswith(b"W/") else etag
    for value in values:
        for tag in _entity_tags(value):
            if tag == b"*" or tag == opaque:
                return True
    return False


def freshness(age: float, remaining: float) -> tuple[int, int]:
    """(Age, max-age) in whole seconds for an entry of this age and remaining freshness.

    Both are rounded down, so that ``max-age <= remaining`` (never a promise beyond the
    entry's life) and ``Age + max-age <= age + remaining = ttl``. A stale entry
    (``remaining <= 0``) has max-age 0.
    """
    # int() truncates, which is floor for positive numbers; the comparisons are False for NaN
    whole_age = int(age) if 0 < age < _FOREVER else 0
    max_age = int(remaining) if 0 < remaining < _FOREVER else 0
    return whole_age, max_age


def _signed_floor(seconds: float) -> int:
    """floor(seconds) for Cache-Status ttl (negative once stale); 0 for NaN or infinities."""
    return math.floor(seconds) if -_FOREVER < seconds < _FOREVER else 0


def _request_values(request: Request, name: bytes) -> list[bytes] | None:
    """The values of a request header, or None when it is absent (the common case)."""
    found: list[bytes] | None = None
    for key, value in request.scope["headers"]:
        if key == name:
            if found is None:
                found = [value]
            else:
                found.append(value)
    return found


def _has(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    # a loop, not any(<genexpr>): half the cost on the hit path
    for key, _ in headers:  # noqa: SIM110
        if key == name:
            return True
    return False


def _is_async_callable(obj: Any) -> bool:
    """As Starlette decides how to call an exception handler (partials unwrapped)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (
        callable(obj) and inspect.iscoroutinefunction(getattr(obj, "__call__", None))  # noqa: B004
    )


def _not_modified(
    headers: list[tuple[bytes, bytes]], tail: list[tuple[bytes, bytes]], background: Any = None
) -> Response:
    kept = [pair for pair in headers if pair[0] in _NOT_MODIFIED_HEADERS]
    kept.extend(tail)
    return raw_response(304, kept, b"", background)


# --- per route ------------------------------------------------------------------------------


class RouteHTTP:
    """The HTTP rules of one cached route (see the module docstring)."""

    __slots__ = ("_authorization_ok", "_keyed", "_raw", "_statuses", "_varies", "_vary", "keyer")

    def __init__(self, keyer: RouteKeyer, statuses: StatusTTLs, *, public: bool = False) -> None:
        self.keyer = keyer
        self._statuses = statuses
        self._raw = keyer.reads_request
        headers = [name.lower() for name in keyer.header_names]
        self._keyed = frozenset(name.encode("latin-1") for name in headers)
        # What a response may say it varies on: the keyed headers, and Cookie when the key
        # holds cookies (it holds the ones the endpoint reads).
        self._varies = self._keyed | ({b"cookie"} if keyer.cookie_names else frozenset())
        self._authorization_ok = public or b"authorization" in self._keyed
        # What the response varies on: the keyed request headers (Host is part of the URI).
        vary = [name for name in headers if name != "host"]
        if keyer.cookie_names:
            vary.append("cookie")
        self._vary = tuple(vary)

    @property
    def vary(self) -> tuple[str, ...]:
        """The request header names this route's responses vary on (lower case)."""
        return self._vary

    # --- before the lookup ----------------------------------------------------------------

    def refuse(self, request: Request) -> Refusal | None:
        """Why this request must not use the cache at all (None: it may)."""
        for name, value in request.scope["headers"]:
            if name == b"authorization":
                if not self._authorization_ok:
                    return REFUSED_AUTHORIZATION
            elif name == b"content-length":
                if value.strip(b" \t0"):  # not (empty or) zero: a body
                    return REFUSED_BODY
            elif name == b"transfer-encoding":
                return REFUSED_BODY
            elif self._raw and name in UNKEYED_OVERRIDE_HEADERS and name not in self._keyed:
                return REFUSED_OVERRIDE
        return None

    def key_request(self, request: Request) -> Request:
        """The request to key: a HEAD to a raw-Request endpoint is keyed as its GET (the
        keyer folds HEAD onto GET by itself for every other endpoint)."""
        if self._raw and request.scope.get("method") == "HEAD":
            return Request({**request.scope, "method": "GET"})
        return request

    def revalidation_due(self, request: Request, entry: Any, settings: BaseCacheSettings) -> bool:
        """``client_cache_control="revalidate"``: does this request's Cache-Control
        (``no-cache``, ``no-store``, ``max-age=N``) ask for a fresher response than this
        entry, and is the entry old enough (``revalidate_min_age``) to be recomputed?

        True means: treat the entry as a miss and go through the one computation that every
        concurrent request of the key shares (the single-flight), then store its result.
        """
        if settings.client_cache_control != "revalidate":
            return False
        limit = client_max_age(request)
        if limit is None:
            return False
        age: float = entry.age
        return age > limit and age >= settings.revalidate_min_age

    # --- after the computation ------------------------------------------------------------

    async def handled(self, exc: HTTPException, request: Request) -> Response | None:
        """The app's answer to an HTTPException the endpoint raised, when its status is one
        that ``statuses=`` stores (``raise HTTPException(404)`` with ``statuses={404: 30}``);
        None: re-raise it, as without the cache.

        The handler is the one Starlette's exception middleware would pick (a handler for
        the status code first, then for the exception's class), called the same way, so
        the stored bytes are what the app would have sent.
        """
        if self._statuses.ttl_for(exc.status_code) is None:
            return None
        handlers = request.scope.get("starlette.exception_handlers")
        if not isinstance(handlers, tuple) or len(handlers) != 2:
            return None
        exception_handlers, status_handlers = handlers
        handler = status_handlers.get(exc.status_code)
        if handler is None:
            for cls in type(exc).__mro__:
                handler = exception_handlers.get(cls)
                if handler is not None:
                    break
        if handler is None:
            return None
        if _is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        return response if isinstance(response, Response) else None

    def verdict(
        self,
        request: Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes | memoryview,
    ) -> Verdict:
        """May this response (headers: those that would be stored) be stored, and how."""
        ttl = self._statuses.ttl_for(status)
        if ttl is None:
            return Verdict.refused(NotStored.STATUS, f"status-{status}")
        reason = header_refusal(headers)
        if reason is not None:
            return Verdict.refused(reason)
        own_etag = b""
        own_cache_control = False
        listed: list[bytes] = []
        for name, value in headers:
            if name == b"etag":
                own_etag = own_etag or value
            elif name == _CACHE_CONTROL:
                own_cache_control = True
            elif name == b"vary":
                listed.append(value)
        varied = vary_names(listed)
        if any(name.encode("latin-1") not in self._varies for name in varied):
            # The endpoint says the response depends on a request header the key ignores.
            return Verdict.refused(NotStored.VARY_UNKEYED)
        if request.scope.get("method") == "HEAD":
            if self._raw:  # the endpoint saw HEAD: its answer is not the GET entry
                return Verdict.refused(NotStored.HEAD)
            if not body and is_body_allowed_for_status_code(status):
                return Verdict.refused(NotStored.HEAD_EMPTY_BODY)
        added: list[tuple[bytes, bytes]] = []
        missing = [name for name in self._vary if name not in varied]
        if missing:
            added.append((b"vary", ", ".join(missing).encode("latin-1")))
        etag = own_etag
        if not etag:
            etag = kernels.body_etag(body)
            added.append((b"etag", etag))
        return Verdict(ttl, None, tuple(added), etag, own_cache_control)

    # --- the responses --------------------------------------------------------------------

    def hit(
        self,
        entry: Any,
        request: Request,
        sub_response: Response,
        *,
        params: tuple[bytes, ...] = (),
    ) -> Response:
        """The response for a usable entry: a 304 when If-None-Match matches its ETag.

        ``params`` are more Cache-Status parameters. The entry is not modified (it may be
        shared between requests).
        """
        remaining: float = entry.remaining
        cache_state = _HIT_TTL + b"%d" % _signed_floor(remaining)
        if params:
            cache_state = b"; ".join((cache_state, *params))
        return self.from_entry(entry, request, sub_response, _X_HIT[1], cache_state)

    def stale(
        self,
        entry: Any,
        request: Request,
        sub_response: Response,
        *,
        x_cache_status: bytes = b"HIT",
        detail: bytes = b"",
    ) -> Response:
        """Hook for issue 5: a stale entry served (stale-while-revalidate, stale-if-error).

        ``Cache-Status: fastapi-cachemate; hit; ttl=<negative>[; detail=...]`` (a negative
        ttl is how RFC 9211 says stale), ``max-age=0`` unless the endpoint set its own,
        ``Age`` past the ttl; the X-Cache-Status value is the caller's.
        """
        cache_state = _HIT_TTL + b"%d" % _signed_floor(entry.remaining)
        if detail:
            cache_state += b"; detail=" + detail
        return self.from_entry(entry, request, sub_response, x_cache_status, cache_state)

    def collapsed(
        self,
        entry: Any,
        request: Request,
        sub_response: Response,
        *,
        fwd: bytes = b"uri-miss",
    ) -> Response:
        """Hook for issue 5: a request that waited for another request's (or process's)
        computation of its key and sends that result, as its own request asks (HEAD,
        If-None-Match, its dependencies' headers).

        ``entry``: anything with status, headers (as stored), body, etag, age and remaining,
        e.g. ``kernels.read_entry(blob, now)`` of the blob the leader stored. Only a
        storable computation may be shared (``Verdict.storable``).
        ``X-Cache-Status: MISS``, ``Cache-Status: fastapi-cachemate; fwd=...; collapsed``.
        """
        cache_state = cache_status(b"fwd=" + fwd, b"collapsed")
        return self.from_entry(entry, request, sub_response, _X_MISS[1], cache_state)

    def from_entry(
        self,
        entry: Any,
        request: Request,
        sub_response: Response,
        x_cache_status: bytes,
        cache_state: bytes,
    ) -> Response:
        """A stored response sent to this request: Age, max-age (remaining freshness unless
        the endpoint set a Cache-Control), this request's dependency headers, both status
        headers; a 304 for a matching If-None-Match on a 2xx; no body for HEAD."""
        stored: list[tuple[bytes, bytes]] = entry.headers
        age, max_age = freshness(entry.age, entry.remaining)
        headers = [*stored, (b"age", b"%d" % age)]
        if not _has(stored, _CACHE_CONTROL):
            headers.append((_CACHE_CONTROL, b"max-age=%d" % max_age))
        headers += sub_response.raw_headers  # what this request's dependencies set
        headers.append((STATUS_HEADER, x_cache_status))
        headers.append((CACHE_STATUS_HEADER, cache_state))
        status: int = entry.status
        if 200 <= status < 300:
            conditions = _request_values(request, b"if-none-match")
            if conditions and etag_matches(conditions, entry.etag):
                return _not_modified(stored, headers[len(stored) :])
        body = b"" if request.scope["method"] == "HEAD" else entry.body
        return raw_response(status, headers, body)

    def miss(
        self,
        rendered: Response,
        request: Request,
        verdict: Verdict,
        *,
        stored: bool,
        fwd: bytes = b"uri-miss",
        params: tuple[bytes, ...] = (),
        dependency_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Response:
        """The response computed for this request (``rendered``, whose headers are extended
        in place), as it goes out: a 304 when If-None-Match matches a storable response's
        ETag, no body for HEAD. ``stored``: the entry was written. ``dependency_headers``:
        those of rendered's headers that this request's dependencies set (a 304 keeps them).
        """
        headers = rendered.raw_headers
        if not verdict.storable:
            headers.append(_X_MISS)
            detail = verdict.detail.encode("latin-1")
            headers.append(
                (CACHE_STATUS_HEADER, cache_status(b"fwd=" + fwd, *params, b"detail=" + detail))
            )
            return rendered
        headers.extend(verdict.added)
        ttl = int(verdict.ttl)
        tail: list[tuple[bytes, bytes]] = []
        if not verdict.own_cache_control:
            tail.append((_CACHE_CONTROL, b"max-age=%d" % ttl))
        tail.append(_X_MISS)
        outcome = (b"stored", b"ttl=%d" % ttl) if stored else (b"detail=not-stored",)
        tail.append((CACHE_STATUS_HEADER, cache_status(b"fwd=" + fwd, *outcome, *params)))
        status = rendered.status_code
        if 200 <= status < 300:
            conditions = _request_values(request, b"if-none-match")
            if conditions and etag_matches(conditions, verdict.etag):
                return _not_modified(
                    headers, [*(dependency_headers or ()), *tail], rendered.background
                )
        headers.extend(tail)
        if request.scope.get("method") == "HEAD":
            return raw_response(status, headers, b"", rendered.background)
        return rendered
