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
require_tool dig bind9-dnsutils
require_common_tools
build_all

bench_setup rum-dns
write_config "$WORK"

# ECS subnets inside the networks the beacons come from (10.a.b.0/24 in four country/ASN
# pairs), so every query is decided by the RUM rankings the flood feeds.
python3 - >"$WORK/subnets.txt" <<'PY'
for i in range(0, 65536, 97):
    print(f"10.{(i >> 8) & 255}.{i & 255}.0/24")
PY
echo "rum.example.com A" >"$WORK/queries.txt"

run_one() {
  local scen=$1 round=$2 base="$WORK/$1-$2"
  start_steerdns "$WORK" "$SERVER_CPU"
  local answer
  answer=$(dig_answer "$DNS_PORT" 10.0.1.0/24 rum.example.com A)
  [[ "$answer" == *"CNAME cdn-"* ]] || die "rum.example.com A for 10.0.1.0/24 answered '$answer'"
  warn_if_busy
  local bf=
  if [[ "$scen" != alone ]]; then
    local -a rate=() p
    [[ "$scen" == paced ]] && rate=(--rate "$PACED_RATE")
    mapfile -t p < <(pin "$CLIENT_CPU")
    timeout $((DURATION + 120)) "${p[@]}" "$BENCH_BIN_DIR/beaconflood" \
      --server "$LOOPBACK:$HTTP_PORT" --tokens "$TOKENS" --duration $((DURATION + 1)) \
      "${rate[@]}" --json >"$base.beacons.json" 2>"$base.beacons.err" &
    bf=$!
    local _
    for _ in $(seq 1200); do grep -qs 'beacon phase' "$base.beacons.err" && break; sleep 0.1; done
    grep -q 'beacon phase' "$base.beacons.err" || die "beaconflood did not start: $(cat "$base.beacons.err")"
  fi
  measure_dns "$base" "$DNS_PORT" "$SERVER_PID" "$round" "$WORK/queries.txt" "$WORK/subnets.txt"
  if [[ -n "$bf" ]]; then wait "$bf" || die "beaconflood failed: $(cat "$base.beacons.err")"; fi
  stop_pid "$SERVER_PID"
  log "$scen round $round: $(json_field "$base.dns.json" '"%.0f qps, p99 %.2f ms, lost %d" % (j["qps"], j["latency_us"]["p99"]/1e3, j["lost"])')$(
    [[ -n "$bf" ]] && echo "; beacons $(json_field "$base.beacons.json" '"%.0f/s accepted, %d refused" % (j["accepted_per_s"], sum(j["refused"].values()))')")"
}

read -ra scenarios <<<"$SCENARIOS"
alternate_rounds run_one "${scenarios[@]}"

python3 "$REPO_ROOT/bench/rum/table.py" dns "$WORK"
log "raw outputs in $WORK"
