"""NearCache's rules, message by message (the race of docs/design.md, "Near cache"), and
the RedisBackend wiring on a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

import pytest
import redis.asyncio as aioredis

from fastapi_cachemate._kernels import kernels
from fastapi_cachemate.core.backends.near import COUNTERS, NearCache, near_copy
from fastapi_cachemate.core.backends.redis import RedisBackend
from fastapi_cachemate.core.backends.tracking import Tracker, invalidated_keys
from tests.support.servers import RedisServer

KEY = b"p:{0123456789abcdef0123456789abcdef}"
FP = b"fp-12345"


def entry(body: bytes, *, ttl: float = 60.0, compression: int = kernels.COMPRESS_DISABLED) -> bytes:
    return kernels.write_entry(
        status=200,
        headers=[(b"content-type", b"text/plain")],
        body=body,
        created=time.time(),
        ttl=ttl,
        fingerprint=FP,
        compression=compression,
    )


def ready_cache() -> NearCache:
    near = NearCache(1 << 20, "p")
    near.set_ready(True, "test")
    return near


def fill(near: NearCache, key: bytes, raw: bytes) -> None:
    fetch = near.begin_fetch(key)
    assert fetch is not None
    near.end_fetch(fetch, raw)


def test_a_fetch_is_kept_and_served() -> None:
    near = ready_cache()
    fill(near, KEY, entry(b"v1"))
    raw = near.get(KEY, True)
    assert raw is not None
    read = kernels.read_entry(raw, time.time(), FP)
    assert read is not None
    assert read.body == b"v1"


def test_an_invalidation_that_arrives_before_the_reply_voids_it() -> None:
    """The classic race: the GET read the old value, the invalidation of the write that
    followed it arrived (on the tracking connection) before the GET's reply."""
    near = ready_cache()
    fetch = near.begin_fetch(KEY)
    assert fetch is not None
    near.invalidated([KEY])
    near.end_fetch(fetch, entry(b"old"))
    assert near.get(KEY, True) is None


def test_an_invalidation_after_the_reply_evicts_the_copy() -> None:
    near = ready_cache()
    fill(near, KEY, entry(b"old"))
    before = COUNTERS.near_invalidations
    near.invalidated([KEY])
    assert near.get(KEY, True) is None
    assert COUNTERS.near_invalidations == before + 1


def test_a_flush_or_a_lost_channel_voids_fetches_in_flight() -> None:
    for lose in (lambda n: n.invalidated(None), lambda n: n.set_ready(False, "lost")):
        near = ready_cache()
        fill(near, b"p:{other}", entry(b"x"))
        fetch = near.begin_fetch(KEY)
        assert fetch is not None
        lose(near)
        near.set_ready(True, "back")
        near.end_fetch(fetch, entry(b"old"))
        assert near.get(KEY, True) is None
        assert near.get(b"p:{other}", True) is None


def test_nothing_is_served_or_kept_while_not_ready() -> None:
    near = NearCache(1 << 20, "p")
    assert near.begin_fetch(KEY) is None
    near.set_ready(True, "up")
    fill(near, KEY, entry(b"v"))
    near.set_ready(False, "down")
    assert near.get(KEY, True) is None


def test_an_open_breaker_flushes_and_serves_nothing() -> None:
    near = ready_cache()
    fill(near, KEY, entry(b"v"))
    assert near.get(KEY, False) is None
    assert near.get(KEY, True) is None  # flushed, not just hidden


def test_the_own_writes_invalidation_does_not_void_a_fetch_that_began_after_its_ack() -> None:
    near = ready_cache()
    near.writing(KEY)
    near.written(KEY, True)
    fetch = near.begin_fetch(KEY)  # the GET after the acknowledged store
    assert fetch is not None
    near.invalidated([KEY])  # the store's own invalidation, late
    near.end_fetch(fetch, entry(b"new"))
    assert near.get(KEY, True) is not None


def test_a_second_invalidation_voids_it() -> None:
    near = ready_cache()
    near.writing(KEY)
    near.written(KEY, True)
    fetch = near.begin_fetch(KEY)
    assert fetch is not None
    near.invalidated([KEY])  # ours
    near.invalidated([KEY])  # someone else's write, after
    near.end_fetch(fetch, entry(b"maybe old"))
    assert near.get(KEY, True) is None


def test_a_fetch_that_began_before_the_ack_is_not_exempt() -> None:
    """Its GET may have run before the write: the write's invalidation must void it."""
    near = ready_cache()
    near.writing(KEY)
    fetch = near.begin_fetch(KEY)
    assert fetch is not None
    near.written(KEY, True)
    near.invalidated([KEY])
    near.end_fetch(fetch, entry(b"old"))
    assert near.get(KEY, True) is None


def test_a_refused_store_counts_no_invalidation_of_its_own() -> None:
    near = ready_cache()
    near.writing(KEY)
    near.written(KEY, False)  # refused (generation) or failed: no invalidation is due
    fetch = near.begin_fetch(KEY)
    assert fetch is not None
    near.invalidated([KEY])  # so this one is someone else's
    near.end_fetch(fetch, entry(b"old"))
    assert near.get(KEY, True) is None


def test_a_compressed_entry_is_kept_uncompressed() -> None:
    body = b"abcdefgh" * 4096
    raw = entry(body, compression=kernels.COMPRESS_ALL)
    copy = near_copy(raw)
    assert copy is not None
    value, ends = copy
    assert len(value) > len(body) > len(raw)
    read = kernels.read_entry(value, time.time(), FP)
    assert read is not None
    assert read.body == body
    assert ends == pytest.approx(time.time() + 60, abs=5)


