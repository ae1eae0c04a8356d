"""Every code block of the seed README runs unchanged, against a real redis-server.

The blocks are copied literally from tests/data/seed-README.txt (the seed's README, checked
below). The README's filter example is not valid Python as printed (a parameter without a
default follows one with a default): FILTERS swaps those two lines, nothing else. Names the
README uses without defining them (BlogId, AsyncSession, get_db_session, Query, User,
maybe_get_user) come from PRELUDE.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute

from fastapi_cachemate._route.keyer import RouteKeyer
from tests.support.apps import served
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis

README = Path(__file__).parent / "data" / "seed-README.txt"

PRELUDE = """\
from typing import Annotated

from fastapi import Header, Query

BlogId = int
SESSIONS = []


class AsyncSession:
    pass


async def get_db_session():
    SESSIONS.append(AsyncSession())
    yield SESSIONS[-1]


class User:
    def __init__(self, token):
        self.token = token


async def maybe_get_user(authorization: Annotated[str | None, Header()] = None):
    return User(authorization) if authorization else None
"""

QUICK_START = """\
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from fastapi_cachemate import BaseCacheSettings, CacheSetup
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.redis import RedisLockManager


class ApiCacheSettings(BaseCacheSettings):
  host: str = "127.0.0.1"
  port: int = 6379
  db: int = 0
  ttl_lock_seconds: int = 5
  buffer: float = 0.2

  # See BaseCacheSettings for more options.
  model_config = SettingsConfigDict(env_prefix="api_cache_")


api_cache_settings = ApiCacheSettings()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
  _backend = redis.asyncio.Redis(
    host=api_cache_settings.host,
    port=api_cache_settings.port,
    db=api_cache_settings.db,
  )
  redis_backend = RedisBackend(client=_backend)
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
    await _backend.connection_pool.disconnect()


app = FastAPI(lifespan=lifespan)
"""

ENDPOINT = """\
from fastapi_cachemate.cache import cache_response


@app.get("/blogs/{blog_id}")
@cache_response(ttl=300)
async def get_blog_by_id(blog_id: BlogId) -> dict[str, BlogId]:
  return {"blog_id": blog_id}
"""

# The README's block with its two parameters swapped (the smallest valid reordering).
FILTERS = """\
from typing import Any, Annotated

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field


class BlogPydanticFilter(BaseModel):
  blog_id: str | None = Field(None, description="blog id", alias="id")
  slug: str | None = Field(None, description="blog slug")
  page: int = Field(1, ge=1)
  max_page: int = Field(10, ge=1, le=100)

  model_config = ConfigDict(populate_by_name=True)


@app.get("/blogs")
@cache_response(ttl=300)
async def get_blogs(
    filter_: Annotated[BlogPydanticFilter, Query()],
    db_session: AsyncSession = Depends(get_db_session),
) -> dict[str, Any]:
  ...
"""

SETTINGS = """\
class ApiCacheSettings(BaseCacheSettings):
  host: str = "127.0.0.1"
  port: int = 6379
  db: int = 0
  ttl_lock_seconds: int = 5
  buffer: float = 0.2
  bypass_header: str = "X-CACHE-BYPASS"
  bypass_value: str = "test"
  ...
