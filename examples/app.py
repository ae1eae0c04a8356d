"""The seed README's example endpoints, cached by fastapi-cachemate.

Run it (no server needed: the in-process store is the default)::

    make run                      # http://127.0.0.1:8000 (PORT=... to change)
    curl -si http://127.0.0.1:8000/blogs/42 | grep -i x-cache-status    # MISS
    curl -si http://127.0.0.1:8000/blogs/42 | grep -i x-cache-status    # HIT

On Redis instead, give its URL in the environment::

    CACHEMATE_REDIS_URL=redis://127.0.0.1:6379/0 make run

Environment:

- ``CACHEMATE_REDIS_URL``: a ``redis://`` (or ``rediss://``, ``unix://``) URL. Unset or
  empty: the in-process ``MemoryBackend`` (each worker process caches on its own).
- ``API_CACHE_*``: the cache settings of ``ApiCacheSettings`` below (``BaseCacheSettings``
  fields with the ``api_cache_`` prefix), e.g. ``API_CACHE_BYPASS_VALUE=secret``.

What to try:

- ``/blogs/{blog_id}``: the README's first endpoint.
- ``/blogs?id=1&slug=a&page=2``: a Pydantic filter (``Annotated[F, Query()]``, alias ``id``);
  ``/filters/dataclass?slug=a&page=2`` and ``/filters/plain?slug=a``: the same filter as a
  dataclass and as a plain class (``Depends()``). The fake ``db_session`` is not in the key.
- ``/me/blogs/{blog_id}``: skipped by the cache for authorized users
  (``-H 'Authorization: Bearer x'`` gives ``BYPASS``), through ``is_bypass`` in a dependency.
- ``-H 'X-CACHE-BYPASS: test'`` on any endpoint: ``BYPASS``; ``-H 'Cache-Control: no-cache'``:
  ``NO_CACHE``.
- ``/slow``: takes a second on a miss, nothing on a hit; ``/reports/{year}`` is a plain
  ``def`` endpoint (run in the threadpool).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from fastapi_cachemate import BaseCacheSettings, CacheSetup
from fastapi_cachemate.cache import cache_response, is_bypass
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.redis import RedisLockManager

REDIS_URL_ENV = "CACHEMATE_REDIS_URL"

BlogId = int


class ApiCacheSettings(BaseCacheSettings):
    ttl_lock_seconds: int = 5
    buffer: float = 0.2
    bypass_header: str = "X-CACHE-BYPASS"
    bypass_value: str = "test"

    model_config = SettingsConfigDict(env_prefix="api_cache_")


api_cache_settings = ApiCacheSettings()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    if not url:
        CacheSetup.setup(settings=api_cache_settings)  # the in-process store
        try:
            yield
        finally:
            await CacheSetup.close()
        return
    client = aioredis.Redis.from_url(url)
    redis_backend = RedisBackend(client=client)
    try:
        CacheSetup.setup(
            backend=redis_backend,
            lock_manager=RedisLockManager(backend=redis_backend),
            settings=api_cache_settings,
        )
        yield
    finally:
        await CacheSetup.close()
        await redis_backend.close()


app = FastAPI(title="fastapi-cachemate example", lifespan=lifespan)


# --- the README's first endpoint ---------------------------------------------------------


@app.get("/blogs/{blog_id}")
@cache_response(ttl=300)
async def get_blog_by_id(blog_id: BlogId) -> dict[str, BlogId]:
    return {"blog_id": blog_id}


# --- filters: Pydantic, dataclass, plain class ---------------------------------------------


class AsyncSession:
    """Stands for a database session: a dependency that never enters the cache key."""

    async def fetch_blogs(self, **filters: Any) -> list[dict[str, Any]]:
        return [{"title": f"blog {n}", **filters} for n in range(2)]


async def get_db_session() -> AsyncIterator[AsyncSession]:
    yield AsyncSession()


class BlogPydanticFilter(BaseModel):
    blog_id: str | None = Field(None, description="blog id", alias="id")
    slug: str | None = Field(None, description="blog slug")
    page: int = Field(1, ge=1)
    max_page: int = Field(10, ge=1, le=100)

    model_config = ConfigDict(populate_by_name=True)


@dataclasses.dataclass
class BlogDataclassFilter:
    slug: str | None = None
    page: int = 1


class BlogPlainFilter:
    def __init__(self, slug: str | None = None, page: int = 1) -> None:
        self.slug = slug
        self.page = page


@app.get("/blogs")
@cache_response(ttl=300)
async def get_blogs(
    filter_: Annotated[BlogPydanticFilter, Query()],
    db_session: AsyncSession = Depends(get_db_session),  # noqa: B008
) -> dict[str, Any]:
    blogs = await db_session.fetch_blogs(**filter_.model_dump(exclude_none=True))
    return {"filter": filter_.model_dump(), "blogs": blogs}


@app.get("/filters/dataclass")
@cache_response(ttl=300)
async def get_blogs_dataclass(
    filter_: Annotated[BlogDataclassFilter, Depends()],
    db_session: AsyncSession = Depends(get_db_session),  # noqa: B008
) -> dict[str, Any]:
    blogs = await db_session.fetch_blogs(**dataclasses.asdict(filter_))
    return {"filter": dataclasses.asdict(filter_), "blogs": blogs}


@app.get("/filters/plain")
@cache_response(ttl=300)
async def get_blogs_plain(
    filter_: BlogPlainFilter = Depends(),  # noqa: B008
    db_session: AsyncSession = Depends(get_db_session),  # noqa: B008
) -> dict[str, Any]:
    blogs = await db_session.fetch_blogs(slug=filter_.slug, page=filter_.page)
    return {"filter": {"slug": filter_.slug, "page": filter_.page}, "blogs": blogs}


# --- bypass for authorized users (is_bypass in a dependency) --------------------------------


class User(BaseModel):
    token: str


async def maybe_get_user(authorization: Annotated[str | None, Header()] = None) -> User | None:
    return User(token=authorization) if authorization else None


async def bypass_authorized_request(
    user: User | None = Depends(maybe_get_user),  # noqa: B008
) -> AsyncIterator[None]:
    """Tell the cache layer to skip cached responses for authorized users."""
    if user:
        token = is_bypass.set(True)
        try:
            yield
        finally:
            is_bypass.reset(token)
    else:
        yield


@app.get(
    "/me/blogs/{blog_id}",
    summary="Get blog by id, uncached for authorized users",
    dependencies=[Depends(bypass_authorized_request)],
)
@cache_response(ttl=300)
async def get_my_blog(blog_id: BlogId) -> dict[str, Any]:
    return {"blog_id": blog_id, "generated_at": time.time()}


# --- slow endpoints -------------------------------------------------------------------------


@app.get("/slow")
@cache_response(ttl=30)
async def slow() -> dict[str, float]:
    started = time.perf_counter()
    await asyncio.sleep(1.0)
    return {"computed_in_s": round(time.perf_counter() - started, 3)}


@app.get("/reports/{year}")
@cache_response(ttl=60)
def report(year: int) -> dict[str, Any]:
    """A plain def endpoint: FastAPI (and the cache) run it in the threadpool."""
    time.sleep(0.2)
    return {"year": year, "total": sum(range(year))}
