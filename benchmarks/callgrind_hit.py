"""Instructions per request, by library and function, under valgrind's callgrind.

    .venv/bin/python -m benchmarks.callgrind_hit                 # floor and ours_memory, small
    .venv/bin/python -m benchmarks.callgrind_hit --scenarios floor,ours_memory --size large

callgrind counts instructions, not seconds: the same binary and inputs give the same counts
whatever else the machine does. Each scenario runs twice under callgrind, with N1 and N2
requests after the same warm-up; the difference divided by N2 - N1 is the cost of one
request, with the start-up (imports, app build, warm-up) cancelled out. The result says
where a request's instructions go: the interpreter (python), our C kernels (_native), zstd,
libc, and the top functions.

Redis scenarios run against a redis-server started for the run (natively: only this
process is slowed down, ~50x, which stays well inside the cache's backend timeout). What the
counts leave out is the wait for Redis, which costs no instructions here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

__all__ = ["Costs", "measure", "parse_callgrind", "run"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
N1, N2 = 200, 1200
WARMUP = 300

# (object, function) -> instructions
Costs = Counter[tuple[str, str]]

_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def _object_label(path: str) -> str:
    name = os.path.basename(path)
    if name.startswith("_native."):
        return "_native (our C kernels)"
    if name.startswith(("libpython", "python")):
        return "python (the interpreter)"
    for prefix in ("libzstd", "libc.", "libc-", "ld-linux", "libm."):
        if name.startswith(prefix):
            return prefix.rstrip(".-")
    if name.endswith(".so") or ".so." in name:
        return name.split(".")[0] + " (extension)"
    return name


def parse_callgrind(text: str) -> Costs:
    """Self cost (the first event, Ir) per (object, function) of a callgrind output file."""
    costs: Costs = Counter()
    names: dict[tuple[str, str], str] = {}
    ob = fn = ""
    skip_next_cost = False

    def resolve(kind: str, value: str) -> str:
        match = _NAME.match(value)
        if match is None:
            return value
        ident, name = match.groups()
        if name is not None:
            names[(kind, ident)] = name
            return name
        return names.get((kind, ident), value)

    for line in text.splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if skip_next_cost:
                skip_next_cost = False  # the inclusive cost of a call: not this function's
                continue
            parts = line.split()
            if len(parts) >= 2:
                costs[(ob, fn)] += int(parts[1])
            continue
        key, _, value = line.partition("=")
        if key == "ob":
            ob = _object_label(resolve("ob", value))
        elif key == "fn":
            fn = resolve("fn", value)
        elif key in ("cob", "cfn", "cfi", "cfl", "fi", "fe", "fl"):
            resolve("ob" if key == "cob" else "fn" if key == "cfn" else "fl", value)
        elif key == "calls":
            skip_next_cost = True
    return costs


def _child(scenario: str, size: str, n: int, redis_url: str) -> None:
    from benchmarks.asgi_driver import Driver

    async def main() -> None:
        driver = Driver(redis_url)
        await driver.load("c", scenario, size)
        try:
            await driver.run("c", WARMUP)
            await driver.run("c", n)
        finally:
            await driver.unload("c")

    asyncio.run(main())


def measure(scenario: str, size: str, workdir: Path, redis_url: str) -> Costs:
    """Instructions of one request of the scenario, per (object, function)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is missing")
    totals: list[Costs] = []
    for n in (N1, N2):
        out = workdir / f"{scenario}-{size}-{n}.callgrind"
        cmd = [
            valgrind,
            "--tool=callgrind",
            "--dump-instr=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.callgrind_hit",
            "--child",
            scenario,
            size,
            str(n),
            redis_url,
        ]
        env = {**os.environ, "PYTHONMALLOC": "malloc"}
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        totals.append(parse_callgrind(out.read_text(errors="replace")))
    per_request: Costs = Counter()
    for key in totals[0].keys() | totals[1].keys():
        diff = (totals[1][key] - totals[0][key]) / (N2 - N1)
        if diff > 0:
            per_request[key] = round(diff)
    return per_request


def _by_object(costs: Costs) -> Counter[str]:
    out: Counter[str] = Counter()
    for (ob, _), ir in costs.items():
        out[ob] += ir
    return out


def run(scenarios: list[str] | None = None, size: str = "small") -> str:
    """Markdown: instructions per request by object, and the top functions (for the report)."""
    from benchmarks.servers import RedisServer

    scenarios = scenarios or ["floor", "ours_memory"]
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp, RedisServer() as server:
        measured = {s: measure(s, size, Path(tmp), server.url) for s in scenarios}
    objects = sorted(
        {ob for costs in measured.values() for ob in _by_object(costs)},
        key=lambda ob: -max(_by_object(c)[ob] for c in measured.values()),
    )
    lines = [
        f"Instructions per request (callgrind, {size} payload, ({N2} - {N1}) requests after a "
        f"warm-up of {WARMUP}; `python -m benchmarks.callgrind_hit`):\n",
        "| object | " + " | ".join(measured) + " |",
        "|---|" + "---|" * len(measured),
    ]
    totals = {s: sum(c.values()) for s, c in measured.items()}
    for ob in objects[:8]:
        cells = [f"{_by_object(c)[ob]:,}" for c in measured.values()]
        lines.append(f"| {ob} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{t:,}**" for t in totals.values()) + " |")
    for scenario, costs in measured.items():
        lines += [
            f"\nTop functions, {scenario} (instructions per request, own cost):\n",
            "| function | object | Ir |",
            "|---|---|---|",
        ]
        for (ob, fn), ir in costs.most_common(12):
            lines.append(f"| `{fn}` | {ob} | {ir:,} |")
        ours = [(fn, ir) for (ob, fn), ir in costs.most_common() if ob.startswith("_native")]
        if ours:
            lines += [
                f"\nOur C kernels in {scenario}: {sum(ir for _, ir in ours):,} instructions "
                f"per request ({sum(ir for _, ir in ours) / totals[scenario]:.1%} of the "
                "total); " + ", ".join(f"`{fn}` {ir:,}" for fn, ir in ours[:6]) + ".",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.callgrind_hit", description=__doc__)
    parser.add_argument("--scenarios", default="floor,ours_memory")
    parser.add_argument("--size", default="small")
    parser.add_argument(
        "--child", nargs=4, metavar=("SCENARIO", "SIZE", "N", "REDIS_URL"), help="internal"
    )
    args = parser.parse_args(argv)
    if args.child:
        scenario, size, n, redis_url = args.child
        _child(scenario, size, int(n), redis_url)
        return 0
    print(run(args.scenarios.split(","), args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
