"""MemoryBackend: expiry on its clock, the byte budget with LRU eviction, the seed's get."""

from __future__ import annotations

import pytest

from fastapi_cachemate._kernels import IMPLEMENTATION, kernels
from fastapi_cachemate.core.backends.memory import DEFAULT_MAX_BYTES, MemoryBackend
from tests.support.clock import FakeClock

TICK = 2.0**-10  # seconds, exactly representable (about 0.98 ms)


def test_it_runs_on_the_selected_kernels() -> None:
    backend = MemoryBackend()
    assert type(backend.client) is kernels.MemoryStore
    assert backend.client.max_bytes == DEFAULT_MAX_BYTES
    assert IMPLEMENTATION in {"c", "python"}


async def test_entries_expire_on_the_clock() -> None:
    clock = FakeClock(500.0)
    backend = MemoryBackend(clock=clock)
    await backend.store(b"p:{e}", b"v", 1_500)
    clock.now += 1.5 - TICK  # binary-exact steps: no float rounding at the boundary
    assert await backend.fetch(b"p:{e}") == b"v"
    clock.now += TICK
    assert await backend.fetch(b"p:{e}") is None


async def test_seed_get_returns_the_remaining_ttl_in_ms() -> None:
    clock = FakeClock(500.0)
    backend = MemoryBackend(clock=clock)
    await backend.set("seed", b"v", ttl=10)
    clock.now += 2.5
    assert await backend.get("seed") == (7_500, b"v")
    clock.now += 7.5 - TICK
    ttl, raw = await backend.get("seed")
    assert raw == b"v"
    assert ttl == 1  # 0.98 ms rounded up: a live key never reports 0 ms
    clock.now += TICK
    assert await backend.get("seed") == (-2, None)


async def test_seed_set_nx_takes_an_expired_key() -> None:
    clock = FakeClock(500.0)
    backend = MemoryBackend(clock=clock)
    assert await backend.set("seed", b"a", ttl=1, nx=True) is True
    assert await backend.set("seed", b"b", ttl=1, nx=True) is None
    clock.now += 1
    assert await backend.set("seed", b"c", ttl=1, nx=True) is True
    assert await backend.get("seed") == (1_000, b"c")


@pytest.mark.parametrize("ttl", [0, -1])
async def test_seed_set_rejects_a_non_positive_ttl(ttl: int) -> None:
    backend = MemoryBackend()
    with pytest.raises(ValueError, match="ttl must be positive"):
        await backend.set("seed", b"v", ttl=ttl)


async def test_the_byte_budget_evicts_the_least_recently_used() -> None:
    backend = MemoryBackend(max_bytes=4_096)
    value = b"x" * 900
    for i in range(4):
        await backend.store(b"k%d" % i, value, 60_000)
    assert await backend.fetch(b"k0") == value  # k0 is now the most recent
    await backend.store(b"k4", value, 60_000)  # over budget: k1 (least recent) goes
    store = backend.client
    assert store.nbytes <= store.max_bytes
    assert store.evictions >= 1
    assert await backend.fetch(b"k1") is None
    assert await backend.fetch(b"k0") == value
    assert await backend.fetch(b"k4") == value


async def test_a_value_larger_than_the_budget_is_not_stored() -> None:
    backend = MemoryBackend(max_bytes=2_048)
    await backend.store(b"big", b"x" * 4_096, 60_000)
    assert await backend.fetch(b"big") is None
    assert backend.client.nbytes == 0


async def test_store_accepts_buffers() -> None:
    backend = MemoryBackend()
    await backend.store(b"p:{b}", bytearray(b"abc"), 1_000)  # type: ignore[arg-type]
    await backend.store(b"p:{m}", memoryview(b"def"), 1_000)  # type: ignore[arg-type]
    assert await backend.fetch(b"p:{b}") == b"abc"
    assert await backend.fetch(b"p:{m}") == b"def"


async def test_close_empties_the_store_and_can_be_repeated() -> None:
    backend = MemoryBackend()
    await backend.store(b"p:{c}", b"v", 60_000)
    await backend.close()
    await backend.close()
    assert len(backend.client) == 0
    assert backend.client.nbytes == 0


@pytest.mark.parametrize(
    ("max_bytes", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)],
)
def test_max_bytes_is_validated(max_bytes: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_bytes"):
        MemoryBackend(max_bytes=max_bytes)  # type: ignore[arg-type]


async def test_ttl_is_measured_in_milliseconds() -> None:
    clock = FakeClock(500.0)
    backend = MemoryBackend(clock=clock)
    await backend.store(b"p:{ms}", b"v", 1)
    ttl, _ = await backend.get("p:{ms}")
    assert ttl == 1
    clock.now += 2 * TICK  # 1.95 ms later
    assert await backend.fetch(b"p:{ms}") is None


def test_entries_are_kept_raw_unless_asked() -> None:
    # A hit on the in-process store must not pay for decompression (docs/design.md).
    assert MemoryBackend().compress_entries is False
    assert MemoryBackend(compress=True).compress_entries is True