def test_bytes_that_are_not_an_entry_are_never_kept() -> None:
    near = ready_cache()
    for junk in (b"", b"not an entry", kernels.packb([1, 2, 3]), kernels.packb("cmE")):
        fill(near, KEY, junk)
        assert near.get(KEY, True) is None


def test_an_expired_entry_is_not_kept() -> None:
    near = ready_cache()
    fill(near, KEY, kernels.write_entry(status=200, headers=[], body=b"", created=1.0, ttl=1.0))
    assert near.get(KEY, True) is None


def test_the_byte_budget_bounds_it() -> None:
    near = NearCache(64 * 1024, "p")
    near.set_ready(True, "test")
    for i in range(100):
        fill(near, b"p:{%032d}" % i, entry(b"x" * 4000))
    assert near.nbytes <= 64 * 1024
    assert 0 < len(near) < 100


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ([b"invalidate", [b"a", b"b"]], (True, [b"a", b"b"])),
        ([b"invalidate", None], (True, None)),
        ([b"message", b"__redis__:invalidate", [b"a"]], (True, [b"a"])),
        (["message", "__redis__:invalidate", None], (True, None)),
        ([b"message", b"other", [b"a"]], (False, None)),
        ([b"pong", b""], (False, None)),
        (b"PONG", (False, None)),
    ],
)
def test_invalidation_messages_of_resp2_and_resp3(message: object, expected: object) -> None:
    assert invalidated_keys(message) == expected


def test_near_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        NearCache(0, "p")


# --- on a real Redis -----------------------------------------------------------------------------


@pytest.fixture
async def backend(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(aioredis.Redis(host=redis_server.host, port=redis_server.port))
    backend.near = NearCache(1 << 20, "p")
    tracker = Tracker(backend.client, backend.near)
    backend.near.tracker = tracker
    tracker.ensure_running()
    try:
        yield backend
    finally:
        await tracker.aclose()
        await backend.close()


async def wait_ready(near: NearCache) -> None:
    await asyncio.wait_for(near.wait_ready(), 30)


async def copied(backend: RedisBackend, near: NearCache) -> None:
    """Fetch until the reply is kept (a fetch that the SET's own invalidation overtook is
    not: the race rule)."""
    for _ in range(1000):
        if near.get(KEY, True) is not None:
            return
        assert await backend.fetch(KEY) is not None
    raise AssertionError("no fetch was kept")


@pytest.mark.redis
async def test_a_write_by_another_client_evicts_the_copy(
    backend: RedisBackend, redis_client: aioredis.Redis
) -> None:
    near = backend.near
    assert near is not None
    await wait_ready(near)
    await redis_client.set(KEY, entry(b"v1"))
    await copied(backend, near)
    told = asyncio.Event()
    apply = near.invalidated

    def spy(keys: Iterable[bytes] | None) -> None:
        apply(keys)
        if keys is not None and KEY in keys:
            told.set()

    near.invalidated = spy  # type: ignore[method-assign]
    await redis_client.set(KEY, entry(b"v2"))
    await asyncio.wait_for(told.wait(), 30)
    assert near.get(KEY, True) is None
    raw = await backend.fetch(KEY)
    assert raw is not None
    read = kernels.read_entry(raw, time.time(), FP)
    assert read is not None
    assert read.body == b"v2"


@pytest.mark.redis
async def test_the_tracking_connection_honours_the_clients_db(
    redis_client: aioredis.Redis, backend: RedisBackend
) -> None:
    """One tracking connection (flag t, BCAST flag B), made like the client's own (same
    db)."""
    near = backend.near
    assert near is not None
    await wait_ready(near)
    await redis_client.set(KEY, entry(b"v1"))
    await copied(backend, near)
    clients = await redis_client.client_list()
    tracking = [c for c in clients if "t" in c["flags"] and "B" in c["flags"]]
    assert len(tracking) == 1
    assert tracking[0]["db"] == "0"


@pytest.mark.redis
def test_another_event_loop_restarts_tracking(redis_server: RedisServer) -> None:
    """An app run again in the same process (a new event loop): the copies made under the
    old loop's tracking are not served, and tracking starts again in the new loop."""
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
    near = NearCache(1 << 20, "p")
    tracker = Tracker(client, near)
    near.tracker = tracker

    async def first() -> None:
        await asyncio.wait_for(near.wait_ready(), 30)
        fill(near, KEY, entry(b"v1"))
        assert near.get(KEY, True) is not None

    async def second() -> None:
        assert near.get(KEY, True) is None
        await asyncio.wait_for(near.wait_ready(), 30)
        assert tracker.established == 2
        assert near.get(KEY, True) is None  # flushed
        await tracker.aclose()

    asyncio.run(first())
    asyncio.run(second())


def test_no_near_cache_for_a_cluster_client_that_reads_replicas() -> None:
    from redis.asyncio.cluster import RedisCluster
    from redis.cluster import LoadBalancingStrategy

    from fastapi_cachemate.core.backends.tracking import attach_near_cache

    strategy = LoadBalancingStrategy.ROUND_ROBIN
    client = RedisCluster(host="127.0.0.1", port=1, load_balancing_strategy=strategy)
    backend = RedisBackend(client)
    assert attach_near_cache(backend, "p", 1 << 20, None) is None
    assert backend.near is None
    plain = RedisBackend(RedisCluster(host="127.0.0.1", port=1))
    near = attach_near_cache(plain, "p", 1 << 20, None)
    assert near is not None
    assert plain.near is near
