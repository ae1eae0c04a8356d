"""The interfaces a backend and a lock manager implement.

The abstract methods are the seed library's (``get``/``set``/``close``/``client`` and
``acquire``/``release``), so a custom backend written for the seed keeps working. The cache
itself calls the byte-oriented methods below them (``fetch``/``store``/``delete`` and
``try_lock``/``unlock``/``extend``), whose defaults are built on the seed's methods; the
backends shipped here override them with one round trip each.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

__all__ = [
    "DEFAULT_GENERATION_TTL_MS",
    "MAX_LOCK_TTL_SECONDS",
    "Backend",
    "ByPass",
    "CoderManager",
    "CompressManager",
    "CompressionMode",
    "ComputeTicket",
    "LockManager",
]

#: How long a key's generation counter lives after its last use (a computation beginning,
#: an invalidation): 10 minutes. A computation older than half of it is never stored
#: (``ComputeTicket.expired``), so the counter's expiry can never let an old computation
#: write back (docs/keys-and-invalidation.md).
DEFAULT_GENERATION_TTL_MS = 600_000

#: The seed's lock TTL in seconds (its ``MAX_LOCK_TTL_SECONDS``): the default of
#: ``ttl_lock_seconds`` and of a lock manager made before any ``CacheSetup.setup()``.
MAX_LOCK_TTL_SECONDS: int = 5

CompressionMode = Literal["all", "smart", "disabled"]


class ByPass(BaseModel):
    value: str | None = None
    header: str = "X-BYPASS-HEADER"


class ComputeTicket(NamedTuple):
    """What ``Backend.begin_compute`` hands to the computation that will store key.

    generation: the key's generation when the computation began (None: the backend has no
    generations, ``store_if_generation`` is a plain store). started: ``time.monotonic()``
    at that moment, in this process.
    """

    key: bytes
    generation: int | None
    started: float

    def expired(self, generation_ttl_ms: int, now: float | None = None) -> bool:
        """True once the computation is older than half the generation counters' TTL:
        its key's counter may have expired since, so its generation proves nothing."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        return elapsed * 1000.0 > generation_ttl_ms / 2


class Backend(ABC):
    #: Whether entries stored here are compressed as the settings say. A backend in the
    #: same process (MemoryBackend) keeps them raw: a hit then costs no decompression.
    compress_entries: bool = True

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

    # --- invalidation (docs/keys-and-invalidation.md) --------------------------------------
    # A computation that will store an entry (a miss or a refresh) calls begin_compute
    # before it reads anything, and stores with store_if_generation: an invalidation of the
    # key (by key, tag or namespace) that lands in between bumps the key's generation, and
    # the store is refused. The shipped backends implement all of this; the defaults below
    # keep a seed-style custom backend working without it (no generations: an invalidation
    # cannot stop a computation in flight from writing back) and raise NotImplementedError
    # for what they cannot do at all.

    async def begin_compute(
        self, key: bytes, *, tags: Iterable[str] = (), tags_ttl_ms: int = 0
    ) -> ComputeTicket:
        """Read key's generation and register key in the set of each tag, before computing.

        tags_ttl_ms: how long the tag sets must keep key (the entry's ttl + grace): a set's
        expiry is pushed to at least that. Default: no generation, tags ignored.
        """
        return ComputeTicket(key, None, time.monotonic())

    async def store_if_generation(self, ticket: ComputeTicket, value: bytes, ttl_ms: int) -> bool:
        """Store value under ticket.key for ttl_ms only if no invalidation of the key landed
        since begin_compute (compare-and-set on its generation); True if stored.
        Default: a plain store (the backend has no generations)."""
        await self.store(ticket.key, value, ttl_ms)
        return True

    async def lock_and_fetch(
        self, lock_key: bytes, ttl_ms: int, key: bytes
    ) -> tuple[str | None, bytes | None]:
        """Take the lock lock_key for ttl_ms (as the LockManager whose ``shares_store(self)``
        is True would), then read key, in one round trip: (the lock's token, or None if it
        is taken; the value at key now, or None)."""
        raise NotImplementedError(f"{type(self).__name__} holds no locks")

    async def store_if_generation_and_unlock(
        self, ticket: ComputeTicket, value: bytes, ttl_ms: int, lock_key: bytes, token: str
    ) -> bool:
        """store_if_generation, then release the lock (lock_key, token) of a LockManager
        whose ``shares_store(self)`` is True, in one round trip; True if stored."""
        raise NotImplementedError(f"{type(self).__name__} holds no locks")

    async def add_tags(self, key: bytes, tags: Iterable[str], ttl_ms: int) -> None:
        """Register key in the set of each tag; each set lives at least ttl_ms more."""
        raise NotImplementedError(f"{type(self).__name__} does not support tags")

    async def invalidate_keys(self, *keys: bytes) -> int:
        """Remove the entries and bump their generations; the number of entries removed.
        Default: delete() (no generation: a computation in flight may write back)."""
        return await self.delete(*keys)

    async def invalidate_tags(self, prefix: str, *tags: str) -> int:
        """invalidate_keys of every key registered under a tag; the number of entries removed."""
        raise NotImplementedError(f"{type(self).__name__} does not support tags")

    async def invalidate_namespace(self, prefix: str) -> int:
        """invalidate_keys of every entry of the namespace, and of every key whose
        computation is in flight (its lock is held); the number of entries removed."""
        raise NotImplementedError(f"{type(self).__name__} does not support namespace invalidation")


class LockManager(ABC):
    #: The seed methods' lock TTL in seconds for a manager made without ``lock_ttl``:
    #: ``CacheSetup.setup()`` hands down its settings' ``ttl_lock_seconds``.
    default_lock_ttl: int = MAX_LOCK_TTL_SECONDS

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
        acquired = await self.acquire(key.decode())
        if acquired is not None and not isinstance(acquired, int):  # bool included
            raise TypeError(f"{type(self).__name__}.acquire() must return a bool, got {acquired!r}")
        return "" if acquired else None

    async def unlock(self, key: bytes, token: str) -> bool:
        """Release the lock if token still owns it."""
        return await self.release(key.decode())

    async def extend(self, key: bytes, token: str, ttl_ms: int) -> bool:
        """Push the lock's expiry to ttl_ms from now if token still owns it."""
        return False

    def shares_store(self, backend: Backend) -> bool:
        """Whether the locks live in backend's store, so that ``backend.lock_and_fetch``
        takes one with the recheck's round trip and ``backend.store_if_generation_and_unlock``
        releases it with the store's."""
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
