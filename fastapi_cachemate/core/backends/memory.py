"""MemoryBackend: the in-process default, so that an app runs with no server at all.

A bounded map over the native ``MemoryStore`` (csrc/store.c, or its pure-Python twin with
``FASTAPI_CACHEMATE_PURE=1``): a byte budget (``max_bytes``, from the settings'
``memory_max_bytes`` when CacheSetup creates it), LRU eviction and per-item expiry on
``time.monotonic()``. Every call is synchronous underneath (no I/O, nothing awaited), so a
call is atomic with respect to the event loop. Each process has its own store: with
several workers, each caches on its own.

Invalidation (docs/keys-and-invalidation.md) keeps the Redis backend's semantics with
Python dicts beside the store, every call atomic (nothing awaited underneath):

- generations: one sequence number for the whole backend; ``begin_compute`` takes the next
  one as the ticket's generation, every invalidation of a key records the next one in
  ``_invalidated[key]``, a namespace invalidation in ``_namespace_floor[prefix]``; a store
  is refused when either is newer than the ticket. Records older than the generation TTL
  are swept (tickets that old are refused anyway); past ``max_generations`` records the
  oldest are dropped and ``_floor`` rises past them, refusing every ticket they could
  concern.
- tags: ``P:tag:{T}`` -> {entry key: expiry}; past ``max_tag_members`` memberships,
  expired ones are swept, then whole tag sets are invalidated, oldest first (an entry that
  is gone cannot be stale).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate.core import layout
from fastapi_cachemate.core.types import DEFAULT_GENERATION_TTL_MS, Backend, ComputeTicket

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_GENERATIONS",
    "DEFAULT_MAX_TAG_MEMBERS",
    "MemoryBackend",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_GENERATIONS = 100_000
DEFAULT_MAX_TAG_MEMBERS = 1_000_000
_MIN_SWEEP = 1024


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
        generation_ttl_ms: int = DEFAULT_GENERATION_TTL_MS,
        max_generations: int = DEFAULT_MAX_GENERATIONS,
        max_tag_members: int = DEFAULT_MAX_TAG_MEMBERS,
        compress: bool = False,
    ) -> None:
        # Raw entries by default: every hit would otherwise decompress its body, which is
        # most of a large hit's cost; compress=True trades that CPU back for memory.
        self.compress_entries = bool(compress)
        for name, value in (
            ("max_bytes", max_bytes),
            ("generation_ttl_ms", generation_ttl_ms),
            ("max_generations", max_generations),
            ("max_tag_members", max_tag_members),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"MemoryBackend({name}=...) must be an int, got {value!r}")
            if value <= 0:
                raise ValueError(f"MemoryBackend({name}=...) must be positive, got {value}")
        self._store = kernels.MemoryStore(max_bytes)
        self._clock = clock
        self.generation_ttl_ms = generation_ttl_ms
        self._max_generations = max_generations
        self._max_tag_members = max_tag_members
        self._seq = 0
        self._floor = 0
        self._invalidated: dict[bytes, tuple[int, float]] = {}  # key -> (seq, at), oldest first
        self._namespace_floor: dict[bytes, int] = {}
        self._tags: dict[bytes, dict[bytes, float]] = {}  # P:tag:{T} -> {key: expires_at}
        self._tag_members = 0
        self._tag_sweep_at = _MIN_SWEEP

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

    # --- invalidation -----------------------------------------------------------------------

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _invalidate(self, key: bytes, seq: int, now: float) -> bool:
        self._invalidated.pop(key, None)  # re-inserted last: the dict stays oldest first
        self._invalidated[key] = (seq, now)
        return self._store.delete(key)

    def _trim_generations(self, now: float) -> None:
        """Past max_generations records: drop those older than the generation TTL (their
        tickets are refused anyway); if more than 3/4 of the cap are left, drop the oldest
        down to half of it and raise the floor past them. Amortised O(1) per record."""
        if len(self._invalidated) <= self._max_generations:
            return
        horizon = now - self.generation_ttl_ms / 1000.0
        for key in [k for k, (_, at) in self._invalidated.items() if at <= horizon]:
            del self._invalidated[key]
        if len(self._invalidated) * 4 <= self._max_generations * 3:
            return
        while len(self._invalidated) > self._max_generations // 2:
            key = next(iter(self._invalidated))
            seq, _ = self._invalidated.pop(key)
            self._floor = max(self._floor, seq)  # refuse every ticket it could concern

    async def begin_compute(
        self, key: bytes, *, tags: Iterable[str] = (), tags_ttl_ms: int = 0
    ) -> ComputeTicket:
        tags = tuple(tags)
        if tags:
            await self.add_tags(key, tags, tags_ttl_ms)
        return ComputeTicket(key, self._next(), self._clock())

    def _current(self, ticket: ComputeTicket) -> bool:
        generation = ticket.generation
        if generation is None or generation <= self._floor:
            return False
        if ticket.expired(self.generation_ttl_ms, self._clock()):
            return False
        record = self._invalidated.get(ticket.key)
        if record is not None and record[0] > generation:
            return False
        at = ticket.key.find(b":{")
        floor = self._namespace_floor.get(ticket.key[:at]) if at > 0 else None
        return floor is None or floor < generation

    async def store_if_generation(self, ticket: ComputeTicket, value: bytes, ttl_ms: int) -> bool:
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        if not self._current(ticket):
            return False
        await self.store(ticket.key, value, ttl_ms)
        return True

    async def add_tags(self, key: bytes, tags: Iterable[str], ttl_ms: int) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        prefix = layout.prefix_of(key)
        now = self._clock()
        expires_at = now + ttl_ms / 1000.0
        for tag in tags:
            members = self._tags.setdefault(layout.tag_key(prefix, tag), {})
            old = members.get(key)
            if old is None:
                self._tag_members += 1
                members[key] = expires_at
            elif old < expires_at:
                members[key] = expires_at
        if self._tag_members > self._tag_sweep_at:
            self._sweep_tags(now)

    def _sweep_tags(self, now: float) -> None:
        for tag_key in list(self._tags):
            members = self._tags[tag_key]
            for member in [m for m, exp in members.items() if exp <= now]:
                del members[member]
                self._tag_members -= 1
            if not members:
                del self._tags[tag_key]
        while self._tag_members > self._max_tag_members and self._tags:
            self._drop_tag(next(iter(self._tags)), now)
        self._tag_sweep_at = min(max(_MIN_SWEEP, 2 * self._tag_members), self._max_tag_members)

    def _drop_tag(self, tag_key: bytes, now: float) -> int:
        members = self._tags.pop(tag_key, {})
        self._tag_members -= len(members)
        removed = 0
        for member in members:
            removed += self._invalidate(member, self._next(), now)
        self._trim_generations(now)
        return removed

    async def invalidate_keys(self, *keys: bytes) -> int:
        now = self._clock()
        removed = sum(self._invalidate(key, self._next(), now) for key in keys)
        self._trim_generations(now)
        return removed

    async def invalidate_tags(self, prefix: str, *tags: str) -> int:
        now = self._clock()
        return sum(self._drop_tag(layout.tag_key(prefix, tag), now) for tag in tags)

    async def invalidate_namespace(self, prefix: str) -> int:
        """Every ticket of the namespace taken so far is refused (one number), every entry
        of it is deleted (a walk of the store's keys under ``P:{``)."""
        raw = prefix.encode()
        self._namespace_floor[raw] = self._next()
        removed = 0
        for key in self._store.keys(raw + b":{"):
            if layout.classify(raw, key) is layout.KeyKind.ENTRY:
                removed += self._store.delete(key)
        return removed
