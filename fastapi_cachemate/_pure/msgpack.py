"""Twin of csrc/msgpack*.c: MessagePack packb / unpackb in pure Python.

Same bytes, same results and same exceptions as the C functions (the format and the
extension mapping are documented at the top of csrc/msgpack.c and in docs/msgpack.md).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import struct
import sys
from typing import Any

from typing_extensions import Buffer

from fastapi_cachemate._pure.errors import MalformedError

__all__ = ["MAX_DEPTH", "MAX_INPUT", "MalformedError", "packb", "unpackb"]

MAX_DEPTH = 512
MAX_INPUT = 256 * 1024 * 1024

EXT_TIMESTAMP = -1
EXT_DATE = 1
EXT_TIME = 2
EXT_DATETIME = 3
EXT_UUID = 4
EXT_DECIMAL = 5

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MIN_TS = -62135596800  # 0001-01-01T00:00:00Z
_MAX_TS = 253402300799  # 9999-12-31T23:59:59Z

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")


# ---- packb ----------------------------------------------------------------------------


def packb(obj: object, /) -> bytes:
    out = bytearray()
    _pack(obj, out, 0)
    return bytes(out)


def _int_overflow() -> OverflowError:
    return OverflowError("int out of range for MessagePack: it must be within -2**63 .. 2**64-1")


def _pack_int(v: int, out: bytearray) -> None:
    if v >= 0:
        if v < 128:
            out.append(v)
        elif v <= 0xFF:
            out += b"\xcc" + bytes((v,))
        elif v <= 0xFFFF:
            out += b"\xcd" + _U16.pack(v)
        elif v <= 0xFFFFFFFF:
            out += b"\xce" + _U32.pack(v)
        elif v <= 0xFFFFFFFFFFFFFFFF:
            out += b"\xcf" + _U64.pack(v)
        else:
            raise _int_overflow()
    elif v >= -32:
        out.append(0xE0 | (v + 32))
    elif v >= -0x80:
        out += b"\xd0" + _I8.pack(v)
    elif v >= -0x8000:
        out += b"\xd1" + _I16.pack(v)
    elif v >= -0x80000000:
        out += b"\xd2" + _I32.pack(v)
    elif v >= -0x8000000000000000:
        out += b"\xd3" + _I64.pack(v)
    else:
        raise _int_overflow()


def _pack_str(data: bytes, out: bytearray) -> None:
    n = len(data)
    if n < 32:
        out.append(0xA0 | n)
    elif n <= 0xFF:
        out += b"\xd9" + bytes((n,))
    elif n <= 0xFFFF:
        out += b"\xda" + _U16.pack(n)
    elif n <= 0xFFFFFFFF:
        out += b"\xdb" + _U32.pack(n)
    else:
        raise ValueError("str is too large for MessagePack")
    out += data


def _pack_bin(data: bytes, out: bytearray) -> None:
    n = len(data)
    if n <= 0xFF:
        out += b"\xc4" + bytes((n,))
    elif n <= 0xFFFF:
        out += b"\xc5" + _U16.pack(n)
    elif n <= 0xFFFFFFFF:
        out += b"\xc6" + _U32.pack(n)
    else:
        raise ValueError("bytes are too large for MessagePack")
    out += data


_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _pack_ext(code: int, data: bytes, out: bytearray) -> None:
    n = len(data)
    tag = _FIXEXT.get(n)
    if tag is not None:
        out.append(tag)
    elif n <= 0xFF:
        out += b"\xc7" + bytes((n,))
    elif n <= 0xFFFF:
        out += b"\xc8" + _U16.pack(n)
    elif n <= 0xFFFFFFFF:
        out += b"\xc9" + _U32.pack(n)
    else:
        raise ValueError("ext is too large for MessagePack")
    out += _I8.pack(code)
    out += data


def _pack_container_header(n: int, fix: int, tag16: int, what: str, out: bytearray) -> None:
    if n < 16:
        out.append(fix | n)
    elif n <= 0xFFFF:
        out += bytes((tag16,)) + _U16.pack(n)
    elif n <= 0xFFFFFFFF:
        out += bytes((tag16 + 1,)) + _U32.pack(n)
    else:
        raise ValueError(f"{what} is too large for MessagePack")


def _enter(depth: int) -> int:
    if depth + 1 > MAX_DEPTH:
        raise ValueError(f"packb: containers nested deeper than {MAX_DEPTH} levels")
    return depth + 1


def _offset_us(off: object) -> int:
    if not isinstance(off, _dt.timedelta):
        raise TypeError("utcoffset() must return a timedelta or None")
    return (off.days * 86400 + off.seconds) * 1_000_000 + off.microseconds


def _pack_aware_datetime(obj: _dt.datetime, out: bytearray) -> None:
    off = obj.utcoffset()
    if off is None:
        raise TypeError("cannot pack a datetime whose tzinfo.utcoffset() returns None")
    days = _dt.date.toordinal(obj) - _EPOCH_ORDINAL
    secs = days * 86400 + obj.hour * 3600 + obj.minute * 60 + obj.second
    us = secs * 1_000_000 + obj.microsecond - _offset_us(off)
    s, rem = divmod(us, 1_000_000)
    ns = rem * 1000
    if 0 <= s < 1 << 34:
        d64 = ns << 34 | s
        if d64 & 0xFFFFFFFF00000000 == 0:
            _pack_ext(EXT_TIMESTAMP, _U32.pack(d64), out)
        else:
            _pack_ext(EXT_TIMESTAMP, _U64.pack(d64), out)
    else:
        _pack_ext(EXT_TIMESTAMP, _U32.pack(ns) + _I64.pack(s), out)


def _pack_time(obj: _dt.time, out: bytearray) -> None:
    body = bytes((obj.hour, obj.minute, obj.second)) + obj.microsecond.to_bytes(3, "big")
    if obj.tzinfo is not None:
        off = obj.utcoffset()
        if off is not None:
            us = _offset_us(off)
            if us % 1_000_000:
                raise ValueError("cannot pack a time whose UTC offset has microseconds")
            body += _I32.pack(us // 1_000_000)
    _pack_ext(EXT_TIME, body, out)


def _loaded(module: str, name: str) -> Any:
    mod = sys.modules.get(module)
    return None if mod is None else getattr(mod, name)


def _pack_items(items: list[Any], depth: int, out: bytearray) -> None:
    _pack_container_header(len(items), 0x80, 0xDE, "dict", out)
    depth = _enter(depth)
    for kv in items:
        if not isinstance(kv, tuple) or len(kv) != 2:
            raise TypeError("items() must return (key, value) pairs")
        _pack(kv[0], out, depth)
        _pack(kv[1], out, depth)


def _pack(obj: object, out: bytearray, depth: int) -> None:
    if obj is None:
        out.append(0xC0)
    elif obj is True:
        out.append(0xC3)
    elif obj is False:
        out.append(0xC2)
    elif isinstance(obj, int):
        _pack_int(int.__int__(obj), out)
    elif isinstance(obj, float):
        out += b"\xcb" + _F64.pack(obj)
    elif isinstance(obj, str):
        _pack_str(str.encode(obj, "utf-8"), out)
    elif isinstance(obj, (bytes, bytearray)):
        _pack_bin(bytes(obj), out)
    elif isinstance(obj, memoryview):
        if not obj.c_contiguous:
            raise BufferError("memoryview: underlying buffer is not C-contiguous")
        _pack_bin(obj.tobytes(), out)
    elif isinstance(obj, list):
        n = len(obj)
        _pack_container_header(n, 0x90, 0xDC, "list", out)
        inner = _enter(depth)
        for i in range(n):
            if len(obj) != n:
                raise RuntimeError("list changed size during packb")
            _pack(obj[i], out, inner)
        if len(obj) != n:
            raise RuntimeError("list changed size during packb")
    elif isinstance(obj, tuple):
        _pack_container_header(len(obj), 0x90, 0xDC, "tuple", out)
        inner = _enter(depth)
        for item in obj:
            _pack(item, out, inner)
    elif type(obj) is dict:
        _pack_container_header(len(obj), 0x80, 0xDE, "dict", out)
        inner = _enter(depth)
        for key, value in obj.items():
            _pack(key, out, inner)
            _pack(value, out, inner)
    elif isinstance(obj, dict):
        _pack_items(list(obj.items()), depth, out)
    elif isinstance(obj, _dt.datetime):
        if obj.tzinfo is not None:
            _pack_aware_datetime(obj, out)
        else:
            body = _U16.pack(obj.year) + bytes(
                (obj.month, obj.day, obj.hour, obj.minute, obj.second)
            )
            _pack_ext(EXT_DATETIME, body + obj.microsecond.to_bytes(3, "big"), out)
    elif isinstance(obj, _dt.date):
        _pack_ext(EXT_DATE, _U16.pack(obj.year) + bytes((obj.month, obj.day)), out)
    elif isinstance(obj, _dt.time):
        _pack_time(obj, out)
    elif isinstance(obj, enum.Enum):
        _pack(obj.value, out, depth)
    else:
        _pack_other(obj, out, depth)


def _pack_other(obj: object, out: bytearray, depth: int) -> None:
    uuid_cls = _loaded("uuid", "UUID")
    decimal_cls = _loaded("decimal", "Decimal")
    model_cls = _loaded("pydantic", "BaseModel")
    if uuid_cls is not None and isinstance(obj, uuid_cls):
        raw = obj.bytes
        if not isinstance(raw, bytes) or len(raw) != 16:
            raise TypeError("UUID.bytes must be 16 bytes")
        _pack_ext(EXT_UUID, raw, out)
    elif decimal_cls is not None and isinstance(obj, decimal_cls):
        _pack_ext(EXT_DECIMAL, str(obj).encode("utf-8"), out)
    elif model_cls is not None and isinstance(obj, model_cls):
        _pack(obj.model_dump(), out, depth)
    elif not isinstance(obj, type) and hasattr(type(obj), "__dataclass_fields__"):
        fields = dataclasses.fields(obj)  # type: ignore[arg-type]
        _pack_container_header(len(fields), 0x80, 0xDE, "dataclass", out)
        inner = _enter(depth)
        for field in fields:
            _pack(field.name, out, inner)
            _pack(getattr(obj, field.name), out, inner)
    else:
        raise TypeError(f"packb: cannot serialize an object of type '{type(obj).__qualname__}'")


# ---- unpackb --------------------------------------------------------------------------


def unpackb(data: Buffer, /) -> Any:
    view = memoryview(data)
    if view.nbytes > MAX_INPUT:
        raise MalformedError(
            f"input of {view.nbytes} bytes is larger than the {MAX_INPUT} byte limit"
        )
    buf = view.tobytes()
    if not buf:
        raise MalformedError("empty input")
    reader = _Reader(buf)
    obj = reader.obj()
    if reader.pos != len(buf):
        raise MalformedError(
            f"{len(buf) - reader.pos} trailing bytes after the object at offset {reader.pos}"
        )
    return obj


class _Open:
    """An array or a map being filled."""

    __slots__ = ("at", "has_key", "is_map", "key", "key_at", "out", "remaining")

    def __init__(self, is_map: bool, n: int) -> None:
        self.is_map = is_map
        self.remaining = n
        self.out: Any = {} if is_map else []
        self.at = 0
        self.key: Any = None
        self.key_at = 0
        self.has_key = False


class _Reader:
    __slots__ = ("buf", "depth", "end", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.depth = 0

    def error(self, what: str, at: int | None = None) -> MalformedError:
        return MalformedError(f"{what} at offset {self.pos if at is None else at}")

    def error_from(self, what: str, exc: BaseException) -> MalformedError:
        return MalformedError(f"{what} at offset {self.pos}: {exc}")

    def left(self) -> int:
        return self.end - self.pos

    def fixed(self, n: int) -> int:
        """Start of n header bytes after the type byte at pos - 1."""
        if self.left() < n:
            raise self.error("truncated input", self.pos - 1)
        start = self.pos
        self.pos += n
        return start

    def payload(self, n: int, what: str) -> bytes:
        if n > self.left():
            raise self.error(f"{what} length larger than the bytes left")
        start = self.pos
        self.pos += n
        return self.buf[start : self.pos]

    def string(self, n: int) -> str:
        raw = self.payload(n, "str")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error_from("invalid UTF-8 in str", exc) from exc

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.depth -= 1
            raise self.error("containers nested too deep")

    def obj(self) -> Any:
        """One complete object. Iterative (an explicit stack of open containers), so
        that nesting up to MAX_DEPTH never reaches Python's recursion limit."""
        stack: list[_Open] = []
        while True:
            at = self.pos
            value = self.head()
            if isinstance(value, _Open):
                if value.is_map:
                    if value.remaining > self.left() // 2:
                        raise self.error("map length larger than the bytes left")
                elif value.remaining > self.left():
                    raise self.error("array length larger than the bytes left")
                self.enter()
                value.at = at
                if value.remaining:
                    stack.append(value)
                    continue
                self.depth -= 1
                value = value.out
            while True:
                if not stack:
                    return value
                top = stack[-1]
                if top.is_map and not top.has_key:
                    top.key, top.key_at, top.has_key = value, at, True
                    break
                if top.is_map:
                    try:
                        top.out[top.key] = value
                    except Exception as exc:
                        self.pos = top.key_at
                        raise self.error_from("invalid map key", exc) from exc
                    top.has_key = False
                    top.key = None
                else:
                    top.out.append(value)
                top.remaining -= 1
                if top.remaining:
                    break
                stack.pop()
                self.depth -= 1
                value, at = top.out, top.at

    def ext(self, n: int) -> Any:
        code = _I8.unpack_from(self.buf, self.pos)[0]
        self.pos += 1
        payload = self.payload(n, "ext")
        return _ext_object(self, code, payload)

    def head(self) -> Any:
        """A scalar, or an _Open for the header of an array or a map."""
        if self.pos >= self.end:
            raise self.error("truncated input")
        buf = self.buf
        c = buf[self.pos]
        self.pos += 1
        if c <= 0x7F:
            return c
        if c & 0xE0 == 0xA0:
            return self.string(c & 0x1F)
        if c >= 0xE0:
            return c - 0x100
        if c & 0xF0 == 0x80:
            return _Open(True, c & 0x0F)
        if c & 0xF0 == 0x90:
            return _Open(False, c & 0x0F)
        if c == 0xC0:
            return None
        if c == 0xC2:
            return False
        if c == 0xC3:
            return True
        if 0xC4 <= c <= 0xC6:
            w = 1 << (c - 0xC4)
            start = self.fixed(w)
            return self.payload(int.from_bytes(buf[start : start + w], "big"), "bin")
        if 0xC7 <= c <= 0xC9:
            w = 1 << (c - 0xC7)
            start = self.fixed(w + 1)
            self.pos -= 1
            return self.ext(int.from_bytes(buf[start : start + w], "big"))
        if c == 0xCA:
            return float(_F32.unpack_from(buf, self.fixed(4))[0])
        if c == 0xCB:
            return float(_F64.unpack_from(buf, self.fixed(8))[0])
        if 0xCC <= c <= 0xCF:
            w = 1 << (c - 0xCC)
            start = self.fixed(w)
            return int.from_bytes(buf[start : start + w], "big")
        if 0xD0 <= c <= 0xD3:
            w = 1 << (c - 0xD0)
            start = self.fixed(w)
            return int.from_bytes(buf[start : start + w], "big", signed=True)
        if 0xD4 <= c <= 0xD8:
            self.fixed(1)
            self.pos -= 1
            return self.ext(1 << (c - 0xD4))
        if 0xD9 <= c <= 0xDB:
            w = 1 << (c - 0xD9)
            start = self.fixed(w)
            return self.string(int.from_bytes(buf[start : start + w], "big"))
        if c in (0xDC, 0xDD):
            w = 2 if c == 0xDC else 4
            start = self.fixed(w)
            return _Open(False, int.from_bytes(buf[start : start + w], "big"))
        if c in (0xDE, 0xDF):
            w = 2 if c == 0xDE else 4
            start = self.fixed(w)
            return _Open(True, int.from_bytes(buf[start : start + w], "big"))
        raise self.error("reserved type byte 0xc1", self.pos - 1)


