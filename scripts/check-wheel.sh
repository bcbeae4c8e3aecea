#!/usr/bin/env bash
# Builds the abi3 wheel and installs it into a fresh venv whose PATH has no Rust toolchain, then
# imports it and resolves the JupyterHub entry point: what `pip install rustdocker` gives.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
# The wheel scripts/setup.sh built (and the tests ran against); built here if missing.
if ! ls dist/rustdocker-*-abi3-*.whl >/dev/null 2>&1; then
    .venv/bin/maturin build --release -q -o dist 2>&1 | grep -v '^Requirement already' || true
fi
wheel=$(ls dist/rustdocker-*-abi3-*.whl | head -1)
echo "==> $(basename "$wheel")"
python3 -m venv "$venv"
env -i PATH=/usr/bin:/bin HOME="$HOME" PIP_CERT="${PIP_CERT:-}" \
    PIP_FIND_LINKS="${PIP_FIND_LINKS:-}" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$venv/bin/pip" install -q "$wheel"
env -i PATH=/usr/bin:/bin "$venv/bin/python" - <<'PY'
import shutil
from importlib.metadata import entry_points
assert shutil.which("cargo") is None and shutil.which("rustc") is None
import rustdocker
ep = {e.name: e for e in entry_points(group="jupyterhub.spawners")}["rustdocker"]
assert ep.load() is rustdocker.Spawner
print("wheel OK: rustdocker", rustdocker.__version__, "imports without a Rust toolchain")
PY
