"""Leak loops of write_entry / read_entry / body_etag, error paths included."""

import zstandard
from _leakcheck import assert_no_leak, raises

from fastapi_cachemate import _native

BODY = b'{"id": 1, "name": "a name", "tags": ["x", "y"]}' * 40
HEADERS = [(b"content-type", b"application/json"), (b"x-custom", b"value")]
FP = b"12345678"


def write(**kw: object) -> bytes:
    args: dict[str, object] = {
        "status": 200,
        "headers": HEADERS,
        "body": BODY,
        "created": 100.0,
        "ttl": 10.0,
        "grace": 5.0,
        "tags": ["a", "b"],
        "fingerprint": FP,
    }
    args.update(kw)
    return _native.write_entry(**args)  # type: ignore[arg-type]


RAW = write(compression=0)
PACKED = write(compression=2)
TRUNCATED = [RAW[:n] for n in range(0, len(RAW), 7)]
BAD_TAG = RAW.replace(b"\x92\xa1a", b"\x92\xa1\xff")
assert BAD_TAG != RAW
assert len(BAD_TAG) == len(RAW)
frame = PACKED[PACKED.rindex(b"\x28\xb5\x2f\xfd") :]
BOMB = PACKED.replace(frame, zstandard.ZstdCompressor().compress(b"\x00" * len(BODY) * 2))
CORRUPT = bytearray(PACKED)
CORRUPT[-10] ^= 0xFF
assert BOMB != PACKED


def write_modes() -> None:
    write(compression=0)
    write(compression=1, min_size=0)
    write(compression=2, etag=b'"x"')


def read_hits() -> None:
    assert _native.read_entry(RAW, 105.0, FP) is not None
    assert _native.read_entry(PACKED, 112.0) is not None
    assert _native.read_entry(memoryview(RAW), 120.0) is not None
    spread = bytearray(len(RAW) * 2)
    spread[::2] = RAW
    assert _native.read_entry(memoryview(spread)[::2], 120.0, FP) is not None


def read_misses() -> None:
    for data in TRUNCATED:
        assert _native.read_entry(data, 0.0) is None
    assert _native.read_entry(RAW, 0.0, b"87654321") is None
    assert _native.read_entry(BAD_TAG, 0.0) is None
    assert _native.read_entry(BOMB, 0.0) is None
    _native.read_entry(bytes(CORRUPT), 0.0)


def etag() -> None:
    _native.body_etag(BODY)


def bad_header() -> None:
    write(headers=[(b"a", b"b"), (b"c", "d")])


def bad_tag() -> None:
    write(tags=["ok", "\ud800"])


def bad_status() -> None:
    write(status=1000)


def bad_buffer() -> None:
    _native.read_entry("text", 0.0)


assert_no_leak(write_modes, calls=5_000)
assert_no_leak(read_hits)
assert_no_leak(read_misses, calls=2_000)
assert_no_leak(etag)
assert_no_leak(raises(bad_header, TypeError))
assert_no_leak(raises(bad_tag, UnicodeEncodeError))
assert_no_leak(raises(bad_status, ValueError))
assert_no_leak(raises(bad_buffer, TypeError))
