"""RedisBackend and RedisLockManager over a real local Redis Cluster (3 masters)."""

from __future__ import annotations

import pytest
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio.cluster import RedisCluster

from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.locks.redis import RedisLockManager
from tests.support.servers import LocalCluster

pytestmark = [pytest.mark.redis, pytest.mark.cluster]


def keys_on_every_node(client: RedisCluster) -> list[bytes]:
    """One cache-shaped key (``<prefix>:{<hex>}``) per master, found by slot."""
    by_node: dict[str, bytes] = {}
    masters = {node.name for node in client.get_primaries()}
    assert masters, "the cluster client is not initialised yet"
    i = 0
    while set(by_node) != masters:
        key = b"p:{%032x}" % i
        node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
        by_node.setdefault(node.name, key)
        i += 1
    return list(by_node.values())


async def test_fetch_store_delete_on_every_node(redis_cluster_client: RedisCluster) -> None:
    backend = RedisBackend(redis_cluster_client)
    assert backend.is_cluster
    keys = keys_on_every_node(redis_cluster_client)
    assert len(keys) == 3
    for n, key in enumerate(keys):
        await backend.store(key, b"entry-%d\x00\xff" % n, 60_000)
    for n, key in enumerate(keys):
        assert await backend.fetch(key) == b"entry-%d\x00\xff" % n
        assert 50_000 < await redis_cluster_client.pttl(key) <= 60_000
    # one call, keys in three slots on three nodes
    assert await backend.delete(*keys, b"p:{absent}") == 3
    for key in keys:
        assert await backend.fetch(key) is None


async def test_seed_methods_on_the_cluster(redis_cluster_client: RedisCluster) -> None:
    backend = RedisBackend(redis_cluster_client)
    assert await backend.set("seed:{c}", b"v", ttl=9) is True
    assert await backend.set("seed:{c}", b"w", ttl=9, nx=True) is None
    ttl, raw = await backend.get("seed:{c}")
    assert raw == b"v"
    assert 8_000 < ttl <= 9_000


async def test_lock_key_is_in_the_entry_keys_slot(redis_cluster_client: RedisCluster) -> None:
    for key in keys_on_every_node(redis_cluster_client):
        slot = await redis_cluster_client.cluster_keyslot(key)
        assert await redis_cluster_client.cluster_keyslot(key + b":lock") == slot
        assert slot == redis_cluster_client.keyslot(key)


async def test_lock_scripts_on_every_node(redis_cluster_client: RedisCluster) -> None:
    backend = RedisBackend(redis_cluster_client)
    locks = RedisLockManager(backend)
    for key in keys_on_every_node(redis_cluster_client):
        lock_key = key + b":lock"
        token = await locks.try_lock(lock_key, 2_000)
        assert token is not None
        assert await locks.try_lock(lock_key, 2_000) is None
        assert await locks.unlock(lock_key, "wrong") is False
        assert await locks.extend(lock_key, "wrong", 60_000) is False
        assert await locks.extend(lock_key, token, 60_000) is True
        assert await redis_cluster_client.pttl(lock_key) > 50_000
        assert await locks.unlock(lock_key, token) is True
        assert await redis_cluster_client.exists(lock_key) == 0


async def test_junk_at_a_lock_key_is_taken_over_on_every_node(
    redis_cluster_client: RedisCluster,
) -> None:
    """A lock key without an expiry (junk: every lock has one) is replaced by the lock, by
    the store's lock_and_fetch and by the lock manager's try_lock, in the key's slot."""
    backend = RedisBackend(redis_cluster_client)
    locks = RedisLockManager(backend)
    for key in keys_on_every_node(redis_cluster_client):
        lock_key = key + b":lock"
        await redis_cluster_client.set(lock_key, b"\xff\x00junk")
        token, value = await backend.lock_and_fetch(lock_key, 2_000, key)
        assert (token is not None, value) == (True, None)
        assert await redis_cluster_client.get(lock_key) == token.encode()
        assert 0 < await redis_cluster_client.pttl(lock_key) <= 2_000
        await redis_cluster_client.delete(lock_key)
        await redis_cluster_client.rpush(lock_key, b"a")  # another type, no expiry
        token = await locks.try_lock(lock_key, 2_000)
        assert token is not None
        assert await redis_cluster_client.get(lock_key) == token.encode()
        assert await locks.unlock(lock_key, token) is True


async def test_lock_scripts_reload_on_every_node(redis_cluster_client: RedisCluster) -> None:
    locks = RedisLockManager(RedisBackend(redis_cluster_client))
    await redis_cluster_client.script_flush()  # sent to every primary
    assert await redis_cluster_client.script_exists(locks._unlock.sha) == [False]
    for key in keys_on_every_node(redis_cluster_client):
        token = await locks.try_lock(key + b":lock", 2_000)
        assert token is not None
        assert await locks.unlock(key + b":lock", token) is True


async def test_seed_lock_methods_on_the_cluster(redis_cluster_client: RedisCluster) -> None:
    locks = RedisLockManager(RedisBackend(redis_cluster_client))
    assert await locks.acquire("seed:{lock}") is True
    assert await locks.acquire("seed:{lock}") is False
    assert await locks.release("seed:{lock}") is True


async def test_cluster_connections_use_hiredis(redis_cluster_client: RedisCluster) -> None:
    backend = RedisBackend(redis_cluster_client)
    assert backend.parser_class is _AsyncHiredisParser


async def test_from_url_on_the_cluster(redis_cluster: LocalCluster) -> None:
    host, port = redis_cluster.nodes[0]
    backend = RedisBackend.from_url(f"redis://{host}:{port}", cluster=True)
    try:
        assert backend.is_cluster
        await backend.store(b"p:{first}", b"v", 60_000)  # the client learns the slot map
        keys = keys_on_every_node(backend.client)  # type: ignore[arg-type]
        assert len(keys) == 3
        for key in keys:
            await backend.store(key, b"v", 60_000)
        assert [await backend.fetch(key) for key in keys] == [b"v"] * len(keys)
        assert await backend.delete(*keys) == len(keys)
    finally:
        await backend.close()
