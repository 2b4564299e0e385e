#!/usr/bin/env bash
# Response rate limiting under a one-source flood: loadgen (one source address, so one client
# /24) floods steerdns with loopback NOT exempt, in alternating rounds with RRL on (the
# defaults: 1,000 replies/s per network, slip 2) and off. Per round: queries sent/s, whole
# replies/s, truncated (slip) replies/s, dropped/s, the server's own counters, and whether a
# second network (dig from 127.0.2.1) is still answered in full during the flood. steerdns
# pinned to SERVER_CPU, loadgen to CLIENT_CPU. See bench/rrl/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=rrl
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=../rum/common.sh
source "$REPO_ROOT/bench/rum/common.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/rrl/common.sh"

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU-0}
CLIENT_CPU=${CLIENT_CPU-1}
MODES=${MODES:-"on off"}
MAX_SECONDS=${MAX_SECONDS:-600}
READY_TRIES=${READY_TRIES:-100}
LOOPBACK=127.0.0.1

require_tool taskset util-linux
require_tool dig bind9-dnsutils
require_common_tools
bench_setup rrl
build_all

echo "www.example.com A" >"$WORK/queries.txt"
# The demo, loopback not exempt; `rps 0` turns RRL off.
write_rrl_config() {
  write_demo_config "$1" "$(printf '[dns.rate_limit]\nresponses_per_second = %s\nslip = 2\nexempt = []' "$2")"
}

counter() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }

run_one() {
  local mode=$1 round=$2 base="$WORK/$1-$2" rps=1000
  [[ $mode == off ]] && rps=0
  write_rrl_config "$base" "$rps"
  start_steerdns "$base" "$SERVER_CPU"
  curl -fsS -m 5 "http://$LOOPBACK:$HTTP_PORT/metrics" >"$base.metrics0"
  local -a p
  mapfile -t p < <(pin "$CLIENT_CPU")
  # Short timeout: a dropped query frees its slot after 5 ms, so the flood keeps its rate.
  timeout $((DURATION + 30)) "${p[@]}" "$BENCH_BIN_DIR/loadgen" --server "$LOOPBACK:$DNS_PORT" \
    --queries "$WORK/queries.txt" --duration "$DURATION" --sockets 4 --outstanding 64 \
    --timeout-ms 5 --seed "$round" --json >"$base.json" 2>"$base.err" &
  local lg=$!
  sleep $((DURATION / 2))
  # Another network during the flood: its answer must be whole (no TC), first try.
  local other
  other=$(dig -b 127.0.2.1 @"$LOOPBACK" -p "$DNS_PORT" +tries=1 +time=1 www.example.com A 2>&1 || true)
  wait "$lg" || die "loadgen failed: $(cat "$base.err")"
  curl -fsS -m 5 "http://$LOOPBACK:$HTTP_PORT/metrics" >"$base.metrics1"
  stop_pid "$SERVER_PID"
  local other_ok=no
  grep -q 'status: NOERROR' <<<"$other" && ! grep -q 'flags:.* tc' <<<"$other" && grep -q 'CNAME' <<<"$other" && other_ok=yes
  local drop slip
  drop=$(( $(counter "$base.metrics1" 'steerdns_rrl_limited_total{action="drop"}') - $(counter "$base.metrics0" 'steerdns_rrl_limited_total{action="drop"}') ))
  slip=$(( $(counter "$base.metrics1" 'steerdns_rrl_limited_total{action="slip"}') - $(counter "$base.metrics0" 'steerdns_rrl_limited_total{action="slip"}') ))
  python3 - "$base.json" "$mode" "$round" "$drop" "$slip" "$other_ok" >>"$WORK/rows.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); mode, rnd, drop, slip, other = sys.argv[2:7]
t = j["run_time_s"]
whole = j["completed"] - j["truncated"]
print(f"{mode} {rnd} {j['sent']/t:.0f} {whole/t:.0f} {j['truncated']/t:.0f} {j['lost']/t:.0f} {int(drop)/t:.0f} {int(slip)/t:.0f} {other}")
PY
  log "$(tail -n 1 "$WORK/rows.txt")"
}

alternate_rounds run_one $MODES

echo
echo "One-source UDP flood, RRL on (1,000/s per /24, slip 2) and off; medians of $REPEAT rounds, per second:"
echo
echo "| RRL | sent | whole replies | TC (slip) replies | lost (no reply) | server: dropped | server: slipped | other network answered in full |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
python3 - "$WORK/rows.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for mode in ("on", "off"):
    rs = [r for r in rows if r[0] == mode]
    if not rs:
        continue
    med = [f"{statistics.median(float(r[i]) for r in rs):,.0f}" for i in range(2, 8)]
    other = "/".join(r[8] for r in rs)
    print(f"| {mode} | " + " | ".join(med) + f" | {other} |")
PY
