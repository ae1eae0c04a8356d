# The project's interface. `make test` and `make run` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SYSTEM_PACKAGES := gcc make pkg-config libzstd-dev redis-server redis-tools clang-format
PYTEST_ARGS ?=

.PHONY: help system venv build test test-pure sanitize leaks fuzz bench run lint typecheck format clean

help:
	@echo "make test       build the extension and run the test suite"
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
