"""``python -m benchmarks`` (``make bench``): every benchmark, then docs/benchmarks.md + plots.

1. the component benchmarks that exist (benchmarks/codec_*.py, stats_overhead.py: ``run() -> str``);
2. the app scenarios in process (asgi_driver.py): for each payload size, groups of scenarios
   loaded side by side and measured in interleaved rounds (round-robin, the starting scenario
   rotating), the seed library's scenarios in a worker process of its own venv;
3. Redis commands per hit (INFO commandstats deltas around N requests);
4. end to end: uvicorn + wrk, small payload;
5. docs/benchmarks.md and docs/bench-*.png, and the raw numbers in build/bench-results.json.

A redis-server is started on a free loopback port for the run and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import callgrind_hit, e2e, report

# the top-level module asgi_driver imports (one module object, one Unavailable class)
from benchmarks.asgi_driver import Driver, app_scenarios, versions
from benchmarks.peers import HERE as PEERS_DIR
from benchmarks.peers import Worker, WorkerError, ensure_twin_venv, ensure_venv
from benchmarks.report import SEED, TWIN
from benchmarks.servers import RedisServer

logger = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parent.parent
RAW_PATH = ROOT / "build" / "bench-results.json"
# component benchmarks written next to their code, each with run() -> str (markdown)
CODEC_MODULES = ("codec_msgpack", "codec_compress", "codec_entry", "stats_overhead")
# Scenario keys run in another venv: the seed's, and ours on the seed's versions (report.py)
VENV_PREFIXES = (SEED, TWIN)

# Scenarios measured side by side (interleaved rounds); "seed:" ones run in the seed venv.
GROUPS: dict[str, list[str]] = {
    "memory": ["floor", "nocache", "ours_memory", "fc2_memory"],
    "redis": [
        "floor",
        "floor_redis",
        "bare_get",
        "ours_redis",
        "seed:seed_redis",
        "fc2_redis",
        "cashews_redis",
        "seed:floor",
        "seed:floor_redis",
        "twin:ours_redis",
        "twin:floor",
        "twin:floor_redis",
        "twin:bare_get",
    ],
    "miss": ["floor", "floor_redis", "nocache", "ours_redis_miss"],
    # CacheSetup is process-wide: ours_near and ours_redis in one process would share one
    # configuration (the last set up), so the near cache has its group, with its peers
    "near": ["floor", "floor_redis", "ours_near", "fc2_redis", "cashews_redis_cs"],
}
COMMANDSTATS = [
    "floor_redis",
    "ours_redis",
    "ours_redis_miss",
    "ours_near",
    "seed:seed_redis",
    "fc2_redis",
    "cashews_redis",
    "cashews_redis_cs",
]
E2E = [
    "floor",
    "floor_redis",
    "nocache",
    "ours_memory",
    "ours_redis",
    "ours_near",
    "fc2_memory",
    "fc2_redis",
    "cashews_redis",
    "cashews_redis_cs",
    "seed:seed_redis",
    "seed:floor",
    "twin:ours_redis",
    "twin:floor",
]
MAIN_PACKAGES = [
    "fastapi-cachemate",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "redis",
    "hiredis",
    "uvicorn",
    "uvloop",
    "httptools",
    "fastapi-cache2",
    "cashews",
    "orjson",
    "msgpack",
    "ormsgpack",
    "msgspec",
    "zstandard",
    "matplotlib",
]
SEED_PACKAGES = [
    "fastapi-cachemate",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "redis",
    "hiredis",
    "orjson",
    "uvicorn",
    "uvloop",
    "httptools",
]


@dataclass
class Config:
    quick: bool
    sizes: list[str]
    rounds: int
    round_s: float
    e2e: bool
    e2e_rounds: int
    e2e_seconds: int
    e2e_connections: int
    hits_for_commandstats: int
    seed: bool
    codecs: bool
    out: Path
    docs: Path
    command: str
    nice: int
    from_json: Path | None


@dataclass
class Measured:
    """One scenario in one group and size."""

    status: str = "ok"  # ok | unavailable | error
    reason: str = ""
    us: float = 0.0
    rounds: list[float] = field(default_factory=list)
    cpu_us: float = 0.0
    cpu_rounds: list[float] = field(default_factory=list)
    n: int = 0
    body_bytes: int = 0


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    versions_main: dict[str, str] = field(default_factory=dict)
    versions_seed: dict[str, str] = field(default_factory=dict)
    versions_twin: dict[str, str] = field(default_factory=dict)
    # inproc[size][group][key]
    inproc: dict[str, dict[str, dict[str, Measured]]] = field(default_factory=dict)
    commandstats: dict[str, dict[str, Any]] = field(default_factory=dict)
    e2e: dict[str, dict[str, Any]] = field(default_factory=dict)
    e2e_note: str = ""
    profiles: dict[str, str] = field(default_factory=dict)
    callgrind: str = ""  # instructions per request by object and function (markdown)
    codecs: dict[str, str] = field(default_factory=dict)
    payload_bytes: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0


# --- the two places a scenario can run -----------------------------------------------------------


class Side:
    """Our venv (in this process) or the seed's (a worker process); the same calls."""

    def __init__(self, driver: Driver | None = None, worker: Worker | None = None) -> None:
        self.driver = driver
        self.worker = worker

    async def load(self, key: str, scenario: str, size: str) -> dict[str, Any]:
        if self.driver is not None:
            return await self.driver.load(key, scenario, size)
        assert self.worker is not None
        answer = self.worker.call({"op": "load", "key": key, "scenario": scenario, "size": size})
        if not answer["ok"]:
            raise app_scenarios.Unavailable(answer["unavailable"])
        info: dict[str, Any] = answer["info"]
        return info

    async def calibrate(self, key: str, target_s: float) -> int:
        if self.driver is not None:
            return await self.driver.calibrate(key, target_s)
        assert self.worker is not None
        n: int = self.worker.call({"op": "calibrate", "key": key, "target_s": target_s})["n"]
        return n

    async def run(self, key: str, n: int) -> tuple[float, float]:
        """(wall, CPU) µs per request."""
        if self.driver is not None:
            return await self.driver.timed(key, n)
        assert self.worker is not None
        answer = self.worker.call({"op": "run", "key": key, "n": n})
        return float(answer["us"]), float(answer["cpu_us"])

    async def unload(self, key: str) -> None:
        if self.driver is not None:
            await self.driver.unload(key)
        else:
            assert self.worker is not None
            self.worker.call({"op": "unload", "key": key})


