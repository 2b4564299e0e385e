#!/usr/bin/env bash
# TCP connection caps: 3,000 idle connections against the demo (defaults: 1,024 in all, 64 per
# client /24), first from one address, then spread over 40 /24s of 127.0.0.0/8. Counts the
# connections that stay open and those closed at once, the server's
# steerdns_tcp_refused_total{cap}, its RSS, and whether a query over TCP from yet another
# network is answered while the caps are full. Loopback only; closes everything at the end.
# See bench/README.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=tcp-caps
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"
# shellcheck source=../rum/common.sh
source "$REPO_ROOT/bench/rum/common.sh"
# shellcheck source=common.sh
source "$REPO_ROOT/bench/rrl/common.sh"
CONNECTIONS=${CONNECTIONS:-3000}
READY_TRIES=${READY_TRIES:-100}
LOOPBACK=127.0.0.1

require_common_tools
require_tool dig bind9-dnsutils
bench_setup tcp-caps
build_steerdns
write_demo_config "$WORK/s"
start_steerdns "$WORK/s" ""
ulimit -n 8192 2>/dev/null || true

python3 - "$DNS_PORT" "$CONNECTIONS" "$SERVER_PID" "$HTTP_PORT" <<'PY'
import socket, subprocess, sys, time, urllib.request
port, total, pid, http = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def refused():
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
    return {l.split("{")[1].split("}")[0]: int(l.split()[-1]) for l in text.splitlines()
            if l.startswith("steerdns_tcp_refused_total{")}

def flood(sources):
    socks = []
    for i in range(total):
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    time.sleep(1.5)  # the server accepts, counts, and closes what is over a cap
    open_, closed = 0, 0
    for s in socks:
        try:
            data = s.recv(1)
            closed += data == b""
            open_ += data != b""
        except BlockingIOError:
            open_ += 1
        except OSError:
            closed += 1
    return socks, open_, closed

print("| sources | connections | held open | closed at once | refused (server, by cap) | RSS MiB | TCP query from another /24 meanwhile |")
print("|---|---:|---:|---:|---|---:|---|")
for label, sources in (("one address", ["127.0.0.1"]),
                       ("40 /24s", [f"127.0.{i}.1" for i in range(1, 41)])):
    before = refused()
    socks, open_, closed = flood(sources)
    after = refused()
    dig = subprocess.run(["dig", "-b", "127.0.200.1", "@127.0.0.1", "-p", str(port), "+tcp",
                          "+tries=1", "+time=2", "www.example.com", "A"],
                         capture_output=True, text=True).stdout
    ok = "yes" if "status: NOERROR" in dig else "no"
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    print(f"| {label} | {total:,} | {open_:,} | {closed:,} | {delta} | {rss():.1f} | {ok} |")
    for s in socks:
        s.close()
    time.sleep(1)
PY
