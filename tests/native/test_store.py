"""MemoryStore on the C module and its twin, and the two compared step by step."""

from __future__ import annotations

import math
import random
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fastapi_cachemate import _native, _pure

INF = math.inf


def cost(k: ModuleType, key: bytes, value: bytes) -> int:
    n: int = len(key) + len(value) + k.STORE_ITEM_OVERHEAD
    return n


def test_constants(kernels: ModuleType) -> None:
    assert kernels.STORE_ITEM_OVERHEAD == 64
    assert kernels.STORE_EXPIRED_SCAN == 8
    assert kernels.MemoryStore().max_bytes == 64 * 1024 * 1024


def test_get_set_len_nbytes(kernels: ModuleType) -> None:
    s = kernels.MemoryStore(10_000)
    assert len(s) == 0
    assert s.nbytes == 0
    assert s.get(b"a", 0.0) is None
    s.set(b"a", b"1" * 10, INF, 0.0)
    s.set(b"bb", b"2" * 20, 100.0, 0.0)
    assert len(s) == 2
    assert s.nbytes == cost(kernels, b"a", b"1" * 10) + cost(kernels, b"bb", b"2" * 20)
    assert s.get(b"a", 1e18) == b"1" * 10
    assert s.get(b"bb", 99.0) == b"2" * 20
    assert s.get_with_expiry(b"bb", 0.0) == (b"2" * 20, 100.0)
    s.set(b"a", b"x", INF, 0.0)  # replaces
    assert s.get(b"a", 0.0) == b"x"
    assert len(s) == 2
    assert s.nbytes == cost(kernels, b"a", b"x") + cost(kernels, b"bb", b"2" * 20)
    assert s.max_bytes == 10_000
    assert s.evictions == 0


def test_values_are_the_same_objects(kernels: ModuleType) -> None:
    s = kernels.MemoryStore()
    value = b"v" * 1000
    s.set(b"k", value, INF, 0.0)
    assert s.get(b"k", 0.0) is value
    assert s.get(bytes(b"k"[:]), 0.0) is value  # equal key, another object


def test_expiry(kernels: ModuleType) -> None:
    s = kernels.MemoryStore()
    s.set(b"k", b"v", 10.0, 0.0)
    assert s.get(b"k", 9.999) == b"v"
    assert len(s) == 1
    assert s.get(b"k", 10.0) is None  # expired at expires_at exactly
    assert len(s) == 0  # and dropped
    assert s.nbytes == 0
    s.set(b"k", b"v", 10.0, 0.0)
    assert s.get_with_expiry(b"k", 11.0) is None
    assert len(s) == 0


def test_lru_order_and_evictions(kernels: ModuleType) -> None:
    value = b"x" * 35
    per = cost(kernels, b"a", value)  # 100 bytes each
    s = kernels.MemoryStore(3 * per)
    for key in (b"a", b"b", b"c"):
        s.set(key, value, INF, 0.0)
    assert s.nbytes == 3 * per
    assert s.get(b"a", 0.0) is not None  # a is now the most recent: b is the oldest
    s.set(b"d", value, INF, 0.0)
    assert s.get(b"b", 0.0) is None
    assert s.evictions == 1
    assert len(s) == 3
    s.set(b"e", b"x" * (2 * per - 1 - kernels.STORE_ITEM_OVERHEAD), INF, 0.0)
    # e costs 2 items: evicts c and a
    assert s.get(b"c", 0.0) is None
    assert s.get(b"a", 0.0) is None
    assert s.get(b"d", 0.0) is not None
    assert s.evictions == 3
    assert s.nbytes == 3 * per


def test_set_replacing_moves_to_most_recent(kernels: ModuleType) -> None:
    per = cost(kernels, b"a", b"1")
    s = kernels.MemoryStore(2 * per)
    s.set(b"a", b"1", INF, 0.0)
    s.set(b"b", b"1", INF, 0.0)
    s.set(b"a", b"2", INF, 0.0)
    s.set(b"c", b"1", INF, 0.0)
    assert s.get(b"b", 0.0) is None
    assert s.get(b"a", 0.0) == b"2"


def test_expired_items_go_first(kernels: ModuleType) -> None:
    per = cost(kernels, b"live1", b"")
    s = kernels.MemoryStore(4 * per)
    s.set(b"live1", b"", INF, 0.0)  # cost per, oldest
    s.set(b"dead1", b"", 5.0, 0.0)
    s.set(b"live2", b"", INF, 0.0)
    s.set(b"dead2", b"", 5.0, 0.0)
    s.set(b"new01", b"", INF, 10.0)  # full: drops both expired ones, evicts nothing
    assert s.evictions == 0
    assert len(s) == 3
    assert s.get(b"live1", 10.0) is not None
    assert s.get(b"live2", 10.0) is not None


