"""The public invalidation API through a real FastAPI app, on memory, Redis and the cluster.

``invalidate(endpoint, **params)``, ``invalidate_tags``, ``invalidate_namespace`` and
``@invalidates`` on write handlers; and the race through ``cache_response``: a slow miss
computation in flight when a write invalidates its entry does not store its old value.
"""

# No "from __future__ import annotations": the endpoints' annotations are read by FastAPI.

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel
from redis.asyncio.cluster import ClusterNode, RedisCluster

from fastapi_cachemate import BaseCacheSettings
from fastapi_cachemate.cache import cache_response
from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.types import Backend
from fastapi_cachemate.invalidation import (
    TagTemplates,
    invalidate,
    invalidate_namespace,
    invalidate_tags,
    invalidates,
    keys_for,
)
from tests.support.apps import cache_lifespan, served

PREFIX = "inv"


class Filters(BaseModel):
    color: str | None = None
    size: int = 1


class State:
    def __init__(self) -> None:
        self.titles = {1: "one", 2: "two"}
        self.calls: Counter[str] = Counter()
        self.started = asyncio.Event()
        self.release = asyncio.Event()


def make_app(make_backend: Callable[[], Backend]) -> tuple[FastAPI, State, dict[str, Any]]:
    state = State()

    # backend_timeout: a cluster client discovers the slots on its first command, which can
    # take longer than the default 0.25 s on a loaded machine (a timed-out call is a correct
    # miss, but not what these tests count)
    settings = BaseCacheSettings(backend_timeout=5)
    app = FastAPI(lifespan=cache_lifespan(make_backend, settings, PREFIX))

    @app.get("/blogs/{blog_id}")
    @cache_response(ttl=60, tags=["blog:{blog_id}", "blogs"])
    async def get_blog(blog_id: int, lang: str = "en") -> dict[str, Any]:
        state.calls["blog"] += 1
        return {"id": blog_id, "title": state.titles[blog_id], "lang": lang}

    @app.get("/slow/{blog_id}")
    @cache_response(ttl=60, tags=["blog:{blog_id}"])
    async def slow_blog(blog_id: int) -> dict[str, Any]:
        state.calls["slow"] += 1
        title = state.titles[blog_id]  # read before the wait: the old data
        state.started.set()
        await state.release.wait()
        return {"id": blog_id, "title": title}

    @app.get("/search")
    @cache_response(ttl=60, vary=["accept-language"])
    async def search(
        filters: Annotated[Filters, Query()],
        user_agent: Annotated[str | None, Header()] = None,
        flag: bool = False,
    ) -> dict[str, Any]:
        state.calls["search"] += 1
        return {"color": filters.color, "size": filters.size, "flag": flag}

    @app.put("/blogs/{blog_id}")
    @invalidates(tags=["blog:{blog_id}"])
    async def put_blog(blog_id: int, title: str) -> dict[str, Any]:
        if blog_id not in state.titles:
            raise HTTPException(404)
        state.titles[blog_id] = title
        return {"id": blog_id, "title": title}

    @app.patch("/blogs/{blog_id}")
    @invalidates(get_blog)  # the GET with the same blog_id (lang: the default only)
    async def patch_blog(blog_id: int, title: str) -> dict[str, Any]:
        state.titles[blog_id] = title
        return {"id": blog_id}

    @app.post("/reset")
    @invalidates(namespace=True)
    async def reset() -> dict[str, Any]:
        state.titles = {1: "one", 2: "two"}
        return {}

    @app.put("/broken/{blog_id}")
    @invalidates(tags=["blog:{blog_id}"])
    async def broken(blog_id: int) -> dict[str, Any]:
        raise HTTPException(409)

    router = APIRouter()

    async def audit() -> None:
        state.calls["audit"] += 1

    @router.get("/items/{item_id}")
    @cache_response(ttl=60)
    async def get_item(item_id: int, q: Annotated[str | None, Query(alias="query")] = None) -> Any:
        state.calls["item"] += 1
        return {"id": item_id, "q": q}

    app.include_router(router, prefix="/v1")
    app.include_router(router, prefix="/v2", dependencies=[Depends(audit)])
    endpoints = {"get_blog": get_blog, "slow_blog": slow_blog, "search": search, "item": get_item}
    return app, state, endpoints


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster]),
    ]
)
async def app_env(
    request: pytest.FixtureRequest, clean_cache_setup: None
) -> AsyncIterator[tuple[httpx.AsyncClient, State, dict[str, Any], FastAPI]]:
    make_backend: Callable[[], Backend]
    if request.param == "memory":
        make_backend = MemoryBackend
    elif request.param == "redis":
        server = request.getfixturevalue("redis_server")
        flusher = aioredis.Redis(host=server.host, port=server.port)
        await flusher.flushdb()
        await flusher.aclose()

        def make_backend() -> Backend:
            return RedisBackend(aioredis.Redis(host=server.host, port=server.port))

    else:
        cluster = request.getfixturevalue("redis_cluster")
        nodes = [ClusterNode(h, p) for h, p in cluster.nodes]
        flusher_c = RedisCluster(startup_nodes=nodes)
        await flusher_c.initialize()
        await flusher_c.flushdb(target_nodes=RedisCluster.PRIMARIES)
        await flusher_c.aclose()

        def make_backend() -> Backend:
            return RedisBackend(RedisCluster(startup_nodes=nodes))

    app, state, endpoints = make_app(make_backend)
    async with served(app) as client:
        yield client, state, endpoints, app


