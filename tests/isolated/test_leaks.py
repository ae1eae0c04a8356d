"""Runs every tests/isolated/leak_*.py script in its own interpreter.

Each script loops hot functions of the C extension, error paths included, and exits
non-zero when memory keeps growing (see _leakcheck.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SCRIPTS = sorted(HERE.glob("leak_*.py"))


def test_there_are_leak_scripts() -> None:
    assert SCRIPTS, "no leak_*.py scripts found"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_no_leak(script: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=HERE, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
