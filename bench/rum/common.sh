# shellcheck shell=bash
# Shared by the RUM benchmarks (ingest.sh, dns-flood.sh, beacon-cost.sh): building the
# server and the bench tools, writing the bench config into a temp dir, starting steerdns
# on free loopback ports, waiting for /readyz, and reading /metrics. Source after lib.sh.

# Build steerdns and the bench tools unless STEERDNS_BIN and BENCH_BIN_DIR are set.
build_all() {
  build_steerdns
  if [[ -z "${BENCH_BIN_DIR:-}" ]]; then
    log "building the bench tools (cargo build --release -p steerdns-bench)"
    (cd "$REPO_ROOT" && cargo build --release -p steerdns-bench)
    BENCH_BIN_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
  fi
  for b in beaconflood http-floor loadgen; do
    [[ -x "$BENCH_BIN_DIR/$b" ]] || die "$BENCH_BIN_DIR/$b is missing"
  done
}

# write_config DIR: bench/rum/steerdns.toml, its policies and a fresh token secret.
write_config() {
  local dir=$1
  cp -r "$REPO_ROOT/bench/rum/policies" "$dir/"
  sed -e "s#@GEOIP_DIR@#$REPO_ROOT/tests/fixtures/geoip#" \
      -e "s#@ZONE_FILE@#$REPO_ROOT/examples/zones/example.com.zone#" \
      "$REPO_ROOT/bench/rum/steerdns.toml" >"$dir/steerdns.toml"
  head -c 48 /dev/urandom | base64 >"$dir/rum.secret"
}

# Poll URL until it answers 200, bounded; dies if PID exits.
wait_http() {
  local url=$1 pid=$2 logfile=$3 try
  for ((try = 1; try <= READY_TRIES; try++)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logfile" >&2; die "process $pid exited (log: $logfile)"; }
    if curl -fsS -m 1 -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  die "$url did not answer after $READY_TRIES tries (log: $logfile)"
}

# start_steerdns DIR CPUS: sets SERVER_PID, HTTP_PORT, DNS_PORT. CPUS "" = unpinned.
start_steerdns() {
  local dir=$1 cpus=$2 ports
  read -r HTTP_PORT DNS_PORT <<<"$(free_ports 2)"
  local -a pin=()
  [[ -n "$cpus" ]] && pin=(taskset -c "$cpus")
  "${pin[@]}" "$STEERDNS_BIN" serve -c "$dir/steerdns.toml" \
    --dns-listen "$LOOPBACK:$DNS_PORT" --http-listen "$LOOPBACK:$HTTP_PORT" \
    >"$dir/steerdns.log" 2>&1 &
  SERVER_PID=$!
  wait_http "http://$LOOPBACK:$HTTP_PORT/readyz" "$SERVER_PID" "$dir/steerdns.log"
  log "steerdns ready (pid $SERVER_PID, http $HTTP_PORT, dns $DNS_PORT, cpus ${cpus:-all})"
}

# metric PORT NAME: one value from /metrics.
metric() {
  curl -fsS -m 5 "http://$LOOPBACK:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}

# json_field FILE EXPR: a value from a one-line JSON file (python expression over `j`).
json_field() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
