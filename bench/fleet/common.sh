# shellcheck shell=bash
# Shared by the fleet benchmarks (converge.sh, beacons.sh, outage.sh): a private
# redis-server (free loopback port, no persistence, its own temp dir, pinned if asked), a
# node's config from steerdns.toml, and seeding the fleet's policies. Source after lib.sh and
# bench/rum/common.sh (for bench_setup, render_config and start_steerdns).

# The redis-server binary (default: the one on PATH or in /usr/sbin).
REDIS_SERVER=${REDIS_SERVER:-}

require_redis() {
  [[ -n "$REDIS_SERVER" ]] || REDIS_SERVER=$(find_sbin_tool redis-server redis-server)
  require_tool redis-cli redis-tools
}

# start_redis DIR CPUS [PORT]: redis-server on PORT (default: a free one) with no persistence
# (`--save '' --appendonly no`), its files and log in DIR; waits for PING (bounded). Sets
# REDIS_PID, REDIS_PORT, REDIS_URL; adds the PID to PIDS. CPUS "" = unpinned.
start_redis() {
  local dir=$1 cpus=$2 port=${3:-} try
  mkdir -p "$dir"
  [[ -n "$port" ]] || port=$(free_ports 1)
  local -a p
  mapfile -t p < <(pin "$cpus")
  "${p[@]}" "$REDIS_SERVER" --port "$port" --bind "$LOOPBACK" --save '' --appendonly no \
    --dir "$dir" >>"$dir/redis.log" 2>&1 &
  REDIS_PID=$!
  REDIS_PORT=$port
  REDIS_URL="redis://$LOOPBACK:$port/0"
  PIDS+=("$REDIS_PID")
  for ((try = 1; try <= READY_TRIES; try++)); do
    if ! kill -0 "$REDIS_PID" 2>/dev/null; then
      tail -n 20 "$dir/redis.log" >&2
      die "redis-server exited (log: $dir/redis.log)"
    fi
    if [[ "$(redis PING 2>/dev/null)" == PONG ]]; then
      log "redis-server ready (pid $REDIS_PID, port $port, cpus ${cpus:-all})"
      return 0
    fi
    sleep 0.1
  done
  die "redis-server did not answer PING on $LOOPBACK:$port (log: $dir/redis.log)"
}

# redis ARG...: redis-cli against our Redis, given up after 5 s (a stopped Redis never
# answers, and redis-cli has no timeout of its own).
redis() {
  timeout 5 redis-cli -h "$LOOPBACK" -p "$REDIS_PORT" "$@"
}

# fleet_node DIR ADMIN_PORT: DIR/steerdns.toml from bench/fleet/steerdns.toml.
fleet_node() {
  local dir=$1 admin=$2
  mkdir -p "$dir"
  render_config "$REPO_ROOT/bench/fleet/steerdns.toml" "$dir/steerdns.toml" \
    "s#@ADMIN_LISTEN@#$LOOPBACK:$admin#"
}

# seed_fleet DIR: `steerdns policy import` of the policy files in DIR into our Redis, under
# the default key prefix (the nodes' `[store] prefix` default too).
seed_fleet() {
  local dir=$1 out
  out=$(timeout 60 "$STEERDNS_BIN" policy import --redis "$REDIS_URL" "$dir" 2>&1) ||
    die "policy import failed: $out"
  log "seeded: $out"
}

# wait_readyz PORT WANT: poll /readyz until its body contains WANT (bounded; dies otherwise).
wait_readyz() {
  local port=$1 want=$2 try body=
  for ((try = 1; try <= READY_TRIES; try++)); do
    body=$(curl -sS -m 1 "http://$LOOPBACK:$port/readyz" 2>/dev/null || true)
    [[ "$body" == *"$want"* ]] && return 0
    sleep 0.2
  done
  die "/readyz on port $port never said '$want' (last: '$body')"
}
