#!/usr/bin/env bash
# The whole test suite, set-up included, on a fresh Debian machine: `scripts/test.sh`.
# Lint (rustfmt, clippy, ruff, mypy), Rust unit tests, then pytest against the real engine.
# Under CI=true a missing Docker engine is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bash scripts/setup.sh
[[ -f scripts/setup-e2e.sh ]] && bash scripts/setup-e2e.sh
echo "==> lint"
make lint
echo "==> cargo test"
cargo test --lib --quiet
echo "==> pytest"
.venv/bin/python -m pytest tests "$@"
