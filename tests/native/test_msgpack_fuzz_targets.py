"""The fuzz harness (fuzz/targets.py) stays usable: every target loads or is skipped, and
its seeds pass through its call (the libFuzzer runs themselves: `make fuzz`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fastapi_cachemate import _native

TARGETS_PY = Path(__file__).resolve().parents[2] / "fuzz" / "targets.py"


@pytest.fixture(scope="module")
def targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cm_fuzz_targets", TARGETS_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cm_fuzz_targets"] = module
    spec.loader.exec_module(module)
    return module


def test_every_target_runs_its_seeds(targets: ModuleType, tmp_path: Path) -> None:
    ran = []
    for name, target in targets.TARGETS.items():
        loaded = targets.load(name)
        if not hasattr(_native, target.function):
            assert loaded is None
            continue
        call, allowed = loaded
        assert all(isinstance(cls, type) and issubclass(cls, BaseException) for cls in allowed)
        targets.write_seeds(name, str(tmp_path / name))
        seeds = sorted((tmp_path / name).iterdir())
        assert seeds
        for seed in seeds:
            call(seed.read_bytes())  # valid encodings: no exception at all
        ran.append(name)
    assert "unpackb" in ran
    assert "unpackb_twin" in ran


def test_unpackb_target_accepts_malformed_and_flags_nothing_else(targets: ModuleType) -> None:
    call, allowed = targets.load("unpackb")
    assert allowed == (_native.MalformedError,)
    with pytest.raises(_native.MalformedError):
        call(b"\xc1")
    twin_call, twin_allowed = targets.load("unpackb_twin")
    assert twin_allowed == ()
    twin_call(b"\xc1")  # both raise the same MalformedError: agreement, no exception
    twin_call(b"\x92\x01")


def test_unknown_target_is_an_error(targets: ModuleType) -> None:
    with pytest.raises(SystemExit, match="unknown fuzz target"):
        targets.load("nope")
