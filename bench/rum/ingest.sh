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
require_common_tools
[[ "$PERF" == 1 ]] && require_tool perf linux-perf
build_all

bench_setup rum-ingest
write_config "$WORK"

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
    PIDS+=("$pid")
    wait_http "http://$LOOPBACK:$port/rum/v1/config" "$pid" "$WORK/floor.log"
  fi
  warn_if_busy
  start_beaconflood "$port" "$pid" "$out" "$WORK/$server-$round.err"
  if [[ "$PERF" == 1 && "$server" == steerdns && "$round" == 1 ]]; then
    # Sample the beacon phase only: from beaconflood's "beacon phase" line, for half of it.
    for _ in $(seq 600); do grep -qs 'beacon phase' "$WORK/$server-$round.err" && break; sleep 0.1; done
    perf record -F 999 -g -p "$pid" -o "$WORK/perf.data" -- sleep "$((DURATION / 2))" \
      >/dev/null 2>"$WORK/perf.log" || log "perf record failed: $(tail -n 2 "$WORK/perf.log")"
  fi
  wait "$FLOOD_PID" || die "beaconflood failed: $(cat "$WORK/$server-$round.err")"
  if [[ "$server" == steerdns ]]; then check_accepted "$port" "$out"; fi
  stop_pid "$pid"
  log "$server round $round: $(flood_summary "$out")"
}

read -ra servers <<<"$SERVERS"
alternate_rounds run_one "${servers[@]}"

python3 "$REPO_ROOT/bench/rum/table.py" ingest "$WORK" "${servers[@]}"
if [[ "$PERF" == 1 && -s "$WORK/perf.data" ]]; then
  perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
    >"$WORK/perf.txt" || true
  python3 "$REPO_ROOT/bench/rum/table.py" perf "$WORK/perf.txt"
fi
log "raw outputs in $WORK"