class Sides:
    """Where each scenario key runs: ours in this process, "seed:"/"twin:" in their venvs."""

    def __init__(self, local: Side, venvs: dict[str, Side], reasons: dict[str, str]) -> None:
        self.local = local
        self.venvs = venvs  # prefix -> the worker of that venv
        self.reasons = reasons  # prefix -> why that venv is unavailable

    def of(self, key: str) -> tuple[Side | None, str]:
        """(side, scenario name) of a key; side None when its venv is unavailable."""
        for prefix in VENV_PREFIXES:
            if key.startswith(prefix):
                return self.venvs.get(prefix), key[len(prefix) :]
        return self.local, key

    def reason(self, key: str) -> str:
        return next((r for p, r in self.reasons.items() if key.startswith(p)), "unavailable")


# --- phases ------------------------------------------------------------------------------------


def _flush(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushall()
    finally:
        client.close()


async def measure_group(
    sides: Sides, cfg: Config, size: str, keys: list[str], redis_url: str
) -> dict[str, Measured]:
    results: dict[str, Measured] = {}
    active: list[tuple[str, Side, int]] = []
    for key in keys:
        side, scenario = sides.of(key)
        m = Measured()
        results[key] = m
        if side is None:
            m.status, m.reason = "unavailable", sides.reason(key)
            continue
        try:
            info = await side.load(key, scenario, size)
        except app_scenarios.Unavailable as exc:
            m.status, m.reason = "unavailable", str(exc)
            continue
        except (RuntimeError, WorkerError, OSError) as exc:
            m.status, m.reason = "error", f"{type(exc).__name__}: {exc}"
            logger.warning("%s/%s: %s", size, key, m.reason)
            continue
        m.body_bytes = info["body_bytes"]
        try:
            m.n = await side.calibrate(key, cfg.round_s)
        except (RuntimeError, WorkerError) as exc:
            m.status, m.reason = "error", f"{type(exc).__name__}: {exc}"
            await side.unload(key)
            continue
        active.append((key, side, m.n))
    for r in range(cfg.rounds):
        shift = r % max(1, len(active))
        for key, side, n in active[shift:] + active[:shift]:
            m = results[key]
            if m.status != "ok":
                continue
            try:
                wall, cpu = await side.run(key, n)
                m.rounds.append(wall)
                m.cpu_rounds.append(cpu)
            except (RuntimeError, WorkerError) as exc:
                m.status, m.reason = "error", f"{type(exc).__name__}: {exc}"
    for key, side, _ in active:
        await side.unload(key)
        m = results[key]
        if m.status == "ok":
            m.us = statistics.median(m.rounds)
            m.cpu_us = statistics.median(m.cpu_rounds)
    _flush(redis_url)
    return results


async def measure_commandstats(
    sides: Sides, cfg: Config, redis_url: str
) -> dict[str, dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(redis_url)
    out: dict[str, dict[str, Any]] = {}
    n = cfg.hits_for_commandstats
    try:
        for key in COMMANDSTATS:
            side, scenario = sides.of(key)
            if side is None:
                out[key] = {"status": "unavailable", "reason": sides.reason(key)}
                continue
            try:
                await side.load(key, scenario, "small")
            except app_scenarios.Unavailable as exc:
                out[key] = {"status": "unavailable", "reason": str(exc)}
                continue
            except (RuntimeError, WorkerError) as exc:
                out[key] = {"status": "error", "reason": str(exc)}
                continue
            try:
                before = client.info("commandstats")
                await side.run(key, n)
                after = client.info("commandstats")
            finally:
                await side.unload(key)
            per: dict[str, float] = {}
            for name, stats in after.items():
                if name == "cmdstat_info":
                    continue
                calls = stats["calls"] - before.get(name, {}).get("calls", 0)
                if calls:
                    per[name.removeprefix("cmdstat_")] = calls / n
            out[key] = {"status": "ok", "per_request": per, "total": sum(per.values()), "n": n}
    finally:
        client.close()
        _flush(redis_url)
    return out


async def measure_profiles(sides: Sides, cfg: Config) -> dict[str, str]:
    out: dict[str, str] = {}
    driver = sides.local.driver
    assert driver is not None
    for key, size, n in (
        ("ours_memory", "small", 3000),
        ("ours_memory", "large", 1000),
        ("ours_redis", "small", 1000),
    ):
        name = f"{key}/{size}"
        try:
            await driver.load(name, key, size)
        except app_scenarios.Unavailable:
            continue
        except RuntimeError as exc:
            out[name] = f"could not profile: {exc}"
            continue
        try:
            await driver.run(name, 200)
            out[name] = await driver.profile(name, n if not cfg.quick else n // 5)
        finally:
            await driver.unload(name)
    return out


def measure_e2e(
    results: Results, cfg: Config, redis_url: str, pythons: dict[str, Path]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if e2e.wrk_path() is None:
        results.e2e_note = "wrk is missing (make bench installs it with apt-get when root)"
        return out
    import redis as redis_py

    redis = redis_py.Redis.from_url(redis_url)
    small = results.inproc.get("small", {})
    available: dict[str, bool] = {}
    for group in small.values():
        for key, m in group.items():
            available[key] = available.get(key, False) or m.status == "ok"
    servers: dict[str, e2e.Server] = {}
    try:
        for key in E2E:
            if not available.get(key, False):
                out[key] = {"status": "unavailable"}
                continue
            prefix = next((p for p in VENV_PREFIXES if key.startswith(p)), "")
            python = pythons.get(prefix) if prefix else Path(sys.executable)
            if python is None:
                out[key] = {"status": "unavailable"}
                continue
            scenario = key[len(prefix) :]
            servers[key] = e2e.Server(python, scenario, "small", redis_url)
        for key, server in list(servers.items()):
            try:
                headers = server.wait_ready()
            except (RuntimeError, OSError) as exc:
                out[key] = {"status": "error", "reason": str(exc)}
                server.stop()
                del servers[key]
                continue
            out[key] = {"status": "ok", "rounds": [], "headers": headers}
        for server in servers.values():  # warm-up
            e2e.run_wrk(server.url, 1, cfg.e2e_connections)
        keys = list(servers)
        out = {key: out[key] for key in E2E if key in out}
        for r in range(cfg.e2e_rounds):
            shift = r % max(1, len(keys))
            for key in keys[shift:] + keys[:shift]:
                server = servers[key]
                before = _redis_commands(redis)
                res = e2e.run_wrk(server.url, cfg.e2e_seconds, cfg.e2e_connections, server)
                sent = _redis_commands(redis) - before
                round_ = {**res.__dict__, "redis_commands": sent / max(1, res.requests)}
                out[key]["rounds"].append(round_)
        for key in keys:
            rounds = out[key]["rounds"]
            out[key]["rps"] = statistics.median(x["rps"] for x in rounds)
            out[key]["p50_ms"] = statistics.median(x["p50_ms"] for x in rounds)
            out[key]["p99_ms"] = statistics.median(x["p99_ms"] for x in rounds)
            out[key]["errors"] = sum(x["errors"] for x in rounds)
            cpu = [x["server_cpu_us"] for x in rounds if x["server_cpu_us"] is not None]
            out[key]["server_cpu_us"] = statistics.median(cpu) if cpu else None
            out[key]["redis_commands"] = statistics.median(x["redis_commands"] for x in rounds)
    finally:
        for server in servers.values():
            server.stop()
        redis.close()
        _flush(redis_url)
    return out


def _redis_commands(client: Any) -> int:
    """Commands the server has run so far (INFO commandstats), the INFO calls left out."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def venv_pythons(cfg: Config) -> tuple[dict[str, Path], dict[str, str]]:
    """The pythons of the seed's venv and of the twin (ours on the seed's versions), by
    prefix, and why a venv is missing."""
    pythons: dict[str, Path] = {}
    reasons = {SEED: "disabled (--no-seed)", TWIN: "disabled (--no-seed)"}
    if not cfg.seed:
        return pythons, reasons
    root = ROOT / "build" / "bench-venvs"
    try:
        pythons[SEED] = ensure_venv(root, "seed", PEERS_DIR / "requirements-seed.txt")
    except (subprocess.CalledProcessError, OSError) as exc:
        reasons[SEED] = reasons[TWIN] = f"the seed venv could not be created: {exc}"
        logger.warning("%s", reasons[SEED])
        return pythons, reasons
    try:
        pythons[TWIN] = ensure_twin_venv(root, pythons[SEED], ROOT)
    except (subprocess.CalledProcessError, OSError) as exc:
        reasons[TWIN] = f"the twin venv could not be created: {exc}"
        logger.warning("%s", reasons[TWIN])
    return pythons, reasons


def measure_callgrind(cfg: Config) -> str:
    """callgrind's instructions per request of the floor and our memory hit, and of the bare
    GET and our Redis hit ("" without valgrind, or in a quick run: about four minutes)."""
    if cfg.quick or shutil.which("valgrind") is None:
        return ""
    logger.info("instructions per request (callgrind)")
    try:
        return "\n".join(
            (
                callgrind_hit.run(["floor", "ours_memory"], "small"),
                # a Redis hit against the least one can cost (medium: its entry is compressed)
                callgrind_hit.run(["bare_get", "ours_redis"], "medium"),
            )
        )
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        logger.warning("callgrind: %s", exc)
        return ""


def run_codecs() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in CODEC_MODULES:
        if not (ROOT / "benchmarks" / f"{name}.py").exists():
            continue
        logger.info("codec benchmark %s", name)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            out[name] = module.run()
        except Exception:  # a broken codec benchmark is reported, the rest still runs
            out[name] = "```\n" + traceback.format_exc() + "```\n"
            logger.exception("codec benchmark %s failed", name)
    return out


def _loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_start": _loadavg(),
        "niceness": os.nice(0),
    }
    with contextlib.suppress(ValueError, OSError):
        info["memory_gb"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    wrk = e2e.wrk_path()
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        info["wrk"] = (out.stdout or out.stderr).split("[")[0].strip()
    return info


def _native_available() -> str:
    try:
        import fastapi_cachemate._native as native
    except ImportError as exc:
        return f"not built ({exc})"
    return f"built ({Path(native.__file__ or '?').name})"


async def main_async(cfg: Config) -> Results:
    results = Results()
    t0 = time.monotonic()
    results.machine = machine_info()
    results.versions_main = versions(MAIN_PACKAGES)
    results.versions_main["fastapi_cachemate._native"] = _native_available()
    for size in app_scenarios.SIZES:
        results.payload_bytes[size] = len(app_scenarios.expected_body(1, app_scenarios.SIZES[size]))
    if cfg.codecs:
        results.codecs = run_codecs()

    pythons, reasons = venv_pythons(cfg)

    with RedisServer() as server:
        results.machine["redis-server"] = server.version()
        workers: dict[str, Worker] = {}
        try:
            for prefix, python in pythons.items():
                workers[prefix] = Worker(python, server.url)
            if SEED in workers:
                results.versions_seed = workers[SEED].call(
                    {"op": "versions", "names": SEED_PACKAGES}
                )["versions"]
            if TWIN in workers:
                results.versions_twin = workers[TWIN].call(
                    {"op": "versions", "names": SEED_PACKAGES}
                )["versions"]
            sides = Sides(
                Side(driver=Driver(server.url)),
                {prefix: Side(worker=worker) for prefix, worker in workers.items()},
                reasons,
            )
            for size in cfg.sizes:
                results.inproc[size] = {}
                for group, keys in GROUPS.items():
                    logger.info("in-process: %s payload, %s group", size, group)
                    results.inproc[size][group] = await measure_group(
                        sides, cfg, size, keys, server.url
                    )
            logger.info("Redis commands per hit")
            results.commandstats = await measure_commandstats(sides, cfg, server.url)
            logger.info("profiles of our hit path")
            results.profiles = await measure_profiles(sides, cfg)
            results.callgrind = measure_callgrind(cfg)
        finally:
            for worker in workers.values():
                worker.close()
        if cfg.e2e:
            logger.info("end to end (uvicorn + wrk)")
            results.e2e = measure_e2e(results, cfg, server.url, pythons)
        else:
            results.e2e_note = "skipped (--no-e2e)"
    results.machine["load_end"] = _loadavg()
    results.duration_s = time.monotonic() - t0
    return results


def _results_json(results: Results) -> dict[str, Any]:
    def enc(obj: Any) -> Any:
        if isinstance(obj, Measured):
            return obj.__dict__
        raise TypeError(type(obj))

    out: dict[str, Any] = json.loads(json.dumps(results.__dict__, default=enc))
    return out


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--sizes", default=",".join(app_scenarios.SIZES))
    parser.add_argument("--no-e2e", action="store_true", help="skip uvicorn + wrk")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed library's venv")
    parser.add_argument("--no-codecs", action="store_true", help="skip benchmarks/codec_*.py")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help=f"only re-render the report from a run's raw numbers (e.g. {RAW_PATH})",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="niceness of the run and of the servers it starts, when root (default -10: "
        "steadier numbers on a shared machine; 0 leaves it)",
    )
    args = parser.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        if s not in app_scenarios.SIZES:
            parser.error(f"unknown size {s!r}")
    quick = bool(args.quick)
    out = Path(args.out).resolve()
    command = " ".join(["python -m benchmarks", *argv])
    return Config(
        quick=quick,
        sizes=sizes,
        rounds=3 if quick else 21,
        round_s=0.03 if quick else 0.05,
        e2e=not args.no_e2e,
        e2e_rounds=1 if quick else 5,
        e2e_seconds=1 if quick else 2,
        e2e_connections=16,
        hits_for_commandstats=100 if quick else 500,
        seed=not args.no_seed,
        codecs=not args.no_codecs,
        out=out,
        docs=out.parent,
        command=command,
        nice=args.nice,
        from_json=Path(args.from_json) if args.from_json else None,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    if cfg.from_json is not None:
        # re-render the report of an earlier run (after a change to report.py)
        raw = json.loads(cfg.from_json.read_text())
        config = raw.get("config") or _config_json(parse_args([]))
    else:
        if cfg.nice and os.geteuid() == 0:
            # inherited by redis-server, the seed's worker, uvicorn and wrk
            os.nice(cfg.nice)
        results = asyncio.run(main_async(cfg))
        raw = _results_json(results)
        config = raw["config"] = _config_json(cfg)
        RAW_PATH.parent.mkdir(exist_ok=True)
        RAW_PATH.write_text(json.dumps(raw, indent=1))
    cfg.docs.mkdir(parents=True, exist_ok=True)
    plots = report.plots(raw, cfg.docs)
    cfg.out.write_text(report.markdown(raw, config, plots))
    logger.info("wrote %s and %s (raw numbers: %s)", cfg.out, ", ".join(plots), RAW_PATH)
    return 0


def _config_json(cfg: Config) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()}


if __name__ == "__main__":
    sys.exit(main())
