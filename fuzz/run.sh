#!/usr/bin/env bash
# Coverage-guided fuzzing of one target for a chosen time, on stable Rust: libFuzzer through
# cargo-bolero, without a sanitizer (sanitizers need nightly). See fuzz/README.md.
#
#   fuzz/run.sh TARGET [SECONDS]     e.g. fuzz/run.sh udp_query 600   (default: 60 s)
#   fuzz/run.sh all [SECONDS]        every target in turn
#
# The corpus grows in target/fuzz-work/TARGET/corpus (seeded from fuzz/corpus/TARGET); a
# failing input is written to target/fuzz-work/TARGET/crashes and the script exits non-zero.
# A hang of 10 s or a resident set over 2 GiB counts as a failure too (libFuzzer's limits).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(udp_query zone_file config policy admin_api beacon probe_results)
target=${1:?usage: fuzz/run.sh TARGET|all [SECONDS]; targets: ${TARGETS[*]}}
seconds=${2:-60}

if [[ $target == all ]]; then
  for t in "${TARGETS[@]}"; do "$0" "$t" "$seconds"; done
  exit 0
fi
if [[ ! " ${TARGETS[*]} " == *" $target "* ]]; then
  echo "unknown target $target; targets: ${TARGETS[*]}" >&2
  exit 2
fi
command -v cargo-bolero >/dev/null 2>&1 || cargo install cargo-bolero --locked --version 0.13.5

work=target/fuzz-work/$target
mkdir -p "$work/corpus" "$work/crashes"
cp -n "fuzz/corpus/$target/"* "$work/corpus/"
echo "fuzzing $target for ${seconds}s (corpus $work/corpus)"
cargo bolero test -p steerdns-fuzz "$target" --sanitizer NONE -T "${seconds}s" \
  --corpus-dir "$work/corpus" --crashes-dir "$work/crashes" >"$work/log" 2>&1 || {
  tail -n 60 "$work/log"
  echo "FAILED: $target; inputs in $work/crashes, log in $work/log" >&2
  exit 1
}
# libFuzzer's last status line: executions, coverage (cov: edges, ft: features), corpus.
summary=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1)
runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$work/log" | tail -n 1)
echo "$target: $summary"
echo "$target: ${runs:-no final count}"
