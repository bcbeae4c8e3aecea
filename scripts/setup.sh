#!/usr/bin/env bash
# Everything rustdocker's build and tests need on a fresh Debian machine, idempotently:
# system packages, a running Docker engine, the Rust toolchain check, the project venv with
# rustdocker built into it, and the tiny test image. Run as root (or with passwordless sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

log() { printf '==> %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)   # TLS engine tests
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)       # docker0 address, test bridges
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry) # pull tests
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

bash scripts/start-docker.sh

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo (Rust) is needed to build rustdocker from source: see https://rustup.rs" >&2
    exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    python3 -m venv .venv
fi
log "installing Python build and test dependencies"
.venv/bin/pip install -q --upgrade "pip>=23" >/dev/null
.venv/bin/pip install -q "maturin>=1.9,<2" "jupyterhub>=5" "pytest>=8" "pytest-asyncio>=0.23" \
    "hypothesis>=6" bcrypt ruff mypy
# The tests run against the wheel users install, not an editable build; check-wheel.sh then
# installs this same wheel into a fresh venv.
log "building the rustdocker wheel (release) and installing it into .venv"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
rm -rf dist
.venv/bin/maturin build --release -q -o dist 2>&1 | grep -v '^Requirement already satisfied' || true
.venv/bin/pip install -q --force-reinstall --no-deps dist/rustdocker-*-abi3-*.whl
.venv/bin/pip install -q dist/rustdocker-*-abi3-*.whl # its dependencies, if any are missing
.venv/bin/python -c 'import rustdocker._core' # fails loudly if the build did not land

log "building the tiny test image"
bash images/build-tiny.sh
