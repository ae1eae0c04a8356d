"""The hit-first path (fastapi_cachemate/_route/hitfirst.py): hits answered before FastAPI's
handler.

On a route whose dependencies are only parameters and filter classes, a hit is answered
before FastAPI validates the parameters and solves the dependencies. These tests pin down
what that must not change: a function dependency (auth, a maintenance switch, a header)
still runs on every hit; an override runs; a request FastAPI would refuse (422) is never
answered from the cache; a miss still makes one lookup; and the hit is the same response
as the handler path's.
"""

# No "from __future__ import annotations": the endpoints use classes local to the builders.

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict

from fastapi_cachemate import BaseCacheSettings
from fastapi_cachemate._route.hitfirst import HitFirstApp, blocker
from fastapi_cachemate.cache import cache_response
from tests.support.apps import app_with_routes, cache_lifespan, served
from tests.support.fixtures import BackendFactory
from tests.support.servers import command_calls, command_delta

Build = Callable[[Callable[[FastAPI], None]], FastAPI]


@pytest.fixture(name="make_app")
def make_app_fixture(make_backend: BackendFactory, clean_cache_setup: None) -> Build:
    """make_app(add_routes) -> an app whose lifespan sets the cache up on the backend."""
    settings = BaseCacheSettings(backend_timeout=5)  # see tests/support/fixtures.py

    def build(add_routes: Callable[[FastAPI], None]) -> FastAPI:
        return app_with_routes(add_routes, cache_lifespan(make_backend, settings, "hitfirst"))

    return build


@dataclasses.dataclass
class Filter:
    """A Depends() filter class: allowed on the hit-first path (it only shapes arguments)."""

    q: str = "all"
    limit: int = 10


def _counted_filter(calls: Counter[str]) -> type:
    class Counted:
        def __init__(self, q: str = "all") -> None:
            calls["filter"] += 1
            self.q = q

    return Counted


def _route(app: FastAPI, path: str) -> APIRoute:
    return next(r for r in app.routes if isinstance(r, APIRoute) and r.path == path)


