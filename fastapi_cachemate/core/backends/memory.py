"""MemoryBackend: the in-process default, so that an app runs with no server at all.

A bounded map over the native ``MemoryStore`` (csrc/store.c, or its pure-Python twin with
``FASTAPI_CACHEMATE_PURE=1``): a byte budget (``max_bytes``, from the settings'
``memory_max_bytes`` when CacheSetup creates it), LRU eviction and per-item expiry on
``time.monotonic()``. Every call is synchronous underneath (no I/O, nothing awaited), so a
call is atomic with respect to the event loop. Each process has its own store: with
several workers, each caches on its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate.core.types import Backend

__all__ = ["DEFAULT_MAX_BYTES", "MemoryBackend"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


class MemoryBackend(Backend):
    """An in-process Backend bounded by max_bytes (LRU eviction, TTL)."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"MemoryBackend(max_bytes=...) must be an int, got {max_bytes!r}")
        if max_bytes <= 0:
            raise ValueError(f"MemoryBackend(max_bytes=...) must be positive, got {max_bytes}")
        self._store = kernels.MemoryStore(max_bytes)
        self._clock = clock

    # --- the seed's interface -------------------------------------------------------------
    async def get(self, key: str) -> tuple[int, bytes | None]:
        """(remaining ttl in ms, value); (-2, None) for a missing key, as Redis's PTTL."""
        now = self._clock()
        item = self._store.get_with_expiry(key.encode(), now)
        if item is None:
            return -2, None
        value, expires_at = item
        if math.isinf(expires_at):
            return -1, value
        return max(1, math.ceil((expires_at - now) * 1000)), value

    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        """Store data for ttl seconds: True, or None when nx and the key existed (as redis-py)."""
        if ttl <= 0:
            raise ValueError(f"ttl must be positive seconds, got {ttl}")
        now = self._clock()
        k, v = key.encode(), _as_bytes(data)
        if nx:
            return True if self._store.add(k, v, now + ttl, now) else None
        self._store.set(k, v, now + ttl, now)
        return True

    async def close(self) -> None:
        """Drop every item; harmless when called again. The backend stays usable."""
        self._store.clear()

    @property
    def client(self) -> Any:
        """The native MemoryStore (len(), nbytes, max_bytes, evictions)."""
        return self._store

    # --- what the cache calls -------------------------------------------------------------
    async def fetch(self, key: bytes) -> bytes | None:
        value: bytes | None = self._store.get(key, self._clock())
        return value

    async def store(self, key: bytes, value: bytes, ttl_ms: int) -> None:
        """Store value for ttl_ms; a value larger than max_bytes is not stored."""
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        now = self._clock()
        self._store.set(key, _as_bytes(value), now + ttl_ms / 1000.0, now)

    async def delete(self, *keys: bytes) -> int:
        return sum(1 for key in keys if self._store.delete(key))