Env = tuple[httpx.AsyncClient, State, dict[str, Any], FastAPI]


async def status(client: httpx.AsyncClient, url: str, **kw: Any) -> tuple[str, Any]:
    response = await client.get(url, **kw)
    assert response.status_code == 200, response.text
    return response.headers["x-cache-status"], response.json()


async def test_invalidate_by_endpoint_and_parameters(app_env: Env) -> None:
    client, state, ep, _ = app_env
    for url in ("/blogs/1", "/blogs/1?lang=fr", "/blogs/2"):
        assert (await status(client, url))[0] == "MISS"
        assert (await status(client, url))[0] == "HIT"
    state.titles[1] = "uno"
    assert await invalidate(ep["get_blog"], blog_id=1) == 1  # lang: absent (the default)
    assert await status(client, "/blogs/1") == ("MISS", {"id": 1, "title": "uno", "lang": "en"})
    assert (await status(client, "/blogs/1?lang=fr"))[1]["title"] == "one"  # another key
    assert await invalidate(ep["get_blog"], blog_id=1, lang="fr") == 1
    assert (await status(client, "/blogs/1?lang=fr")) == (
        "MISS",
        {"id": 1, "title": "uno", "lang": "fr"},
    )
    assert (await status(client, "/blogs/2"))[0] == "HIT"
    assert await invalidate(ep["get_blog"], blog_id=1, lang="de") == 0  # never cached


async def test_invalidate_query_models_headers_and_vary(app_env: Env) -> None:
    client, _, ep, _ = app_env
    url = "/search?color=red&size=2&flag=true"
    headers = {"user-agent": "ua", "accept-language": "fr"}
    assert (await status(client, url, headers=headers))[0] == "MISS"
    assert (await status(client, url, headers=headers))[0] == "HIT"
    # the same request, told by parameter names; vary headers in headers=
    removed = await invalidate(
        ep["search"],
        color="red",
        size=2,
        flag=True,
        user_agent="ua",
        headers={"Accept-Language": "fr"},
    )
    assert removed == 1
    assert (await status(client, url, headers=headers))[0] == "MISS"
    with pytest.raises(TypeError, match="no parameter named 'colour'"):
        await invalidate(ep["search"], colour="red")


async def test_invalidate_every_inclusion_of_a_router(app_env: Env) -> None:
    client, state, ep, _ = app_env
    for url in ("/v1/items/3?query=x", "/v2/items/3?query=x"):
        assert (await status(client, url))[0] == "MISS"
        assert (await status(client, url))[0] == "HIT"
    assert state.calls["audit"] == 2  # the /v2 inclusion's dependency runs on every request
    keys = keys_for(ep["item"], {"item_id": 3, "q": "x"}, prefix=PREFIX)
    assert len(keys) == 2  # one per inclusion (each has its own path)
    assert keys_for(ep["item"], {"item_id": 3, "query": "x"}, prefix=PREFIX) == keys
    assert await invalidate(ep["item"], item_id=3, q="x") == 2
    for url in ("/v1/items/3?query=x", "/v2/items/3?query=x"):
        assert (await status(client, url))[0] == "MISS"
    with pytest.raises(TypeError, match="missing path parameter"):
        await invalidate(ep["item"], q="x")


async def test_invalidate_tags_and_namespace(app_env: Env) -> None:
    client, _, _, _ = app_env
    urls = ["/blogs/1", "/blogs/1?lang=fr", "/blogs/2", "/v1/items/1"]
    for url in urls:
        await status(client, url)
    assert await invalidate_tags("blog:1") == 2  # both variants of /blogs/1
    assert [(await status(client, u))[0] for u in urls] == ["MISS", "MISS", "HIT", "HIT"]
    assert await invalidate_tags("blogs") == 3
    assert [(await status(client, u))[0] for u in urls] == ["MISS", "MISS", "MISS", "HIT"]
    assert await invalidate_namespace() == 4
    assert [(await status(client, u))[0] for u in urls] == ["MISS"] * 4
    assert await invalidate_tags() == 0


