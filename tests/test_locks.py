"""Lock managers: the same semantics in process (MemoryLockManager) and on real Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.locks.redis import RedisLockManager
from fastapi_cachemate.core.types import Backend, LockManager
from tests.support.clock import FakeClock
from tests.support.servers import RedisServer, command_calls, command_delta

KEY = b"p:{0123456789abcdef}:lock"


async def lock_remaining_ms(backend: Backend, locks: LockManager, key: bytes) -> float:
    """Milliseconds the lock under key has left (-2 when there is none)."""
    if isinstance(backend, RedisBackend):
        pttl: int = await backend.client.pttl(key)
        return pttl
    assert isinstance(locks, MemoryLockManager)
    held = locks._locks.get(key)
    if held is None or held[1] <= locks._clock():
        return -2
    return (held[1] - locks._clock()) * 1000


# --- common semantics ---------------------------------------------------------------------
async def test_try_lock_is_exclusive(cache_backend: Backend, cache_locks: LockManager) -> None:
    token = await cache_locks.try_lock(KEY, 5_000)
    assert token
    assert await cache_locks.try_lock(KEY, 5_000) is None
    assert await cache_locks.try_lock(KEY + b"x", 5_000) is not None  # another key is free


async def test_each_acquisition_gets_a_fresh_token(cache_locks: LockManager) -> None:
    tokens = set()
    for _ in range(5):
        token = await cache_locks.try_lock(KEY, 5_000)
        assert token is not None
        tokens.add(token)
        assert await cache_locks.unlock(KEY, token) is True
    assert len(tokens) == 5


async def test_only_one_of_many_concurrent_acquirers_wins(cache_locks: LockManager) -> None:
    results = await asyncio.gather(*(cache_locks.try_lock(KEY, 5_000) for _ in range(50)))
    assert sum(token is not None for token in results) == 1


async def test_a_wrong_token_cannot_unlock(cache_locks: LockManager) -> None:
    token = await cache_locks.try_lock(KEY, 5_000)
    assert token is not None
    assert await cache_locks.unlock(KEY, "not-the-token") is False
    assert await cache_locks.try_lock(KEY, 5_000) is None  # still held
    assert await cache_locks.unlock(KEY, token) is True
    assert await cache_locks.unlock(KEY, token) is False  # already released
    assert await cache_locks.try_lock(KEY, 5_000) is not None


async def test_a_stale_token_cannot_unlock_the_next_owner(cache_locks: LockManager) -> None:
    first = await cache_locks.try_lock(KEY, 5_000)
    assert first is not None
    assert await cache_locks.unlock(KEY, first)
    second = await cache_locks.try_lock(KEY, 5_000)
    assert second is not None
    assert await cache_locks.unlock(KEY, first) is False
    assert await cache_locks.extend(KEY, first, 60_000) is False
    assert await cache_locks.try_lock(KEY, 5_000) is None


async def test_extend_by_the_owner(cache_backend: Backend, cache_locks: LockManager) -> None:
    token = await cache_locks.try_lock(KEY, 1_000)
    assert token is not None
    assert await lock_remaining_ms(cache_backend, cache_locks, KEY) <= 1_000
    assert await cache_locks.extend(KEY, token, 60_000) is True
    assert await lock_remaining_ms(cache_backend, cache_locks, KEY) > 50_000
    assert await cache_locks.unlock(KEY, token) is True


async def test_a_wrong_token_cannot_extend(
    cache_backend: Backend, cache_locks: LockManager
) -> None:
    token = await cache_locks.try_lock(KEY, 1_000)
    assert token is not None
    assert await cache_locks.extend(KEY, "not-the-token", 60_000) is False
    assert await lock_remaining_ms(cache_backend, cache_locks, KEY) <= 1_000


async def test_extend_of_a_free_lock_fails(cache_locks: LockManager) -> None:
    assert await cache_locks.extend(KEY, "anything", 60_000) is False
    assert await cache_locks.try_lock(KEY, 1_000) is not None


@pytest.mark.parametrize("ttl_ms", [0, -1])
async def test_non_positive_ttls_are_rejected(cache_locks: LockManager, ttl_ms: int) -> None:
    with pytest.raises(ValueError, match="ttl_ms must be positive"):
        await cache_locks.try_lock(KEY, ttl_ms)
    token = await cache_locks.try_lock(KEY, 1_000)
    assert token is not None
    with pytest.raises(ValueError, match="ttl_ms must be positive"):
        await cache_locks.extend(KEY, token, ttl_ms)


async def test_seed_acquire_and_release(cache_locks: LockManager) -> None:
    assert await cache_locks.acquire("seed:lock") is True
    assert await cache_locks.acquire("seed:lock") is False
    assert await cache_locks.release("seed:lock") is True
    assert await cache_locks.release("seed:lock") is False
    assert await cache_locks.acquire("seed:lock") is True


async def test_seed_acquire_uses_five_seconds_by_default(
    cache_backend: Backend, cache_locks: LockManager, clean_cache_setup: None
) -> None:
    assert await cache_locks.acquire("seed:ttl") is True
    remaining = await lock_remaining_ms(cache_backend, cache_locks, b"seed:ttl")
    assert 4_000 < remaining <= 5_000


# --- in process: expiry on a controlled clock ---------------------------------------------
TICK = 2.0**-10  # seconds, exactly representable (about 0.98 ms)


async def test_memory_lock_expires() -> None:
    clock = FakeClock()
    locks = MemoryLockManager(clock=clock)
    token = await locks.try_lock(KEY, 1_000)
    assert token is not None
    clock.now += 1 - TICK  # binary-exact steps: no float rounding at the boundary
    assert await locks.try_lock(KEY, 1_000) is None
    clock.now += TICK
    second = await locks.try_lock(KEY, 1_000)
    assert second is not None
    assert await locks.unlock(KEY, token) is False  # the expired owner cannot release it
    assert await locks.unlock(KEY, second) is True


async def test_memory_lock_extend_moves_the_expiry() -> None:
    clock = FakeClock()
    locks = MemoryLockManager(clock=clock)
    token = await locks.try_lock(KEY, 1_000)
    assert token is not None
    clock.now += 0.9
    assert await locks.extend(KEY, token, 1_000) is True
    clock.now += 0.9  # 1.8 s after taking it, 0.9 s after extending it
    assert await locks.try_lock(KEY, 1_000) is None
    clock.now += 0.2
    assert await locks.extend(KEY, token, 1_000) is False  # expired: too late to extend
    assert await locks.try_lock(KEY, 1_000) is not None


async def test_memory_expired_locks_are_swept() -> None:
    clock = FakeClock()
    locks = MemoryLockManager(clock=clock)
    for i in range(200):
        assert await locks.try_lock(b"k%d" % i, 1_000) is not None
    clock.now += 2
    for i in range(200, 400):
        assert await locks.try_lock(b"k%d" % i, 1_000) is not None
    assert len(locks) < 400  # the expired first half did not stay


async def test_memory_lock_manager_accepts_a_backend_and_lock_ttl() -> None:
    clock = FakeClock()
    locks = MemoryLockManager(MemoryBackend(max_bytes=4096), lock_ttl=2, clock=clock)
    assert locks.lock_ttl == 2
    assert await locks.acquire("seed") is True
    clock.now += 2 - TICK
    assert await locks.acquire("seed") is False
    clock.now += TICK
    assert await locks.acquire("seed") is True
    with pytest.raises(ValueError, match="lock_ttl"):
        MemoryLockManager(lock_ttl=-1)


# --- on Redis: one round trip, EVALSHA, expiry awaited on a keyspace event ----------------
@pytest.mark.redis
async def test_redis_try_lock_is_set_nx_px_and_pttl(redis_client: aioredis.Redis) -> None:
    locks = RedisLockManager(RedisBackend(redis_client))
    before = await command_calls(redis_client)
    token = await locks.try_lock(KEY, 3_000)
    assert command_delta(before, await command_calls(redis_client)) == {"set": 1, "pttl": 1}
    assert token is not None
    assert await redis_client.get(KEY) == token.encode()
    assert 2_000 < await redis_client.pttl(KEY) <= 3_000
    before = await command_calls(redis_client)
    assert await locks.try_lock(KEY, 3_000) is None  # a live lock: no takeover script
    assert command_delta(before, await command_calls(redis_client)) == {"set": 1, "pttl": 1}


@pytest.mark.redis
@pytest.mark.parametrize(
    "junk",
    [b"\xff\x00junk", b"0123456789abcdef0123456789abcdef"],  # bytes; a token, no expiry
    ids=["bytes", "token"],
)
async def test_redis_try_lock_takes_over_a_lock_key_without_expiry(
    redis_client: aioredis.Redis, junk: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    locks = RedisLockManager(RedisBackend(redis_client))
    await redis_client.set(KEY, junk)
    with caplog.at_level(logging.WARNING):
        token = await locks.try_lock(KEY, 3_000)
    assert token is not None
    assert await redis_client.get(KEY) == token.encode()
    assert 2_000 < await redis_client.pttl(KEY) <= 3_000
    assert [r.reason for r in caplog.records if r.levelno == logging.WARNING] == ["junk_lock"]
    assert await locks.try_lock(KEY, 3_000) is None  # ours now: a live lock


@pytest.mark.redis
async def test_redis_unlock_and_extend_run_by_evalsha(redis_client: aioredis.Redis) -> None:
    locks = RedisLockManager(RedisBackend(redis_client))
    token = await locks.try_lock(KEY, 3_000)
    assert token is not None
    await locks.extend(KEY, token, 3_000)  # loads the scripts if the server lacks them
    before = await command_calls(redis_client)
    assert await locks.extend(KEY, token, 9_000) is True
    assert await locks.unlock(KEY, token) is True
    # commandstats also counts the commands run inside the scripts; no EVAL, no SCRIPT LOAD
    assert command_delta(before, await command_calls(redis_client)) == {
        "evalsha": 2,
        "get": 2,
        "pexpire": 1,
        "del": 1,
    }


@pytest.mark.redis
async def test_redis_scripts_are_reloaded_after_script_flush(
    redis_client: aioredis.Redis,
) -> None:
    locks = RedisLockManager(RedisBackend(redis_client))
    token = await locks.try_lock(KEY, 3_000)
    assert token is not None
    await redis_client.script_flush()
    assert await locks.unlock(KEY, token) is True  # NOSCRIPT -> SCRIPT LOAD -> EVALSHA
    assert await redis_client.exists(KEY) == 0


@pytest.mark.redis
async def test_redis_seed_release_cannot_release_another_managers_lock(
    redis_client: aioredis.Redis,
) -> None:
    backend = RedisBackend(redis_client)
    mine, theirs = RedisLockManager(backend), RedisLockManager(backend)
    assert await mine.acquire("seed:owned") is True
    assert await theirs.acquire("seed:owned") is False
    assert await theirs.release("seed:owned") is False
    assert await redis_client.exists("seed:owned") == 1
    assert await mine.release("seed:owned") is True


@pytest.mark.redis
async def test_redis_lock_expires(redis_server: RedisServer) -> None:
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    listener = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    locks = RedisLockManager(RedisBackend(client))
    key = b"p:{expiry}:lock"
    pubsub = listener.pubsub()
    try:
        await client.config_set("notify-keyspace-events", "Ex")
        await pubsub.subscribe("__keyevent@0__:expired")
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        token = await locks.try_lock(key, 20)
        assert token is not None
        assert await locks.try_lock(key, 20) is None

        async def expired() -> None:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None and message["data"] == key:
                    return

        await asyncio.wait_for(expired(), timeout=10)  # bounds a hang; not a speed check
        assert await locks.extend(key, token, 1_000) is False
        assert await locks.unlock(key, token) is False
        assert await locks.try_lock(key, 1_000) is not None
    finally:
        await client.config_set("notify-keyspace-events", "")
        await pubsub.aclose()
        await listener.aclose()
        await client.aclose()


def test_redis_lock_manager_needs_a_backend_over_a_redis_client() -> None:
    with pytest.raises(TypeError, match=r"needs a Backend whose client is a redis\.asyncio"):
        RedisLockManager(MemoryBackend(max_bytes=4096))
    with pytest.raises(TypeError, match="got object with client NoneType"):
        RedisLockManager(object())  # type: ignore[arg-type]
