"""The rules of HTTP caching, in one place: may a request use the cache, may a response be
stored, and why not (typed reasons, sent in both status headers and counted).

Request rules (:meth:`RouteRules.refuse`), in the seed's order, server decisions first:

- BYPASS (``Cache-Status: fwd=bypass``): the server said so, by the configured bypass header
  and value (``BaseCacheSettings.bypass_header`` / ``bypass_value``) or by ``is_bypass`` set
  in a dependency;
- NO_CACHE, ``fwd=method``: the method is not GET / HEAD;
- NO_CACHE, ``fwd=request``: the client said so (``Cache-Control: no-cache`` or
  ``no-store``) and the ``client_cache_control`` setting is ``"bypass"`` (the seed's
  behaviour). With ``"ignore"`` client directives are ignored; with ``"revalidate"`` they
  do not refuse the cache: :meth:`RouteRules.revalidation_due` recomputes an entry older
  than the client accepts;
- NO_CACHE for what the route's key cannot tell apart: a request with ``Authorization``
  unless the endpoint opted in (``public=True``) or the key holds it
  (``vary=["Authorization"]``, a security scheme); a request with a body
  (``Content-Length`` > 0 or ``Transfer-Encoding``); for an endpoint that reads the raw
  Request, a request with a host/URL override header (``X-Forwarded-Host``,
  ``X-Original-URL``, ...) that the key does not hold.

Response rules (:meth:`RouteRules.verdict`): the status is one ``statuses=`` stores
(:class:`StatusTTLs`), no ``Set-Cookie``, no ``Cache-Control: no-store`` or ``private``, no
``Vary: *`` nor a Vary on a request header the key ignores, and a HEAD answer only when it
stands for the GET's. The :class:`Verdict` also says which headers the cache adds (``Vary``,
``ETag``); ``Verdict.storable`` False is the signal for the single flight to release its
waiters: they must not share this response.

Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import NamedTuple

from fastapi.utils import is_body_allowed_for_status_code
from starlette.requests import Request

from fastapi_cachemate._kernels import Entry, kernels
from fastapi_cachemate._request.status import CacheStatuses, cache_status
from fastapi_cachemate._route.keyer import RouteKeyer
from fastapi_cachemate.core.types import ByPass
from fastapi_cachemate.metrics import NotStored
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = [
    "CACHEABLE_METHODS",
    "REFUSED_AUTHORIZATION",
    "UNKEYED_OVERRIDE_HEADERS",
    "Refusal",
    "RouteRules",
    "StatusTTLs",
    "Verdict",
    "cache_control_directives",
    "client_max_age",
    "client_skips_cache",
    "header_refusal",
    "is_bypass",
    "refuse",
    "vary_names",
]

is_bypass: ContextVar[bool] = ContextVar("is_bypass", default=False)

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
_SKIP_DIRECTIVES = frozenset({"no-cache", "no-store"})
# Cache-Control directives of a response that forbid storing it, no-store first
_DIRECTIVE_REFUSALS = (("no-store", NotStored.NO_STORE), ("private", NotStored.PRIVATE))

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


# --- why a request does not use the cache ----------------------------------------------------


class Refusal(NamedTuple):
    """Why a request does not use the cache: the X-Cache-Status value and the Cache-Status
    member (``fwd=...`` and an optional ``detail=...``)."""

    status: CacheStatuses
    cache_status: bytes

    @classmethod
    def of(cls, status: CacheStatuses, fwd: bytes, detail: bytes = b"") -> Refusal:
        params = [b"fwd=" + fwd]
        if detail:
            params.append(b"detail=" + detail)
        return cls(status, cache_status(*params))


REFUSED_BYPASS = Refusal.of(CacheStatuses.CACHE_BYPASS, b"bypass")

REFUSED_METHOD = Refusal.of(CacheStatuses.CACHE_NOT, b"method")

REFUSED_CLIENT = Refusal.of(CacheStatuses.CACHE_NOT, b"request", b"client-no-cache")

REFUSED_AUTHORIZATION = Refusal.of(CacheStatuses.CACHE_NOT, b"request", b"authorization")
REFUSED_BODY = Refusal.of(CacheStatuses.CACHE_NOT, b"request", b"request-body")
REFUSED_OVERRIDE = Refusal.of(CacheStatuses.CACHE_NOT, b"request", b"unkeyed-header")
REFUSED_ROUTE = Refusal.of(CacheStatuses.CACHE_NOT, b"bypass", b"unkeyable-route")
REFUSED_KEY = Refusal.of(CacheStatuses.CACHE_BYPASS, b"bypass", b"unkeyable-request")
NOT_BUFFERED = Refusal.of(CacheStatuses.CACHE_NOT, b"uri-miss", b"not-buffered")


# --- the client's Cache-Control -------------------------------------------------------------


def cache_control_directives(values: list[str]) -> dict[str, str | None]:
    """Parse Cache-Control header values (RFC 9111 section 5.2) into {directive: argument}.

    Directive names are case-insensitive (lower-cased here); an argument is a token or a
    quoted-string (unquoted here, backslash escapes resolved). Commas inside a quoted-string
    do not split. The first occurrence of a directive wins. Garbage is skipped, never raised.
    """
    directives: dict[str, str | None] = {}
    for value in values:
        for name, argument in _split_directives(value):
            if name and name not in directives:
                directives[name] = argument
    return directives


def _split_directives(value: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(value)
    while i < n:
        comma = value.find(",", i)
        equals = value.find("=", i)
        if equals == -1 or (comma != -1 and comma < equals):
            end = n if comma == -1 else comma
            out.append((value[i:end].strip().lower(), None))
            i = end + 1
            continue
        name = value[i:equals].strip().lower()
        argument, i = _read_argument(value, equals + 1)
        out.append((name, argument))
    return out


def _read_argument(value: str, i: int) -> tuple[str, int]:
    """The argument starting at value[i] and the index just past its trailing comma."""
    n = len(value)
    while i < n and value[i] in " \t":
        i += 1
    if i < n and value[i] == '"':
        chars: list[str] = []
        i += 1
        while i < n and value[i] != '"':
            if value[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(value[i])
            i += 1
        comma = value.find(",", i)
        return "".join(chars), n if comma == -1 else comma + 1
    comma = value.find(",", i)
    end = n if comma == -1 else comma
    return value[i:end].strip(), end + 1


def client_skips_cache(request: Request) -> bool:
    """True when the request's Cache-Control carries no-cache or no-store."""
    values = request.headers.getlist("cache-control")
    if not values:
        return False
    return not _SKIP_DIRECTIVES.isdisjoint(cache_control_directives(values))


