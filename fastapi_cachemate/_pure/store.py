"""Twin of csrc/store.c: a bounded map bytes -> bytes with expiry, a byte budget and LRU.

Semantics (the C store follows them exactly; tests compare the two step by step):

- An item costs ``len(key) + len(value) + STORE_ITEM_OVERHEAD`` bytes of the budget.
- An item is expired when ``expires_at <= now``; ``get`` drops an expired item and
  returns None; otherwise it moves the item to the most-recent end.
- ``set`` removes any item under the key, then, if the new item alone is larger than
  ``max_bytes``, stores nothing. Otherwise, when the budget is short, it first drops the
  expired items among the ``STORE_EXPIRED_SCAN`` least recently used ones (not counted as
  evictions), then evicts least recently used items (counted in ``evictions``) until the new
  item fits, and stores it as the most recent.
- ``add`` stores only when the key is absent or expired, like ``set``; True if stored.
- ``delete`` removes the item if present (expired or not); True if there was one.
- ``len()`` counts stored items, expired ones not yet dropped included.
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["STORE_EXPIRED_SCAN", "STORE_ITEM_OVERHEAD", "MemoryStore"]

STORE_ITEM_OVERHEAD = 64
STORE_EXPIRED_SCAN = 8
_DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _key(key: object) -> bytes:
    if type(key) is not bytes:
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    return key


def _value(value: object) -> bytes:
    if type(value) is not bytes:
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    return value


def _time(name: str, v: float) -> float:
    if isinstance(v, (str, bytes, bytearray)):
        raise TypeError(f"{name} must be a real number, not {type(v).__name__}")
    f = float(v)
    if math.isnan(f):
        raise ValueError(f"{name} must not be NaN")
    return f


class MemoryStore:
    """A bounded map bytes -> bytes with per-item expiry, a byte budget and LRU eviction."""

    __slots__ = ("_evictions", "_items", "_max_bytes", "_nbytes")

    def __init__(self, max_bytes: int = _DEFAULT_MAX_BYTES) -> None:
        if not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be int, not {type(max_bytes).__name__}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self._max_bytes = int(max_bytes)
        self._nbytes = 0
        self._evictions = 0
        # least recently used first
        self._items: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    @staticmethod
    def _cost(key: bytes, value: bytes) -> int:
        return len(key) + len(value) + STORE_ITEM_OVERHEAD

    def _remove(self, key: bytes) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self._nbytes -= self._cost(key, item[0])
        return True

    def get(self, key: bytes, now: float, /) -> bytes | None:
        item = self.get_with_expiry(key, now)
        return None if item is None else item[0]

    def get_with_expiry(self, key: bytes, now: float, /) -> tuple[bytes, float] | None:
        key = _key(key)
        now = _time("now", now)
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= now:
            self._remove(key)
            return None
        self._items.move_to_end(key)
        return item

    def _store(self, key: bytes, value: bytes, expires_at: float, now: float) -> bool:
        self._remove(key)
        cost = self._cost(key, value)
        if cost > self._max_bytes:
            return False
        if self._nbytes + cost > self._max_bytes:
            expired = [k for k, (_, exp) in _first(self._items, STORE_EXPIRED_SCAN) if exp <= now]
            for k in expired:
                self._remove(k)
        while self._nbytes + cost > self._max_bytes:
            k, (v, _) = self._items.popitem(last=False)
            self._nbytes -= self._cost(k, v)
            self._evictions += 1
        self._items[key] = (value, expires_at)
        self._nbytes += cost
        return True

    def set(self, key: bytes, value: bytes, expires_at: float, now: float, /) -> None:
        key, value = _key(key), _value(value)
        expires_at, now = _time("expires_at", expires_at), _time("now", now)
        self._store(key, value, expires_at, now)

    def add(self, key: bytes, value: bytes, expires_at: float, now: float, /) -> bool:
        key, value = _key(key), _value(value)
        expires_at, now = _time("expires_at", expires_at), _time("now", now)
        item = self._items.get(key)
        if item is not None and item[1] > now:
            return False
        return self._store(key, value, expires_at, now)

    def delete(self, key: bytes, /) -> bool:
        return self._remove(_key(key))

    def keys(self, prefix: bytes = b"", /) -> list[bytes]:
        prefix = _key(prefix)
        return [key for key in self._items if key.startswith(prefix)]

    def clear(self) -> None:
        self._items.clear()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def evictions(self) -> int:
        return self._evictions


def _first(
    items: OrderedDict[bytes, tuple[bytes, float]], n: int
) -> list[tuple[bytes, tuple[bytes, float]]]:
    out: list[tuple[bytes, tuple[bytes, float]]] = []
    for pair in items.items():
        if len(out) == n:
            break
        out.append(pair)
    return out
