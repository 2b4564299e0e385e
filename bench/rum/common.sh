# shellcheck shell=bash
# Shared by the RUM benchmarks (ingest.sh, dns-flood.sh, beacon-cost.sh) and the fleet
# benchmarks (bench/fleet/): the work dir and the EXIT trap that stops what a script
# started, rounds in alternating order, building the server and the bench tools, writing a
# config from a template, starting steerdns on free loopback ports, waiting for /readyz,
# reading /metrics, and one pinned loadgen run with the CPU it cost. Source after lib.sh.

# curl, python3 and timeout, which every one of these scripts uses.
require_common_tools() {
  require_tool curl curl
  require_tool python3 python3
  require_tool timeout coreutils
}

# bench_setup TAG: WORK (a fresh temp dir), PIDS (what the EXIT trap stops, by PID), START.
# A script may define cleanup_extra, which the trap runs first.
bench_setup() {
  WORK=$(mktemp -d -t "$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  log "work dir $WORK"
  START=$SECONDS
}

# Newest first: nodes stop before the Redis they use.
bench_cleanup() {
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
}

# alternate_rounds FN ITEM...: REPEAT rounds of `FN ITEM ROUND` over the items, their order
# reversed every other round; stops the script once MAX_SECONDS have passed.
alternate_rounds() {
  local fn=$1 round item
  shift
  local -a order
  for ((round = 1; round <= REPEAT; round++)); do
    order=("$@")
    if ((round % 2 == 0)); then mapfile -t order < <(printf '%s\n' "$@" | tac); fi
    for item in "${order[@]}"; do
      ((SECONDS - START < MAX_SECONDS)) || die "MAX_SECONDS=$MAX_SECONDS reached"
      "$fn" "$item" "$round"
    done
  done
}

# Build steerdns and the bench tools unless STEERDNS_BIN and BENCH_BIN_DIR are set.
build_all() {
  build_steerdns
  if [[ -z "${BENCH_BIN_DIR:-}" ]]; then
    log "building the bench tools (cargo build --release -p steerdns-bench)"
    (cd "$REPO_ROOT" && cargo build --release -p steerdns-bench)
    BENCH_BIN_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
  fi
  for b in beaconflood converge http-floor loadgen; do
    [[ -x "$BENCH_BIN_DIR/$b" ]] || die "$BENCH_BIN_DIR/$b is missing"
  done
}

# render_config TEMPLATE DEST [SED_EXPR...]: a config template with @GEOIP_DIR@ (the bundled
# test databases) and @ZONE_FILE@ (the example zone) filled in, and any further `sed -e`s.
render_config() {
  local template=$1 dest=$2 e
  shift 2
  local -a exprs=(-e "s#@GEOIP_DIR@#$REPO_ROOT/tests/fixtures/geoip#"
    -e "s#@ZONE_FILE@#$REPO_ROOT/examples/zones/example.com.zone#")
  for e in "$@"; do exprs+=(-e "$e"); done
  sed "${exprs[@]}" "$template" >"$dest"
}

# write_config DIR: bench/rum/steerdns.toml, its policies and a fresh token secret.
write_config() {
  local dir=$1
  cp -r "$REPO_ROOT/bench/rum/policies" "$dir/"
  render_config "$REPO_ROOT/bench/rum/steerdns.toml" "$dir/steerdns.toml"
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

# pin CPUS: the taskset prefix for a command ("" = unpinned: nothing), one word a line, for
# `mapfile -t`: `local -a p; mapfile -t p < <(pin "$CPU"); "${p[@]}" cmd`.
pin() {
  if [[ -n "$1" ]]; then printf '%s\n' taskset -c "$1"; fi
}

# start_steerdns DIR CPUS [SERVE_ARG...]: `serve -c DIR/steerdns.toml` (log DIR/steerdns.log),
# with more arguments (such as --redis URL) after the listeners; sets SERVER_PID, HTTP_PORT,
# DNS_PORT and adds the PID to PIDS. CPUS "" = unpinned.
start_steerdns() {
  local dir=$1 cpus=$2
  shift 2
  read -r HTTP_PORT DNS_PORT <<<"$(free_ports 2)"
  local -a p
  mapfile -t p < <(pin "$cpus")
  "${p[@]}" "$STEERDNS_BIN" serve -c "$dir/steerdns.toml" \
    --dns-listen "$LOOPBACK:$DNS_PORT" --http-listen "$LOOPBACK:$HTTP_PORT" "$@" \
    >"$dir/steerdns.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http "http://$LOOPBACK:$HTTP_PORT/readyz" "$SERVER_PID" "$dir/steerdns.log"
  log "steerdns ready (pid $SERVER_PID, http $HTTP_PORT, dns $DNS_PORT, cpus ${cpus:-all})"
}

# start_beaconflood PORT SERVER_PID OUT ERR: beaconflood pinned to CLIENT_CPU in the
# background (TOKENS, DURATION, CONNECTIONS, NETWORKS; bounded by timeout), its JSON summary
# to OUT; sets FLOOD_PID. Wait for it with `wait "$FLOOD_PID"`.
start_beaconflood() {
  local port=$1 pid=$2 out=$3 err=$4
  local -a p
  mapfile -t p < <(pin "$CLIENT_CPU")
  timeout $((DURATION + 120)) "${p[@]}" "$BENCH_BIN_DIR/beaconflood" \
    --server "$LOOPBACK:$port" --tokens "$TOKENS" --duration "$DURATION" \
    --connections "$CONNECTIONS" --networks "$NETWORKS" --server-pid "$pid" --json \
    >"$out" 2>"$err" &
  # shellcheck disable=SC2034  # waited for by the caller
  FLOOD_PID=$!
}

# check_accepted PORT OUT: the server's accepted-beacon counter equals the 204s beaconflood saw.
check_accepted() {
  local counted sent_ok
  counted=$(metric "$1" steerdns_rum_beacons_accepted_total)
  sent_ok=$(json_field "$2" 'j["accepted"]')
  [[ "$counted" == "$sent_ok" ]] ||
    die "the server counted $counted accepted beacons, beaconflood saw $sent_ok 204s"
}

# flood_summary OUT: one line about a beaconflood run, for the log.
flood_summary() {
  json_field "$1" '"%.0f accepted/s, %d refused, p50 %.2f ms, p99 %.2f ms, server CPU %.0f%%, client CPU %.0f%%" % (j["accepted_per_s"], sum(j["refused"].values()), j["latency_us"]["p50"]/1e3, j["latency_us"]["p99"]/1e3, 100*j["server_cpu_share"], 100*j["client_cpu_share"])'
}

# metric PORT NAME: one value from /metrics.
metric() {
  curl -fsS -m 5 "http://$LOOPBACK:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}

# json_field FILE EXPR: a value from a one-line JSON file (python expression over `j`).
json_field() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# measure_dns BASE PORT SERVER_PID ROUND QUERIES [SUBNETS]: loadgen pinned to CLIENT_CPU for
# DURATION s (4 sockets x 64 outstanding) against PORT. Writes BASE.dns.json (loadgen's
# summary), BASE.server-cpu (the server's CPU share of the run: its ticks over loadgen's run
# time) and BASE.client-core (CLIENT_CPU's utilisation by everything on it: near 1 means the
# generator's core, not the server, may set the rate). Unpinned client: no client-core file.
measure_dns() {
  local base=$1 port=$2 pid=$3 round=$4 queries=$5 subnets=${6:-}
  local -a p subnet_args=()
  mapfile -t p < <(pin "$CLIENT_CPU")
  [[ -n "$subnets" ]] && subnet_args=(--subnets "$subnets")
  local cpu0 cpu1 core0 core1
  cpu0=$(proc_ticks "$pid")
  [[ -n "$CLIENT_CPU" ]] && core0=$(core_ticks "$CLIENT_CPU")
  timeout $((DURATION + 30)) "${p[@]}" "$BENCH_BIN_DIR/loadgen" \
    --server "$LOOPBACK:$port" --queries "$queries" "${subnet_args[@]}" \
    --duration "$DURATION" --sockets 4 --outstanding 64 --seed "$round" --json \
    >"$base.dns.json" 2>"$base.dns.err" || die "loadgen failed: $(cat "$base.dns.err")"
  cpu1=$(proc_ticks "$pid")
  python3 -c 'import json,os,sys; j=json.load(open(sys.argv[1])); print((int(sys.argv[2]) / os.sysconf("SC_CLK_TCK")) / j["run_time_s"])' \
    "$base.dns.json" "$((cpu1 - cpu0))" >"$base.server-cpu"
  if [[ -n "$CLIENT_CPU" ]]; then
    core1=$(core_ticks "$CLIENT_CPU")
    awk -v a="$core0" -v b="$core1" 'BEGIN { split(a, x, " "); split(b, y, " ")
      print (y[2] > x[2]) ? (y[1] - x[1]) / (y[2] - x[2]) : 0 }' >"$base.client-core"
  fi
}
