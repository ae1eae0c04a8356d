"""This request's computation: call the endpoint, render its result as FastAPI would, decide
whether it may be stored (``rules.RouteRules.verdict``) and encode the entry.

:func:`computation` returns the callable that ``Flow.miss`` runs once for every concurrent
request of the key. What the store and the single flight need comes back as a
``flow.Computed``; what this request's own answer needs (the endpoint's result, its
rendering, the verdict) is left on the request (``CachedRequest.computation``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fastapi_cachemate import _log, metrics
from fastapi_cachemate._kernels import kernels
from fastapi_cachemate._request.context import CachedEndpoint, CachedRequest, Computation
from fastapi_cachemate._request.response import raw_response
from fastapi_cachemate._request.rules import StatusTTLs, Verdict
from fastapi_cachemate._route.render import merge_returned, without_headers
from fastapi_cachemate._runtime.flow import Computed, Shared
from fastapi_cachemate.core.types import ComputeTicket
from fastapi_cachemate.metrics import NotStored

__all__ = ["NO_HEADERS", "computation"]

logger = logging.getLogger(__name__)

_COMPRESSION = {
    "all": kernels.COMPRESS_ALL,
    "smart": kernels.COMPRESS_SMART,
    "disabled": kernels.COMPRESS_DISABLED,
}
#: merge_returned's injected response when there is none: it adds nothing
NO_HEADERS = raw_response(200, [], b"")


def computation(endpoint: CachedEndpoint, req: CachedRequest) -> Callable[[], Awaitable[Computed]]:
    """The request's computation, to be run by the single flight (or by the request itself)."""
    # Headers already on the injected response were set by this request's dependencies:
    # they run on every request, so they are not part of the entry.
    dependency_headers = list(req.sub_response.raw_headers)
    rules = req.plan.rules
    assert rules is not None
    stats = req.plan.stats
    flow = req.flow

    async def compute() -> Computed:
        # Before computing: the key's generation (an invalidation from now on fences this
        # computation out) and its tag registrations (docs/keys-and-invalidation.md).
        ticket = await _begin(endpoint, req)
        try:
            result, rendered, compute_ms = await _call(endpoint, req)
        except Exception as exc:  # the endpoint's own error: it propagates, nothing stored
            metrics.not_stored(stats, _raised_reason(exc))
            raise
        if rendered is None:  # streaming or file: passed through, never stored
            metrics.not_stored(stats, NotStored.STREAMING)
            req.computation = Computation(result, None, None, dependency_headers)
            return Computed(None, None, failed=False)
        stored_headers = without_headers(rendered.raw_headers, dependency_headers)
        status = rendered.status_code
        verdict = rules.verdict(req.request, status, stored_headers, rendered.body)
        req.computation = Computation(result, rendered, verdict, dependency_headers)
        if verdict.reason is not None:
            # Not shareable: the waiters are released at once and compute for themselves
            # (this response may carry one client's cookie or data).
            metrics.not_stored(stats, verdict.reason)
            logger.debug(
                "cache: response for %r not stored (%s)",
                req.key,
                verdict.detail,
                extra=_log.fields(key=req.key, endpoint=stats.name, reason=verdict.detail),
            )
            return Computed(None, None, failed=status >= 500)
        stored_headers.extend(verdict.added)
        created = flow.now()
        body = bytes(rendered.body)
        shared = Shared(status, tuple(stored_headers), body, verdict.etag, created, verdict.ttl)
        if ticket is None:  # tags not rendered or the backend failed: served, not stored
            metrics.not_stored(stats, NotStored.ERROR)
            return Computed(None, shared, failed=False)
        blob = _encode(req, rendered, stored_headers, compute_ms, created, verdict)
        return Computed(blob, shared, False, ticket, verdict.ttl, len(body))

    return compute


async def _begin(endpoint: CachedEndpoint, req: CachedRequest) -> ComputeTicket | None:
    """The ticket to store with, or None: the response is then not stored (its tags
    cannot be rendered, or the backend is unavailable)."""
    try:
        tags = endpoint.tags.render(req.kwargs) if endpoint.tags else []
    except (KeyError, AttributeError, IndexError, ValueError, TypeError) as exc:
        logger.warning("cache: tags of %s not rendered (%s): not stored", endpoint.name, exc)
        return None
    return await req.flow.begin(tags, endpoint.statuses.longest())


