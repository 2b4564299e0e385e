#!/usr/bin/env bash
# The beacon's size (raw, minified, gzipped) and its main-thread cost in headless Chromium's
# trace. steerdns serves the beacon; the three targets' test objects are its own
# /rum/v1/init (204 with CORS and Timing-Allow-Origin), so the beacon runs to the end and
# posts. See bench/rum/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=rum-beacon
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/rum/common.sh"

LOADS=${LOADS:-5}
TRACE_SECONDS=${TRACE_SECONDS:-6}
DELAY_MS=${DELAY_MS:-500}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
# A minifier from npm (fetched into npm's cache by npx, never into the repository); MINIFY=0 skips.
MINIFY=${MINIFY:-1}
TERSER=${TERSER:-terser@5}

require_common_tools
require_tool gzip gzip
[[ -x "$CHROMIUM" ]] || die "$CHROMIUM not found: install the Debian package 'chromium'"
[[ "$MINIFY" == 1 ]] && require_tool npx npm
build_steerdns

BROWSER=
# Chromium leads its own process group (setsid): only what this script started.
cleanup_extra() { if [[ -n "$BROWSER" ]]; then kill -KILL -- "-$BROWSER" 2>/dev/null || true; fi; }
bench_setup rum-beacon

# Sizes.
JS="$REPO_ROOT/rum-beacon/beacon.js"
raw=$(wc -c <"$JS")
raw_gz=$(gzip -9 -c "$JS" | wc -c)
min=- min_gz=- terser_version=-
if [[ "$MINIFY" == 1 ]]; then
  (cd "$WORK" && timeout 300 npx --yes "$TERSER" "$JS" -c -m --comments '/^!/' -o "$WORK/beacon.min.js") ||
    die "npx $TERSER failed (set MINIFY=0 to skip minifying)"
  min=$(wc -c <"$WORK/beacon.min.js")
  min_gz=$(gzip -9 -c "$WORK/beacon.min.js" | wc -c)
  terser_version=$(cd "$WORK" && npx --yes "$TERSER" --version)
fi

# Server: targets are steerdns's own init endpoint.
write_config "$WORK"
read -r HTTP_PORT DNS_PORT PAGE_PORT <<<"$(free_ports 3)"
sed -i -e "s#https://\(cdn-[abc]\)\.example\.net/rum/test\.gif#http://$LOOPBACK:$HTTP_PORT/rum/v1/init?\1#" \
  "$WORK/steerdns.toml"
"$STEERDNS_BIN" serve -c "$WORK/steerdns.toml" --dns-listen "$LOOPBACK:$DNS_PORT" \
  --http-listen "$LOOPBACK:$HTTP_PORT" >"$WORK/steerdns.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_http "http://$LOOPBACK:$HTTP_PORT/readyz" "$SERVER_PID" "$WORK/steerdns.log"
served=$(curl -fsS "http://$LOOPBACK:$HTTP_PORT/rum/v1/beacon.js" | wc -c)
served_gz=$(curl -fsS -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' \
  "http://$LOOPBACK:$HTTP_PORT/rum/v1/beacon.js")

# The test page, from its own origin.
python3 -m http.server "$PAGE_PORT" --bind "$LOOPBACK" --directory "$REPO_ROOT/rum-beacon/test" \
  >"$WORK/page.log" 2>&1 &
PIDS+=("$!")
wait_http "http://$LOOPBACK:$PAGE_PORT/index.html" "$!" "$WORK/page.log"
URL="http://$LOOPBACK:$PAGE_PORT/index.html?beacon=http://$LOOPBACK:$HTTP_PORT/rum/v1/beacon.js&delay=$DELAY_MS"

for ((i = 1; i <= LOADS; i++)); do
  before=$(metric "$HTTP_PORT" steerdns_rum_beacons_accepted_total)
  trace="$WORK/trace-$i.json"
  setsid "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-dev-shm-usage --no-first-run --no-default-browser-check \
    --host-resolver-rules="MAP *.rum.example.com $LOOPBACK" --user-data-dir="$WORK/profile-$i" \
    --trace-startup=devtools.timeline,v8,v8.execute,disabled-by-default-devtools.timeline,toplevel \
    --trace-startup-file="$trace" --trace-startup-format=json --trace-startup-duration="$TRACE_SECONDS" \
    "$URL" </dev/null >"$WORK/chromium-$i.log" 2>&1 &
  BROWSER=$!
  ok=
  for _ in $(seq $((TRACE_SECONDS * 10 + 200))); do
    if [[ -s "$trace" ]] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$trace" 2>/dev/null; then
      ok=1
      break
    fi
    sleep 0.1
  done
  kill -KILL -- "-$BROWSER" 2>/dev/null || true
  wait "$BROWSER" 2>/dev/null || true
  BROWSER=
  [[ -n "$ok" ]] || die "no complete trace from Chromium after load $i (log: $WORK/chromium-$i.log)"
  after=$(metric "$HTTP_PORT" steerdns_rum_beacons_accepted_total)
  ((after == before + 1)) || die "load $i: the beacon did not arrive within the trace ($before -> $after accepted)"
  python3 "$REPO_ROOT/bench/rum/beacon_trace.py" "$trace" >"$WORK/cost-$i.json"
  log "load $i: $(cat "$WORK/cost-$i.json")"
done

python3 - "$WORK" "$LOADS" "$raw" "$raw_gz" "$min" "$min_gz" "$served" "$served_gz" "$terser_version" <<'PY'
import json, statistics, sys
work, loads, raw, raw_gz, mn, mn_gz, served, served_gz, terser = sys.argv[1:]
runs = [json.load(open(f"{work}/cost-{i}.json")) for i in range(1, int(loads) + 1)]
print("| beacon.js | bytes |\n|---|---:|")
print(f"| raw | {int(raw):,} |\n| raw, gzip -9 | {int(raw_gz):,} |")
if mn != "-":
    print(f"| minified ({terser}, -c -m) | {int(mn):,} |\n| minified, gzip -9 | {int(mn_gz):,} |")
print(f"| served by steerdns (Accept-Encoding: gzip) | {int(served_gz):,} of {int(served):,} |")
ms = [r["beacon_main_thread_ms"] for r in runs]
print(f"\nMain thread, {loads} page loads: beacon.js median {statistics.median(ms):.2f} ms "
      f"(min {min(ms):.2f}, max {max(ms):.2f}); longest single task median "
      f"{statistics.median(r['longest_ms'] for r in runs):.2f} ms; renderer main thread busy "
      f"(all tasks, whole trace) median {statistics.median(r['main_thread_busy_ms'] for r in runs):.1f} ms.")
names = sorted({k for r in runs for k in r["by_event_ms"]})
print("By event (median ms): " + ", ".join(
    f"{k} {statistics.median(r['by_event_ms'].get(k, 0) for r in runs):.2f}" for k in names))
PY
log "raw outputs in $WORK"
