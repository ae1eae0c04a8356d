"""The test app of the HTTP-semantics tests (issue 4), and its fixture.

``http_app`` (parametrised memory / redis like ``app_factory``): ``build(**settings)`` returns
this app, set up by its lifespan on the backend. ``app.state.calls`` counts endpoint runs.
"""

# No "from __future__ import annotations": the endpoints use classes local to build_http_app.

from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence
from typing import Annotated, Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_cachemate import BaseCacheSettings
from fastapi_cachemate.cache import cache_response
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.types import Backend
from tests.apps import Lifespan
from tests.fixtures_cache import _lifespan
from tests.servers import RedisServer

__all__ = [
    "CASES",
    "CUSTOM_STATUSES",
    "HttpApp",
    "asgi_call",
    "build_http_app",
    "http_app_fixture",
]

HttpApp = Callable[..., FastAPI]

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
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request straight through the ASGI app: (status, headers, every body byte sent)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
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


@pytest.fixture(name="http_app")
def http_app_fixture(
    request: pytest.FixtureRequest, backend_kind: str, clean_cache_setup: None
) -> HttpApp:
    """build(**settings) -> the HTTP test app on the parametrised backend."""
    server: RedisServer | None = None
    if backend_kind == "redis":
        server = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_client")  # flushes the database before the test

    def build(**settings: Any) -> FastAPI:
        # A generous timeout: a first fetch (which connects) on a loaded machine can exceed
        # the default 0.25 s, and a timed-out lookup is a MISS (see tests/fixtures_cache.py).
        settings.setdefault("backend_timeout", 5.0)
        make_backend: Callable[[], Backend] | None = None
        if server is not None:
            host, port = server.host, server.port

            def make_backend() -> Backend:
                return RedisBackend(client=aioredis.Redis(host=host, port=port))

        app = build_http_app(_lifespan(make_backend, BaseCacheSettings(**settings)))
        app.state.backend_kind = backend_kind
        return app

    return build