"""

BYPASS = '''\
from collections.abc import AsyncGenerator

from fastapi import Depends

from fastapi_cachemate.cache import is_bypass


async def bypass_authorized_request(
    user: User | None = Depends(maybe_get_user),
) -> AsyncGenerator[None, None]:
  """
  Tell the cache layer to skip cached responses for authorized users.
  """
  if user:
    token = is_bypass.set(True)
    try:
      yield
    finally:
      is_bypass.reset(token)
  else:
    yield


@app.get(
  "/blogs/{blog_id}",
  summary="Get blog by id",
  dependencies=[Depends(bypass_authorized_request)],
)
@cache_response(ttl=300)
async def get_blog_by_id():
  ...
'''

BLOCKS = [QUICK_START, ENDPOINT, FILTERS, SETTINGS, BYPASS]

STATUS = "x-cache-status"


def test_blocks_are_the_readmes() -> None:
    readme = README.read_text()
    for block in (QUICK_START, ENDPOINT, SETTINGS, BYPASS):
        assert block in readme
    as_printed = FILTERS.replace(
        "    filter_: Annotated[BlogPydanticFilter, Query()],\n"
        "    db_session: AsyncSession = Depends(get_db_session),\n",
        "    db_session: AsyncSession = Depends(get_db_session),\n"
        "    filter_: Annotated[BlogPydanticFilter, Query()],\n",
    )
    assert as_printed != FILTERS
    assert as_printed in readme
    with pytest.raises(SyntaxError):
        compile(as_printed, "README", "exec")


def _run_readme(monkeypatch: pytest.MonkeyPatch, server: RedisServer) -> dict[str, Any]:
    monkeypatch.setenv("API_CACHE_HOST", server.host)
    monkeypatch.setenv("API_CACHE_PORT", str(server.port))
    namespace: dict[str, Any] = {"__name__": "seed_readme"}
    exec(compile(PRELUDE, "prelude", "exec"), namespace)
    for n, block in enumerate(BLOCKS):
        exec(compile(block, f"README block {n}", "exec"), namespace)
    settings = namespace["api_cache_settings"]
    assert (settings.host, settings.port) == (server.host, server.port)
    return namespace


async def test_readme_app_on_redis(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    clean_cache_setup: None,
) -> None:
    ns = _run_readme(monkeypatch, redis_server)
    app: FastAPI = ns["app"]
    async with served(app) as client:
        started = time.time()
        first = await client.get("/blogs/42")
        second = await client.get("/blogs/42")
        elapsed = time.time() - started
        assert len(await redis_client.keys("*}")) == 1  # one entry (+ its K:gen key)
    assert first.json() == second.json() == {"blog_id": 42}
    assert first.headers[STATUS] == "MISS"
    # the headers the README shows after a second request
    assert second.headers[STATUS] == "HIT"
    # max-age is the remaining freshness: the README's 300 less the whole seconds gone by
    max_age = int(second.headers["cache-control"].removeprefix("max-age="))
    assert math.floor(300 - elapsed) <= max_age <= 300
    assert first.headers["cache-control"] == "max-age=300"
    assert second.headers["content-length"] == "14"
    assert second.headers["content-type"] == "application/json"
    # the lifespan closed the backend twice (CacheSetup.close(), then the README's own)
    assert not ns["CacheSetup"].is_configured()


async def test_readme_filter_endpoint(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    clean_cache_setup: None,
) -> None:
    ns = _run_readme(monkeypatch, redis_server)
    async with served(ns["app"]) as client:
        # The README's endpoint body is "...": it returns None for a dict response, and
        # FastAPI's response validation refuses it, cache or not. Nothing is stored.
        with pytest.raises(ResponseValidationError):
            await client.get("/blogs", params={"id": "1", "slug": "a", "page": 2})
        assert await redis_client.keys("*}") == []  # no entry (a K:gen key: the attempt)
    assert len(ns["SESSIONS"]) == 1  # db_session is a dependency, resolved per request
    # "It will be unpacked like this: id, slug, page, max_page"; db_session is not a filter.
    route = next(r for r in ns["app"].routes if isinstance(r, APIRoute) and r.path == "/blogs")
    keyer = RouteKeyer.for_route(route, prefix="readme")
    assert keyer.query_names is not None
    assert {"id", "slug", "page", "max_page"} <= set(keyer.query_names)
    assert "db_session" not in keyer.query_names


async def test_readme_bypass_settings_and_dependency(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    clean_cache_setup: None,
) -> None:
    ns = _run_readme(monkeypatch, redis_server)
    app: FastAPI = ns["app"]
    # The README's bypass section defines a second ApiCacheSettings; its lifespan reads the
    # module's api_cache_settings: use an instance of that second class. It has no env_prefix
    # (the README's "..." stands for it): the test server is given explicitly.
    ns["api_cache_settings"] = ns["ApiCacheSettings"](
        host=redis_server.host, port=redis_server.port
    )
    assert ns["api_cache_settings"].bypass_header == "X-CACHE-BYPASS"
    # The README registers "/blogs/{blog_id}" twice; the first route shadows the second.
    # Drop the first to reach the one with the bypass dependency.
    first_route = next(
        r for r in app.router.routes if isinstance(r, APIRoute) and r.path == "/blogs/{blog_id}"
    )
    app.router.routes.remove(first_route)
    async with served(app) as client:
        authorized = {"authorization": "Bearer token"}
        statuses = []
        for headers in (
            authorized,
            authorized,
            {},
            {},
            {"X-CACHE-BYPASS": "test"},
            {"cache-control": "no-store"},
        ):
            response = await client.get("/blogs/7", headers=headers)
            assert response.status_code == 200
            assert json.loads(response.content) is None
            statuses.append(response.headers[STATUS])
    assert statuses == ["BYPASS", "BYPASS", "MISS", "HIT", "BYPASS", "NO_CACHE"]
