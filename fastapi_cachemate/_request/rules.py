"""The first step of a request: may this request use the cache at all?

``refusal()`` returns None when the request may be answered from (and stored in) the cache,
or a ``Refusal`` that says why not, in both status headers:

- BYPASS (``Cache-Status: fwd=bypass``): the server said so, by the configured bypass header
  and value (``BaseCacheSettings.bypass_header`` / ``bypass_value``) or by ``is_bypass`` set
  in a dependency;
- NO_CACHE, ``fwd=method``: the method is not GET / HEAD;
- NO_CACHE, ``fwd=request``: the client said so (``Cache-Control: no-cache`` or
  ``no-store``) and the ``client_cache_control`` setting is ``"bypass"`` (the seed's
  behaviour). With ``"ignore"`` client directives are ignored; with ``"revalidate"`` they
  do not refuse the cache here: ``client_max_age()`` tells the hit path (``http``) to
  refresh an entry that is older than the client accepts.

The order is the seed's: server decisions first, then the method and the client's.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from enum import Enum
from typing import NamedTuple

from starlette.requests import Request

from fastapi_cachemate.core.types import ByPass
from fastapi_cachemate.metrics import NotStored
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = [
    "CACHEABLE_METHODS",
    "CACHE_NAME",
    "CacheStatuses",
    "Refusal",
    "cache_control_directives",
    "cache_status",
    "client_max_age",
    "client_skips_cache",
    "header_refusal",
    "is_bypass",
    "refusal",
    "vary_names",
]

is_bypass: ContextVar[bool] = ContextVar("is_bypass", default=False)

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
_SKIP_DIRECTIVES = frozenset({"no-cache", "no-store"})
# Cache-Control directives of a response that forbid storing it, no-store first
_DIRECTIVE_REFUSALS = (("no-store", NotStored.NO_STORE), ("private", NotStored.PRIVATE))


class CacheStatuses(str, Enum):
    """The values of the X-Cache-Status header (the seed's names)."""

    CACHE_HIT = "HIT"
    CACHE_MISS = "MISS"
    CACHE_BYPASS = "BYPASS"
    CACHE_NOT = "NO_CACHE"


#: The cache's name in the ``Cache-Status`` header (RFC 9211).
CACHE_NAME = b"fastapi-cachemate"


def cache_status(*params: bytes) -> bytes:
    """A ``Cache-Status`` member: ``fastapi-cachemate; <param>; <param>...`` (RFC 9211)."""
    return b"; ".join((CACHE_NAME, *params))


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


def refusal(request: Request, bypass: ByPass, settings: BaseCacheSettings) -> Refusal | None:
    """None if the cache may be used for this request, else why not."""
    if is_bypass.get() or _bypass_header_matches(request, bypass):
        return REFUSED_BYPASS
    if request.method not in CACHEABLE_METHODS:
        return REFUSED_METHOD
    if settings.client_cache_control == "bypass" and client_skips_cache(request):
        return REFUSED_CLIENT
    return None


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
