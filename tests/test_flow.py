"""Concurrent lookups of one key share one backend call (``Runtime.fetches``).

A backend whose fetch waits on a gate makes the sharing deterministic: the first lookup is
held inside the backend while the others arrive (``call_soon`` runs callbacks in order, so
every follower has reached the shared call before the gate opens). A real Redis shows the
same under load in docs/benchmarks.md (end to end); tests/test_hitfirst.py and the Redis
tests check that a single request still makes exactly one GET.
"""

from __future__ import annotations

import asyncio

import pytest

from fastapi_cachemate import BaseCacheSettings, metrics
from fastapi_cachemate._runtime.flow import Flow, Runtime
from fastapi_cachemate.core.backends.memory import MemoryBackend
from fastapi_cachemate.core.locks.memory import MemoryLockManager

KEY = b"test:{fetch-flight}"


class GatedBackend(MemoryBackend):
    """A MemoryBackend whose fetch waits for ``gate`` (or raises ``error``), counted."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0
        self.error: Exception | None = None

    async def fetch(self, key: bytes) -> bytes | None:
        self.calls += 1
        self.entered.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await super().fetch(key)


def _flows(backend: GatedBackend, n: int) -> list[Flow]:
    settings = BaseCacheSettings(backend_timeout=5)
    runtime = Runtime(settings)  # not in_process: lookups go through the breaker and share
    locks = MemoryLockManager(backend)
    stats = metrics.endpoint("fetch-flight")
    return [
        Flow(
            runtime,
            backend,
            locks,
            settings,
            KEY,
            stale_while_revalidate=0,
            stale_if_error=0,
            stats=stats,
        )
        for _ in range(n)
    ]


async def _fetch_together(backend: GatedBackend, flows: list[Flow]) -> list[bytes | None]:
    leader = asyncio.ensure_future(flows[0].fetch())
    await backend.entered.wait()
    followers = [asyncio.ensure_future(flow.fetch()) for flow in flows[1:]]
    asyncio.get_running_loop().call_soon(backend.gate.set)  # after the followers' first step
    return [await leader, *await asyncio.gather(*followers)]


async def test_concurrent_lookups_of_a_key_share_one_backend_call(
    clean_cache_setup: None,
) -> None:
    backend = GatedBackend()
    await backend.store(KEY, b"entry-bytes", 60_000)
    flows = _flows(backend, 8)
    results = await _fetch_together(backend, flows)
    assert results == [b"entry-bytes"] * 8
    assert backend.calls == 1
    # the next lookup is a call of its own (nothing is kept once the call ends)
    assert await flows[0].fetch() == b"entry-bytes"
    assert backend.calls == 2


async def test_a_failed_shared_lookup_is_a_miss_for_all_and_reported_once(
    clean_cache_setup: None,
) -> None:
    backend = GatedBackend()
    backend.error = ConnectionError("refused")
    flows = _flows(backend, 5)
    before = metrics.endpoint("fetch-flight").snapshot().get("backend_errors", 0)
    results = await _fetch_together(backend, flows)
    assert results == [None] * 5
    assert all(flow.down for flow in flows)  # no more backend calls in these requests
    assert backend.calls == 1
    assert metrics.endpoint("fetch-flight").snapshot()["backend_errors"] == before + 1


async def test_a_cancelled_lookup_hands_over_to_a_follower(clean_cache_setup: None) -> None:
    """The leader's request is gone (client disconnect): a follower makes the call."""
    backend = GatedBackend()
    await backend.store(KEY, b"entry-bytes", 60_000)
    flows = _flows(backend, 3)
    leader = asyncio.ensure_future(flows[0].fetch())
    await backend.entered.wait()
    followers = [asyncio.ensure_future(flow.fetch()) for flow in flows[1:]]
    loop = asyncio.get_running_loop()
    loop.call_soon(leader.cancel)  # after the followers' first step
    loop.call_soon(backend.gate.set)
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await asyncio.gather(*followers) == [b"entry-bytes"] * 2
    # the cancelled call, then the follower that took over (the other follower may find that
    # call already over and make its own)
    assert backend.calls >= 2
