#!/usr/bin/env bash
# Starts the Docker engine when none answers, and waits until it does.
set -euo pipefail
if docker info >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl start docker || true
fi
if ! docker info >/dev/null 2>&1; then
    echo "==> starting dockerd (log: /var/log/rustdocker-dockerd.log)"
    # In a session of its own, as a service would be: a Ctrl-C in the terminal that started it
    # (say, of scripts/run-hub.sh) must not reach the engine.
    $SUDO setsid sh -c 'nohup dockerd >/var/log/rustdocker-dockerd.log 2>&1 </dev/null &'
fi
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
done
echo "the Docker engine did not come up; see /var/log/rustdocker-dockerd.log" >&2
tail -20 /var/log/rustdocker-dockerd.log >&2 || true
exit 1
