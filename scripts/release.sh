#!/usr/bin/env bash
# What a release uploads, built into dist/ (emptied first): `scripts/release.sh` (or `make dist`).
#
#   scripts/release.sh [--target TRIPLE]...
#
#   - one abi3 wheel per target (CPython >= 3.10), built with zig as the linker against the
#     oldest glibc the code allows: manylinux2014 (glibc 2.17, the floor of Rust's standard
#     library since 1.64); musllinux_1_2 for a *-linux-musl target;
#   - the sdist (rustdocker-VERSION.tar.gz): the git-tracked source, as `cargo package --list`
#     and maturin choose it (never target/, .venv/, dist/, bench/results; CI checks its list).
#
# Targets: the host's by default (x86_64-unknown-linux-gnu here). Each other platform is one
# flag, once its Rust standard library is installed (`rustup target add TRIPLE`, a download):
#   scripts/release.sh --target x86_64-unknown-linux-gnu --target aarch64-unknown-linux-gnu \
#                      --target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl
# A target whose standard library is missing stops the build before anything is made.
#
# The version has one home, Cargo.toml's `version`: pyproject.toml declares it dynamic, maturin
# writes it into the package metadata, and the core exports it as rustdocker.__version__. This
# script checks that every artefact's file name carries it.
#
# Tools: maturin and ziglang (PyPI) in .venv, installed there if missing (.venv is created if
# there is none). scripts/check-wheel.sh and scripts/check-sdist.sh then check the artefacts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log() { printf '==> %s\n' "$*"; }
die() { echo "release: $*" >&2; exit 1; }

targets=()
while (($#)); do
    case $1 in
        --target) (($# >= 2)) || die "--target needs a target triple"; targets+=("$2"); shift 2 ;;
        --target=*) targets+=("${1#--target=}"); shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (allowed: --target TRIPLE, --help)" ;;
    esac
done
command -v cargo >/dev/null 2>&1 || die "cargo (Rust) is needed to build a release: https://rustup.rs"
host=$(rustc -vV | sed -n 's/^host: //p')
((${#targets[@]})) || targets=("$host")

# The platform tag a target's wheel is built for.
compatibility_of() {
    case $1 in
        *-linux-gnu*) echo manylinux2014 ;;
        *-linux-musl*) echo musllinux_1_2 ;;
        *) die "target '$1': no Linux wheel tag for it (allowed: *-unknown-linux-gnu, *-unknown-linux-musl)" ;;
    esac
}
for target in "${targets[@]}"; do
    compatibility_of "$target" >/dev/null
    if command -v rustup >/dev/null 2>&1 &&
        ! rustup target list --installed | grep -qx "$target"; then
        die "the Rust standard library for '$target' is not installed: \`rustup target add $target\` (a download from the Rust project)"
    fi
done

# Build tools. maturin finds zig through `python3 -m ziglang`, so .venv/bin goes first on PATH.
if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import ziglang' 2>/dev/null || [[ ! -x .venv/bin/maturin ]]; then
    log "installing maturin and ziglang into .venv"
    .venv/bin/pip install -q "maturin>=1.9,<2" "ziglang>=0.13,<0.18"
fi
export PATH=$ROOT/.venv/bin:$PATH

version=$(cargo metadata --no-deps --format-version 1 --manifest-path Cargo.toml |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')
log "rustdocker $version: ${targets[*]} and the sdist, into dist/"
# The sdist takes the files git does not ignore, committed or not: a release comes from a clean
# checkout of its tag.
if git rev-parse --git-dir >/dev/null 2>&1 && [[ -n $(git status --porcelain 2>/dev/null) ]]; then
    echo "release: warning: uncommitted or untracked files; the sdist will hold them:" >&2
    git status --short >&2
fi
rm -rf dist
mkdir dist

for target in "${targets[@]}"; do
    compatibility=$(compatibility_of "$target")
    log "wheel for $target ($compatibility, zig)"
    # maturin's own auditwheel check runs here: a symbol newer than the tag allows fails the build.
    maturin build --release --locked --zig --target "$target" --compatibility "$compatibility" \
        -o dist 2>&1 | grep -v '^Requirement already satisfied' || true
done
log "sdist"
maturin sdist -o dist 2>&1 | grep -v '^\(warning: manifest has no\|  |$\|  = note: see\)' || true

# Exactly one wheel per target and one sdist, each named with the Cargo.toml version.
shopt -s nullglob
wheels=(dist/*.whl)
sdists=(dist/*.tar.gz)
((${#wheels[@]} == ${#targets[@]})) || die "expected ${#targets[@]} wheel(s) in dist/, found ${#wheels[@]}"
((${#sdists[@]} == 1)) || die "expected one sdist in dist/, found ${#sdists[@]}"
for f in "${wheels[@]}"; do
    [[ $(basename "$f") == rustdocker-"$version"-cp310-abi3-*.whl ]] ||
        die "$f: not an abi3 wheel of version $version"
done
[[ $(basename "${sdists[0]}") == "rustdocker-$version.tar.gz" ]] ||
    die "${sdists[0]}: not the sdist of version $version"
log "dist/:"
stat -c '    %n  %s bytes' dist/*
