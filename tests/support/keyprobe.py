"""Drive real FastAPI apps with exact ASGI scopes and compute the cache key of each request.

The requests go through the app's own routing, dependency solving and validation, so a test
can compare what the endpoint received (it echoes its inputs) with the key the cache would
use for the same scope. Scopes are built by hand (not by an HTTP client) so that raw bytes of
the path and query string reach the app exactly as written: `;`, `%26`, non-UTF-8, NUL.

The ``key_kernels`` fixture (tests/support/fixtures.py) runs such a test with the C key
builder and with its pure-Python twin.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import Message, Scope

from fastapi_cachemate._route.keyer import RouteKeyer, RouteLike, effective_route

PATH_SAFE = "/:@!$&'()*+,;=~"


@dataclass
class Probe:
    status: int
    body: bytes
    key: bytes
    fingerprint: bytes
    scope: dict[str, Any] = field(repr=False)

    @property
    def inputs(self) -> Any:
        """What the endpoint received (every test endpoint echoes its inputs as JSON)."""
        return json.loads(self.body)


class KeyProbe:
    """Send requests to an app and key them as the cache would."""

    def __init__(
        self,
        app: FastAPI,
        *,
        prefix: str = "t",
        vary: Sequence[str] = (),
        injected: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.prefix = prefix
        self.vary = tuple(vary)
        self.injected = tuple(injected)
        self._keyers: dict[int, RouteKeyer] = {}

    def keyer(self, path: str) -> RouteKeyer:
        """The keyer of the route whose template is `path`."""
        for route in self.app.routes:
            if isinstance(route, APIRoute) and route.path == path:
                return self._keyer_of(route)
        raise LookupError(path)

    def keyer_of_scope(self, scope: Scope) -> RouteKeyer:
        """The keyer of the route that served a request (included routers too)."""
        return self._keyer_of(effective_route(scope))

    def _keyer_of(self, route: APIRoute | RouteLike) -> RouteKeyer:
        keyer = self._keyers.get(id(route))
        if keyer is None:
            keyer = RouteKeyer.for_route(
                route, prefix=self.prefix, vary=self.vary, injected=self.injected
            )
            self._keyers[id(route)] = keyer
        return keyer

    async def request(
        self,
        path: str,
        query: bytes | str = b"",
        *,
        headers: Sequence[tuple[bytes, bytes]] = (),
        method: str = "GET",
        raw_path: bytes | None = None,
        scheme: str = "http",
        root_path: str = "",
        host: bytes | None = b"testserver",
    ) -> Probe:
        if isinstance(query, str):
            query = query.encode("latin-1")
        if raw_path is None:
            raw_path = quote(path, safe=PATH_SAFE).encode("ascii")
        all_headers = ([(b"host", host)] if host is not None else []) + list(headers)
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": root_path,
            "headers": all_headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        sent: list[Message] = []
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # pragma: no cover - only on a disconnect wait
            raise AssertionError("unreachable")  # pragma: no cover

        async def send(message: Message) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        assert isinstance(scope.get("route"), APIRoute), f"no route for {path!r}: {start['status']}"
        key, fingerprint = self.keyer_of_scope(scope).key(Request(scope))
        return Probe(start["status"], body, key, fingerprint, dict(scope))

    def run(self, path: str, query: bytes | str = b"", **kwargs: Any) -> Probe:
        """request() from synchronous code (hypothesis tests)."""
        return asyncio.run(self.request(path, query, **kwargs))


def pairs(items: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            yield a, b


def assert_key_iff_inputs(probes: Sequence[Probe]) -> None:
    """Two requests share a key exactly when the endpoint received the same inputs."""
    for a, b in pairs(probes):
        assert a.status == 200, a.body
        assert b.status == 200, b.body
        same_inputs = a.inputs == b.inputs
        same_key = a.key == b.key
        assert same_key == same_inputs, (
            f"key {'equal' if same_key else 'different'} but inputs "
            f"{'equal' if same_inputs else 'different'}:\n"
            f"  {a.scope['query_string']!r} -> {a.inputs}\n"
            f"  {b.scope['query_string']!r} -> {b.inputs}"
        )
