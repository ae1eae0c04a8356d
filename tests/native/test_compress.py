"""zstd (csrc/compress.c) on both implementations: round trips, interoperability with the
zstandard package, bombs, truncation, trailing bytes, hostile input, threads."""

from __future__ import annotations

import random
import struct
import threading
import tracemalloc
from types import ModuleType

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapi_cachemate import _native, _pure

GIB = 1 << 30
SKIPPABLE = struct.pack("<II", 0x184D2A50, 3) + b"abc"


def payload(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    words = [b"id", b"name", b"price", b"tags", b"created", b"true", b"null", b"12.5"]
    out = bytearray()
    while len(out) < size:
        out += b'{"' + rng.choice(words) + b'": ' + str(rng.randrange(10**6)).encode() + b"},"
    return bytes(out[:size])


def rle_frame(total: int, *, declare_size: bool, block: int = 1 << 17) -> bytes:
    """A valid zstd frame of `total` zero bytes made of RLE blocks: ~4 bytes per 128 KiB."""
    if declare_size:
        header = struct.pack("<IB", 0xFD2FB528, 0xE0) + struct.pack("<Q", total)  # 8-byte FCS
    else:
        header = struct.pack("<IBB", 0xFD2FB528, 0x00, 0x38)  # window 128 KiB, size unknown
    out = bytearray(header)
    left = total
    while left:
        n = min(block, left)
        left -= n
        out += (int(left == 0) | 1 << 1 | n << 3).to_bytes(3, "little") + b"\x00"
    return bytes(out)


# ---- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 100, 500, 10_000, (128 << 10) - 1, 128 << 10, 300_000])
@pytest.mark.parametrize("level", [-5, 1, 3])
def test_round_trip(kernels: ModuleType, size: int, level: int) -> None:
    data = payload(size)
    frame = kernels.compress(data, level)
    assert isinstance(frame, bytes)
    assert kernels.decompress(frame) == data
    assert zstandard.ZstdDecompressor().decompress(frame) == data
    assert zstandard.frame_content_size(frame) == size
    if size >= 500:
        assert len(frame) < size


@pytest.mark.parametrize("level", [19, 22, _native.ZSTD_MIN_LEVEL])
def test_extreme_levels(kernels: ModuleType, level: int) -> None:
    data = payload(20_000)
    assert kernels.decompress(kernels.compress(data, level=level)) == data


def test_buffer_types(kernels: ModuleType) -> None:
    data = payload(5000)
    for obj in (bytearray(data), memoryview(data), memoryview(data)[:]):
        assert kernels.decompress(kernels.compress(obj)) == data
    frame = kernels.compress(data)
    assert kernels.decompress(bytearray(frame)) == data
    assert kernels.decompress(memoryview(b"xx" + frame)[2:]) == data


def test_non_contiguous_buffers_are_read_as_their_bytes(kernels: ModuleType) -> None:
    data = payload(5000)
    frame = kernels.compress(data)
    for raw, expected in ((data, frame), (frame, data)):
        wide = bytearray(len(raw) * 2)
        wide[::2] = raw
        view = memoryview(wide)[::2]
        assert not view.contiguous
        op = kernels.compress if raw is data else kernels.decompress
        assert op(view) == expected


@settings(max_examples=200)
@given(data=st.binary(max_size=3000), level=st.integers(-10, 9))
def test_random_round_trips_across_implementations(data: bytes, level: int) -> None:
    c_frame = _native.compress(data, level=level)
    py_frame = _pure.compress(data, level=level)
    assert _native.decompress(py_frame) == data
    assert _pure.decompress(c_frame) == data
    assert _native.decompress(c_frame) == data


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"write_checksum": True},
        {"write_content_size": False},
        {"write_content_size": False, "write_checksum": True},
        {"level": 19},
    ],
)
def test_frames_from_zstandard(kernels: ModuleType, params: dict[str, object]) -> None:
    data = payload(200_000)
    frame = zstandard.ZstdCompressor(**params).compress(data)  # type: ignore[arg-type]
    assert kernels.decompress(frame) == data


def test_streamed_frame_from_zstandard(kernels: ModuleType) -> None:
    data = payload(700_000)
    cobj = zstandard.ZstdCompressor().compressobj()
    frame = b"".join(cobj.compress(data[i : i + 4096]) for i in range(0, len(data), 4096))
    frame += cobj.flush()
    assert zstandard.frame_content_size(frame) == -1
    assert kernels.decompress(frame) == data


