"""What a cached answer carries: the response of a hit, a stale entry, a collapsed request
or a miss, with ``Age``, ``Cache-Control: max-age`` (the remaining freshness unless the
endpoint set its own), the status headers (``X-Cache-Status``, ``Cache-Status``, RFC 9211),
a 304 for a matching ``If-None-Match`` (weak comparison, lists, ``*``) and no body for HEAD.

Nothing here does I/O, and nothing depends on the route: the headers a route adds to what
it stores (``Vary``, ``ETag``) were decided by its rules (``rules.Verdict``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate._request.response import raw_response
from fastapi_cachemate._request.rules import Verdict
from fastapi_cachemate._request.status import (
    CACHE_NAME,
    CACHE_STATUS_HEADER,
    STATUS_HEADER,
    CacheStatuses,
    cache_status,
    x_cache_status,
)

__all__ = [
    "StoredResponse",
    "collapsed",
    "etag_matches",
    "freshness",
    "hit",
    "miss",
    "stale",
]

#: What a 304 repeats of the 200 it stands for (RFC 9110 section 15.4.5).
_NOT_MODIFIED_HEADERS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"}
)

_CACHE_CONTROL = b"cache-control"
_HIT = x_cache_status(CacheStatuses.CACHE_HIT)
_X_MISS = (STATUS_HEADER, x_cache_status(CacheStatuses.CACHE_MISS))
_HIT_TTL = CACHE_NAME + b"; hit; ttl="
_FOREVER = 1e15  # seconds: beyond any ttl; keeps int() away from inf


class StoredResponse(Protocol):
    """A stored response as the answers read it: an entry (``kernels.read_entry``) or
    a computation another request shares."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...  # as stored
    @property
    def body(self) -> bytes: ...
    @property
    def etag(self) -> bytes: ...
    @property
    def age(self) -> float: ...  # seconds since it was computed
    @property
    def remaining(self) -> float: ...  # seconds of freshness left (negative once stale)


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


def _not_modified(
    headers: list[tuple[bytes, bytes]], tail: list[tuple[bytes, bytes]], background: Any = None
) -> Response:
    kept = [pair for pair in headers if pair[0] in _NOT_MODIFIED_HEADERS]
    kept.extend(tail)
    return raw_response(304, kept, b"", background)


# --- the answers ----------------------------------------------------------------------------


def hit(
    entry: StoredResponse,
    request: Request,
    sub_response: Response,
    *,
    params: tuple[bytes, ...] = (),
) -> Response:
    """The response for a usable entry: a 304 when If-None-Match matches its ETag.

    ``params`` are more Cache-Status parameters. The entry is not modified (it may be
    shared between requests).
    """
    cache_state = _HIT_TTL + b"%d" % _signed_floor(entry.remaining)
    if params:
        cache_state = b"; ".join((cache_state, *params))
    return _from_entry(entry, request, sub_response, _HIT, cache_state)


def stale(
    entry: StoredResponse,
    request: Request,
    sub_response: Response,
    *,
    x_cache_status: bytes,
    detail: bytes = b"",
) -> Response:
    """A stale entry served (stale-while-revalidate, stale-if-error).

    ``Cache-Status: fastapi-cachemate; hit; ttl=<negative>[; detail=...]`` (a negative
    ttl is how RFC 9211 says stale), ``max-age=0`` unless the endpoint set its own,
    ``Age`` past the ttl; the X-Cache-Status value is the caller's.
    """
    cache_state = _HIT_TTL + b"%d" % _signed_floor(entry.remaining)
    if detail:
        cache_state += b"; detail=" + detail
    return _from_entry(entry, request, sub_response, x_cache_status, cache_state)


def collapsed(
    entry: StoredResponse, request: Request, sub_response: Response, *, fwd: bytes
) -> Response:
    """A request that waited for another request's (or process's) computation of its key
    and sends that result, as its own request asks (HEAD, If-None-Match, its dependencies'
    headers). Only a storable computation may be shared (``Verdict.storable``).
    ``X-Cache-Status: MISS``, ``Cache-Status: fastapi-cachemate; fwd=...; collapsed``.
    """
    cache_state = cache_status(b"fwd=" + fwd, b"collapsed")
    return _from_entry(entry, request, sub_response, _X_MISS[1], cache_state)


def _from_entry(
    entry: StoredResponse,
    request: Request,
    sub_response: Response,
    x_cache_status: bytes,
    cache_state: bytes,
) -> Response:
    """A stored response sent to this request: Age, max-age (remaining freshness unless
    the endpoint set a Cache-Control), this request's dependency headers, both status
    headers; a 304 for a matching If-None-Match on a 2xx; no body for HEAD."""
    stored = entry.headers
    age, max_age = freshness(entry.age, entry.remaining)
    headers = [*stored, (b"age", b"%d" % age)]
    if not _has(stored, _CACHE_CONTROL):
        headers.append((_CACHE_CONTROL, b"max-age=%d" % max_age))
    headers += sub_response.raw_headers  # what this request's dependencies set
    headers.append((STATUS_HEADER, x_cache_status))
    headers.append((CACHE_STATUS_HEADER, cache_state))
    status = entry.status
    if 200 <= status < 300:
        conditions = _request_values(request, b"if-none-match")
        if conditions and etag_matches(conditions, entry.etag):
            return _not_modified(stored, headers[len(stored) :])
    body = b"" if request.scope["method"] == "HEAD" else entry.body
    return raw_response(status, headers, body)


def miss(
    rendered: Response,
    request: Request,
    verdict: Verdict,
    *,
    stored: bool,
    fwd: bytes,
    dependency_headers: list[tuple[bytes, bytes]],
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
        headers.append((CACHE_STATUS_HEADER, cache_status(b"fwd=" + fwd, b"detail=" + detail)))
        return rendered
    headers.extend(verdict.added)
    ttl = int(verdict.ttl)
    tail: list[tuple[bytes, bytes]] = []
    if not verdict.own_cache_control:
        tail.append((_CACHE_CONTROL, b"max-age=%d" % ttl))
    tail.append(_X_MISS)
    outcome = (b"stored", b"ttl=%d" % ttl) if stored else (b"detail=not-stored",)
    tail.append((CACHE_STATUS_HEADER, cache_status(b"fwd=" + fwd, *outcome)))
    status = rendered.status_code
    if 200 <= status < 300:
        conditions = _request_values(request, b"if-none-match")
        if conditions and etag_matches(conditions, verdict.etag):
            return _not_modified(headers, [*dependency_headers, *tail], rendered.background)
    headers.extend(tail)
    if request.scope.get("method") == "HEAD":
        return raw_response(status, headers, b"", rendered.background)
    return rendered