async def test_write_endpoints_invalidate_in_one_line(app_env: Env) -> None:
    client, _, _, _ = app_env
    urls = ["/blogs/1", "/blogs/1?lang=fr", "/blogs/2"]
    for url in urls:
        await status(client, url)
    # PUT: tags templated from the handler's parameters
    assert (await client.put("/blogs/1", params={"title": "uno"})).status_code == 200
    assert await status(client, "/blogs/1?lang=fr") == (
        "MISS",
        {"id": 1, "title": "uno", "lang": "fr"},
    )
    assert (await status(client, "/blogs/1"))[1]["title"] == "uno"
    assert (await status(client, "/blogs/2"))[0] == "HIT"
    # PATCH: the GET endpoint with the handler's own blog_id
    assert (await client.patch("/blogs/2", params={"title": "dos"})).status_code == 200
    assert await status(client, "/blogs/2") == ("MISS", {"id": 2, "title": "dos", "lang": "en"})
    # a failed write invalidates nothing
    assert (await client.put("/broken/1")).status_code == 409
    assert (await client.put("/blogs/9", params={"title": "x"})).status_code == 404
    assert (await status(client, "/blogs/1"))[0] == "HIT"
    # the namespace
    assert (await client.post("/reset")).status_code == 200
    assert [(await status(client, u))[0] for u in urls] == ["MISS"] * 3


async def test_a_slow_computation_in_flight_does_not_write_back(app_env: Env) -> None:
    client, state, _, _ = app_env
    slow = asyncio.create_task(client.get("/slow/1"))
    await state.started.wait()  # the endpoint read "one" and is still computing
    assert (await client.put("/blogs/1", params={"title": "uno"})).status_code == 200
    state.release.set()
    first = await slow
    assert first.headers["x-cache-status"] == "MISS"
    assert first.json()["title"] == "one"  # computed before the write: answered, not stored
    assert "detail=not-stored" in first.headers["cache-status"]  # and it says so
    # no later read returns the old value
    assert await status(client, "/slow/1") == ("MISS", {"id": 1, "title": "uno"})
    assert await status(client, "/slow/1") == ("HIT", {"id": 1, "title": "uno"})
    assert state.calls["slow"] == 2


async def test_invalidate_errors(app_env: Env) -> None:
    _, _, _, app = app_env

    async def not_cached() -> None:
        return None

    with pytest.raises(LookupError, match="serves"):
        await invalidate(not_cached, app=app)
    with pytest.raises(TypeError, match="a tag must be a str"):
        await invalidate_tags(1)  # type: ignore[arg-type]


async def test_without_setup_everything_is_a_no_op(clean_cache_setup: None) -> None:
    async def endpoint() -> None:
        return None

    assert await invalidate(endpoint) == 0
    assert await invalidate_tags("t") == 0
    assert await invalidate_namespace() == 0


async def test_a_backend_failure_in_a_write_is_logged_not_raised(
    clean_cache_setup: None, redis_process: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, state, _ = make_app(
        lambda: RedisBackend(aioredis.Redis(host=redis_process.host, port=redis_process.port))
    )
    async with served(app) as client:
        redis_process.stop()
        with caplog.at_level(logging.ERROR, logger="fastapi_cachemate.invalidation"):
            response = await client.put("/blogs/1", params={"title": "uno"})
        assert response.status_code == 200
        assert state.titles[1] == "uno"
        assert "invalidation failed" in caplog.text


async def test_routes_of_a_mounted_sub_application(clean_cache_setup: None) -> None:
    app = FastAPI(lifespan=cache_lifespan(prefix=PREFIX))
    sub = FastAPI()

    @sub.get("/things/{tid}")
    @cache_response(ttl=60)
    async def thing(tid: int, q: str = "") -> dict[str, int]:
        return {"tid": tid}

    app.mount("/sub", sub)
    async with served(app) as client:
        assert (await status(client, "/sub/things/5?q=a"))[0] == "MISS"
        assert (await status(client, "/sub/things/5?q=a"))[0] == "HIT"
        assert await invalidate(thing, app=app, tid=5, q="a") == 1
        assert (await status(client, "/sub/things/5?q=a"))[0] == "MISS"


@pytest.mark.redis
async def test_another_worker_invalidates_by_endpoint(
    clean_cache_setup: None, redis_server: Any, redis_client: aioredis.Redis
) -> None:
    """Two processes' worth of apps on one Redis: the one that never served a request
    computes the same key and invalidates the other's entry."""

    def backend() -> Backend:
        return RedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))

    serving, _, _ = make_app(backend)
    other, _, other_endpoints = make_app(backend)
    async with served(serving) as client:
        assert (await status(client, "/blogs/1?lang=fr"))[0] == "MISS"
        assert (await status(client, "/v2/items/4?query=z"))[0] == "MISS"
    async with other.router.lifespan_context(other):
        with pytest.raises(LookupError, match="pass app="):
            await invalidate(other_endpoints["get_blog"], blog_id=1, lang="fr")
        assert await invalidate(other_endpoints["get_blog"], app=other, blog_id=1, lang="fr") == 1
        assert await invalidate(other_endpoints["item"], app=other, item_id=4, q="z") == 1
    async with served(serving) as client:
        assert (await status(client, "/blogs/1?lang=fr"))[0] == "MISS"


