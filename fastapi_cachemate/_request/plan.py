"""What one cached route needs per request, built on its first request.

A decorated endpoint can be served by several routes (a router included twice, under two
prefixes or with different dependencies), and recent FastAPI's route contexts are
dataclasses without a hash: plans are kept by the route's identity, with a reference to the
route so that the identity cannot be reused. Building a plan twice when two first requests
race is harmless (the same plan results).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate import metrics
from fastapi_cachemate._request.context import CachedEndpoint
from fastapi_cachemate._request.rules import RouteRules
from fastapi_cachemate._route import hitfirst
from fastapi_cachemate._route.keyer import RouteKeyer, effective_route
from fastapi_cachemate._route.render import RouteRenderer
from fastapi_cachemate.invalidation import register_app

__all__ = ["RoutePlan", "RoutePlans"]

logger = logging.getLogger(__name__)


class RoutePlan(NamedTuple):
    """What one route needs per request."""

    route: Any  # an APIRoute or FastAPI's effective route context (keyer.effective_route)
    prefix: str
    keyer: RouteKeyer | None  # None: this route cannot be keyed (logged once), not cached
    rules: RouteRules | None  # None when keyer is None
    renderer: RouteRenderer
    stats: metrics.EndpointStats  # the route's counters (metrics.endpoint_name)
    hit_first: bool  # hits are answered before FastAPI's handler (hitfirst)


class RoutePlans:
    """The plans of one decorated endpoint, one per route that serves it."""

    __slots__ = ("_by_route", "_endpoint")

    def __init__(self, endpoint: CachedEndpoint) -> None:
        self._endpoint = endpoint
        self._by_route: dict[int, RoutePlan] = {}

    def for_request(
        self,
        request: Request,
        prefix: str,
        answer_first: Callable[[Request], Awaitable[Response | None]],
    ) -> RoutePlan | None:
        """The plan of the request's route; None for a request without an APIRoute (a
        direct call of the ASGI app). ``answer_first`` is installed on the route when its
        hits may be answered before FastAPI's handler."""
        if not isinstance(request.scope.get("route"), APIRoute):
            return None
        # What FastAPI runs: with an included router's prefix, dependencies and response
        # class (FastAPI 0.165 keeps them out of scope["route"]); one object per inclusion.
        route: Any = effective_route(request.scope)
        plan = self._by_route.get(id(route))
        if plan is None or plan.route is not route or plan.prefix != prefix:
            plan = self._build(route, prefix)
            self._by_route[id(route)] = plan
            register_app(request.app)  # invalidate(endpoint, ...) finds its routes there
        if plan.hit_first and not hitfirst.installed(route):
            hitfirst.install(route, answer_first)  # on first use, or FastAPI rebuilt it
        return plan

    def stats(self, plan: RoutePlan | None) -> metrics.EndpointStats:
        """The plan's counters, or (a request without an APIRoute) the endpoint name's."""
        return plan.stats if plan is not None else metrics.endpoint(self._endpoint.name)

    def _build(self, route: Any, prefix: str) -> RoutePlan:
        endpoint = self._endpoint
        stats = metrics.endpoint(metrics.endpoint_name(route))
        keyer = self._keyer(route, prefix)
        rules = (
            None if keyer is None else RouteRules(keyer, endpoint.statuses, public=endpoint.public)
        )
        hit_first = keyer is not None and self._hit_first(route)
        return RoutePlan(route, prefix, keyer, rules, RouteRenderer(route), stats, hit_first)

    def _keyer(self, route: Any, prefix: str) -> RouteKeyer | None:
        endpoint = self._endpoint
        try:
            return RouteKeyer.for_route(
                route, prefix=prefix, vary=endpoint.vary, injected=endpoint.injected
            )
        except (TypeError, ValueError):
            logger.exception(
                "cache_response: %s (%s) cannot be keyed: it is served uncached",
                endpoint.name,
                route.path,
            )
            return None

    def _hit_first(self, route: Any) -> bool:
        blocker = hitfirst.blocker(route.dependant)
        if blocker is not None:
            logger.debug(
                "cache_response: hits of %s (%s) run FastAPI's handler: %s",
                self._endpoint.name,
                route.path,
                blocker,
            )
        return blocker is None
