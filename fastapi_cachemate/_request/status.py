"""The cache's two status headers: their names and their values, in one place.

``X-Cache-Status`` (the seed's header) is one of :class:`CacheStatuses` (``HIT``, ``MISS``,
``BYPASS``, ``NO_CACHE``) or, for a stale entry served, ``STALE`` / ``STALE_IF_ERROR``.
``Cache-Status`` (RFC 9211) is one member, ``fastapi-cachemate; <param>; <param>...``
(:func:`cache_status`).
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "CACHE_NAME",
    "CACHE_STATUS_HEADER",
    "STALE",
    "STALE_IF_ERROR",
    "STATUS_HEADER",
    "CacheStatuses",
    "cache_status",
    "x_cache_status",
]

STATUS_HEADER = b"x-cache-status"
CACHE_STATUS_HEADER = b"cache-status"


class CacheStatuses(str, Enum):
    """The values of the X-Cache-Status header (the seed's names)."""

    CACHE_HIT = "HIT"
    CACHE_MISS = "MISS"
    CACHE_BYPASS = "BYPASS"
    CACHE_NOT = "NO_CACHE"


#: X-Cache-Status values beyond the seed's (CacheStatuses keeps the seed's enum as it was)
STALE = b"STALE"  # past its ttl, inside stale_while_revalidate: one refresh runs
STALE_IF_ERROR = b"STALE_IF_ERROR"  # the endpoint failed: the stale entry stands in

_VALUES = {status: status.value.encode("ascii") for status in CacheStatuses}


def x_cache_status(status: CacheStatuses) -> bytes:
    """The X-Cache-Status header value of one of the seed's statuses."""
    return _VALUES[status]


#: The cache's name in the ``Cache-Status`` header (RFC 9211).
CACHE_NAME = b"fastapi-cachemate"


def cache_status(*params: bytes) -> bytes:
    """A ``Cache-Status`` member: ``fastapi-cachemate; <param>; <param>...`` (RFC 9211)."""
    return b"; ".join((CACHE_NAME, *params))
