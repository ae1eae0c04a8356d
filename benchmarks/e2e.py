"""End-to-end mode: one uvicorn worker per scenario on loopback, loaded by wrk.

Each server is ``python -m uvicorn app_scenarios:create_app_from_env --factory`` (one process,
``--no-access-log``, uvloop + httptools, a free port), started from a scratch directory with
the python of the scenario's venv. When taskset exists, the server runs on CPU 1 and wrk on
CPU 0, so that they do not fight over one core. wrk runs with ``--latency``; rounds of the
scenarios are interleaved and the medians reported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from benchmarks.servers import free_port, wait_port

__all__ = ["Server", "WrkResult", "parse_wrk", "run_wrk", "wrk_path"]

BENCH_DIR = Path(__file__).resolve().parent
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _taskset(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def wrk_path() -> str | None:
    return shutil.which("wrk")


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    # CPU time the server process spent per request during the run (µs), when known
    server_cpu_us: float | None = None


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unknown wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if rps is None or p50 is None or p99 is None or total is None:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return WrkResult(
        float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), errors, int(total.group(1))
    )


def run_wrk(url: str, duration_s: int, connections: int, server: Server | None = None) -> WrkResult:
    """wrk against url; with server, also the server's CPU time per request."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is missing")
    cmd = [
        *_taskset(0),
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "5s",
        "--latency",
        url,
    ]
    cpu0 = server.cpu_seconds() if server is not None else None
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration_s + 30)
    result = parse_wrk(out.stdout)
    if server is not None and cpu0 is not None and result.requests:
        cpu1 = server.cpu_seconds()
        if cpu1 is not None:
            result.server_cpu_us = (cpu1 - cpu0) * 1e6 / result.requests
    return result


class Server:
    """A uvicorn server of one scenario; ``url`` once started."""

    def __init__(self, python: Path, scenario: str, size: str, redis_url: str) -> None:
        self.python = python
        self.scenario = scenario
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/items/1"
        self._scratch = tempfile.TemporaryDirectory(prefix="bench-uvicorn-")
        self._log = open(Path(self._scratch.name) / "server.log", "w+b")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(BENCH_SCENARIO=scenario, BENCH_SIZE=size, BENCH_REDIS_URL=redis_url)
        cmd = [
            *_taskset(1),
            str(python),
            "-m",
            "uvicorn",
            "app_scenarios:create_app_from_env",
            "--factory",
            "--app-dir",
            str(BENCH_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ]
        self._proc = subprocess.Popen(
            cmd, cwd=self._scratch.name, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> dict[str, str]:
        """Wait for the port, make the first (filling) request and a second; its headers."""
        try:
            wait_port(self.port, timeout)
        except TimeoutError:
            raise RuntimeError(f"{self.scenario}: uvicorn did not start:\n{self.log()}") from None
        headers: dict[str, str] = {}
        for _ in range(3):
            with urllib.request.urlopen(self.url, timeout=10) as resp:
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{self.scenario}: status {resp.status}")
                headers = {k.lower(): v for k, v in resp.headers.items()}
            time.sleep(0.01)
        return headers

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux /proc), or None."""
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        self._scratch.cleanup()
