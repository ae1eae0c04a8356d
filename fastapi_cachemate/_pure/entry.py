"""Twin of csrc/entry.c: the stored entry, its writer and its reader.

The byte format is documented in docs/entry-format.md (and at the top of csrc/entry.c).
This module carries its own small, strict MessagePack reader that mirrors ``cm_mp_read``
in csrc/buffer.c exactly, so that the twin accepts and rejects the same bytes as the C
reader; the writer produces byte-identical output for uncompressed bodies.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import zstandard
from typing_extensions import Buffer

__all__ = [
    "COMPRESS_ALL",
    "COMPRESS_DISABLED",
    "COMPRESS_SMART",
    "ENTRY_FORMAT_VERSION",
    "ENTRY_MAX_BODY",
    "EXPIRED",
    "FRESH",
    "STALE",
    "Entry",
    "body_etag",
    "read_entry",
    "write_entry",
]

COMPRESS_DISABLED = 0
COMPRESS_SMART = 1
COMPRESS_ALL = 2

FRESH = 0
STALE = 1
EXPIRED = 2

ENTRY_FORMAT_VERSION = 1
ENTRY_MAX_BODY = 64 * 1024 * 1024  # absolute cap of a stored body, decompressed

_MAGIC = b"cmE"
_FIELDS = 14
_FINGERPRINT_SIZE = 8
_ZSTD_MIN_LEVEL = -(1 << 17)
_ZSTD_MAX_LEVEL = 22
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_BE = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}
_BE_SIGNED = {1: ">b", 2: ">h", 4: ">i", 8: ">q"}


@dataclass(frozen=True, slots=True)
class Entry:
    """What read_entry returns: all that a hit needs, in one call."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes
    age: float
    remaining: float
    state: int
    compute_ms: float
    ttl: float
    grace: float
    created: float
    tags: list[str]


# --- writer -------------------------------------------------------------------------------


def _uint(v: int) -> bytes:
    if v < 0x80:
        return bytes((v,))
    if v <= 0xFF:
        return b"\xcc" + struct.pack(">B", v)
    if v <= 0xFFFF:
        return b"\xcd" + struct.pack(">H", v)
    if v <= 0xFFFFFFFF:
        return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)


def _float(v: float) -> bytes:
    return b"\xcb" + struct.pack(">d", v)


def _bin(b: bytes) -> bytes:
    n = len(b)
    if n <= 0xFF:
        return b"\xc4" + struct.pack(">B", n) + b
    if n <= 0xFFFF:
        return b"\xc5" + struct.pack(">H", n) + b
    if n <= 0xFFFFFFFF:
        return b"\xc6" + struct.pack(">I", n) + b
    raise ValueError("bytes are too large for MessagePack")


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    n = len(b)
    if n < 32:
        return bytes((0xA0 | n,)) + b
    if n <= 0xFF:
        return b"\xd9" + struct.pack(">B", n) + b
    if n <= 0xFFFF:
        return b"\xda" + struct.pack(">H", n) + b
    if n <= 0xFFFFFFFF:
        return b"\xdb" + struct.pack(">I", n) + b
    raise ValueError("str is too large for MessagePack")


