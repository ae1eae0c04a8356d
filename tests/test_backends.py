"""Backend behaviour common to MemoryBackend and RedisBackend (on a real redis-server)."""

from __future__ import annotations

import math

import pytest

from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.types import Backend
from tests.support.backends import DictBackend

BINARY = bytes(range(256)) * 4  # every byte value, NUL and non-UTF-8 included


async def remaining_ms(backend: Backend, key: bytes) -> int:
    ttl, _ = await backend.get(key.decode())
    return ttl


# --- the seed's methods -------------------------------------------------------------------
async def test_seed_set_then_get_returns_remaining_ttl_and_value(cache_backend: Backend) -> None:
    assert await cache_backend.set("seed:key", b"value", ttl=30) is True
    ttl, raw = await cache_backend.get("seed:key")
    assert raw == b"value"
    assert 29_000 < ttl <= 30_000


async def test_seed_get_of_a_missing_key(cache_backend: Backend) -> None:
    ttl, raw = await cache_backend.get("seed:missing")
    assert raw is None
    assert ttl == -2  # Redis's PTTL for a missing key, and the memory backend's too


async def test_seed_set_nx_does_not_overwrite(cache_backend: Backend) -> None:
    assert await cache_backend.set("seed:nx", b"first", ttl=30, nx=True) is True
    assert await cache_backend.set("seed:nx", b"second", ttl=30, nx=True) is None
    _, raw = await cache_backend.get("seed:nx")
    assert raw == b"first"


async def test_seed_set_accepts_str(cache_backend: Backend) -> None:
    await cache_backend.set("seed:str", "héllo", ttl=30)
    _, raw = await cache_backend.get("seed:str")
    assert raw == "héllo".encode()


async def test_seed_and_cache_methods_share_keys(cache_backend: Backend) -> None:
    await cache_backend.set("shared:{k}", b"from-seed", ttl=30)
    assert await cache_backend.fetch(b"shared:{k}") == b"from-seed"
    await cache_backend.store(b"shared:{k}", b"from-cache", 30_000)
    _, raw = await cache_backend.get("shared:{k}")
    assert raw == b"from-cache"


# --- what the cache calls -----------------------------------------------------------------
async def test_store_then_fetch_binary(cache_backend: Backend) -> None:
    await cache_backend.store(b"p:{aa}", BINARY, 60_000)
    assert await cache_backend.fetch(b"p:{aa}") == BINARY


async def test_fetch_missing_is_none(cache_backend: Backend) -> None:
    assert await cache_backend.fetch(b"p:{missing}") is None


async def test_store_sets_the_ttl_in_milliseconds(cache_backend: Backend) -> None:
    await cache_backend.store(b"p:{ttl}", b"x", 1_500)
    ttl = await remaining_ms(cache_backend, b"p:{ttl}")
    assert 0 < ttl <= 1_500
    assert ttl > 1_000  # ms precision: not rounded to whole seconds


async def test_store_replaces(cache_backend: Backend) -> None:
    await cache_backend.store(b"p:{r}", b"old", 60_000)
    await cache_backend.store(b"p:{r}", b"new", 60_000)
    assert await cache_backend.fetch(b"p:{r}") == b"new"


async def test_delete_counts_existing_keys(cache_backend: Backend) -> None:
    await cache_backend.store(b"p:{d1}", b"1", 60_000)
    await cache_backend.store(b"p:{d2}", b"2", 60_000)
    assert await cache_backend.delete(b"p:{d1}", b"p:{d2}", b"p:{nope}") == 2
    assert await cache_backend.fetch(b"p:{d1}") is None
    assert await cache_backend.fetch(b"p:{d2}") is None
    assert await cache_backend.delete() == 0


@pytest.mark.parametrize("ttl_ms", [0, -5])
async def test_store_rejects_a_non_positive_ttl(cache_backend: Backend, ttl_ms: int) -> None:
    with pytest.raises(ValueError, match="ttl_ms must be positive"):
        await cache_backend.store(b"p:{bad}", b"x", ttl_ms)
    assert await cache_backend.fetch(b"p:{bad}") is None


async def test_close_twice_is_harmless(cache_backend: Backend) -> None:
    await cache_backend.store(b"p:{c}", b"x", 60_000)
    await cache_backend.close()
    await cache_backend.close()
    if isinstance(cache_backend, RedisBackend):
        # The seed README's lifespan disconnects the pool after both closes.
        await cache_backend.client.connection_pool.disconnect()
    else:
        assert len(cache_backend.client) == 0


# --- a user's backend written for the seed ------------------------------------------------
async def test_seed_only_backend_works_through_default_fetch_and_store() -> None:
    backend = DictBackend()
    await backend.store(b"p:{u}", b"\x00body", 1_500)
    assert await backend.fetch(b"p:{u}") == b"\x00body"
    assert await backend.fetch(b"p:{none}") is None
    # ttl_ms is rounded up to whole seconds for the seed's set(ttl=seconds)
    assert backend.calls == ["set p:{u} 2", "get p:{u}", "get p:{none}"]
    assert backend.data["p:{u}"] == (b"\x00body", math.ceil(1.5))
    with pytest.raises(NotImplementedError, match="DictBackend does not support delete"):
        await backend.delete(b"p:{u}")
