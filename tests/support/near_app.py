"""The app of the near-cache tests (tests/test_near_cache*.py), served by uvicorn over TCP.

``GET /value/{name}`` is cached (ttl 60 s, tag ``value:{name}``) and answers the current
"source" of name: the field name of the Redis hash ``near-src`` (outside the cache's
prefix; read with HGET, so that INFO commandstats' GETs are the cache's own), read by the
endpoint with its own client. ``POST /bump/{name}?how=key|tag|namespace|none`` writes a new
source value (``HINCRBY``) and invalidates the cached answer that way, and answers the new
value once the invalidation is acknowledged. ``GET /near`` answers this process's
near-cache counters and state.

Configured from the environment: ``CACHEMATE_TEST_REDIS_URL`` (one startup node of a
cluster when ``CACHEMATE_TEST_CLUSTER=1``), ``CACHEMATE_TEST_SETTINGS`` (a JSON object of
BaseCacheSettings fields).
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations.

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from fastapi_cachemate import BaseCacheSettings, CacheSetup
from fastapi_cachemate.cache import cache_response
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.invalidation import invalidate, invalidate_namespace, invalidate_tags

__all__ = ["PREFIX", "SOURCE", "build_app"]

PREFIX = "near"
SOURCE = "near-src"


def _client(url: str, cluster: bool) -> Any:
    """A client that retries a command on a connection the server closed (the tests kill
    every client and restart Redis under the running apps)."""
    retry = Retry(NoBackoff(), 3)
    if cluster:
        return RedisCluster.from_url(url, retry=retry)
    return aioredis.Redis.from_url(url, retry=retry, retry_on_error=[ConnectionError])


def build_app(url: str, *, cluster: bool = False, **settings: Any) -> FastAPI:
    source: Any = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal source
        source = _client(url, cluster)
        CacheSetup.setup(
            RedisBackend(_client(url, cluster)),
            prefix=PREFIX,
            settings=BaseCacheSettings(**settings),
        )
        try:
            yield
        finally:
            await CacheSetup.close()
            await source.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/value/{name}")
    @cache_response(ttl=60, tags=["value:{name}"])
    async def value(name: str) -> dict[str, Any]:
        raw = await source.hget(SOURCE, name)
        return {"name": name, "value": int(raw or 0)}

    @app.post("/bump/{name}")
    async def bump(name: str, how: str = "key") -> dict[str, Any]:
        new = int(await source.hincrby(SOURCE, name, 1))
        if how == "key":
            await invalidate(value, name=name)
        elif how == "tag":
            await invalidate_tags(f"value:{name}")
        elif how == "namespace":
            await invalidate_namespace()
        return {"name": name, "value": new}

    @app.get("/near")
    async def near() -> dict[str, Any]:
        runtime = CacheSetup.runtime()
        cache = runtime.near
        if cache is None:
            return {"enabled": False}
        established = cache.tracker.established if cache.tracker is not None else 0
        return {
            "enabled": True,
            "ready": cache.ready,
            "established": established,
            "items": len(cache),
            **cache.counters.snapshot(),
        }

    return app


def create_app_from_env() -> FastAPI:
    return build_app(
        os.environ["CACHEMATE_TEST_REDIS_URL"],
        cluster=os.environ.get("CACHEMATE_TEST_CLUSTER") == "1",
        **json.loads(os.environ.get("CACHEMATE_TEST_SETTINGS", "{}")),
    )
