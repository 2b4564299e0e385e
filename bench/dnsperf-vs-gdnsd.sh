#!/usr/bin/env bash
# Benchmark steerdns against gdnsd 3.x (geoip plugin) with dnsperf.
#
# Both servers run on loopback only, on free unprivileged ports, serve the same
# steered name (www.example.com, a geo-steered CNAME) from the same MaxMind test
# database, and are checked for the expected answers before anything is measured.
# Then dnsperf hammers each server in turn with the same query file, the same
# duration and the same fixed EDNS Client Subnet, REPEAT rounds, alternating which
# server goes first, and the medians are printed. See bench/README.md.
#
# Usage:  bash bench/dnsperf-vs-gdnsd.sh
#
# Environment (all optional):
#   DURATION=10              seconds per dnsperf run
#   REPEAT=3                 rounds per server (median is reported)
#   ECS_SUBNET=2a02:d180::/56  client subnet sent in every query (DE, Europe)
#   ALSO_NO_ECS=0            1 = also run a second series with no ECS option
#   QUERY_FILE=bench/queries/www-a.txt   dnsperf input file
#   DNSPERF_THREADS=1 DNSPERF_CLIENTS=4 DNSPERF_OUTSTANDING=256   dnsperf -T/-c/-q
#   SERVER_CPU=0 CLIENT_CPU=1   CPUs for the servers (both) and for dnsperf
#   SERVERS="steerdns gdnsd"    benchmark only a subset, e.g. SERVERS=gdnsd
#   STEERDNS_BIN=path        use this binary instead of `cargo build --release`
#   GDNSD_BIN=path           gdnsd binary (default: gdnsd on PATH, else /usr/sbin/gdnsd)
#   GEOIP_DB=path            City DB for gdnsd (default tests/fixtures/geoip/GeoIP2-City-Test.mmdb)
#
# Nothing is installed; all traffic goes to 127.0.0.1; both servers are stopped
# when the script exits (EXIT trap). Raw dnsperf outputs and server logs are kept
# in a temp directory whose path is printed.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$REPO_ROOT/bench"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
ECS_SUBNET=${ECS_SUBNET:-2a02:d180::/56}
ALSO_NO_ECS=${ALSO_NO_ECS:-0}
QUERY_FILE=${QUERY_FILE:-$BENCH_DIR/queries/www-a.txt}
DNSPERF_THREADS=${DNSPERF_THREADS:-1}
DNSPERF_CLIENTS=${DNSPERF_CLIENTS:-4}
DNSPERF_OUTSTANDING=${DNSPERF_OUTSTANDING:-256}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SERVERS=${SERVERS:-steerdns gdnsd}
GEOIP_DB=${GEOIP_DB:-$REPO_ROOT/tests/fixtures/geoip/GeoIP2-City-Test.mmdb}
STEERDNS_BIN=${STEERDNS_BIN:-}
GDNSD_BIN=${GDNSD_BIN:-}

# Expected answers, checked against both servers before measuring.
# Format: "ECS-subnet-or-none|qname|qtype|expected steerdns answer|expected gdnsd answer"
# An answer is the answer section as "name ttl class type rdata" lines joined by ';'.
# The 149.101.100.0/24 row differs on purpose: it is in ASN 6167, which steerdns'
# demo steers to cdn-a, while gdnsd's geoip plugin has no ASN maps, so gdnsd only
# sees US/NA and answers cdn-b (see bench/README.md).
VERIFY_CASES=(
  "2a02:d180::/56|www.example.com|A|www.example.com. 30 IN CNAME cdn-c.example.net.|same"
  "2a02:d3c0::/56|www.example.com|A|www.example.com. 30 IN CNAME cdn-d.example.net.|same"
  "214.78.120.0/24|www.example.com|A|www.example.com. 30 IN CNAME cdn-b.example.net.|same"
  "149.101.100.0/24|www.example.com|A|www.example.com. 30 IN CNAME cdn-a.example.net.|www.example.com. 30 IN CNAME cdn-b.example.net."
  "175.16.199.0/24|www.example.com|A|www.example.com. 30 IN CNAME cdn-a.example.net.|same"
  "10.0.0.0/24|www.example.com|A|www.example.com. 30 IN CNAME cdn-a.example.net.|same"
  "none|www.example.com|A|www.example.com. 30 IN CNAME cdn-a.example.net.|same"
  "2a02:d180::/56|pop.example.com|A|pop.example.com. 30 IN A 192.0.2.2|same"
  "2a02:d3c0::/56|pop.example.com|AAAA|pop.example.com. 30 IN AAAA 2001:db8::2|same"
  "214.78.120.0/24|pop.example.com|A|pop.example.com. 30 IN A 192.0.2.1|same"
  "175.16.199.0/24|pop.example.com|A|pop.example.com. 30 IN A 192.0.2.3|same"
  "214.0.1.0/24|pop.example.com|AAAA|pop.example.com. 30 IN AAAA 2001:db8::3|same"
  "10.0.0.0/24|pop.example.com|A|pop.example.com. 30 IN A 192.0.2.1|same"
)

