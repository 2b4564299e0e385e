#!/usr/bin/env bash
# DNS queries per second with and without a concurrent beacon flood. steerdns pinned to
# SERVER_CPU (DNS and ingestion share that core), loadgen and beaconflood both pinned to
# CLIENT_CPU. Scenarios per round: alone (DNS only), paced (beacons at PACED_RATE/s), flood
# (beacons as fast as they are answered). See bench/rum/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=rum-dns
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/rum/common.sh"

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-8}
PACED_RATE=${PACED_RATE:-2000}
TOKENS=${TOKENS:-250000}
SERVER_CPU=${SERVER_CPU-0}
CLIENT_CPU=${CLIENT_CPU-1}
SCENARIOS=${SCENARIOS:-"alone paced flood"}
MAX_SECONDS=${MAX_SECONDS:-900}

require_tool taskset util-linux
require_tool curl curl
require_tool dig bind9-dnsutils
require_tool python3 python3
require_tool timeout coreutils
build_all

WORK=$(mktemp -d -t rum-dns.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
write_config "$WORK"
log "work dir $WORK"
START=$SECONDS

# ECS subnets inside the networks the beacons come from (10.a.b.0/24 in four country/ASN
# pairs), so every query is decided by the RUM rankings the flood feeds.
python3 - >"$WORK/subnets.txt" <<'PY'
for i in range(0, 65536, 97):
    print(f"10.{(i >> 8) & 255}.{i & 255}.0/24")
PY
echo "rum.example.com A" >"$WORK/queries.txt"

pin() { if [[ -n "$1" ]]; then echo taskset -c "$1"; fi; }

run_one() {
  local scen=$1 round=$2 base="$WORK/$1-$2"
  start_steerdns "$WORK" "$SERVER_CPU"
  PIDS+=("$SERVER_PID")
  local answer
  answer=$(dig_answer "$DNS_PORT" 10.0.1.0/24 rum.example.com A)
  [[ "$answer" == *"CNAME cdn-"* ]] || die "rum.example.com A for 10.0.1.0/24 answered '$answer'"
  warn_if_busy
  local bf=
  if [[ "$scen" != alone ]]; then
    local -a rate=()
    [[ "$scen" == paced ]] && rate=(--rate "$PACED_RATE")
    # shellcheck disable=SC2046
    timeout $((DURATION + 120)) $(pin "$CLIENT_CPU") "$BENCH_BIN_DIR/beaconflood" \
      --server "$LOOPBACK:$HTTP_PORT" --tokens "$TOKENS" --duration $((DURATION + 1)) \
      "${rate[@]}" --json >"$base.beacons.json" 2>"$base.beacons.err" &
    bf=$!
    local _
    for _ in $(seq 1200); do grep -qs 'beacon phase' "$base.beacons.err" && break; sleep 0.1; done
    grep -q 'beacon phase' "$base.beacons.err" || die "beaconflood did not start: $(cat "$base.beacons.err")"
  fi
  local cpu0
  cpu0=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")
  # shellcheck disable=SC2046
  timeout $((DURATION + 30)) $(pin "$CLIENT_CPU") "$BENCH_BIN_DIR/loadgen" \
    --server "$LOOPBACK:$DNS_PORT" --queries "$WORK/queries.txt" --subnets "$WORK/subnets.txt" \
    --duration "$DURATION" --sockets 4 --outstanding 64 --seed "$round" --json \
    >"$base.dns.json" 2>"$base.dns.err" || die "loadgen failed: $(cat "$base.dns.err")"
  local cpu1
  cpu1=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")
  # Server CPU share of the DNS run (clock ticks over loadgen's run time).
  python3 -c 'import json,os,sys; j=json.load(open(sys.argv[1])); print((int(sys.argv[2]) / os.sysconf("SC_CLK_TCK")) / j["run_time_s"])' \
    "$base.dns.json" "$((cpu1 - cpu0))" >"$base.server-cpu"
  if [[ -n "$bf" ]]; then wait "$bf" || die "beaconflood failed: $(cat "$base.beacons.err")"; fi
  stop_pid "$SERVER_PID"
  log "$scen round $round: $(json_field "$base.dns.json" '"%.0f qps, p99 %.2f ms, lost %d" % (j["qps"], j["latency_us"]["p99"]/1e3, j["lost"])')$(
    [[ -n "$bf" ]] && echo "; beacons $(json_field "$base.beacons.json" '"%.0f/s accepted, %d refused" % (j["accepted_per_s"], sum(j["refused"].values()))')")"
}

for ((round = 1; round <= REPEAT; round++)); do
  # shellcheck disable=SC2206
  order=($SCENARIOS)
  if ((round % 2 == 0)); then order=($(printf '%s\n' "${order[@]}" | tac)); fi
  for s in "${order[@]}"; do
    ((SECONDS - START < MAX_SECONDS)) || die "MAX_SECONDS=$MAX_SECONDS reached"
    run_one "$s" "$round"
  done
done

python3 "$REPO_ROOT/bench/rum/table.py" dns "$WORK"
log "raw outputs in $WORK"
