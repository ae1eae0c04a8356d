from _leakcheck import assert_no_leak, raises

from fastapi_cachemate import _native

data = bytes(range(256)) * 8


def digest() -> None:
    _native.blake2b(data, digest_size=16, key=b"key")


def bad_size() -> None:
    _native.blake2b(data, digest_size=99)


assert_no_leak(digest)
assert_no_leak(raises(bad_size, ValueError))
