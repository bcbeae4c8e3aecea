#!/usr/bin/env bash
# Builds rustdocker/singleuser:latest, a real JupyterHub single-user image (Debian bookworm + a venv at
# /opt/venv with jupyterhub and jupyterlab), WITHOUT any container registry:
#   debootstrap --variant=minbase bookworm -> apt-get python3-venv in the chroot -> pip install into
#   /opt/venv (through the host's pip index/CA settings) -> user jovyan (1000:100) -> tar | docker import.
#
# Usage: images/build-singleuser.sh [--force] [-h|--help]
#   --force   rebuild even if the image already exists (the old image is left behind untagged)
#
# Environment (all optional):
#   SINGLEUSER_IMAGE     image to produce                      (default rustdocker/singleuser:latest)
#   JUPYTERHUB_VERSION   hub version to match; installs the same major: jupyterhub==<major>.*
#                        (default: the version importable by $HOST_PYTHON / ./.venv / python3, else
#                        the newest 5.x/6.x)
#   JUPYTERHUB_PIP_SPEC  full pip requirement for jupyterhub, overrides the above (e.g. jupyterhub==5.3.0)
#   JUPYTERLAB_PIP_SPEC  pip requirement for jupyterlab          (default jupyterlab>=4)
#   EXTRA_PIP_PACKAGES   more requirements for the venv, space separated
#   DEBIAN_MIRROR        Debian mirror URL (default: the host's apt source for bookworm)
#   DEBIAN_SECURITY_MIRROR  security mirror URL, "none" to skip (default: the host's, if any)
#   BUILD_LOG            verbose log file (default /var/tmp/rustdocker-singleuser-build.log)
#   VERBOSE=1            also stream the verbose output to the terminal
# Needs root (debootstrap, chroot, mount) and a working `docker`.
set -euo pipefail

IMAGE=${SINGLEUSER_IMAGE:-rustdocker/singleuser:latest}
SUITE=bookworm
VENV=/opt/venv
NB_USER=jovyan NB_UID=1000 NB_GID=100
LOG=${BUILD_LOG:-/var/tmp/rustdocker-singleuser-build.log}
LOCK=/var/tmp/rustdocker-singleuser-build.lock
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (usage: $0 [--force])" >&2; exit 2 ;;
    esac
done

image_exists() { docker image inspect "$IMAGE" >/dev/null 2>&1; }
if [[ $FORCE == 0 ]] && image_exists; then
    echo "image $IMAGE exists; skipping (pass --force to rebuild)"
    exit 0
fi

