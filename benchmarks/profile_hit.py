"""Profile one scenario's request path in process (for the work on our hit path).

    .venv/bin/python -m benchmarks.profile_hit ours_memory --size small --n 20000
        cProfile of n requests, sorted by own time (--sort cumulative for the call tree)
    .venv/bin/python -m benchmarks.profile_hit ours_memory --loop 30
        only runs the requests for 30 s and prints its pid first, to attach a sampling
        profiler:  py-spy record --native -p PID -o hit.svg   or   perf record -g -p PID

A redis-server is started on a free port for the Redis scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import sys
import time

from benchmarks.asgi_driver import Driver, app_scenarios
from benchmarks.servers import RedisServer


async def _main(args: argparse.Namespace, redis_url: str) -> None:
    driver = Driver(redis_url)
    info = await driver.load("p", args.scenario, args.size)
    print(f"{args.scenario}/{args.size}: {info['body_bytes']} bytes, headers {info['headers']}")
    try:
        await driver.run("p", 500)
        if args.loop:
            print(f"pid {os.getpid()}: looping for {args.loop} s", flush=True)
            deadline = time.monotonic() + args.loop
            while time.monotonic() < deadline:
                us = await driver.run("p", 2000)
            print(f"last batch: {us:.1f} µs per request")
            return
        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        us, _ = await driver.timed("p", args.n, collect=False)
        profiler.disable()
        if args.dump:
            profiler.dump_stats(args.dump)
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats(args.sort).print_stats(args.limit)
        print(buf.getvalue())
        print(f"{us:.1f} µs per request under cProfile")
    finally:
        await driver.unload("p")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_hit", description=__doc__)
    parser.add_argument("scenario", choices=sorted(app_scenarios.SCENARIOS))
    parser.add_argument("--size", default="small", choices=list(app_scenarios.SIZES))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--dump", help="also write the raw profile here (pstats format)")
    parser.add_argument("--loop", type=float, default=0.0, help="seconds to loop, no cProfile")
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(_main(args, server.url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
