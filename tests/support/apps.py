"""Every app the tests serve, and the one way to serve an app in process.

- ``build_app(lifespan)``: one cached endpoint per behaviour of the FastAPI layer;
  ``app.state.calls`` counts how often each endpoint body (and the response model's
  validator) ran, so that a test can tell a hit from a miss by more than the status header.
- ``build_http_app(lifespan)``: the HTTP-semantics app: statuses and response headers by case
  (``CASES``), validators, Vary, HEAD, raised HTTPExceptions; ``app.state.calls`` too.
- ``build_refresh_app(make_backend, settings, ...)``: one endpoint whose failures and
  pauses a test controls, for the stale, refresh and lock paths; ``Marked`` counts the
  refresh requests among the requests.
- ``app_with_routes(add_routes, lifespan)``: an empty app a test adds its own routes to.
- ``build_stampede_app(redis_url, ...)``: the stampede tests' app, in process or under
  uvicorn (``stampede_app_from_env``, a uvicorn ``--factory``).
- ``cache_lifespan(make_backend, settings)``: the lifespan that sets the cache up;
  ``redis_lifespan(server)``: the same on a Redis client that does not retry.
- ``served(app)``: runs the lifespan and yields an httpx client talking to the app in process;
  ``client_for(app)``: a client without lifespan; ``asgi_call``: one raw ASGI request.
"""

# No "from __future__ import annotations": the endpoints use classes local to the builders.

import asyncio
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from pydantic import BaseModel, field_validator
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_cachemate import BaseCacheSettings, CacheSetup, request_unkeyed
from fastapi_cachemate._runtime.reentry import refresh_ticket
from fastapi_cachemate.cache import cache_response, is_bypass
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.layout import DEFAULT_PREFIX
from fastapi_cachemate.core.types import Backend, LockManager
from tests.support.servers import RedisServer

__all__ = [
    "CASES",
    "CUSTOM_STATUSES",
    "FILE_BODY",
    "REFRESH_APP_TTL",
    "STAMPEDE_TTL",
    "Lifespan",
    "Marked",
    "app_with_routes",
    "asgi_call",
    "build_app",
    "build_http_app",
    "build_refresh_app",
    "build_stampede_app",
    "cache_lifespan",
    "client_for",
    "counter_client",
    "recommended_client",
    "redis_lifespan",
    "served",
    "stampede_app_from_env",
]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

FILE_PATH = Path(__file__)  # served by /file: this very source file
FILE_BODY = FILE_PATH.read_bytes()


