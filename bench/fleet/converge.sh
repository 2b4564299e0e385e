#!/usr/bin/env bash
# Fleet convergence: NODES (3) steerdns nodes on one private Redis. Policy edits through node
# A's admin API (PUT with If-Match), each moving fleet.example.com between two answers, timed
# from the edit's HTTP 200 to the new answer in node B's (and C's) DNS responses; then health
# flips (failing, then passing probe results posted to A) timed the same way. See
# bench/fleet/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=fleet-converge
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=../rum/common.sh
source "$REPO_ROOT/bench/rum/common.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/fleet/common.sh"

NODES=${NODES:-3}
EDITS=${EDITS:-50}
FLIPS=${FLIPS:-5}
PAUSE_MS=${PAUSE_MS:-700}
POLL_US=${POLL_US:-1000}
TIMEOUT_MS=${TIMEOUT_MS:-5000}
MAX_SECONDS=${MAX_SECONDS:-600}

((NODES == 2 || NODES == 3)) || die "NODES must be 2 or 3"
require_common_tools
require_redis
build_all

bench_setup fleet-converge
warn_if_busy
# The admin API's token, the same on every node (and read by converge).
STEERDNS_ADMIN_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
export STEERDNS_ADMIN_TOKEN

start_redis "$WORK/redis" ""
mkdir -p "$WORK/seed"
cp "$REPO_ROOT/bench/fleet/policies/fleet-a.toml" "$WORK/seed/fleet.example.com.toml"
seed_fleet "$WORK/seed"

labels=(A B C)
declare -A DNS ADMIN
for ((i = 0; i < NODES; i++)); do
  n=${labels[$i]}
  ADMIN[$n]=$(free_ports 1)
  fleet_node "$WORK/node-$n" "${ADMIN[$n]}"
  start_steerdns "$WORK/node-$n" "" --redis "$REDIS_URL"
  DNS[$n]=$DNS_PORT
  wait_until_answering "node $n" "$SERVER_PID" "$DNS_PORT" "$WORK/node-$n/steerdns.log" fleet.example.com A
done

watch=(--watch "B=$LOOPBACK:${DNS[B]}")
((NODES == 3)) && watch+=(--watch "C=$LOOPBACK:${DNS[C]}")
policies="$REPO_ROOT/bench/fleet/policies"
log "$EDITS edits and $FLIPS health flips through node A, watching ${watch[*]}"
started=$SECONDS
timeout "$MAX_SECONDS" "$BENCH_BIN_DIR/converge" --admin "$LOOPBACK:${ADMIN[A]}" "${watch[@]}" \
  --name fleet.example.com \
  --policy "$policies/fleet-a.toml=192.0.2.1" --policy "$policies/fleet-b.toml=192.0.2.2" \
  --edits "$EDITS" --flip-target pop-a --flip-answer 192.0.2.2 --flips "$FLIPS" \
  --pause-ms "$PAUSE_MS" --poll-us "$POLL_US" --timeout-ms "$TIMEOUT_MS" \
  --json "$WORK/converge.json" >"$WORK/converge.md" 2>"$WORK/converge.err" ||
  die "converge failed: $(cat "$WORK/converge.err")"

echo "Fleet convergence: $NODES nodes on one Redis ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$((SECONDS - started)) s); one refresh interval ([store] refresh_ms default) is 2000 ms."
echo
cat "$WORK/converge.md"
log "raw outputs in $WORK"
