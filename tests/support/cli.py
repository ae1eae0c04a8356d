"""The CLI (python -m fastapi_cachemate) as a subprocess, and the entries its tests store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from fastapi_cachemate import _native

__all__ = ["KEY_A", "KEY_B", "KEY_C", "OTHER", "PREFIX", "ROOT", "cli", "entry"]

ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/support/cli.py
PREFIX = "fastapi_cachemate"
KEY_A = f"{PREFIX}:{{{'a' * 32}}}"
KEY_B = f"{PREFIX}:{{{'b' * 32}}}"
KEY_C = f"{PREFIX}:{{{'c' * 32}}}"
OTHER = f"other:{{{'d' * 32}}}"


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CACHEMATE_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "fastapi_cachemate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def entry(
    body: bytes,
    *,
    created: float | None = None,
    ttl: float = 300.0,
    grace: float = 0.0,
    tags: tuple[str, ...] = (),
    compression: int = _native.COMPRESS_DISABLED,
    kernels: ModuleType = _native,
) -> bytes:
    blob: bytes = kernels.write_entry(
        status=200,
        headers=[(b"content-type", b"application/json"), (b"x-thing", b"1")],
        body=body,
        created=time.time() if created is None else created,
        ttl=ttl,
        grace=grace,
        compute_ms=12.5,
        tags=list(tags),
        compression=compression,
    )
    return blob
