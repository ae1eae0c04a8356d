"""Hits answered before FastAPI solves the route's dependencies (the "hit-first" path).

A cached endpoint's own wrapper runs after FastAPI has done its work for the request:
validated every parameter, built the injected Request and Response, solved the dependency
tree. For a hit that work is wasted: the answer is already in the store. On a route where
that work has no effect besides producing the endpoint's arguments, the route's ASGI app
is wrapped (:func:`install`) so that a hit is answered first, and everything else (a miss,
a stale entry, a refusal) goes on to FastAPI's handler exactly as before.

Why skipping the dependencies is safe there (:func:`blocker` says when it is not):

- the key holds every request value the route reads (``_introspect``): two requests with
  one key present the same values to FastAPI's validation, and an entry exists only if
  such a request once passed it (a 422 is never stored), so a hit is what validation would
  have let through;
- the only dependencies allowed are classes (Pydantic models, dataclasses, plain classes
  used as filters) that read parameters and give the endpoint an argument. A function
  dependency may authenticate, check a permission, open a session or set a header, and must
  run on every request: its route keeps the cache inside the endpoint, where it ran first.
  So does a class listed in ``dependencies=[...]`` or reading no parameter: it can only be
  there for its effects;
- ``app.dependency_overrides`` is looked at per request: with any override in place the
  route takes FastAPI's path (overrides are for tests, which expect them to run).

The lookup made here is left in the scope (:data:`LOOKUP_SCOPE_KEY`) for the endpoint's
path, so a miss still costs one backend call.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from fastapi.dependencies.models import Dependant
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_cachemate._introspect import param_model

__all__ = [
    "LOOKUP_SCOPE_KEY",
    "HitFirstApp",
    "Lookup",
    "blocker",
    "install",
    "installed",
    "overridden",
]

logger = logging.getLogger(__name__)

#: where the hit-first path leaves its lookup for the endpoint's path (private to a request)
LOOKUP_SCOPE_KEY = "fastapi_cachemate.lookup"

_PARAMETER_KINDS = ("query_params", "header_params", "cookie_params")
_ALL_PARAMETER_KINDS = ("path_params", *_PARAMETER_KINDS)
# Parameters through which a dependency reaches the request or the response itself.
_CONNECTION_PARAMS = (
    "request_param_name",
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


class Lookup(NamedTuple):
    """What the hit-first path found for the request's key."""

    key: bytes
    missing: bool  # the backend had nothing at the key (not: unreadable or expired bytes)
    entry: Any  # the decoded entry (any state) or None
    down: bool  # the backend call failed: no more backend calls in this request
    near: bool = False  # the entry is the near cache's copy (docs/design.md, "Near cache")


Answer = Callable[[Request], Awaitable[Response | None]]


class HitFirstApp:
    """A route's ASGI app, preceded by a cache lookup that may answer the request."""

    __slots__ = ("answer", "app")

    def __init__(self, app: ASGIApp, answer: Answer) -> None:
        self.app = app  # FastAPI's handler of the route
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                response = await self.answer(Request(scope, receive))
            except Exception:  # a defect of the cache: the request is served without it
                logger.exception("cache: the hit-first lookup failed; FastAPI's path serves")
                scope.pop(LOOKUP_SCOPE_KEY, None)
                response = None
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(route: Any, answer: Answer) -> None:
    """Wrap the route's ASGI app (an APIRoute's, or FastAPI's per-inclusion route context's),
    once; a route whose app FastAPI rebuilt is wrapped again."""
    app = getattr(route, "app", None)
    if app is None:
        return
    if isinstance(app, HitFirstApp):
        app.answer = answer
        return
    route.app = HitFirstApp(app, answer)


def installed(route: Any) -> bool:
    return type(getattr(route, "app", None)) is HitFirstApp


def overridden(route: Any) -> bool:
    """Whether the app has dependency overrides now (the route then takes FastAPI's path)."""
    provider = getattr(route, "dependency_overrides_provider", None)
    return bool(getattr(provider, "dependency_overrides", None))


def blocker(dependant: Dependant) -> str | None:
    """Why hits of this route must go through FastAPI's handler, or None when they may be
    answered first. The endpoint's own parameters do not matter (a hit does not call it)."""
    if dependant.body_params:
        return "the endpoint reads the request body"
    reason = _extra_forbid(dependant)
    if reason is not None:
        return reason
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        call = dep.call
        name = getattr(call, "__qualname__", None) or repr(call)
        if not inspect.isclass(call):
            return f"dependency {name} is not a class (it may have effects: it runs per request)"
        if dep.name is None:
            # listed in dependencies=[...]: its value is unused, it runs for its effects
            return f"dependency {name} is listed in dependencies=[...] (it runs for its effects)"
        if dep.body_params:
            return f"dependency {name} reads the request body"
        for attr in _CONNECTION_PARAMS:
            if getattr(dep, attr, None):
                return f"dependency {name} takes the request or the response"
        if not any(getattr(dep, kind) for kind in _ALL_PARAMETER_KINDS) and not dep.dependencies:
            return f"dependency {name} reads no parameter (it runs for its effects)"
        reason = _extra_forbid(dep)
        if reason is not None:
            return reason
        stack.extend(dep.dependencies)
    return None


def _extra_forbid(dep: Dependant) -> str | None:
    """A parameter model with extra="forbid" answers 422 to a request with more items than
    it declares, items that the key leaves out: its route takes FastAPI's path."""
    for kind in _PARAMETER_KINDS:
        for field in getattr(dep, kind):
            model = param_model(field)
            if model is not None and model.model_config.get("extra") == "forbid":
                return f"parameter model {model.__qualname__} has extra='forbid'"
    return None
