"""Twin of csrc/compress.c: zstd frames through the ``zstandard`` package.

Same acceptance rules as the C side: exactly one zstd frame (a skippable frame, several
frames, trailing bytes, truncation or a bad magic raise MalformedError); a declared content
size above max_size is refused before allocating; a frame without one is streamed with the
cap enforced and the window it may ask for capped as in C.

zstandard is imported on first use (it is in the test extra, not a runtime dependency), so the
other twins work without it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Final

from typing_extensions import Buffer

from fastapi_cachemate._pure.errors import MalformedError

__all__ = ["ZSTD_MAX_LEVEL", "ZSTD_MIN_LEVEL", "compress", "decompress"]

ZSTD_MIN_LEVEL: Final = -(1 << 17)  # ZSTD_minCLevel()
ZSTD_MAX_LEVEL: Final = 22  # ZSTD_maxCLevel()
_MAGIC: Final = 0xFD2FB528
_SKIPPABLE_MASK: Final = 0xFFFFFFF0
_SKIPPABLE_START: Final = 0x184D2A50
_WINDOWLOG_MIN: Final = 23
_WINDOWLOG_MAX: Final = 27
_CHUNK: Final = 1 << 17
_BLOCK_MAX: Final = 128 * 1024  # RFC 8878: a block holds at most 128 KiB ...
_BLOCK_HEADER: Final = 3  # ... and takes at least 3 bytes


def _zstd() -> ModuleType:
    try:
        import zstandard
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "the pure-Python zstd twin needs the 'zstandard' package "
            "(pip install 'fastapi-cachemate[test]')"
        ) from exc
    return zstandard


def _view(data: Buffer) -> memoryview:
    """The bytes of any buffer, copied in C order when it is not contiguous."""
    view = memoryview(data)
    if not view.c_contiguous:
        return memoryview(view.tobytes())
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def compress(data: Buffer, /, level: int = 3) -> bytes:
    if not isinstance(level, int):
        raise TypeError(f"level must be int, not {type(level).__name__}")
    if not ZSTD_MIN_LEVEL <= level <= ZSTD_MAX_LEVEL:
        raise ValueError(f"zstd level must be in {ZSTD_MIN_LEVEL}..{ZSTD_MAX_LEVEL}, not {level}")
    out: bytes = _zstd().ZstdCompressor(level=level).compress(_view(data))
    return out


def _frame_size(buf: bytes) -> int:
    """The compressed size of the frame at the start of buf (ZSTD_findFrameCompressedSize)."""
    zstandard = _zstd()
    try:
        pos: int = zstandard.frame_header_size(buf)
        params = zstandard.get_frame_parameters(buf)
    except zstandard.ZstdError as exc:
        raise MalformedError(f"malformed zstd frame header: {exc}") from None
    n = len(buf)
    while True:
        if pos + 3 > n:
            raise MalformedError("truncated zstd frame")
        header = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        pos += 3
        block_type = (header >> 1) & 3
        if block_type == 3:
            raise MalformedError("malformed zstd frame: reserved block type")
        size = 1 if block_type == 1 else header >> 3
        if pos + size > n:
            raise MalformedError("truncated zstd frame")
        pos += size
        if header & 1:
            break
    if params.has_checksum:
        if pos + 4 > n:
            raise MalformedError("truncated zstd frame")
        pos += 4
    return pos


def _window_log_for(max_size: int) -> int:
    log = _WINDOWLOG_MIN
    while log < _WINDOWLOG_MAX and (1 << log) < max_size:
        log += 1
    return log


def decompress(data: Buffer, /, max_size: int = 67108864) -> bytes:
    if not isinstance(max_size, int):
        raise TypeError(f"max_size must be int, not {type(max_size).__name__}")
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, not {max_size}")
    if max_size > sys.maxsize:
        raise OverflowError("max_size does not fit in a C ssize_t")
    buf = bytes(_view(data))
    n = len(buf)
    if n < 4:
        raise MalformedError(f"not a zstd frame: {n} bytes, a frame has at least 4")
    magic = int.from_bytes(buf[:4], "little")
    if magic != _MAGIC:
        if magic & _SKIPPABLE_MASK == _SKIPPABLE_START:
            raise MalformedError("a skippable zstd frame holds no data frame")
        raise MalformedError("not a zstd frame (bad magic number)")
    frame = _frame_size(buf)
    if frame != n:
        raise MalformedError(
            f"{n - frame} bytes after the zstd frame (trailing data or another frame)"
        )
    zstandard = _zstd()
    size: int = zstandard.get_frame_parameters(buf).content_size
    try:
        if size != zstandard.CONTENTSIZE_UNKNOWN:
            if size > max_size:
                raise MalformedError(
                    f"zstd frame declares {size} bytes, more than max_size ({max_size})"
                )
            if size > (n // _BLOCK_HEADER) * _BLOCK_MAX:
                raise MalformedError(
                    f"zstd frame declares {size} bytes, more than its {n} bytes of blocks can hold"
                )
            out: bytes = zstandard.ZstdDecompressor().decompress(buf)
            if len(out) != size:
                raise MalformedError(f"zstd frame declares {size} bytes but holds {len(out)}")
            return out
        return _stream(buf, max_size)
    except zstandard.ZstdError as exc:
        raise MalformedError(f"malformed zstd frame: {exc}") from None


def _stream(buf: bytes, max_size: int) -> bytes:
    zstandard = _zstd()
    max_window = 1 << _window_log_for(max_size)
    if zstandard.get_frame_parameters(buf).window_size > max_window:
        raise MalformedError("zstd frame asks for a window larger than this max_size allows")
    decompressor = zstandard.ZstdDecompressor(max_window_size=max_window)
    parts: list[bytes] = []
    total = 0
    with decompressor.stream_reader(buf, read_across_frames=False) as reader:
        while True:
            chunk = reader.read(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_size:
                raise MalformedError(
                    f"zstd frame decompresses to more than max_size ({max_size}) bytes"
                )
            parts.append(chunk)
    return b"".join(parts)
