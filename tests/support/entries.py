"""The cache's own view of a test app: the key of a request, the stored entry of a route."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.routing import APIRoute

from fastapi_cachemate import CacheSetup
from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._route.keyer import RouteKeyer

__all__ = ["INJECTED", "age_entry", "key_of"]

#: The parameters cache_response adds to an endpoint for FastAPI to inject.
INJECTED = ("__dependencies_request__", "__dependencies_response__")


def key_of(app: FastAPI, route_path: str, url_path: str) -> tuple[bytes, bytes]:
    """The (key, fingerprint) the decorator uses for a GET of url_path on that route."""
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == route_path)
    return RouteKeyer.for_route(route, prefix=CacheSetup.prefix()).key_for(path=url_path)


async def age_entry(app: FastAPI, path: str, seconds: float) -> tuple[float, float]:
    """Make the stored entry of GET path `seconds` older; (its created time, its ttl)."""
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == path)
    keyer = RouteKeyer.for_route(route, prefix="test", injected=INJECTED)
    key, fingerprint = keyer.key_for(path=path)
    backend = CacheSetup.backend()
    raw = await backend.fetch(key)
    assert raw is not None
    entry = kernels.read_entry(raw, time.time(), fingerprint)
    assert entry is not None
    created = entry.created - seconds
    blob = kernels.write_entry(
        status=entry.status,
        headers=entry.headers,
        body=entry.body,
        created=created,
        ttl=entry.ttl,
        grace=entry.grace,
        compute_ms=entry.compute_ms,
        etag=entry.etag,
        tags=entry.tags,
        fingerprint=fingerprint,
    )
    await backend.store(key, blob, 3_600_000)
    return created, entry.ttl
