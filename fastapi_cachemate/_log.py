"""Structured logging helpers: ``extra`` fields and state-change logging.

Rules the package keeps (docs/observability.md):

- records carry their facts as ``extra`` fields, under these names: ``key`` (the entry key,
  as text), ``endpoint`` (the route's path template, as in the counters), ``reason`` (why
  something did not happen), ``operation`` (the backend call: fetch, store, ...), ``state``
  and ``previous_state`` (for state changes), ``error`` (``"Type: message"``);
- a state change is ONE record (WARNING when things get worse, INFO when they recover);
  what happens per request is counted (fastapi_cachemate.metrics) and logged at DEBUG only.

``JsonFormatter`` prints a record and its extra fields as one JSON object per line, for log
pipelines that want the fields without parsing messages.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

__all__ = ["FIELDS", "BackendHealth", "JsonFormatter", "fields"]

#: the extra field names this package uses
FIELDS: Final[tuple[str, ...]] = (
    "key",
    "endpoint",
    "reason",
    "operation",
    "state",
    "previous_state",
    "error",
    "breaker",
    "consecutive_failures",
)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def fields(
    *,
    key: bytes | str | None = None,
    endpoint: str | None = None,
    reason: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra`` dict of a record: the given fields only (a key as text)."""
    extra: dict[str, Any] = {k: v for k, v in more.items() if v is not None}
    if key is not None:
        extra["key"] = _text(key)
    if endpoint is not None:
        extra["endpoint"] = endpoint
    if reason is not None:
        extra["reason"] = reason
    return extra


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class BackendHealth:
    """One record when the backend is lost, one when it is back; DEBUG in between.

    ``failed()`` on every failed backend call, ``recovered()`` on a successful one (cheap when
    nothing changed: callers test ``down`` first on hot paths). Not thread-safe by design:
    a flag read and written from one event loop; a race between loops costs at most a
    duplicate or a missing line, never a wrong counter (counting is elsewhere).
    """

    __slots__ = ("down", "logger")

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.down = False

    def failed(
        self, exc: BaseException, operation: str, *, key: bytes | str, endpoint: str
    ) -> None:
        extra = fields(key=key, endpoint=endpoint, operation=operation, error=error_text(exc))
        if self.down:
            self.logger.debug("cache backend %s failed: %s", operation, exc, extra=extra)
            return
        self.down = True
        extra.update(state="lost", previous_state="ok")
        self.logger.warning(
            "cache backend lost (%s failed: %s): requests are answered by the endpoints "
            "until it is back",
            operation,
            error_text(exc),
            extra=extra,
        )

    def recovered(self, operation: str, *, key: bytes | str, endpoint: str) -> None:
        if not self.down:
            return
        self.down = False
        self.logger.info(
            "cache backend back (%s succeeded)",
            operation,
            extra=fields(
                key=key, endpoint=endpoint, operation=operation, state="ok", previous_state="lost"
            ),
        )


_RECORD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRS and not name.startswith("_"):
                out[name] = (
                    value if isinstance(value, (int, float, bool, type(None))) else str(value)
                )
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)
