"""The stored entry: write_entry / read_entry / body_etag on the C module and its twin."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from types import ModuleType
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_cachemate import _native, _pure

FP = b"\x01\x02\x03\x04\x05\x06\x07\x08"
JSON_BODY = (
    b'{"items": [' + b", ".join(b'{"id": %d, "name": "item"}' % i for i in range(300)) + b"]}"
)
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(JSON_BODY)).encode()),
    (b"x-custom", b"\x00\xff value"),
]
KERNELS = [_native, _pure]


def write(k: ModuleType, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "status": 200,
        "headers": HEADERS,
        "body": JSON_BODY,
        "created": 1_700_000_000.25,
        "ttl": 60.0,
        "grace": 30.0,
        "compute_ms": 12.5,
        "tags": ["users", "user:1"],
        "fingerprint": FP,
    }
    args.update(kw)
    data: bytes = k.write_entry(**args)
    return data


def fields(data: bytes) -> list[Any]:
    out: list[Any] = msgpack.unpackb(data, raw=False)
    return out


def pack(items: list[Any]) -> bytes:
    out: bytes = msgpack.packb(items, use_bin_type=True)
    return out


def valid_fields(body: bytes = b"hello") -> list[Any]:
    return [
        "cmE",
        1,
        100.0,
        10.0,
        5.0,
        1.5,
        200,
        [[b"content-type", b"text/plain"]],
        b'"etag"',
        ["t"],
        FP,
        len(body),
        0,
        body,
    ]


def etag_of(body: bytes) -> bytes:
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return b'"' + base64.urlsafe_b64encode(digest).rstrip(b"=") + b'"'


def same(a: Any, b: Any) -> bool:
    """Two read_entry results (C and twin) are the same answer."""
    if a is None or b is None:
        return a is None and b is None
    names = ["status", "headers", "body", "etag", "age", "remaining", "state"]
    names += ["compute_ms", "ttl", "grace", "created", "tags"]
    return all(getattr(a, n) == getattr(b, n) for n in names)


# --- round trips -----------------------------------------------------------------------


def test_constants(kernels: ModuleType) -> None:
    assert (kernels.FRESH, kernels.STALE, kernels.EXPIRED) == (0, 1, 2)
    assert (kernels.COMPRESS_DISABLED, kernels.COMPRESS_SMART, kernels.COMPRESS_ALL) == (0, 1, 2)
    assert kernels.ENTRY_FORMAT_VERSION == 1
    assert kernels.ENTRY_MAX_BODY == 64 * 1024 * 1024


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_round_trip_every_field(kernels: ModuleType, mode: int) -> None:
    data = write(kernels, compression=mode, min_size=0)
    e = kernels.read_entry(data, 1_700_000_010.25, FP)
    assert e is not None
    assert e.status == 200
    assert e.headers == HEADERS
    assert all(type(pair) is tuple for pair in e.headers)
    assert e.body == JSON_BODY
    assert type(e.body) is bytes
    assert e.etag == etag_of(JSON_BODY)
    assert e.age == 10.0
    assert e.remaining == 50.0
    assert e.state == kernels.FRESH
    assert e.compute_ms == 12.5
    assert (e.ttl, e.grace, e.created) == (60.0, 30.0, 1_700_000_000.25)
    assert e.tags == ["users", "user:1"]


def test_defaults_and_explicit_etag(kernels: ModuleType) -> None:
    data = kernels.write_entry(
        status=404, headers=[], body=b"", created=5.0, ttl=0.0, etag=b'W/"v1"'
    )
    e = kernels.read_entry(data, 5.0)
    assert e is not None
    assert (e.status, e.headers, e.body, e.etag, e.tags) == (404, [], b"", b'W/"v1"', [])
    assert (e.grace, e.compute_ms) == (0.0, 0.0)
    assert e.state == kernels.EXPIRED  # ttl 0, grace 0
    assert kernels.read_entry(data, 5.0, FP) is None  # stored without a fingerprint


def test_body_buffers_and_list_pairs(kernels: ModuleType) -> None:
    for body in (bytearray(b"abc"), memoryview(b"xabcx")[1:4]):
        data = kernels.write_entry(
            status=200, headers=[[b"a", b"b"]], body=body, created=0.0, ttl=1.0
        )
        e = kernels.read_entry(bytearray(data), 0.5)
        assert e is not None
        assert e.body == b"abc"
        assert e.headers == [(b"a", b"b")]
        assert kernels.read_entry(memoryview(data), 0.5) is not None


def spread(data: bytes) -> memoryview:
    """data as a non-contiguous buffer: every other byte of a larger one."""
    out = bytearray(len(data) * 2)
    out[::2] = data
    view = memoryview(out)[::2]
    assert not view.contiguous
    return view


def test_non_contiguous_buffers_read_as_their_bytes(kernels: ModuleType) -> None:
    body = b"payload " * 300
    data = kernels.write_entry(status=200, headers=[], body=spread(body), created=0.0, ttl=1.0)
    assert data == kernels.write_entry(status=200, headers=[], body=body, created=0.0, ttl=1.0)
    e = kernels.read_entry(spread(data), 0.5)
    assert e is not None
    assert e.body == body
    assert kernels.body_etag(spread(body)) == kernels.body_etag(body)


def test_iterables(kernels: ModuleType) -> None:
    data = kernels.write_entry(
        status=200,
        headers=iter([(b"a", b"b")]),
        body=b"x",
        created=0.0,
        ttl=1.0,
        tags=(t for t in ["t1", "t2"]),
    )
    e = kernels.read_entry(data, 0.0)
    assert e is not None
    assert (e.headers, e.tags) == ([(b"a", b"b")], ["t1", "t2"])


def test_tags_iterator_that_mutates_headers(kernels: ModuleType) -> None:
    headers = [(b"a", b"b")] * 10

    def tags() -> Any:
        headers.clear()
        yield "t"

    data = kernels.write_entry(
        status=200, headers=headers, body=b"x", created=0.0, ttl=1.0, tags=tags()
    )
    e = kernels.read_entry(data, 0.0)
    assert e is not None
    assert e.headers in ([], [(b"a", b"b")] * 10)  # never a crash
    assert e.tags == ["t"]


def test_unicode_tags_and_large_headers(kernels: ModuleType) -> None:
    tags = ["é", "x" * 40, "🙂" * 100, ""]
    headers = [(b"set-cookie", b"v" * 70_000), (b"", b"")]
    data = write(kernels, tags=tags, headers=headers)
    e = kernels.read_entry(data, 0.0)
    assert e is not None
    assert e.tags == tags
    assert e.headers == headers


def test_many_headers(kernels: ModuleType) -> None:
    headers = [(b"x-h%d" % i, b"v%d" % i) for i in range(100)]
    data = write(kernels, headers=headers)
    e = kernels.read_entry(data, 0.0)
    assert e is not None
    assert e.headers == headers
    assert kernels.read_entry(data[:-1], 0.0) is None
    bad = data.replace(b"\x92\xc4\x05x-h90", b"\x93\xc4\x05x-h90")
    assert bad != data
    assert kernels.read_entry(bad, 0.0) is None


def test_smart_compression(kernels: ModuleType) -> None:
    small = write(kernels, body=JSON_BODY[:500], compression=1, min_size=1024)
    assert fields(small)[12] == 0
    assert JSON_BODY[:500] in small
    big = write(kernels, body=JSON_BODY, compression=1, min_size=1024)
    assert fields(big)[12] == 1
    assert len(big) < len(JSON_BODY) // 2
    exact = write(kernels, body=JSON_BODY[:1024], compression=1, min_size=1024)
    assert fields(exact)[12] == 1  # at least min_size bytes
    noise = os.urandom(4096)
    kept = write(kernels, body=noise, compression=1, min_size=1024)
    assert fields(kept)[12] == 0  # not smaller: stored as is
    for data, body in ((small, JSON_BODY[:500]), (big, JSON_BODY), (kept, noise)):
        e = kernels.read_entry(data, 0.0)
        assert e is not None
        assert e.body == body


def test_all_and_disabled(kernels: ModuleType) -> None:
    noise = os.urandom(100)
    forced = write(kernels, body=noise, compression=2)
    assert fields(forced)[12] == 1
    assert zstandard.ZstdDecompressor().decompress(fields(forced)[13]) == noise
    off = write(kernels, body=JSON_BODY, compression=0, min_size=0)
    assert fields(off)[12] == 0
    assert fields(off)[13] == JSON_BODY
    for data, body in ((forced, noise), (off, JSON_BODY)):
        e = kernels.read_entry(data, 0.0)
        assert e is not None
        assert e.body == body


def test_format_is_plain_msgpack(kernels: ModuleType) -> None:
    data = write(kernels, compression=0)
    f = fields(data)
    assert f[:7] == ["cmE", 1, 1_700_000_000.25, 60.0, 30.0, 12.5, 200]
    assert f[7] == [list(p) for p in HEADERS]
    assert f[8:] == [etag_of(JSON_BODY), ["users", "user:1"], FP, len(JSON_BODY), 0, JSON_BODY]
    assert pack(f) == data  # the smallest encodings, as msgpack-python writes them


def test_any_msgpack_writer_is_readable(kernels: ModuleType) -> None:
    e = kernels.read_entry(pack(valid_fields()), 103.0, FP)
    assert e is not None
    assert (e.body, e.etag, e.tags, e.compute_ms, e.remaining) == (
        b"hello",
        b'"etag"',
        ["t"],
        1.5,
        7.0,
    )
    # float32 and signed ints are valid encodings of the same types
    f32 = pack(valid_fields()).replace(
        b"\xcb" + struct.pack(">d", 100.0), b"\xca" + struct.pack(">f", 100.0)
    )
    e = kernels.read_entry(f32, 103.0)
    assert e is not None
    assert e.created == 100.0


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_c_and_twin_read_each_other(mode: int) -> None:
    for writer in KERNELS:
        data = write(writer, compression=mode, min_size=100)
        for reader in KERNELS:
            e = reader.read_entry(data, 1_700_000_100.0, FP)
            assert e is not None
            assert e.body == JSON_BODY
            assert same(e, _pure.read_entry(data, 1_700_000_100.0, FP))
    if mode == 0:
        assert write(_native, compression=0) == write(_pure, compression=0)


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(100, 999),
    headers=st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=300)), max_size=20),
    body=st.binary(max_size=3000),
    created=st.floats(-1e12, 1e12, allow_nan=False),
    ttl=st.floats(0, 1e9),
    grace=st.floats(0, 1e9),
    compute_ms=st.floats(0, 1e9),
    tags=st.lists(st.text(max_size=20), max_size=5),
    fingerprint=st.sampled_from([b"", FP]),
    mode=st.integers(0, 2),
    min_size=st.integers(0, 2000),
)
def test_round_trip_property(
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    created: float,
    ttl: float,
    grace: float,
    compute_ms: float,
    tags: list[str],
    fingerprint: bytes,
    mode: int,
    min_size: int,
) -> None:
    kw = {
        "status": status,
        "headers": headers,
        "body": body,
        "created": created,
        "ttl": ttl,
        "grace": grace,
        "compute_ms": compute_ms,
        "tags": tags,
        "fingerprint": fingerprint,
        "compression": mode,
        "min_size": min_size,
    }
    c_data = _native.write_entry(**kw)
    py_data = _pure.write_entry(**kw)
    if fields(c_data)[12] == 0:
        assert c_data == py_data
    for data in (c_data, py_data):
        a = _native.read_entry(data, created, fingerprint)
        b = _pure.read_entry(data, created, fingerprint)
        assert a is not None
        assert same(a, b)
        assert (a.status, a.headers, a.body, a.tags) == (status, headers, body, tags)
        assert (a.ttl, a.grace, a.compute_ms, a.created) == (ttl, grace, compute_ms, created)
        assert a.etag == etag_of(body)


def test_body_etag(kernels: ModuleType) -> None:
    for body in (b"", b"x", JSON_BODY, os.urandom(200_000)):
        tag = kernels.body_etag(body)
        assert tag == etag_of(body)
        assert len(tag) == 24
        assert tag[:1] == b'"'
        assert tag[-1:] == b'"'
    assert kernels.body_etag(bytearray(b"abc")) == etag_of(b"abc")
    with pytest.raises(TypeError):
        kernels.body_etag("abc")


def test_entry_is_read_only(kernels: ModuleType) -> None:
    e = kernels.read_entry(write(kernels), 0.0)
    assert e is not None
    with pytest.raises(AttributeError):
        e.status = 500
    assert isinstance(e, kernels.Entry)
    assert "status=200" in repr(e)


def test_entry_cannot_be_built_from_python() -> None:
    with pytest.raises(TypeError):
        _native.Entry()


# --- freshness -------------------------------------------------------------------------


def test_state_boundaries(kernels: ModuleType) -> None:
    data = write(kernels, created=100.0, ttl=10.0, grace=5.0)
    cases = [
        (90.0, kernels.FRESH, 0.0, 20.0),
        (100.0, kernels.FRESH, 0.0, 10.0),
        (109.5, kernels.FRESH, 9.5, 0.5),
        (110.0, kernels.STALE, 10.0, 0.0),
        (112.0, kernels.STALE, 12.0, -2.0),
        (114.5, kernels.STALE, 14.5, -4.5),
        (115.0, kernels.EXPIRED, 15.0, -5.0),
        (1e9, kernels.EXPIRED, 1e9 - 100.0, 110.0 - 1e9),
    ]
    for now, state, age, remaining in cases:
        e = kernels.read_entry(data, now)
        assert e is not None
        assert (e.state, e.age, e.remaining) == (state, age, remaining), now
    no_grace = write(kernels, created=100.0, ttl=10.0, grace=0.0)
    assert kernels.read_entry(no_grace, 109.75).state == kernels.FRESH
    assert kernels.read_entry(no_grace, 110.0).state == kernels.EXPIRED
    assert kernels.read_entry(data, 110).state == kernels.STALE  # an int now


@settings(max_examples=300, deadline=None)
@given(
    created=st.floats(-1e10, 1e10),
    ttl=st.floats(0, 1e6),
    grace=st.floats(0, 1e6),
    now=st.floats(-1e10, 1e10),
)
def test_state_property(created: float, ttl: float, grace: float, now: float) -> None:
    kw = {"created": created, "ttl": ttl, "grace": grace}
    data = write(_native, **kw)
    remaining = created + ttl - now
    want = 0 if remaining > 0 else 1 if remaining > -grace else 2
    for k in KERNELS:
        e = k.read_entry(data, now)
        assert e is not None
        assert e.state == want
        assert e.remaining == remaining
        assert e.age == max(0.0, now - created)


# --- hostile input ---------------------------------------------------------------------


def samples() -> list[bytes]:
    out = []
    for k in KERNELS:
        out.append(write(k, compression=0, body=JSON_BODY[:200]))
        out.append(write(k, compression=2, body=JSON_BODY[:300]))
    out.append(write(_native, headers=[], tags=[], body=b"", fingerprint=b""))
    return out


def test_truncation_at_every_offset(kernels: ModuleType) -> None:
    for data in samples():
        assert kernels.read_entry(data, 0.0) is not None
        for n in range(len(data)):
            assert kernels.read_entry(data[:n], 0.0) is None, n
        assert kernels.read_entry(data + b"\x00", 0.0) is None  # trailing bytes


def test_bit_flips_agree() -> None:
    """A flipped bit gives None or a valid entry, never a crash, and the same from both.

    Inside a zstd frame, the C module (system libzstd) and the twin (the zstd bundled in
    `zstandard`) may be different zstd versions, which detect different corruptions: there
    only an answer from both must be the same answer.
    """
    for data in samples():
        f = fields(data)
        frame_at = len(data) - len(f[13]) if f[12] == 1 else len(data)
        fp = f[10] or None
        results = set()
        for i in range(len(data)):
            for bit in (0x01, 0x02, 0x10, 0x80):
                flipped = bytearray(data)
                flipped[i] ^= bit
                a = _native.read_entry(bytes(flipped), 0.0, fp)
                b = _pure.read_entry(bytes(flipped), 0.0, fp)
                if i < frame_at or (a is not None and b is not None):
                    assert same(a, b), (i, bit)
                if i < 6:  # array header, magic, version
                    assert a is None
                results.add(a is None)
        assert results == {True, False}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    for k in KERNELS:
        assert k.read_entry(data, 0.0) is None
        assert k.read_entry(b"\x9e\xa3cmE\x01" + data, 0.0) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_mutations_agree(data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(samples())))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            blob[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            blob.insert(i, data.draw(st.integers(0, 255)))
        elif len(blob) > 1:
            del blob[i]
    a = _native.read_entry(bytes(blob), 0.0)
    b = _pure.read_entry(bytes(blob), 0.0)
    if a is None or b is None:
        # zstd versions differ in which corrupt frames they detect (see above)
        compressed = a is not None and fields(bytes(blob))[12] == 1
        compressed |= b is not None and fields(bytes(blob))[12] == 1
        assert (a is None and b is None) or compressed
    else:
        assert same(a, b)


def variants() -> dict[str, list[Any]]:
    """Records that differ from a valid one in one field: every one must be None."""
    out: dict[str, list[Any]] = {}

    def change(name: str, i: int, value: Any) -> None:
        f = valid_fields()
        f[i] = value
        out[name] = f

    change("wrong magic", 0, "cmX")
    change("magic as bin", 0, b"cmE")
    change("version + 1", 1, 2)
    change("version 0", 1, 0)
    change("created as int", 2, 100)
    change("created nan", 2, float("nan"))
    change("ttl inf", 3, float("inf"))
    change("ttl negative", 3, -1.0)
    change("grace negative", 4, -0.5)
    change("compute_ms as str", 5, "1.5")
    change("status 99", 6, 99)
    change("status 1000", 6, 1000)
    change("status negative", 6, -200)
    change("status as float", 6, 200.0)
    change("headers as map", 7, {b"a": b"b"})
    change("header as str", 7, [["content-type", b"x"]])
    change("header value as str", 7, [[b"content-type", "x"]])
    change("header triple", 7, [[b"a", b"b", b"c"]])
    change("header single", 7, [[b"a"]])
    change("header flat", 7, [b"a", b"b"])
    change("etag as str", 8, '"etag"')
    change("etag nil", 8, None)
    change("tags as bin", 9, [b"t"])
    change("tags not list", 9, "t")
    change("fingerprint as str", 10, "12345678")
    change("size short", 11, 4)
    change("size long", 11, 6)
    change("size huge", 11, 2**40)
    change("size over cap", 11, 64 * 1024 * 1024 + 1)
    change("size negative", 11, -5)
    change("codec 2", 12, 2)
    change("codec 1 on raw body", 12, 1)
    change("body as str", 13, "hello")
    out["13 fields"] = valid_fields()[:13]
    out["15 fields"] = [*valid_fields(), 0]
    out["as map"] = dict(enumerate(valid_fields()))  # type: ignore[dict-item]
    return out


@pytest.mark.parametrize("name", sorted(variants()))
def test_malformed_records(kernels: ModuleType, name: str) -> None:
    assert kernels.read_entry(pack(valid_fields()), 0.0, FP) is not None
    assert kernels.read_entry(pack(variants()[name]), 0.0) is None


def test_invalid_utf8_tag(kernels: ModuleType) -> None:
    good = pack(valid_fields())
    bad = good.replace(b"\x91\xa1t", b"\x91\xa1\xff")
    assert len(bad) == len(good)
    assert kernels.read_entry(good, 0.0) is not None
    assert kernels.read_entry(bad, 0.0) is None


def test_wrong_fingerprint(kernels: ModuleType) -> None:
    data = write(kernels)
    assert kernels.read_entry(data, 0.0, FP) is not None
    assert kernels.read_entry(data, 0.0) is not None
    assert kernels.read_entry(data, 0.0, None) is not None
    for other in (b"", b"\x00" * 8, FP[:7], FP + b"\x00", FP[::-1]):
        assert kernels.read_entry(data, 0.0, other) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"\x9e\xa3cmE\x01\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB where a float is
        b"\xdd\xff\xff\xff\xff\xa3cmE\x01",  # array32 of 4G items
        b"\x9e\xa3cmE\x01" + b"\xcb" + b"\x00" * 8 * 1,
        b"\x9e\xdb\xff\xff\xff\xffcmE",  # str32 of 4 GiB magic
    ],
)
def test_huge_declared_lengths(kernels: ModuleType, raw: bytes) -> None:
    assert kernels.read_entry(raw, 0.0) is None


def test_huge_declared_counts_inside(kernels: ModuleType) -> None:
    good = pack(valid_fields())
    headers_at = good.index(b"\x91\x92\xc4\x0ccontent-type")
    for count in (b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff"):
        bad = good[:headers_at] + count + good[headers_at + 1 :]
        assert kernels.read_entry(bad, 0.0) is None
    body_at = good.rindex(b"\xc4\x05hello")
    for header in (b"\xc6\xff\xff\xff\xff", b"\xc5\xff\xff"):
        assert kernels.read_entry(good[:body_at] + header + b"hello", 0.0) is None


def zstd_fields(frame: bytes, size: int) -> list[Any]:
    f = valid_fields()
    f[11], f[12], f[13] = size, 1, frame
    return f


def test_zstd_bombs(kernels: ModuleType) -> None:
    big = zstandard.ZstdCompressor(level=19).compress(b"\x00" * 10_000_000)
    assert len(big) < 1000
    small = zstandard.ZstdCompressor().compress(b"hello world")
    assert kernels.read_entry(pack(zstd_fields(small, 11)), 0.0) is not None
    # declared small, real frame large
    assert kernels.read_entry(pack(zstd_fields(big, 1000)), 0.0) is None
    # declared large, real frame small
    assert kernels.read_entry(pack(zstd_fields(small, 10_000)), 0.0) is None
    assert kernels.read_entry(pack(zstd_fields(small, 10)), 0.0) is None
    # declared over the absolute cap
    huge = zstandard.ZstdCompressor(level=1).compress(b"\x00" * (64 * 1024 * 1024 + 1))
    assert kernels.read_entry(pack(zstd_fields(huge, 64 * 1024 * 1024 + 1)), 0.0) is None
    # a frame without a content size (streamed)
    cobj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    unsized = cobj.compress(b"hello world") + cobj.flush()
    assert kernels.read_entry(pack(zstd_fields(unsized, 11)), 0.0) is None
    # a frame that lies about its content size
    lying = bytearray(small)
    size_at = lying.index(bytes([11]), 4)
    lying[size_at] = 12
    assert kernels.read_entry(pack(zstd_fields(bytes(lying), 12)), 0.0) is None
    # trailing bytes after the frame, two frames, a skippable frame, garbage
    assert kernels.read_entry(pack(zstd_fields(small + b"\x00", 11)), 0.0) is None
    assert kernels.read_entry(pack(zstd_fields(small + small, 22)), 0.0) is None
    skippable = b"\x50\x2a\x4d\x18" + struct.pack("<I", 0)
    assert kernels.read_entry(pack(zstd_fields(skippable, 0)), 0.0) is None
    assert kernels.read_entry(pack(zstd_fields(b"\x28\xb5\x2f\xfd", 0)), 0.0) is None
    assert kernels.read_entry(pack(zstd_fields(b"", 0)), 0.0) is None
    corrupt = bytearray(zstandard.ZstdCompressor().compress(JSON_BODY))
    corrupt[len(corrupt) // 2] ^= 0xFF
    result = kernels.read_entry(pack(zstd_fields(bytes(corrupt), len(JSON_BODY))), 0.0)
    assert result is None or result.body != JSON_BODY


def test_type_errors(kernels: ModuleType) -> None:
    data = write(kernels)
    with pytest.raises(TypeError):
        kernels.read_entry("not bytes", 0.0)
    with pytest.raises(TypeError):
        kernels.read_entry(12, 0.0)
    with pytest.raises(TypeError):
        kernels.read_entry(data, "0")
    with pytest.raises(TypeError):
        kernels.read_entry(data, 0.0, "fingerprint")
    with pytest.raises(TypeError):
        kernels.read_entry(data)


@pytest.mark.parametrize(
    ("change", "exc"),
    [
        ({"status": 99}, ValueError),
        ({"status": 1000}, ValueError),
        ({"status": 2**70}, ValueError),
        ({"status": "200"}, TypeError),
        ({"headers": [(b"a",)]}, TypeError),
        ({"headers": [("a", b"b")]}, TypeError),
        ({"headers": [(b"a", "b")]}, TypeError),
        ({"headers": [b"ab"]}, TypeError),
        ({"headers": 5}, TypeError),
        ({"body": "text"}, TypeError),
        ({"created": float("nan")}, ValueError),
        ({"created": "1"}, TypeError),
        ({"ttl": -1.0}, ValueError),
        ({"ttl": float("inf")}, ValueError),
        ({"grace": -1.0}, ValueError),
        ({"compute_ms": float("nan")}, ValueError),
        ({"etag": '"x"'}, TypeError),
        ({"tags": [1]}, TypeError),
        ({"tags": ["\ud800"]}, UnicodeEncodeError),
        ({"fingerprint": b"1234"}, ValueError),
        ({"fingerprint": "12345678"}, TypeError),
        ({"compression": 3}, ValueError),
        ({"compression": -1}, ValueError),
        ({"min_size": -1}, ValueError),
        ({"level": 23}, ValueError),
        ({"level": 1.5}, TypeError),
    ],
)
def test_writer_rejects(kernels: ModuleType, change: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        write(kernels, **change)


def test_writer_signature(kernels: ModuleType) -> None:
    with pytest.raises(TypeError):
        kernels.write_entry(200, [], b"", 0.0, 1.0)
    with pytest.raises(TypeError):
        kernels.write_entry(status=200, headers=[], body=b"", created=0.0)  # no ttl
    with pytest.raises(TypeError):
        kernels.write_entry(status=200, headers=[], body=b"", created=0.0, ttl=1.0, nope=1)


def test_body_over_cap(kernels: ModuleType) -> None:
    with pytest.raises(ValueError, match="larger"):
        write(kernels, body=bytes(kernels.ENTRY_MAX_BODY + 1), compression=0)
