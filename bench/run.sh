#!/usr/bin/env bash
# The benchmark of issue 5, one command: rustdocker vs DockerSpawner 14 vs the raw engine floor.
#
#   bash bench/run.sh            # everything (~15 min on 2 cores): storms, poll, pull, JupyterHub
#   bash bench/run.sh --quick    # smoke run (~2 min): N up to 10, 30 poll servers, no pull/hub
#   bash bench/run.sh --help     # bench.py's options (repetitions, sizes, phases to skip)
#
# Set-up it does, each step skipped when already done: the Docker engine (scripts/start-docker.sh),
# the project venv with rustdocker (scripts/setup.sh), DockerSpawner's own venv
# bench/.venv-dockerspawner (dockerspawner==14.* and jupyterhub from PyPI), the tiny image
# (images/build-tiny.sh), and for a full run Debian's docker-registry and configurable-http-proxy.
# Prints the table; writes bench/results/latest.json (and .txt, and the processes' logs).
# Every Docker object it creates is labelled org.rustdocker.hub=<bench id> and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
log() { printf '==> %s\n' "$*" >&2; }

quick=0
for arg in "$@"; do
    [[ $arg == --quick ]] && quick=1
    [[ $arg == -h || $arg == --help ]] && exec python3 bench/bench.py --help
done

if ! command -v docker >/dev/null 2>&1 || ! .venv/bin/python -c 'import rustdocker._core' 2>/dev/null; then
    log "setting up the project (scripts/setup.sh)"
    bash scripts/setup.sh
fi
docker info >/dev/null 2>&1 || bash scripts/start-docker.sh

DS_VENV=bench/.venv-dockerspawner
if ! "$DS_VENV/bin/python" -c 'import dockerspawner, jupyterhub' 2>/dev/null; then
    log "creating $DS_VENV (dockerspawner==14.*, jupyterhub from PyPI)"
    python3 -m venv "$DS_VENV"
    "$DS_VENV/bin/pip" install -q --disable-pip-version-check "dockerspawner==14.*" jupyterhub
fi

bash images/build-tiny.sh >&2

if ((quick == 0)); then
    if ! command -v docker-registry >/dev/null 2>&1; then
        log "installing docker-registry (apt)"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-registry >/dev/null
    fi
    if ! command -v configurable-http-proxy >/dev/null 2>&1; then
        if ! command -v npm >/dev/null 2>&1; then
            log "installing nodejs and npm (apt)"
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
        fi
        log "installing configurable-http-proxy (npm -g)"
        $SUDO npm install -g --no-fund --no-audit --loglevel=error configurable-http-proxy >/dev/null
    fi
fi

mkdir -p bench/results
exec "$ROOT/.venv/bin/python" bench/bench.py \
    --project-python "$ROOT/.venv/bin/python" \
    --dockerspawner-python "$ROOT/$DS_VENV/bin/python" "$@"