async def _get(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    return await client.get(url, **kwargs)


async def test_a_hit_runs_neither_validation_nor_dependencies(make_app: Build) -> None:
    def routes(app: FastAPI) -> None:
        calls = app.state.calls
        counted = _counted_filter(calls)

        @app.get("/items/{item_id}")
        @cache_response(ttl=60)
        async def item(item_id: int, f: Annotated[Any, Depends(counted)]) -> dict[str, Any]:
            calls["endpoint"] += 1
            return {"id": item_id, "q": f.q}

    app = make_app(routes)
    async with served(app) as client:
        miss = await _get(client, "/items/7?q=x")
        hits = [await _get(client, "/items/7?q=x") for _ in range(3)]
    assert miss.headers["x-cache-status"] == "MISS"
    assert [h.headers["x-cache-status"] for h in hits] == ["HIT"] * 3
    assert {h.content for h in hits} == {miss.content} == {b'{"id":7,"q":"x"}'}
    # the filter class was built for the miss only: FastAPI's handler did not run on hits
    assert app.state.calls == Counter(endpoint=1, filter=1)
    assert isinstance(_route(app, "/items/{item_id}").app, HitFirstApp)


async def test_function_dependencies_run_on_every_hit(make_app: Build) -> None:
    """A function dependency may refuse the request or set a header: hits go through
    FastAPI's handler, where it runs before the cache is looked at."""

    def routes(app: FastAPI) -> None:
        calls = app.state.calls
        app.state.maintenance = False

        def gate(request: Request, response: Response) -> None:
            calls["gate"] += 1
            if request.app.state.maintenance:
                raise HTTPException(503, "maintenance")
            response.headers["x-gate"] = str(calls["gate"])

        @app.get("/gated", dependencies=[Depends(gate)])
        @cache_response(ttl=60)
        async def gated() -> dict[str, int]:
            calls["endpoint"] += 1
            return {"n": calls["endpoint"]}

    app = make_app(routes)
    async with served(app) as client:
        miss = await _get(client, "/gated")
        hit = await _get(client, "/gated")
        app.state.maintenance = True
        refused = await _get(client, "/gated")
    assert (miss.headers["x-cache-status"], miss.headers["x-gate"]) == ("MISS", "1")
    assert (hit.headers["x-cache-status"], hit.headers["x-gate"]) == ("HIT", "2")
    assert refused.status_code == 503
    assert app.state.calls == Counter(gate=3, endpoint=1)
    assert not isinstance(_route(app, "/gated").app, HitFirstApp)


async def test_router_dependencies_run_on_every_hit(make_app: Build) -> None:
    """Dependencies added by include_router are part of the route FastAPI runs."""

    def routes(app: FastAPI) -> None:
        calls = app.state.calls

        def audit() -> None:
            calls["audit"] += 1

        router = APIRouter()

        @router.get("/r")
        @cache_response(ttl=60)
        async def routed() -> dict[str, bool]:
            calls["endpoint"] += 1
            return {"ok": True}

        app.include_router(router, prefix="/v1", dependencies=[Depends(audit)])

    app = make_app(routes)
    async with served(app) as client:
        statuses = [(await _get(client, "/v1/r")).headers["x-cache-status"] for _ in range(3)]
    assert statuses == ["MISS", "HIT", "HIT"]
    assert app.state.calls == Counter(audit=3, endpoint=1)


@pytest.mark.parametrize("url", ["/filtered", "/included/filtered"])
async def test_dependency_overrides_run_on_hits(make_app: Build, url: str) -> None:
    def routes(app: FastAPI) -> None:
        router = APIRouter()

        @app.get("/filtered")
        @router.get("/filtered")
        @cache_response(ttl=60)
        async def filtered(f: Annotated[Filter, Depends()]) -> dict[str, Any]:
            return {"q": f.q, "limit": f.limit}

        app.include_router(router, prefix="/included")

    app = make_app(routes)

    def teapot() -> Filter:
        raise HTTPException(418)

    async with served(app) as client:
        first = await _get(client, f"{url}?q=a")
        second = await _get(client, f"{url}?q=a")
        app.dependency_overrides[Filter] = teapot
        overridden = await _get(client, f"{url}?q=a")
    assert [first.headers["x-cache-status"], second.headers["x-cache-status"]] == ["MISS", "HIT"]
    assert overridden.status_code == 418


async def test_requests_that_fail_validation_are_never_answered_from_the_cache(
    make_app: Build,
) -> None:
    def routes(app: FastAPI) -> None:
        @app.get("/pos/{n}")
        @cache_response(ttl=60)
        async def positive(
            n: Annotated[int, Path(gt=0)], size: Annotated[int, Query(le=100)] = 10
        ) -> dict[str, int]:
            return {"n": n, "size": size}

    app = make_app(routes)
    async with served(app) as client:
        ok = [await _get(client, "/pos/1?size=5") for _ in range(2)]
        bad = [
            await _get(client, url)
            for url in ("/pos/0", "/pos/0", "/pos/abc", "/pos/abc", "/pos/1?size=500") * 2
        ]
    assert [r.headers["x-cache-status"] for r in ok] == ["MISS", "HIT"]
    assert {r.status_code for r in bad} == {422}
    assert all("HIT" not in r.headers.get("x-cache-status", "") for r in bad)


async def test_a_query_model_that_forbids_extras_keeps_fastapis_path(make_app: Build) -> None:
    """extra="forbid": an unknown query item is a 422, and the key leaves such items out,
    so the route's hits go through FastAPI's validation."""

    def routes(app: FastAPI) -> None:
        class Strict(BaseModel):
            model_config = ConfigDict(extra="forbid")
            a: int = 0

        @app.get("/strict")
        @cache_response(ttl=60)
        async def strict(s: Annotated[Strict, Query()]) -> dict[str, int]:
            return {"a": s.a}

    app = make_app(routes)
    async with served(app) as client:
        miss = await _get(client, "/strict?a=1")
        hit = await _get(client, "/strict?a=1")
        extra = await _get(client, "/strict?a=1&b=2")
    assert [miss.headers["x-cache-status"], hit.headers["x-cache-status"]] == ["MISS", "HIT"]
    assert extra.status_code == 422
    assert not isinstance(_route(app, "/strict").app, HitFirstApp)


async def test_a_hit_first_hit_is_the_handler_paths_hit(make_app: Build) -> None:
    """The same entry answered both ways: same status, body and headers (but Age)."""

    def routes(app: FastAPI) -> None:
        @app.get("/same")
        @cache_response(ttl=60)
        async def same(f: Annotated[Filter, Depends()]) -> dict[str, Any]:
            return {"q": f.q}

    app = make_app(routes)
    async with served(app) as client:
        await _get(client, "/same?q=z")
        first = await _get(client, "/same?q=z")
        conditional_first = await _get(
            client, "/same?q=z", headers={"if-none-match": first.headers["etag"]}
        )
        app.dependency_overrides[object] = object  # any override: FastAPI's path
        handler = await _get(client, "/same?q=z")
        conditional_handler = await _get(
            client, "/same?q=z", headers={"if-none-match": first.headers["etag"]}
        )

    def shape(r: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
        # on Redis, a repeated hit may come from the near cache: the same hit, said so
        headers = [(k, v.replace("; detail=near", "")) for k, v in r.headers.items()]
        return r.status_code, r.content, [(k, v) for k, v in headers if k != "age"]

    assert first.headers["x-cache-status"] == "HIT"
    assert shape(first) == shape(handler)
    assert conditional_first.status_code == 304
    assert shape(conditional_first) == shape(conditional_handler)


@pytest.mark.redis
@pytest.mark.parametrize("backend_kind", ["redis"], indirect=True)
async def test_a_miss_is_still_one_lookup(make_app: Build, redis_client: aioredis.Redis) -> None:
    """A miss on the hit-first path sends the commands of a miss on FastAPI's path: the
    endpoint's path reuses the hit-first lookup instead of sending a second GET."""

    def routes(app: FastAPI) -> None:
        def nothing() -> None: ...

        @app.get("/first/{n}")
        @cache_response(ttl=60)
        async def first(n: int) -> dict[str, int]:
            return {"n": n}

        @app.get("/handler/{n}", dependencies=[Depends(nothing)])
        @cache_response(ttl=60)
        async def handler(n: int) -> dict[str, int]:
            return {"n": n}

    app = make_app(routes)
    deltas = {}
    async with served(app) as client:
        for path in ("/first", "/handler"):
            await _get(client, f"{path}/0")  # connects, and the route's plan is built
            before = await command_calls(redis_client)
            miss = await _get(client, f"{path}/1")
            between = await command_calls(redis_client)
            hit = await _get(client, f"{path}/1")
            after = await command_calls(redis_client)
            assert (miss.headers["x-cache-status"], hit.headers["x-cache-status"]) == (
                "MISS",
                "HIT",
            )
            assert command_delta(between, after) == {"get": 1}
            deltas[path] = command_delta(before, between)
    assert isinstance(_route(app, "/first/{n}").app, HitFirstApp)
    assert deltas["/first"] == deltas["/handler"]


async def test_a_failing_lookup_falls_back_to_fastapis_handler() -> None:
    """A defect of the cache on the hit-first path is logged and the handler serves."""
    sent: list[dict[str, Any]] = []

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"handler"})

    async def broken(request: Request) -> Response | None:
        request.scope["fastapi_cachemate.lookup"] = "half-done"
        raise RuntimeError("defect")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    await HitFirstApp(handler, broken)(scope, receive, send)
    assert sent[-1]["body"] == b"handler"
    assert "fastapi_cachemate.lookup" not in scope


