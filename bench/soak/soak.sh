#!/usr/bin/env bash
# The soak: one steerdns (release build) on loopback for DURATION seconds (default 600) under
# everything at once, and a table of what it survived:
#   - loadgen: a high query rate (ECS A queries for three steered names), in 60 s runs;
#   - soak (the checker): UDP and TCP queries whose every answer is checked against
#     `GET /api/v1/explain` for its client, while it edits www.example.com through the admin
#     API every EDIT_EVERY_MS; TCP churn with slowloris connections; malformed datagrams;
#   - beaconflood: RUM beacons (token fetch and beacon, keep-alive), in 60 s runs;
#   - RSS of the server every 10 s.
# It fails on any wrong answer, unparseable reply, reply to a response, failed edit, lost
# server, or memory that grows after the warm-up (RSS from 300 s or the second half, whichever
# is later, up by more than 5% and 2 MiB; runs under 400 s are not judged on memory). Loopback
# only; bounded by DURATION and MAX_SECONDS; stops what it started.
# See bench/soak/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG="soak"
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=../rum/common.sh
source "$REPO_ROOT/bench/rum/common.sh"

DURATION=${DURATION:-600}
EDIT_EVERY_MS=${EDIT_EVERY_MS:-2000}
JUNK_PER_SEC=${JUNK_PER_SEC:-2000}
TCP_PER_SEC=${TCP_PER_SEC:-50}
BEACONS_PER_SEC=${BEACONS_PER_SEC:-500}
SUBNETS=${SUBNETS:-300}
MAX_SECONDS=${MAX_SECONDS:-$((DURATION + 600))}
READY_TRIES=${READY_TRIES:-150}
LOOPBACK=127.0.0.1
CHUNK=60
OUT=${OUT:-}

require_common_tools
((DURATION >= 10 && DURATION <= 3600)) || die "DURATION must be 10..3600 seconds"

bench_setup steerdns-soak
build_all
[[ -x "$BENCH_BIN_DIR/soak" ]] || die "$BENCH_BIN_DIR/soak is missing"

# --- the server
cp -r "$REPO_ROOT/policies" "$WORK/"
head -c 48 /dev/urandom | base64 >"$WORK/rum.secret"
read -r ADMIN_PORT <<<"$(free_ports 1)"
render_config "$REPO_ROOT/bench/soak/steerdns.toml" "$WORK/steerdns.toml" \
  "s#@ADMIN_LISTEN@#$LOOPBACK:$ADMIN_PORT#"
STEERDNS_ADMIN_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
export STEERDNS_ADMIN_TOKEN
start_steerdns "$WORK" ""
DNS="$LOOPBACK:$DNS_PORT"

# --- inputs: subnets from the test City database, the query file, the edit's second version
"$BENCH_BIN_DIR/subnets" --db "$REPO_ROOT/tests/fixtures/geoip/GeoIP2-City-Test.mmdb" \
  -n "$SUBNETS" -o "$WORK/subnets.txt"
echo "198.51.100.0/24" >>"$WORK/subnets.txt"
printf '%s A\n' www.example.com pop.example.com weighted.example.com >"$WORK/queries.txt"
mkdir -p "$WORK/versions"
cp "$REPO_ROOT/policies/www.example.com.toml" "$WORK/versions/a.toml"
# The second version sends Europe to cdn-a first instead of cdn-c.
sed 's/{ continent = "EU" }, targets = \["cdn-c", "cdn-a"\]/{ continent = "EU" }, targets = ["cdn-a", "cdn-c"]/' \
  "$WORK/versions/a.toml" >"$WORK/versions/b.toml"
cmp -s "$WORK/versions/a.toml" "$WORK/versions/b.toml" && die "the second policy version is the same as the first"

# --- RSS every 10 s
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }
(
  t0=$SECONDS
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    echo "$((SECONDS - t0)) $(rss_kb)"
    sleep 10
  done
) >"$WORK/rss.txt" &
PIDS+=($!)

curl -fsS -m 5 "http://$LOOPBACK:$HTTP_PORT/metrics" >"$WORK/metrics.before"
log "soak for ${DURATION}s: loadgen, checker (edits every ${EDIT_EVERY_MS} ms, ${JUNK_PER_SEC} junk/s, ${TCP_PER_SEC} TCP/s), beacons ${BEACONS_PER_SEC}/s"
END=$((SECONDS + DURATION))

# --- loadgen and beaconflood in CHUNK-second runs until the end
(
  seed=1
  while ((SECONDS < END - 2)); do
    d=$((END - SECONDS < CHUNK ? END - SECONDS : CHUNK))
    timeout $((d + 30)) "$BENCH_BIN_DIR/loadgen" --server "$DNS" --queries "$WORK/queries.txt" \
      --subnets "$WORK/subnets.txt" --duration "$d" --sockets 2 --outstanding 32 \
      --seed "$seed" --json >>"$WORK/loadgen.jsonl" 2>>"$WORK/loadgen.err" || echo "loadgen failed" >>"$WORK/loadgen.err"
    seed=$((seed + 1))
  done
) &
PIDS+=($!)
LOADGEN_LOOP=$!
(
  while ((SECONDS < END - 5)); do
    d=$((END - SECONDS < CHUNK ? END - SECONDS : CHUNK))
    timeout $((d + 60)) "$BENCH_BIN_DIR/beaconflood" --server "$LOOPBACK:$HTTP_PORT" \
      --tokens $((BEACONS_PER_SEC * d)) --rate "$BEACONS_PER_SEC" --duration "$d" \
      --connections 8 --networks 65536 --json >>"$WORK/beacons.jsonl" 2>>"$WORK/beacons.err" ||
      echo "beaconflood failed" >>"$WORK/beacons.err"
  done
) &
PIDS+=($!)
BEACON_LOOP=$!

set +e
timeout $((DURATION + 60)) "$BENCH_BIN_DIR/soak" --dns "$DNS" --admin "$LOOPBACK:$ADMIN_PORT" \
  --names www.example.com,pop.example.com,weighted.example.com --subnets "$WORK/subnets.txt" \
  --versions "$WORK/versions/a.toml" "$WORK/versions/b.toml" --duration "$DURATION" \
  --edit-every-ms "$EDIT_EVERY_MS" --junk-per-sec "$JUNK_PER_SEC" --tcp-per-sec "$TCP_PER_SEC" \
  >"$WORK/soak.json" 2>"$WORK/soak.err"
soak_rc=$?
wait "$LOADGEN_LOOP"
wait "$BEACON_LOOP"
set -e
alive=yes
kill -0 "$SERVER_PID" 2>/dev/null || alive=no
sleep 1
echo "$DURATION $(rss_kb)" >>"$WORK/rss.txt"
curl -fsS -m 5 "http://$LOOPBACK:$HTTP_PORT/metrics" >"$WORK/metrics.after" || true
[[ -s "$WORK/soak.json" ]] || die "the checker printed nothing: $(cat "$WORK/soak.err")"

python3 "$REPO_ROOT/bench/soak/report.py" "$WORK" "$DURATION" "$alive" "$soak_rc" | tee "$WORK/report.md"
[[ -n "$OUT" ]] && cp "$WORK/report.md" "$OUT"
grep -q '^RESULT: PASS' "$WORK/report.md"
