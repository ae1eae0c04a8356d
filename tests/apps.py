"""Test apps shared by the FastAPI-layer tests, and a client that runs an app's lifespan.

``build_app(lifespan)`` returns a FastAPI app with one cached endpoint per behaviour under
test; ``app.state.calls`` counts how often each endpoint body (and the response model's
validator) ran, so that a test can tell a hit from a miss by more than the status header.
"""

# No "from __future__ import annotations": the endpoints use classes local to build_app.

import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Response
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from pydantic import BaseModel, field_validator

from fastapi_cachemate.cache import cache_response, is_bypass

__all__ = ["FILE_BODY", "Lifespan", "build_app", "client_for", "served"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

FILE_PATH = Path(__file__)  # served by /file: this very source file
FILE_BODY = FILE_PATH.read_bytes()


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an httpx client talking to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """A client without lifespan (for apps whose cache is never set up)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def build_app(lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    calls: Counter[str] = Counter()
    app.state.calls = calls
    app.state.threads = []
    app.state.file_path = FILE_PATH

    class Item(BaseModel):
        id: int
        name: str
        note: str | None = None

        @field_validator("name")
        @classmethod
        def _count(cls, value: str) -> str:
            calls["validate"] += 1
            return value

    class Page(BaseModel):
        page: int = 1
        size: int = 10

    def dependency_header(response: Response) -> None:
        calls["dependency"] += 1
        response.headers["x-dependency"] = str(calls["dependency"])

    # async, as in the seed README: a sync generator dependency runs in a worker thread
    # whose context copy never reaches the endpoint.
    async def maybe_bypass(x_user: Annotated[str | None, Query()] = None) -> AsyncIterator[None]:
        if x_user:
            token = is_bypass.set(True)
            try:
                yield
            finally:
                is_bypass.reset(token)
        else:
            yield

    @app.get("/async/{item_id}")
    @cache_response(ttl=60)
    async def async_endpoint(item_id: int, q: str | None = None) -> dict[str, Any]:
        calls["async"] += 1
        return {"item_id": item_id, "q": q}

    @app.get("/sync/{item_id}")
    @cache_response(ttl=60)
    def sync_endpoint(item_id: int) -> dict[str, Any]:
        calls["sync"] += 1
        app.state.threads.append(threading.get_ident())
        return {"item_id": item_id, "sync": True}

    @app.get("/model/{item_id}", response_model=Item, response_model_exclude_none=True)
    @cache_response(ttl=60)
    async def model_endpoint(item_id: int) -> Any:
        calls["model"] += 1
        return {"id": item_id, "name": f"item {item_id}", "note": None, "secret": "dropped"}

    @app.get("/page")
    @cache_response(ttl=60)
    async def page_endpoint(page: Annotated[Page, Query()]) -> Page:
        calls["page"] += 1
        return page

    @app.get("/created", status_code=202)
    @cache_response(ttl=60)
    async def created_endpoint() -> dict[str, str]:
        calls["created"] += 1
        return {"status": "accepted"}

    @app.get("/injected", dependencies=[Depends(dependency_header)])
    @cache_response(ttl=60)
    async def injected_endpoint(response: Response) -> dict[str, str]:
        calls["injected"] += 1
        response.status_code = 203
        response.headers["x-endpoint"] = "set"
        return {"injected": "yes"}

    @app.get("/injected-json", dependencies=[Depends(dependency_header)])
    @cache_response(ttl=60)
    async def injected_json(response: Response) -> JSONResponse:
        calls["injected-json"] += 1
        response.headers["x-endpoint"] = "set"
        return JSONResponse({"returned": True}, status_code=200, headers={"x-own": "1"})

    @app.get("/json")
    @cache_response(ttl=60)
    async def json_endpoint() -> JSONResponse:
        calls["json"] += 1
        return JSONResponse({"kind": "json", "n": [1, 2, 3]}, status_code=200)

    @app.get("/html", response_class=HTMLResponse)
    @cache_response(ttl=60)
    async def html_endpoint() -> HTMLResponse:
        calls["html"] += 1
        return HTMLResponse("<h1>cached</h1>")

    @app.get("/html-str", response_class=HTMLResponse)
    @cache_response(ttl=60)
    def html_str_endpoint() -> str:
        calls["html-str"] += 1
        return "<p>rendered by the route's response_class</p>"

    @app.get("/plain")
    @cache_response(ttl=60)
    async def plain_endpoint() -> PlainTextResponse:
        calls["plain"] += 1
        return PlainTextResponse("plain text", status_code=200)

    class CsvResponse(Response):
        media_type = "text/csv"

    @app.get("/custom")
    @cache_response(ttl=60)
    async def custom_endpoint() -> Response:
        calls["custom"] += 1
        return CsvResponse("a,b\n1,2\n")

    @app.get("/stream")
    @cache_response(ttl=60)
    async def stream_endpoint() -> StreamingResponse:
        calls["stream"] += 1

        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"one ", b"two ", b"three"):
                yield part

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/file")
    @cache_response(ttl=60)
    async def file_endpoint() -> FileResponse:
        calls["file"] += 1
        return FileResponse(app.state.file_path, media_type="application/octet-stream")

    @app.get("/maybe-bypass", dependencies=[Depends(maybe_bypass)])
    @cache_response(ttl=60)
    async def maybe_bypass_endpoint() -> dict[str, int]:
        calls["maybe-bypass"] += 1
        return {"n": calls["maybe-bypass"]}

    @app.post("/post")
    @cache_response(ttl=60)
    async def post_endpoint() -> dict[str, int]:
        calls["post"] += 1
        return {"n": calls["post"]}

    @app.get("/echo")
    @cache_response(ttl=60)
    async def echo_endpoint(
        q: str | None = None,
        tags: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
        x_token: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        calls["echo"] += 1
        return {"q": q, "tags": tags, "x_token": x_token}

    @app.get("/names/{name}")
    @cache_response(ttl=60)
    async def name_endpoint(name: str) -> dict[str, str]:
        calls["names"] += 1
        return {"name": name}

    @app.get("/missing")
    @cache_response(ttl=60)
    async def missing_endpoint() -> dict[str, str]:
        calls["missing"] += 1
        raise HTTPException(status_code=404, detail="nope")

    @app.get("/error-json")
    @cache_response(ttl=60)
    async def error_json_endpoint() -> JSONResponse:
        calls["error-json"] += 1
        return JSONResponse({"error": calls["error-json"]}, status_code=503)

    @app.get("/cookie")
    @cache_response(ttl=60)
    async def cookie_endpoint(response: Response) -> dict[str, int]:
        calls["cookie"] += 1
        response.set_cookie("session", str(calls["cookie"]))
        return {"n": calls["cookie"]}

    @app.get("/private")
    @cache_response(ttl=60)
    async def private_endpoint(response: Response) -> dict[str, int]:
        calls["private"] += 1
        response.headers["Cache-Control"] = "private, max-age=10"
        return {"n": calls["private"]}

    @app.get("/own-cache-control")
    @cache_response(ttl=60)
    async def own_cache_control_endpoint(response: Response) -> dict[str, int]:
        calls["own-cache-control"] += 1
        response.headers["Cache-Control"] = "public, max-age=5"
        return {"n": calls["own-cache-control"]}

    @app.get("/big")
    @cache_response(ttl=60)
    async def big_endpoint() -> PlainTextResponse:
        calls["big"] += 1
        return PlainTextResponse("x" * 50_000)

    return app
