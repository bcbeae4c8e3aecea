# Targets shared by developers and CI. `make test` is the whole suite with set-up.
export CARGO_TARGET_DIR ?= $(CURDIR)/target
PY := .venv/bin/python

.PHONY: setup dev lint test test-fast test-e2e test-faults wheel run bench fuzz

setup:
	bash scripts/setup.sh

dev:
	.venv/bin/maturin develop --release -q

lint:
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(PY) -m ruff check python tests bench examples
	$(PY) -m ruff format --check python tests bench examples
	$(PY) -m mypy

test:
	bash scripts/test.sh

# Without the set-up: for a developer whose machine is already set up.
test-fast:
	cargo test --lib --quiet
	$(PY) -m pytest tests -q --ignore=tests/e2e

test-e2e:
	bash scripts/setup-e2e.sh
	$(PY) -m pytest tests/e2e -q

# Faults under a real hub, on a Docker engine of the suite's own (about 13 minutes; root).
test-faults:
	bash scripts/setup-e2e.sh
	$(PY) -m pytest tests/faults -q

wheel:
	.venv/bin/maturin build --release -o dist

run:
	bash scripts/run-hub.sh

bench:
	bash bench/run.sh

# The property tests with a million cases each (about 8 minutes on 2 cores); CASES=... JOBS=...
fuzz:
	bash scripts/fuzz.sh
