"""Virtual environments of the peer libraries, and the worker that drives apps inside one.

The seed library (fastapi-cachemate 0.1.1 from PyPI) shares our package name, so it runs in
its own venv, ``build/bench-venvs/seed``, created here with ``python -m venv`` + pip from
requirements-seed.txt (re-created when that file changes). fastapi-cache2 and cashews share
our dependencies and run in our venv (requirements-main.txt, installed by ``make bench``).

The seed pins FastAPI < 0.117 and redis-py 6.2, so its users are on those versions, and stay
on them when they switch to us. ``build/bench-venvs/twin`` holds this repository (editable)
on exactly the seed venv's versions of everything else (``ensure_twin_venv``): ours and the
seed compared with nothing else different.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["HERE", "Worker", "WorkerError", "ensure_twin_venv", "ensure_venv"]

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DRIVER = HERE.parent / "asgi_driver.py"


def ensure_venv(root: Path, name: str, requirements: Path) -> Path:
    """The python of ``root/name``, created or refreshed to match ``requirements``."""
    venv = root / name
    python = venv / "bin" / "python"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    marker = venv / ".bench-requirements"
    if python.exists() and marker.exists() and marker.read_text() == digest:
        return python
    logger.info("creating %s from %s", venv, requirements.name)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory() as empty:  # a cwd whose files cannot shadow modules
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
            check=True,
            cwd=empty,
        )
    marker.write_text(digest)
    return python


def ensure_twin_venv(root: Path, seed_python: Path, project: Path) -> Path:
    """The python of ``root/twin``: ``project`` installed editable, every other package at
    the version the seed's venv has (refreshed when those or our metadata change)."""
    frozen = subprocess.run(
        [str(seed_python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True
    ).stdout
    constraints = "".join(
        f"{line}\n"
        for line in frozen.splitlines()
        if line and not line.startswith(("fastapi-cachemate", "-e ", "#"))
    )
    venv = root / "twin"
    python = venv / "bin" / "python"
    state = hashlib.sha256(constraints.encode())
    for name in ("pyproject.toml", "setup.py"):
        state.update((project / name).read_bytes())
    digest = state.hexdigest()
    marker = venv / ".bench-requirements"
    if python.exists() and marker.exists() and marker.read_text() == digest:
        return python
    logger.info("creating %s on the seed venv's versions", venv)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory() as scratch:  # also the cwd: nothing there shadows a module
        pins = Path(scratch) / "constraints.txt"
        pins.write_text(constraints)
        install = ["-c", str(pins), "-e", str(project), "uvicorn", "uvloop", "httptools", "hiredis"]
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *install], check=True, cwd=scratch)
    marker.write_text(digest)
    return python


class WorkerError(RuntimeError):
    pass


class Worker:
    """asgi_driver.py --worker running under another python; one JSON line per call.

    The worker runs from a scratch directory, so that our repository (whose package has the
    seed's name) is not on its sys.path.
    """

    def __init__(self, python: Path, redis_url: str) -> None:
        self.python = python
        self._scratch = tempfile.TemporaryDirectory(prefix="bench-worker-")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self._proc = subprocess.Popen(
            [str(python), str(DRIVER), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=self._scratch.name,
            env=env,
            text=True,
        )
        self.call({"op": "init", "redis_url": redis_url})

    def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(cmd) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise WorkerError(f"the worker ({self.python}) exited with {proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok") and "error" in answer:
            raise WorkerError(answer["error"])
        return answer

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        self._scratch.cleanup()
