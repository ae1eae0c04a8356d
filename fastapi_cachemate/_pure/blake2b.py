"""Twin of csrc/blake2b.c: hashlib's BLAKE2b (the same RFC 7693 function)."""

from __future__ import annotations

import hashlib

from typing_extensions import Buffer

__all__ = ["blake2b"]


def blake2b(data: Buffer, /, digest_size: int = 32, key: Buffer = b"") -> bytes:
    if not 1 <= digest_size <= 64:
        raise ValueError(f"digest_size must be 1..64, not {digest_size}")
    key_bytes = bytes(key)
    if len(key_bytes) > 64:
        raise ValueError(f"key must be at most 64 bytes, not {len(key_bytes)}")
    return hashlib.blake2b(bytes(data), digest_size=digest_size, key=key_bytes).digest()