WORK_DIR=""
PIDS=()                         # server processes this script started
DNSPERF_PID=""                  # the dnsperf run in progress, if any
declare -A DNS_PORT=()          # server name -> DNS port
declare -A LOG_FILE=()          # server name -> log file

# --- cleanup -----------------------------------------------------------------

# Stop exactly the servers we started (by pid), politely first, then for sure.
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  stop_pid "$DNSPERF_PID"
  for pid in "${PIDS[@]}"; do
    stop_pid "$pid"
  done
  if [[ -n "$WORK_DIR" ]]; then
    log "raw dnsperf outputs and server logs: $WORK_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites -----------------------------------------------------------

check_prerequisites() {
  require_tool dnsperf dnsperf
  require_tool dig bind9-dnsutils
  require_tool taskset util-linux
  require_tool timeout coreutils
  require_tool python3 python3
  if wants gdnsd; then find_gdnsd; fi

  [[ -r "$QUERY_FILE" ]] || die "query file $QUERY_FILE not readable"
  [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds)"
  [[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"
  local s
  for s in $SERVERS; do
    [[ "$s" == steerdns || "$s" == gdnsd ]] || die "SERVERS may only contain 'steerdns' and 'gdnsd', got '$s'"
  done

  # One core for the server under test, another for dnsperf, so the load
  # generator does not steal cycles from the server it measures.
  local ncpu
  ncpu=$(nproc)
  if ((ncpu < 2)); then
    log "WARNING: only $ncpu CPU: server and dnsperf share CPU 0, numbers will be pessimistic"
    SERVER_CPU=0
    CLIENT_CPU=0
  fi
}

wants() { [[ " $SERVERS " == *" $1 "* ]]; }

# --- helpers -----------------------------------------------------------------

# The generic ones (free ports, ECS hex, dig, waiting, building) are in bench/lib.sh.

# --- servers -----------------------------------------------------------------

# steerdns with no --config serves its embedded demo (same zone as bench/gdnsd/).
start_steerdns() {
  local dns_port=$1 http_port=$2
  LOG_FILE[steerdns]="$WORK_DIR/steerdns.log"
  taskset -c "$SERVER_CPU" "$STEERDNS_BIN" serve \
    --dns-listen "$LOOPBACK:$dns_port" \
    --http-listen "$LOOPBACK:$http_port" \
    >"${LOG_FILE[steerdns]}" 2>&1 &
  PIDS+=("$!")
  DNS_PORT[steerdns]=$dns_port
  wait_until_answering steerdns "$!" "$dns_port" "${LOG_FILE[steerdns]}"
}

# gdnsd gets a private config dir built from bench/gdnsd/ (config template +
# zones) with the GeoIP DB copied into its geoip/ subdir, and private run/state
# dirs, so it needs no root, no /etc/gdnsd, /run/gdnsd or /var/lib/gdnsd.
start_gdnsd() {
  local dns_port=$1
  local conf="$WORK_DIR/gdnsd"
  [[ -r "$GEOIP_DB" ]] || die "GeoIP DB $GEOIP_DB not readable"
  mkdir -p "$conf/zones" "$conf/geoip"
  cp "$BENCH_DIR/gdnsd/zones/example.com" "$conf/zones/example.com"
  cp "$GEOIP_DB" "$conf/geoip/GeoIP2-City-Test.mmdb"
  sed -e "s|@DNS_PORT@|$dns_port|g" \
      -e "s|@RUN_DIR@|$conf/run|g" \
      -e "s|@STATE_DIR@|$conf/state|g" \
      "$BENCH_DIR/gdnsd/config" >"$conf/config"
  if grep -q '@[A-Z_]*@' "$conf/config"; then die "unreplaced placeholder in $conf/config"; fi

  LOG_FILE[gdnsd]="$WORK_DIR/gdnsd.log"
  # checkconf first: a config error then shows up as such, not as a dead server.
  "$GDNSD_BIN" -c "$conf" checkconf >"$WORK_DIR/gdnsd-checkconf.log" 2>&1 || {
    cat "$WORK_DIR/gdnsd-checkconf.log" >&2
    die "gdnsd checkconf failed for $conf"
  }
  # "start" = foreground, logs to stderr. NOTIFY_SOCKET is dropped so a gdnsd
  # started from inside a systemd unit does not talk to that unit's manager.
  env -u NOTIFY_SOCKET taskset -c "$SERVER_CPU" "$GDNSD_BIN" -c "$conf" start \
    >"${LOG_FILE[gdnsd]}" 2>&1 &
  PIDS+=("$!")
  DNS_PORT[gdnsd]=$dns_port
  wait_until_answering gdnsd "$!" "$dns_port" "${LOG_FILE[gdnsd]}"
}

# --- verification ------------------------------------------------------------

verify_answers() {
  local server case subnet qname qtype want_steer want_gdnsd want got failures=0
  for server in $SERVERS; do
    for case in "${VERIFY_CASES[@]}"; do
      IFS='|' read -r subnet qname qtype want_steer want_gdnsd <<<"$case"
      want=$want_steer
      if [[ "$server" == gdnsd && "$want_gdnsd" != same ]]; then want=$want_gdnsd; fi
      got=$(dig_answer "${DNS_PORT[$server]}" "$subnet" "$qname" "$qtype")
      if [[ "$got" != "$want" ]]; then
        printf '[bench] WRONG %-8s ECS %-16s %s %s\n          want: %s\n          got:  %s\n' \
          "$server" "$subnet" "$qname" "$qtype" "$want" "${got:-<no answer>}" >&2
        failures=$((failures + 1))
      fi
    done
  done
  ((failures == 0)) || die "$failures wrong answer(s): not benchmarking servers that answer wrongly"
  log "verified ${#VERIFY_CASES[@]} sample queries on: $SERVERS"

  # The benchmark itself needs both servers to give the same answer for its ECS
  # subnet (otherwise we would compare different work).
  if wants steerdns && wants gdnsd; then
    local a b
    a=$(dig_answer "${DNS_PORT[steerdns]}" "$ECS_SUBNET" www.example.com A)
    b=$(dig_answer "${DNS_PORT[gdnsd]}" "$ECS_SUBNET" www.example.com A)
    [[ -n "$a" && "$a" == "$b" ]] ||
      die "servers disagree for ECS_SUBNET=$ECS_SUBNET: steerdns '$a' vs gdnsd '$b'; pick another subnet"
    log "both servers answer '$a' for ECS $ECS_SUBNET"
  fi
}

# --- measuring ---------------------------------------------------------------

# One dnsperf run; output saved to $WORK_DIR/raw/<mode>-<server>-<round>.txt.
run_dnsperf() {
  local server=$1 mode=$2 round=$3
  local out="$WORK_DIR/raw/$mode-$server-round$round.txt"
  local -a edns
  if [[ "$mode" == ecs ]]; then
    edns=(-E "8:$ECS_HEX")
  else
    edns=(-e)               # plain EDNS0, no client subnet
  fi
  log "round $round/$REPEAT  $mode  $server  (${DURATION}s)"
  # -t 1: lost queries time out quickly so the run ends right after -l.
  # timeout(1) is a backstop in case dnsperf itself hangs.
  # Run in the background and wait, so that an INT/TERM reaches our trap at once
  # (bash defers traps until a foreground child exits); cleanup stops it.
  timeout --kill-after=5 $((DURATION + 30)) \
    taskset -c "$CLIENT_CPU" dnsperf \
      -s "$LOOPBACK" -p "${DNS_PORT[$server]}" -d "$QUERY_FILE" \
      -l "$DURATION" -t 1 \
      -T "$DNSPERF_THREADS" -c "$DNSPERF_CLIENTS" -q "$DNSPERF_OUTSTANDING" \
      "${edns[@]}" >"$out" 2>&1 &
  DNSPERF_PID=$!
  wait "$DNSPERF_PID" || die "dnsperf failed against $server, see $out"
  DNSPERF_PID=""

  # A fast SERVFAIL/REFUSED is not a result worth comparing.
  local rcodes
  rcodes=$(sed -n 's/^ *Response codes: *//p' "$out")
  [[ "$rcodes" =~ ^NOERROR\ [0-9]+\ \(100\.00%\)$ ]] ||
    die "$server answered with other rcodes than NOERROR (${rcodes:-none}), see $out"
}

# Print the result table for one mode (ecs / noecs).
report() {
  local mode=$1 server r f qps_list lat_list lost sent resp
  declare -A med_qps=() med_lat=()
  echo
  if [[ "$mode" == ecs ]]; then
    echo "== ECS $ECS_SUBNET on every query; $(basename "$QUERY_FILE"); ${DURATION}s x $REPEAT rounds; dnsperf -T $DNSPERF_THREADS -c $DNSPERF_CLIENTS -q $DNSPERF_OUTSTANDING"
  else
    echo "== no ECS (plain EDNS0, source 127.0.0.1 is not in the DB); $(basename "$QUERY_FILE"); ${DURATION}s x $REPEAT rounds"
  fi
  printf '%-9s %12s %16s %14s %10s  %s\n' server "qps (median)" "avg lat ms (med)" "lost/sent" "resp bytes" "qps per round"
  for server in $SERVERS; do
    qps_list=() lat_list=() lost=0 sent=0 resp=""
    for ((r = 1; r <= REPEAT; r++)); do
      f="$WORK_DIR/raw/$mode-$server-round$r.txt"
      qps_list+=("$(dnsperf_field "$f" qps)")
      lat_list+=("$(dnsperf_field "$f" lat)")
      lost=$((lost + $(dnsperf_field "$f" lost)))
      sent=$((sent + $(dnsperf_field "$f" sent)))
      resp=$(dnsperf_field "$f" resp)
    done
    med_qps[$server]=$(printf '%s\n' "${qps_list[@]}" | median)
    med_lat[$server]=$(printf '%s\n' "${lat_list[@]}" | median)
    printf '%-9s %12.0f %16.3f %14s %10s  %s\n' "$server" "${med_qps[$server]}" "${med_lat[$server]}" \
      "$lost/$sent" "$resp" "$(printf '%.0f ' "${qps_list[@]}")"
  done
  if wants steerdns && wants gdnsd; then
    awk -v s="${med_qps[steerdns]}" -v g="${med_qps[gdnsd]}" \
      'BEGIN { printf "ratio steerdns/gdnsd (median qps): %.2f\n", s / g }'
  fi
}

# --- main --------------------------------------------------------------------

main() {
  check_prerequisites
  if wants steerdns; then build_steerdns; fi

  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/steerdns-bench.XXXXXX")
  mkdir -p "$WORK_DIR/raw"
  ECS_HEX=$(ecs_option_hex "$ECS_SUBNET")

  local ports
  read -r -a ports <<<"$(free_ports 3)"
  if wants steerdns; then start_steerdns "${ports[0]}" "${ports[1]}"; fi
  if wants gdnsd; then start_gdnsd "${ports[2]}"; fi

  verify_answers

  log "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); servers on CPU $SERVER_CPU, dnsperf on CPU $CLIENT_CPU"
  # Anything else running (a compile, a browser) skews a 2-core benchmark badly.
  warn_if_busy
  log "dnsperf $(dnsperf -h 2>&1 | sed -n 's/^Version //p' | head -n1)${GDNSD_VERSION:+, gdnsd $GDNSD_VERSION}${STEERDNS_BIN:+, steerdns $STEERDNS_BIN}"

  local -a modes=(ecs) order
  if [[ "$ALSO_NO_ECS" == 1 ]]; then modes+=(noecs); fi
  read -r -a order <<<"$SERVERS"
  local mode round server i
  for mode in "${modes[@]}"; do
    for ((round = 1; round <= REPEAT; round++)); do
      # Alternate who goes first, so slow drift (thermal, noisy neighbours)
      # does not always hit the same server.
      if ((round % 2 == 1)); then
        for server in "${order[@]}"; do run_dnsperf "$server" "$mode" "$round"; done
      else
        for ((i = ${#order[@]} - 1; i >= 0; i--)); do run_dnsperf "${order[i]}" "$mode" "$round"; done
      fi
    done
  done

  for mode in "${modes[@]}"; do report "$mode"; done
  echo
  echo "Loopback benchmark on a small machine: numbers are noisy; compare ratios, not absolute qps."
  echo "raw dnsperf outputs: $WORK_DIR/raw"
}

main "$@"
