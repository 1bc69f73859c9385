# Provisioning Hooks — the commands a developer and CI run.
#
#   make test    fmt check, clippy -D warnings, every test (nextest)
#   make bench   the benchmarks (figures in BENCHMARKS.md)
#
# Tools are pinned and installed into the project (.tools/) when missing.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

NEXTEST_VERSION := 0.9.143
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)
CARGO ?= cargo

.PHONY: help
help:
	@echo "make test    check formatting and lints, run every test"
	@echo "make bench   run the benchmarks"

# cargo-nextest, pinned; installed into .tools/ unless that exact version is already on PATH.
.PHONY: tools
tools:
	@if ! $(CARGO) nextest --version 2>/dev/null | grep -q "cargo-nextest $(NEXTEST_VERSION)"; then \
		echo "installing cargo-nextest $(NEXTEST_VERSION) into .tools/"; \
		$(CARGO) install cargo-nextest --version $(NEXTEST_VERSION) --locked --root $(TOOLS); \
	fi

.PHONY: fmt-check
fmt-check:
	$(CARGO) fmt --all --check

.PHONY: lint
lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test
test: tools fmt-check lint
	$(CARGO) nextest run --workspace --locked --profile $(if $(CI),ci,default)

.PHONY: bench
bench:
	$(CARGO) bench --locked -p hooks-tests --bench chain
