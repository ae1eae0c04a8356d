"""Invalidation in the backends: by key, by tag, by namespace, and the generation guard.

Every test runs on the in-process backend, on a real redis-server and on a real 3-master
Redis Cluster (``inv_backend``). The race tests drive a computation with events: it reads
its generation, waits for the test, and stores only after an invalidation has landed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from fastapi_cachemate.core import layout
from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.backends.redis import (
    PIPELINE_BATCH,
    SCAN_COUNT,
    RedisBackend,
)
from fastapi_cachemate.core.locks.memory import MemoryLockManager
from fastapi_cachemate.core.locks.redis import RedisLockManager
from fastapi_cachemate.core.types import Backend, ComputeTicket, LockManager
from tests.support.clock import FakeClock

PREFIX = "p"
TTL = 60_000


def key(i: int, prefix: bytes = b"p") -> bytes:
    return prefix + b":{%032x}" % i


def keys_on_every_node(client: RedisCluster, prefix: bytes = b"p") -> list[bytes]:
    by_node: dict[str, bytes] = {}
    masters = {node.name for node in client.get_primaries()}
    i = 0
    while set(by_node) != masters:
        k = key(i, prefix)
        by_node.setdefault(client.nodes_manager.get_node_from_slot(client.keyslot(k)).name, k)
        i += 1
    return list(by_node.values())


_REDIS_KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster]),
]


async def _redis_backend(request: pytest.FixtureRequest) -> RedisBackend:
    """A RedisBackend on a flushed redis-server ("redis") or cluster ("cluster")."""
    client: aioredis.Redis | RedisCluster
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        client = aioredis.Redis(host=server.host, port=server.port, db=0)
        await client.flushdb()
    else:
        cluster = request.getfixturevalue("redis_cluster")
        client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster.nodes])
        await client.initialize()
        await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    return RedisBackend(client)


@pytest.fixture(params=["memory", *_REDIS_KINDS])
async def inv_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend(max_bytes=64 * 1024 * 1024)
        return
    backend = await _redis_backend(request)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=_REDIS_KINDS)
async def redis_inv_backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
    """Redis and the cluster only: for the locks that live in the backend's store."""
    backend = await _redis_backend(request)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def inv_locks(inv_backend: Backend) -> LockManager:
    if isinstance(inv_backend, RedisBackend):
        return RedisLockManager(inv_backend)
    return MemoryLockManager()


async def compute_and_store(
    backend: Backend, k: bytes, value: bytes, *, tags: tuple[str, ...] = ()
) -> bool:
    ticket = await backend.begin_compute(k, tags=tags, tags_ttl_ms=TTL)
    return await backend.store_if_generation(ticket, value, TTL)


class Computation:
    """A computation of key k held between its begin and its store by events."""

    def __init__(self, backend: Backend, k: bytes, tags: tuple[str, ...] = ()) -> None:
        self.began = asyncio.Event()
        self.go = asyncio.Event()
        self.task = asyncio.create_task(self._run(backend, k, tags))

    async def _run(self, backend: Backend, k: bytes, tags: tuple[str, ...]) -> bool:
        ticket = await backend.begin_compute(k, tags=tags, tags_ttl_ms=TTL)
        self.began.set()
        await self.go.wait()  # the slow endpoint: it read the old data before this
        return await backend.store_if_generation(ticket, b"old", TTL)

    async def finish(self) -> bool:
        self.go.set()
        return await self.task


# --- by key --------------------------------------------------------------------------------


async def test_store_then_invalidate_keys(inv_backend: Backend) -> None:
    k1, k2 = key(1), key(2)
    assert await compute_and_store(inv_backend, k1, b"v1")
    assert await compute_and_store(inv_backend, k2, b"v2")
    assert await inv_backend.fetch(k1) == b"v1"
    assert await inv_backend.invalidate_keys(k1, key(99), k1) == 1
    assert await inv_backend.fetch(k1) is None
    assert await inv_backend.fetch(k2) == b"v2"
    assert await inv_backend.invalidate_keys() == 0
    # a computation that begins after the invalidation stores
    assert await compute_and_store(inv_backend, k1, b"new")
    assert await inv_backend.fetch(k1) == b"new"