def _timestamp(r: _Reader, s: bytes) -> _dt.datetime:
    n = len(s)
    if n == 4:
        secs, ns = _U32.unpack(s)[0], 0
    elif n == 8:
        d64 = _U64.unpack(s)[0]
        ns, secs = d64 >> 34, d64 & 0x3FFFFFFFF
    elif n == 12:
        ns = _U32.unpack_from(s)[0]
        secs = _I64.unpack_from(s, 4)[0]
    else:
        raise r.error("timestamp extension of a wrong size")
    if ns > 999_999_999:
        raise r.error("timestamp nanoseconds out of range")
    if not _MIN_TS <= secs <= _MAX_TS:
        raise r.error("timestamp out of the range of datetime")
    return _EPOCH + _dt.timedelta(seconds=secs, microseconds=ns // 1000)


def _ext_object(r: _Reader, code: int, s: bytes) -> Any:
    n = len(s)
    if code == EXT_TIMESTAMP:
        return _timestamp(r, s)
    try:
        if code == EXT_DATE:
            if n != 4:
                raise r.error("date extension of a wrong size")
            what = "invalid date extension"
            return _dt.date(_U16.unpack_from(s)[0], s[2], s[3])
        if code == EXT_DATETIME:
            if n != 10:
                raise r.error("datetime extension of a wrong size")
            what = "invalid datetime extension"
            return _dt.datetime(
                _U16.unpack_from(s)[0],
                s[2],
                s[3],
                s[4],
                s[5],
                s[6],
                int.from_bytes(s[7:10], "big"),
            )
        if code == EXT_TIME:
            if n not in (6, 10):
                raise r.error("time extension of a wrong size")
            what = "invalid time extension"
            tz = None
            if n == 10:
                tz = _dt.timezone(_dt.timedelta(seconds=_I32.unpack_from(s, 6)[0]))
            return _dt.time(s[0], s[1], s[2], int.from_bytes(s[3:6], "big"), tzinfo=tz)
        if code == EXT_UUID:
            if n != 16:
                raise r.error("UUID extension of a wrong size")
            what = "invalid UUID extension"
            import uuid

            return uuid.UUID(bytes=s)
        if code == EXT_DECIMAL:
            what = "invalid Decimal extension"
            import decimal

            if not s.isascii():
                raise r.error("Decimal extension is not ASCII")
            text = s.decode("ascii")
            value = decimal.Decimal(text)
            # only str(d) itself: Decimal() also takes spaces, "_", "+", lower case and
            # leading zeros, which packb never writes
            if str(value) != text:
                raise r.error("Decimal extension is not str(Decimal)")
            return value
    except MalformedError:
        raise
    except (ValueError, ArithmeticError, TypeError) as exc:
        raise r.error_from(what, exc) from exc
    raise r.error(f"unknown extension type {code}")
