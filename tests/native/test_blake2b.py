"""BLAKE2b (csrc/blake2b.c) against hashlib: RFC 7693 vectors and random inputs."""

from __future__ import annotations

import hashlib
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

# RFC 7693 appendix A: BLAKE2b-512("abc").
RFC_ABC_512 = bytes.fromhex(
    "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
    "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
)


def test_rfc7693_abc(kernels: ModuleType) -> None:
    assert kernels.blake2b(b"abc", digest_size=64) == RFC_ABC_512


@pytest.mark.parametrize("length", [0, 1, 127, 128, 129, 255, 256, 257, 1000, 65537])
@pytest.mark.parametrize("key", [b"", b"k", bytes(range(64))])
@pytest.mark.parametrize("digest_size", [1, 16, 32, 64])
def test_block_boundaries(kernels: ModuleType, length: int, key: bytes, digest_size: int) -> None:
    data = bytes(i * 7 % 251 for i in range(length))
    expected = hashlib.blake2b(data, digest_size=digest_size, key=key).digest()
    assert kernels.blake2b(data, digest_size=digest_size, key=key) == expected


@given(data=st.binary(max_size=2000), key=st.binary(max_size=64), size=st.integers(1, 64))
def test_random_inputs_match_hashlib(data: bytes, key: bytes, size: int) -> None:
    from fastapi_cachemate import _native

    expected = hashlib.blake2b(data, digest_size=size, key=key).digest()
    assert _native.blake2b(data, digest_size=size, key=key) == expected
    assert _native.blake2b(memoryview(data), digest_size=size, key=bytearray(key)) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digest_size": 0}, "digest_size"),
        ({"digest_size": 65}, "digest_size"),
        ({"key": b"x" * 65}, "key"),
    ],
)
def test_bad_arguments(kernels: ModuleType, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kernels.blake2b(b"data", **kwargs)
