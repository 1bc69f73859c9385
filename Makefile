# Provisioning Hooks — the commands a developer and CI run.
#
#   make test    fmt check, clippy -D warnings, every test (nextest), the
#                console's browser tests in headless Chromium
#   make bench   the benchmarks (figures in BENCHMARKS.md)
#
# Tools are pinned and installed into the project when missing: cargo-nextest
# into .tools/, the AWS API emulator (moto, from PyPI) into the virtualenv .venv/,
# Debian's chromium and chromium-driver (for the browser tests) with apt.

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
	@echo "make cost    what a million events cost on AWS, counted per scenario"
	@echo "make soak    the long soak under injected faults (SOAK_EVENTS=10000)"
	@echo "make fuzz    the fuzz targets, each for FUZZ_SECONDS (60)"
	@echo "make package build both functions for AWS (arm64 zips in target/lambda/arm64)"
	@echo "make deploy  build and deploy the stack (sam; guided the first time)"
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
	@echo "▶ installing the Python tools (the AWS API emulator, cargo-lambda, sam, linters) into .venv/"
	$(PYTHON) -m venv $(VENV)
	@# Every package is pinned (the file is a whole freeze): no resolving,
	@# and pip check fails if the freeze ever misses one.
	$(VENV)/bin/pip install --disable-pip-version-check --progress-bar off --no-deps -r requirements-dev.txt
	$(VENV)/bin/pip check
	touch $@

# Debian's Chromium and its WebDriver, for the console's browser tests;
# installed when missing (as root, or through sudo).
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "▶ installing Debian's chromium and chromium-driver (the console's browser tests)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	fi

.PHONY: fmt-check
fmt-check:
	$(CARGO) fmt --all --check

.PHONY: lint
lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: lint-infra
lint-infra: $(VENV)/.installed
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(VENV)/bin/cfn-lint infra/template.yaml --parameters SubnetIds=subnet-0123456789abcdef0,subnet-0fedcba9876543210 \
		SecurityGroupIds=sg-0123456789abcdef0 SecretsArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:hooks-AbCdEf
	env -u AWS_ENDPOINT_URL SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint --template infra/template.yaml --region us-east-1
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

.PHONY: test
test: tools browser fmt-check lint lint-infra
	@# The functions as cargo lambda watch builds them (one package each), so
	@# that the end-to-end tests find them built.
	$(CARGO) build --locked --bin ingest
	$(CARGO) build --locked --bin dispatch
	$(CARGO) build --locked --bin lambda-sandbox
	$(CARGO) nextest run --workspace --locked --profile $(if $(CI),ci,default)

# Emulator, tables and queues, handlers.toml synced, both functions under
# cargo lambda watch, the queue fed to dispatch, example handler endpoints.
.PHONY: dev
# One build of the CLI and both functions, with the features cargo lambda
# watch's `cargo run --bin X` uses, so nothing is built twice.
dev: tools
	$(CARGO) build --locked --bin hooks --bin ingest --bin dispatch
	$(CARGO) build --locked --bin lambda-sandbox
	@echo "▶ the hooks command is target/debug/hooks: export PATH=\"$(CURDIR)/target/debug:\$$PATH\""
	$(CURDIR)/target/debug/hooks dev

# The long soak: HOOKS_SOAK_EVENTS events through the local stack with
# injected faults and a dispatch instance killed in the middle of a call;
# prints what it checked.
# SOAK_OUTAGE_SECS sets the endpoint's outage; SOAK_PAUSING=1 lets the
# handler pause as handlers.toml's defaults say (off by default).
SOAK_EVENTS ?= 10000
SOAK_PACE_MS ?= 800
SOAK_OUTAGE_SECS ?= 3
SOAK_PAUSING ?= 0
SOAK_KILL ?= 1
.PHONY: soak
soak: tools
	$(CARGO) build --locked --bin ingest
	$(CARGO) build --locked --bin dispatch
	$(CARGO) build --locked --bin lambda-sandbox
	HOOKS_SOAK_EVENTS=$(SOAK_EVENTS) HOOKS_SOAK_PACE_MS=$(SOAK_PACE_MS) HOOKS_SOAK_KILL=$(SOAK_KILL) \
	HOOKS_SOAK_OUTAGE_SECS=$(SOAK_OUTAGE_SECS) HOOKS_SOAK_PAUSING=$(SOAK_PAUSING) \
		$(CARGO) nextest run --workspace --locked --no-capture \
		-E 'test(soak_under_injected_faults)'

# The fuzz targets (tests/support/fuzz.rs), each for FUZZ_SECONDS; findings
# are saved under target/fuzz-findings/ (exit 1 if there are any).
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	$(CARGO) build --locked --release -p hooks-tests --bin fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CURDIR)/target/release/fuzz

.PHONY: bench
bench: tools
	$(CARGO) build --locked --release --bin ingest --bin dispatch --bin hooks
	$(CARGO) build --locked --release -p hooks-tests --bin hello-lambda --bin sdk-lambda
	$(CARGO) build --locked --bin ingest
	$(CARGO) build --locked --bin dispatch
	$(CARGO) build --locked --bin lambda-sandbox
	$(CARGO) bench --locked -p hooks-tests --bench chain --bench config --bench console --bench schemas --bench pipeline --bench cost

# What a million events cost on AWS: the local stack with the release
# functions, every AWS call metered as AWS bills it (BENCHMARKS.md).
.PHONY: cost
cost: tools
	$(CARGO) build --locked --release --bin ingest --bin dispatch
	$(CARGO) bench --locked -p hooks-tests --bench cost

# The local AWS API emulator in the foreground (Ctrl-C stops it). Point the
# SDK at it with AWS_ENDPOINT_URL=http://127.0.0.1:$(EMULATOR_PORT).
.PHONY: emulator
emulator: $(VENV)/.installed
	$(VENV)/bin/python3 local/emulator.py -H 127.0.0.1 -p $(EMULATOR_PORT)

# Both functions for AWS Lambda (provided.al2023, arm64), one zip each, in
# target/lambda/arm64/<function>/bootstrap.zip. Cross-compiles with zig (from .venv).
.PHONY: package
package: tools
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build --release --arm64 \
		--output-format zip --lambda-dir target/lambda/arm64 --bin ingest --bin dispatch
	@ls -l target/lambda/arm64/*/bootstrap.zip

# sam build (cargo-lambda) and sam deploy; the first run asks for the stack's
# parameters and saves them in infra/samconfig.toml.
.PHONY: deploy
deploy: tools
	rustup target add aarch64-unknown-linux-gnu
	cd infra && PATH="$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam build --beta-features
	cd infra && PATH="$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam deploy \
		$(if $(wildcard infra/samconfig.toml),,--guided) --capabilities CAPABILITY_IAM

# sam build runs this for infra/template.yaml's ScriptsLayer: the scripts
# handlers.toml runs, which Lambda mounts at /opt (HOOKS_SCRIPTS_DIR).
.PHONY: build-ScriptsLayer
build-ScriptsLayer:
	mkdir -p "$(ARTIFACTS_DIR)/scripts"
	cp -R scripts/. "$(ARTIFACTS_DIR)/scripts/"

# Re-pins every Python tool from requirements-dev.in.
.PHONY: requirements
requirements:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/pip install --quiet -r requirements-dev.in
	.venv-pin/bin/pip check
	{ echo "# Generated from requirements-dev.in by \`make requirements\`: every package pinned, so every machine runs the same tools."; \
	  .venv-pin/bin/pip freeze --all --exclude pip --exclude setuptools; } > requirements-dev.txt
	rm -rf .venv-pin
