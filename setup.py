"""Build the C extension ``fastapi_cachemate._native`` from ``csrc/*.c``.

Environment switches (all off by default):
  CACHEMATE_DEBUG_BUILD=1  -O0 -g3, assertions on
  CACHEMATE_SANITIZE=1     AddressSanitizer + UndefinedBehaviorSanitizer
  CACHEMATE_COVERAGE=1     gcov instrumentation
  CI=true                  warnings are errors
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from glob import glob
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MIN_ZSTD = (1, 5, 2)
HERE = Path(__file__).resolve().parent


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}


def _pkg_config(*args: str) -> list[str] | None:
    if shutil.which("pkg-config") is None:
        return None
    try:
        out = subprocess.run(
            ["pkg-config", *args, "libzstd"], check=True, capture_output=True, text=True
        ).stdout
    except subprocess.CalledProcessError:
        return None
    return shlex.split(out)


def _zstd_flags() -> tuple[list[str], list[str]]:
    cflags = _pkg_config("--cflags")
    libs = _pkg_config("--libs")
    if cflags is not None and libs is not None:
        version = _pkg_config("--modversion") or ["0"]
        parsed = tuple(int(p) for p in version[0].split(".")[:3] if p.isdigit())
        if parsed < MIN_ZSTD:
            sys.exit(
                f"fastapi-cachemate needs libzstd >= {'.'.join(map(str, MIN_ZSTD))}, "
                f"found {version[0]}. Upgrade libzstd-dev (Debian/Ubuntu) or libzstd-devel."
            )
        return cflags, libs
    return [], ["-lzstd"]


class BuildExt(build_ext):
    """Fail early, with the package to install, when zstd.h is missing."""

    def build_extensions(self) -> None:
        compiler = self.compiler
        include_dirs = list(compiler.include_dirs) + ["/usr/include", "/usr/local/include"]
        for ext in self.extensions:
            include_dirs += ext.include_dirs
        cflags, _ = _zstd_flags()
        include_dirs += [f[2:] for f in cflags if f.startswith("-I")]
        if not any(Path(d, "zstd.h").exists() for d in include_dirs):
            sys.exit(
                "fastapi-cachemate: zstd.h not found. Install the zstd development package: "
                "'apt-get install libzstd-dev' (Debian/Ubuntu), 'dnf install libzstd-devel' "
                "(Fedora), 'brew install zstd' (macOS)."
            )
        super().build_extensions()


def _extension() -> Extension:
    cflags, libs = _zstd_flags()
    extra_compile = ["-std=c11", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
                     "-Wno-missing-field-initializers", "-Wno-unused-parameter",
                     "-fvisibility=hidden"]
    extra_link: list[str] = []
    if _flag("CI") or _flag("CACHEMATE_WERROR"):
        extra_compile.append("-Werror")
    if _flag("CACHEMATE_DEBUG_BUILD") or _flag("CACHEMATE_SANITIZE"):
        extra_compile += ["-O0", "-g3", "-UNDEBUG"]
    else:
        extra_compile += ["-O3"]
    if _flag("CACHEMATE_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        extra_compile += san
        extra_link += san
    if _flag("CACHEMATE_COVERAGE"):
        extra_compile += ["--coverage", "-O0"]
        extra_link += ["--coverage"]
    return Extension(
        "fastapi_cachemate._native",
        sources=sorted(glob("csrc/*.c")),
        depends=sorted(glob("csrc/*.h")),
        include_dirs=["csrc"] + [f[2:] for f in cflags if f.startswith("-I")],
        extra_compile_args=extra_compile + [f for f in cflags if not f.startswith("-I")],
        extra_link_args=extra_link,
        libraries=[f[2:] for f in libs if f.startswith("-l")],
        library_dirs=[f[2:] for f in libs if f.startswith("-L")],
    )


setup(ext_modules=[_extension()], cmdclass={"build_ext": BuildExt})