# ---- caps and bombs ------------------------------------------------------------------------


def test_declared_bomb_refused_before_allocating(kernels: ModuleType) -> None:
    bomb = rle_frame(GIB, declare_size=True)
    assert len(bomb) < 40_000
    assert zstandard.frame_content_size(bomb) == GIB
    tracemalloc.start()
    try:
        with pytest.raises(kernels.MalformedError, match="max_size"):
            kernels.decompress(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_declared_size_beyond_what_the_blocks_hold(kernels: ModuleType) -> None:
    """A 20-byte frame claiming 60 MiB (under max_size): refused without allocating it."""
    fake = (
        struct.pack("<IBQ", 0xFD2FB528, 0xE0, 60 << 20)
        + (1 | 1 << 1 | 5 << 3).to_bytes(3, "little")
        + b"\x00"
    )
    tracemalloc.start()
    try:
        with pytest.raises(kernels.MalformedError, match="blocks can hold"):
            kernels.decompress(fake)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_unsized_bomb_stops_at_the_cap(kernels: ModuleType) -> None:
    bomb = rle_frame(GIB, declare_size=False)
    assert zstandard.frame_content_size(bomb) == -1
    tracemalloc.start()
    try:
        with pytest.raises(kernels.MalformedError, match="max_size"):
            kernels.decompress(bomb, max_size=2 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20


@pytest.mark.parametrize("declare_size", [True, False])
@pytest.mark.parametrize("size", [0, 1, 1000, 300_000])
def test_cap_is_exact(kernels: ModuleType, declare_size: bool, size: int) -> None:
    frame = rle_frame(size, declare_size=declare_size) if size else kernels.compress(b"")
    assert kernels.decompress(frame, max_size=size) == bytes(size)
    assert kernels.decompress(frame, size + 1) == bytes(size)
    if size:
        with pytest.raises(kernels.MalformedError):
            kernels.decompress(frame, max_size=size - 1)


def test_window_cap(kernels: ModuleType) -> None:
    """An unsized frame asking for a 128 MiB window: refused under a small max_size."""
    content = b"abc" * 100
    header = struct.pack("<IBB", 0xFD2FB528, 0x00, (27 - 10) << 3)  # window log 27
    frame = header + (1 | 0 << 1 | len(content) << 3).to_bytes(3, "little") + content  # raw block
    assert zstandard.ZstdDecompressor().decompressobj().decompress(frame) == content
    with pytest.raises(kernels.MalformedError, match="window"):
        kernels.decompress(frame, max_size=1000)
    assert kernels.decompress(frame, max_size=1 << 27) == content


# ---- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda k: k.compress(payload(3000)), id="sized"),
        pytest.param(
            lambda k: zstandard.ZstdCompressor(write_checksum=True).compress(payload(3000)),
            id="checksum",
        ),
        pytest.param(
            lambda k: zstandard.ZstdCompressor(write_content_size=False).compress(payload(3000)),
            id="unsized",
        ),
        pytest.param(lambda k: k.compress(b""), id="empty"),
        pytest.param(lambda k: rle_frame(300_000, declare_size=False), id="rle"),
    ],
)
def test_truncation_at_every_offset(kernels: ModuleType, make: object) -> None:
    frame = make(kernels)  # type: ignore[operator]
    for cut in range(len(frame)):
        with pytest.raises(kernels.MalformedError):
            kernels.decompress(frame[:cut])


@pytest.mark.parametrize(
    "suffix",
    [b"\x00", b"garbage", SKIPPABLE, "FRAME"],
    ids=["zero", "garbage", "skippable", "second-frame"],
)
def test_trailing_bytes(kernels: ModuleType, suffix: object) -> None:
    frame = kernels.compress(b"hello" * 100)
    tail = frame if suffix == "FRAME" else suffix
    with pytest.raises(kernels.MalformedError, match="after the zstd frame"):
        kernels.decompress(frame + tail)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "at least 4"),
        (b"\x28\xb5", "at least 4"),
        (SKIPPABLE, "skippable"),
        (SKIPPABLE + b"x", "skippable"),
        (b"PK\x03\x04 not zstd", "magic"),
        (b"\x78\x9c" + b"zlib-ish", "magic"),
    ],
)
def test_not_a_frame(kernels: ModuleType, data: bytes, message: str) -> None:
    with pytest.raises(kernels.MalformedError, match=message):
        kernels.decompress(data)


