# The two commands: `make demo` and `make test` (unit and integration tests; `make test-unit`
# runs the fast set alone). Both set themselves up on a fresh Debian machine: a virtual
# environment with the package, and the docker-registry binary.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit bench bench-copy bench-latency bench-scan registry-binary clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# docker-registry (CNCF distribution 2.8.2) is a Debian package; install it when we can.
registry-binary:
	@if ! command -v docker-registry >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing docker-registry with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; \
	  else \
	    echo "error: the docker-registry binary is missing: run 'sudo apt-get install docker-registry' (Debian/Ubuntu)"; \
	    exit 1; \
	  fi; \
	fi

demo: $(STAMP) registry-binary
	BIN=$(BIN) bash examples/demo.sh

# TEST_WORKERS pytest-xdist processes (each starts its own registries); TEST_WORKERS=0 runs
# in this process, one test at a time.
TEST_WORKERS ?= 4
test: $(STAMP) registry-binary
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# The fast set only (tests/unit: no registry, no network; well under a minute).
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

bench: $(STAMP) registry-binary
	$(BIN)/python benchmarks/transfer.py $(BENCH_ARGS)

# Registry -> registry copy against skopeo copy and a pull + push (skopeo: apt-get install skopeo).
bench-copy: $(STAMP) registry-binary
	$(BIN)/python benchmarks/copy_bench.py $(BENCH_ARGS)

# Push/pull through a delaying proxy (RTT 0/20/80 ms, 100 MB/s): ocimodel vs oras-py vs a
# sequential floor, next to the physical floor. BENCH_ARGS="--quick" for a few minutes' run.
bench-latency: $(STAMP) registry-binary
	$(BIN)/python benchmarks/latency.py $(BENCH_ARGS)

# The scanner against picklescan, modelscan and fickling on the test corpus (no registry needed).
bench-scan: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench-scan]'
	$(BIN)/python benchmarks/scan.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
