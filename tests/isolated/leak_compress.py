import struct

from _leakcheck import assert_no_leak, raises

from fastapi_cachemate import _native

small = b'{"id": 1, "name": "widget", "tags": ["a", "b"]},' * 10
large = bytes(range(256)) * 1200  # 300 KiB: the GIL-free path
small_frame = _native.compress(small)
large_frame = _native.compress(large)
# A frame without a content size: the streaming path.
unsized = (
    struct.pack("<IBB", 0xFD2FB528, 0x00, 0x38)
    + (1 | 1 << 1 | 70_000 << 3).to_bytes(3, "little")
    + b"\x00"
)
declared_bomb = (
    struct.pack("<IBQ", 0xFD2FB528, 0xE0, 1 << 30)
    + (1 | 1 << 1 | 4 << 3).to_bytes(3, "little")
    + b"\x00"
)


def round_trip_small() -> None:
    _native.decompress(_native.compress(small))
    spread = bytearray(len(small) * 2)
    spread[::2] = small
    _native.decompress(_native.compress(memoryview(spread)[::2]))


def round_trip_large() -> None:
    _native.decompress(_native.compress(large, level=1))
    _native.decompress(large_frame)


def stream() -> None:
    _native.decompress(unsized)


def stream_over_cap() -> None:
    _native.decompress(unsized, max_size=1000)


def truncated() -> None:
    _native.decompress(small_frame[:-3])


def trailing() -> None:
    _native.decompress(small_frame + b"x")


def bomb() -> None:
    _native.decompress(declared_bomb)


def bad_level() -> None:
    _native.compress(small, level=99)


def bad_kwarg() -> None:
    _native.compress(small, nope=1)  # type: ignore[call-arg]


assert_no_leak(round_trip_small)
assert_no_leak(round_trip_large, calls=300)
assert_no_leak(stream, calls=2000)
assert_no_leak(raises(stream_over_cap, _native.MalformedError), calls=2000)
assert_no_leak(raises(truncated, _native.MalformedError))
assert_no_leak(raises(trailing, _native.MalformedError))
assert_no_leak(raises(bomb, _native.MalformedError))
assert_no_leak(raises(bad_level, ValueError))
assert_no_leak(raises(bad_kwarg, TypeError))
