#!/usr/bin/env bash
# Beacon ingestion on one core, through Redis (fleet mode) and with the embedded store, in
# alternating rounds: steerdns pinned to SERVER_CPU, beaconflood to CLIENT_CPU, a fresh
# private redis-server (pinned to REDIS_CPU) per fleet run. After each fleet run: how many
# RUM series-minutes reached Redis, the attempts they hold, and the store's dropped writes.
# See bench/fleet/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG="fleet-beacons"
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=../rum/common.sh
source "$REPO_ROOT/bench/rum/common.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/fleet/common.sh"

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-8}
TOKENS=${TOKENS:-250000}
CONNECTIONS=${CONNECTIONS:-32}
NETWORKS=${NETWORKS:-65536}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REDIS_CPU=${REDIS_CPU-$CLIENT_CPU}
SERVERS=${SERVERS:-"redis embedded"}
MAX_SECONDS=${MAX_SECONDS:-900}

require_tool taskset util-linux
require_common_tools
require_redis
build_all

bench_setup fleet-beacons
write_config "$WORK"

# The fleet's RUM keys (default prefix): `{steerdns}:rum:<series>:<minute>` hashes, and per
# minute an index set of the series written. Prints "series-minutes world-attempts
# hincrby-calls": the series-minute hashes in Redis, the attempts (`n`) summed over the world
# series (one per target, so every accepted beacon counts once per target), and the HINCRBY
# commands Redis executed.
rum_in_redis() {
  local index minute series total=0 world=0 n calls
  while read -r index; do
    [[ -n "$index" ]] || continue
    minute=${index##*:}
    total=$((total + $(redis SCARD "$index")))
    while read -r series; do
      [[ "$series" == *"|world" ]] || continue
      n=$(redis HGET "{steerdns}:rum:$series:$minute" n)
      world=$((world + ${n:-0}))
    done < <(redis --raw SMEMBERS "$index")
  done < <(redis --raw --scan --pattern '{steerdns}:rum:index:*')
  calls=$(redis INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_hincrby:calls=\([0-9]*\),.*/\1/p')
  echo "$total $world ${calls:-0}"
}

run_one() {
  local server=$1 round=$2 out="$WORK/$1-$2.json"
  local -a fleet=()
  if [[ "$server" == redis ]]; then
    start_redis "$WORK/redis-$round" "$REDIS_CPU"
    fleet=(--redis "$REDIS_URL")
    seed_fleet "$WORK/policies"
  fi
  start_steerdns "$WORK" "$SERVER_CPU" "${fleet[@]}"
  warn_if_busy
  start_beaconflood "$HTTP_PORT" "$SERVER_PID" "$out" "$WORK/$server-$round.err"
  wait "$FLOOD_PID" || die "beaconflood failed: $(cat "$WORK/$server-$round.err")"
  check_accepted "$HTTP_PORT" "$out"
  if [[ "$server" == redis ]]; then
    # The node adds what it accepted to Redis once a second: give it three.
    sleep 3
    local dropped buffered accepted keys world calls
    dropped=$(metric "$HTTP_PORT" steerdns_store_dropped_writes_total)
    buffered=$(metric "$HTTP_PORT" steerdns_store_buffered_writes)
    read -r keys world calls <<<"$(rum_in_redis)"
    accepted=$(json_field "$out" 'j["accepted"]')
    echo "{\"series_minutes\": $keys, \"world_attempts\": $world, \"hincrby_calls\": $calls," \
      "\"accepted\": $accepted, \"targets\": 3, \"dropped\": ${dropped:-null}," \
      "\"buffered\": ${buffered:-null}}" >"$WORK/$server-$round.redis"
    log "redis round $round: $(cat "$WORK/$server-$round.redis")"
  fi
  stop_pid "$SERVER_PID"
  [[ "$server" == redis ]] && stop_pid "$REDIS_PID"
  log "$server round $round: $(flood_summary "$out")"
}

read -ra servers <<<"$SERVERS"
alternate_rounds run_one "${servers[@]}"

python3 "$REPO_ROOT/bench/rum/table.py" ingest "$WORK" "${servers[@]}"
python3 "$REPO_ROOT/bench/fleet/table.py" redis "$WORK"
log "raw outputs in $WORK"
