#!/usr/bin/env bash
# Builds the abi3 wheel and installs it into a fresh venv whose PATH has no Rust toolchain, then
# imports it and resolves the JupyterHub entry point: what `pip install rustdocker` gives.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
dist=$(mktemp -d)
venv=$(mktemp -d)
trap 'rm -rf "$dist" "$venv"' EXIT
.venv/bin/maturin build --release -q -o "$dist" 2>&1 | grep -v '^Requirement already' || true
wheel=$(ls "$dist"/rustdocker-*-abi3-*.whl)
echo "==> $(basename "$wheel")"
python3 -m venv "$venv"
env -i PATH=/usr/bin:/bin HOME="$HOME" PIP_CERT="${PIP_CERT:-}" \
    PIP_FIND_LINKS="${PIP_FIND_LINKS:-}" "$venv/bin/pip" install -q "$wheel"
env -i PATH=/usr/bin:/bin "$venv/bin/python" - <<'PY'
import shutil
from importlib.metadata import entry_points
assert shutil.which("cargo") is None and shutil.which("rustc") is None
import rustdocker
ep = {e.name: e for e in entry_points(group="jupyterhub.spawners")}["rustdocker"]
assert ep.load() is rustdocker.Spawner
print("wheel OK: rustdocker", rustdocker.__version__, "imports without a Rust toolchain")
PY