def test_expired_scan_is_bounded(kernels: ModuleType) -> None:
    n = kernels.STORE_EXPIRED_SCAN
    s = kernels.MemoryStore((n + 2) * cost(kernels, b"k00", b""))
    for i in range(n):
        s.set(b"l%02d" % i, b"", INF, 0.0)
    s.set(b"d00", b"", 1.0, 0.0)  # expired, but past the scan window
    s.set(b"d01", b"", 1.0, 0.0)
    s.set(b"new", b"", INF, 2.0)
    assert s.evictions == 1  # l00 evicted: d00 was not looked at
    assert s.get(b"l00", 2.0) is None
    assert len(s) == n + 2


def test_add(kernels: ModuleType) -> None:
    s = kernels.MemoryStore()
    assert s.add(b"lock", b"t1", 10.0, 0.0) is True
    assert s.add(b"lock", b"t2", 20.0, 5.0) is False
    assert s.get(b"lock", 5.0) == b"t1"
    assert s.add(b"lock", b"t3", 30.0, 10.0) is True  # t1 expired at 10
    assert s.get(b"lock", 10.0) == b"t3"
    assert s.delete(b"lock") is True
    assert s.add(b"lock", b"t4", 30.0, 10.0) is True


def test_oversize(kernels: ModuleType) -> None:
    s = kernels.MemoryStore(1000)
    s.set(b"k", b"small", INF, 0.0)
    s.set(b"other", b"o", INF, 0.0)
    s.set(b"k", b"x" * 1000, INF, 0.0)  # cannot fit at all
    assert s.get(b"k", 0.0) is None  # the old value is gone too
    assert s.get(b"other", 0.0) == b"o"  # and nothing else was evicted
    assert s.evictions == 0
    assert s.add(b"k2", b"x" * 1000, INF, 0.0) is False
    fits = b"x" * (1000 - cost(kernels, b"k", b""))
    s.set(b"k", fits, INF, 0.0)  # exactly the budget: evicts the rest
    assert s.get(b"k", 0.0) is fits
    assert s.nbytes == 1000
    assert len(s) == 1
    assert kernels.MemoryStore(0).add(b"", b"", INF, 0.0) is False


def test_delete_and_clear(kernels: ModuleType) -> None:
    s = kernels.MemoryStore()
    assert s.delete(b"nope") is False
    s.set(b"a", b"1", 1.0, 0.0)
    assert s.delete(b"a") is True  # expired or not
    assert s.delete(b"a") is False
    for i in range(1000):
        s.set(b"%d" % i, b"v", INF, 0.0)
    assert len(s) == 1000
    s.clear()
    assert len(s) == 0
    assert s.nbytes == 0
    assert s.get(b"1", 0.0) is None
    s.set(b"again", b"v", INF, 0.0)
    assert s.get(b"again", 0.0) == b"v"


def test_keys_by_prefix(kernels: ModuleType) -> None:
    s = kernels.MemoryStore(10_000)
    assert s.keys() == []
    s.set(b"p:{1}", b"v", INF, 0.0)
    s.set(b"q:{1}", b"v", INF, 0.0)
    s.set(b"p:{2}", b"v", 1.0, 0.0)  # expired at now=5: still listed, not dropped
    s.set(b"p", b"v", INF, 0.0)
    assert s.get(b"p:{1}", 5.0) == b"v"  # now the most recent
    assert s.keys(b"p:{") == [b"p:{2}", b"p:{1}"]
    assert s.keys() == [b"q:{1}", b"p:{2}", b"p", b"p:{1}"]
    assert s.keys(b"") == s.keys()
    assert s.keys(b"p:{1}x") == []
    assert len(s) == 4  # listing touches nothing
    assert s.keys(b"q")[0] is not None
    with pytest.raises(TypeError):
        s.keys("p")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.keys(b"p", b"q")  # type: ignore[call-arg]


def test_many_keys(kernels: ModuleType) -> None:
    s = kernels.MemoryStore()
    keys = [b"key:%d" % i for i in range(20_000)]
    for i, key in enumerate(keys):
        s.set(key, b"%d" % i, INF, 0.0)
    assert len(s) == len(keys)
    assert all(s.get(key, 0.0) == b"%d" % i for i, key in enumerate(keys))
    for key in keys[::2]:
        assert s.delete(key)
    assert len(s) == len(keys) // 2
    assert all((s.get(key, 0.0) is None) == (i % 2 == 0) for i, key in enumerate(keys))


