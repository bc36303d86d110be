# fleetprof — `make run` and `make test` set up whatever is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BPF_DIR := src/fleetprof/tracer/bpf
BPF_OBJ := $(BPF_DIR)/sampler.bpf.o
BPF_SRC := $(BPF_DIR)/sampler.bpf.c $(wildcard $(BPF_DIR)/*.h) $(wildcard src/fleetprof/nativeunwind/*.h) \
	$(wildcard src/fleetprof/interpreters/python/*.h)
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -Wno-unused-function \
	-I$(BPF_DIR) -Isrc/fleetprof/nativeunwind -Isrc/fleetprof/interpreters/python
DEB_PACKAGES := clang llvm libbpf1 libbpf-dev gcc g++ make binutils gdb linux-perf procps chromium golang-go
STAMP := .stamp
DURATION ?= 10
OUT ?= fleetprof.html

.PHONY: help setup deps venv bpf test test-unit test-bpf run lint format bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: deps venv bpf ## install system packages, the venv and the BPF objects (idempotent)

deps: $(STAMP)/deps
$(STAMP)/deps: Makefile
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		(apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null; \
	fi
	@mkdir -p $(STAMP) && touch $@

venv: $(STAMP)/venv
$(STAMP)/venv: pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "fleetprof needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@mkdir -p $(STAMP) && touch $@

bpf: $(BPF_OBJ) ## compile the BPF programs (CO-RE objects)
$(BPF_OBJ): $(BPF_SRC) $(STAMP)/deps
	clang $(BPF_CFLAGS) -c $(BPF_DIR)/sampler.bpf.c -o $@

test: setup ## run every test (unit tier, then the BPF tier as root)
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: setup ## the tier that needs no root
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-bpf: setup ## the tier that runs BPF for real
	$(PY) -m pytest -q -p no:cacheprovider tests/bpf

run: setup ## record the whole host for $(DURATION) s into $(OUT), an HTML flame graph
	$(VENV)/bin/fleetprof record --all --duration $(DURATION) --output $(OUT)

lint: setup ## ruff
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools

format: setup
	$(VENV)/bin/ruff format src tests bench

bench: setup ## run every benchmark
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(STAMP) $(BPF_OBJ) build .pytest_cache
