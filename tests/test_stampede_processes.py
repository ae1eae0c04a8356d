"""Stampede protection across processes: uvicorn processes over TCP on one real Redis.

The app is the stampede app of tests/support/apps.py, configured by environment variables;
computations and arrivals are counted in Redis, and the processes are synchronised through
Redis lists (BLPOP), never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.servers import RedisServer, uvicorn_server

pytestmark = pytest.mark.redis

WAIT = 60  # bounds a test that would otherwise hang; never reached when it passes


@contextmanager
def uvicorn(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """One uvicorn process serving the stampede app on a free port, over TCP."""
    server_env = {**os.environ, **env}
    log: deque[str] | None = None
    try:
        with uvicorn_server(
            "tests.support.apps:stampede_app_from_env", server_env, "--factory", "--lifespan", "on"
        ) as server:
            log = server.log
            yield server.proc, server.url
    finally:
        if log is not None:  # read once the process has ended: the whole log
            print(f"--- uvicorn ---\n{''.join(log)}")  # shown when a test fails
            errors = [line for line in log if "Traceback" in line or "ERROR" in line]
            assert not errors, "".join(log)


def app_env(
    server: RedisServer, *, block: bool, expect: int = 0, **settings: Any
) -> dict[str, str]:
    return {
        "CACHEMATE_TEST_REDIS_URL": server.url,
        "CACHEMATE_TEST_NAME": "procs",
        "CACHEMATE_TEST_SETTINGS": json.dumps(settings),
        "CACHEMATE_TEST_BLOCK": "1" if block else "0",
        "CACHEMATE_TEST_EXPECT": str(expect),
    }


async def computations(redis_client: aioredis.Redis) -> int:
    return int(await redis_client.get("procs:computations") or 0)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=WAIT)


async def test_two_uvicorn_processes_100_concurrent_cold_requests_each_compute_once(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # ttl_lock_seconds: the computation is held until all 200 requests have arrived, which
    # may take seconds on a loaded machine; waiters must not give up before.
    env = app_env(redis_server, block=True, expect=200, ttl_lock_seconds=30, backend_timeout=2)
    with uvicorn(env) as (_, url_a), uvicorn(env) as (_, url_b):
        async with client() as http:
            pending = [
                asyncio.ensure_future(http.get(f"{url}/item/5"))
                for url in (url_a, url_b)
                for _ in range(100)
            ]
            assert await redis_client.blpop(["procs:all-arrived"], timeout=WAIT) is not None
            await redis_client.lpush("procs:gate", 1)
            responses = await asyncio.gather(*pending)
            again = await http.get(f"{url_b}/item/5")
    assert [r.status_code for r in responses] == [200] * 200
    assert {r.content for r in responses} == {b'{"n":5,"computation":1}'}
    assert await computations(redis_client) == 1
    assert again.headers["x-cache-status"] == "HIT"
    assert await redis_client.keys("*:lock") == []


async def test_lock_holder_killed_mid_computation(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    """A computes and blocks; B's requests wait on A's lock; A is SIGKILLed: its lock expires
    (ttl_lock_seconds=1, no more extensions), B's waiter takes it over and computes."""
    env_a = app_env(redis_server, block=True, ttl_lock_seconds=1)
    env_b = app_env(redis_server, block=False, expect=20, ttl_lock_seconds=1, lock_wait_timeout=30)
    with uvicorn(env_b) as (_, url_b):
        async with client() as http:
            with uvicorn(env_a) as (proc_a, url_a):
                holder = asyncio.ensure_future(http.get(f"{url_a}/item/3"))
                computing = await redis_client.blpop(["procs:computing"], timeout=WAIT)
                assert computing is not None
                assert computing[1] == b"1"
                assert await redis_client.keys("procs:*:lock") != []
                waiters = [asyncio.ensure_future(http.get(f"{url_b}/item/3")) for _ in range(20)]
                assert await redis_client.blpop(["procs:all-arrived"], timeout=WAIT) is not None
                assert not any(w.done() for w in waiters)  # they wait for A's computation
                proc_a.send_signal(signal.SIGKILL)
                proc_a.wait(timeout=WAIT)
                with pytest.raises(httpx.TransportError):
                    await holder
                responses = await asyncio.gather(*waiters)
            again = await http.get(f"{url_b}/item/3")
    assert [r.status_code for r in responses] == [200] * 20
    assert {r.content for r in responses} == {b'{"n":3,"computation":2}'}
    assert await computations(redis_client) == 2
    assert again.headers["x-cache-status"] == "HIT"
    assert again.content == b'{"n":3,"computation":2}'
