#!/usr/bin/env bash
# JupyterHub on rustdocker at http://127.0.0.1:8000, on a fresh Debian machine: `scripts/run-hub.sh`
# (or `make run`). Ctrl-C stops everything it started.
#
#   scripts/run-hub.sh [CONFIG] [JUPYTERHUB ARGS...]
#     CONFIG   a jupyterhub_config.py (default examples/jupyterhub_config.py; try
#              examples/named_servers_config.py)
#
# What it does, each step skipped when its result is already there:
#   1. scripts/setup.sh when the docker CLI or rustdocker in .venv is missing (installs docker.io,
#      builds rustdocker into .venv); then scripts/start-docker.sh starts the engine if needed;
#   2. images/build-singleuser.sh builds rustdocker/singleuser:latest (~2.5 min, once);
#   3. npm install -g configurable-http-proxy;
#   4. runs `jupyterhub -f CONFIG` in the state directory .run/ (sqlite database, cookie secret,
#      proxy pid file; $RUSTDOCKER_RUN_DIR to change it) and prints the URL and how to log in.
# Ctrl-C (or SIGTERM) makes the hub stop the users' containers (its cleanup_servers) and the proxy,
# and waits for that. Users' volumes and stopped containers are kept, as with DockerSpawner.
#
# Environment: RUSTDOCKER_HUB_PASSWORD (the shared login password, default "rustdocker"),
# RUSTDOCKER_HUB_ADMIN (the admin user, default "admin"), JUPYTERHUB_BIND_URL
# (default http://127.0.0.1:8000). Run as root, or as a user with sudo and access to Docker.
set -euo pipefail
# A non-interactive shell starts its background jobs with SIGINT ignored, and bash cannot trap a
# signal ignored at entry: start again with the default, so `kill -INT` works however we started.
sig_ignored=$(awk '/^SigIgn:/ { print $2 }' "/proc/$$/status" 2>/dev/null || echo 0)
if (((16#${sig_ignored:-0} & 2) != 0)) && [[ -z ${RUSTDOCKER_RUN_HUB_REEXEC:-} ]] &&
    env --default-signal=INT true 2>/dev/null; then
    RUSTDOCKER_RUN_HUB_REEXEC=1 exec env --default-signal=INT bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
ROOT=$PWD
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
log() { printf '==> %s\n' "$*"; }

CONFIG=${1:-examples/jupyterhub_config.py}
(($#)) && shift
[[ -f $CONFIG ]] || { echo "no such config file: $CONFIG" >&2; exit 2; }
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")
RUN_DIR=${RUSTDOCKER_RUN_DIR:-$ROOT/.run}
export RUSTDOCKER_HUB_PASSWORD=${RUSTDOCKER_HUB_PASSWORD:-rustdocker}
export RUSTDOCKER_HUB_ADMIN=${RUSTDOCKER_HUB_ADMIN:-admin}
export JUPYTERHUB_BIND_URL=${JUPYTERHUB_BIND_URL:-http://127.0.0.1:8000}
PUBLIC_URL=${JUPYTERHUB_BIND_URL%/}

# 1. Docker engine and rustdocker
if ! command -v docker >/dev/null 2>&1 || [[ ! -x .venv/bin/jupyterhub ]] ||
    ! .venv/bin/python -c 'import rustdocker._core' 2>/dev/null; then
    log "setting up (scripts/setup.sh)"
    bash scripts/setup.sh
fi
bash scripts/start-docker.sh

# 2. the single-user image (examples/jupyterhub_config.py's default)
if ! docker image inspect rustdocker/singleuser:latest >/dev/null 2>&1; then
    $SUDO bash images/build-singleuser.sh
fi

# 3. the proxy
if ! command -v configurable-http-proxy >/dev/null 2>&1; then
    if ! command -v npm >/dev/null 2>&1; then
        log "installing nodejs and npm (apt)"
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
            apt-get install -y -qq nodejs npm >/dev/null
    fi
    log "installing configurable-http-proxy (npm -g)"
    $SUDO npm install -g --no-fund --no-audit --loglevel=error configurable-http-proxy >/dev/null
fi

# 4. the hub
mkdir -p "$RUN_DIR"
cd "$RUN_DIR"
RUN_DIR=$(pwd -P)

# The proxy runs in a session of its own (JupyterHub starts it so); a hub that died or had to be
# killed leaves it behind. Its pid file names it; its working directory confirms it is ours.
stop_leftover_proxy() {
    local pid
    pid=$(cat "$RUN_DIR/jupyterhub-proxy.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    if [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$RUN_DIR" ]] &&
        grep -qa configurable-http-proxy "/proc/$pid/cmdline" 2>/dev/null; then
        echo "stopping the proxy the hub left running (pid $pid)" >&2
        kill -TERM "$pid" 2>/dev/null
    fi
    return 0
}

HUB_PID=""
# shellcheck disable=SC2317 # called from the traps below
stop_hub() {
    # No more signals, and no `set -e`: a terminal or pipe that went away with the Ctrl-C must
    # not end this before the hub is told to stop.
    trap '' INT TERM HUP PIPE
    set +e
    if [[ -n $HUB_PID ]] && kill -0 "$HUB_PID" 2>/dev/null; then
        kill -INT "$HUB_PID" 2>/dev/null
        log "stopping the hub: it stops the users' servers and the proxy (up to 2 minutes)"
        for _ in $(seq 120); do
            kill -0 "$HUB_PID" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$HUB_PID" 2>/dev/null; then
            echo "the hub did not stop in time; killing it" >&2
            kill -KILL "$HUB_PID" 2>/dev/null
        fi
    fi
    stop_leftover_proxy
    log "stopped"
}
trap 'stop_hub; exit 130' INT
trap 'stop_hub; exit 143' TERM
trap 'stop_hub; exit 129' HUP

log "starting JupyterHub with $CONFIG (state in $RUN_DIR)"
# setsid: the hub in a session of its own, so a Ctrl-C reaches it once, through stop_hub.
setsid "$ROOT/.venv/bin/jupyterhub" -f "$CONFIG" "$@" </dev/null &
HUB_PID=$!

for _ in $(seq 120); do
    kill -0 "$HUB_PID" 2>/dev/null || break
    if "$ROOT/.venv/bin/python" -c \
        'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)' \
        "$PUBLIC_URL/hub/api/" 2>/dev/null; then
        cat <<EOF

    JupyterHub on rustdocker is running: $PUBLIC_URL
    Log in with any user name and the password '$RUSTDOCKER_HUB_PASSWORD'
    (set RUSTDOCKER_HUB_PASSWORD to change it); '$RUSTDOCKER_HUB_ADMIN' is an admin:
    $PUBLIC_URL/hub/admin
    Ctrl-C stops the hub, the proxy and the users' servers.

EOF
        break
    fi
    sleep 1
done

status=0
wait "$HUB_PID" || status=$?
HUB_PID=""
stop_leftover_proxy
echo "JupyterHub exited with status $status" >&2
exit "$status"
