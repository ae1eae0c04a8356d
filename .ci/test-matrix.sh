#!/usr/bin/env bash
# The test suite on every CPython of MATRIX_VERSIONS found on this machine, each in its own venv
# (build/matrix/X.Y, the extension built in place for that interpreter). An interpreter is found
# among pyenv's installs (pyenv root, or ~/.pyenv) or as pythonX.Y on PATH.
#   MATRIX_VERSIONS  the versions to run ("3.10 3.11 3.12 3.13")
#   MATRIX_STRICT=1  a version that is not found is a failure (CI), not only reported
#   MATRIX_MARKERS   a pytest -m expression for these runs (CI: "not packaging", whose tests
#                    build the distributions and run in `make test`)
#   PYTEST_ARGS      passed to pytest
set -uo pipefail
cd "$(dirname "$0")/.."
versions=${MATRIX_VERSIONS:-"3.10 3.11 3.12 3.13"}
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")

# Prints the path of a CPython X.Y interpreter, or nothing.
find_python() {
    local want=$1 dir cand
    for dir in $(ls -d "$root"/versions/"$want".* 2>/dev/null | sort -V -r); do
        [[ $(basename "$dir") =~ ^${want//./\\.}\.[0-9]+$ ]] || continue  # not 3.13.0t, -dev
        cand="$dir/bin/python$want"
        if [ -x "$cand" ]; then echo "$cand"; return; fi
    done
    # pythonX.Y on PATH; a pyenv shim of a version that is not active exits non-zero here.
    for cand in "python$want" "/usr/local/bin/python$want" "/usr/bin/python$want"; do
        command -v "$cand" >/dev/null 2>&1 || continue
        "$cand" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))) or sys.implementation.name != 'cpython')" 2>/dev/null || continue
        "$cand" -c "import sys; print(sys.executable)"
        return
    done
}

passed=() failed=() missing=()
for v in $versions; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        echo "=== CPython $v: not found (pyenv install $v, or put python$v on PATH)"
        missing+=("$v")
        continue
    fi
    venv="build/matrix/$v"
    echo "=== CPython $v: $py ($("$py" -c 'import platform; print(platform.python_version())')), venv $venv"
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv" || { echo "=== CPython $v: cannot create a venv"; failed+=("$v"); continue; }
    fi
    # -e builds the extension in place for this interpreter (its own ABI suffix) and installs
    # the test and lint dependencies, as `make venv` does for the main one.
    if ! { "$venv/bin/python" -m pip install -q --upgrade pip setuptools &&
           "$venv/bin/python" -m pip install -q -e ".[test,dev]"; }; then
        echo "=== CPython $v: installing failed"; failed+=("$v"); continue
    fi
    # shellcheck disable=SC2086  # PYTEST_ARGS is a list of arguments
    markers=()
    [ -z "${MATRIX_MARKERS:-}" ] || markers=(-m "$MATRIX_MARKERS")
    if "$venv/bin/python" -m pytest "${markers[@]}" ${PYTEST_ARGS:-}; then
        passed+=("$v")
    else
        echo "=== CPython $v: the suite failed"; failed+=("$v")
    fi
done

echo "=== test matrix: passed: ${passed[*]:-none}; failed: ${failed[*]:-none}; not found: ${missing[*]:-none}"
[ ${#failed[@]} -eq 0 ] || exit 1
[ ${#passed[@]} -gt 0 ] || { echo "=== no interpreter of $versions was found"; exit 1; }
if [ "${MATRIX_STRICT:-}" = 1 ] && [ ${#missing[@]} -gt 0 ]; then
    echo "=== MATRIX_STRICT=1: every one of $versions must be found"; exit 1
fi
