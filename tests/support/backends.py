"""Backends written by a user: the shipped Backend interface used from outside the package."""

from __future__ import annotations

from typing import Any

from fastapi_cachemate.core.types import Backend

__all__ = ["DictBackend"]


class DictBackend(Backend):
    """A backend that implements only the seed's abstract methods."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.calls: list[str] = []
        self.closed = 0

    async def get(self, key: str) -> tuple[int, bytes | None]:
        self.calls.append(f"get {key}")
        value, ttl = self.data.get(key, (None, -2))
        return ttl * 1000, value

    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        self.calls.append(f"set {key} {ttl}")
        if nx and key in self.data:
            return None
        self.data[key] = (data.encode() if isinstance(data, str) else data, ttl)
        return True

    async def close(self) -> None:
        self.closed += 1

    @property
    def client(self) -> Any:
        return self.data
