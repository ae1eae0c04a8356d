"""The distributions: the sdist and the wheel build without a deprecation warning, the sdist
holds the whole tracked tree, and installed into a fresh venv it imports, round-trips zstd and
passes a part of its own test suite run from the unpacked sdist.

The builds use this environment's setuptools (``--no-isolation``); `make wheel` does the
isolated build and the auditwheel repair. The fresh venv installs the sdist's dependencies
from the package index, as a user's `pip install` does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

import fastapi_cachemate

ROOT = Path(__file__).resolve().parent.parent
# Never part of a source tree's copy: environments, build output, caches, compiled files.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.py[cod]", "*.so", "*.o",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "out", "corpus-*",
)  # fmt: skip
BUILD_TIMEOUT = 900


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path
    log: str


def run(args: list[str | Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, **env},
        check=False,
    )


def tracked_files() -> set[str]:
    """The files of the source tree: git's list in a clone, the tree itself elsewhere (an
    unpacked sdist)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = run(["git", "ls-files", "-z"], ROOT)
        assert out.returncode == 0, out.stderr
        return {name for name in out.stdout.split("\0") if name and (ROOT / name).is_file()}
    files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        ignored = NOT_SOURCE(dirpath, [*dirnames, *filenames])
        dirnames[:] = [d for d in dirnames if d not in ignored]
        for name in filenames:
            if name not in ignored and name != "PKG-INFO" and name != "setup.cfg":
                files.add(str(Path(dirpath, name).relative_to(ROOT)))
    return files


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """`python -m build` of a copy of the source tree: the sdist, then the wheel built from
    the sdist (as pip and distribution packagers do)."""
    work = tmp_path_factory.mktemp("dists")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    proc = run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", work / "dist", src], work
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    (sdist,) = (work / "dist").glob("*.tar.gz")
    (wheel,) = (work / "dist").glob("*.whl")
    return Dists(sdist=sdist, wheel=wheel, log=log)


def sdist_members(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    prefix = sdist.name.removesuffix(".tar.gz") + "/"
    assert all(n.startswith(prefix) for n in names), names
    return {n.removeprefix(prefix) for n in names}


def test_version_is_the_distribution_version() -> None:
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared is not None
    assert fastapi_cachemate.__version__ == declared.group(1)


@pytest.mark.slow
@pytest.mark.packaging
def test_build_prints_no_deprecation_warning(dists: Dists) -> None:
    deprecations = [line for line in dists.log.splitlines() if re.search("deprecat", line, re.I)]
    assert deprecations == [], dists.log
    # a MANIFEST.in line that names a file that no longer exists
    assert "no files found matching" not in dists.log, dists.log


@pytest.mark.slow
@pytest.mark.packaging
def test_wheel_metadata_is_pep_639(dists: Dists) -> None:
    proc = run(
        [sys.executable, "-m", "zipfile", "-e", dists.wheel, dists.wheel.parent / "unpacked"],
        dists.wheel.parent,
    )
    assert proc.returncode == 0, proc.stderr
    (info,) = (dists.wheel.parent / "unpacked").glob("*.dist-info")
    metadata = (info / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    assert (info / "licenses" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert "Classifier: License ::" not in metadata  # PEP 639: the expression replaces it
    tested = {f"Classifier: Programming Language :: Python :: 3.{n}" for n in (10, 11, 12, 13)}
    assert tested <= set(metadata.splitlines())


@pytest.mark.slow
@pytest.mark.packaging
def test_sdist_holds_the_whole_source_tree(dists: Dists) -> None:
    members = sdist_members(dists.sdist)
    missing = tracked_files() - members
    assert missing == set(), f"tracked files missing from the sdist: {sorted(missing)}"
    # the parts a packager's test run needs, named so that an emptied tree cannot pass
    for needed in (
        "tests/conftest.py",
        "tests/native/conftest.py",
        "tests/isolated/test_leaks.py",
        "tests/data/seed-README.txt",
        "tests/support/servers.py",
        "docs/design.md",
        "examples/app.py",
        "csrc/module.c",
        "LICENSE",
        "CHANGELOG.md",
        ".ci/stubtest-allowlist.txt",
    ):
        assert needed in members, needed
    compiled = {m for m in members if m.endswith((".so", ".pyc", ".o"))}
    assert compiled == set()


@pytest.fixture(scope="session")
def sdist_venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the sdist installed from a fresh directory, test extras included."""
    work = tmp_path_factory.mktemp("sdist-venv")
    env = work / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = env / "bin" / "python"
    proc = run([python, "-m", "pip", "install", "-q", f"{dists.sdist}[test]"], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


@pytest.mark.slow
@pytest.mark.packaging
def test_sdist_installs_and_round_trips_zstd_from_another_directory(
    sdist_venv: Path, tmp_path: Path
) -> None:
    code = (
        "import fastapi_cachemate as f, fastapi_cachemate._native as n\n"
        "data = b'cachemate ' * 4096\n"
        "packed = n.compress(data)\n"
        "assert len(packed) < len(data) and n.decompress(packed) == data\n"
        "print(f.__version__, f.__file__, n.ZSTD_VERSION)\n"
    )
    proc = run([sdist_venv, "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version, location, zstd = proc.stdout.split()
    assert version == fastapi_cachemate.__version__
    assert Path(location).is_relative_to(sdist_venv.parent.parent)
    assert tuple(map(int, zstd.split("."))) >= (1, 5, 2)


@pytest.mark.slow
@pytest.mark.packaging
def test_sdist_test_suite_runs_from_the_unpacked_sdist(
    dists: Dists, sdist_venv: Path, tmp_path: Path
) -> None:
    with tarfile.open(dists.sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    # Without the source package next to the tests, only the installed one can be imported.
    shutil.rmtree(unpacked / "fastapi_cachemate")
    chosen = [
        "tests/native/test_compress.py",
        "tests/native/test_ext_init.py",
        "tests/test_settings.py",
        "tests/test_cache_response.py",
    ]
    pytest_bin = sdist_venv.parent / "pytest"
    proc = run([pytest_bin, "-q", "-p", "no:cacheprovider", *chosen], unpacked)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^\d+ passed", out.splitlines()[-1]), out
