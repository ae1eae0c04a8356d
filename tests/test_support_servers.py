"""The test servers themselves: a missing redis-server fails with the install hint; a
controllable server stops and starts again on its port."""

from __future__ import annotations

import socket

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support.servers import (
    RedisServer,
    ServerError,
    free_port,
    require_redis_binaries,
    require_redis_binaries_or_fail,
)


def test_missing_redis_server_is_an_error_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerError, match="redis-server, redis-cli not found") as info:
        require_redis_binaries()
    assert "apt-get install redis-server redis-tools" in str(info.value)


def test_the_fixtures_fail_rather_than_skip_without_redis_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)  # not only on CI: always a failure
    with pytest.raises(pytest.fail.Exception, match="apt-get install"):
        require_redis_binaries_or_fail()


def test_free_port_with_cluster_bus() -> None:
    port = free_port(with_cluster_bus=True)
    assert port + 10000 <= 65535
    for candidate in (port, port + 10000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", candidate))  # both are free now


@pytest.mark.redis
async def test_controllable_server_stops_and_starts_on_the_same_port(
    redis_process: RedisServer,
) -> None:
    port = redis_process.port
    assert redis_process.running
    assert "Ready to accept connections" in redis_process.log()
    client = aioredis.Redis(host=redis_process.host, port=port, retry=Retry(NoBackoff(), 0))
    try:
        assert await client.ping() is True
        redis_process.stop()
        assert not redis_process.running
        with pytest.raises((redis_exceptions.ConnectionError, OSError)):
            await client.ping()
        redis_process.start()
        assert redis_process.running
        assert redis_process.port == port
        assert await client.ping() is True
    finally:
        await client.aclose()


def test_a_server_that_cannot_start_is_reported_with_its_log() -> None:
    server = RedisServer(extra_args=("--no-such-option", "x"))
    try:
        with pytest.raises(ServerError, match="did not get ready") as info:
            server.start()
        assert "no-such-option" in str(info.value)
        assert not server.running
    finally:
        server.cleanup()
