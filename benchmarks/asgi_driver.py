"""In-process ASGI driver: calls ``app(scope, receive, send)`` directly, no HTTP client.

Each loaded scenario runs its app's lifespan once, is warmed up and checked (status 200, the
expected JSON document, the library's hit header), then timed in rounds: a round is ``n``
sequential requests on one event loop, and its per-request cost is the round's wall time over
``n``. The caller interleaves rounds of several loaded scenarios and takes medians.

Used two ways, with the same code:
- imported (``from benchmarks.asgi_driver import Driver``) by the harness, in our venv;
- run by path in another virtual environment (the seed library's) as a worker:
  ``<venv>/bin/python benchmarks/asgi_driver.py --worker`` reads one JSON command per line on
  stdin and answers one JSON line on stdout (see ``_serve``).

The script's own directory is on sys.path in both cases, so ``import app_scenarios`` works;
it must not run from the repository root in another venv (``fastapi_cachemate`` there would be
ours, not the seed's): the harness starts it with cwd set to a scratch directory.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

if TYPE_CHECKING:
    from benchmarks import app_scenarios
else:  # a top-level module: the same file in our venv and in the seed's
    import app_scenarios

__all__ = ["Driver", "Loaded", "app_scenarios", "versions"]

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_REQUEST = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT = {"type": "http.disconnect"}


def _scope(path: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench.local"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": state,
    }


class _Lifespan:
    """Runs the app's lifespan protocol in a task: startup() then shutdown()."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except BaseException as exc:  # reported through the outbox, then re-raised
            await self._outbox.put({"type": "lifespan.crashed", "message": repr(exc)})
            raise

    async def _step(self, event: str) -> None:
        await self._inbox.put({"type": f"lifespan.{event}"})
        message = await asyncio.wait_for(self._outbox.get(), timeout=30)
        if message["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"lifespan {event}: {message}")

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._step("startup")

    async def shutdown(self) -> None:
        await self._step("shutdown")
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=30)


@dataclass
class Loaded:
    name: str
    size: str
    built: app_scenarios.Built
    lifespan: _Lifespan
    next_id: int = 2


