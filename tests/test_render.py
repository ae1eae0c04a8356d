"""What the cache sends is what FastAPI sends: the same endpoint with and without the cache.

Each route is registered twice, under /plain (FastAPI alone) and /cached (decorated); the
status, the headers (but the cache's own) and the body must be byte-identical, on the miss
and on the hit.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, Field

from fastapi_cachemate.cache import cache_response
from tests.support.apps import cache_lifespan, served


class Item(BaseModel):
    item_id: int = Field(alias="itemId")
    name: str
    note: str | None = None
    size: int = 3


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str = "p"


ITEM = {"itemId": 1, "name": "a", "note": None}
WHEN = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")

Register = Callable[[APIRouter, Callable[[Callable[..., Any]], Callable[..., Any]]], None]


def _routes(router: APIRouter, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    @router.get("/model", response_model=Item)
    @wrap
    async def model() -> Any:
        return ITEM

    @router.get("/model-by-name", response_model=Item, response_model_by_alias=False)
    @wrap
    async def model_by_name() -> Any:
        return ITEM

    @router.get("/include", response_model=Item, response_model_include={"name"})
    @wrap
    async def include() -> Any:
        return ITEM

    @router.get("/exclude", response_model=Item, response_model_exclude={"size"})
    @wrap
    async def exclude() -> Any:
        return ITEM

    @router.get("/unset", response_model=Item, response_model_exclude_unset=True)
    @wrap
    async def unset() -> Any:
        return Item(itemId=1, name="a")

    @router.get("/defaults", response_model=Item, response_model_exclude_defaults=True)
    @wrap
    async def defaults() -> Any:
        return {"itemId": 1, "name": "a", "size": 3}

    @router.get("/none", response_model=Item, response_model_exclude_none=True)
    @wrap
    async def none() -> Any:
        return ITEM

    @router.get("/annotated")
    @wrap
    async def annotated() -> Item:
        return Item.model_validate(ITEM)

    @router.get("/list", response_model=list[Item])
    @wrap
    def list_sync() -> Any:
        return [ITEM, {**ITEM, "itemId": 2}]

    @router.get("/dataclass")
    @wrap
    async def dataclass_() -> Point:
        return Point(1, 2.5)

    @router.get("/encoded")
    @wrap
    async def encoded() -> Any:
        return {"when": WHEN, "uid": UID, "set": {1}, "float": 1e300, "text": "é\u2028"}

    @router.get("/created", status_code=201)
    @wrap
    async def created() -> dict[str, str]:
        return {"ok": "yes"}

    @router.get("/no-content", status_code=204)
    @wrap
    async def no_content() -> None:
        return None

    @router.get("/text", response_class=PlainTextResponse)
    @wrap
    async def text() -> str:
        return "plain é"

    @router.get("/html", response_class=HTMLResponse)
    @wrap
    def html() -> str:
        return "<b>html</b>"

    @router.get("/redirect", response_class=RedirectResponse)
    @wrap
    async def redirect() -> str:
        return "/elsewhere"

    @router.get("/injected")
    @wrap
    async def injected(response: Response) -> dict[str, int]:
        response.status_code = 202
        response.headers["x-a"] = "1"
        response.headers.append("x-a", "2")
        response.set_cookie("c", "v")  # served as FastAPI would; not stored
        return {"n": 1}


PATHS = [
    "/model",
    "/model-by-name",
    "/include",
    "/exclude",
    "/unset",
    "/defaults",
    "/none",
    "/annotated",
    "/list",
    "/dataclass",
    "/encoded",
    "/created",
    "/no-content",
    "/text",
    "/html",
    "/redirect",
    "/injected",
]


def _app() -> FastAPI:
    app = FastAPI(lifespan=cache_lifespan())
    plain, cached = APIRouter(), APIRouter()
    _routes(plain, lambda f: f)
    _routes(cached, cache_response(ttl=60))
    app.include_router(plain, prefix="/plain")
    app.include_router(cached, prefix="/cached")
    return app


def _comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    own = {"x-cache-status", "cache-status", "cache-control", "age", "etag"}
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in own]
    return response.status_code, headers, response.content


@pytest.mark.parametrize("path", PATHS)
async def test_cached_response_is_fastapis(path: str, clean_cache_setup: None) -> None:
    app = _app()
    async with served(app) as client:
        expected = _comparable(await client.get("/plain" + path, follow_redirects=False))
        first = await client.get("/cached" + path, follow_redirects=False)
        second = await client.get("/cached" + path, follow_redirects=False)
    assert _comparable(first) == expected
    assert _comparable(second) == expected
    stored = 200 <= expected[0] < 300 and path != "/injected"
    assert second.headers["x-cache-status"] == ("HIT" if stored else "MISS")


async def test_included_router_context(clean_cache_setup: None) -> None:
    """FastAPI 0.165 runs an included route with the include's prefix, dependencies and
    default response class (not in scope["route"]): rendered and keyed with them."""
    from fastapi import Depends, Query

    seen: list[str] = []

    async def tenant(response: Response, tenant: str = Query("none")) -> None:
        seen.append(tenant)
        response.headers["x-tenant"] = tenant

    def build(wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> APIRouter:
        router = APIRouter()

        @router.get("/page")
        @wrap
        async def page() -> str:
            return "<p>page</p>"

        return router

    app = FastAPI(lifespan=cache_lifespan())
    cached = build(cache_response(ttl=60))
    for prefix, router in (("/plain", build(lambda f: f)), ("/cached", cached)):
        app.include_router(
            router,
            prefix=prefix,
            dependencies=[Depends(tenant)],
            default_response_class=HTMLResponse,
        )
    app.include_router(cached, prefix="/other")  # the same router again, no dependency
    async with served(app) as client:
        expected = _comparable(await client.get("/plain/page?tenant=a"))
        answers = [await client.get(url) for url in ["/cached/page?tenant=a"] * 2]
        other_tenant = await client.get("/cached/page?tenant=b")
        other_include = [await client.get("/other/page?tenant=a") for _ in range(2)]
    assert expected[1][:1] == [("content-length", "11")]
    assert ("content-type", "text/html; charset=utf-8") in expected[1]
    assert [_comparable(r) for r in answers] == [expected, expected]
    assert [r.headers["x-cache-status"] for r in answers] == ["MISS", "HIT"]
    # the include-level dependency reads ?tenant: it is in the key
    assert other_tenant.headers["x-cache-status"] == "MISS"
    assert other_tenant.headers["x-tenant"] == "b"
    assert [r.headers["x-cache-status"] for r in other_include] == ["MISS", "HIT"]
    assert "x-tenant" not in other_include[1].headers
    assert other_include[1].headers["content-type"] == "application/json"
    assert seen == ["a", "a", "a", "b"]