@pytest.mark.parametrize("entry_before", [True, False])
async def test_invalidation_during_computation_is_not_overwritten(
    inv_backend: Backend, entry_before: bool
) -> None:
    k = key(7)
    if entry_before:
        assert await compute_and_store(inv_backend, k, b"old")
    slow = Computation(inv_backend, k)
    await slow.began.wait()
    assert await inv_backend.invalidate_keys(k) == int(entry_before)
    assert await slow.finish() is False
    assert await inv_backend.fetch(k) is None
    # the next computation (after the invalidation) stores, and reads see only it
    assert await compute_and_store(inv_backend, k, b"new")
    assert await inv_backend.fetch(k) == b"new"


async def test_two_invalidations_and_interleaved_computations(inv_backend: Backend) -> None:
    k = key(8)
    first = Computation(inv_backend, k)
    await first.began.wait()
    await inv_backend.invalidate_keys(k)
    second = Computation(inv_backend, k)  # began after the first invalidation
    await second.began.wait()
    await inv_backend.invalidate_keys(k)
    assert await second.finish() is False
    assert await first.finish() is False
    third = Computation(inv_backend, k)
    await third.began.wait()
    assert await third.finish() is True
    assert await inv_backend.fetch(k) == b"old"  # the third's value (it began after both)


async def test_an_old_ticket_is_refused(inv_backend: Backend) -> None:
    k = key(9)
    ticket = await inv_backend.begin_compute(k)
    assert ticket.key == k
    assert ticket.generation is not None
    ttl_ms: int = inv_backend.generation_ttl_ms  # type: ignore[attr-defined]
    old = ticket._replace(started=ticket.started - ttl_ms / 1000.0)
    assert await inv_backend.store_if_generation(old, b"v", TTL) is False
    assert await inv_backend.fetch(k) is None
    assert await inv_backend.store_if_generation(ticket, b"v", TTL) is True


# --- by tag --------------------------------------------------------------------------------


async def test_invalidate_tags(inv_backend: Backend) -> None:
    a, b, c = key(1), key(2), key(3)
    assert await compute_and_store(inv_backend, a, b"a", tags=("blog:1", "blogs"))
    assert await compute_and_store(inv_backend, b, b"b", tags=("blog:2", "blogs"))
    assert await compute_and_store(inv_backend, c, b"c")
    assert await inv_backend.invalidate_tags(PREFIX, "blog:1") == 1
    assert [await inv_backend.fetch(k) for k in (a, b, c)] == [None, b"b", b"c"]
    assert await inv_backend.invalidate_tags(PREFIX, "blog:1") == 0  # the set is gone
    assert await inv_backend.invalidate_tags(PREFIX, "blogs", "absent") == 1
    assert [await inv_backend.fetch(k) for k in (a, b, c)] == [None, None, b"c"]
    assert await inv_backend.invalidate_tags("other-prefix", "blog:2") == 0


async def test_tag_invalidation_during_computation(inv_backend: Backend) -> None:
    k = key(11)
    slow = Computation(inv_backend, k, tags=("blog:{x}", "ünï"))
    await slow.began.wait()  # it registered its tags before computing
    await inv_backend.invalidate_tags(PREFIX, "ünï")
    assert await slow.finish() is False
    assert await inv_backend.fetch(k) is None


async def test_many_members_in_one_tag(inv_backend: Backend) -> None:
    n = SCAN_COUNT * 2 + PIPELINE_BATCH + 7  # several SSCAN and pipeline batches
    for i in range(n):
        assert await compute_and_store(inv_backend, key(i), b"v", tags=("big",))
    assert await inv_backend.invalidate_tags(PREFIX, "big") == n
    for i in range(0, n, 97):
        assert await inv_backend.fetch(key(i)) is None


async def test_add_tags_alone(inv_backend: Backend) -> None:
    k = key(5)
    assert await compute_and_store(inv_backend, k, b"v")
    await inv_backend.add_tags(k, ["late"], TTL)
    assert await inv_backend.invalidate_tags(PREFIX, "late") == 1
    with pytest.raises(ValueError, match="ttl_ms"):
        await inv_backend.add_tags(k, ["late"], 0)
    with pytest.raises(ValueError, match="not a cache key"):
        await inv_backend.add_tags(b"no-hash-tag", ["late"], TTL)


