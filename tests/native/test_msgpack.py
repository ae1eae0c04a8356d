"""MessagePack packb / unpackb (csrc/msgpack*.c and its twin): bytes, round trips, types."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import uuid
from collections import OrderedDict, defaultdict, namedtuple
from decimal import Decimal
from types import ModuleType
from typing import Any, ClassVar

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

UTC = dt.timezone.utc


def reference(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True, datetime=True)
    return packed


def reference_unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=False)


INTS = [
    0,
    1,
    31,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -31,
    -32,
    -33,
    -127,
    -128,
    -129,
    -32767,
    -32768,
    -32769,
    -(2**31) + 1,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
]
SCALARS: list[object] = [
    None,
    True,
    False,
    *INTS,
    0.0,
    -0.0,
    1.5,
    -2.25,
    1e300,
    math.inf,
    -math.inf,
    "",
    "a",
    "x" * 31,
    "x" * 32,
    "x" * 255,
    "x" * 256,
    "x" * 65535,
    "x" * 65536,
    "héllo",
    "日本語",
    "emoji \U0001f600",
    b"",
    b"\x00\xff",
    b"y" * 255,
    b"y" * 256,
    b"y" * 65536,
]
CONTAINERS: list[object] = [
    [],
    [1] * 15,
    [1] * 16,
    [None] * 65535,
    [None] * 65536,
    [0] * 65537,
    {},
    {"a": 1},
    {str(i): i for i in range(15)},
    {str(i): i for i in range(16)},
    {i: i for i in range(65536)},
    {"nested": {"list": [1, [2, [3, {"x": None}]]]}},
    {1: "int key", -5: "neg", 2.5: "float key", b"k": "bytes key", None: "nil key"},
]


@pytest.mark.parametrize("obj", SCALARS + CONTAINERS, ids=lambda o: repr(o)[:40])
def test_same_bytes_as_msgpack_python(kernels: ModuleType, obj: object) -> None:
    packed = kernels.packb(obj)
    assert packed == reference(obj)
    assert kernels.unpackb(packed) == reference_unpack(packed)


def test_nan_is_float64(kernels: ModuleType) -> None:
    packed = kernels.packb(math.nan)
    assert packed == reference(math.nan)
    assert packed[0] == 0xCB
    assert math.isnan(kernels.unpackb(packed))


def test_tuples_pack_as_arrays_and_come_back_as_lists(kernels: ModuleType) -> None:
    obj = (1, (2, 3), [4, (5,)])
    assert kernels.packb(obj) == reference(obj)
    assert kernels.unpackb(kernels.packb(obj)) == [1, [2, 3], [4, [5]]]


@pytest.mark.parametrize("buf", [bytearray(b"abc"), memoryview(b"abcdef"), bytearray()])
def test_bytes_like_pack_as_bin(kernels: ModuleType, buf: bytes) -> None:
    assert kernels.packb(buf) == reference(buf)
    assert kernels.unpackb(kernels.packb(buf)) == bytes(buf)


def test_multibyte_memoryview_packs_its_bytes(kernels: ModuleType) -> None:
    view = memoryview(bytearray(range(16))).cast("I")
    assert kernels.packb(view) == b"\xc4\x10" + bytes(range(16))


def test_non_contiguous_memoryview_is_refused(kernels: ModuleType) -> None:
    with pytest.raises(BufferError):
        kernels.packb(memoryview(b"abcdef")[::2])


def test_unpackb_accepts_any_buffer(kernels: ModuleType) -> None:
    packed = kernels.packb({"a": [1, 2]})
    for data in (packed, bytearray(packed), memoryview(packed)):
        assert kernels.unpackb(data) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        kernels.unpackb("not bytes")


def test_unpackb_of_a_non_contiguous_buffer_reads_its_bytes(kernels: ModuleType) -> None:
    packed = kernels.packb({"a": [1, 2], "b": "x" * 40})
    spread = bytearray(len(packed) * 2)
    spread[::2] = packed
    view = memoryview(spread)[::2]
    assert not view.contiguous
    assert kernels.unpackb(view) == reference_unpack(view) == {"a": [1, 2], "b": "x" * 40}
    big = kernels.packb(list(range(40_000)))
    doubled = bytearray(len(big) * 2)
    doubled[::2] = big
    assert kernels.unpackb(memoryview(doubled)[::2]) == list(range(40_000))


# ---- hypothesis: byte equality with msgpack-python --------------------------------------

core_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
core_keys = st.text() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary()
core_values = st.recursive(
    core_scalars,
    lambda inner: (
        st.lists(inner, max_size=20)
        | st.tuples(inner, inner)
        | st.dictionaries(core_keys, inner, max_size=20)
    ),
    max_leaves=60,
)


def as_lists(obj: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        return [as_lists(x) for x in obj]
    if isinstance(obj, dict):
        return {k: as_lists(v) for k, v in obj.items()}
    return obj


@settings(deadline=None)
@given(core_values)
def test_random_values_match_msgpack_python(obj: object) -> None:
    from fastapi_cachemate import _native, _pure

    expected = reference(obj)
    assert _native.packb(obj) == expected
    assert _pure.packb(obj) == expected
    assert _native.unpackb(expected) == as_lists(obj)
    assert _pure.unpackb(expected) == as_lists(obj)


aware_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=11))]
    ),
)


@settings(deadline=None)
@given(aware_datetimes)
def test_aware_datetimes_are_msgpack_timestamps(value: dt.datetime) -> None:
    from fastapi_cachemate import _native, _pure

    expected = reference(value)
    assert _native.packb(value) == expected
    assert _pure.packb(value) == expected
    back = _native.unpackb(expected)
    assert back == value
    assert back.tzinfo is UTC
    assert _pure.unpackb(expected) == back


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), 4),  # timestamp 32
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC), 8),  # timestamp 64
        (dt.datetime(2200, 1, 1, tzinfo=UTC), 8),  # seconds >= 2**32
        (dt.datetime(2600, 1, 1, tzinfo=UTC), 12),  # seconds >= 2**34
        (dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), 12),  # negative
        (dt.datetime(1, 1, 1, tzinfo=UTC), 12),
        (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 12),
    ],
)
def test_timestamp_sizes(kernels: ModuleType, value: dt.datetime, size: int) -> None:
    packed = kernels.packb(value)
    assert packed == reference(value)
    assert len(packed) == (3 + size if size == 12 else 2 + size)
    assert kernels.unpackb(packed) == value


@pytest.mark.parametrize(
    "ts",
    [
        msgpack.Timestamp(0),
        msgpack.Timestamp(2**32 - 1),
        msgpack.Timestamp(5, 999_999_999),
        msgpack.Timestamp(-1, 123_000),
        msgpack.Timestamp(2**34 + 7, 1_000),
    ],
)
def test_unpacks_msgpack_python_timestamps(kernels: ModuleType, ts: msgpack.Timestamp) -> None:
    packed = msgpack.packb(ts)
    assert kernels.unpackb(packed) == ts.to_datetime()


def test_unpacks_every_msgpack_python_form(kernels: ModuleType) -> None:
    # float32, and the non-minimal forms that other encoders write
    assert kernels.unpackb(msgpack.packb(1.5, use_single_float=True)) == 1.5
    assert kernels.unpackb(b"\xcd\x00\x01") == 1
    assert kernels.unpackb(b"\xd3\x00\x00\x00\x00\x00\x00\x00\x05") == 5
    assert kernels.unpackb(b"\xd0\x05") == 5
    assert kernels.unpackb(b"\xd9\x01a") == "a"
    assert kernels.unpackb(b"\xdb\x00\x00\x00\x01a") == "a"
    assert kernels.unpackb(b"\xdc\x00\x01\xc0") == [None]
    assert kernels.unpackb(b"\xdf\x00\x00\x00\x01\xa1k\x01") == {"k": 1}
    assert kernels.unpackb(b"\xc6\x00\x00\x00\x02ab") == b"ab"
    assert kernels.unpackb(msgpack.packb("raw", use_bin_type=False)) == "raw"


# ---- the extension mapping --------------------------------------------------------------

EXTENSIONS = [
    (dt.date(2024, 5, 6), b"\xd6\x01\x07\xe8\x05\x06"),
    (dt.date(1, 1, 1), b"\xd6\x01\x00\x01\x01\x01"),
    (dt.time(1, 2, 3, 4), b"\xc7\x06\x02\x01\x02\x03\x00\x00\x04"),
    (dt.time(23, 59, 59, 999999), b"\xc7\x06\x02\x17\x3b\x3b\x0f\x42\x3f"),
    (
        dt.time(1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        b"\xc7\x0a\x02\x01\x02\x03\x00\x00\x00\xff\xff\xd5\xd0",
    ),
    (dt.time(0, 0, tzinfo=UTC), b"\xc7\x0a\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
    (
        dt.datetime(2020, 1, 2, 3, 4, 5, 6),
        b"\xc7\x0a\x03\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06",
    ),
    (
        uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF),
        b"\xd8\x04" + bytes.fromhex("0123456789abcdef0123456789abcdef"),
    ),
    (Decimal("1.25"), b"\xd6\x051.25"),
    (Decimal("-0"), b"\xd5\x05-0"),
    (Decimal("1E+400"), b"\xc7\x06\x051E+400"),
    (Decimal("Infinity"), b"\xd7\x05Infinity"),
]


@pytest.mark.parametrize(("value", "encoded"), EXTENSIONS, ids=lambda v: repr(v)[:30])
def test_extension_mapping(kernels: ModuleType, value: object, encoded: bytes) -> None:
    assert kernels.packb(value) == encoded
    back = kernels.unpackb(encoded)
    assert type(back) is type(value)
    assert back == value
    if isinstance(value, (dt.time, dt.datetime)):
        assert isinstance(back, (dt.time, dt.datetime))
        assert back.utcoffset() == value.utcoffset()


def test_decimal_nans_round_trip(kernels: ModuleType) -> None:
    for text in ("NaN", "-NaN", "sNaN", "NaN123"):
        back = kernels.unpackb(kernels.packb(Decimal(text)))
        assert isinstance(back, Decimal)
        assert str(back) == text


def test_extensions_nested_and_as_keys(kernels: ModuleType) -> None:
    day = dt.date(2024, 2, 29)
    ident = uuid.uuid4()
    obj = {day: [ident, Decimal("3.14")], ident: {"when": dt.datetime(2024, 2, 29, 12)}}
    assert kernels.unpackb(kernels.packb(obj)) == obj


@settings(deadline=None)
@given(
    st.dates()
    | st.times()
    | st.datetimes()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.times(timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=9, minutes=45))]))
)
def test_extension_round_trips(value: object) -> None:
    from fastapi_cachemate import _native, _pure

    packed = _native.packb(value)
    assert _pure.packb(value) == packed
    assert _native.unpackb(packed) == value
    assert _pure.unpackb(packed) == value


def test_datetime_without_utcoffset_is_refused(kernels: ModuleType) -> None:
    class NoOffset(dt.tzinfo):
        def utcoffset(self, d: dt.datetime | None) -> None:
            return None

        def dst(self, d: dt.datetime | None) -> None:
            return None

        def tzname(self, d: dt.datetime | None) -> str:
            return "none"

    with pytest.raises(TypeError, match="utcoffset"):
        kernels.packb(dt.datetime(2024, 1, 1, tzinfo=NoOffset()))


def test_time_offset_with_microseconds_is_refused(kernels: ModuleType) -> None:
    tz = dt.timezone(dt.timedelta(seconds=1, microseconds=5))
    with pytest.raises(ValueError, match="microseconds"):
        kernels.packb(dt.time(1, tzinfo=tz))


# ---- Enum, dataclasses, Pydantic, subclasses --------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = 2
    NESTED = (1, "x")


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 300


class Mode(str, enum.Enum):
    FAST = "fast"


@dataclasses.dataclass
class Point:
    y: int
    x: int
    label: str = "p"
    unit: ClassVar[str] = "m"
    computed: float = dataclasses.field(init=False, default=0.5)


@dataclasses.dataclass(frozen=True)
class Path:
    points: list[Point]
    color: Color
    created: dt.date


class Address(BaseModel):
    city: str
    zip: str | None = None


class User(BaseModel):
    id: uuid.UUID
    name: str
    address: Address
    tags: list[str] = []
    level: Level = Level.LOW


def test_enum_members_pack_by_value(kernels: ModuleType) -> None:
    for member in Color:
        assert kernels.packb(member) == kernels.packb(member.value)
    assert kernels.packb(Level.HIGH) == reference(300)
    assert kernels.packb(Mode.FAST) == reference("fast")
    assert kernels.unpackb(kernels.packb([Color.RED, Level.LOW])) == ["red", 1]


def test_dataclass_packs_as_map_of_fields_in_order(kernels: ModuleType) -> None:
    p = Point(y=2, x=1)
    assert kernels.packb(p) == reference({"y": 2, "x": 1, "label": "p", "computed": 0.5})
    path = Path([p, Point(3, 4, "q")], Color.BLUE, dt.date(2024, 1, 1))
    assert kernels.unpackb(kernels.packb(path)) == {
        "points": [
            {"y": 2, "x": 1, "label": "p", "computed": 0.5},
            {"y": 3, "x": 4, "label": "q", "computed": 0.5},
        ],
        "color": 2,
        "created": dt.date(2024, 1, 1),
    }


def test_dataclass_class_itself_is_not_packed(kernels: ModuleType) -> None:
    with pytest.raises(TypeError, match="'type'"):
        kernels.packb(Point)


def test_pydantic_models_pack_as_model_dump(kernels: ModuleType) -> None:
    user = User(id=uuid.UUID(int=7), name="Ada", address=Address(city="London"), tags=["x"])
    assert kernels.packb(user) == kernels.packb(user.model_dump())
    assert kernels.unpackb(kernels.packb([user])) == [
        {
            "id": uuid.UUID(int=7),
            "name": "Ada",
            "address": {"city": "London", "zip": None},
            "tags": ["x"],
            "level": 1,
        }
    ]


def test_subclasses_pack_like_their_base(kernels: ModuleType) -> None:
    class MyStr(str):
        def __str__(self) -> str:
            return "nope"

    class MyInt(int):
        pass

    class MyFloat(float):
        pass

    class MyBytes(bytes):
        pass

    class MyList(list[int]):
        pass

    pair = namedtuple("pair", "a b")
    ordered = OrderedDict([("a", 1), ("b", 2), ("c", 3)])
    ordered.move_to_end("a")
    counts: defaultdict[str, int] = defaultdict(int, {"x": 1})
    values = [
        MyStr("s"),
        MyInt(5),
        MyFloat(2.5),
        MyBytes(b"b"),
        MyList([1, 2]),
        pair(1, 2),
        ordered,
        counts,
    ]
    for value in values:
        assert kernels.packb(value) == reference(value), value
    assert kernels.unpackb(kernels.packb(ordered)) == {"b": 2, "c": 3, "a": 1}
    assert list(kernels.unpackb(kernels.packb(ordered))) == ["b", "c", "a"]


# ---- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**64, 2**100, -(2**63) - 1, -(2**200)])
def test_int_out_of_range(kernels: ModuleType, value: int) -> None:
    with pytest.raises(OverflowError, match=r"-2\*\*63 \.\. 2\*\*64-1"):
        kernels.packb(value)
    with pytest.raises(OverflowError):
        kernels.packb({"nested": [value]})


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (Opaque(), "Opaque"),
        (1j, "complex"),
        (dt.timedelta(1), "timedelta"),
        (object(), "object"),
        (print, "builtin_function_or_method"),
    ],
)
def test_unsupported_type_names_the_type(kernels: ModuleType, value: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"'{name}'"):
        kernels.packb(value)
    with pytest.raises(TypeError, match=f"'{name}'"):
        kernels.packb({"a": [1, value]})


def test_same_error_messages_in_both_implementations() -> None:
    from fastapi_cachemate import _native, _pure

    for value in [{1, 2}, Opaque(), 2**64, "\udc80", deep(513)]:
        errors = []
        for impl in (_native, _pure):
            with pytest.raises((TypeError, OverflowError, ValueError)) as info:
                impl.packb(value)
            errors.append((type(info.value), str(info.value)))
        assert errors[0] == errors[1]


def test_surrogates_are_refused(kernels: ModuleType) -> None:
    with pytest.raises(UnicodeEncodeError):
        kernels.packb("bad \udc80")


def deep(levels: int) -> list[Any]:
    obj: list[Any] = []
    for _ in range(levels - 1):
        obj = [obj]
    return obj


def test_depth_limit(kernels: ModuleType) -> None:
    ok = deep(512)
    packed = kernels.packb(ok)
    assert packed == b"\x91" * 511 + b"\x90"
    assert kernels.unpackb(packed) == ok
    with pytest.raises(ValueError, match="512"):
        kernels.packb(deep(513))


def test_self_reference_is_refused(kernels: ModuleType) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper"):
        kernels.packb(loop)
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="nested deeper"):
        kernels.packb(cycle)


def test_container_mutated_while_packing(kernels: ModuleType) -> None:
    outer: list[Any] = []

    class Mutating(BaseModel):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            outer.clear()
            return {}

    outer.extend([Mutating(), 1, 2])
    with pytest.raises(RuntimeError, match="changed size"):
        kernels.packb(outer)
    table: dict[str, Any] = {}

    class Growing(BaseModel):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            table.update({f"k{i}": i for i in range(50)})
            return {}

    table["m"] = Growing()
    with pytest.raises(RuntimeError, match="changed size"):
        kernels.packb(table)


def test_errors_inside_conversions_propagate(kernels: ModuleType) -> None:
    class Boom(BaseModel):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        kernels.packb({"a": [Boom()]})


# ---- the C buffers: stack start, growth, size hints, the GC pause -----------------------


def test_outputs_around_the_stack_buffer_size(kernels: ModuleType) -> None:
    for n in range(2030, 2060):
        for obj in (b"x" * n, "y" * n, ["z" * (n - 40), 1, 2.5]):
            assert kernels.packb(obj) == reference(obj)


def test_sizes_varying_between_calls(kernels: ModuleType) -> None:
    sizes = [10, 100_000, 5, 3_000, 250_000, 2_000, 1_000_000, 1, 70_000]
    for n in sizes + sizes[::-1]:
        obj = {"data": "a" * n, "list": list(range(n // 1000))}
        assert kernels.packb(obj) == reference(obj)


def test_large_input_keeps_the_gc_state() -> None:
    import gc

    from fastapi_cachemate import _native

    big = _native.packb([{"k": i, "v": [i]} for i in range(20_000)])
    assert len(big) > 64 * 1024
    assert gc.isenabled()
    assert len(_native.unpackb(big)) == 20_000
    assert gc.isenabled()
    with pytest.raises(_native.MalformedError):
        _native.unpackb(big[:-1])
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(_native.unpackb(bytearray(big))) == 20_000
        assert not gc.isenabled()
    finally:
        gc.enable()


# ---- user code run by packb that changes the containers being packed --------------------
# packb runs Python code while it packs (a tzinfo's utcoffset, an Enum's value, model_dump,
# a dataclass field's getter, __hash__ / __eq__ of keys put in by that code). Whatever
# that code does to the dicts and lists being packed, the result is bytes or an exception,
# never a read of a freed object.


class ArmedTZ(dt.tzinfo):
    """A UTC tzinfo whose utcoffset runs `action` once, the first time after arming."""

    def __init__(self) -> None:
        self.action: Any = None

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        action, self.action = self.action, None
        if action is not None:
            action()
        return dt.timedelta(0)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)


def test_datetime_key_whose_utcoffset_replaces_its_value(kernels: ModuleType) -> None:
    tz = ArmedTZ()
    key = dt.datetime(2024, 5, 1, 12, tzinfo=tz)
    value = [f"item {i}" * 10 for i in range(2000)]
    expected = kernels.packb({dt.datetime(2024, 5, 1, 12, tzinfo=UTC): list(value)})
    d: dict[Any, Any] = {key: value}
    del value

    def replace() -> None:
        d[key] = 0

    tz.action = replace
    packed = kernels.packb(d)
    assert packed == expected
    assert d == {key: 0}


def test_enum_key_whose_value_replaces_every_value(kernels: ModuleType) -> None:
    d: dict[Any, Any] = {}

    class Key(enum.Enum):
        A = "a"
        B = "b"

        @property
        def value(self) -> str:  # type: ignore[override]
            for k in list(d):
                d[k] = 0
            return str(self._value_)

    d[Key.A] = [["x"] * 100]
    d[Key.B] = {"y": ["z"] * 100}
    assert kernels.unpackb(kernels.packb(d)) == {"a": [["x"] * 100], "b": 0}


def test_enum_key_whose_value_empties_the_dict(kernels: ModuleType) -> None:
    d: dict[Any, Any] = {}

    class Key(enum.Enum):
        A = "a"

        @property
        def value(self) -> str:  # type: ignore[override]
            d.clear()
            return "a"

    d[Key.A] = ["v"] * 1000
    d["after"] = ["w"] * 1000
    with pytest.raises(RuntimeError, match="changed size"):
        kernels.packb(d)


class HashMutates:
    """A key whose __hash__ and __eq__ change `target` (a dict) when armed."""

    def __init__(self, target: dict[Any, Any]) -> None:
        self.target = target
        self.armed = False

    def __hash__(self) -> int:
        if self.armed:
            self.armed = False
            for k in list(self.target):
                self.target[k] = None
        return 1

    def __eq__(self, other: object) -> bool:
        if self.armed:
            self.armed = False
            self.target.clear()
        return self is other


def test_key_hash_and_eq_run_by_code_that_packb_calls(kernels: ModuleType) -> None:
    # utcoffset inserts a key whose __hash__ / __eq__ change the dict again
    tz = ArmedTZ()
    key = dt.datetime(2024, 5, 1, tzinfo=tz)
    d: dict[Any, Any] = {key: ["big"] * 1000}
    intruder = HashMutates(d)

    def insert() -> None:
        intruder.armed = True
        d[intruder] = 1

    tz.action = insert
    with pytest.raises((RuntimeError, TypeError)):
        kernels.packb(d)  # the dict grew; HashMutates itself cannot be packed


def test_model_dump_of_a_value_replaces_the_other_values(kernels: ModuleType) -> None:
    d: dict[str, Any] = {}

    class InDict(BaseModel):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            for k in d:
                d[k] = 0
            return {"m": 1}

    d["a"] = InDict()
    d["b"] = ["big"] * 1000
    assert kernels.unpackb(kernels.packb(d)) == {"a": {"m": 1}, "b": 0}


def test_model_dump_of_an_item_replaces_the_other_items(kernels: ModuleType) -> None:
    lst: list[Any] = []

    class InList(BaseModel):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            lst[:] = [0] * len(lst)
            return {"m": 1}

    lst.extend([InList(), ["big"] * 1000, {"k": ["v"] * 100}])
    assert kernels.unpackb(kernels.packb(lst)) == [{"m": 1}, 0, 0]


def test_model_dump_key_of_a_dict_subclass_changes_its_items_list(
    kernels: ModuleType,
) -> None:
    pairs: list[Any] = []

    class Keyed(BaseModel, frozen=True):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            pairs.clear()
            return {"k": 1}

    class Items(dict[Any, Any]):
        def items(self) -> Any:
            return pairs

    pairs.extend([(Keyed(), ["v"] * 1000), ("b", ["w"] * 1000)])
    packed = kernels.packb([Items()])
    assert not pairs
    pack = kernels.packb
    # the pairs as items() returned them, before model_dump emptied the list
    assert packed == b"\x91\x82" + pack({"k": 1}) + pack(["v"] * 1000) + pack("b") + pack(
        ["w"] * 1000
    )


def test_dataclass_field_getter_empties_the_list_holding_it(kernels: ModuleType) -> None:
    lst: list[Any] = []

    @dataclasses.dataclass
    class Point:
        x: int

        def __getattribute__(self, name: str) -> Any:
            if name == "x":
                lst.clear()
            return object.__getattribute__(self, name)

    lst.extend([Point(1), ["big"] * 1000])
    with pytest.raises(RuntimeError, match="changed size"):
        kernels.packb(lst)


CRASH_REPRODUCTIONS = {
    "datetime_key_replaces_value": """
        import datetime as dt
        class TZ(dt.tzinfo):
            armed = False
            def utcoffset(self, when):
                if TZ.armed:
                    TZ.armed = False
                    d[key] = 0
                return dt.timedelta(0)
            def dst(self, when):
                return dt.timedelta(0)
        key = dt.datetime(2024, 5, 1, tzinfo=TZ())
        d = {key: [str(i) * 50 for i in range(5000)]}
        TZ.armed = True
        out = kernels.unpackb(kernels.packb(d))
        utc_key = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
        assert out == {utc_key: [str(i) * 50 for i in range(5000)]}
    """,
    "list_emptied_while_packing": """
        import enum
        lst = []
        class E(enum.Enum):
            A = 1
            @property
            def value(self):
                lst.clear()
                return 1
        lst.extend([E.A, [str(i) * 50 for i in range(5000)], {"k": ["v"] * 100}])
        try:
            kernels.packb(lst)
        except RuntimeError:
            pass
        else:
            raise AssertionError("a list that changed size packed without error")
    """,
}


@pytest.mark.parametrize("kernel", ["_native", "_pure"])
@pytest.mark.parametrize("case", sorted(CRASH_REPRODUCTIONS))
def test_crash_reproductions_exit_normally(case: str, kernel: str) -> None:
    import subprocess
    import sys
    import textwrap

    code = f"from fastapi_cachemate import {kernel} as kernels\n" + textwrap.dedent(
        CRASH_REPRODUCTIONS[case]
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- str payloads: the decoder's own UTF-8 path against Python's codec -----------------


def str_header(n: int) -> bytes:
    if n < 32:
        return bytes([0xA0 | n])
    if n < 256:
        return b"\xd9" + bytes([n])
    return b"\xda" + n.to_bytes(2, "big")


def assert_str_decodes_as_python(data: bytes) -> None:
    from fastapi_cachemate import _native, _pure

    try:
        expected: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    for packed, wrap in (
        (str_header(len(data)) + data, lambda s: s),
        (b"\x81" + str_header(len(data)) + data + b"\x01", lambda s: {s: 1}),
    ):
        for k in (_native, _pure):
            if expected is None:
                with pytest.raises(k.MalformedError, match="invalid UTF-8"):
                    k.unpackb(packed)
            else:
                got = k.unpackb(packed)
                assert got == wrap(expected)


UTF8_EDGES = [
    b"caf\xc3\xa9",  # latin-1 range
    b"\xc3\xbf" * 10,  # U+00FF, the widest 1-byte kind
    b"\xc4\x80",  # U+0100: 2-byte kind
    b"\xe2\x82\xac x",  # U+20AC
    b"\xef\xbf\xbf",  # U+FFFF
    b"\xf0\x9f\x98\x80!",  # U+1F600: 4-byte kind
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF
    b"\xc3\xa9" * 128,  # 256 bytes: the longest of the short path
    b"\xc3\xa9" * 129,  # past it
    b"a" * 31 + b"\xc3\xa9",  # a 33-byte key
    b"\xc0\x80",  # overlong NUL
    b"\xc1\xbf",  # overlong
    b"\xe0\x80\x80",  # overlong 3-byte
    b"\xe0\x9f\xbf",  # overlong 3-byte, highest
    b"\xf0\x80\x80\x80",  # overlong 4-byte
    b"\xf0\x8f\xbf\xbf",  # overlong 4-byte, highest
    b"\xed\xa0\x80",  # U+D800, a surrogate
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\x80",  # a lone continuation byte
    b"\xc3",  # cut
    b"\xe2\x82",  # cut
    b"\xf0\x9f\x98",  # cut
    b"\xc3(",  # not a continuation
    b"\xe2(\xac",
    b"\xf0\x9f(\x80",
]


@pytest.mark.parametrize("data", UTF8_EDGES, ids=lambda d: d.hex()[:24])
def test_utf8_edges_decode_as_python(data: bytes) -> None:
    assert_str_decodes_as_python(data)


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=300)
    | st.text(max_size=120).map(lambda t: t.encode("utf-8"))
    | st.lists(st.sampled_from([*UTF8_EDGES, b"a", "é".encode(), "€".encode()]), max_size=40).map(
        b"".join
    )
)
def test_random_str_payloads_decode_as_python(data: bytes) -> None:
    assert_str_decodes_as_python(data)


def test_map_keys_of_a_document_are_shared_between_records() -> None:
    # the C decoder keeps short keys in a cache: every record of a document gets the
    # same str objects, whatever the cache held before, even for keys whose hashes
    # pick the same cache slots
    import gc
    import random

    from fastapi_cachemate import _native

    names = [
        *("id", "sku", "title", "price", "qty", "active", "rating", "category", "updated"),
        *("vendor", "name", "uuid", "email", "score", "balance", "age", "tags", "address"),
        *("city", "zip", "geo", "created_at", "a_key_of_exactly_32_bytes_long__"),
    ]
    packed = _native.packb([dict.fromkeys(names, 1) for _ in range(3)])
    rnd = random.Random(7)
    for _ in range(300):
        earlier = {f"k{rnd.randrange(10**6)}": 1 for _ in range(40)}
        earlier.update(dict.fromkeys(rnd.sample(names, 3), 1))
        warm = _native.packb(earlier)
        # no collection while it decodes: a finalizer that decodes too would share the cache
        gc.disable()
        try:
            _native.unpackb(warm)
            records = _native.unpackb(packed)
        finally:
            gc.enable()
        for later in records[1:]:
            assert [a for a, b in zip(records[0], later, strict=True) if a is not b] == []
        assert list(records[0]) == names
