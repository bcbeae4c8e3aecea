#!/usr/bin/env bash
# The property tests of src/proptests.rs with many cases: `scripts/fuzz.sh` runs a million cases
# per property; `CASES=20000 scripts/fuzz.sh` fewer. CI runs the default 256 through
# `cargo test --lib`; this is the long hunt, by hand.
#
# Built with the `fuzz` profile: release speed, plus the overflow checks and debug assertions
# that release drops (an arithmetic overflow must fail here as it would in debug). Each property
# runs on its own so its cases, time and rate are printed; the properties run two at a time
# (JOBS). A failure prints proptest's minimal input; the script goes on with the other
# properties and exits non-zero at the end. Turn each failure into a plain test in
# src/proptests.rs (`mod checks`), with the input spelled out.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cases=${CASES:-1000000}
jobs=${JOBS:-2}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

echo "==> building the property tests (profile fuzz)"
# The test binary, run directly below: no cargo start-up or build lock per property.
bin=$(cargo test --profile fuzz --lib --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[[ -x $bin ]] || { echo "no test binary built" >&2; exit 1; }
# The properties are the tests directly in `proptests`; the plain ones live in `proptests::checks`.
mapfile -t properties < <("$bin" --list proptests:: | sed -n 's/^\(proptests::[a-z0-9_]*\): test$/\1/p')
if [[ ${#properties[@]} -eq 0 ]]; then
    echo "no property tests found" >&2
    exit 1
fi
echo "==> ${#properties[@]} properties, $cases cases each, $jobs at a time"

# One property: its own log, its time, and "ok"/"FAILED" in <log>.status.
run_one() {
    local name=$1 log=$logs/$1 start end
    start=$(date +%s.%N)
    if PROPTEST_CASES=$cases "$bin" --exact "$name" >"$log" 2>&1; then
        echo ok >"$log.status"
    else
        echo FAILED >"$log.status"
    fi
    end=$(date +%s.%N)
    awk -v n="$name" -v c="$cases" -v s="$start" -v e="$end" -v st="$(cat "$log.status")" \
        'BEGIN { t = e - s; printf "%-52s %7s %10d cases %9.1f s %10.0f cases/s\n",
                 n, st, c, t, (t > 0 ? c / t : 0) }'
}
export -f run_one
export bin cases logs

total_start=$(date +%s)
printf '%s\n' "${properties[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {}
total=$(($(date +%s) - total_start))

failed=0
for name in "${properties[@]}"; do
    if [[ $(cat "$logs/$name.status") != ok ]]; then
        failed=$((failed + 1))
        echo
        echo "==> $name FAILED:"
        grep -v '^\s*$' "$logs/$name" | tail -40
    fi
done
echo
echo "==> ${#properties[@]} properties x $cases cases in ${total} s wall-clock; $failed failed"
[[ $failed -eq 0 ]]