# --- by namespace --------------------------------------------------------------------------


async def test_invalidate_namespace(inv_backend: Backend) -> None:
    ours = [key(i) for i in range(50)]
    others = [key(1, b"p:x"), key(2, b"q"), key(3, b"pp")]
    for k in ours + others:
        assert await compute_and_store(inv_backend, k, b"v", tags=("t",))
    assert await inv_backend.invalidate_namespace(PREFIX) == len(ours)
    for k in ours:
        assert await inv_backend.fetch(k) is None
    for k in others:
        assert await inv_backend.fetch(k) == b"v"
    assert await inv_backend.invalidate_namespace(PREFIX) == 0


@pytest.mark.parametrize("locked", [True, False])
async def test_namespace_invalidation_stops_a_computation_in_flight(
    inv_backend: Backend, inv_locks: LockManager, locked: bool
) -> None:
    k = key(21)
    token = await inv_locks.try_lock(layout.lock_key(k), 10_000) if locked else None
    slow = Computation(inv_backend, k)  # no entry yet: only its generation key shows it
    await slow.began.wait()
    await inv_backend.invalidate_namespace(PREFIX)
    assert await slow.finish() is False
    assert await inv_backend.fetch(k) is None
    if token is not None:
        assert await inv_locks.unlock(layout.lock_key(k), token)


async def test_namespace_invalidation_removes_what_a_computation_stored(
    inv_backend: Backend,
) -> None:
    k = key(22)
    done = Computation(inv_backend, k)
    await done.began.wait()
    assert await done.finish() is True  # stored: the entry is found (and its generation)
    assert await inv_backend.invalidate_namespace(PREFIX) == 1
    assert await inv_backend.fetch(k) is None


async def test_namespace_with_glob_characters(inv_backend: Backend) -> None:
    weird = b"a*[?]\\"
    k, other = key(1, weird), key(1, b"ab")
    assert await compute_and_store(inv_backend, k, b"v")
    assert await compute_and_store(inv_backend, other, b"v")
    assert await inv_backend.invalidate_namespace(weird.decode()) == 1
    assert await inv_backend.fetch(k) is None
    assert await inv_backend.fetch(other) == b"v"


# --- Redis specifics -------------------------------------------------------------------------