def test_skippable_then_frame_refused(kernels: ModuleType) -> None:
    with pytest.raises(kernels.MalformedError):
        kernels.decompress(SKIPPABLE + kernels.compress(b"x"))


def test_bit_flips_never_crash(kernels: ModuleType) -> None:
    frames = [
        zstandard.ZstdCompressor(write_checksum=True).compress(payload(2000)),
        zstandard.ZstdCompressor(write_content_size=False).compress(payload(2000)),
    ]
    outcomes = set()
    for frame in frames:
        for i in range(len(frame) * 8):
            bad = bytearray(frame)
            bad[i // 8] ^= 1 << (i % 8)
            try:
                out = kernels.decompress(bytes(bad), max_size=1 << 20)
            except kernels.MalformedError:
                outcomes.add("error")
            else:
                assert len(out) <= 1 << 20
                outcomes.add("bytes")
    assert "error" in outcomes


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_random_bytes_are_refused_or_bounded(data: bytes) -> None:
    for module in (_native, _pure):
        try:
            out = module.decompress(b"\x28\xb5\x2f\xfd" + data, max_size=4096)
        except module.MalformedError:
            continue
        assert len(out) <= 4096


def test_c_and_twin_agree_on_acceptance() -> None:
    rng = random.Random(7)
    base = zstandard.ZstdCompressor(write_checksum=True).compress(payload(1500))
    for _ in range(400):
        bad = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        results = []
        for module in (_native, _pure):
            try:
                results.append(module.decompress(bytes(bad), max_size=1 << 20))
            except module.MalformedError:
                results.append(None)
        assert results[0] == results[1]


# ---- arguments -----------------------------------------------------------------------------


def test_malformed_error_is_a_value_error(kernels: ModuleType) -> None:
    assert issubclass(kernels.MalformedError, ValueError)


def test_bad_arguments(kernels: ModuleType) -> None:
    with pytest.raises(ValueError, match="level"):
        kernels.compress(b"x", level=23)
    with pytest.raises(ValueError, match="level"):
        kernels.compress(b"x", level=-(1 << 17) - 1)
    with pytest.raises(ValueError, match="level"):
        kernels.compress(b"x", 1 << 80)
    with pytest.raises(TypeError):
        kernels.compress(b"x", level="3")
    with pytest.raises(TypeError):
        kernels.compress("text")
    with pytest.raises(TypeError):
        kernels.compress(b"x", levle=3)
    with pytest.raises(ValueError, match="max_size"):
        kernels.decompress(kernels.compress(b"x"), max_size=-1)
    with pytest.raises(TypeError):
        kernels.decompress(kernels.compress(b"x"), max_size=1.5)
    with pytest.raises(TypeError):
        kernels.decompress(None)
    with pytest.raises(OverflowError):
        kernels.decompress(kernels.compress(b"x"), max_size=1 << 64)
    with pytest.raises(TypeError):
        kernels.compress()
    assert kernels.decompress(kernels.compress(b"xy", level=0), max_size=2) == b"xy"


# ---- threads -------------------------------------------------------------------------------


def test_threads_never_share_a_context() -> None:
    """Big buffers release the GIL; eight threads at once on a pool of four contexts."""
    inputs = [payload(300_000, seed=i) for i in range(8)]
    frames = [_native.compress(d) for d in inputs]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(10):
                assert _native.decompress(_native.compress(inputs[i], level=1 + i % 3)) == inputs[i]
                assert _native.decompress(frames[i]) == inputs[i]
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_second_module_instance_has_its_own_state() -> None:
    """Multi-phase init: a second instance has its own KeySpec type and context pool."""
    import gc
    import importlib.util

    spec = importlib.util.find_spec("fastapi_cachemate._native")
    assert spec is not None
    assert spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    assert other is not _native
    assert other.KeySpec is not _native.KeySpec
    data = payload(300_000)
    assert other.decompress(_native.compress(data)) == data
    assert _native.decompress(other.compress(data)) == data
    with pytest.raises(other.MalformedError):
        other.decompress(b"nope")
    key_spec = other.KeySpec("a", "/", None)
    assert other.build_key(key_spec, "GET", "/", [], []) == _native.build_key(
        _native.KeySpec("a", "/", None), "GET", "/", [], []
    )
    with pytest.raises(TypeError):
        _native.build_key(key_spec, "GET", "/", [], [])
    del other, key_spec
    gc.collect()
    assert _native.decompress(_native.compress(data)) == data
