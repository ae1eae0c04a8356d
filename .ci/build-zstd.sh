#!/bin/sh
# Builds a position-independent static libzstd into PREFIX (PREFIX/include/zstd*.h,
# PREFIX/lib/libzstd.a) from the single-file zstd sources that the zstandard sdist ships, so
# that only the package index is needed. For wheel builds (see [tool.cibuildwheel] in
# pyproject.toml) on platforms whose libzstd is older than 1.5.2 (manylinux_2_28) or should not
# become a dependency; link it with CACHEMATE_ZSTD_STATIC=PREFIX/lib/libzstd.a.
#   PYTHON     the interpreter whose pip downloads the sdist (python3)
#   CC         the C compiler (cc); ZSTD_OPT its optimisation flag (-O3); CFLAGS are added
set -eu
prefix=${1:?usage: build-zstd.sh PREFIX}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --no-binary :all: -d "$work" "zstandard>=0.22,<1"
tar -xzf "$work"/zstandard-*.tar.gz -C "$work"
src=$(echo "$work"/zstandard-*/zstd)
mkdir -p "$prefix/include" "$prefix/lib"
cp "$src/zstd.h" "$src/zstd_errors.h" "$src/zdict.h" "$prefix/include/"
# shellcheck disable=SC2086  # CFLAGS is a list of flags
${CC:-cc} ${ZSTD_OPT:--O3} -fPIC -pthread ${CFLAGS:-} -c "$src/zstd.c" -o "$work/zstd.o"
rm -f "$prefix/lib/libzstd.a"
ar rcs "$prefix/lib/libzstd.a" "$work/zstd.o"
echo "libzstd $(sed -n -E 's/^#define ZSTD_VERSION_(MAJOR|MINOR|RELEASE) +([0-9]+).*/\2/p' "$prefix/include/zstd.h" | paste -sd. -) in $prefix"
