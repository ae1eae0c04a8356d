from _leakcheck import assert_no_leak, raises

from fastapi_cachemate import _native

data = bytes(range(256)) * 8


def digest() -> None:
    _native.blake2b(data, digest_size=16, key=b"key")


def bad_size() -> None:
    _native.blake2b(data, digest_size=99)


spread = bytearray(len(data) * 2)
spread[::2] = data


def digest_non_contiguous() -> None:
    _native.blake2b(memoryview(spread)[::2], 16, memoryview(b"xkxexy")[1::2])


def bad_key() -> None:
    _native.blake2b(data, key=b"k" * 65)


def bad_argument() -> None:
    _native.blake2b(data, colour=1)


assert_no_leak(digest)
assert_no_leak(digest_non_contiguous)
assert_no_leak(raises(bad_size, ValueError))
assert_no_leak(raises(bad_key, ValueError))
assert_no_leak(raises(bad_argument, TypeError))
