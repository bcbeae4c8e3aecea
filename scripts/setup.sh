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
log "installing the build tool (maturin)"
.venv/bin/pip install -q --upgrade "pip>=23" >/dev/null
.venv/bin/pip install -q "maturin>=1.9,<2"
# The tests run against the wheel users install, not an editable build. This is the developer's
# wheel (tagged for this machine's glibc), in the target directory: dist/ holds only what
# scripts/release.sh builds for a release.
log "building the rustdocker wheel (release) and installing it into .venv"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
wheels=$CARGO_TARGET_DIR/wheels
rm -f "$wheels"/rustdocker-*.whl
.venv/bin/maturin build --release -q -o "$wheels" 2>&1 | grep -v '^Requirement already satisfied' || true
wheel=$(ls "$wheels"/rustdocker-*-abi3-*.whl)
.venv/bin/pip install -q --force-reinstall --no-deps "$wheel"
# Its dependencies and the test and lint extras (pyproject.toml's lists are the only ones).
.venv/bin/pip install -q "${wheel}[test,lint]"
.venv/bin/python -c 'import rustdocker._core' # fails loudly if the build did not land

log "building the tiny test image"
bash images/build-tiny.sh
