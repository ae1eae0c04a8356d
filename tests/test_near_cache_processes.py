"""The near cache across processes: two uvicorn processes over TCP on one real Redis, and
on a 3-master Redis Cluster (tests/support/near_app.py).

"Seen" means: once a write is acknowledged, no response from any process whose request was
sent BOUND seconds or more after the acknowledgement carries the old value. Each check polls
both processes until both answer the new value (bounded by WAIT, never reached when the test
passes) and asserts that bound on every answer; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from tests.support.near_app import PREFIX, SOURCE
from tests.support.servers import LocalCluster, RedisServer, require_redis_binaries, uvicorn_server

pytestmark = pytest.mark.redis

BOUND = 0.5  # seconds: the coherence bound the near cache promises
WAIT = 30.0  # bounds a loop that would otherwise hang; never reached when the test passes
APP = "tests.support.near_app:create_app_from_env"


class Target:
    """Where the apps and the test's own clients connect: one server or a cluster."""

    def __init__(self, url: str, nodes: list[tuple[str, int]], cluster: bool) -> None:
        self.url = url
        self.nodes = nodes
        self.cluster = cluster

    def client(self) -> Any:
        """A client that retries on a connection the server closed (CLIENT KILL)."""
        retry = Retry(NoBackoff(), 3)
        if self.cluster:
            nodes = [ClusterNode(h, p) for h, p in self.nodes]
            return AsyncRedisCluster(startup_nodes=nodes, retry=retry)
        return aioredis.Redis.from_url(self.url, retry=retry, retry_on_error=[ConnectionError])

    def cli(self, *args: str) -> str:
        """Run one command with redis-cli (on every master for FLUSHDB / CLIENT KILL on a
        cluster, else with -c on the first node, which follows redirections)."""
        _, cli = require_redis_binaries()
        every = args[0].upper() in ("FLUSHDB", "CLIENT")
        nodes = self.nodes if every else self.nodes[:1]
        out = []
        for host, port in nodes:
            command = [cli, "-h", host, "-p", str(port)]
            if self.cluster and not every:
                command.append("-c")
            done = subprocess.run(
                [*command, *args], capture_output=True, text=True, timeout=WAIT, check=True
            )
            out.append(done.stdout)
        return "".join(out)


@pytest.fixture(params=["redis", "cluster"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return Target(server.url, [(server.host, server.port)], cluster=False)
    cluster: LocalCluster = request.getfixturevalue("redis_cluster")
    host, port = cluster.nodes[0]
    return Target(f"redis://{host}:{port}/0", list(cluster.nodes), cluster=True)


@pytest.fixture
async def store(target: Target) -> AsyncIterator[Any]:
    """The test's own client of the target, on an empty database."""
    client = target.client()
    try:
        if target.cluster:
            await client.initialize()
            await client.flushdb(target_nodes=AsyncRedisCluster.PRIMARIES)
        else:
            await client.flushdb()
        yield client
    finally:
        await client.aclose()


@contextmanager
def two_apps(target: Target, **settings: Any) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "CACHEMATE_TEST_REDIS_URL": target.url,
        "CACHEMATE_TEST_CLUSTER": "1" if target.cluster else "0",
    }
    if settings:
        env["CACHEMATE_TEST_SETTINGS"] = json.dumps(settings)
    with ExitStack() as stack:
        urls = []
        for _ in range(2):
            server = stack.enter_context(uvicorn_server(APP, env, "--factory"))
            urls.append(server.url)
        yield urls


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=WAIT, limits=limits) as client:
        yield client


def _deadline() -> float:
    return time.monotonic() + WAIT


async def read(http: httpx.AsyncClient, url: str, name: str) -> tuple[float, int, str]:
    """(when the request was sent, the value answered, its Cache-Status)."""
    sent = time.monotonic()
    response = await http.get(f"{url}/value/{name}")
    assert response.status_code == 200, response.text
    return sent, int(response.json()["value"]), response.headers.get("cache-status", "")


async def warm(http: httpx.AsyncClient, urls: list[str], name: str) -> int:
    """Read name from every process until each answers from its near cache; the value."""
    deadline = _deadline()
    values = set()
    for url in urls:
        while True:
            _, value, status = await read(http, url, name)
            if status.endswith("; detail=near"):
                values.add(value)
                break
            assert time.monotonic() < deadline, f"{url} never answered from its near cache"
    assert len(values) == 1, values
    return values.pop()


async def assert_seen(
    http: httpx.AsyncClient, urls: list[str], name: str, old: int, acked: float
) -> None:
    """Every process stops answering old within BOUND of acked, and never answers it again
    once it answered something else."""
    deadline = _deadline()
    moved = dict.fromkeys(urls, False)
    while not all(moved.values()) or time.monotonic() < acked + BOUND:
        for url in urls:
            sent, value, status = await read(http, url, name)
            if value != old:
                moved[url] = True
                continue
            assert not moved[url], f"{url} answered {old} again ({status})"
            late = sent - acked
            assert late < BOUND, f"{url} answered {old} {late:.3f}s after the write ({status})"
        assert time.monotonic() < deadline


