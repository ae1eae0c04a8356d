"""The app of the stampede tests (tests/test_stampede*.py), in process or under uvicorn.

One cached endpoint, ``GET /item/{n}``, that counts its computations in Redis (``INCR
<name>:computations``) so that several processes can be counted together, and a dependency
that counts arrivals. Synchronisation is by events, never by sleeping:

- in process: ``app.state.gate`` (an ``asyncio.Event``, set = open) is awaited by the
  endpoint after counting; ``app.state.computing`` is set when a computation starts;
  ``app.state.arrived`` counts requests and sets ``app.state.all_arrived`` at
  ``app.state.expected``;
- across processes (uvicorn): the endpoint LPUSHes ``<name>:computing`` when it starts and,
  when ``CACHEMATE_TEST_BLOCK=1``, blocks on ``BLPOP <name>:gate`` (and pushes the token
  back for the next one); the dependency LPUSHes ``<name>:all-arrived`` when the process's
  arrival count reaches ``CACHEMATE_TEST_EXPECT``.

Under uvicorn the app is configured from the environment: ``CACHEMATE_TEST_REDIS_URL``,
``CACHEMATE_TEST_NAME`` (the counters' key prefix), ``CACHEMATE_TEST_SETTINGS`` (a JSON
object of BaseCacheSettings fields), ``CACHEMATE_TEST_BLOCK``, ``CACHEMATE_TEST_EXPECT``.
"""

# No "from __future__ import annotations": the endpoint uses names local to build_app.

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fastapi_cachemate import BaseCacheSettings, CacheSetup, request_unkeyed
from fastapi_cachemate.cache import cache_response
from fastapi_cachemate.core.backends.redis import RedisBackend

__all__ = ["TTL", "build_app", "counter_client", "recommended_client", "served"]

TTL = 10.0


def recommended_client(url: str, timeout: float = 0.25) -> aioredis.Redis:
    """The client options docs/resilience.md recommends: no retries, socket timeouts, and a
    blocking pool (a burst waits for a connection instead of failing with "Too many
    connections", which the breaker would count as a dead backend)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=32,
        timeout=None,  # the wait for a connection is bounded by backend_timeout
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=timeout,  # the settings' backend_timeout
        socket_timeout=timeout,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it


def counter_client(url: str) -> aioredis.Redis:
    """The endpoint's own client for its counters (not the cache's)."""
    return aioredis.Redis.from_url(url, max_connections=1000)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the lifespan and yield a client; each request gets a copy of the lifespan state
    in ``scope["state"]``, as uvicorn gives it (httpx's ASGITransport does not)."""
    async with app.router.lifespan_context(app) as state:

        async def server(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state or {})}, receive, send)

        transport = httpx.ASGITransport(app=server)
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", limits=limits, timeout=60
        ) as client:
            yield client


def build_app(
    redis_url: str,
    *,
    name: str = "stampede",
    settings: BaseCacheSettings | None = None,
    cache_client: aioredis.Redis | None = None,
    block_in_redis: bool = False,
    expected: int = 0,
    ttl: float = TTL,
    stale_while_revalidate: float | None = None,
    counter_url: str | None = None,
) -> FastAPI:
    """The app; cache_client: the cache's Redis client (default: recommended_client over
    redis_url); counter_url: where the endpoint counts (default: redis_url)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        cache_settings = settings or BaseCacheSettings()
        client = cache_client
        if client is None:
            client = recommended_client(redis_url, cache_settings.backend_timeout)
        CacheSetup.setup(backend=RedisBackend(client), settings=cache_settings, prefix=name)
        counters = counter_client(counter_url or redis_url)
        try:
            yield {"counters": counters}  # lifespan state: request.state.counters
        finally:
            await CacheSetup.close()
            await counters.aclose()

    app = FastAPI(lifespan=lifespan)
    app.state.gate = asyncio.Event()
    app.state.gate.set()
    app.state.computing = asyncio.Event()
    app.state.arrived = 0
    app.state.expected = expected
    app.state.all_arrived = asyncio.Event()
    app.state.sessions = []  # every Session the dependency opened

    class Session:
        """A request-scoped resource (a db session): closed when its request ends."""

        def __init__(self) -> None:
            self.closed = False

    # Both dependencies take the Request only for the lifespan state: request_unkeyed keeps
    # the key to the path (a raw-request route would key the Host header, which differs
    # between the uvicorn processes of a test).
    @request_unkeyed
    def get_counters(request: Request) -> aioredis.Redis:
        counters: aioredis.Redis = request.state.counters
        return counters

    @request_unkeyed
    async def session(request: Request) -> AsyncIterator[Session]:
        app.state.arrived += 1
        if app.state.arrived == app.state.expected:
            app.state.all_arrived.set()
        counters: aioredis.Redis = request.state.counters
        if expected and await counters.incr(f"{name}:arrived") == expected:
            await counters.lpush(f"{name}:all-arrived", 1)
        opened = Session()
        app.state.sessions.append(opened)
        try:
            yield opened
        finally:
            opened.closed = True

    @app.get("/item/{n}")
    @cache_response(ttl=ttl, stale_while_revalidate=stale_while_revalidate)
    async def item(
        n: int,
        counters: Annotated[aioredis.Redis, Depends(get_counters)],
        db: Annotated[Session, Depends(session)],
    ) -> dict[str, Any]:
        computation = await counters.incr(f"{name}:computations")
        await counters.lpush(f"{name}:computing", computation)
        app.state.computing.set()
        if block_in_redis:
            await counters.blpop([f"{name}:gate"], timeout=0)
            await counters.lpush(f"{name}:gate", 1)  # the token back, for whoever is next
        await app.state.gate.wait()
        assert not db.closed, "a computation got a closed session"
        return {"n": n, "computation": computation}

    return app


def _from_env() -> FastAPI:
    url = os.environ.get("CACHEMATE_TEST_REDIS_URL")
    if url is None:
        return FastAPI()  # imported without the environment (collection): nothing to serve
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("fastapi_cachemate").setLevel(
        os.environ.get("CACHEMATE_TEST_LOG_LEVEL", "INFO")
    )
    settings = BaseCacheSettings(**json.loads(os.environ.get("CACHEMATE_TEST_SETTINGS", "{}")))
    return build_app(
        url,
        name=os.environ.get("CACHEMATE_TEST_NAME", "stampede"),
        settings=settings,
        block_in_redis=os.environ.get("CACHEMATE_TEST_BLOCK") == "1",
        expected=int(os.environ.get("CACHEMATE_TEST_EXPECT", "0")),
    )


app = _from_env()
