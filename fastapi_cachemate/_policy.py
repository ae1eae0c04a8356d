"""The first step of a request: may this request use the cache at all?

``decide()`` returns None when the request may be answered from (and stored in) the cache,
or the status that says why not:

- BYPASS: the server said so, by the configured bypass header and value
  (``BaseCacheSettings.bypass_header`` / ``bypass_value``) or by ``is_bypass`` set in a
  dependency;
- NO_CACHE: the client said so (``Cache-Control: no-cache`` or ``no-store``, unless the
  ``client_cache_control`` setting is ``"ignore"``), or the method is not GET / HEAD.

The order is the seed's: server decisions first, then the client's and the method.
"""

from __future__ import annotations

from contextvars import ContextVar
from enum import Enum

from starlette.requests import Request

from fastapi_cachemate.core.types import ByPass
from fastapi_cachemate.settings import BaseCacheSettings

__all__ = [
    "CACHEABLE_METHODS",
    "CacheStatuses",
    "cache_control_directives",
    "client_skips_cache",
    "decide",
    "is_bypass",
    "unstorable_reason",
]

is_bypass: ContextVar[bool] = ContextVar("is_bypass", default=False)

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
_SKIP_DIRECTIVES = frozenset({"no-cache", "no-store"})
_PRIVATE_DIRECTIVES = frozenset({"no-store", "private"})


class CacheStatuses(str, Enum):
    """The values of the X-Cache-Status header (the seed's names)."""

    CACHE_HIT = "HIT"
    CACHE_MISS = "MISS"
    CACHE_BYPASS = "BYPASS"
    CACHE_NOT = "NO_CACHE"


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


def _bypass_header_matches(request: Request, bypass: ByPass) -> bool:
    if bypass.value is None:
        return False
    got = request.headers.get(bypass.header)
    return got is not None and got == bypass.value


def decide(request: Request, bypass: ByPass, settings: BaseCacheSettings) -> CacheStatuses | None:
    """None if the cache may be used for this request, else BYPASS or NO_CACHE."""
    if is_bypass.get() or _bypass_header_matches(request, bypass):
        return CacheStatuses.CACHE_BYPASS
    if request.method not in CACHEABLE_METHODS:
        return CacheStatuses.CACHE_NOT
    # "revalidate" (issue 4) behaves as "bypass" until the revalidation path exists.
    if settings.client_cache_control != "ignore" and client_skips_cache(request):
        return CacheStatuses.CACHE_NOT
    return None


def unstorable_reason(status: int, headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a rendered response must not be stored (None: it may be).

    The minimal rule of a shared cache (issue 4 refines it): 2xx only; never a response that
    sets a cookie (one client's cookie would be replayed to all) or that says
    ``Cache-Control: no-store`` / ``private``. headers are the ones that would be stored
    (those of the request's dependencies are already removed).
    """
    if not 200 <= status < 300:
        return f"status {status}"
    cache_control: list[str] = []
    for name, value in headers:
        if name == b"set-cookie":
            return "set-cookie"
        if name == b"cache-control":
            cache_control.append(value.decode("latin-1"))
    if cache_control:
        found = _PRIVATE_DIRECTIVES.intersection(cache_control_directives(cache_control))
        if found:
            return f"cache-control: {', '.join(sorted(found))}"
    return None
