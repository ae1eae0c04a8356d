"""Rendering an endpoint's return value exactly as FastAPI would, so that it can be stored.

FastAPI renders a non-Response return value in ``fastapi.routing.get_request_handler``:
validate and serialize it with the route's response field and response_model_* options
(``serialize_response``), build ``route.response_class`` (or, with a response model and no
explicit response class, the JSON bytes straight from pydantic), take the status from the
injected response or the route, empty the body for statuses without one, then append the
injected response's headers. ``RouteRenderer`` does the same steps, prepared once per
route, so that the bytes stored are the bytes FastAPI would have sent.

A returned Response is passed through by FastAPI without merging the injected response's
headers; here those headers are merged into a copy (status and headers that the endpoint
set on ``response: Response`` must survive on miss and hit alike). A response without a
``body`` (StreamingResponse, FileResponse) cannot be stored: ``render()`` returns None.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from fastapi._compat import ModelField
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import serialize_response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.responses import Response

from fastapi_cachemate._request.response import raw_response

__all__ = ["RenderedRoute", "RouteRenderer", "merge_returned", "without_headers"]

_DUMP_JSON = "dump_json" in inspect.signature(serialize_response).parameters


class RenderedRoute(Protocol):
    """What FastAPI's request handler reads of a route to render its responses: an APIRoute,
    or the effective route context FastAPI 0.165 runs for a route of an included router."""

    response_field: ModelField | None
    response_model_include: Any
    response_model_exclude: Any
    response_model_by_alias: bool
    response_model_exclude_unset: bool
    response_model_exclude_defaults: bool
    response_model_exclude_none: bool
    status_code: int | None
    response_class: type[Response] | DefaultPlaceholder


class RouteRenderer:
    """Everything FastAPI's request handler reads from an APIRoute to render a response."""

    __slots__ = (
        "_by_alias",
        "_dump_json",
        "_exclude",
        "_exclude_defaults",
        "_exclude_none",
        "_exclude_unset",
        "_field",
        "_include",
        "_response_class",
        "_status_code",
    )

    def __init__(self, route: RenderedRoute) -> None:
        self._field = route.response_field
        self._include = route.response_model_include
        self._exclude = route.response_model_exclude
        self._by_alias = route.response_model_by_alias
        self._exclude_unset = route.response_model_exclude_unset
        self._exclude_defaults = route.response_model_exclude_defaults
        self._exclude_none = route.response_model_exclude_none
        self._status_code: int | None = route.status_code
        response_class = route.response_class
        if isinstance(response_class, DefaultPlaceholder):
            self._response_class: type[Response] = response_class.value
        else:
            self._response_class = response_class
        # FastAPI's fast path: a response model and no explicit response class.
        self._dump_json = (
            _DUMP_JSON
            and self._field is not None
            and isinstance(response_class, DefaultPlaceholder)
        )

    async def render(
        self, content: Any, sub_response: Response, *, is_coroutine: bool
    ) -> Response | None:
        """The Response FastAPI would send for this return value; None if it has no body."""
        if isinstance(content, Response):
            return merge_returned(content, sub_response)
        status = sub_response.status_code or self._status_code
        serialized = await self._serialize(content, is_coroutine=is_coroutine)
        response: Response
        if self._dump_json:
            response = Response(
                serialized, status_code=status or 200, media_type="application/json"
            )
        elif status:
            response = self._response_class(serialized, status_code=status)
        else:  # the response class's own default (a RedirectResponse's 307)
            response = self._response_class(serialized)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        response.raw_headers.extend(sub_response.raw_headers)
        return response

    async def _serialize(self, content: Any, *, is_coroutine: bool) -> Any:
        options: dict[str, Any] = {}
        if self._dump_json:
            options["dump_json"] = True
        return await serialize_response(
            field=self._field,
            response_content=content,
            include=self._include,
            exclude=self._exclude,
            by_alias=self._by_alias,
            exclude_unset=self._exclude_unset,
            exclude_defaults=self._exclude_defaults,
            exclude_none=self._exclude_none,
            is_coroutine=is_coroutine,
            **options,
        )


def merge_returned(content: Response, sub_response: Response) -> Response | None:
    """A copy of a returned Response with the injected response's headers; None without body."""
    body = getattr(content, "body", None)
    if not isinstance(body, (bytes, memoryview)):
        return None
    headers = list(content.raw_headers)
    headers.extend(sub_response.raw_headers)
    return raw_response(content.status_code, headers, bytes(body), content.background)


def without_headers(
    headers: list[tuple[bytes, bytes]], remove: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """headers minus one occurrence of each pair in remove (order kept)."""
    if not remove:
        return list(headers)
    pending = list(remove)
    kept: list[tuple[bytes, bytes]] = []
    for pair in headers:
        if pair in pending:
            pending.remove(pair)
        else:
            kept.append(pair)
    return kept
