"""The interfaces a backend and a lock manager implement.

The abstract methods are the seed library's (``get``/``set``/``close``/``client`` and
``acquire``/``release``), so a custom backend written for the seed keeps working. The cache
itself calls the byte-oriented methods below them (``fetch``/``store``/``delete`` and
``try_lock``/``unlock``/``extend``), whose defaults are built on the seed's methods; the
backends shipped here override them with one round trip each.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel

__all__ = [
    "Backend",
    "ByPass",
    "CoderManager",
    "CompressManager",
    "CompressionMode",
    "LockManager",
]

CompressionMode = Literal["all", "smart", "disabled"]


class ByPass(BaseModel):
    value: str | None = None
    header: str = "X-BYPASS-HEADER"


class Backend(ABC):
    # --- the seed's interface -------------------------------------------------------------
    @abstractmethod
    async def get(self, key: str) -> tuple[int, bytes | None]:
        """Return (remaining ttl in ms, value or None)."""
        raise NotImplementedError

    @abstractmethod
    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        raise NotImplementedError

    @abstractmethod
    async def close(self) -> None:
        raise NotImplementedError

    @property
    @abstractmethod
    def client(self) -> Any:
        """The low-level client, for what this interface does not cover."""
        raise NotImplementedError

    # --- what the cache calls: one round trip each in the shipped backends -----------------
    async def fetch(self, key: bytes) -> bytes | None:
        """The stored value, or None."""
        _, raw = await self.get(key.decode())
        if isinstance(raw, str):
            return raw.encode()
        return raw

    async def store(self, key: bytes, value: bytes, ttl_ms: int) -> None:
        """Store value under key for ttl_ms milliseconds (rounded up to whole seconds here)."""
        await self.set(key.decode(), value, ttl=max(1, math.ceil(ttl_ms / 1000)))

    async def delete(self, *keys: bytes) -> int:
        """Delete keys; the number that existed."""
        raise NotImplementedError(f"{type(self).__name__} does not support delete")


class LockManager(ABC):
    # --- the seed's interface -------------------------------------------------------------
    @abstractmethod
    async def acquire(self, lock_key: str) -> bool:
        raise NotImplementedError

    @abstractmethod
    async def release(self, lock_key: str) -> bool:
        raise NotImplementedError

    # --- what the cache calls: a token per acquisition ------------------------------------
    async def try_lock(self, key: bytes, ttl_ms: int) -> str | None:
        """Take the lock for ttl_ms; a token that proves ownership, or None if taken."""
        return "" if await self.acquire(key.decode()) else None

    async def unlock(self, key: bytes, token: str) -> bool:
        """Release the lock if token still owns it."""
        return await self.release(key.decode())

    async def extend(self, key: bytes, token: str, ttl_ms: int) -> bool:
        """Push the lock's expiry to ttl_ms from now if token still owns it."""
        return False


# --- the seed's serialisation interfaces, kept so that imports of them keep working ---------
# Entries are MessagePack + zstd written by the native core; CacheSetup.setup() accepts a
# coder_manager and a compress_manager for compatibility and does not use them.


class CoderManager(ABC):
    """The seed's value coder interface (accepted by CacheSetup.setup(), not used)."""

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        raise NotImplementedError


class CompressManager(ABC):
    """The seed's compression interface (accepted by CacheSetup.setup(), not used)."""

    @abstractmethod
    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError

    @abstractmethod
    def decompress(self, data: bytes) -> bytes:
        raise NotImplementedError
