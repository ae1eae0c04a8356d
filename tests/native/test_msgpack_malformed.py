"""unpackb on hostile bytes: every malformed input is a MalformedError, in both kernels.

Truncation at every offset, bit flips, inflated length fields, deep nesting, wrong map
keys, bad extension payloads, trailing bytes; and the C decoder agrees with its twin.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_cachemate import _native, _pure

UTC = dt.timezone.utc

VALID_OBJECTS: list[Any] = [
    {"items": [{"id": 1, "name": "Ada", "score": 1.5, "ok": True, "none": None}], "total": 1},
    [0, 127, 128, 65536, 2**40, -1, -33, -200, -40000, -(2**40), 2**64 - 1],
    ["", "a" * 40, "é" * 300, b"bin" * 100, 3.25],
    {1: [], b"k": {}, -5: {"x": [[], [[]]]}},
    [
        dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        dt.datetime(2600, 1, 1, tzinfo=UTC),
        dt.datetime(2000, 1, 1, tzinfo=UTC),
        dt.date(2024, 1, 2),
        dt.time(1, 2, 3, 4),
        dt.time(5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2020, 2, 2, 2, 2),
        uuid.UUID(int=12345),
        Decimal("-12.5e3"),
    ],
    list(range(20)),
    {f"key{i}": "v" * i for i in range(20)},
]
VALID = [_native.packb(obj) for obj in VALID_OBJECTS]


def outcome(impl: ModuleType, data: bytes) -> tuple[str, Any]:
    """What unpackb does with data: ("ok", repr of the value) or ("error", message)."""
    try:
        return "ok", repr(impl.unpackb(data))
    except impl.MalformedError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("data", VALID, ids=range(len(VALID)))
def test_truncation_at_every_offset(kernels: ModuleType, data: bytes) -> None:
    assert kernels.unpackb(data) is not None
    for cut in range(len(data)):
        with pytest.raises(kernels.MalformedError):
            kernels.unpackb(data[:cut])


@pytest.mark.parametrize("data", VALID, ids=range(len(VALID)))
def test_trailing_bytes(kernels: ModuleType, data: bytes) -> None:
    for extra in (b"\x00", b"\xc0", data):
        with pytest.raises(kernels.MalformedError, match="trailing"):
            kernels.unpackb(data + extra)


@pytest.mark.parametrize("data", VALID[:5], ids=range(5))
def test_bit_flips_give_a_value_or_malformed_and_both_kernels_agree(data: bytes) -> None:
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            assert outcome(_native, bytes(flipped)) == outcome(_pure, bytes(flipped)), (i, bit)


INFLATED = [
    b"\xdd\xff\xff\xff\xff\xc0",  # array32 of 4 billion
    b"\xdc\xff\xff\xc0",  # array16
    b"\x9f\xc0",  # fixarray of 15, one element
    b"\xdf\xff\xff\xff\xff\xc0\xc0",  # map32
    b"\xde\x00\x02\xa1a\x01",  # map16 of 2, one pair
    b"\x8f\xa1a\x01",  # fixmap of 15
    b"\xdb\xff\xff\xff\xffabc",  # str32
    b"\xda\x01\x00abc",  # str16
    b"\xd9\x10abc",  # str8
    b"\xbfabc",  # fixstr
    b"\xc6\xff\xff\xff\xffabc",  # bin32
    b"\xc5\x01\x00abc",  # bin16
    b"\xc4\x05abc",  # bin8
    b"\xc9\xff\xff\xff\xff\x05abc",  # ext32
    b"\xc8\x01\x00\x05abc",  # ext16
    b"\xc7\x05\x05abc",  # ext8
    b"\xd8\x04abc",  # fixext16
]


@pytest.mark.parametrize("data", INFLATED, ids=lambda d: d[:3].hex())
def test_inflated_lengths(kernels: ModuleType, data: bytes) -> None:
    with pytest.raises(kernels.MalformedError, match=r"length|truncated"):
        kernels.unpackb(data)


def test_depth_limit(kernels: ModuleType) -> None:
    assert kernels.unpackb(b"\x91" * 511 + b"\x90") is not None
    for head in (b"\x91", b"\x81\xa1k", b"\xdc\x00\x01"):
        with pytest.raises(kernels.MalformedError, match="nested too deep"):
            kernels.unpackb(head * 513 + b"\xc0")
    with pytest.raises(kernels.MalformedError, match="nested too deep"):
        kernels.unpackb(b"\x91" * 512 + b"\x90")
    # very deep: no stack overflow, no hang
    with pytest.raises(kernels.MalformedError):
        kernels.unpackb(b"\x91" * 1_000_000)


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\x90\x01",  # array key
        b"\x81\x80\x01",  # map key
        b"\x81\x91\x01\x01",
        b"\x82\xa1a\x01\x91\x02\x03",  # second key bad
        b"\x81\xc7\x04\x05sNaN\x01",  # Decimal('sNaN') cannot be hashed
    ],
)
def test_unhashable_map_keys(kernels: ModuleType, data: bytes) -> None:
    with pytest.raises(kernels.MalformedError, match="invalid map key"):
        kernels.unpackb(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x91\xc1",
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\xa3\xed\xa0\x80",  # an encoded surrogate
        b"\xa2\xc3",  # truncated multi-byte sequence
        b"\x81\xa2\xff\xff\x01",  # invalid UTF-8 in a key (the key cache path)
        b"\xd4\x09\x00",  # unknown ext type
        b"\xd4\x7f\x00",
        b"\xc7\x00\x00",  # ext 0, empty
        b"\xd5\xff\x00\x00",  # timestamp of 2 bytes
        b"\xd7\xff\xff\xff\xff\xff\x00\x00\x00\x00",  # timestamp64 ns > 999999999
        b"\xc7\x0c\xff\x00\x00\x00\x00\x7f\xff\xff\xff\xff\xff\xff\xff",  # year > 9999
        b"\xc7\x0c\xff\x00\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00",  # year < 1
        b"\xd6\x01\x07\xe8\x0d\x01",  # date, month 13
        b"\xd6\x01\x00\x00\x01\x01",  # date, year 0
        b"\xd5\x01\x07\xe8",  # date, wrong size
        b"\xc7\x06\x02\x18\x00\x00\x00\x00\x00",  # time, hour 24
        b"\xc7\x06\x02\x00\x00\x00\x0f\x42\x40",  # time, microsecond 1000000
        b"\xc7\x0a\x02\x00\x00\x00\x00\x00\x00\x00\x01\x51\x80",  # time, offset 24 h
        b"\xc7\x07\x02\x00\x00\x00\x00\x00\x00\x00",  # time, wrong size
        b"\xc7\x0a\x03\x07\xe8\x02\x1e\x00\x00\x00\x00\x00\x00",  # datetime, Feb 30
        b"\xc7\x09\x03\x07\xe8\x02\x01\x00\x00\x00\x00\x00",  # datetime, wrong size
        b"\xd7\x04\x00\x00\x00\x00\x00\x00\x00\x00",  # UUID of 8 bytes
        b"\xd6\x05abcd",  # Decimal('abcd')
        b"\xd5\x05\xc3\xa9",  # Decimal, not ASCII
        b"\xc7\x00\x05",  # Decimal('')
        # text that Decimal() parses but str(Decimal) never writes
        b"\xd6\x05 1 ",
        b"\xc7\x03\x05 1 ",
        b"\xc7\x03\x051_0",
        b"\xd5\x05+1",
        b"\xc7\x03\x051e5",
        b"\xc7\x03\x051E5",
        b"\xc7\x03\x05007",
        b"\xc7\x03\x05nan",
        b"\xc7\x03\x05Inf",
        b"\xc7\x07\x05NaN0123",
        b"\xc7\x02\x05.5",
    ],
    ids=lambda d: d.hex() or "empty",
)
def test_malformed(kernels: ModuleType, data: bytes) -> None:
    with pytest.raises(kernels.MalformedError):
        kernels.unpackb(data)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "1.25",
        "0.00",
        "1E+400",
        "1.0E-7",
        "0E-10",
        "NaN",
        "-NaN",
        "sNaN",
        "NaN123",
        "Infinity",
        "-Infinity",
        "123456789012345678901234567890.5",
    ],
)
def test_decimal_extension_accepts_what_str_writes(kernels: ModuleType, text: str) -> None:
    value = Decimal(text)
    assert str(value) == text
    data = kernels.packb(value)
    assert data[-len(text) :] == text.encode()
    back = kernels.unpackb(data)
    assert str(back) == text


def test_malformed_error_is_a_value_error_with_an_offset(kernels: ModuleType) -> None:
    assert issubclass(kernels.MalformedError, ValueError)
    with pytest.raises(ValueError, match="at offset 3"):
        kernels.unpackb(b"\x93\x01\x02\xc1")


def test_both_kernels_give_the_same_messages() -> None:
    for data in [
        *INFLATED,
        b"",
        b"\xc1",
        b"\x92\x01",
        b"\x01\x02",
        b"\xa2\xff\xfe",
        b"\x81\x90\x01",
        b"\xd4\x09\x00",
        b"\x91" * 600,
    ]:
        assert outcome(_native, data) == outcome(_pure, data), data


def test_input_size_limit(kernels: ModuleType) -> None:
    limit = 256 * 1024 * 1024
    big = bytearray(limit + 1)
    with pytest.raises(kernels.MalformedError, match="limit"):
        kernels.unpackb(big)
    del big


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_agree_with_the_twin(data: bytes) -> None:
    assert outcome(_native, data) == outcome(_pure, data)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_mutated_encodings_agree_with_the_twin(valid: bytes, data: st.DataObject) -> None:
    buf = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete", "length"]))
        if op == "set":
            buf[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            buf.insert(i, data.draw(st.integers(0, 255)))
        elif op == "delete" and len(buf) > 1:
            del buf[i]
        elif op == "length":
            buf[i : i + 1] = data.draw(
                st.sampled_from(
                    [
                        b"\xdd\xff\xff\xff\xff",
                        b"\xdb\x7f\xff\xff\xff",
                        b"\xdf\x00\x01\x00\x00",
                        b"\xc9\xff\xff\xff\xff",
                    ]
                )
            )
    assert outcome(_native, bytes(buf)) == outcome(_pure, bytes(buf))


def test_lying_array_count_in_a_large_input(kernels: ModuleType) -> None:
    # the count fits the bytes left, the elements are not there: no huge allocation first
    data = b"\xdd" + (3_000_000).to_bytes(4, "big") + b"\x01" * 10 + b"\xc1" + bytes(3_000_000)
    with pytest.raises(kernels.MalformedError, match="0xc1 at offset 15"):
        kernels.unpackb(data)
