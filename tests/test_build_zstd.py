"""setup.py finds zstd by asking the compiler, with the flags the extension is built with.

- A header given by CFLAGS, CPPFLAGS, CPATH, C_INCLUDE_PATH or pkg-config (PKG_CONFIG_PATH) is
  the one probed: a prefix holding a zstd.h that says 1.4.4 stops the build with the version
  message, although the system's zstd.h is new enough.
- On a machine without the system's zstd (hidden by an overlay mount in a private mount
  namespace, root only), the build stops with the install hint; a prefix given only by
  CPATH/LIBRARY_PATH or by CFLAGS/LDFLAGS builds a working extension.
- CACHEMATE_ZSTD_STATIC links a position-independent libzstd.a (built by .ci/build-zstd.sh
  from the zstd sources in the zstandard sdist, from the package index) into the extension:
  no NEEDED libzstd, and the archive's version runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CC = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
TIMEOUT = 900
ZSTD_HEADERS = ("zstd.h", "zstd_errors.h", "zdict.h")

pytestmark = [pytest.mark.slow, pytest.mark.packaging]


def run(args: list[str | Path], cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **env},
        check=False,
    )
    proc.stdout += proc.stderr
    return proc


def build_ext(out: Path, *, prefix: list[str] | None = None, **env: str) -> str:
    """setup.py build_ext into `out`; returns the output, with the exit status checked by
    the caller through `built(out)`."""
    args: list[str | Path] = [*(prefix or []), sys.executable, "setup.py", "build_ext"]
    args += ["-b", out / "lib", "-t", out / "tmp"]
    return run(args, **env).stdout


def built(out: Path) -> Path | None:
    found = sorted((out / "lib" / "fastapi_cachemate").glob("_native*.so"))
    return found[0] if found else None


def needed(library: Path) -> list[str]:
    proc = run(["readelf", "-d", library])
    assert proc.returncode == 0, proc.stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", proc.stdout)


def zstd_version_of(library: Path) -> str:
    """Loads the built extension in a fresh interpreter, round-trips zstd, returns the
    version of the libzstd it runs with."""
    code = f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("fastapi_cachemate._native", {str(library)!r})
        native = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(native)
        data = b"zstd " * 5000
        assert native.decompress(native.compress(data)) == data
        print(native.ZSTD_VERSION)
    """
    proc = run([sys.executable, "-c", textwrap.dedent(code)], cwd=library.parent)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout.strip()


