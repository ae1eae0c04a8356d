"""The twin's exceptions (the C module creates its own in csrc/module.c)."""

from __future__ import annotations

__all__ = ["MalformedError"]


class MalformedError(ValueError):
    """Raised by the decoders on bytes that are not a valid encoding."""
