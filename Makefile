# Targets shared by developers and CI. `make test` is the whole suite with set-up.
export CARGO_TARGET_DIR ?= $(CURDIR)/target
PY := .venv/bin/python

.PHONY: setup dev lint test test-fast test-e2e test-faults wheel dist check-dist run bench fuzz

setup:
	bash scripts/setup.sh

dev:
	.venv/bin/maturin develop --release -q

lint:
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(PY) -m ruff check python tests bench examples scripts
	$(PY) -m ruff format --check python tests bench examples scripts
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

# The developer's wheel, for this machine (into $(CARGO_TARGET_DIR)/wheels).
wheel:
	.venv/bin/maturin build --release -o $(CARGO_TARGET_DIR)/wheels

# What a release uploads, into dist/: the manylinux2014 abi3 wheel (zig) and the sdist.
# Other platforms: scripts/release.sh --target TRIPLE ... (see its header).
dist:
	bash scripts/release.sh

# The release artefacts as users meet them (CI runs these): auditwheel, a fresh venv without
# Rust and a real spawn; the sdist's file list, its build from scratch and its tests.
check-dist:
	bash scripts/check-wheel.sh
	bash scripts/check-sdist.sh

run:
	bash scripts/run-hub.sh

bench:
	bash bench/run.sh

# The property tests with a million cases each (about 8 minutes on 2 cores); CASES=... JOBS=...
fuzz:
	bash scripts/fuzz.sh