async def near_counters(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await http.get(f"{url}/near")
    result: dict[str, Any] = response.json()
    return result


async def entry_key(store: Any, name: str, target: Target) -> bytes:
    """The key of name's entry (the only entry: one name is cached per test step)."""
    pattern = f"{PREFIX}:{{*}}"
    keys: list[bytes] = []
    if target.cluster:
        async for key in store.scan_iter(match=pattern, target_nodes=AsyncRedisCluster.PRIMARIES):
            keys.append(key)
    else:
        keys = [key async for key in store.scan_iter(match=pattern)]
    assert len(keys) == 1, keys
    return keys[0]


async def get_calls(store: Any, target: Target) -> int:
    """GET commands run so far (INFO commandstats; summed over the masters of a cluster)."""
    if target.cluster:
        infos = await store.info("commandstats", target_nodes=AsyncRedisCluster.PRIMARIES)
        per_node = list(infos.values())
    else:
        per_node = [await store.info("commandstats")]
    return sum(int(info.get("cmdstat_get", {}).get("calls", 0)) for info in per_node)


async def bump_source(store: Any, name: str) -> int:
    return int(await store.hincrby(SOURCE, name, 1))


# --- invalidation by the other process -----------------------------------------------------------


@pytest.mark.parametrize("how", ["key", "tag", "namespace"])
async def test_an_invalidation_in_one_process_is_seen_by_the_other(
    target: Target, store: Any, http: httpx.AsyncClient, how: str
) -> None:
    with two_apps(target) as urls:
        old = await warm(http, urls, "a")
        response = await http.post(f"{urls[0]}/bump/a", params={"how": how})
        acked = time.monotonic()
        assert response.json()["value"] == old + 1
        await assert_seen(http, urls, "a", old, acked)
        assert await warm(http, urls, "a") == old + 1
        for url in urls:
            assert (await near_counters(http, url))["near_hits"] >= 1
        # the writer dropped its own copy before writing; the other was told by Redis
        assert (await near_counters(http, urls[1]))["near_invalidations"] >= 1


async def test_near_hits_carry_the_header_and_are_counted(
    target: Target, store: Any, http: httpx.AsyncClient
) -> None:
    with two_apps(target) as urls:
        await warm(http, urls, "h")
        before = [await near_counters(http, url) for url in urls]
        for url in urls:
            response = await http.get(f"{url}/value/h")
            assert response.headers["x-cache-status"] == "HIT"
            status = response.headers["cache-status"]
            assert status.startswith("fastapi-cachemate; hit; ttl=")
            assert status.endswith("; detail=near")
        after = [await near_counters(http, url) for url in urls]
        gained = [a["near_hits"] - b["near_hits"] for a, b in zip(after, before, strict=True)]
        assert gained == [1, 1]
        assert all(a["ready"] and a["items"] == 1 for a in after)


async def test_near_cache_off_never_answers_from_process_memory(
    target: Target, store: Any, http: httpx.AsyncClient
) -> None:
    with two_apps(target, near_cache_max_bytes=0) as urls:
        for url in urls:
            statuses = [(await read(http, url, "off"))[2] for _ in range(3)]
            assert all(status.startswith("fastapi-cachemate; hit") for status in statuses[1:])
            assert not any("detail=near" in status for status in statuses)
            assert (await near_counters(http, url)) == {"enabled": False}


# --- writes made with redis-cli ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["DEL", "SET", "PEXPIRE", "FLUSHDB"])
async def test_a_direct_write_with_redis_cli_is_seen(
    target: Target, store: Any, http: httpx.AsyncClient, command: str
) -> None:
    with two_apps(target) as urls:
        old = await warm(http, urls, "d")
        key = (await entry_key(store, "d", target)).decode()
        await bump_source(store, "d")  # what a recomputation answers from now on
        if command == "DEL":
            target.cli("DEL", key)
        elif command == "SET":
            target.cli("SET", key, "not an entry")
        elif command == "PEXPIRE":
            target.cli("PEXPIRE", key, "1")
        else:
            target.cli("FLUSHDB")
            await store.hset(SOURCE, "d", old + 7)  # FLUSHDB took the source too
        acked = time.monotonic()
        await assert_seen(http, urls, "d", old, acked)


# --- the channel lost ----------------------------------------------------------------------------


async def test_killing_every_client_leaves_no_stale_entry(
    target: Target, store: Any, http: httpx.AsyncClient
) -> None:
    with two_apps(target) as urls:
        old = await warm(http, urls, "k")
        established = [(await near_counters(http, url))["established"] for url in urls]
        key = (await entry_key(store, "k", target)).decode()
        target.cli("CLIENT", "KILL", "TYPE", "normal")
        target.cli("CLIENT", "KILL", "TYPE", "pubsub")
        await bump_source(store, "k")  # the test's own client retries on a new connection
        target.cli("DEL", key)  # while the processes reconnect
        acked = time.monotonic()
        await assert_seen(http, urls, "k", old, acked)
        # tracking comes back by itself, and near hits with it
        deadline = _deadline()
        for url, before in zip(urls, established, strict=True):
            while (await near_counters(http, url))["established"] <= before:
                await read(http, url, "k")
                assert time.monotonic() < deadline
        assert await warm(http, urls, "k") == old + 1
        for url in urls:
            assert (await near_counters(http, url))["near_flushes"] >= 1


async def test_a_redis_restart_leaves_no_stale_entry(
    redis_process: RedisServer, http: httpx.AsyncClient
) -> None:
    target = Target(redis_process.url, [(redis_process.host, redis_process.port)], False)
    client = target.client()
    try:
        with two_apps(target) as urls:
            await client.hset(SOURCE, "r", 41)
            old = await warm(http, urls, "r")
            assert old == 41
            redis_process.stop()
            redis_process.start()  # empty: no persistence
            await client.hset(SOURCE, "r", 42)
            acked = time.monotonic()
            await assert_seen(http, urls, "r", old, acked)
            assert await warm(http, urls, "r") == 42
    finally:
        await client.aclose()


async def test_restarting_every_cluster_master_leaves_no_stale_entry(
    http: httpx.AsyncClient,
) -> None:
    """A cluster of its own (the session's is shared): every master restarted, empty (no
    persistence; each keeps its node id and slots from nodes.conf)."""
    _, cli = require_redis_binaries()
    cluster = LocalCluster(masters=3)
    cluster.start()
    try:
        host, port = cluster.nodes[0]
        target = Target(f"redis://{host}:{port}/0", list(cluster.nodes), cluster=True)
        client = target.client()
        try:
            with two_apps(target) as urls:
                await client.hset(SOURCE, "c", 41)
                old = await warm(http, urls, "c")
                assert old == 41
                for server in cluster.servers:
                    server.stop()
                for server in cluster.servers:
                    server.start()
                cluster._wait_state_ok(cli)
                await client.hset(SOURCE, "c", 42)
                acked = time.monotonic()
                await assert_seen(http, urls, "c", old, acked)
                assert await warm(http, urls, "c") == 42
        finally:
            await client.aclose()
    finally:
        cluster.stop()


# --- stress --------------------------------------------------------------------------------------


async def test_no_stale_answer_past_the_bound_under_concurrent_reads_and_writes(
    target: Target, store: Any, http: httpx.AsyncClient
) -> None:
    """One process bumps the source and invalidates, 40 times; the other answers 8
    concurrent readers meanwhile. A stale answer: a value older than one whose write was
    acknowledged BOUND seconds or more before the request was sent."""
    with two_apps(target) as urls:
        writer, reader = urls
        await warm(http, urls, "s")
        acks: list[tuple[float, int]] = []
        answers: list[tuple[float, int]] = []
        done = asyncio.Event()

        async def write() -> None:
            try:
                for _ in range(40):
                    response = await http.post(f"{writer}/bump/s", params={"how": "key"})
                    acks.append((time.monotonic(), int(response.json()["value"])))
            finally:
                done.set()

        async def read_loop() -> None:
            deadline = _deadline()
            while not done.is_set():
                sent, value, _ = await read(http, reader, "s")
                answers.append((sent, value))
                assert time.monotonic() < deadline

        await asyncio.gather(write(), *(read_loop() for _ in range(8)))
        stale = [
            (sent, value)
            for sent, value in answers
            if any(acked + BOUND <= sent and value < new for acked, new in acks)
        ]
        assert len(answers) > 40
        assert stale == []
        near = await near_counters(http, reader)
        assert near["near_hits"] > 0


# --- one GET per process after a write -----------------------------------------------------------


async def test_after_a_store_each_process_reads_redis_at_most_once(
    target: Target, store: Any, http: httpx.AsyncClient
) -> None:
    with two_apps(target) as urls:
        await warm(http, urls, "g")
        await http.post(f"{urls[0]}/bump/g", params={"how": "key"})
        stored = await http.get(f"{urls[0]}/value/g")  # the miss that stores the new entry
        assert "stored" in stored.headers["cache-status"]
        before = await get_calls(store, target)
        for _ in range(5):
            answers = await asyncio.gather(
                *(http.get(f"{url}/value/g") for url in urls for _ in range(4))
            )
            assert {a.json()["value"] for a in answers} == {stored.json()["value"]}
        assert await get_calls(store, target) - before <= len(urls)
        for url in urls:
            _, _, status = await read(http, url, "g")
            assert status.endswith("; detail=near")
