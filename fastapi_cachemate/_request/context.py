"""The objects one request carries through the stages of ``pipeline``.

- :class:`CachedEndpoint` (one per decorated endpoint, made at decoration): the endpoint and
  what ``@cache_response(...)`` said about it;
- :class:`CachedRequest` (one per request): the request, the route's plan, and what each
  stage leaves for the next (the key, the backend calls of ``Flow``, the lookup, this
  request's own computation);
- :class:`Lookup`: what the lookup found at the key (left in the scope by the hit-first
  path, so that a miss still costs one backend call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate._kernels import Entry
from fastapi_cachemate._request.rules import StatusTTLs, Verdict
from fastapi_cachemate.invalidation import TagTemplates
from fastapi_cachemate.settings import BaseCacheSettings

if TYPE_CHECKING:
    from fastapi_cachemate._request.plan import RoutePlan
    from fastapi_cachemate._runtime.flow import Flow

__all__ = ["CachedEndpoint", "CachedRequest", "Computation", "Lookup"]


class CachedEndpoint:
    """A decorated endpoint and what its ``@cache_response(...)`` said."""

    __slots__ = (
        "func",
        "injected",
        "is_coroutine",
        "name",
        "public",
        "stale_if_error",
        "stale_while_revalidate",
        "statuses",
        "tags",
        "vary",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        is_coroutine: bool,
        vary: tuple[str, ...],
        injected: tuple[str, ...],
        tags: TagTemplates,
        statuses: StatusTTLs,
        public: bool,
        stale_while_revalidate: float | None,
        stale_if_error: float | None,
    ) -> None:
        self.func = func
        self.name: str = getattr(func, "__qualname__", repr(func))
        self.is_coroutine = is_coroutine
        self.vary = vary
        self.injected = injected  # the parameters the decorator added (Request, Response)
        self.tags = tags
        self.statuses = statuses
        self.public = public
        # None: the settings' value of that name
        self.stale_while_revalidate = stale_while_revalidate
        self.stale_if_error = stale_if_error

    async def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The endpoint, called as FastAPI would (a plain ``def`` in the threadpool)."""
        if self.is_coroutine:
            return await self.func(*args, **kwargs)
        return await run_in_threadpool(self.func, *args, **kwargs)


class Lookup(NamedTuple):
    """What the lookup found at the request's key."""

    key: bytes
    missing: bool  # the backend had nothing at the key (not: unreadable or expired bytes)
    entry: Entry | None  # the decoded entry (any state) or None
    down: bool  # the backend call failed: no more backend calls in this request
    near: bool = False  # the entry is the near cache's copy (docs/design.md, "Near cache")


class Computation(NamedTuple):
    """This request's own call of the endpoint, as it is answered."""

    result: Any  # what the endpoint returned (sent as it is when rendered is None)
    rendered: Response | None  # its rendering; None: streaming or a file, never stored
    verdict: Verdict | None  # may it be stored (None when not rendered)
    dependency_headers: list[tuple[bytes, bytes]]  # set by this request's dependencies


class CachedRequest:
    """One request through the cache, once keyed: what every later stage reads, and this
    request's own computation when it makes one."""

    __slots__ = (
        "args",
        "computation",
        "fingerprint",
        "flow",
        "key",
        "kwargs",
        "plan",
        "request",
        "sub_response",
    )

    def __init__(
        self,
        request: Request,
        sub_response: Response,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        plan: RoutePlan,
        key: bytes,
        fingerprint: bytes,
        flow: Flow,
    ) -> None:
        self.request = request
        self.sub_response = sub_response  # FastAPI's injected Response (dependency headers)
        self.args = args
        self.kwargs = kwargs
        self.plan = plan
        self.key = key
        self.fingerprint = fingerprint  # what identifies the response within the key
        self.flow = flow  # the backend calls and decisions of this request
        self.computation: Computation | None = None  # set when this request computes

    @property
    def settings(self) -> BaseCacheSettings:
        return self.flow.settings