class StrBytes(bytes):
    pass


@pytest.mark.parametrize("bad", ["k", bytearray(b"k"), memoryview(b"k"), StrBytes(b"k"), 1, None])
def test_keys_must_be_bytes(kernels: ModuleType, bad: Any) -> None:
    s = kernels.MemoryStore()
    for call in (
        lambda: s.get(bad, 0.0),
        lambda: s.get_with_expiry(bad, 0.0),
        lambda: s.set(bad, b"v", INF, 0.0),
        lambda: s.add(bad, b"v", INF, 0.0),
        lambda: s.delete(bad),
    ):
        with pytest.raises(TypeError):
            call()
    with pytest.raises(TypeError):
        s.set(b"k", bad, INF, 0.0)
    assert len(s) == 0


def test_bad_arguments(kernels: ModuleType) -> None:
    s = kernels.MemoryStore()
    with pytest.raises(ValueError, match="NaN"):
        s.set(b"k", b"v", math.nan, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        s.get(b"k", math.nan)
    with pytest.raises(TypeError):
        s.set(b"k", b"v", "1", 0.0)
    with pytest.raises(TypeError):
        s.get(b"k")
    with pytest.raises(ValueError, match=">= 0"):
        kernels.MemoryStore(-1)
    with pytest.raises(TypeError):
        kernels.MemoryStore("1")
    assert len(s) == 0
    s.set(b"k", b"v", 5, 1)  # ints are times too
    assert s.get(b"k", 4) == b"v"


# --- the C store against the twin -------------------------------------------------------

KEYS = st.sampled_from([b"", b"k" * 100, *(b"key:%d" % i for i in range(14))])
VALUES = st.binary(max_size=60)
TIMES = st.integers(0, 6).map(float)


class StoreComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.c: Any = None
        self.py: Any = None
        self.now = 0.0

    @rule(max_bytes=st.integers(0, 1500))
    def new(self, max_bytes: int) -> None:
        if self.c is None:
            self.c = _native.MemoryStore(max_bytes)
            self.py = _pure.MemoryStore(max_bytes)

    def both(self, name: str, *args: Any) -> Any:
        if self.c is None:
            self.new(900)
        a = getattr(self.c, name)(*args)
        b = getattr(self.py, name)(*args)
        assert a == b, (name, args)
        return a

    @rule(dt=st.integers(0, 3))
    def tick(self, dt: int) -> None:
        self.now += dt

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        self.both("get", key, self.now)

    @rule(key=KEYS)
    def get_with_expiry(self, key: bytes) -> None:
        self.both("get_with_expiry", key, self.now)

    @rule(key=KEYS, value=VALUES, ttl=TIMES)
    def set(self, key: bytes, value: bytes, ttl: float) -> None:
        self.both("set", key, value, self.now + ttl, self.now)

    @rule(key=KEYS, value=VALUES, ttl=TIMES)
    def add(self, key: bytes, value: bytes, ttl: float) -> None:
        self.both("add", key, value, self.now + ttl, self.now)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        self.both("delete", key)

    @rule()
    def clear(self) -> None:
        self.both("clear")

    @invariant()
    def same_accounting(self) -> None:
        if self.c is not None:
            assert len(self.c) == len(self.py)
            assert self.c.nbytes == self.py.nbytes
            assert self.c.evictions == self.py.evictions
            assert self.c.nbytes <= self.c.max_bytes


StoreComparison.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestStoreComparison = StoreComparison.TestCase


@pytest.mark.parametrize("seed", range(3))
def test_random_workload(seed: int) -> None:
    rng = random.Random(seed)
    c, py = _native.MemoryStore(5000), _pure.MemoryStore(5000)
    now = 0.0
    for _ in range(20_000):
        key = b"k%d" % rng.randrange(200)
        op = rng.random()
        if op < 0.5:
            assert c.get(key, now) == py.get(key, now)
        elif op < 0.8:
            value = b"v" * rng.randrange(300)
            exp = now + rng.randrange(1, 50)
            c.set(key, value, exp, now)
            py.set(key, value, exp, now)
        elif op < 0.9:
            exp = now + rng.randrange(1, 50)
            assert c.add(key, b"t", exp, now) == py.add(key, b"t", exp, now)
        else:
            assert c.delete(key) == py.delete(key)
        now += rng.random()
        assert (len(c), c.nbytes, c.evictions) == (len(py), py.nbytes, py.evictions)
    assert c.evictions > 0
