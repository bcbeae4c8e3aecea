#!/usr/bin/env bash
# What the end-to-end and browser tests (tests/e2e) need beyond scripts/setup.sh, idempotently:
#   - chromium (Debian's package; Playwright drives it, it never downloads a browser of its own)
#   - configurable-http-proxy (npm -g; JupyterHub's default proxy)
#   - playwright (the Python package, into .venv)
#   - the real single-user image rustdocker/singleuser:latest (images/build-singleuser.sh, ~2.5 min
#     the first time, a no-op once the image exists)
# Run as root (or with passwordless sudo) after scripts/setup.sh; scripts/test.sh calls it.
# Every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

log() { printf '==> %s\n' "$*"; }
apt_install() {
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium (apt)"
    apt_install chromium fonts-liberation
fi

if ! command -v configurable-http-proxy >/dev/null 2>&1; then
    if ! command -v npm >/dev/null 2>&1; then
        log "installing nodejs and npm (apt)"
        apt_install nodejs npm
    fi
    log "installing configurable-http-proxy (npm -g)"
    $SUDO npm install -g --no-fund --no-audit --loglevel=error configurable-http-proxy >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    echo ".venv is missing: run scripts/setup.sh first" >&2
    exit 1
fi
if ! .venv/bin/python -c 'import playwright' >/dev/null 2>&1; then
    # Only the Python package: the tests use /usr/bin/chromium, so no `playwright install`.
    log "installing playwright (pip, no browser download)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install -q "playwright>=1.40"
fi

bash scripts/start-docker.sh
if ! docker image inspect rustdocker/singleuser:latest >/dev/null 2>&1; then
    $SUDO bash images/build-singleuser.sh
fi
log "end-to-end test prerequisites ready"
