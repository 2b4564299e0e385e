#!/usr/bin/env bash
# DNS queries per second of a fleet node while its Redis is healthy, stopped (SIGSTOP) and
# killed (SIGKILL), in alternating rounds: the node pinned to SERVER_CPU, loadgen to
# CLIENT_CPU, the private redis-server to REDIS_CPU. Each outage holds for the whole run and
# the node must say the store is down (steerdns_store_up 0, /readyz stale) before it starts;
# afterwards Redis is continued, or started again empty and re-seeded, and the node must say
# the store is up again without a restart. See
# bench/fleet/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=fleet-outage
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=../rum/common.sh
source "$REPO_ROOT/bench/rum/common.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/fleet/common.sh"

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-8}
SERVER_CPU=${SERVER_CPU-0}
CLIENT_CPU=${CLIENT_CPU-1}
REDIS_CPU=${REDIS_CPU-$CLIENT_CPU}
SCENARIOS=${SCENARIOS:-"healthy stopped killed"}
MAX_SECONDS=${MAX_SECONDS:-900}

require_tool taskset util-linux
require_tool dig bind9-dnsutils
require_common_tools
require_redis
build_all

bench_setup fleet-outage
STEERDNS_ADMIN_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
export STEERDNS_ADMIN_TOKEN
mkdir -p "$WORK/seed"
cp "$REPO_ROOT/bench/fleet/policies/fleet-a.toml" "$WORK/seed/fleet.example.com.toml"
start_redis "$WORK/redis" "$REDIS_CPU"
seed_fleet "$WORK/seed"
fleet_node "$WORK/node" "$(free_ports 1)"
start_steerdns "$WORK/node" "$SERVER_CPU" --redis "$REDIS_URL"
NODE_PID=$SERVER_PID
wait_until_answering "the node" "$NODE_PID" "$DNS_PORT" "$WORK/node/steerdns.log" fleet.example.com A
# The steered name and a static one.
printf 'fleet.example.com A\nmail.example.com A\n' >"$WORK/queries.txt"
STALE="stale: the shared store is unreachable"

# wait_store PORT up|down: the node's steerdns_store_up says so, and when down, /readyz says
# the store is unreachable (bounded; dies otherwise).
wait_store() {
  local port=$1 want=$2 try up body=
  for ((try = 1; try <= READY_TRIES; try++)); do
    up=$(metric "$port" steerdns_store_up 2>/dev/null || true)
    case $want in
      up) [[ "$up" == 1 ]] && return 0 ;;
      down)
        body=$(curl -sS -m 1 "http://$LOOPBACK:$port/readyz" 2>/dev/null || true)
        [[ "$up" == 0 && "$body" == *"$STALE"* ]] && return 0
        ;;
    esac
    sleep 0.2
  done
  die "the node never said the store is $want (steerdns_store_up '$up', /readyz '$body')"
}
run_one() {
  local scen=$1 round=$2 base="$WORK/$1-$2"
  wait_store "$HTTP_PORT" up
  case $scen in
    healthy) ;;
    stopped) kill -STOP "$REDIS_PID" ;;
    killed)
      kill -KILL "$REDIS_PID"
      wait "$REDIS_PID" 2>/dev/null || true
      ;;
    *) die "unknown scenario $scen" ;;
  esac
  [[ "$scen" == healthy ]] || wait_store "$HTTP_PORT" down
  warn_if_busy
  measure_dns "$base" "$DNS_PORT" "$NODE_PID" "$round" "$WORK/queries.txt"
  curl -sS -m 2 "http://$LOOPBACK:$HTTP_PORT/readyz" >"$base.readyz" || true
  local answer
  answer=$(dig_answer "$DNS_PORT" none fleet.example.com A)
  [[ "$answer" == *"A 192.0.2.1" ]] || die "$scen: fleet.example.com answered '$answer' after the run"
  case $scen in
    stopped) kill -CONT "$REDIS_PID" ;;
    killed)
      # Started again empty (no persistence): the node keeps serving and says stale until
      # the fleet is seeded again.
      start_redis "$WORK/redis" "$REDIS_CPU" "$REDIS_PORT"
      seed_fleet "$WORK/seed"
      ;;
  esac
  log "$scen round $round: $(json_field "$base.dns.json" '"%.0f qps, p99 %.2f ms, lost %d" % (j["qps"], j["latency_us"]["p99"]/1e3, j["lost"])'), readyz: $(head -c 120 "$base.readyz")"
}

read -ra scenarios <<<"$SCENARIOS"
alternate_rounds run_one "${scenarios[@]}"
wait_store "$HTTP_PORT" up
sleep 3 # past one refresh interval

python3 "$REPO_ROOT/bench/fleet/table.py" outage "$WORK" "${scenarios[@]}"
echo
echo "At the end, Redis up again for 3 s: steerdns_store_up $(metric "$HTTP_PORT" steerdns_store_up)," \
  "/readyz: $(curl -sS -m 2 "http://$LOOPBACK:$HTTP_PORT/readyz" | cut -d';' -f1)"
log "raw outputs in $WORK"
