#!/usr/bin/env bash
# The release sdist as someone building from source meets it: dist/rustdocker-VERSION.tar.gz
# (scripts/release.sh builds it when dist/ has none).
#   1. its file list: what the build and the tests need is there; nothing from a working tree
#      (target/, .venv/, dist/, bench/results, caches, built libraries) is;
#   2. `pip install "rustdocker[test] @ <sdist>"` into a fresh venv, on a machine with cargo:
#      the sdist builds and the test extra brings what the tests need;
#   3. its own tests, from the unpacked sdist against that install: the Rust unit and property
#      tests (`cargo test --lib`, all of them), and a subset of pytest (below).
#
# The pytest subset, and why: scripts/test.sh has just run the whole suite against the same
# Python code and the same Rust code built from the checkout. What the sdist can get wrong is a
# missing file or a build that differs, so this runs every engine-free test of every file (each
# test file is collected, so every module and helper it imports must ship: bench/hubless.py,
# bench/proxy.py, images/build-tiny.sh), the stub check (the native module built from the sdist
# against _core.pyi), and the engine tests of the lifecycle and the volumes (start, stop, poll,
# remove, volumes and binds, on the real engine). The long stress tests (cancellation sweeps,
# 100-start loops, pull faults) are not run twice. tests/e2e needs a browser and the proxy
# (scripts/setup-e2e.sh) beyond the test extra; it is not run here.
#
# CARGO_TARGET_DIR is shared with the other builds of the run (only the crate recompiles).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log() { printf '==> %s\n' "$*"; }
die() { echo "check-sdist: $*" >&2; exit 1; }

shopt -s nullglob
sdists=(dist/rustdocker-*.tar.gz)
if ((${#sdists[@]} == 0)); then
    bash scripts/release.sh
    sdists=(dist/rustdocker-*.tar.gz)
fi
((${#sdists[@]} == 1)) || die "expected one sdist in dist/, found ${#sdists[@]}"
sdist=$ROOT/${sdists[0]}
top=$(basename "$sdist" .tar.gz)
log "$(basename "$sdist") ($(stat -c %s "$sdist") bytes)"

log "its file list"
files=$(tar -tzf "$sdist")
echo "    $(wc -l <<<"$files") files"
bad=$(grep -vE "^$top/" <<<"$files" || true)
[[ -z $bad ]] || die "entries outside $top/: $bad"
files=$(sed "s|^$top/||" <<<"$files")
# Nothing from a working tree or a build.
forbidden='^(target|\.venv|dist|build|\.run|\.git|bench/results|bench/\.venv[^/]*|tests/artifacts)(/|$)'
forbidden+='|(^|/)(__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.hypothesis)(/|$)'
forbidden+='|\.(so|pyc|whl|tar\.gz|o|rlib)$'
bad=$(grep -E "$forbidden" <<<"$files" || true)
[[ -z $bad ]] || die "the sdist holds what it must not:"$'\n'"$bad"
# What building and testing from the sdist needs (a sample of each kind; the build and the
# tests below show the rest).
for need in PKG-INFO pyproject.toml Cargo.toml Cargo.lock README.md CHANGELOG.md src/lib.rs \
    src/proptests.rs python/rustdocker/__init__.py python/rustdocker/_core.pyi \
    python/rustdocker/py.typed tests/conftest.py bench/hubless.py bench/proxy.py \
    images/build-tiny.sh; do
    grep -qxF "$need" <<<"$files" || die "the sdist lacks $need"
done
echo "    nothing from a working tree; the build's and the tests' files are there"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv=$work/venv
log "pip install \"rustdocker[test] @ $(basename "$sdist")\" into a fresh venv (builds with cargo)"
start=$(date +%s)
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "rustdocker[test] @ file://$sdist"
echo "    built and installed in $(($(date +%s) - start)) s"
where=$("$venv/bin/python" -c 'import rustdocker, os; print(os.path.dirname(rustdocker.__file__))')
[[ $where == "$venv"/* ]] || die "rustdocker imports from $where, not from the fresh venv"

tar -xzf "$sdist" -C "$work"
src=$work/$top
log "cargo test --lib (from the sdist)"
(cd "$src" && cargo test --lib --quiet --locked)

log "pytest (from the sdist, against the fresh install): engine-free tests, stub, lifecycle, volumes"
cd "$src"
"$venv/bin/python" -m pytest tests --ignore=tests/e2e -m "not docker" -q -p no:cacheprovider
"$venv/bin/python" -m pytest tests/test_stub.py tests/test_lifecycle.py tests/test_volumes.py \
    -m docker -q -p no:cacheprovider
echo "sdist OK: $(basename "$sdist") builds from scratch and its tests pass"
