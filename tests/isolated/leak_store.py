"""Leak loops of MemoryStore: set/get/add/delete, keys, eviction, expiry, clear, dealloc, errors."""

from _leakcheck import assert_no_leak, raises

from fastapi_cachemate import _native

store = _native.MemoryStore(50_000)
counter = [0]


def churn() -> None:
    i = counter[0] = counter[0] + 1
    key = b"key:%d" % (i % 1000)
    store.set(key, b"v" * (i % 300), float(i % 7), 0.0)
    store.get(key, float(i % 5))
    store.get_with_expiry(b"key:%d" % ((i * 7) % 1000), 3.0)
    store.add(b"lock:%d" % (i % 50), b"token", 2.0, float(i % 4))
    if i % 3 == 0:
        store.delete(key)
    store.set(b"big", b"x" * 60_000, 1e9, 0.0)  # oversize: not stored


def lifecycle() -> None:
    s = _native.MemoryStore(10_000)
    for j in range(40):
        s.set(b"%d" % j, b"v" * 100, 1e9, 0.0)
    assert len(s.keys(b"1")) >= 1
    assert len(s.keys()) == len(s)
    if counter[0] % 2:
        s.clear()


def bad_key() -> None:
    store.set("str", b"v", 1.0, 0.0)


def bad_value() -> None:
    store.set(b"k", bytearray(b"v"), 1.0, 0.0)


def bad_time() -> None:
    store.get(b"k", float("nan"))


def bad_prefix() -> None:
    store.keys("str")


assert_no_leak(churn)
assert store.evictions > 0
assert_no_leak(lifecycle, calls=2_000)
assert_no_leak(raises(bad_key, TypeError))
assert_no_leak(raises(bad_value, TypeError))
assert_no_leak(raises(bad_time, ValueError))
assert_no_leak(raises(bad_prefix, TypeError))
