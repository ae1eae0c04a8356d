"""RedisBackend on a real redis-server: one command per call, hiredis, errors propagate."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.utils import HIREDIS_AVAILABLE

from fastapi_cachemate.core.backends.redis import RedisBackend, parser_class_of
from fastapi_cachemate.core.locks.redis import RedisLockManager
from tests.support.servers import RedisServer, command_calls, command_delta

pytestmark = pytest.mark.redis


async def test_fetch_is_exactly_one_get(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    await backend.store(b"p:{hit}", b"entry", 60_000)
    before = await command_calls(redis_client)
    assert await backend.fetch(b"p:{hit}") == b"entry"
    after = await command_calls(redis_client)
    assert command_delta(before, after) == {"get": 1}


async def test_fetch_of_a_miss_is_exactly_one_get(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    before = await command_calls(redis_client)
    assert await backend.fetch(b"p:{miss}") is None
    assert command_delta(before, await command_calls(redis_client)) == {"get": 1}


async def test_store_is_exactly_one_set_with_the_right_pttl(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    before = await command_calls(redis_client)
    await backend.store(b"p:{store}", b"entry", 2_500)
    assert command_delta(before, await command_calls(redis_client)) == {"set": 1}
    pttl = await redis_client.pttl(b"p:{store}")
    assert 2_000 < pttl <= 2_500
    assert await redis_client.get(b"p:{store}") == b"entry"


async def test_delete_is_one_unlink(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    await redis_client.set(b"p:{a}", b"1")
    await redis_client.set(b"p:{b}", b"2")
    before = await command_calls(redis_client)
    assert await backend.delete(b"p:{a}", b"p:{b}", b"p:{c}") == 2
    assert command_delta(before, await command_calls(redis_client)) == {"unlink": 1}
    assert await redis_client.exists(b"p:{a}", b"p:{b}") == 0


async def test_seed_get_keeps_its_pipeline_of_get_and_pttl(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    await redis_client.set("seed", b"v", px=9_000)
    before = await command_calls(redis_client)
    ttl, raw = await backend.get("seed")
    assert raw == b"v"
    assert 8_000 < ttl <= 9_000
    assert command_delta(before, await command_calls(redis_client)) == {
        "multi": 1,
        "get": 1,
        "pttl": 1,
        "exec": 1,
    }


async def test_seed_set_uses_seconds(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    assert await backend.set("seed:s", b"v", ttl=7) is True
    assert 6 < await redis_client.ttl("seed:s") <= 7


async def test_fetch_returns_bytes_even_with_decode_responses(redis_server: RedisServer) -> None:
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    backend = RedisBackend(client)
    try:
        await backend.store(b"p:{dec}", b"\xff\xfe\x00binary", 60_000)
        # decoding this as UTF-8 would fail: fetch never decodes
        assert await backend.fetch(b"p:{dec}") == b"\xff\xfe\x00binary"
        # nor does the miss path's lock-and-recheck pipeline
        token, value = await backend.lock_and_fetch(b"p:{dec}:lock", 1_000, b"p:{dec}")
        assert token is not None
        assert value == b"\xff\xfe\x00binary"
    finally:
        await backend.close()


async def test_hiredis_parser_is_in_use(redis_client: aioredis.Redis) -> None:
    assert HIREDIS_AVAILABLE
    backend = RedisBackend(redis_client)
    assert backend.parser_class is _AsyncHiredisParser
    assert parser_class_of(redis_client) is _AsyncHiredisParser
    await backend.store(b"p:{h}", b"x", 1_000)
    # and the live connection that served the command
    connection = await redis_client.connection_pool.get_connection()
    try:
        assert connection.is_connected
        assert isinstance(connection._parser, _AsyncHiredisParser)
    finally:
        await redis_client.connection_pool.release(connection)


def test_backend_rejects_a_sync_client() -> None:
    import redis

    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis or redis\.asyncio\.RedisCluster"):
        RedisBackend(redis.Redis())  # type: ignore[arg-type]


# --- faults: errors propagate; the seed's lock methods log and answer False ---------------
def _fault_client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis(
        host=server.host,
        port=server.port,
        socket_connect_timeout=2,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),  # no reconnect retries: a refused connection fails at once
    )


async def test_errors_propagate_when_the_server_is_down(redis_process: RedisServer) -> None:
    backend = RedisBackend(_fault_client(redis_process))
    locks = RedisLockManager(backend)
    try:
        await backend.store(b"p:{f}", b"x", 60_000)
        redis_process.stop()
        assert not redis_process.running
        with pytest.raises((redis_exceptions.RedisError, OSError)):
            await backend.fetch(b"p:{f}")
        with pytest.raises((redis_exceptions.RedisError, OSError)):
            await backend.store(b"p:{f}", b"y", 60_000)
        with pytest.raises((redis_exceptions.RedisError, OSError)):
            await backend.delete(b"p:{f}")
        with pytest.raises((redis_exceptions.RedisError, OSError)):
            await locks.try_lock(b"p:{f}:lock", 1_000)
        with pytest.raises((redis_exceptions.RedisError, OSError)):
            await locks.unlock(b"p:{f}:lock", "token")
        with pytest.raises((redis_exceptions.RedisError, OSError)):
            await locks.extend(b"p:{f}:lock", "token", 1_000)
    finally:
        await backend.close()


async def test_the_backend_recovers_when_the_server_comes_back(
    redis_process: RedisServer,
) -> None:
    backend = RedisBackend(_fault_client(redis_process))
    try:
        await backend.store(b"p:{back}", b"before", 60_000)
        redis_process.stop()
        with pytest.raises((redis_exceptions.RedisError, OSError)):
            await backend.fetch(b"p:{back}")
        redis_process.start()
        # nothing persisted (--save ""): the old entry is gone, the backend works again
        assert await backend.fetch(b"p:{back}") is None
        await backend.store(b"p:{back}", b"after", 60_000)
        assert await backend.fetch(b"p:{back}") == b"after"
    finally:
        await backend.close()


async def test_seed_lock_methods_log_and_return_false_when_down(
    redis_process: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(_fault_client(redis_process))
    locks = RedisLockManager(backend)
    try:
        assert await locks.acquire("seed-lock") is True
        redis_process.stop()
        with caplog.at_level(logging.ERROR, logger="fastapi_cachemate.core.locks.redis"):
            assert await locks.acquire("other-lock") is False
            assert await locks.release("seed-lock") is False
        messages = [r.getMessage() for r in caplog.records]
        assert any("acquire 'other-lock' failed" in m for m in messages)
        assert any("release 'seed-lock' failed" in m for m in messages)
    finally:
        await backend.close()


async def test_from_url(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, socket_timeout=5)
    try:
        assert not backend.is_cluster
        await backend.store(b"p:{url}", b"v", 60_000)
        assert await backend.fetch(b"p:{url}") == b"v"
        assert backend.parser_class is _AsyncHiredisParser
    finally:
        await backend.close()
