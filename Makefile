# fleetprof — `make run` and `make test` set up whatever is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BPF_DIR := src/fleetprof/tracer/bpf
BPF_OBJ := $(BPF_DIR)/sampler.bpf.o
BPF_SRC := $(BPF_DIR)/sampler.bpf.c $(wildcard $(BPF_DIR)/*.h) $(wildcard src/fleetprof/nativeunwind/*.h) \
	$(wildcard src/fleetprof/interpreters/python/*.h) $(wildcard src/fleetprof/interpreters/php/*.h) \
	$(wildcard src/fleetprof/interpreters/ruby/*.h) $(wildcard src/fleetprof/interpreters/perl/*.h) \
	$(wildcard src/fleetprof/interpreters/v8/*.h) $(wildcard src/fleetprof/interpreters/hotspot/*.h) \
	$(wildcard src/fleetprof/interpreters/go/*.h)
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -Wno-unused-function \
	-I$(BPF_DIR) -Isrc/fleetprof/nativeunwind -Isrc/fleetprof/interpreters/python \
	-Isrc/fleetprof/interpreters/php -Isrc/fleetprof/interpreters/ruby -Isrc/fleetprof/interpreters/perl \
	-Isrc/fleetprof/interpreters/v8 -Isrc/fleetprof/interpreters/hotspot \
	-Isrc/fleetprof/interpreters/go
DEB_PACKAGES := clang llvm libbpf1 libbpf-dev bpftool gcc g++ make binutils gdb linux-perf procps util-linux \
	chromium golang-go debuginfod php8.2-cli php8.2-dev php-excimer ruby3.1 ruby3.1-dev ruby-stackprof \
	libdevel-nytprof-perl openjdk-17-jdk-headless php8.2-fpm
# Installed from Debian only when the command is missing (a rustup or NodeSource install serves as well).
RUSTUP_CARGO := $(HOME)/.cargo/bin/cargo
NPM_DIR := tools/npm
NPM_STAMP := $(NPM_DIR)/node_modules/.package-lock.json
PYTEST := $(PY) -m pytest -q -p no:cacheprovider
# pytest's exit 5 means no test ran (nothing collected, or everything deselected): say so and fail.
run_pytest = $(PYTEST) $(1) || { rc=$$?; [ $$rc -ne 5 ] || echo "make: pytest ran no test in $(1) (exit 5)" >&2; exit $$rc; }
STAMP := .stamp
DURATION ?= 10
OUT ?= fleetprof.html
DATA_DIR ?= fleetprof-data
PORT ?= 8080

.PHONY: help setup deps venv bpf npm ui test test-unit test-bpf run record lint format bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: deps venv bpf npm ui ## install system packages, the venv, the BPF objects and test tools (idempotent)

deps: $(STAMP)/deps
$(STAMP)/deps: Makefile
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v cargo >/dev/null || test -x $(RUSTUP_CARGO) || missing="$$missing cargo"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
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

npm: $(NPM_STAMP) ## the npm packages the tests use (tools/npm: speedscope's file-format schema)
$(NPM_STAMP): $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(NPM_DIR) && npm ci --no-audit --no-fund --no-update-notifier --ignore-scripts --loglevel=error && touch node_modules/.package-lock.json; \
	else echo "npm is not installed: the tests that use $(NPM_DIR) will fail (make setup installs npm)"; fi

ui: web/dist/index.html ## build the web UI (web/ -> web/dist, served by fleetprof server at /)
web/node_modules/.package-lock.json: web/package.json web/package-lock.json | $(STAMP)/deps
	cd web && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error
web/dist/index.html: web/node_modules/.package-lock.json web/index.html web/vite.config.ts web/tsconfig.json \
		$(shell find web/src -type f 2>/dev/null)
	cd web && npm run --silent build && touch dist/index.html

bpf: $(BPF_OBJ) ## compile the BPF programs (CO-RE objects)
$(BPF_OBJ): $(BPF_SRC) $(STAMP)/deps
	clang $(BPF_CFLAGS) -c $(BPF_DIR)/sampler.bpf.c -o $@

test: setup ## run every test: the BPF tier as root, then the others (in their own pytest process)
	@$(call run_pytest,tests/bpf)
	@$(call run_pytest,tests --ignore=tests/bpf)

test-unit: venv npm ## the tiers that need no root (and no system packages installed by make)
	@$(call run_pytest,tests --ignore=tests/bpf -m "not bpf")

test-bpf: setup ## the tier that runs BPF for real
	@$(call run_pytest,tests/bpf)

run: setup ## the all-in-one backend + local agent on its embedded store (`fleetprof up`); Ctrl-C stops it
	$(VENV)/bin/fleetprof up --data-dir $(DATA_DIR) --port $(PORT)

record: setup ## record the whole host for $(DURATION) s into $(OUT), an HTML flame graph
	$(VENV)/bin/fleetprof record --all --duration $(DURATION) --output $(OUT)

lint: setup ## ruff
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools

format: setup
	$(VENV)/bin/ruff format src tests bench

bench: setup ## run every benchmark, each to its end (those that failed are named at the end)
	@failed=""; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "benches that failed:$$failed"; exit 1; fi

clean:
	rm -rf $(STAMP) $(BPF_OBJ) build .pytest_cache
