"""One app shape for every library, and the scenarios built on it.

Every scenario is a FastAPI app with the route ``GET /items/{item_id}`` whose answer is the
same JSON document: a ``Page`` (a list of ``Item`` with str/int/float/bool/None/nested fields)
rendered through ``response_model``. Only how the answer is produced changes:

    floor            the route returns a pre-built ``Response`` of the same bytes
    floor_redis      the same, after one raw redis-py GET of those bytes (hiredis parser)
    bare_get         no FastAPI at all: a bare ASGI app that answers every request with one
                     redis-py GET of those bytes (the least any Redis-backed hit can cost)
    nocache          the endpoint builds the payload; FastAPI validates and renders it
    ours_memory      fastapi_cachemate.cache.cache_response, MemoryBackend, hit
    ours_redis       fastapi_cachemate.cache.cache_response, RedisBackend, hit (near cache
                     off: every hit is one GET)
    ours_near        the same with the near cache (the default): a hot hit from process memory
    ours_redis_miss  the same, a fresh item_id (a fresh key) on every request
    seed_redis       fastapi-cachemate 0.1.1 from PyPI, RedisBackend, hit (its own venv)
    fc2_memory       fastapi-cache2, InMemoryBackend, hit
    fc2_redis        fastapi-cache2, RedisBackend, hit
    cashews_redis    cashews, redis backend, hit
    cashews_redis_cs cashews, redis backend with client_side=True (its own client-side cache
                     kept coherent by Redis's CLIENT TRACKING), hit

This file is imported as a top-level module (``app_scenarios``) by asgi_driver.py, in our
virtual environment and in the seed's, so it imports nothing from ``benchmarks`` and imports
each library only inside the builder that needs it. The uvicorn servers of the end-to-end mode
build their app with ``create_app_from_env`` (``--factory``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Response
from pydantic import BaseModel

__all__ = [
    "PATH_TEMPLATE",
    "SCENARIOS",
    "SIZES",
    "Built",
    "Unavailable",
    "build",
    "create_app_from_env",
    "expected_body",
]

PATH_TEMPLATE = "/items/{item_id}"
TTL_SECONDS = 600

# items per page: about 0.5 KB, 10 KB and 200 KB of JSON
SIZES: dict[str, int] = {"small": 2, "medium": 40, "large": 800}


class Unavailable(Exception):
    """The scenario cannot run here (library missing or not merged yet)."""


class Owner(BaseModel):
    id: int
    name: str
    email: str
    verified: bool


class Item(BaseModel):
    id: int
    name: str
    description: str
    price: float
    quantity: int
    in_stock: bool
    discount: float | None
    tags: list[str]
    owner: Owner


class Page(BaseModel):
    item_id: int
    total: int
    items: list[Item]


def build_payload(item_id: int, count: int) -> dict[str, Any]:
    """The endpoint's work: a deterministic page of ``count`` items for ``item_id``."""
    items = []
    for i in range(count):
        n = item_id * 1000 + i
        items.append(
            {
                "id": n,
                "name": f"item-{n}",
                "description": f"A sturdy thing number {n} for benchmarks",
                "price": round(9.5 + i * 0.25, 2),
                "quantity": i * 3,
                "in_stock": i % 3 != 0,
                "discount": None if i % 2 else 0.15,
                "tags": ["alpha", "beta", f"t{i % 7}"],
                "owner": {
                    "id": i % 50,
                    "name": f"owner-{i % 50}",
                    "email": f"owner{i % 50}@example.org",
                    "verified": i % 5 == 0,
                },
            }
        )
    return {"item_id": item_id, "total": count, "items": items}


def expected_body(item_id: int, count: int) -> bytes:
    """The bytes FastAPI renders for the page (compact JSON, as JSONResponse writes it)."""
    return Page.model_validate(build_payload(item_id, count)).model_dump_json().encode()


@dataclass
class Built:
    """A scenario's app and what the driver needs to know about it."""

    app: FastAPI
    # a fresh item_id per request (a miss scenario) instead of always item_id 1
    fresh_keys: bool = False
    # (header name, value) that a cache hit carries, checked once after the warm-up
    hit_header: tuple[str, str] | None = None
    uses_redis: bool = False
    notes: list[str] = field(default_factory=list)


