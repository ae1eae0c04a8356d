"""The CLI against a real local Redis Cluster (3 masters): SCAN on every primary, GET and
UNLINK per key (any slot)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from redis.cluster import ClusterNode, RedisCluster

from fastapi_cachemate import _native
from tests.support.cli import PREFIX, cli, entry
from tests.support.servers import LocalCluster

pytestmark = [pytest.mark.redis, pytest.mark.cluster]

KEYS = [f"{PREFIX}:{{{i:032x}}}" for i in range(1, 31)]  # spread over the slots


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> Iterator[tuple[RedisCluster, str]]:
    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in redis_cluster.nodes])
    client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    host, port = redis_cluster.nodes[0]
    try:
        yield client, f"redis://{host}:{port}/0"
    finally:
        client.flushdb(target_nodes=RedisCluster.PRIMARIES)
        client.close()


def test_cli_on_a_cluster(cluster: tuple[RedisCluster, str]) -> None:
    client, url = cluster
    slots = {client.keyslot(k) for k in KEYS}
    nodes = {client.get_node_from_key(k).name for k in KEYS}
    assert len(nodes) == 3, "the keys must live on every master"
    blobs = {}
    for i, key in enumerate(KEYS):
        blobs[key] = entry(b"x" * (100 * i), tags=("even",) if i % 2 == 0 else ("odd",))
        client.set(key, blobs[key])
    client.set(KEYS[0] + ":lock", b"t")
    assert len(slots) > 3

    stats = cli("stats", "--url", url, "--cluster", "--decode", "--json")
    assert stats.returncode == 0, stats.stderr
    result = json.loads(stats.stdout)
    assert result["entries"] == len(KEYS)
    assert result["entry_bytes"] == sum(len(b) for b in blobs.values())
    assert result["locks"] == 1
    assert result["tags"] == {"even": 15, "odd": 15}
    plain = json.loads(cli("stats", "--url", url, "--cluster", "--json").stdout)
    assert plain["entry_bytes"] == result["entry_bytes"]

    info = json.loads(cli("inspect", KEYS[7], "--url", url, "--cluster", "--json").stdout)
    assert info["size_body"] == 700
    assert info["etag"] == _native.body_etag(b"x" * 700).decode()

    odd = cli("purge", "--url", url, "--cluster", "--tag", "odd", "--scan", "--json")
    assert odd.returncode == 0, odd.stderr
    assert json.loads(odd.stdout)["entries"] == 15
    assert sum(client.exists(k) for k in KEYS) == 15

    everything = cli("purge", "--url", url, "--cluster", "--namespace", PREFIX, "--scan")
    assert everything.returncode == 0, everything.stderr
    assert "removed 15 entries" in everything.stdout
    assert sum(client.exists(k) for k in KEYS) == 0
    assert client.exists(KEYS[0] + ":lock") == 0