def client_max_age(request: Request) -> float | None:
    """The oldest entry (seconds) the client's Cache-Control accepts; None: any.

    ``no-cache`` and ``no-store`` are 0, ``max-age=N`` is N (the smallest when several
    directives say something); an invalid max-age argument is ignored.
    """
    values = request.headers.getlist("cache-control")
    if not values:
        return None
    directives = cache_control_directives(values)
    limit: float | None = None
    if not _SKIP_DIRECTIVES.isdisjoint(directives):
        limit = 0.0
    argument = directives.get("max-age")
    if argument is not None and argument.isdigit():  # delta-seconds: 1*DIGIT
        seconds = float(argument)
        if math.isfinite(seconds) and (limit is None or seconds < limit):
            limit = seconds
    return limit


def _bypass_header_matches(request: Request, bypass: ByPass) -> bool:
    if bypass.value is None:
        return False
    got = request.headers.get(bypass.header)
    return got is not None and got == bypass.value


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


def header_refusal(headers: list[tuple[bytes, bytes]]) -> NotStored | None:
    """Why these response headers forbid storing (its value: the Cache-Status detail) or None.

    Never stored, whatever the status (RFC 9111 section 3 for a shared cache): a response
    that sets a cookie (one client's cookie would be replayed to all), that says
    ``Cache-Control: no-store`` or ``private`` (qualified or not), or ``Vary: *``.
    """
    cache_control: list[str] = []
    for name, value in headers:
        if name == b"set-cookie":
            return NotStored.SET_COOKIE
        if name == b"cache-control":
            cache_control.append(value.decode("latin-1"))
        elif name == b"vary" and b"*" in value and "*" in vary_names([value]):
            return NotStored.VARY_STAR
    if cache_control:
        directives = cache_control_directives(cache_control)
        for directive, reason in _DIRECTIVE_REFUSALS:
            if directive in directives:
                return reason
    return None


def vary_names(values: list[bytes]) -> list[str]:
    """The field names of Vary header values, lower-cased, in order, without duplicates."""
    names: list[str] = []
    for value in values:
        for part in value.decode("latin-1").split(","):
            name = part.strip().lower()
            if name and name not in names:
                names.append(name)
    return names


class RouteRules:
    """The rules of one cached route, built from its keyer on its first request."""

    __slots__ = ("_authorization_ok", "_keyed", "_raw", "_statuses", "_varies", "_vary")

    def __init__(self, keyer: RouteKeyer, statuses: StatusTTLs, *, public: bool = False) -> None:
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

    def refuse(self, request: Request) -> Refusal | None:
        """The route's own reasons not to use the cache for this request: what its key
        cannot tell apart (None: it may)."""
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

    def revalidation_due(self, request: Request, entry: Entry, settings: BaseCacheSettings) -> bool:
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
        age = entry.age
        return age > limit and age >= settings.revalidate_min_age

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
            elif name == b"cache-control":
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


def refuse(
    request: Request, rules: RouteRules | None, bypass: ByPass, settings: BaseCacheSettings
) -> Refusal | None:
    """Why this request does not use the cache (None: it does). ``rules`` None: the route
    cannot be keyed. The order is the seed's: the server's decisions, the method, the
    client's Cache-Control; then the route's own."""
    if is_bypass.get() or _bypass_header_matches(request, bypass):
        return REFUSED_BYPASS
    if request.method not in CACHEABLE_METHODS:
        return REFUSED_METHOD
    if settings.client_cache_control == "bypass" and client_skips_cache(request):
        return REFUSED_CLIENT
    if rules is None:
        return REFUSED_ROUTE
    return rules.refuse(request)
