#!/usr/bin/env python3
"""Control-plane benchmark driver. Run through bench/rebuild/run.sh (which finds the GeoIP
database and the binary, and bounds the whole run). Everything listens on loopback. Every
process started here is recorded in PIDFILE and stopped at the end; run.sh's trap kills
whatever is left, by PID.

1. Generates a config in WORK: zone example.com, the real City database, and NAMES policy
   files in four shapes (all start with `up`):
     0. geo by continent and country, then weighted, over three CDNs (CNAME);
     1. geo by continent and country over five PoPs (A/AAAA), two records per answer;
     2. geo, then weighted, over a per-name origin and two CDNs;
     3. geo, then failover: the per-name origin first, then the nearest PoP.
   n0000 (the edit target) and n0001 (the one-name health target) are special cases of shapes
   0 and 3 whose answer does not depend on where the client is.
2. `steerdns check` wall time and max RSS; the bundled demo's RSS; `steerdns serve` start to
   /readyz, the compile times the server logs, RSS.
3. TRIALS policy edits over the admin API (PUT with If-Match) of n0000 that move every region
   between cdn-b and cdn-c, and TRIALS health flips of a target with an operator override
   (PUT /api/v1/health/{target} down, then DELETE): for each, the time from sending the
   request and from its response to the first DNS answer (ECS client ECS_CLIENT) that shows
   the change. A poller thread queries over UDP in a tight loop from just before the request.
4. With SOAK=1: dnsperf with ECS against all names for SOAK_SECONDS at SOAK_QPS, an edit every
   SOAK_EDIT_EVERY_S, and VmRSS every 10 s.
"""

import http.client
import json
import os
import platform
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

BIN = os.environ["STEERDNS_BIN"]
WORK = os.environ["WORK"]
PIDFILE = os.environ["PIDFILE"]
GEOIP_DB = os.path.abspath(os.environ["GEOIP_DB"])
NAMES = int(os.environ.get("NAMES", "1000"))
TRIALS = int(os.environ.get("TRIALS", "20"))
SOAK = os.environ.get("SOAK", "0") == "1"
SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "300"))
SOAK_QPS = int(os.environ.get("SOAK_QPS", "20000"))
SOAK_EDIT_EVERY_S = int(os.environ.get("SOAK_EDIT_EVERY_S", "30"))
# A client subnet in North America in GeoLite2 (the edited policies answer the same everywhere,
# so this only matters for the shapes' realism, not for the measurement).
ECS_CLIENT = os.environ.get("ECS_CLIENT", "8.8.8.0/24")
CHANGE_LIMIT_S = 10.0
READY_LIMIT_S = 120.0

TOKEN = "bench-rebuild-" + os.urandom(12).hex()
children = {}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def record_pids():
    with open(PIDFILE, "w") as f:
        for p in children.values():
            if p.poll() is None:
                f.write(f"{p.pid}\n")


def spawn(name, argv, env=None):
    logf = open(os.path.join(WORK, f"{name}.log"), "ab")
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    children[name] = p
    record_pids()
    return p


def stop(name):
    p = children.pop(name, None)
    if p is None:
        return
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    record_pids()