[[ $(id -u) == 0 ]] || { echo "must run as root (debootstrap/chroot/mount)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "docker engine not reachable (docker info failed)" >&2; exit 1; }

# One build at a time on this host; a waiter re-checks, so concurrent callers without --force are cheap.
exec 9>"$LOCK"
if ! flock -n 9; then
    echo "another build-singleuser.sh is running; waiting for it..."
    flock 9
    if [[ $FORCE == 0 ]] && image_exists; then
        echo "image $IMAGE exists; skipping (pass --force to rebuild)"
        exit 0
    fi
fi

START=$SECONDS
step() { printf '[%3ds] %s\n' $((SECONDS - START)) "$*"; echo "=== $* ===" >>"$LOG"; }
# run a noisy command with its output in $LOG (and on the terminal when VERBOSE=1)
quiet() {
    if [[ ${VERBOSE:-0} == 1 ]]; then "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; fi
    "$@" >>"$LOG" 2>&1
}
: >"$LOG"

# ---------------------------------------------------------------------------------------------------
# Host settings: Debian mirror, proxies, pip index settings and CA bundle, jupyterhub version.
# ---------------------------------------------------------------------------------------------------
# URI of the first "deb" source (deb822 .sources or one-line .list) serving exactly suite $1.
host_apt_uri() {
    local suite=$1 f
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        awk -v want="$suite" 'BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    line = $i; if (line ~ /^[ \t]*#/) continue
                    if (match(line, /^[A-Za-z-]+:/)) {
                        key = tolower(substr(line, 1, RLENGTH - 1)); val = substr(line, RLENGTH + 1)
                        if (key == "types") types = val; else if (key == "uris") uris = val
                        else if (key == "suites") suites = val; else if (key == "enabled") enabled = val
                    }
                }
                if (enabled ~ /no/ || (" " types " ") !~ /[ \t]deb[ \t]/) next
                n = split(suites, s, /[ \t]+/)
                for (j = 1; j <= n; j++) if (s[j] == want) { split(uris, u, /[ \t]+/); for (k in u) if (u[k] != "") { print u[k]; exit } }
            }' "$f"
    done | head -n1
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v want="$suite" '$1 == "deb" && $3 == want { print $2; exit }'
    done | head -n1
    shopt -u nullglob
}
MIRROR=${DEBIAN_MIRROR:-$(host_apt_uri "$SUITE" | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(host_apt_uri "$SUITE-security" | head -n1)}
[[ $SECURITY_MIRROR == none ]] && SECURITY_MIRROR=""

# Proxies (from the environment, else apt's own proxy setting) for debootstrap, apt and pip.
APT_PROXY=""
if command -v apt-config >/dev/null; then
    eval "$(apt-config shell APT_PROXY Acquire::http::Proxy)"
fi
PROXY_ENV=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [[ -n ${!v:-} ]] && PROXY_ENV+=("$v=${!v}")
done
if [[ -n $APT_PROXY && -z ${http_proxy:-} ]]; then PROXY_ENV+=("http_proxy=$APT_PROXY"); fi

# The CA bundle pip on this host trusts (custom CA for the PyPI route).
HOST_PIP=()
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then HOST_PIP=(python3 -m pip)
elif command -v pip3 >/dev/null; then HOST_PIP=(pip3); fi
PIP_CONFIG_LINES=""
if [[ ${#HOST_PIP[@]} -gt 0 ]]; then
    PIP_CONFIG_LINES=$("${HOST_PIP[@]}" config list 2>/dev/null || true)
fi
pip_setting() { # value of pip setting $1 from `pip config list` (env vars included), last one wins
    printf '%s\n' "$PIP_CONFIG_LINES" | sed -n "s/^[^.]*\.$1='\(.*\)'\$/\1/p" | tail -n1
}
CA_BUNDLE=${PIP_CERT:-$(pip_setting cert)}
CA_BUNDLE=${CA_BUNDLE:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
[[ -r $CA_BUNDLE ]] || { echo "CA bundle $CA_BUNDLE (pip cert) is not readable" >&2; exit 1; }

# jupyterhub requirement
HUB_SOURCE=""
if [[ -z ${JUPYTERHUB_VERSION:-} ]]; then
    for py in ${HOST_PYTHON:-} "$REPO_DIR/.venv/bin/python" "$REPO_DIR/venv/bin/python" python3; do
        [[ -n $py ]] && command -v "$py" >/dev/null 2>&1 || continue
        if v=$("$py" -c 'import jupyterhub; print(jupyterhub.__version__)' 2>/dev/null) && [[ -n $v ]]; then
            JUPYTERHUB_VERSION=$v HUB_SOURCE="host ($py)"; break
        fi
    done
else
    HUB_SOURCE="JUPYTERHUB_VERSION"
fi
if [[ -n ${JUPYTERHUB_PIP_SPEC:-} ]]; then
    HUB_SPEC=$JUPYTERHUB_PIP_SPEC HUB_SOURCE="JUPYTERHUB_PIP_SPEC"
elif [[ -n ${JUPYTERHUB_VERSION:-} ]]; then
    HUB_SPEC="jupyterhub==${JUPYTERHUB_VERSION%%.*}.*"
else
    HUB_SPEC="jupyterhub>=5,<7" HUB_SOURCE="default"
fi
LAB_SPEC=${JUPYTERLAB_PIP_SPEC:-jupyterlab>=4}
read -r -a EXTRA_PKGS <<<"${EXTRA_PIP_PACKAGES:-}"

echo "building $IMAGE: debian $SUITE from $MIRROR${SECURITY_MIRROR:+ (+ $SECURITY_MIRROR)}, '$HUB_SPEC' (from $HUB_SOURCE), '$LAB_SPEC'; log: $LOG"

# ---------------------------------------------------------------------------------------------------
# Temp dir, mounts and cleanup
# ---------------------------------------------------------------------------------------------------
WORK=$(mktemp -d /var/tmp/rustdocker-singleuser.XXXXXX)
ROOT=$WORK/rootfs
BUILD_TAG="${IMAGE%:*}:build-$$"
MOUNTS=()
BUILT_ID=""
cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null
    done
    # debootstrap mounts proc/sys itself and normally unmounts them; catch anything left over.
    grep -o " $WORK/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
    if grep -q " $WORK/" /proc/mounts; then
        echo "WARNING: something is still mounted under $WORK; not deleting it" >&2
    else
        rm -rf --one-file-system "$WORK"
    fi
    # a temporary tag left by a failed verification: that image is ours
    if docker image inspect "$BUILD_TAG" >/dev/null 2>&1; then docker rmi "$BUILD_TAG" >/dev/null 2>&1; fi
    if [[ $rc != 0 ]]; then
        echo "FAILED (exit $rc) after $((SECONDS - START))s; last lines of $LOG:" >&2
        tail -n 40 "$LOG" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_chroot() {
    chroot "$ROOT" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive ${PROXY_ENV[@]+"${PROXY_ENV[@]}"} "$@"
}

# ---------------------------------------------------------------------------------------------------
# 1. debootstrap
# ---------------------------------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null; then
    step "installing debootstrap on the host"
    quiet apt-get install -y --no-install-recommends debootstrap ||
        { quiet apt-get update && quiet apt-get install -y --no-install-recommends debootstrap; }
fi

step "debootstrap --variant=minbase $SUITE"
quiet env ${PROXY_ENV[@]+"${PROXY_ENV[@]}"} debootstrap --variant=minbase --components=main "$SUITE" "$ROOT" "$MIRROR"

# ---------------------------------------------------------------------------------------------------
# 2. packages in the chroot
# ---------------------------------------------------------------------------------------------------
step "apt-get install python3-venv ca-certificates tini"
# slim like the official debian images: no docs/man/locales for anything installed from now on
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$ROOT/etc/apt/apt.conf.d/90rustdocker" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
rm -f "$ROOT/etc/apt/sources.list"
{
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" "$SUITE" "$SUITE"
    if [[ -n $SECURITY_MIRROR ]]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$SECURITY_MIRROR" "$SUITE"
    fi
} >"$ROOT/etc/apt/sources.list.d/debian.sources"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
MOUNTS+=("$ROOT/proc")

quiet in_chroot apt-get update
quiet in_chroot apt-get -y -o Dpkg::Options::=--force-confold upgrade
quiet in_chroot apt-get -y install python3-venv ca-certificates tini

# ---------------------------------------------------------------------------------------------------
# venv + pip (through the host's index settings and CA bundle, both removed afterwards)
# ---------------------------------------------------------------------------------------------------
step "python3 -m venv $VENV; pip install $HUB_SPEC $LAB_SPEC ${EXTRA_PKGS[*]:-}"
BUILD_CA=/tmp/rustdocker-build-ca.pem
BUILD_PIPCONF=/tmp/rustdocker-build-pip.conf
cp -L "$CA_BUNDLE" "$ROOT$BUILD_CA"
{
    echo "[global]"
    # network settings only; host paths (cert, find-links) make no sense in the chroot
    printf '%s\n' "$PIP_CONFIG_LINES" | sed -n "s/^[^.]*\.\(index-url\|extra-index-url\|trusted-host\|default-timeout\|timeout\|retries\|proxy\)='\(.*\)'\$/\1 = \2/p"
} >"$ROOT$BUILD_PIPCONF"
PIP_ENV=(PIP_CERT=$BUILD_CA PIP_CONFIG_FILE=$BUILD_PIPCONF PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
    PIP_ROOT_USER_ACTION=ignore PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-120} PIP_PROGRESS_BAR=off)
quiet in_chroot python3 -m venv "$VENV"
quiet in_chroot "${PIP_ENV[@]}" "$VENV/bin/python" -m pip install --upgrade pip
quiet in_chroot "${PIP_ENV[@]}" "$VENV/bin/python" -m pip install "$HUB_SPEC" "$LAB_SPEC" ${EXTRA_PKGS[@]+"${EXTRA_PKGS[@]}"}
rm -f "$ROOT$BUILD_CA" "$ROOT$BUILD_PIPCONF"

VERSIONS=$(in_chroot "$VENV/bin/python" -c 'import platform, jupyterhub, jupyterlab
print(platform.python_version(), jupyterhub.__version__, jupyterlab.__version__)')
read -r PY_VER HUB_VER LAB_VER <<<"$VERSIONS"
echo "         python $PY_VER, jupyterhub $HUB_VER, jupyterlab $LAB_VER"

# ---------------------------------------------------------------------------------------------------
# 3. user jovyan
# ---------------------------------------------------------------------------------------------------
step "user $NB_USER ($NB_UID:$NB_GID), cleanup"
getent_group=$(in_chroot getent group "$NB_GID" || true)
[[ -n $getent_group ]] || in_chroot groupadd -g "$NB_GID" users
in_chroot useradd -m -u "$NB_UID" -g "$NB_GID" -s /bin/bash -d "/home/$NB_USER" "$NB_USER"
mkdir -p "$ROOT/home/$NB_USER/work"
# the venv belongs to the user, so `pip install` / `%pip install` work in the notebook (as in docker-stacks)
chown -R "$NB_UID:$NB_GID" "$ROOT/home/$NB_USER" "$ROOT$VENV"

# ---------------------------------------------------------------------------------------------------
# 4. cleanup
# ---------------------------------------------------------------------------------------------------
quiet in_chroot apt-get clean
for m in "${MOUNTS[@]}"; do umount "$m"; done
MOUNTS=()
rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
    "$ROOT"/var/lib/dpkg/*-old "$ROOT"/root/.cache "$ROOT"/tmp/* "$ROOT"/var/tmp/* \
    "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* "$ROOT"/usr/share/lintian/*
find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$ROOT/var/log" -type f -delete
# no host identity in the image (docker bind-mounts these at run time)
: >"$ROOT/etc/resolv.conf"
echo localhost >"$ROOT/etc/hostname"
chmod 1777 "$ROOT/tmp"
if [[ -e $ROOT$BUILD_CA || -e $ROOT$BUILD_PIPCONF ]] || ls "$ROOT"/etc/pip.conf "$ROOT"/root/.config/pip 2>/dev/null; then
    echo "build CA bundle or pip config left in the rootfs" >&2; exit 1
fi

# ---------------------------------------------------------------------------------------------------
# 5. docker import
# ---------------------------------------------------------------------------------------------------
step "tar | docker import $IMAGE"
OLD_ID=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
BUILT_ID=$(tar -C "$ROOT" --numeric-owner --one-file-system \
        --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -cf - . |
    docker import \
        --change "ENV PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV HOME=/home/$NB_USER" \
        --change "ENV LANG=C.UTF-8" \
        --change "ENV SHELL=/bin/bash" \
        --change "USER $NB_UID:$NB_GID" \
        --change "WORKDIR /home/$NB_USER" \
        --change "EXPOSE 8888" \
        --change 'ENTRYPOINT ["tini", "-g", "--"]' \
        --change 'CMD ["jupyterhub-singleuser"]' \
        --change "LABEL org.rustdocker.test-image=true" \
        --change "LABEL org.rustdocker.python-version=$PY_VER org.rustdocker.jupyterhub-version=$HUB_VER org.rustdocker.jupyterlab-version=$LAB_VER" \
        --message "build-singleuser.sh: debian $SUITE minbase, python $PY_VER, jupyterhub $HUB_VER, jupyterlab $LAB_VER" \
        - "$BUILD_TAG")

# ---------------------------------------------------------------------------------------------------
# 6. verify (on a temporary tag, so a broken build never replaces a working $IMAGE)
# ---------------------------------------------------------------------------------------------------
step "verify"
check() { docker run --rm --network none "$BUILD_TAG" "$@" 2>&1; }
out=$(check jupyterhub-singleuser --version) && [[ $out =~ ^[0-9]+\.[0-9]+ ]] ||
    { echo "jupyterhub-singleuser --version failed: $out" >&2; exit 1; }
echo "         jupyterhub-singleuser --version: $out"
out=$(check id) && [[ $out == "uid=$NB_UID($NB_USER) gid=$NB_GID(users)"* ]] ||
    { echo "unexpected id: $out" >&2; exit 1; }
echo "         id: $out"
out=$(check jupyter lab --version) && [[ $out =~ ^[0-9]+\.[0-9]+ ]] ||
    { echo "jupyter lab --version failed: $out" >&2; exit 1; }
echo "         jupyter lab --version: $out"
out=$(check sh -c 'pwd; test -w work && test -w /opt/venv && test ! -e /tmp/rustdocker-build-ca.pem && echo ok') &&
    [[ $out == "/home/$NB_USER"*ok ]] || { echo "workdir/permission check failed: $out" >&2; exit 1; }

docker tag "$BUILT_ID" "$IMAGE"
docker rmi "$BUILD_TAG" >/dev/null
SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "built $IMAGE (${BUILT_ID#sha256:}, $((SIZE / 1000000)) MB) in $((SECONDS - START))s"
if [[ -n $OLD_ID && $OLD_ID != "$BUILT_ID" ]]; then
    echo "note: the previous $IMAGE (${OLD_ID#sha256:}) is now untagged; remove it with 'docker rmi ${OLD_ID#sha256:}' when unused"
fi
