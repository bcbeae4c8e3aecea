#!/usr/bin/env bash
# The release wheel as an operator meets it (`pip install rustdocker`): the manylinux wheel of
# this machine's architecture in dist/ (scripts/release.sh builds it when dist/ has none).
#   1. auditwheel accepts its platform tag: the libraries and symbol versions it needs are
#      within what the tag in its name (manylinux_2_17) promises;
#   2. it installs into a fresh venv whose PATH has no Rust toolchain (only the docker CLI);
#   3. from there, the package metadata agrees with rustdocker.__version__, the JupyterHub
#      entry point loads, and a real spawn works against the engine (scripts/smoke-spawn.py:
#      start, docker inspect, the server's page, poll, stop; it removes what it made).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log() { printf '==> %s\n' "$*"; }
die() { echo "check-wheel: $*" >&2; exit 1; }

arch=$(uname -m)
shopt -s nullglob
wheels=(dist/rustdocker-*-abi3-*manylinux*_"$arch".whl)
if ((${#wheels[@]} == 0)); then
    bash scripts/release.sh
    wheels=(dist/rustdocker-*-abi3-*manylinux*_"$arch".whl)
fi
((${#wheels[@]} == 1)) || die "expected one $arch wheel in dist/, found ${#wheels[@]}"
wheel=${wheels[0]}
name=$(basename "$wheel")
# The platform tags: the part after the abi tag, dot-separated, e.g.
# manylinux2014_x86_64.manylinux_2_17_x86_64 (one wheel, two names for one glibc floor).
platform=${name#*-abi3-}
platform=${platform%.whl}
log "$name ($(stat -c %s "$wheel") bytes)"
tag=""
for t in ${platform//./ }; do
    if [[ $t == manylinux_2_17_"$arch" ]]; then tag=$t; fi
done
[[ -n $tag ]] || die "$name: platform tags '$platform' are not the release's (manylinux_2_17)"

log "auditwheel show"
[[ -x .venv/bin/auditwheel ]] || .venv/bin/pip install -q "auditwheel>=6"
report=$(.venv/bin/auditwheel show "$wheel")
echo "$report" | sed '/^$/d; s/^/    /'
# auditwheel names the most compatible tag the wheel's contents allow ("is consistent with the
# following platform tag: ..."): it must be the one the wheel claims, or users on that glibc
# would install a wheel that cannot load.
grep -q "consistent with the following platform tag: \"$tag\"" <<<"$(tr '\n' ' ' <<<"$report")" ||
    die "auditwheel does not confirm $tag for $name"
echo "    auditwheel confirms $tag"

log "installing into a fresh venv without a Rust toolchain"
venv=$(mktemp -d)
bin=$(mktemp -d)
trap 'rm -rf "$venv" "$bin"' EXIT
# PATH: the system's directories, plus the docker CLI alone (wherever it lives); no cargo.
ln -s "$(command -v docker)" "$bin/docker"
clean_path=$bin:/usr/bin:/bin
for tool in cargo rustc; do
    if PATH=$clean_path command -v "$tool" >/dev/null 2>&1; then
        die "$tool is on the system PATH ($(PATH=$clean_path command -v "$tool")): cannot show that the wheel needs no Rust toolchain"
    fi
done
python3 -m venv "$venv"
env -i PATH="$clean_path" HOME="$HOME" PIP_CERT="${PIP_CERT:-}" \
    PIP_FIND_LINKS="${PIP_FIND_LINKS:-}" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$venv/bin/pip" install -q "$wheel"

log "smoke test: a real spawn from the installed wheel"
bash images/build-tiny.sh >/dev/null # the test image, if this machine lacks it
env -i PATH="$clean_path" HOME="$HOME" "$venv/bin/python" scripts/smoke-spawn.py
echo "wheel OK: $name installs without a Rust toolchain and spawns on the engine"
