"""Namespace invalidation over 100,000 entries does not block Redis.

Another client (tests/support/pinger.py, its own process) PINGs in a loop all along. The one
latency assertion (no PING waits for long) is made against a baseline measured in the same
test on the same server: the stall of clearing as many entries the blocking way (one
script running KEYS and UNLINK, what the libraries that offer a namespace clear do), seen
by the same PING loop and by the server's SLOWLOG. Our invalidation runs only bounded
commands (SCAN COUNT 1000, pipelines of short scripts), so no PING waits for more than a
small part of that stall; the test also checks that PINGs kept being answered throughout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from fastapi_cachemate.core import layout
from fastapi_cachemate.core.backends.redis import RedisBackend
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ENTRIES = 100_000
LOCKS = 500  # computations in flight
PREFIX = "ns"
OTHER = "other"  # another namespace on the same server: left alone

# One call creates keys from ARGV[2] to ARGV[3]: <prefix>:{<32 hex>}[suffix].
LOAD_SCRIPT = """\
local value, ttl, suffix = ARGV[4], ARGV[5], ARGV[6]
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
    redis.call("SET", ARGV[1] .. ":{" .. string.format("%032x", i) .. "}" .. suffix,
               value, "PX", ttl)
end
return 1
"""


async def bulk_load(
    client: aioredis.Redis, prefix: str, first: int, last: int, suffix: str
) -> None:
    """Create the keys server-side, 10,000 per script call (the server is not timed yet)."""
    load = client.register_script(LOAD_SCRIPT)
    value = b"x" * 200
    for start in range(first, last + 1, 10_000):
        end = min(last, start + 9_999)
        await load(args=[prefix, start, end, value, 600_000, suffix])


class Pinger:
    def __init__(self, server: RedisServer) -> None:
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.pinger", server.host, str(server.port)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> list[tuple[float, float]]:
        out, _ = self.proc.communicate("stop\n", timeout=60)
        return [(sent, latency) for sent, latency in json.loads(out)]


def overlapping(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """Latencies of the PINGs waiting at some point in [start, end)."""
    return [lat for sent, lat in samples if sent < end and sent + lat >= start]


def sent_within(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """Latencies of the PINGs sent in [start, end) (not one stuck in what ran before)."""
    return [lat for sent, lat in samples if start <= sent < end]


BLOCKING_CLEAR_SCRIPT = """\
local keys = redis.call("KEYS", ARGV[1])
for i = 1, #keys, 1000 do
    redis.call("UNLINK", unpack(keys, i, math.min(i + 999, #keys)))
end
return #keys
"""


async def slowlog_worst_us(client: aioredis.Redis) -> tuple[int, int]:
    """(commands the server ran for 1 ms or more since the last SLOWLOG RESET, the longest
    one in microseconds)."""
    entries = await client.slowlog_get(1024)
    return len(entries), max((int(e["duration"]) for e in entries), default=0)


async def test_namespace_invalidation_of_100k_entries_does_not_block(
    redis_process: RedisServer,
) -> None:
    client = aioredis.Redis(host=redis_process.host, port=redis_process.port)
    try:
        await client.config_set("slowlog-log-slower-than", 1000)
        await client.config_set("slowlog-max-len", 1024)
        await bulk_load(client, PREFIX, 1, ENTRIES, "")
        await bulk_load(client, PREFIX, ENTRIES + 1, ENTRIES + LOCKS, ":lock")
        await bulk_load(client, OTHER, 1, ENTRIES, "")
        await bulk_load(client, "kept", 1, 10, "")
        assert await client.dbsize() == 2 * ENTRIES + LOCKS + 10
        backend = RedisBackend(client)
        clear_blocking = client.register_script(BLOCKING_CLEAR_SCRIPT)

        pinger = Pinger(redis_process)
        try:
            # the baseline: the other namespace cleared the blocking way (one script: KEYS
            # and UNLINK), as the libraries that offer a namespace clear do
            await client.slowlog_reset()
            start = time.monotonic()
            assert await clear_blocking(args=[f"{OTHER}:*"]) == ENTRIES
            blocking = (start, time.monotonic())
            _, blocking_us = await slowlog_worst_us(client)
            await client.slowlog_reset()
            start = time.monotonic()
            removed = await backend.invalidate_namespace(PREFIX)
            ours = (start, time.monotonic())
            slow_commands, ours_us = await slowlog_worst_us(client)
        finally:
            samples = pinger.stop()

        assert removed == ENTRIES
        stalled = max(overlapping(samples, *blocking))
        during = sent_within(samples, *ours)
        worst = max(during)
        report = (
            f"invalidation of {ENTRIES} entries: {ours[1] - ours[0]:.2f} s, "
            f"{len(during)} PINGs answered meanwhile, worst {worst * 1000:.2f} ms, "
            f"longest server command {ours_us / 1000:.2f} ms ({slow_commands} >= 1 ms); "
            f"the blocking clear of as many: one command of {blocking_us / 1000:.2f} ms, "
            f"a PING waited {stalled * 1000:.2f} ms"
        )
        print(report)
        # the server never ran one long command: ours are bounded, the blocking one is not
        assert ours_us * 5 < blocking_us, report
        # another client was answered all along: many PINGs, none waiting anywhere near
        # what the blocking clear made one wait (machine noise included on both sides)
        assert len(during) > 100, report
        assert worst * 2 < stalled, report

        # every entry is gone, every in-flight computation is fenced, other keys stay
        for i in range(1, ENTRIES + LOCKS + 1, 997):
            k = b"ns:{%032x}" % i
            assert await client.exists(k) == 0
            # bumped (twice when the scan met the generation key its own bump created)
            assert int(await client.get(layout.generation_key(k)) or 0) >= 1
        assert await client.exists(b"kept:{%032x}" % 1) == 1
    finally:
        await client.aclose()