@pytest.mark.redis
async def test_tag_set_expiry_is_only_pushed(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    k = key(1)
    await backend.add_tags(k, ["t"], 50_000)
    tag_key = layout.tag_key(PREFIX, "t")
    assert 40_000 < await redis_client.pttl(tag_key) <= 50_000
    await backend.add_tags(key(2), ["t"], 5_000)  # shorter: the set keeps its expiry
    assert await redis_client.pttl(tag_key) > 40_000
    await backend.add_tags(key(3), ["t"], 500_000)
    assert await redis_client.pttl(tag_key) > 400_000
    assert await redis_client.smembers(tag_key) == {key(1), key(2), key(3)}


@pytest.mark.redis
async def test_generation_key_expires(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client, generation_ttl_ms=120_000)
    k = key(1)
    fresh = await backend.begin_compute(key(2))
    assert fresh.generation == 0
    assert await redis_client.get(layout.generation_key(key(2))) == b"0"
    assert 100_000 < await redis_client.pttl(layout.generation_key(key(2))) <= 120_000
    await backend.invalidate_keys(k)
    await backend.invalidate_keys(k)
    assert await redis_client.get(layout.generation_key(k)) == b"2"
    assert 100_000 < await redis_client.pttl(layout.generation_key(k)) <= 120_000
    ticket = await backend.begin_compute(k)
    assert ticket.generation == 2
    assert await redis_client.get(layout.generation_key(k)) == b"2"  # begin leaves it
    with pytest.raises(ValueError, match="generation_ttl_ms"):
        RedisBackend(redis_client, generation_ttl_ms=10)


@pytest.mark.redis
async def test_scripts_reload_after_script_flush(redis_client: aioredis.Redis) -> None:
    backend = RedisBackend(redis_client)
    for operation in range(3):
        await redis_client.script_flush()
        k = key(operation)
        assert await compute_and_store(backend, k, b"v", tags=("t",))
        await redis_client.script_flush()
        assert await backend.invalidate_tags(PREFIX, "t") == 1
        await redis_client.script_flush()
        assert await compute_and_store(backend, k, b"v")
        assert await backend.invalidate_keys(k) == 1


@pytest.mark.redis
async def test_store_is_one_script_and_fetch_one_get(redis_client: aioredis.Redis) -> None:
    from tests.support.servers import command_calls, command_delta

    backend = RedisBackend(redis_client)
    k = key(1)
    assert await compute_and_store(backend, k, b"v")  # scripts loaded
    before = await command_calls(redis_client)
    ticket = await backend.begin_compute(k)
    assert await backend.store_if_generation(ticket, b"v", TTL)
    assert await backend.fetch(k) == b"v"
    delta = command_delta(before, await command_calls(redis_client))
    # begin: EVALSHA (GET K:gen, PEXPIRE K:gen: it exists since the first computation);
    # store: EVALSHA (GET K:gen, SET K); fetch: GET K
    assert delta == {"evalsha": 2, "get": 3, "pexpire": 1, "set": 1}


@pytest.mark.redis
@pytest.mark.cluster
async def test_layout_slots_on_the_cluster(redis_cluster_client: RedisCluster) -> None:
    for k in keys_on_every_node(redis_cluster_client):
        slot = await redis_cluster_client.cluster_keyslot(k)
        assert await redis_cluster_client.cluster_keyslot(layout.lock_key(k)) == slot
        assert await redis_cluster_client.cluster_keyslot(layout.generation_key(k)) == slot
    # tag sets spread over the nodes by their own tag
    slots = {
        await redis_cluster_client.cluster_keyslot(layout.tag_key(PREFIX, f"t{i}"))
        for i in range(20)
    }
    assert len(slots) > 1


@pytest.mark.redis
@pytest.mark.cluster
async def test_every_kind_on_every_node_of_the_cluster(
    redis_cluster_client: RedisCluster,
) -> None:
    backend = RedisBackend(redis_cluster_client)
    locks = RedisLockManager(backend)
    ks = keys_on_every_node(redis_cluster_client)
    # MISS, lock, compute, store, HIT on every node
    for k in ks:
        assert await backend.fetch(k) is None
        token = await locks.try_lock(layout.lock_key(k), 5_000)
        assert token is not None
        assert await compute_and_store(backend, k, k, tags=("all", k.decode()))
        assert await locks.unlock(layout.lock_key(k), token)
        assert await backend.fetch(k) == k
    assert await backend.invalidate_keys(*ks[:2]) == 2
    assert await backend.invalidate_tags(PREFIX, ks[2].decode()) == 1
    for k in ks:
        assert await compute_and_store(backend, k, k, tags=("all",))
    assert await backend.invalidate_tags(PREFIX, "all") == 3
    for k in ks:
        assert await compute_and_store(backend, k, k)
    assert await backend.invalidate_namespace(PREFIX) == 3
    for k in ks:
        assert await backend.fetch(k) is None
        assert int(await redis_cluster_client.get(layout.generation_key(k))) >= 3


@pytest.mark.redis
@pytest.mark.cluster
async def test_cluster_scripts_reload_on_every_node(redis_cluster_client: RedisCluster) -> None:
    backend = RedisBackend(redis_cluster_client)
    ks = keys_on_every_node(redis_cluster_client)
    await redis_cluster_client.script_flush()
    for k in ks:
        assert await compute_and_store(backend, k, b"v", tags=("t",))
    await redis_cluster_client.script_flush()
    assert await backend.invalidate_tags(PREFIX, "t") == 3
    await redis_cluster_client.script_flush()
    for k in ks:
        assert await compute_and_store(backend, k, b"v")
    await redis_cluster_client.script_flush()
    assert await backend.invalidate_keys(*ks) == 3


# --- the in-process backend's bounds -------------------------------------------------------


async def test_memory_generation_records_are_bounded() -> None:
    clock = FakeClock()
    backend = MemoryBackend(max_generations=100, clock=clock)
    k = key(1000)
    ticket = await backend.begin_compute(k)
    await backend.invalidate_keys(*(key(i) for i in range(150)))
    assert len(backend._invalidated) <= 100
    # the dropped records were young: every ticket they could concern is refused
    assert await backend.store_if_generation(ticket, b"v", TTL) is False
    assert await compute_and_store(backend, key(0), b"v")
    # old records go first, and a sweep of old ones raises no floor
    clock.now += backend.generation_ttl_ms / 1000.0 + 1
    floor = backend._floor
    await backend.invalidate_keys(*(key(i) for i in range(200, 260)))
    assert backend._floor == floor
    assert len(backend._invalidated) <= 100


async def test_memory_tag_members_are_bounded() -> None:
    clock = FakeClock()
    backend = MemoryBackend(max_tag_members=2000, clock=clock)
    for i in range(1500):
        assert await compute_and_store(backend, key(i), b"v", tags=(f"t{i // 500}",))
    clock.now += TTL / 1000.0 + 1  # every membership (and entry) expired
    for i in range(1500, 2600):
        assert await compute_and_store(backend, key(i), b"v", tags=(f"t{i // 500}",))
    assert backend._tag_members <= 2000
    for i in range(1500, 5000):
        await compute_and_store(backend, key(i), b"v", tags=(f"t{i // 500}",))
    assert backend._tag_members <= 2000
    # a dropped tag set took its entries with it: nothing tagged is left unreachable
    reachable = {m for members in backend._tags.values() for m in members}
    for i in range(1500, 5000):
        if await backend.fetch(key(i)) is not None:
            assert key(i) in reachable


# --- a seed-style backend ----------------------------------------------------------------------


class SeedBackend(Backend):
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> tuple[int, bytes | None]:
        return -1, self.data.get(key)

    async def set(self, key: str, data: bytes | str, *, ttl: int, nx: bool = False) -> Any:
        self.data[key] = data if isinstance(data, bytes) else data.encode()
        return True

    async def close(self) -> None:
        return None

    @property
    def client(self) -> Any:
        return self.data


async def test_a_seed_style_backend_keeps_working() -> None:
    backend = SeedBackend()
    ticket = await backend.begin_compute(key(1), tags=("t",), tags_ttl_ms=TTL)
    assert ticket.generation is None
    assert await backend.store_if_generation(ticket, b"v", TTL) is True
    assert await backend.fetch(key(1)) == b"v"
    for call in (
        lambda: backend.invalidate_tags(PREFIX, "t"),
        lambda: backend.invalidate_namespace(PREFIX),
        lambda: backend.add_tags(key(1), ["t"], TTL),
        lambda: backend.invalidate_keys(key(1)),
    ):
        with pytest.raises(NotImplementedError):
            await call()


def test_ticket_expiry() -> None:
    ticket = ComputeTicket(b"k", 1, 100.0)
    assert not ticket.expired(10_000, now=105.0)
    assert ticket.expired(10_000, now=105.001)


def test_layout() -> None:
    k = key(0xAB)
    assert layout.prefix_of(k) == b"p"
    assert layout.entry_of(layout.lock_key(k)) == k
    assert layout.entry_of(layout.generation_key(k)) == k
    assert layout.tag_key("p", "blog:1") == b"p:tag:{blog:1}"
    assert layout.namespace_pattern(b"a*b") == b"a\\*b:{*"
    assert layout.classify(b"p", k) is layout.KeyKind.ENTRY
    assert layout.classify(b"p", k + b":lock") is layout.KeyKind.LOCK
    assert layout.classify(b"p", k + b":gen") is layout.KeyKind.GENERATION
    assert layout.classify(b"p", b"p:tag:{x}") is layout.KeyKind.TAG
    for foreign in (key(1, b"p:x"), k + b":other", b"p:{short}", key(1, b"q"), b"p"):
        assert layout.classify(b"p", foreign) is None
    with pytest.raises(ValueError, match="not a cache key"):
        layout.prefix_of(b"nohash")
    with pytest.raises(TypeError):
        layout.tag_key("p", 1)  # type: ignore[arg-type]


# --- the store that releases the computation's lock (Redis: one round trip) --------------


async def _held_lock(backend: RedisBackend, k: bytes) -> tuple[RedisLockManager, bytes, str]:
    locks = RedisLockManager(backend)
    assert locks.shares_store(backend)
    assert not locks.shares_store(MemoryBackend())
    lock_key = k + b":lock"
    token = await locks.try_lock(lock_key, 10_000)
    assert token is not None
    return locks, lock_key, token


async def test_store_and_unlock_in_one_call(redis_inv_backend: RedisBackend) -> None:
    backend = redis_inv_backend
    k = key(20)
    _, lock_key, token = await _held_lock(backend, k)
    ticket = await backend.begin_compute(k)
    assert await backend.store_if_generation_and_unlock(ticket, b"v", TTL, lock_key, token)
    assert await backend.fetch(k) == b"v"
    assert await backend.client.exists(lock_key) == 0


async def test_store_and_unlock_leaves_another_holders_lock(
    redis_inv_backend: RedisBackend,
) -> None:
    """The lock expired and another request took it: ours stores, theirs stays."""
    backend = redis_inv_backend
    k = key(21)
    _, lock_key, _ = await _held_lock(backend, k)
    ticket = await backend.begin_compute(k)
    assert await backend.store_if_generation_and_unlock(ticket, b"v", TTL, lock_key, "not-ours")
    assert await backend.fetch(k) == b"v"
    assert await backend.client.exists(lock_key) == 1


async def test_store_and_unlock_after_an_invalidation_only_unlocks(
    redis_inv_backend: RedisBackend,
) -> None:
    backend = redis_inv_backend
    k = key(22)
    _, lock_key, token = await _held_lock(backend, k)
    ticket = await backend.begin_compute(k)
    await backend.invalidate_keys(k)
    assert not await backend.store_if_generation_and_unlock(ticket, b"old", TTL, lock_key, token)
    assert await backend.fetch(k) is None
    assert await backend.client.exists(lock_key) == 0
    ttl_ms: int = backend.generation_ttl_ms
    old = (await backend.begin_compute(k))._replace(started=ticket.started - ttl_ms / 1000.0)
    _, lock_key, token = await _held_lock(backend, k)
    assert not await backend.store_if_generation_and_unlock(old, b"old", TTL, lock_key, token)
    assert await backend.fetch(k) is None
    assert await backend.client.exists(lock_key) == 0


async def test_store_and_unlock_of_a_ticket_without_generation(
    redis_inv_backend: RedisBackend,
) -> None:
    """A ticket from a backend without generations (the default begin_compute): a plain
    SET, and the unlock."""
    backend = redis_inv_backend
    k = key(23)
    _, lock_key, token = await _held_lock(backend, k)
    ticket = ComputeTicket(k, None, time.monotonic())
    assert await backend.store_if_generation_and_unlock(ticket, b"v", TTL, lock_key, token)
    assert await backend.fetch(k) == b"v"
    assert await backend.client.exists(lock_key) == 0


async def test_lock_and_fetch_in_one_call(redis_inv_backend: RedisBackend) -> None:
    """SET K:lock NX PX, GET K, PTTL K:lock: the token (None when the lock is taken) and the
    value."""
    backend = redis_inv_backend
    k = key(24)
    lock_key = k + b":lock"
    token, value = await backend.lock_and_fetch(lock_key, 10_000, k)
    assert token is not None
    assert value is None
    assert await backend.client.get(lock_key) == token.encode()
    assert 9_000 < await backend.client.pttl(lock_key) <= 10_000
    await backend.store(k, b"v", TTL)
    assert await backend.lock_and_fetch(lock_key, 10_000, k) == (None, b"v")  # taken
    assert await RedisLockManager(backend).unlock(lock_key, token)
    again, value = await backend.lock_and_fetch(lock_key, 10_000, k)
    assert again is not None
    assert again != token
    assert value == b"v"


async def test_lock_and_fetch_of_another_type_is_a_miss(redis_inv_backend: RedisBackend) -> None:
    backend = redis_inv_backend
    k = key(25)
    await backend.client.rpush(k, b"x")
    token, value = await backend.lock_and_fetch(k + b":lock", 10_000, k)
    assert token is not None
    assert value is None