def _page_app(lifespan: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    return FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


def _redis_client(redis_url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(redis_url)


# --- baselines --------------------------------------------------------------------------------


def _floor(count: int, redis_url: str) -> Built:
    body = expected_body(1, count)
    app = _page_app()

    @app.get(PATH_TEMPLATE, response_model=Page)
    async def get_item(item_id: int) -> Response:
        return Response(content=body, media_type="application/json")

    return Built(app)


def _floor_redis(count: int, redis_url: str) -> Built:
    body = expected_body(1, count)
    key = f"bench:floor:{count}"
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client = _redis_client(redis_url)
        await client.set(key, body)
        state["client"] = client
        try:
            yield
        finally:
            await client.aclose()

    app = _page_app(lifespan)

    @app.get(PATH_TEMPLATE, response_model=Page)
    async def get_item(item_id: int) -> Response:
        raw = await state["client"].get(key)
        return Response(content=raw, media_type="application/json")

    return Built(app, uses_redis=True)


class _BareGet:
    """An ASGI app with nothing but one GET per request (and the lifespan protocol)."""

    def __init__(self, key: str, body: bytes, redis_url: str) -> None:
        self.key = key
        self.body = body
        self.redis_url = redis_url
        self.client: Any = None
        self.headers = [(b"content-type", b"application/json")]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        raw = await self.client.get(self.key)
        headers = [*self.headers, (b"content-length", b"%d" % len(raw))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = _redis_client(self.redis_url)
                await self.client.set(self.key, self.body)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _bare_get(count: int, redis_url: str) -> Built:
    app: Any = _BareGet(f"bench:bare:{count}", expected_body(1, count), redis_url)
    return Built(app, uses_redis=True)


def _nocache(count: int, redis_url: str) -> Built:
    app = _page_app()

    @app.get(PATH_TEMPLATE, response_model=Page)
    async def get_item(item_id: int) -> Any:
        return build_payload(item_id, count)

    return Built(app)


# --- this project (and the seed: same import paths) ---------------------------------------------


def _cachemate(
    count: int, redis_url: str, *, memory: bool, seed: bool, near: bool = False
) -> Built:
    try:
        from fastapi_cachemate import CacheSetup
        from fastapi_cachemate.cache import cache_response

        if memory:
            from fastapi_cachemate.core.backends.memory import MemoryBackend
            from fastapi_cachemate.core.locks.memory import MemoryLockManager
        else:
            from fastapi_cachemate.core.backends.redis import RedisBackend
            from fastapi_cachemate.core.locks.redis import RedisLockManager
    except ImportError as exc:
        raise Unavailable(f"fastapi_cachemate is not complete here: {exc}") from exc
    from importlib import metadata

    version = metadata.version("fastapi-cachemate")
    if seed != version.startswith("0.1."):
        side = "the seed (0.1.x)" if seed else "ours"
        raise Unavailable(f"fastapi-cachemate {version} is installed here, not {side}")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client = None
        if memory:
            backend: Any = MemoryBackend()
            locks: Any = MemoryLockManager(backend)
        else:
            client = _redis_client(redis_url)
            backend = RedisBackend(client=client)
            locks = RedisLockManager(backend=backend)
        # the near cache off unless asked for (the seed has no such setting)
        extra: dict[str, Any] = {}
        if not seed and not memory:
            from fastapi_cachemate import BaseCacheSettings

            size = 32 * 1024 * 1024 if near else 0
            extra["settings"] = BaseCacheSettings(near_cache_max_bytes=size)
        CacheSetup.setup(backend=backend, lock_manager=locks, prefix=f"bench:{count}", **extra)
        try:
            yield
        finally:
            await CacheSetup.close()
            await backend.close()
            if client is not None:
                await client.aclose()

    app = _page_app(lifespan)

    @app.get(PATH_TEMPLATE, response_model=Page)
    @cache_response(ttl=TTL_SECONDS)
    async def get_item(item_id: int) -> Any:
        return build_payload(item_id, count)

    return Built(app, hit_header=("x-cache-status", "HIT"), uses_redis=not memory)


def _ours_memory(count: int, redis_url: str) -> Built:
    return _cachemate(count, redis_url, memory=True, seed=False)


def _ours_redis(count: int, redis_url: str) -> Built:
    return _cachemate(count, redis_url, memory=False, seed=False)


def _ours_near(count: int, redis_url: str) -> Built:
    built = _cachemate(count, redis_url, memory=False, seed=False, near=True)
    built.hit_header = ("x-cache-status", "HIT")
    return built


def _ours_redis_miss(count: int, redis_url: str) -> Built:
    built = _cachemate(count, redis_url, memory=False, seed=False)
    built.fresh_keys = True
    built.hit_header = None
    return built


def _seed_redis(count: int, redis_url: str) -> Built:
    return _cachemate(count, redis_url, memory=False, seed=True)


# --- peers -----------------------------------------------------------------------------------


def _fastapi_cache2(count: int, redis_url: str, *, memory: bool) -> Built:
    try:
        from fastapi_cache import FastAPICache
        from fastapi_cache.backends.inmemory import InMemoryBackend
        from fastapi_cache.backends.redis import RedisBackend
        from fastapi_cache.decorator import cache
    except ImportError as exc:
        raise Unavailable(f"fastapi-cache2 is not installed: {exc}") from exc

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client = None
        if memory:
            FastAPICache.init(InMemoryBackend(), prefix=f"bench:{count}")
        else:
            client = _redis_client(redis_url)
            FastAPICache.init(RedisBackend(client), prefix=f"bench:{count}")
        try:
            yield
        finally:
            FastAPICache.reset()
            if client is not None:
                await client.aclose()

    app = _page_app(lifespan)

    @app.get(PATH_TEMPLATE, response_model=Page)
    @cache(expire=TTL_SECONDS)
    async def get_item(item_id: int) -> Any:
        return build_payload(item_id, count)

    return Built(app, hit_header=("x-fastapi-cache", "HIT"), uses_redis=not memory)


def _fc2_memory(count: int, redis_url: str) -> Built:
    return _fastapi_cache2(count, redis_url, memory=True)


def _fc2_redis(count: int, redis_url: str) -> Built:
    return _fastapi_cache2(count, redis_url, memory=False)


def _cashews_redis(count: int, redis_url: str, *, client_side: bool = False) -> Built:
    try:
        from cashews import Cache
    except ImportError as exc:
        raise Unavailable(f"cashews is not installed: {exc}") from exc
    # its own Cache object (not the global one) so that nothing else shares it
    cashews_cache = Cache()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        cashews_cache.setup(redis_url, client_side=client_side)
        await cashews_cache.init()
        try:
            yield
        finally:
            await cashews_cache.close()

    app = _page_app(lifespan)

    @app.get(PATH_TEMPLATE, response_model=Page)
    @cashews_cache(ttl=TTL_SECONDS, key=f"bench:{count}:items:{{item_id}}")
    async def get_item(item_id: int) -> Any:
        return build_payload(item_id, count)

    return Built(app, uses_redis=True)


def _cashews_redis_cs(count: int, redis_url: str) -> Built:
    return _cashews_redis(count, redis_url, client_side=True)


SCENARIOS: dict[str, Callable[[int, str], Built]] = {
    "floor": _floor,
    "floor_redis": _floor_redis,
    "bare_get": _bare_get,
    "nocache": _nocache,
    "ours_memory": _ours_memory,
    "ours_redis": _ours_redis,
    "ours_near": _ours_near,
    "ours_redis_miss": _ours_redis_miss,
    "seed_redis": _seed_redis,
    "fc2_memory": _fc2_memory,
    "fc2_redis": _fc2_redis,
    "cashews_redis": _cashews_redis,
    "cashews_redis_cs": _cashews_redis_cs,
}


def build(scenario: str, size: str, redis_url: str) -> Built:
    """Build ``scenario`` for the payload ``size``; raises Unavailable when it cannot run."""
    return SCENARIOS[scenario](SIZES[size], redis_url)


def create_app_from_env() -> FastAPI:
    """The uvicorn ``--factory`` entry: BENCH_SCENARIO, BENCH_SIZE, BENCH_REDIS_URL."""
    built = build(
        os.environ["BENCH_SCENARIO"],
        os.environ.get("BENCH_SIZE", "small"),
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    return built.app
