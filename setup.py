"""Build the C extension ``fastapi_cachemate._native`` from ``csrc/*.c``.

Environment switches (all off by default):
  CACHEMATE_DEBUG_BUILD=1  -O0 -g3, assertions on
  CACHEMATE_SANITIZE=1     AddressSanitizer + UndefinedBehaviorSanitizer
  CACHEMATE_COVERAGE=1     gcov instrumentation
  CACHEMATE_ZSTD_STATIC=1  link libzstd.a statically, found on the linker's search path
                           (LDFLAGS -L, LIBRARY_PATH, pkg-config's -L, the system's; GNU ld/lld)
  CACHEMATE_ZSTD_STATIC=/path/to/libzstd.a   link that archive statically
  CI=true                  warnings are errors

zstd is found by asking the compiler, with the flags the extension itself is built with: a
try-preprocess of ``#include <zstd.h>`` (which also reads the header's version) and a try-link
against libzstd. CFLAGS, CPPFLAGS, LDFLAGS, CPATH, C_INCLUDE_PATH, LIBRARY_PATH and pkg-config's
libzstd flags all apply, as they do to the real build. A static archive must be compiled with
-fPIC (Debian's libzstd.a is).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from glob import glob
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MIN_ZSTD = (1, 5, 2)
HERE = Path(__file__).resolve().parent
INSTALL_HINT = (
    "Install the zstd development package: 'apt-get install libzstd-dev' (Debian/Ubuntu), "
    "'dnf install libzstd-devel' (Fedora), 'apk add zstd-dev' (Alpine), 'brew install zstd' "
    "(macOS); or point the compiler at a prefix with CFLAGS=-I.../LDFLAGS=-L..., "
    "CPATH/LIBRARY_PATH or PKG_CONFIG_PATH."
)
VERSION_PROBE = """#include <zstd.h>
cachemate_zstd_version ZSTD_VERSION_MAJOR ZSTD_VERSION_MINOR ZSTD_VERSION_RELEASE
"""
# Every libzstd function csrc/ calls, so that the probe pulls in the same archive members a
# static link of the extension does (a non-PIC libzstd.a fails here, with the hint).
LINK_PROBE = """#include <zstd.h>
#include <zstd_errors.h>
void *cachemate_zstd_probe[] = {
    (void *)ZSTD_compressBound, (void *)ZSTD_createCCtx, (void *)ZSTD_createDCtx,
    (void *)ZSTD_compress2, (void *)ZSTD_CCtx_setParameter, (void *)ZSTD_decompressDCtx,
    (void *)ZSTD_decompressStream, (void *)ZSTD_findFrameCompressedSize,
    (void *)ZSTD_freeCCtx, (void *)ZSTD_freeDCtx, (void *)ZSTD_getErrorCode,
    (void *)ZSTD_getErrorName, (void *)ZSTD_getFrameContentSize, (void *)ZSTD_isError,
    (void *)ZSTD_maxCLevel, (void *)ZSTD_minCLevel, (void *)ZSTD_versionString,
};
"""


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


def _static_archive() -> str | None:
    """The CACHEMATE_ZSTD_STATIC switch: None (link the shared libzstd), "" (libzstd.a from
    the linker's search path) or the path of a libzstd.a."""
    value = os.environ.get("CACHEMATE_ZSTD_STATIC", "").strip()
    if value.lower() in {"", "0", "false", "no", "off"}:
        return None
    if value.lower() in {"1", "true", "yes", "on"}:
        if sys.platform == "darwin":
            sys.exit(
                "fastapi-cachemate: CACHEMATE_ZSTD_STATIC=1 needs GNU ld or lld; on macOS give "
                "the archive's path: CACHEMATE_ZSTD_STATIC=/opt/homebrew/lib/libzstd.a"
            )
        return ""
    if not Path(value).is_file():
        sys.exit(f"fastapi-cachemate: CACHEMATE_ZSTD_STATIC={value}: no such file")
    return str(Path(value).resolve())


def _zstd_flags() -> tuple[list[str], list[str]]:
    """Compile and link flags for libzstd: pkg-config's when it knows libzstd, else -lzstd
    (the compiler's own search path, CPATH and LIBRARY_PATH included, does the rest)."""
    static = _static_archive()
    cflags = _pkg_config("--cflags")
    libs = _pkg_config("--libs", "--static") if static is not None else _pkg_config("--libs")
    if cflags is None or libs is None:
        cflags, libs = [], ["-lzstd"]
    if static == "":
        libs = ["-l:libzstd.a" if f == "-lzstd" else f for f in libs]
    elif static is not None:
        libs = [static if f == "-lzstd" else f for f in libs]
    return cflags, libs


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def _static_hint(linker_output: str) -> str:
    if "-fPIC" not in linker_output:
        return ""
    return (
        " This libzstd.a was not compiled with -fPIC, so it cannot go into a shared"
        " object (Debian 12's is not): build one with -fPIC (.ci/build-zstd.sh does), or"
        " link the shared libzstd (unset CACHEMATE_ZSTD_STATIC)."
    )


def _run(args: list[str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)


class BuildExt(build_ext):
    """Ask the compiler for zstd before building: a missing or too old zstd.h, or a libzstd
    the linker cannot find, stops the build with what to install."""

    def build_extensions(self) -> None:
        compiler = self.compiler
        # The probe needs a Unix-style compiler driver (gcc, clang); on others the build
        # itself is the probe.
        if hasattr(compiler, "compiler_so") and hasattr(compiler, "linker_so"):
            for ext in self.extensions:
                self._probe_zstd(ext)
        super().build_extensions()

    def _probe_zstd(self, ext: Extension) -> None:
        includes = (os.path.abspath(d) for d in ext.include_dirs)
        compile_cmd = [*self.compiler.compiler_so, *(f"-I{d}" for d in includes)]
        compile_cmd += [f for f in ext.extra_compile_args if not f.startswith("-W")]
        with tempfile.TemporaryDirectory(prefix="cachemate-zstd-probe-") as tmp:
            Path(tmp, "version.c").write_text(VERSION_PROBE)
            pre = _run([*compile_cmd, "-E", "-P", "version.c"], tmp)
            found = re.search(r"cachemate_zstd_version\s+(\d+)\s+(\d+)\s+(\d+)", pre.stdout)
            if pre.returncode != 0:
                sys.exit(
                    f"fastapi-cachemate: zstd.h not found. {INSTALL_HINT}\n"
                    f"  the compiler said:\n{_tail(pre.stderr)}"
                )
            if found is None:
                sys.exit(
                    "fastapi-cachemate: the zstd.h the compiler found does not define "
                    f"ZSTD_VERSION_MAJOR/MINOR/RELEASE: not libzstd's header. {INSTALL_HINT}"
                )
            version = tuple(int(part) for part in found.groups())
            if version < MIN_ZSTD:
                sys.exit(
                    f"fastapi-cachemate needs libzstd >= {'.'.join(map(str, MIN_ZSTD))}, "
                    f"found {'.'.join(map(str, version))}. Upgrade libzstd-dev "
                    "(Debian/Ubuntu) or libzstd-devel."
                )
            Path(tmp, "link.c").write_text(LINK_PROBE)
            built = _run([*compile_cmd, "-c", "link.c", "-o", "link.o"], tmp)
            if built.returncode != 0:
                sys.exit(
                    "fastapi-cachemate: zstd.h was found but a file including it does not "
                    f"compile:\n{_tail(built.stderr)}"
                )
            link_cmd = [*self.compiler.linker_so, "link.o", "-o", "probe.so"]
            link_cmd += [f"-L{d}" for d in ext.library_dirs]
            link_cmd += [*ext.extra_objects, *(f"-l{lib}" for lib in ext.libraries)]
            link_cmd += ext.extra_link_args
            linked = _run(link_cmd, tmp)
            if linked.returncode != 0:
                sys.exit(
                    f"fastapi-cachemate: zstd.h {'.'.join(map(str, version))} was found but "
                    f"the linker cannot link libzstd. {INSTALL_HINT}{_static_hint(linked.stderr)}\n"
                    f"  the linker said:\n{_tail(linked.stderr)}"
                )


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
        extra_link_args=extra_link + [f for f in libs if not f.startswith(("-l", "-L", "/"))],
        extra_objects=[f for f in libs if f.startswith("/")],
        libraries=[f[2:] for f in libs if f.startswith("-l")],
        library_dirs=[f[2:] for f in libs if f.startswith("-L")],
    )


setup(ext_modules=[_extension()], cmdclass={"build_ext": BuildExt})