class PageFilter:
    def __init__(self, page: int = 1, per_page: Annotated[int, Query(alias="per-page")] = 10):
        self.page = page
        self.per_page = per_page


async def test_invalidate_depends_filter_classes(clean_cache_setup: None) -> None:
    app = FastAPI(lifespan=cache_lifespan(prefix=PREFIX))

    @app.get("/pages")
    @cache_response(ttl=60, tags=["page:{filters.page}"])
    async def pages(filters: Annotated[PageFilter, Depends()]) -> dict[str, int]:
        return {"page": filters.page, "per_page": filters.per_page}

    async with served(app) as client:
        url = "/pages?page=3&per-page=5"
        assert (await status(client, url))[0] == "MISS"
        assert (await status(client, url))[0] == "HIT"
        assert await invalidate(pages, page=3, per_page=5) == 1
        assert (await status(client, url))[0] == "MISS"
        assert await invalidate(pages, page=3, **{"per-page": 5}) == 1
        assert (await status(client, url))[0] == "MISS"
        assert await invalidate_tags("page:3") == 1


def test_tag_templates() -> None:
    templates = TagTemplates(["blog:{blog_id}", "f:{filters.color}", "plain", "blog:{blog_id}"])
    assert templates.templates == ("blog:{blog_id}", "f:{filters.color}", "plain")
    assert templates.fields == {"blog_id", "filters"}
    assert templates.render({"blog_id": 7, "filters": Filters(color="red")}) == [
        "blog:7",
        "f:red",
        "plain",
    ]
    with pytest.raises(KeyError, match="blog_id"):
        templates.render({"filters": Filters()})
    with pytest.raises(ValueError, match="not parameters"):
        templates.check(["filters"], "here")
    with pytest.raises(ValueError, match="positional"):
        TagTemplates(["a:{}"])
    with pytest.raises(ValueError, match="not a valid template"):
        TagTemplates(["a:{"])
    with pytest.raises(TypeError, match="not the string"):
        TagTemplates("blog:{blog_id}")
    assert not TagTemplates()


def test_decorators_check_their_templates_at_decoration() -> None:
    with pytest.raises(ValueError, match="not parameters"):

        @cache_response(ttl=1, tags=["blog:{blog}"])
        async def cached(blog_id: int) -> None:
            return None

    with pytest.raises(ValueError, match="not parameters"):

        @invalidates(tags=["blog:{blog}"])
        async def write(blog_id: int) -> None:
            return None

    with pytest.raises(TypeError, match="async def"):
        invalidates(tags=["x"])(lambda: None)  # type: ignore[arg-type, return-value]


class ClientHeaders(BaseModel):
    x_client_id: str
    x_region: str = "eu"


async def test_invalidate_header_models_by_the_header_fastapi_reads(
    clean_cache_setup: None,
) -> None:
    app = FastAPI(lifespan=cache_lifespan(prefix=PREFIX))

    @app.get("/me")
    @cache_response(ttl=60)
    async def me(client: Annotated[ClientHeaders, Header()]) -> dict[str, str]:
        return {"id": client.x_client_id, "region": client.x_region}

    async with served(app) as client:
        headers = {"x-client-id": "7", "x-region": "us"}
        assert (await status(client, "/me", headers=headers))[0] == "MISS"
        assert (await status(client, "/me", headers=headers))[0] == "HIT"
        # FastAPI reads x_client_id from the x-client-id header: the same key
        assert await invalidate(me, x_client_id="7", x_region="us") == 1
        assert (await status(client, "/me", headers=headers))[0] == "MISS"