@asynccontextmanager
async def served(app: FastAPI, *, timeout: float = 5.0) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an httpx client talking to it in process.

    When the lifespan yields a state, each request gets a copy of it in ``scope["state"]``,
    as uvicorn gives it (httpx's ASGITransport does not).
    """
    async with app.router.lifespan_context(app) as state:
        server: ASGIApp = app
        if state is not None:

            async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
                await app({**scope, "state": dict(state)}, receive, send)

            server = with_state
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=timeout
        ) as client:
            yield client


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """A client without lifespan (for apps whose cache is never set up)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def cache_lifespan(
    make_backend: Callable[[], Backend | None] | None = None,
    settings: BaseCacheSettings | None = None,
    prefix: str = DEFAULT_PREFIX,
    make_locks: Callable[[Backend], LockManager] | None = None,
) -> Lifespan:
    """A lifespan that sets the cache up on make_backend() (None: the default in-process
    store) and make_locks(backend) (None: the default lock manager) with these settings
    (None: the defaults) and prefix, and closes it at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        backend = None if make_backend is None else make_backend()
        locks = None if make_locks is None or backend is None else make_locks(backend)
        CacheSetup.setup(backend=backend, lock_manager=locks, settings=settings, prefix=prefix)
        try:
            yield
        finally:
            await CacheSetup.close()

    return lifespan


def redis_lifespan(
    server: RedisServer, *, prefix: str = DEFAULT_PREFIX, **settings: Any
) -> Lifespan:
    """A lifespan caching on server with a client that does not retry (a stopped server is
    seen at once) and a generous backend_timeout: a reconnect after a restart on a loaded
    machine must not time out (that would be one more failure: a correct miss, not what the
    tests count)."""

    def make_backend() -> Backend:
        client = aioredis.Redis(
            host=server.host,
            port=server.port,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), retries=0),
        )
        return RedisBackend(client)

    return cache_lifespan(make_backend, BaseCacheSettings(backend_timeout=5, **settings), prefix)


def custom_app(
    make_backend: Callable[[], Backend],
    make_locks: Callable[[Backend], LockManager] | None = None,
    **settings: Any,
) -> FastAPI:
    """The general test app (build_app), its lifespan setting the cache up on make_backend()
    and make_locks(backend) (None: the default lock manager), prefix "test"."""
    settings.setdefault("backend_timeout", 5.0)  # a loaded machine: see app_factory
    lifespan = cache_lifespan(make_backend, BaseCacheSettings(**settings), "test", make_locks)
    return build_app(lifespan)


def app_with_routes(add_routes: Callable[[FastAPI], None], lifespan: Lifespan) -> FastAPI:
    """An app with the routes add_routes(app) declares; ``app.state.calls`` for them to count."""
    app = FastAPI(lifespan=lifespan)
    app.state.calls = Counter()
    add_routes(app)
    return app


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


# --- the HTTP-semantics app ----------------------------------------------------------------

#: The statuses of the ``/custom/{case}`` endpoint: per-status TTLs.
CUSTOM_STATUSES: dict[int | str, float] = {200: 300, 301: 3600, 404: 30, "2xx": 120}

#: case -> (status, response headers). ``/default/{case}`` and ``/custom/{case}`` answer them.
CASES: dict[str, tuple[int, list[tuple[str, str]]]] = {
    "ok": (200, []),
    "created": (201, []),
    "non-authoritative": (203, []),
    "no-content": (204, []),
    "partial": (206, [("content-range", "bytes 0-3/10")]),
    "moved": (301, [("location", "/elsewhere")]),
    "found": (302, [("location", "/elsewhere")]),
    "not-found": (404, []),
    "gone": (410, []),
    "error": (500, []),
    "unavailable": (503, []),
    "set-cookie": (200, [("set-cookie", "session=abc; HttpOnly")]),
    "set-cookie-404": (404, [("set-cookie", "session=abc")]),
    "no-store": (200, [("cache-control", "no-store")]),
    "private": (200, [("cache-control", "private, max-age=60")]),
    "private-field": (200, [("cache-control", 'private="x-user"')]),
    "no-cache": (200, [("cache-control", "no-cache")]),
    "public": (200, [("cache-control", "public, max-age=5")]),
    "vary-star": (200, [("vary", "*")]),
    "vary-unkeyed": (200, [("vary", "Accept-Language")]),
    "own-etag": (200, [("etag", 'W/"v1"')]),
}


class OriginalUrlMiddleware:
    """Honours X-Original-URL as some proxies' rewrite rules do: the path is replaced."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-original-url":
                    path = value.decode("latin-1")
                    scope = {**scope, "path": path, "raw_path": path.encode("latin-1")}
                    break
        await self.app(scope, receive, send)


def build_http_app(lifespan: Lifespan | None = None) -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    app.add_middleware(OriginalUrlMiddleware)
    calls: Counter[str] = Counter()
    app.state.calls = calls

    def case_response(kind: str, case: str) -> Response:
        calls[kind] += 1
        calls[f"{kind}/{case}"] += 1
        status, headers = CASES[case]
        body = None if status in (204, 304) else f"{case} {calls[kind]}"
        return Response(body, status_code=status, headers=dict(headers), media_type="text/plain")

    @app.get("/default/{case}")
    @cache_response(ttl=60)
    async def default_statuses(case: str) -> Response:
        return case_response("default", case)

    @app.get("/custom/{case}")
    @cache_response(ttl=60, statuses=CUSTOM_STATUSES)
    async def custom_statuses(case: str) -> Response:
        return case_response("custom", case)

    @app.get("/counter")
    @cache_response(ttl=60)
    async def counter(q: str | None = None) -> dict[str, Any]:
        calls["counter"] += 1
        return {"n": calls["counter"], "q": q}

    @app.get("/echo")
    @cache_response(ttl=60)
    async def echo(q: str | None = None) -> dict[str, Any]:
        calls["echo"] += 1
        return {"q": q}

    @app.api_route("/both", methods=["GET", "HEAD"])
    @cache_response(ttl=60)
    async def both() -> dict[str, Any]:
        calls["both"] += 1
        return {"n": calls["both"], "text": "x" * 100}

    @app.api_route("/both-raw", methods=["GET", "HEAD"])
    @cache_response(ttl=60)
    async def both_raw(request: Request) -> Response:
        calls["both-raw"] += 1
        if request.method == "HEAD":  # an endpoint that knows HEAD has no body
            return Response(status_code=200, headers={"x-method": "HEAD"})
        return Response(f"full body {calls['both-raw']}", headers={"x-method": "GET"})

    @app.api_route("/empty", methods=["GET", "HEAD"])
    @cache_response(ttl=60)
    async def empty() -> Response:
        calls["empty"] += 1
        return Response(b"", media_type="text/plain")

    # Reads Authorization through the raw Request: the key does not hold it.
    @app.get("/whoami")
    @cache_response(ttl=60)
    async def whoami(request: Request) -> dict[str, Any]:
        calls["whoami"] += 1
        return {"user": request.headers.get("authorization"), "n": calls["whoami"]}

    @app.get("/whoami-vary")
    @cache_response(ttl=60, vary=["Authorization"])
    async def whoami_vary(request: Request) -> dict[str, Any]:
        calls["whoami-vary"] += 1
        return {"user": request.headers.get("authorization"), "n": calls["whoami-vary"]}

    @app.get("/public")
    @cache_response(ttl=60, public=True)
    async def public() -> dict[str, Any]:
        calls["public"] += 1
        return {"n": calls["public"]}

    @app.get("/per-session")
    @cache_response(ttl=60, vary=["cookie:session"])
    async def per_session(request: Request) -> dict[str, Any]:
        calls["per-session"] += 1
        return {"session": request.cookies.get("session"), "n": calls["per-session"]}

    @app.get("/language")
    @cache_response(ttl=60, vary=["Accept-Language"])
    async def language(request: Request, response: Response) -> dict[str, Any]:
        calls["language"] += 1
        response.headers["vary"] = "Accept-Language"  # its own Vary: not repeated
        return {"lang": request.headers.get("accept-language"), "n": calls["language"]}

    @app.get("/token")
    @cache_response(ttl=60, vary=["Accept-Language"])
    async def token(x_token: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        calls["token"] += 1
        return {"token": x_token, "n": calls["token"]}

    # Builds an absolute link from the raw Request (the classic poisoning target).
    @app.get("/link")
    @cache_response(ttl=60)
    async def link(request: Request) -> dict[str, Any]:
        calls["link"] += 1
        host = request.headers.get("x-forwarded-host") or request.headers.get("host")
        return {"link": f"http://{host}/static/app.js", "n": calls["link"]}

    @app.get("/link-varied")
    @cache_response(ttl=60, vary=["X-Forwarded-Host"])
    async def link_varied(request: Request) -> dict[str, Any]:
        calls["link-varied"] += 1
        host = request.headers.get("x-forwarded-host") or request.headers.get("host")
        return {"link": f"http://{host}/static/app.js", "n": calls["link-varied"]}

    @app.get("/pages/{name}")
    @cache_response(ttl=60)
    async def page(name: str) -> dict[str, Any]:
        calls[f"page-{name}"] += 1
        return {"page": name}

    # Waits for app.state.gate: concurrent requests overlap in its computation.
    app.state.gate = None

    @app.get("/gated")
    @cache_response(ttl=60)
    async def gated(response: Response) -> dict[str, Any]:
        calls["gated"] += 1
        if app.state.gate is not None:
            await app.state.gate.wait()
        if app.state.gated_cookie:
            response.set_cookie("who", str(calls["gated"]))
        return {"n": calls["gated"]}

    app.state.gated_cookie = False

    @app.exception_handler(410)
    async def gone_handler(request: Request, exc: Exception) -> Response:
        calls["gone-handler"] += 1
        return PlainTextResponse(f"gone for good {calls['gone-handler']}", status_code=410)

    @app.exception_handler(451)
    def legal_handler(request: Request, exc: Exception) -> Response:  # a plain def handler
        calls["legal-handler"] += 1
        return PlainTextResponse(f"unavailable {calls['legal-handler']}", status_code=451)

    @app.get("/raise/{code}")
    @cache_response(ttl=60, statuses={200: 60, 404: 30, 410: 600, 451: 600})
    async def raising(code: int, response: Response) -> dict[str, Any]:
        calls[f"raise-{code}"] += 1
        response.headers["x-endpoint"] = "discarded with the exception"
        if code != 200:
            raise HTTPException(code, detail=f"no {calls[f'raise-{code}']}", headers={"x-why": "r"})
        return {"ok": True}

    @app.get("/raise-default/{code}")
    @cache_response(ttl=60)
    async def raising_default(code: int) -> dict[str, Any]:
        calls[f"raise-default-{code}"] += 1
        raise HTTPException(code, detail=f"no {calls[f'raise-default-{code}']}")

    @app.get("/short")
    @cache_response(ttl=2.5)
    async def short() -> dict[str, Any]:
        calls["short"] += 1
        return {"n": calls["short"]}

    return app


async def asgi_call(
    app: FastAPI,
    method: str,
    path: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    raw_path: bytes | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request straight through the ASGI app: (status, headers, every body byte sent).
    raw_path: what the client sent (default: path, which must then be ASCII)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii") if raw_path is None else raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [
            *([] if any(name == b"host" for name, _ in headers) else [(b"host", b"testserver")]),
            *headers,
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], list(sent[0]["headers"]), body


# --- the stampede app ---------------------------------------------------------------------
#
# One cached endpoint, ``GET /item/{n}``, that counts its computations in Redis (``INCR
# <name>:computations``) so that several processes can be counted together, and a dependency
# that counts arrivals. Synchronisation is by events, never by sleeping:
#
# - in process: ``app.state.gate`` (an ``asyncio.Event``, set = open) is awaited by the
#   endpoint after counting; ``app.state.computing`` is set when a computation starts;
#   ``app.state.arrived`` counts requests and sets ``app.state.all_arrived`` at
#   ``app.state.expected``;
# - across processes (uvicorn): the endpoint LPUSHes ``<name>:computing`` when it starts and,
#   when ``CACHEMATE_TEST_BLOCK=1``, blocks on ``BLPOP <name>:gate`` (and pushes the token
#   back for the next one); the dependency LPUSHes ``<name>:all-arrived`` when the process's
#   arrival count reaches ``CACHEMATE_TEST_EXPECT``.
#
# Under uvicorn the app is configured from the environment: ``CACHEMATE_TEST_REDIS_URL``,
# ``CACHEMATE_TEST_NAME`` (the counters' key prefix), ``CACHEMATE_TEST_SETTINGS`` (a JSON
# object of BaseCacheSettings fields), ``CACHEMATE_TEST_BLOCK``, ``CACHEMATE_TEST_EXPECT``.

STAMPEDE_TTL = 10.0


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


def build_stampede_app(
    redis_url: str,
    *,
    name: str = "stampede",
    settings: BaseCacheSettings | None = None,
    cache_client: aioredis.Redis | None = None,
    block_in_redis: bool = False,
    expected: int = 0,
    ttl: float = STAMPEDE_TTL,
    stale_while_revalidate: float | None = None,
    counter_url: str | None = None,
) -> FastAPI:
    """The stampede app; cache_client: the cache's Redis client (default: recommended_client over
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


def stampede_app_from_env() -> FastAPI:
    """The stampede app configured from the environment (``uvicorn --factory``)."""
    url = os.environ["CACHEMATE_TEST_REDIS_URL"]
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("fastapi_cachemate").setLevel(
        os.environ.get("CACHEMATE_TEST_LOG_LEVEL", "INFO")
    )
    settings = BaseCacheSettings(**json.loads(os.environ.get("CACHEMATE_TEST_SETTINGS", "{}")))
    return build_stampede_app(
        url,
        name=os.environ.get("CACHEMATE_TEST_NAME", "stampede"),
        settings=settings,
        block_in_redis=os.environ.get("CACHEMATE_TEST_BLOCK") == "1",
        expected=int(os.environ.get("CACHEMATE_TEST_EXPECT", "0")),
    )


# --- the refresh-path app -------------------------------------------------------------------

REFRESH_APP_TTL = 10.0


class Marked:
    """Pure ASGI middleware: counts requests and the refresh requests among them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen["refresh" if refresh_ticket(scope) else "request"] += 1
        await self.app(scope, receive, send)


def build_refresh_app(
    make_backend: Callable[[], Backend] | None,
    settings: BaseCacheSettings,
    *,
    stale_while_revalidate: float | None = None,
    stale_if_error: float | None = None,
) -> FastAPI:
    """The app of the refresh-path tests: ``GET /thing/{n}`` (ttl REFRESH_APP_TTL) counts its
    runs in ``app.state.calls``, waits on ``app.state.gate``, fails as ``app.state.mode``
    says ("raise", "503", "500-exc", "404"; "ok" answers), and checks that its request's
    Session is still open; ``app.state.middleware`` holds the Marked middleware instances."""
    app = FastAPI(lifespan=cache_lifespan(make_backend, settings, "paths"))
    app.state.mode = "ok"
    app.state.calls = 0
    app.state.gate = asyncio.Event()
    app.state.gate.set()
    app.state.sessions = []
    counting: list[Marked] = []

    class CountingMiddleware(Marked):
        def __init__(self, app: ASGIApp) -> None:
            super().__init__(app)
            counting.append(self)

    app.add_middleware(CountingMiddleware)
    app.state.middleware = counting

    class Session:
        def __init__(self) -> None:
            self.closed = False

    async def session() -> AsyncIterator[Session]:
        opened = Session()
        app.state.sessions.append(opened)
        try:
            yield opened
        finally:
            opened.closed = True

    @app.get("/thing/{n}")
    @cache_response(
        ttl=REFRESH_APP_TTL,
        stale_while_revalidate=stale_while_revalidate,
        stale_if_error=stale_if_error,
    )
    async def thing(n: int, db: Annotated[Session, Depends(session)]) -> Any:
        app.state.calls += 1
        await app.state.gate.wait()
        assert not db.closed
        mode = app.state.mode
        if mode == "raise":
            raise RuntimeError("the database is down")
        if mode == "503":
            return JSONResponse({"error": "unavailable"}, status_code=503)
        if mode == "500-exc":
            raise HTTPException(status_code=500, detail="boom")
        if mode == "404":
            raise HTTPException(status_code=404, detail="no such thing")
        return {"n": n, "call": app.state.calls}

    return app
