"""Building the Response that a cached endpoint returns, from bytes that are already final.

``Response.__init__`` renders content, measures it and builds headers; the stored entry has
all of that done. ``raw_response()`` sets the four attributes that ``Response.__call__``
sends (status_code, raw_headers, body, background) and nothing else, so a hit costs one
object allocation. ``Response.headers`` still works on the result (built lazily from
raw_headers), so middleware that reads or edits headers sees them.
"""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.responses import Response

__all__ = ["raw_response"]

_new = Response.__new__


def raw_response(
    status: int,
    raw_headers: list[tuple[bytes, bytes]],
    body: bytes,
    background: BackgroundTask | None = None,
) -> Response:
    """A plain Response that sends exactly these status, headers and body."""
    response = _new(Response)
    response.status_code = status
    response.raw_headers = raw_headers
    response.body = body
    response.background = background
    return response