def _dependant(endpoint: Callable[..., Any]) -> Any:
    return get_dependant(path="/x", call=endpoint)


def test_blocker_names_what_keeps_a_route_on_fastapis_path() -> None:
    def dep() -> None: ...

    class NeedsRequest:
        def __init__(self, request: Request) -> None: ...

    class Body(BaseModel):
        a: int

    class Effect:
        def __init__(self) -> None: ...

    async def plain(n: int, f: Annotated[Filter, Depends()], r: Request) -> None: ...
    async def no_parameters(e: Annotated[Effect, Depends()]) -> None: ...
    async def function_dep(d: Annotated[None, Depends(dep)]) -> None: ...
    async def security(t: Annotated[Any, Depends(HTTPBearer())]) -> None: ...
    async def body(b: Body) -> None: ...
    async def request_class(c: Annotated[NeedsRequest, Depends()]) -> None: ...

    assert blocker(_dependant(plain)) is None
    assert "not a class" in (blocker(_dependant(function_dep)) or "")
    assert "not a class" in (blocker(_dependant(security)) or "")
    assert "body" in (blocker(_dependant(body)) or "")
    assert "request or the response" in (blocker(_dependant(request_class)) or "")
    assert "reads no parameter" in (blocker(_dependant(no_parameters)) or "")
    listed = APIRoute("/x", plain, dependencies=[Depends(Filter)])
    assert "dependencies=[...]" in (blocker(listed.dependant) or "")