def _array(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n <= 0xFFFF:
        return b"\xdc" + struct.pack(">H", n)
    if n <= 0xFFFFFFFF:
        return b"\xdd" + struct.pack(">I", n)
    raise ValueError("array is too large for MessagePack")


def _etag_of(body: bytes) -> bytes:
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return b'"' + base64.urlsafe_b64encode(digest).rstrip(b"=") + b'"'


def body_etag(body: Buffer, /) -> bytes:
    """The strong ETag write_entry stores for this body, quotes included."""
    return _etag_of(bytes(memoryview(body)))


def _as_float(name: str, v: object) -> float:
    """float(v) as PyFloat_AsDouble does it: numbers only, not str."""
    if isinstance(v, (str, bytes, bytearray)):
        raise TypeError(f"{name} must be a real number, not {type(v).__name__}")
    return float(v)  # type: ignore[arg-type]


def _finite(name: str, v: float, *, nonneg: bool) -> float:
    f = _as_float(name, v)
    if not math.isfinite(f) or (nonneg and f < 0):
        what = "a finite number >= 0" if nonneg else "a finite number"
        raise ValueError(f"{name} must be {what}, not {v!r}")
    return f


def _int(name: str, v: object) -> int:
    if not isinstance(v, int):
        raise TypeError(f"{name} must be int, not {type(v).__name__}")
    return int(v)


def write_entry(
    *,
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    body: Buffer,
    created: float,
    ttl: float,
    grace: float = 0.0,
    compute_ms: float = 0.0,
    etag: bytes | None = None,
    tags: Sequence[str] = (),
    fingerprint: bytes = b"",
    compression: int = COMPRESS_SMART,
    min_size: int = 1024,
    level: int = 3,
) -> bytes:
    """Encode one entry. etag=None computes a strong ETag from a BLAKE2b of the body."""
    status = _int("status", status)
    if not 100 <= status <= 999:
        raise ValueError(f"status must be 100..999, not {status}")
    body_bytes = bytes(memoryview(body))
    created_f = _finite("created", created, nonneg=False)
    ttl_f = _finite("ttl", ttl, nonneg=True)
    grace_f = _finite("grace", grace, nonneg=True)
    compute_f = _finite("compute_ms", compute_ms, nonneg=True)
    if etag is not None and not isinstance(etag, bytes):
        raise TypeError(f"etag must be bytes or None, not {type(etag).__name__}")
    if not isinstance(fingerprint, bytes):
        raise TypeError(f"fingerprint must be bytes, not {type(fingerprint).__name__}")
    if len(fingerprint) not in (0, _FINGERPRINT_SIZE):
        raise ValueError(f"fingerprint must be 0 or 8 bytes, not {len(fingerprint)}")
    compression = _int("compression", compression)
    if compression not in (COMPRESS_DISABLED, COMPRESS_SMART, COMPRESS_ALL):
        raise ValueError(f"compression must be 0, 1 or 2, not {compression}")
    min_size = _int("min_size", min_size)
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, not {min_size}")
    level = _int("level", level)
    if not _ZSTD_MIN_LEVEL <= level <= _ZSTD_MAX_LEVEL:
        raise ValueError(f"level must be {_ZSTD_MIN_LEVEL}..{_ZSTD_MAX_LEVEL}, not {level}")
    if len(body_bytes) > ENTRY_MAX_BODY:
        raise ValueError(f"body is larger than {ENTRY_MAX_BODY} bytes")

    header_list = list(headers)
    header_parts = [_array(len(header_list))]
    for pair in header_list:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError("headers must be (bytes, bytes) pairs")
        name, value = pair
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError("headers must be (bytes, bytes) pairs")
        header_parts += [b"\x92", _bin(name), _bin(value)]
    tag_list = list(tags)
    tag_parts = [_array(len(tag_list))]
    for tag in tag_list:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be str, not {type(tag).__name__}")
        tag_parts.append(_str(tag))

    flag = 0
    stored = body_bytes
    if compression == COMPRESS_ALL or (
        compression == COMPRESS_SMART and len(body_bytes) >= min_size
    ):
        packed = zstandard.ZstdCompressor(level=level).compress(body_bytes)
        if compression == COMPRESS_ALL or len(packed) < len(body_bytes):
            stored, flag = packed, 1

    the_etag = _etag_of(body_bytes) if etag is None else etag
    return b"".join(
        [
            _array(_FIELDS),
            _str(_MAGIC.decode()),
            _uint(ENTRY_FORMAT_VERSION),
            _float(created_f),
            _float(ttl_f),
            _float(grace_f),
            _float(compute_f),
            _uint(status),
            *header_parts,
            _bin(the_etag),
            *tag_parts,
            _bin(fingerprint),
            _uint(len(body_bytes)),
            _uint(flag),
            _bin(stored),
        ]
    )


# --- reader: a mirror of cm_mp_read -------------------------------------------------------

# kinds, as in cm_mp_kind
_NIL, _BOOL, _UINT, _INT, _FLOAT, _STR, _BIN, _ARRAY, _MAP, _EXT = range(10)


class _Bad(Exception):
    """Malformed input (internal: read_entry turns it into None)."""


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def _need(self, n: int) -> None:
        if self.end - self.pos < n:
            raise _Bad

    def _be(self, n: int) -> int:
        self._need(n)
        v: int = struct.unpack_from(_BE[n], self.data, self.pos)[0]
        self.pos += n
        return v

    def _payload(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise _Bad
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def _count(self, n: int, per: int) -> int:
        if n > (self.end - self.pos) // per:
            raise _Bad
        return n

    def read(self) -> tuple[int, object]:
        self._need(1)
        c = self.data[self.pos]
        self.pos += 1
        if c <= 0x7F:
            return _UINT, c
        if c >= 0xE0:
            return _INT, c - 256
        if c & 0xE0 == 0xA0:
            return _STR, self._payload(c & 0x1F)
        if c & 0xF0 == 0x90:
            return _ARRAY, self._count(c & 0x0F, 1)
        if c & 0xF0 == 0x80:
            return _MAP, self._count(c & 0x0F, 2)
        if c == 0xC0:
            return _NIL, None
        if c in (0xC2, 0xC3):
            return _BOOL, c == 0xC3
        if 0xC4 <= c <= 0xC6:
            return _BIN, self._payload(self._be(1 << (c - 0xC4)))
        if 0xC7 <= c <= 0xC9:
            w = 1 << (c - 0xC7)
            self._need(w + 1)
            n = self._be(w)
            self.pos += 1
            return _EXT, self._payload(n)
        if c == 0xCA:
            self._need(4)
            f: float = struct.unpack_from(">f", self.data, self.pos)[0]
            self.pos += 4
            return _FLOAT, f
        if c == 0xCB:
            self._need(8)
            d: float = struct.unpack_from(">d", self.data, self.pos)[0]
            self.pos += 8
            return _FLOAT, d
        if 0xCC <= c <= 0xCF:
            return _UINT, self._be(1 << (c - 0xCC))
        if 0xD0 <= c <= 0xD3:
            w = 1 << (c - 0xD0)
            self._need(w)
            v: int = struct.unpack_from(_BE_SIGNED[w], self.data, self.pos)[0]
            self.pos += w
            return (_UINT, v) if v >= 0 else (_INT, v)
        if 0xD4 <= c <= 0xD8:
            self._need(1)
            self.pos += 1
            return _EXT, self._payload(1 << (c - 0xD4))
        if 0xD9 <= c <= 0xDB:
            return _STR, self._payload(self._be(1 << (c - 0xD9)))
        if c in (0xDC, 0xDD):
            return _ARRAY, self._count(self._be(2 if c == 0xDC else 4), 1)
        if c in (0xDE, 0xDF):
            return _MAP, self._count(self._be(2 if c == 0xDE else 4), 2)
        raise _Bad  # 0xc1

    def expect(self, kind: int) -> object:
        k, v = self.read()
        if k != kind:
            raise _Bad
        return v

    def uint(self) -> int:
        v = self.expect(_UINT)
        assert isinstance(v, int)
        return v

    def float_(self, *, nonneg: bool) -> float:
        v = self.expect(_FLOAT)
        assert isinstance(v, float)
        if not math.isfinite(v) or (nonneg and v < 0):
            raise _Bad
        return v

    def bin(self) -> bytes:
        v = self.expect(_BIN)
        assert isinstance(v, bytes)
        return v

    def str_(self) -> str:
        v = self.expect(_STR)
        assert isinstance(v, bytes)
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad from None

    def array(self) -> int:
        v = self.expect(_ARRAY)
        assert isinstance(v, int)
        return v


def _decompress(frame: bytes, size: int) -> bytes:
    """One complete zstd frame that decodes to exactly `size` bytes, or _Bad."""
    if frame[:4] != _ZSTD_MAGIC:
        raise _Bad  # a skippable frame or no frame at all
    try:
        declared = zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        raise _Bad from None
    if declared != size:
        raise _Bad
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = dobj.decompress(frame)
    except zstandard.ZstdError:
        raise _Bad from None
    if not dobj.eof or dobj.unused_data or len(out) != size:
        raise _Bad
    return out


def _parse(data: bytes, now: float, fingerprint: bytes | None) -> Entry:
    r = _Reader(data)
    if r.array() != _FIELDS:
        raise _Bad
    if r.expect(_STR) != _MAGIC:
        raise _Bad
    if r.uint() != ENTRY_FORMAT_VERSION:
        raise _Bad
    created = r.float_(nonneg=False)
    ttl = r.float_(nonneg=True)
    grace = r.float_(nonneg=True)
    compute_ms = r.float_(nonneg=True)
    status = r.uint()
    if not 100 <= status <= 999:
        raise _Bad
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(r.array()):
        if r.array() != 2:
            raise _Bad
        name = r.bin()
        headers.append((name, r.bin()))
    etag = r.bin()
    tags = [r.str_() for _ in range(r.array())]
    fp = r.bin()
    if fingerprint is not None and fp != fingerprint:
        raise _Bad
    size = r.uint()
    if size > ENTRY_MAX_BODY:
        raise _Bad
    flag = r.uint()
    stored = r.bin()
    if r.pos != r.end:
        raise _Bad
    if flag == 0:
        if len(stored) != size:
            raise _Bad
        body = stored
    elif flag == 1:
        body = _decompress(stored, size)
    else:
        raise _Bad
    remaining = created + ttl - now
    if remaining > 0:
        state = FRESH
    elif remaining > -grace:
        state = STALE
    else:
        state = EXPIRED
    return Entry(
        status=status,
        headers=headers,
        body=body,
        etag=etag,
        age=max(0.0, now - created),
        remaining=remaining,
        state=state,
        compute_ms=compute_ms,
        ttl=ttl,
        grace=grace,
        created=created,
        tags=tags,
    )


def read_entry(data: Buffer, now: float, fingerprint: bytes | None = None, /) -> Entry | None:
    """Decode an entry; None for anything malformed, foreign, newer or of another key."""
    raw = bytes(memoryview(data))
    now_f = _as_float("now", now)
    if fingerprint is not None and not isinstance(fingerprint, bytes):
        raise TypeError(f"fingerprint must be bytes or None, not {type(fingerprint).__name__}")
    try:
        return _parse(raw, now_f, fingerprint)
    except _Bad:
        return None