def stop_all(*_):
    for name in list(children):
        stop(name)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, key):
    """A /proc/PID/status field in MiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# The generated configuration.

CONTINENT_POP = {"NA": "pop-iad", "SA": "pop-gru", "EU": "pop-fra", "AF": "pop-fra",
                 "AS": "pop-sin", "OC": "pop-syd"}
POPS = {
    "pop-iad": ("192.0.2.1", "2001:db8::1"),
    "pop-gru": ("192.0.2.4", "2001:db8::4"),
    "pop-fra": ("192.0.2.2", "2001:db8::2"),
    "pop-sin": ("192.0.2.3", "2001:db8::3"),
    "pop-syd": ("192.0.2.5", "2001:db8::5"),
}
CDNS = {"cdn-a": "a.cdn-a.example.net.", "cdn-b": "b.cdn-b.example.net.",
        "cdn-c": "c.cdn-c.example.net."}


def origin_ip(i):
    return f"198.18.{i // 250}.{i % 250 + 1}"


def cdn_targets(extra=""):
    return "".join(f'[targets.{t}]\ncname = "{c}"\n{extra if t == "cdn-b" else ""}'
                   for t, c in CDNS.items())


def pop_targets():
    return "".join(f'[targets.{p}]\na = ["{a}"]\naaaa = ["{aaaa}"]\n' for p, (a, aaaa) in POPS.items())


def policy(i):
    name = f"n{i:04d}.example.com"
    head = f'name = "{name}"\nttl_s = 30\nlast_resort = "all"\n'
    if i == 0:
        return edit_policy(0)
    if i == 1 or i % 4 == 3:
        # The per-name origin first, then the nearest PoP.
        rules = ",\n".join(
            f'  {{ match = {{ continent = "{k}" }}, targets = ["origin-{i:04d}", "{p}"] }}'
            for k, p in CONTINENT_POP.items())
        return (head + f'\n[targets.origin-{i:04d}]\na = ["{origin_ip(i)}"]\n' + pop_targets()
                + '\n[[chain]]\nkind = "up"\n\n[[chain]]\nkind = "geo"\n'
                + f'default = ["origin-{i:04d}", "pop-iad"]\nrules = [\n{rules},\n]\n'
                + '\n[[chain]]\nkind = "failover"\n')
    if i % 4 == 0:
        return (head + "\n" + cdn_targets("max_share = 0.6\n")
                + '\n[[chain]]\nkind = "up"\n\n[[chain]]\nkind = "geo"\n'
                + 'default = ["cdn-a", "cdn-b"]\nrules = [\n'
                + '  { match = { continent = "EU" }, targets = ["cdn-c", "cdn-a"] },\n'
                + '  { match = { country = ["GB", "IE"] }, targets = ["cdn-c", "cdn-b"] },\n'
                + '  { match = { continent = ["NA", "SA"] }, targets = ["cdn-b", "cdn-a"] },\n'
                + '  { match = { country = ["JP", "KR", "CN"] }, targets = ["cdn-a", "cdn-c"] },\n'
                + ']\n\n[[chain]]\nkind = "weighted"\n'
                + 'weights = { cdn-a = 50, cdn-b = 30, cdn-c = 20 }\n')
    if i % 4 == 1:
        rules = ",\n".join(
            f'  {{ match = {{ continent = "{k}" }}, targets = ["{p}", '
            f'"{"pop-iad" if p == "pop-fra" else "pop-fra"}"] }}'
            for k, p in CONTINENT_POP.items())
        return (head + "answers = 2\n\n" + pop_targets()
                + '\n[[chain]]\nkind = "up"\n\n[[chain]]\nkind = "geo"\n'
                + 'default = ["pop-iad", "pop-fra"]\nrules = [\n' + rules + ',\n'
                + '  { match = { country = ["GB", "IE"] }, targets = ["pop-fra", "pop-iad"] },\n'
                + '  { match = { country = ["MX", "CA"] }, targets = ["pop-iad", "pop-gru"] },\n'
                + ']\n')
    # i % 4 == 2: a per-name origin next to two CDNs.
    return (head + f'\n[targets.origin-{i:04d}]\na = ["{origin_ip(i)}"]\n' + cdn_targets()
            + '\n[[chain]]\nkind = "up"\n\n[[chain]]\nkind = "geo"\n'
            + f'default = ["cdn-a", "cdn-b", "origin-{i:04d}"]\nrules = [\n'
            + f'  {{ match = {{ continent = "EU" }}, targets = ["origin-{i:04d}", "cdn-a"] }},\n'
            + '  { match = { country = "US" }, targets = ["cdn-b", "cdn-a"] },\n'
            + ']\n\n[[chain]]\nkind = "weighted"\n'
            + f'weights = {{ origin-{i:04d} = 60, cdn-a = 30, cdn-b = 10 }}\n')


def edit_policy(variant):
    """n0000: every region to cdn-b first (even variants) or cdn-c first (odd), cdn-a second."""
    first = "cdn-b" if variant % 2 == 0 else "cdn-c"
    rules = ",\n".join(
        f'  {{ match = {{ continent = "{k}" }}, targets = ["{first}", "cdn-a"] }}'
        for k in ["NA", "SA", "EU", "AF", "AS", "OC", "AN"])
    return ('name = "n0000.example.com"\nttl_s = 30\nlast_resort = "all"\n'
            f"# edit {variant}\n\n" + cdn_targets()
            + '\n[[chain]]\nkind = "up"\n\n[[chain]]\nkind = "geo"\n'
            + f'default = ["{first}", "cdn-a"]\nrules = [\n{rules},\n]\n')


def write_config(dns_port, http_port, admin_port):
    pdir = os.path.join(WORK, "policies")
    os.makedirs(pdir, exist_ok=True)
    for i in range(NAMES):
        with open(os.path.join(pdir, f"n{i:04d}.example.com.toml"), "w") as f:
            f.write(policy(i))
    with open(os.path.join(WORK, "example.com.zone"), "w") as f:
        f.write("$ORIGIN example.com.\n$TTL 3600\n"
                "@ IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 604800 30\n"
                "@ IN NS ns1.example.com.\nns1 IN A 127.0.0.1\n")
    path = os.path.join(WORK, "steerdns.toml")
    with open(path, "w") as f:
        f.write(f'[dns]\nlisten = ["127.0.0.1:{dns_port}"]\n\n'
                f'[http]\nlisten = "127.0.0.1:{http_port}"\n\n'
                f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n\n'
                f'[geoip]\ncity = "{GEOIP_DB}"\n\n'
                '[[zone]]\norigin = "example.com"\nfile = "example.com.zone"\n\n'
                '[policies]\ndir = "policies"\n')
    return path


# ---------------------------------------------------------------------------------------------
# DNS over UDP with ECS.

def ecs_option(subnet):
    addr, plen = subnet.split("/")
    plen = int(plen)
    if ":" in addr:
        family, raw = 2, socket.inet_pton(socket.AF_INET6, addr)
    else:
        family, raw = 1, socket.inet_pton(socket.AF_INET, addr)
    raw = raw[: (plen + 7) // 8]
    return struct.pack("!HBB", family, plen, 0) + raw


def query(name, qtype=1, ecs=ECS_CLIENT, qid=0x1234):
    q = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack("!HH", qtype, 1)
    opt = ecs_option(ecs)
    rdata = struct.pack("!HH", 8, len(opt)) + opt
    q += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(rdata)) + rdata
    return q


def read_name(msg, off):
    labels, jumped, end = [], False, off
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off, jumped = ((n & 0x3F) << 8) | msg[off + 1], True
            continue
        if n == 0:
            return ".".join(labels) + ".", (end if jumped else off + 1)
        labels.append(msg[off + 1: off + 1 + n].decode())
        off += 1 + n
    raise ValueError("name loop")


def answers(msg):
    """The answer section as a sorted tuple of strings (CNAME targets, addresses)."""
    qd, an = struct.unpack("!HH", msg[4:8])
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    out = []
    for _ in range(an):
        _, off = read_name(msg, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[off: off + 10])
        off += 10
        if rtype == 5:
            out.append(read_name(msg, off)[0])
        elif rtype == 1:
            out.append(socket.inet_ntop(socket.AF_INET, msg[off: off + 4]))
        elif rtype == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, msg[off: off + 16]))
        off += rdlen
    return tuple(sorted(out))


class Resolver:
    def __init__(self, port):
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.5)
        self.qid = 0

    def ask(self, name, qtype=1):
        self.qid = (self.qid + 1) & 0xFFFF
        self.sock.sendto(query(name, qtype, qid=self.qid), self.addr)
        while True:
            msg = self.sock.recv(4096)
            if struct.unpack("!H", msg[:2])[0] == self.qid:
                return answers(msg)


class Watch(threading.Thread):
    """Polls `name` in a tight loop until `done(answer)`; records when (perf_counter)."""

    def __init__(self, port, name, done):
        super().__init__(daemon=True)
        self.resolver, self.name, self.done = Resolver(port), name, done
        self.at, self.polls, self.started = None, 0, threading.Event()

    def run(self):
        deadline = time.perf_counter() + CHANGE_LIMIT_S
        self.started.set()
        while time.perf_counter() < deadline:
            try:
                a = self.resolver.ask(self.name)
            except socket.timeout:
                continue
            self.polls += 1
            if self.done(a):
                self.at = time.perf_counter()
                return


# ---------------------------------------------------------------------------------------------
# The admin API.

class Admin:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def call(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, r.getheader("ETag"), data


def wait_ready(port, proc, limit=READY_LIMIT_S):
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"steerdns exited with {proc.returncode} before it was ready")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("steerdns was not ready in time")


def pct(values, p):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))]


def summary(values):
    return {"p50": pct(values, 50), "p95": pct(values, 95), "max": max(values),
            "min": min(values), "n": len(values)}


def measure_change(admin, dns_port, name, done, method, path, body=None, headers=None):
    """(ms from send, ms from response, response) for one accepted change."""
    watch = Watch(dns_port, name, done)
    watch.start()
    watch.started.wait()
    t_send = time.perf_counter()
    status, etag, data = admin.call(method, path, body, headers)
    t_resp = time.perf_counter()
    watch.join(CHANGE_LIMIT_S + 1)
    if status >= 300:
        raise SystemExit(f"{method} {path}: HTTP {status}: {data[:300]!r}")
    if watch.at is None:
        raise SystemExit(f"{method} {path}: the DNS answer did not change within {CHANGE_LIMIT_S}s")
    return (watch.at - t_send) * 1000, (watch.at - t_resp) * 1000, etag, data, watch.polls


def server_log_lines(pattern):
    with open(os.path.join(WORK, "server.log"), errors="replace") as f:
        return [line for line in f if re.search(pattern, line)]


def log_ms(line, key):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(rf"\b{key}=([0-9.]+)", line)
    return float(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------

def main():
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(143)))
    result = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
              "names": NAMES, "geoip_db_mb": round(os.path.getsize(GEOIP_DB) / 2**20, 1)}
    dns_port, http_port, admin_port = free_port(), free_port(), free_port()
    config = write_config(dns_port, http_port, admin_port)
    log(f"{NAMES} policy files written; GeoIP database {GEOIP_DB}")

    # `steerdns check`: wall time and max RSS (wait4 gives this child's own rusage).
    checks = []
    for _ in range(3):
        la = loadavg()
        t0 = time.perf_counter()
        p = subprocess.Popen([BIN, "check", config], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "NO_COLOR": "1"})
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        out = p.stdout.read().decode()
        err = p.stderr.read().decode()
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise SystemExit(f"steerdns check failed:\n{out}{err}")
        checks.append({"wall_s": wall, "max_rss_mb": ru.ru_maxrss / 1024, "load": la,
                       "log": [line for line in err.splitlines() if "_ms=" in line]})
    log(f"check: {out.strip()}")
    result["check"] = checks

    # The bundled demo (no config): RSS once ready. Its admin API listens on the fixed demo
    # port, so this fails if something else holds that port; it is then reported as skipped.
    demo_dns, demo_http = free_port(), free_port()
    t0 = time.perf_counter()
    demo = spawn("demo", [BIN, "serve", "--dns-listen", f"127.0.0.1:{demo_dns}",
                          "--http-listen", f"127.0.0.1:{demo_http}"])
    try:
        t_ready = wait_ready(demo_http, demo, 30)
        time.sleep(1.0)
        result["demo"] = {"ready_ms": (t_ready - t0) * 1000,
                          "rss_mb": proc_status(demo.pid, "VmRSS"),
                          "hwm_mb": proc_status(demo.pid, "VmHWM"), "load": loadavg()}
    except SystemExit as e:
        result["demo"] = {"skipped": str(e)}
    stop("demo")
    log(f"demo: {result['demo']}")

    # The server with the real database and NAMES names.
    la = loadavg()
    t0 = time.perf_counter()
    server = spawn("server", [BIN, "serve", "--config", config],
                   env={"STEERDNS_ADMIN_TOKEN": TOKEN, "RUST_LOG": "info,hickory_server=warn",
                        "NO_COLOR": "1"})
    t_ready = wait_ready(http_port, server)
    time.sleep(1.0)
    r = Resolver(dns_port)
    base = r.ask("n0000.example.com")
    if base != (CDNS["cdn-b"],):
        raise SystemExit(f"n0000 answers {base}, expected cdn-b")
    # CPU the server uses while nothing happens (no queries, no edits): should be about 0.
    cpu0, t_idle = cpu_seconds(server.pid), time.perf_counter()
    time.sleep(5)
    idle_cpu = (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t_idle)
    result["startup"] = {
        "idle_cpu_share": idle_cpu,
        "ready_ms": (t_ready - t0) * 1000, "load": la,
        "rss_mb": proc_status(server.pid, "VmRSS"), "hwm_mb": proc_status(server.pid, "VmHWM"),
        "log": [line.strip() for line in server_log_lines(r"_ms=")],
    }
    log(f"server ready in {result['startup']['ready_ms']:.0f} ms, "
        f"RSS {result['startup']['rss_mb']:.0f} MiB")

    admin = Admin(admin_port)
    cdn = lambda t: (lambda a: a == (CDNS[t],))  # noqa: E731

    # Policy edits.
    status, etag, data = admin.call("GET", "/api/v1/policies/n0000.example.com")
    if status != 200:
        raise SystemExit(f"GET policy: HTTP {status}")
    edits = []
    la = loadavg()
    for k in range(1, 2 * (TRIALS // 2) + 1):
        want = "cdn-b" if k % 2 == 0 else "cdn-c"
        from_send, from_resp, etag, data, polls = measure_change(
            admin, dns_port, "n0000.example.com", cdn(want), "PUT",
            "/api/v1/policies/n0000.example.com", edit_policy(k).encode(),
            {"If-Match": etag, "Content-Type": "application/toml"})
        edits.append({"from_send_ms": from_send, "from_response_ms": from_resp, "polls": polls})
        time.sleep(0.3)
    result["edit"] = {"load": la, "trials": edits}
    log(f"edits: p50 from send {pct([e['from_send_ms'] for e in edits], 50):.1f} ms")

    # Health flips: one name's own target, and a CDN that many names share.
    def flips(target, name, down_done, up_done):
        trials = []
        for _ in range(TRIALS):
            for direction, method, body, done in (
                    ("down", "PUT", b'{"state":"down"}', down_done),
                    ("cleared", "DELETE", None, up_done)):
                from_send, from_resp, _, _, polls = measure_change(
                    admin, dns_port, name, done, method, f"/api/v1/health/{target}", body,
                    {"Content-Type": "application/json"} if body else None)
                trials.append({"direction": direction, "from_send_ms": from_send,
                               "from_response_ms": from_resp, "polls": polls})
                time.sleep(0.2)
        return trials

    users = {"origin-0001": 1, "cdn-b": sum(1 for i in range(NAMES) if "cdn-b" in policy(i))}
    result["health"] = {}
    for target, name, down, up in (
            ("origin-0001", "n0001.example.com",
             lambda a: origin_ip(1) not in a, lambda a: a == (origin_ip(1),)),
            ("cdn-b", "n0000.example.com", cdn("cdn-a"), cdn("cdn-b"))):
        la = loadavg()
        base = r.ask(name)
        if not up(base):
            raise SystemExit(f"{name} answers {base} before flipping {target}")
        result["health"][target] = {"names": users[target], "load": la,
                                    "trials": flips(target, name, down, up)}
        log(f"health {target}: done")
    result["rebuild_log"] = [line.strip() for line in server_log_lines(r"recompiled|policy replaced")]
    result["after"] = {"rss_mb": proc_status(server.pid, "VmRSS"),
                       "hwm_mb": proc_status(server.pid, "VmHWM")}

    if SOAK:
        result["soak"] = soak(server, admin, dns_port, etag)

    stop_all()
    with open(os.path.join(WORK, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    report(result)


def soak(server, admin, dns_port, etag):
    qfile = os.path.join(WORK, "queries.txt")
    with open(qfile, "w") as f:
        for i in range(NAMES):
            f.write(f"n{i:04d}.example.com A\n")
    ecs = ecs_option("81.2.69.0/24")  # GB in GeoLite2: several rules apply
    log(f"soak: dnsperf {SOAK_SECONDS}s at {SOAK_QPS} qps, RSS every 10 s")
    la = loadavg()
    perf = spawn("dnsperf", ["dnsperf", "-s", "127.0.0.1", "-p", str(dns_port), "-d", qfile,
                             "-l", str(SOAK_SECONDS), "-Q", str(SOAK_QPS), "-c", "4", "-T", "1",
                             "-t", "2", "-E", f"8:{ecs.hex()}", "-S", "60"])
    samples, edits = [], 0
    start = time.perf_counter()
    next_edit = SOAK_EDIT_EVERY_S
    k = 1000
    while perf.poll() is None and time.perf_counter() - start < SOAK_SECONDS + 30:
        elapsed = time.perf_counter() - start
        samples.append({"t_s": round(elapsed), "rss_mb": proc_status(server.pid, "VmRSS"),
                        "load": loadavg()})
        if elapsed >= next_edit:
            k += 1
            status, etag, data = admin.call(
                "PUT", "/api/v1/policies/n0000.example.com", edit_policy(k).encode(),
                {"If-Match": etag, "Content-Type": "application/toml"})
            admin.call("PUT", "/api/v1/health/origin-0001", b'{"state":"down"}',
                       {"Content-Type": "application/json"})
            admin.call("DELETE", "/api/v1/health/origin-0001")
            edits += 1 if status == 200 else 0
            next_edit += SOAK_EDIT_EVERY_S
        time.sleep(10 - (time.perf_counter() - start) % 10)
    try:
        perf.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    samples.append({"t_s": round(time.perf_counter() - start),
                    "rss_mb": proc_status(server.pid, "VmRSS"), "load": loadavg()})
    with open(os.path.join(WORK, "dnsperf.log"), errors="replace") as f:
        out = f.read()
    stats = {k: m.group(1) for k, rx in (
        ("sent", r"Queries sent:\s+(\d+)"), ("completed", r"Queries completed:\s+(\d+)"),
        ("lost", r"Queries lost:\s+(\d+)"), ("qps", r"Queries per second:\s+([0-9.]+)"),
        ("noerror", r"NOERROR (\d+)")) if (m := re.search(rx, out))}
    return {"load_start": la, "samples": samples, "edits": edits, "dnsperf": stats}


def report(res):
    out = []
    out.append(f"## control plane: {res['names']} steered names, real GeoLite2-City "
               f"({res['geoip_db_mb']} MB)\n")
    out.append(f"Machine: {res['machine']['cpus']} CPUs, Linux {res['machine']['kernel']}; "
               "everything on one shared machine, so timings are noisy. Load = 1-minute load "
               "average before each part.\n")
    for i, c in enumerate(res["check"]):
        out.append(f"- `steerdns check` #{i + 1}: {c['wall_s']:.2f} s wall, max RSS "
                   f"{c['max_rss_mb']:.0f} MiB (load {c['load']})")
        for line in c["log"]:
            out.append(f"    - {strip_log(line)}")
    s = res["startup"]
    out.append(f"- `steerdns serve`: start to /readyz {s['ready_ms']:.0f} ms (load {s['load']}); "
               f"RSS {s['rss_mb']:.0f} MiB, peak {s['hwm_mb']:.0f} MiB; CPU while idle "
               f"{s['idle_cpu_share'] * 100:.1f}% of a core")
    for line in s["log"]:
        out.append(f"    - {strip_log(line)}")
    d = res["demo"]
    if "skipped" in d:
        out.append(f"- bundled demo: skipped ({d['skipped']})")
    else:
        out.append(f"- bundled demo (`serve`, no config): ready {d['ready_ms']:.0f} ms, RSS "
                   f"{d['rss_mb']:.1f} MiB, peak {d['hwm_mb']:.1f} MiB (load {d['load']})")
    a = res["after"]
    out.append(f"- server RSS after the edits and flips: {a['rss_mb']:.0f} MiB, peak "
               f"{a['hwm_mb']:.0f} MiB\n")
    out.append("| change (accepted → visible in DNS) | n | from response p50 / p95 / max | "
               "from send p50 / p95 / max | load |")
    out.append("|---|---:|---:|---:|---:|")

    def row(label, trials, load):
        r = summary([t["from_response_ms"] for t in trials])
        q = summary([t["from_send_ms"] for t in trials])
        out.append(f"| {label} | {r['n']} | {r['p50']:.1f} / {r['p95']:.1f} / {r['max']:.1f} ms "
                   f"| {q['p50']:.1f} / {q['p95']:.1f} / {q['max']:.1f} ms | {load} |")

    row("policy edit (PUT, If-Match)", res["edit"]["trials"], res["edit"]["load"])
    for target, h in res["health"].items():
        for direction in ("down", "cleared"):
            row(f"health override {target} {direction} ({h['names']} names use it)",
                [t for t in h["trials"] if t["direction"] == direction], h["load"])
    out.append("\nNegative \"from response\" times mean the new answer was served before the "
               "client had read the response (the snapshot is published before it is sent).\n")
    times = {}
    for line in res["rebuild_log"]:
        n = log_ms(line, "recompiled")
        kind = ("policy edit" if "policy replaced" in line
                else f"recompile of {n:.0f} name(s) after a health change")
        for key in ("compile_ms", "publish_ms", "total_ms"):
            v = log_ms(line, key)
            if v is not None:
                times.setdefault((kind, key), []).append(v)
    if times:
        out.append("Server-side rebuild times from its log:\n")
        for (kind, key), vals in sorted(times.items()):
            sm = summary(vals)
            out.append(f"- {kind} {key}: p50 {sm['p50']:.1f}, p95 {sm['p95']:.1f}, max "
                       f"{sm['max']:.1f} (n {sm['n']})")
        out.append("")
    if "soak" in res:
        sk = res["soak"]
        rss = [x["rss_mb"] for x in sk["samples"]]
        out.append(f"Soak: dnsperf for {SOAK_SECONDS} s at up to {SOAK_QPS} qps with ECS over all "
                   f"names, {sk['edits']} policy edits and health flips during it (load at start "
                   f"{sk['load_start']}); dnsperf: {sk['dnsperf']}.\n")
        out.append("RSS (MiB) every 10 s: " + ", ".join(f"{x:.0f}" for x in rss))
        warm = rss[len(rss) // 4:] if len(rss) >= 8 else rss
        out.append(f"\nAfter the first quarter: min {min(warm):.1f}, max {max(warm):.1f}, "
                   f"first {warm[0]:.1f}, last {warm[-1]:.1f} MiB "
                   f"(growth {warm[-1] - warm[0]:+.1f} MiB).\n")
    text = "\n".join(out)
    with open(os.path.join(WORK, "result.md"), "w") as f:
        f.write(text + "\n")
    print(text)


def strip_log(line):
    # Drop the timestamp and level of a tracing line.
    return re.sub(r"^\S+\s+INFO\s+", "", re.sub(r"\x1b\[[0-9;]*m", "", line)).strip()


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