class _Recorder:
    """The send callable of the checked requests: keeps status, headers and body."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


class Driver:
    """Loaded scenarios, each measurable by rounds."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.loaded: dict[str, Loaded] = {}
        self.errors = 0

    async def load(self, key: str, scenario: str, size: str) -> dict[str, Any]:
        """Build, start and check a scenario; raises app_scenarios.Unavailable or RuntimeError."""
        built = app_scenarios.build(scenario, size, self.redis_url)
        lifespan = _Lifespan(built.app)
        await lifespan.startup()
        loaded = Loaded(scenario, size, built, lifespan)
        self.loaded[key] = loaded
        try:
            info = await self._check(loaded)
        except BaseException:
            await self.unload(key)
            raise
        return info

    async def _one(self, loaded: Loaded, send: Any) -> None:
        if loaded.built.fresh_keys:
            item_id = loaded.next_id
            loaded.next_id += 1
        else:
            item_id = 1
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return _DISCONNECT
            sent = True
            return _REQUEST

        path = f"/items/{item_id}"
        await loaded.built.app(_scope(path, dict(loaded.lifespan.state)), receive, send)

    async def _check(self, loaded: Loaded) -> dict[str, Any]:
        count = app_scenarios.SIZES[loaded.size]
        for _ in range(3):  # the first fills the cache, the others hit
            recorder = _Recorder()
            item_id = loaded.next_id if loaded.built.fresh_keys else 1
            await self._one(loaded, recorder)
            if recorder.status != 200:
                raise RuntimeError(
                    f"{loaded.name}: status {recorder.status}: {recorder.body[:200]!r}"
                )
            got = json.loads(bytes(recorder.body))
            want = json.loads(app_scenarios.expected_body(item_id, count))
            if got != want:
                raise RuntimeError(f"{loaded.name}: the body is not the expected document")
        hit = loaded.built.hit_header
        if hit is not None and recorder.headers.get(hit[0]) != hit[1]:
            raise RuntimeError(
                f"{loaded.name}: no hit after warm-up ({hit[0]}: {recorder.headers.get(hit[0])!r})"
            )
        return {"body_bytes": len(recorder.body), "headers": recorder.headers}

    async def run(self, key: str, n: int) -> float:
        """n sequential requests; the mean wall time per request in microseconds."""
        return (await self.timed(key, n))[0]

    async def timed(self, key: str, n: int, *, collect: bool = True) -> tuple[float, float]:
        """n sequential requests; (wall, CPU time of this process) per request, in µs.

        The CPU time leaves out the waits (for Redis, and for the CPU when the machine is
        busy): on a shared machine it is the steadier measure of what the library costs.
        """
        loaded = self.loaded[key]
        app = loaded.built.app
        state = loaded.lifespan.state
        fresh = loaded.built.fresh_keys
        paths = [f"/items/{loaded.next_id + i}" if fresh else "/items/1" for i in range(n)]
        if fresh:
            loaded.next_id += n
        bad = 0

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal bad
            if message["type"] == "http.response.start" and message["status"] != 200:
                bad += 1

        if collect:
            gc.collect()
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        for path in paths:
            done = False

            async def receive() -> dict[str, Any]:
                nonlocal done
                if done:
                    return _DISCONNECT
                done = True
                return _REQUEST

            await app(_scope(path, state.copy()), receive, send)
        elapsed = time.perf_counter_ns() - t0
        cpu = time.process_time_ns() - c0
        if bad:
            raise RuntimeError(f"{loaded.name}: {bad} of {n} requests failed")
        return elapsed / n / 1000.0, cpu / n / 1000.0

    async def calibrate(self, key: str, target_s: float) -> int:
        """Warm up, then the request count for a round of about target_s seconds."""
        n = 10
        while True:
            us = await self.run(key, n)
            if us * n >= 0.05e6 or n >= 100_000:
                break
            n *= 4
        return max(10, int(target_s * 1e6 / us))

    async def unload(self, key: str) -> None:
        loaded = self.loaded.pop(key)
        await loaded.lifespan.shutdown()

    async def unload_all(self) -> None:
        for key in list(self.loaded):
            await self.unload(key)

    async def profile(self, key: str, n: int, limit: int = 25) -> str:
        """cProfile of n requests of a loaded scenario (sorted by own time), as text."""
        import cProfile
        import io
        import pstats

        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await self.timed(key, n, collect=False)
        finally:
            profiler.disable()
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("tottime").print_stats(limit)
        return buf.getvalue()


def versions(names: list[str]) -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:
        pass
    else:
        out["redis-py parser"] = "hiredis" if HIREDIS_AVAILABLE else "pure Python"
    return out


async def _serve() -> None:
    """Worker: one JSON command per stdin line, one JSON answer per stdout line.

    {"op": "init", "redis_url": ...}                     -> {"ok": true}
    {"op": "load", "key": k, "scenario": s, "size": z}   -> {"ok": true, "info": {...}}
                                                            | {"ok": false, "unavailable": msg}
    {"op": "calibrate", "key": k, "target_s": t}         -> {"ok": true, "n": n}
    {"op": "run", "key": k, "n": n}                      -> {"ok": true, "us": w, "cpu_us": c}
    {"op": "unload", "key": k}                           -> {"ok": true}
    {"op": "versions", "names": [...]}                   -> {"ok": true, "versions": {...}}
    {"op": "exit"}
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    driver = Driver("")
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "exit":
                break
            if op == "init":
                driver.redis_url = cmd["redis_url"]
                answer: dict[str, Any] = {"ok": True}
            elif op == "load":
                try:
                    info = await driver.load(cmd["key"], cmd["scenario"], cmd["size"])
                    answer = {"ok": True, "info": info}
                except app_scenarios.Unavailable as exc:
                    answer = {"ok": False, "unavailable": str(exc)}
            elif op == "calibrate":
                answer = {"ok": True, "n": await driver.calibrate(cmd["key"], cmd["target_s"])}
            elif op == "run":
                wall, cpu = await driver.timed(cmd["key"], cmd["n"])
                answer = {"ok": True, "us": wall, "cpu_us": cpu}
            elif op == "unload":
                await driver.unload(cmd["key"])
                answer = {"ok": True}
            elif op == "versions":
                answer = {"ok": True, "versions": versions(cmd["names"])}
            else:
                answer = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as exc:  # reported to the harness, which fails the scenario
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    await driver.unload_all()


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:
        sys.exit("usage: python asgi_driver.py --worker")
    asyncio.run(_serve())
