"""How a background refresh gets fresh dependencies: it re-enters the app through ASGI.

A refresh runs after the request that triggered it has finished: that request's ``Request``,
its db session (a ``yield`` dependency, closed when the response was sent) and its other
dependency values are gone or must not be shared. So the refresh does not call the endpoint
with them; it sends the app a new request, as the server would, and lets FastAPI resolve
every dependency afresh:

- the app is ``scope["app"]`` of the triggering request (the Starlette/FastAPI app that
  routed it, with its whole middleware stack: authentication, sessions, database middleware
  run again for the refresh);
- the scope (:func:`refresh_scope`) holds only what an ASGI server puts in one: type, asgi,
  http_version, scheme, server, client, root_path, path, raw_path, query_string, the
  headers (minus the ones that would change the answer or describe a body: conditional and
  range headers, Cache-Control / Pragma, Content-Length...), the same method (GET or
  HEAD: the only ones the cache serves; a route that reads the raw request keys them
  apart, and FastAPI runs the endpoint for both), no body, a shallow copy of ``scope["state"]`` (the
  lifespan state, as servers copy it per request), and ``scope["extensions"]`` holding
  only :data:`MARKER` -> a :class:`RefreshTicket`. Nothing the app added to the scope
  while routing the first request (route, endpoint, path_params, FastAPI's exit stacks) is
  copied;
- the cached endpoint's wrapper sees the ticket (:func:`refresh_ticket`): it skips the
  lookup and the single flight (the refresh task holds the lock already), computes, stores
  unless the answer is not storable (a failed refresh never overwrites a good entry), and
  records what it did on the ticket. The response is discarded.
- the task runs in a new, empty ``contextvars.Context`` (a new request's, not the
  triggering request's copy).

Consequences, documented in docs/resilience.md: middleware sees one more GET (it can tell
it apart by the marker); the credentials are those of the request that triggered the
refresh (the request was authenticated a moment ago: FastAPI resolves the dependencies,
auth included, before a hit is served); an ASGI wrapper *outside* the app object (applied
around it after construction) is not run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

__all__ = ["MARKER", "RefreshTicket", "reenter", "refresh_scope", "refresh_ticket"]

#: The key in ``scope["extensions"]`` that marks a refresh request.
MARKER = "fastapi_cachemate.refresh"

_SERVER_KEYS = (
    "type",
    "asgi",
    "http_version",
    "scheme",
    "server",
    "client",
    "root_path",
    "path",
    "raw_path",
    "query_string",
)

#: Request headers not sent with a refresh: a conditional or partial request, the client's
#: cache directives (a refresh must compute and store), and what describes a body.
_DROPPED_HEADERS = frozenset(
    {
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"if-range",
        b"range",
        b"cache-control",
        b"pragma",
        b"content-length",
        b"content-type",
        b"transfer-encoding",
        b"expect",
    }
)


class RefreshTicket:
    """What a refresh request carries to the wrapper, and what the wrapper reports back."""

    __slots__ = ("key", "status", "stored")

    def __init__(self, key: bytes) -> None:
        self.key = key  # the key the refresh was started for
        self.stored = False  # the wrapper stored a new entry
        self.status: int | None = None  # the status the app answered


def refresh_ticket(scope: Mapping[str, Any]) -> RefreshTicket | None:
    """The ticket when this request is a background refresh, else None."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    ticket = extensions.get(MARKER)
    return ticket if isinstance(ticket, RefreshTicket) else None


def refresh_scope(scope: Mapping[str, Any]) -> dict[str, Any]:
    """A server-made scope for the same GET (or HEAD) with the same headers, no body."""
    new = {name: scope[name] for name in _SERVER_KEYS if name in scope}
    new["type"] = "http"
    new["method"] = "HEAD" if scope.get("method") == "HEAD" else "GET"
    new["headers"] = [
        (name, value)
        for name, value in scope.get("headers", ())
        if name.lower() not in _DROPPED_HEADERS
    ]
    state = scope.get("state")
    if state is not None:
        new["state"] = dict(state)
    return new


async def reenter(app: Any, scope: dict[str, Any], ticket: RefreshTicket) -> None:
    """Send the request to the app and discard the response; the app's errors propagate."""
    scope = {**scope, "extensions": {MARKER: ticket}}
    done = asyncio.Event()
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # what a server answers once the response is complete
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            ticket.status = message.get("status")
        elif kind == "http.response.body" and not message.get("more_body", False):
            done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
