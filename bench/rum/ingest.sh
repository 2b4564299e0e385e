#!/usr/bin/env bash
# Beacon ingestion on one core: steerdns (embedded store) pinned to SERVER_CPU, beaconflood
# pinned to CLIENT_CPU, against the floor (http-floor: the same HTTP stack, trivial handlers)
# in alternating rounds. See bench/rum/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=rum-ingest
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/rum/common.sh"

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-8}
TOKENS=${TOKENS:-250000}
CONNECTIONS=${CONNECTIONS:-32}
NETWORKS=${NETWORKS:-65536}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SERVERS=${SERVERS:-"steerdns floor"}
PERF=${PERF:-0}
MAX_SECONDS=${MAX_SECONDS:-900}

require_tool taskset util-linux
require_tool curl curl
require_tool python3 python3
require_tool timeout coreutils
[[ "$PERF" == 1 ]] && require_tool perf linux-perf
build_all

WORK=$(mktemp -d -t rum-ingest.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
write_config "$WORK"
log "work dir $WORK"
START=$SECONDS

run_one() {
  local server=$1 round=$2 out="$WORK/$1-$2.json" pid port
  if [[ "$server" == steerdns ]]; then
    start_steerdns "$WORK" "$SERVER_CPU"
    pid=$SERVER_PID port=$HTTP_PORT
  else
    port=$(free_ports 1)
    taskset -c "$SERVER_CPU" "$BENCH_BIN_DIR/http-floor" --listen "$LOOPBACK:$port" \
      --max-seconds 300 >"$WORK/floor.log" 2>&1 &
    pid=$!
    wait_http "http://$LOOPBACK:$port/rum/v1/config" "$pid" "$WORK/floor.log"
  fi
  PIDS+=("$pid")
  warn_if_busy
  timeout $((DURATION + 120)) taskset -c "$CLIENT_CPU" "$BENCH_BIN_DIR/beaconflood" \
    --server "$LOOPBACK:$port" --tokens "$TOKENS" --duration "$DURATION" \
    --connections "$CONNECTIONS" --networks "$NETWORKS" --server-pid "$pid" --json \
    >"$out" 2>"$WORK/$server-$round.err" &
  local bf=$!
  if [[ "$PERF" == 1 && "$server" == steerdns && "$round" == 1 ]]; then
    # Sample the beacon phase only: from beaconflood's "beacon phase" line, for half of it.
    for _ in $(seq 600); do grep -qs 'beacon phase' "$WORK/$server-$round.err" && break; sleep 0.1; done
    perf record -F 999 -g -p "$pid" -o "$WORK/perf.data" -- sleep "$((DURATION / 2))" \
      >/dev/null 2>"$WORK/perf.log" || log "perf record failed: $(tail -n 2 "$WORK/perf.log")"
  fi
  wait "$bf" || die "beaconflood failed: $(cat "$WORK/$server-$round.err")"
  if [[ "$server" == steerdns ]]; then
    local counted
    counted=$(metric "$port" steerdns_rum_beacons_accepted_total)
    local sent_ok
    sent_ok=$(json_field "$out" 'j["accepted"]')
    [[ "$counted" == "$sent_ok" ]] ||
      die "the server counted $counted accepted beacons, beaconflood saw $sent_ok 204s"
  fi
  stop_pid "$pid"
  log "$server round $round: $(json_field "$out" '"%.0f accepted/s, %d refused, p50 %.2f ms, p99 %.2f ms, server CPU %.0f%%, client CPU %.0f%%" % (j["accepted_per_s"], sum(j["refused"].values()), j["latency_us"]["p50"]/1e3, j["latency_us"]["p99"]/1e3, 100*j["server_cpu_share"], 100*j["client_cpu_share"])')"
}

for ((round = 1; round <= REPEAT; round++)); do
  # shellcheck disable=SC2206
  order=($SERVERS)
  if ((round % 2 == 0)); then order=($(printf '%s\n' "${order[@]}" | tac)); fi
  for s in "${order[@]}"; do
    ((SECONDS - START < MAX_SECONDS)) || die "MAX_SECONDS=$MAX_SECONDS reached"
    run_one "$s" "$round"
  done
done

python3 "$REPO_ROOT/bench/rum/table.py" ingest "$WORK" $SERVERS
if [[ "$PERF" == 1 && -s "$WORK/perf.data" ]]; then
  perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
    >"$WORK/perf.txt" || true
  python3 "$REPO_ROOT/bench/rum/table.py" perf "$WORK/perf.txt"
fi
log "raw outputs in $WORK"
