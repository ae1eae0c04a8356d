"""Real redis-server processes for the tests: one server, a controllable one, a cluster.

Every server listens on 127.0.0.1 on a free port, keeps nothing on disk (``--save ""
--appendonly no``) and runs in the foreground (no daemonize) as a child of the test session.
Start-up is awaited on an event: a reader thread follows the server's stdout and sets it on
the "Ready to accept connections" line (the reader also keeps draining the pipe). The
deadlines below only bound a server that never gets ready; nothing here sleeps to wait.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "INSTALL_HINT",
    "LocalCluster",
    "RedisServer",
    "ServerError",
    "command_calls",
    "command_delta",
    "free_port",
    "require_redis_binaries",
    "require_redis_binaries_or_fail",
    "start_or_fail",
    "uvicorn_server",
]

INSTALL_HINT = (
    "redis-server and redis-cli are needed by the test suite (a real server, never a mock). "
    "Install them: 'sudo apt-get install redis-server redis-tools' on Debian/Ubuntu "
    "(or 'make system' as root), 'brew install redis' on macOS."
)
READY_LINE = "Ready to accept connections"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class ServerError(RuntimeError):
    """A redis-server that did not start, or a cluster that did not form."""


def require_redis_binaries() -> tuple[str, str]:
    """Paths of redis-server and redis-cli; ServerError with the install hint when missing."""
    server = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if server is None or cli is None:
        missing = [
            name for name, path in (("redis-server", server), ("redis-cli", cli)) if not path
        ]
        raise ServerError(f"{', '.join(missing)} not found on PATH. {INSTALL_HINT}")
    return server, cli


def require_redis_binaries_or_fail() -> None:
    """require_redis_binaries() for a fixture: a missing binary fails the test, never skips it."""
    try:
        require_redis_binaries()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


def start_or_fail(server: RedisServer | LocalCluster) -> None:
    """server.start() for a fixture: a server that does not start fails the test."""
    try:
        server.start()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_cluster_bus: bool = False) -> int:
    """A port that is free on 127.0.0.1 now (and port + 10000 too, for a cluster node)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not with_cluster_bus:
            return port
        if port + 10000 <= 65535 and _port_is_free(port + 10000):
            return port
    raise ServerError("no free port found on 127.0.0.1")


class RedisServer:
    """One redis-server child process on a fixed port: start(), stop(), start() again."""

    def __init__(
        self,
        port: int | None = None,
        *,
        cluster: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.host = "127.0.0.1"
        self.cluster = cluster
        self.port = port if port is not None else free_port(with_cluster_bus=cluster)
        self._extra_args = extra_args
        self._dir = tempfile.TemporaryDirectory(prefix=f"cachemate-redis-{self.port}-")
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._log: deque[str] = deque(maxlen=200)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log(self) -> str:
        """The last lines the server wrote (for failure messages)."""
        return "".join(self._log)

    def _args(self) -> list[str]:
        server, _ = require_redis_binaries()
        args = [
            server,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self._dir.name,
            "--loglevel", "notice",
            "--logfile", "",
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(Path(self._dir.name, "nodes.conf")),
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
        return args + list(self._extra_args)

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        if self.running:
            return
        ready = threading.Event()
        saw_ready_line = threading.Event()
        proc = subprocess.Popen(
            self._args(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._proc = proc
        self._log.clear()

        def follow() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self._log.append(line)
                if READY_LINE in line:
                    saw_ready_line.set()
                    ready.set()
            ready.set()  # EOF: the process ended before (or after) getting ready

        self._reader = threading.Thread(target=follow, name=f"redis-{self.port}-log", daemon=True)
        self._reader.start()
        ready.wait(START_TIMEOUT)
        if not saw_ready_line.is_set():
            self.stop()
            raise ServerError(
                f"redis-server on port {self.port} did not get ready:\n{self.log()[-3000:]}"
            )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it hangs) and wait for it to exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
            self._reader = None
        if proc.stdout is not None:
            proc.stdout.close()

    def cleanup(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class LocalCluster:
    """A local Redis Cluster of ``masters`` nodes with no replicas, formed by redis-cli."""

    def __init__(self, masters: int = 3) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.servers: list[RedisServer] = []
        ports: set[int] = set()
        while len(self.servers) < masters:
            port = free_port(with_cluster_bus=True)
            if port in ports or port + 10000 in ports or port - 10000 in ports:
                continue
            ports.add(port)
            self.servers.append(RedisServer(port, cluster=True))

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every master: the startup nodes for a cluster client."""
        return [(server.host, server.port) for server in self.servers]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.servers)

    def start(self) -> None:
        _, cli = require_redis_binaries()
        try:
            for server in self.servers:
                server.start()
            addresses = [f"{host}:{port}" for host, port in self.nodes]
            created = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if created.returncode != 0:
                raise ServerError(
                    f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}"
                )
            self._wait_state_ok(cli)
        except BaseException:
            self.stop()
            raise

    def _wait_state_ok(self, cli: str) -> None:
        # The cluster bus has no event to wait on: CLUSTER INFO is polled on every node until
        # each says cluster_state:ok (usually at once: redis-cli already waited for the join).
        deadline = time.monotonic() + 30.0
        pending = list(self.servers)
        last = ""
        while pending:
            server = pending[0]
            info = subprocess.run(
                [cli, "-h", server.host, "-p", str(server.port), "cluster", "info"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            last = info.stdout
            if "cluster_state:ok" in info.stdout:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise ServerError(
                    f"cluster on {self.nodes} never reached cluster_state:ok:\n{last}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        for server in self.servers:
            server.cleanup()


async def command_calls(client: Any) -> Counter[str]:
    """Calls per command so far, from INFO commandstats (``get``, ``set``, ``evalsha``...).

    Take it before and after the code under test, on the same server, and subtract:
    ``delta = after - before; del delta["info"]``.
    """
    info = await client.info("commandstats")
    return Counter(
        {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}
    )


def command_delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """The commands run between two command_calls() snapshots, INFO itself left out."""
    delta = after - before
    delta.pop("info", None)
    return dict(delta)


# --- uvicorn over TCP -----------------------------------------------------------------------

# uvicorn runs the lifespan ("Application startup complete") before it binds the socket;
# this line comes once it listens.
UVICORN_READY = "Uvicorn running on"
UVICORN_START_TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/support/servers.py


class UvicornProcess:
    """A uvicorn process serving one app on a free 127.0.0.1 port (see uvicorn_server)."""

    def __init__(self, proc: subprocess.Popen[str], url: str, log: deque[str]) -> None:
        self.proc = proc
        self.url = url
        self.log = log


@contextmanager
def uvicorn_server(
    app: str, env: dict[str, str], *args: str, cwd: Path = ROOT
) -> Iterator[UvicornProcess]:
    """Start `uvicorn app` with env; yield once it listens (its stdout line, not a sleep)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = threading.Event()
    log: deque[str] = deque(maxlen=200)

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            if UVICORN_READY in line:
                ready.set()
        ready.set()  # the process ended: wake the waiter, which then sees it is not running

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        if not ready.wait(UVICORN_START_TIMEOUT) or proc.poll() is not None:
            pytest.fail(f"uvicorn did not start:\n{''.join(log)}")
        yield UvicornProcess(proc, f"http://127.0.0.1:{port}", log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
