"""The project's static checks, run with the suite so that CI enforces them.

ruff (lint and format), mypy --strict over the package, stubtest of the C extension
against _native.pyi, clang-format over csrc/, and the direction of the package's imports.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY_TREES = ["fastapi_cachemate", "tests", "benchmarks", "examples"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint() -> None:
    proc = run(sys.executable, "-m", "ruff", "check", *PY_TREES)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = run(sys.executable, "-m", "ruff", "format", "--check", *PY_TREES)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict() -> None:
    proc = run(sys.executable, "-m", "mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stub_matches_the_extension() -> None:
    proc = run(
        sys.executable,
        "-m",
        "mypy.stubtest",
        "fastapi_cachemate._native",
        "--allowlist",
        ".ci/stubtest-allowlist.txt",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_c_sources_are_formatted() -> None:
    clang_format = shutil.which("clang-format")
    if clang_format is None:
        pytest.fail("clang-format is missing: apt-get install clang-format (make system does)")
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.[ch]"))
    proc = run(clang_format, "--dry-run", "--Werror", *sources)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_depends_on_nothing_above_it() -> None:
    """Backends, locks and the key layout import only each other and the kernels:
    the request path and the configuration hand them what they need."""
    allowed = ("fastapi_cachemate.core", "fastapi_cachemate._kernels")
    for path in sorted((ROOT / "fastapi_cachemate" / "core").rglob("*.py")):
        ours = {m for m in _imported_modules(path) if m.split(".")[0] == "fastapi_cachemate"}
        above = {m for m in ours if not m.startswith(allowed)}
        assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"