def system_header_dir() -> Path:
    """The directory of the zstd.h the compiler includes by default."""
    proc = subprocess.run(
        [*CC, "-M", "-x", "c", "-"],
        input="#include <zstd.h>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"(\S*/zstd\.h)", proc.stdout)
    assert found is not None, proc.stdout
    return Path(found.group(1)).resolve().parent


def system_library() -> Path:
    """The libzstd.so the linker takes for -lzstd (the file behind the dev symlink)."""
    proc = run([*CC, "-print-file-name=libzstd.so"])
    path = Path(proc.stdout.strip())
    assert path.is_absolute(), proc.stdout
    assert path.exists(), proc.stdout
    return path


def copy_headers(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ZSTD_HEADERS:
        if (system_header_dir() / name).exists():
            shutil.copy(system_header_dir() / name, dest / name)
    return dest


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def header_version(header: Path) -> str:
    text = header.read_text()
    parts = [
        re.search(rf"#define ZSTD_VERSION_{p}\s+(\d+)", text) for p in ("MAJOR", "MINOR", "RELEASE")
    ]
    assert all(parts)
    return ".".join(m.group(1) for m in parts if m is not None)


# --- the header the compiler sees is the one probed --------------------------------------


@pytest.fixture(scope="module")
def old_zstd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prefix whose zstd.h says 1.4.4 (older than the 1.5.2 needed), and a .pc for it."""
    prefix = tmp_path_factory.mktemp("old-zstd")
    include = copy_headers(prefix / "include")
    text = (include / "zstd.h").read_text()
    text = re.sub(r"#define ZSTD_VERSION_MINOR\s+\d+", "#define ZSTD_VERSION_MINOR 4", text)
    text = re.sub(r"#define ZSTD_VERSION_RELEASE\s+\d+", "#define ZSTD_VERSION_RELEASE 4", text)
    (include / "zstd.h").write_text(text)
    (prefix / "pkgconfig").mkdir()
    (prefix / "pkgconfig" / "libzstd.pc").write_text(
        f"Name: zstd\nDescription: test prefix\nVersion: 1.5.9\nCflags: -I{include}\nLibs: -lzstd\n"
    )
    return prefix


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CFLAGS", "-I{prefix}/include"),
        ("CPPFLAGS", "-I{prefix}/include"),
        ("CPATH", "{prefix}/include"),
        ("C_INCLUDE_PATH", "{prefix}/include"),
        ("PKG_CONFIG_PATH", "{prefix}/pkgconfig"),
    ],
)
def test_the_header_the_compiler_sees_is_probed(
    old_zstd: Path, tmp_path: Path, variable: str, value: str
) -> None:
    assert version_tuple(header_version(system_header_dir() / "zstd.h")) >= (1, 5, 2)
    out = build_ext(tmp_path, **{variable: value.format(prefix=old_zstd)})
    assert "fastapi-cachemate needs libzstd >= 1.5.2, found 1.4.4" in out, out
    assert built(tmp_path) is None


# --- a machine without the system's zstd --------------------------------------------------


def _cannot_run(why: str) -> None:
    """CI runs as root on Linux, where these tests must run: there, a missing capability is
    a failure. A developer's machine without it skips them, saying why."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def hide_system_zstd(tmp: Path) -> list[str]:
    """A command prefix that runs the rest in a private mount namespace where the system's
    zstd headers, libzstd.so and libzstd.a are removed (overlay mounts, whiteouts): the
    runtime libzstd.so.1 stays. pkg-config is pointed at an empty directory."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("unshare"):
        _cannot_run("hiding the system's zstd needs root and unshare (Linux)")
    include, lib = system_header_dir(), system_library().parent.resolve()
    lines = ["set -e"]
    for n, (directory, names) in enumerate(
        [(include, ZSTD_HEADERS), (lib, ("libzstd.so", "libzstd.a"))]
    ):
        upper, work = tmp / f"upper{n}", tmp / f"work{n}"
        upper.mkdir()
        work.mkdir()
        lines.append(
            f"mount -t overlay overlay -o lowerdir={directory},upperdir={upper},workdir={work}"
            f" {directory}"
        )
        lines += [f"rm -f {directory / name}" for name in names]
    lines.append('exec "$@"')
    probe = run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", "\n".join(lines), "_", "true"]
    )
    if probe.returncode != 0:
        _cannot_run(f"overlay mounts in a private namespace are not permitted here: {probe.stdout}")
    (tmp / "empty-pkgconfig").mkdir()
    return ["unshare", "-m", "--propagation", "private", "bash", "-c", "\n".join(lines), "_"]


@pytest.fixture(scope="module")
def zstd_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prefix with copies of the system's zstd headers and shared library."""
    prefix = tmp_path_factory.mktemp("zstd-prefix")
    copy_headers(prefix / "include")
    (prefix / "lib").mkdir()
    shutil.copy(system_library().resolve(), prefix / "lib" / "libzstd.so")
    return prefix


def test_without_zstd_the_build_stops_with_the_install_hint(tmp_path: Path) -> None:
    hidden = hide_system_zstd(tmp_path)
    out = build_ext(tmp_path, prefix=hidden, PKG_CONFIG_LIBDIR=str(tmp_path / "empty-pkgconfig"))
    assert "fastapi-cachemate: zstd.h not found." in out, out
    assert "apt-get install libzstd-dev" in out
    assert built(tmp_path) is None


def test_a_header_without_its_library_stops_with_the_linker_message(
    tmp_path: Path, zstd_prefix: Path
) -> None:
    hidden = hide_system_zstd(tmp_path)
    out = build_ext(
        tmp_path,
        prefix=hidden,
        PKG_CONFIG_LIBDIR=str(tmp_path / "empty-pkgconfig"),
        CPATH=str(zstd_prefix / "include"),
    )
    assert "was found but the linker cannot link libzstd" in out, out
    assert built(tmp_path) is None


@pytest.mark.parametrize(
    ("include_variable", "include_value", "lib_variable", "lib_value"),
    [
        ("CPATH", "{prefix}/include", "LIBRARY_PATH", "{prefix}/lib"),
        ("CFLAGS", "-I{prefix}/include", "LDFLAGS", "-L{prefix}/lib"),
    ],
    ids=["CPATH-LIBRARY_PATH", "CFLAGS-LDFLAGS"],
)
def test_zstd_in_a_prefix_given_only_by_the_compiler_variables(
    tmp_path: Path,
    zstd_prefix: Path,
    include_variable: str,
    include_value: str,
    lib_variable: str,
    lib_value: str,
) -> None:
    hidden = hide_system_zstd(tmp_path)
    env = {
        "PKG_CONFIG_LIBDIR": str(tmp_path / "empty-pkgconfig"),
        include_variable: include_value.format(prefix=zstd_prefix),
        lib_variable: lib_value.format(prefix=zstd_prefix),
    }
    out = build_ext(tmp_path, prefix=hidden, **env)
    library = built(tmp_path)
    assert library is not None, out
    assert any(name.startswith("libzstd.so") for name in needed(library))
    assert zstd_version_of(library) == header_version(zstd_prefix / "include" / "zstd.h")


# --- static linking --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pic_libzstd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prefix with a libzstd.a compiled with -fPIC by .ci/build-zstd.sh (the script the
    wheel builds use) from the zstd sources in the zstandard sdist of the package index."""
    prefix = tmp_path_factory.mktemp("pic-zstd")
    script = ROOT / ".ci" / "build-zstd.sh"
    proc = run(["sh", script, prefix], PYTHON=sys.executable, CC=shlex.join(CC), ZSTD_OPT="-O0")
    assert proc.returncode == 0, proc.stdout
    assert (prefix / "lib" / "libzstd.a").is_file()
    return prefix


@pytest.mark.parametrize("switch", ["path", "search"])
def test_static_switch_links_the_archive_into_the_extension(
    tmp_path: Path, pic_libzstd: Path, switch: str
) -> None:
    archive_version = header_version(pic_libzstd / "include" / "zstd.h")
    env = {"CPATH": str(pic_libzstd / "include"), "PKG_CONFIG_LIBDIR": str(tmp_path)}
    if switch == "path":
        env["CACHEMATE_ZSTD_STATIC"] = str(pic_libzstd / "lib" / "libzstd.a")
    else:  # on the linker's search path, ahead of the system's
        env["CACHEMATE_ZSTD_STATIC"] = "1"
        env["LIBRARY_PATH"] = str(pic_libzstd / "lib")
    out = build_ext(tmp_path, **env)
    library = built(tmp_path)
    assert library is not None, out
    assert not any("zstd" in name for name in needed(library)), needed(library)
    assert zstd_version_of(library) == archive_version


def test_static_switch_names_a_missing_archive(tmp_path: Path) -> None:
    out = build_ext(tmp_path, CACHEMATE_ZSTD_STATIC=str(tmp_path / "nowhere" / "libzstd.a"))
    assert f"CACHEMATE_ZSTD_STATIC={tmp_path / 'nowhere' / 'libzstd.a'}: no such file" in out
    assert built(tmp_path) is None


def test_static_switch_with_the_systems_archive(tmp_path: Path) -> None:
    """Distributions' libzstd.a is often not position-independent (Debian's is not): then the
    probe says so before the build; where it is, the extension has no NEEDED libzstd."""
    out = build_ext(tmp_path, CACHEMATE_ZSTD_STATIC="1")
    library = built(tmp_path)
    if library is None:  # not position-independent, or no libzstd.a at all
        assert "the linker cannot link libzstd" in out, out
        assert "-fPIC" in out
    else:
        assert not any("zstd" in name for name in needed(library))
