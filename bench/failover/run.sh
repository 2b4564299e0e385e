#!/usr/bin/env bash
# Failover benchmark: time from "endpoint killed" to "DNS answers exclude it", with three real
# `steerdns probe` agents and 1 s HTTP checks, on loopback. See bench/README.md.
#
#   bash bench/failover/run.sh                 # 20 trials, about 2.5 minutes
#   TRIALS=5 bash bench/failover/run.sh
#   STEERDNS_BIN=target/release/steerdns bash bench/failover/run.sh   # no build
#
# Knobs: TRIALS (20), HOLD_DOWN_MS (5000), PROBE_INTERVAL_MS (1000), PROBE_TIMEOUT_MS (800),
# POLL_MS (10), SEED (1), MIN_SAMPLES (100), STEERDNS_BIN, APPEND_RESULTS (1: append the table to
# bench/RESULTS.md; 0: only print it), MAX_SECONDS (bound of the whole run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is needed: install the Debian package '$2' (this script installs nothing)" >&2
    exit 1
  fi
}
need python3 python3
need dig bind9-dnsutils
need timeout coreutils
need git git

if [[ -z "${STEERDNS_BIN:-}" ]]; then
  need cargo "cargo (rustup)"
  echo "building steerdns (cargo build --release; set STEERDNS_BIN to skip)" >&2
  (cd "$repo" && timeout 1800 cargo build --release --quiet)
  STEERDNS_BIN="$repo/target/release/steerdns"
fi
if [[ ! -x "$STEERDNS_BIN" ]]; then
  echo "error: STEERDNS_BIN=$STEERDNS_BIN is not an executable" >&2
  exit 1
fi

TRIALS="${TRIALS:-20}"
HOLD_DOWN_MS="${HOLD_DOWN_MS:-5000}"
# Per trial: ready (a few s) + failover (≤ 3 s) + fail-back (the hold-down + a few s).
MAX_SECONDS="${MAX_SECONDS:-$((120 + TRIALS * (HOLD_DOWN_MS / 1000 + 20)))}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/steerdns-failover.XXXXXX")"
PIDFILE="$WORK/pids"
: >"$PIDFILE"
driver=""

cleanup() {
  local status=$?
  if [[ -n "$driver" ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$driver" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$driver" 2>/dev/null || true
  fi
  # Whatever the driver could not stop (it was killed): by PID, never by name.
  while read -r pid; do
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  done <"$PIDFILE"
  echo "logs and raw numbers: $WORK" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "failover benchmark: $TRIALS trials, hold_down_ms=$HOLD_DOWN_MS, at most ${MAX_SECONDS}s; work dir $WORK" >&2
export STEERDNS_BIN WORK PIDFILE TRIALS HOLD_DOWN_MS
timeout --kill-after=15 "$MAX_SECONDS" python3 "$here/failover.py" &
driver=$!
wait "$driver"
driver=""

if [[ "${APPEND_RESULTS:-1}" == "1" ]]; then
  { echo; cat "$WORK/result.md"; } >>"$repo/bench/RESULTS.md"
  echo "appended to bench/RESULTS.md (APPEND_RESULTS=0 to only print)" >&2
fi
