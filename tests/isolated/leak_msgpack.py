"""Leak check of packb / unpackb, error paths included (run by test_leaks.py)."""

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal

from _leakcheck import assert_no_leak, raises
from pydantic import BaseModel

from fastapi_cachemate import _native

UTC = dt.timezone.utc


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Model(BaseModel):
    name: str
    point: dict[str, int]


PAYLOAD = {
    "items": [
        {
            "id": i,
            "name": f"user {i}",
            "score": i * 1.5,
            "ok": i % 2 == 0,
            "none": None,
            "tags": ["a", "é"],
            "bin": b"\x00" * i,
            "big": 2**64 - 1,
            "neg": -(2**63),
        }
        for i in range(20)
    ],
    "total": 20,
}
EXTRAS = [
    dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    dt.datetime(2600, 1, 1, tzinfo=UTC),
    dt.date(2024, 1, 2),
    dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    dt.datetime(2020, 1, 1),
    uuid.UUID(int=5),
    Decimal("1.5"),
    Color.RED,
    Point(1, 2.0),
    Model(name="m", point={"x": 1}),
    (1, 2),
    bytearray(b"ab"),
    memoryview(b"cd"),
    {dt.date(2024, 1, 1): "date key"},
]
PACKED = _native.packb(PAYLOAD)
PACKED_EXTRAS = _native.packb(EXTRAS)


def pack() -> None:
    _native.packb(PAYLOAD)


def unpack() -> None:
    _native.unpackb(PACKED)


def pack_extras() -> None:
    _native.packb(EXTRAS)


def unpack_extras() -> None:
    _native.unpackb(PACKED_EXTRAS)


def unpack_memoryview() -> None:
    _native.unpackb(memoryview(PACKED))


SPREAD = bytearray(len(PACKED) * 2)
SPREAD[::2] = PACKED


def unpack_non_contiguous() -> None:
    _native.unpackb(memoryview(SPREAD)[::2])


class ArmedOffset(dt.tzinfo):
    """utcoffset replaces the value of the dict being packed, once armed."""

    armed = False

    def utcoffset(self, when: object) -> dt.timedelta:
        if ArmedOffset.armed:
            ArmedOffset.armed = False
            MUTATED[KEY] = 0
        return dt.timedelta(0)


KEY = dt.datetime(2024, 1, 1, tzinfo=ArmedOffset())
MUTATED: dict[object, object] = {}


def pack_dict_mutated_by_key() -> None:
    MUTATED[KEY] = [["old"] * 10, {"k": "v"}]
    ArmedOffset.armed = True
    _native.packb(MUTATED)


cycle: list[object] = []
cycle.append(cycle)


def pack_cycle() -> None:
    _native.packb(cycle)


def pack_unsupported() -> None:
    _native.packb({"a": [1, 2, {3, 4}]})


def pack_overflow() -> None:
    _native.packb([1, "x", 2**64])


def pack_surrogate() -> None:
    _native.packb({"k": ["ok", "\udc80"]})


def unpack_truncated() -> None:
    _native.unpackb(PACKED[:-7])


def unpack_truncated_extras() -> None:
    _native.unpackb(PACKED_EXTRAS[: len(PACKED_EXTRAS) // 2])


def unpack_bad_key() -> None:
    _native.unpackb(b"\x82\xa1a\x01\x91\x02\x03")


def unpack_bad_utf8() -> None:
    _native.unpackb(b"\x92\xa1a\xa2\xff\xfe")


def unpack_bad_ext() -> None:
    _native.unpackb(b"\x92\xd6\x01\x07\xe8\x0d\x01\xc0")  # date with month 13


def unpack_bad_decimal() -> None:
    _native.unpackb(b"\x91\xd6\x05abcd")


UNICODE = _native.packb(
    [
        {"name": f"Zürich café {i}", "emoji": "\U0001f600" * (i % 3), "cjk": "東京" * i}
        for i in range(30)
    ]
)


def unpack_unicode() -> None:
    _native.unpackb(UNICODE)


def unpack_bad_utf8_short() -> None:
    _native.unpackb(b"\x92\xa3caf\xa4\xed\xa0\x80x")


def unpack_non_canonical_decimal() -> None:
    _native.unpackb(b"\x91\xc7\x03\x05 1 ")


def unpack_trailing() -> None:
    _native.unpackb(PACKED + b"\x00")


def unpack_deep() -> None:
    _native.unpackb(b"\x91" * 600)


assert_no_leak(pack, calls=5_000)
assert_no_leak(unpack, calls=5_000)
assert_no_leak(pack_extras, calls=5_000)
assert_no_leak(unpack_extras, calls=5_000)
assert_no_leak(unpack_memoryview, calls=5_000)
assert_no_leak(unpack_non_contiguous, calls=5_000)
assert_no_leak(unpack_unicode, calls=5_000)
assert_no_leak(pack_dict_mutated_by_key, calls=5_000)
assert_no_leak(raises(pack_cycle, ValueError), calls=500)
assert_no_leak(raises(pack_unsupported, TypeError))
assert_no_leak(raises(pack_overflow, OverflowError))
assert_no_leak(raises(pack_surrogate, UnicodeEncodeError))
for fn in (
    unpack_truncated,
    unpack_truncated_extras,
    unpack_bad_key,
    unpack_bad_utf8,
    unpack_bad_ext,
    unpack_bad_decimal,
    unpack_non_canonical_decimal,
    unpack_bad_utf8_short,
    unpack_trailing,
):
    assert_no_leak(raises(fn, _native.MalformedError), calls=5_000)
assert_no_leak(raises(unpack_deep, _native.MalformedError), calls=1_000)