async def _call(endpoint: CachedEndpoint, req: CachedRequest) -> tuple[Any, Response | None, float]:
    """(what the endpoint returned, its rendering or None, milliseconds both took)."""
    started = time.perf_counter()
    try:
        result = await endpoint.call(req.args, req.kwargs)
    except HTTPException as exc:
        # A raised status that statuses= stores: the app's handler renders it, once.
        handled = await _handled(exc, req.request, endpoint.statuses)
        if handled is None:
            raise
        rendered = merge_returned(handled, NO_HEADERS)
        return handled, rendered, (time.perf_counter() - started) * 1000.0
    rendered = await req.plan.renderer.render(
        result, req.sub_response, is_coroutine=endpoint.is_coroutine
    )
    return result, rendered, (time.perf_counter() - started) * 1000.0


async def _handled(exc: HTTPException, request: Request, statuses: StatusTTLs) -> Response | None:
    """The app's answer to an HTTPException the endpoint raised, when its status is one
    that ``statuses=`` stores (``raise HTTPException(404)`` with ``statuses={404: 30}``);
    None: re-raise it, as without the cache.

    The handler is the one Starlette's exception middleware would pick (a handler for
    the status code first, then for the exception's class), called the same way, so
    the stored bytes are what the app would have sent.
    """
    if statuses.ttl_for(exc.status_code) is None:
        return None
    handlers = request.scope.get("starlette.exception_handlers")
    if not isinstance(handlers, tuple) or len(handlers) != 2:
        return None
    exception_handlers, status_handlers = handlers
    handler = status_handlers.get(exc.status_code)
    if handler is None:
        for cls in type(exc).__mro__:
            handler = exception_handlers.get(cls)
            if handler is not None:
                break
    if handler is None:
        return None
    if _is_async_callable(handler):
        response = await handler(request, exc)
    else:
        response = await run_in_threadpool(handler, request, exc)
    return response if isinstance(response, Response) else None


def _is_async_callable(obj: Any) -> bool:
    """As Starlette decides how to call an exception handler (partials unwrapped)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (
        callable(obj) and inspect.iscoroutinefunction(getattr(obj, "__call__", None))  # noqa: B004
    )


def _raised_reason(exc: Exception) -> NotStored:
    """The not-stored reason of an endpoint that raised: an HTTPException's is its status."""
    return NotStored.STATUS if isinstance(exc, HTTPException) else NotStored.ERROR


def _encode(
    req: CachedRequest,
    rendered: Response,
    headers: list[tuple[bytes, bytes]],
    compute_ms: float,
    created: float,
    verdict: Verdict,
) -> bytes | None:
    """The entry's bytes, or None (logged) when this response cannot be stored."""
    settings = req.settings
    stats = req.plan.stats
    body = rendered.body
    if len(body) > settings.max_entry_bytes:
        metrics.not_stored(stats, NotStored.TOO_LARGE)
        logger.debug(  # per request: counted (not_stored_too_large), DEBUG only
            "cache: response for %r not stored: body of %d bytes > max_entry_bytes",
            req.key,
            len(body),
            extra=_log.fields(key=req.key, endpoint=stats.name, reason="too_large"),
        )
        return None
    try:
        blob: bytes = kernels.write_entry(
            status=rendered.status_code,
            headers=headers,
            body=body,
            created=created,
            ttl=verdict.ttl,
            grace=req.flow.grace,
            compute_ms=compute_ms,
            etag=verdict.etag,
            fingerprint=req.fingerprint,
            compression=(
                _COMPRESSION[settings.compression_mode]
                if req.flow.backend.compress_entries
                else kernels.COMPRESS_DISABLED
            ),
            min_size=settings.compression_min_size_bytes,
            level=settings.compression_level,
        )
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        metrics.not_stored(stats, NotStored.ERROR)
        logger.warning(
            "cache: response for %r not stored: %s",
            req.key,
            exc,
            extra=_log.fields(key=req.key, endpoint=stats.name, reason="error"),
        )
        return None
    return blob
