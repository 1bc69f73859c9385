# Provisioning Hooks — the commands a developer and CI run.
#
#   make test    fmt check, clippy -D warnings, every test (nextest)
#   make bench   the benchmarks (figures in BENCHMARKS.md)
#
# Tools are pinned and installed into the project when missing: cargo-nextest
# into .tools/, the AWS API emulator (moto, from PyPI) into the virtualenv .venv/.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

NEXTEST_VERSION := 0.9.143
TOOLS := $(CURDIR)/.tools
PYTHON ?= python3
VENV := $(CURDIR)/.venv
export PATH := $(TOOLS)/bin:$(PATH)
CARGO ?= cargo
EMULATOR_PORT ?= 4566

.PHONY: help
help:
	@echo "make dev     run the whole system locally (Ctrl-C stops it)"
	@echo "make test    check formatting and lints, run every test"
	@echo "make bench   run the benchmarks"
	@echo "make emulator  run the local AWS API emulator on 127.0.0.1:$(EMULATOR_PORT)"

# cargo-nextest, pinned; installed into .tools/ unless that exact version is already on PATH.
# The emulator: every Python package pinned in requirements-dev.txt.
.PHONY: tools
tools: $(VENV)/.installed
	@if ! $(CARGO) nextest --version 2>/dev/null | grep -q "cargo-nextest $(NEXTEST_VERSION)"; then \
		echo "installing cargo-nextest $(NEXTEST_VERSION) into .tools/"; \
		$(CARGO) install cargo-nextest --version $(NEXTEST_VERSION) --locked --root $(TOOLS); \
	fi

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.PHONY: fmt-check
fmt-check:
	$(CARGO) fmt --all --check

.PHONY: lint
lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test
test: tools fmt-check lint
	@# The functions as cargo lambda watch builds them (one package each), so
	@# that the end-to-end tests find them built.
	$(CARGO) build --locked --bin ingest
	$(CARGO) build --locked --bin dispatch
	$(CARGO) nextest run --workspace --locked --profile $(if $(CI),ci,default)

# Emulator, tables and queues, handlers.toml synced, both functions under
# cargo lambda watch, the queue fed to dispatch, example handler endpoints.
.PHONY: dev
dev: tools
	$(CARGO) build --locked -p hooks-cli -p ingest -p dispatch
	$(CARGO) run --locked -q -p hooks-cli -- dev

.PHONY: bench
bench: tools
	$(CARGO) build --locked --release --bin ingest --bin dispatch
	$(CARGO) build --locked --release -p hooks-tests --bin hello-lambda
	$(CARGO) build --locked --bin ingest
	$(CARGO) build --locked --bin dispatch
	$(CARGO) bench --locked -p hooks-tests --bench chain --bench config --bench pipeline

# The local AWS API emulator in the foreground (Ctrl-C stops it). Point the
# SDK at it with AWS_ENDPOINT_URL=http://127.0.0.1:$(EMULATOR_PORT).
.PHONY: emulator
emulator: $(VENV)/.installed
	$(VENV)/bin/moto_server -H 127.0.0.1 -p $(EMULATOR_PORT)
