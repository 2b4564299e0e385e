#!/usr/bin/env python3
"""Failover benchmark driver: how long from "endpoint killed" to "DNS answers exclude it".

Run through bench/failover/run.sh, which builds steerdns and bounds the total time. Everything
listens on loopback only. Every process started here is recorded in PIDFILE and stopped at the
end (also on SIGINT/SIGTERM); run.sh's trap kills whatever is left in PIDFILE.

Setup: two PoP endpoints (endpoint.py) on 127.0.0.11 and 127.0.0.12; `steerdns serve` with a
failover.example.com-style policy (pop-first, then pop-second; two records per answer); three
`steerdns probe` agents (fra, iad, sin) with a 1 s HTTP check per PoP, reporting to the admin
API. Default health thresholds (2 consecutive failures, majority quorum = 2 of 3), except
hold_down_ms, which is lowered so that a trial does not wait 30 s for the fail-back.

Each trial: wait until pop-first is answered and all three agents say it is up; wait a random
0..interval so the kill falls at a uniformly random probe phase; t0 = just before SIGKILL of
pop-first's endpoint; poll DNS over UDP every POLL_MS until 127.0.0.11 is not in the answer:
t1. Then restart the endpoint (t_restore = when it accepts connections again) and poll until
127.0.0.11 is answered again: t_back.
"""

import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

BIN = os.environ["STEERDNS_BIN"]
WORK = os.environ["WORK"]
PIDFILE = os.environ["PIDFILE"]
TRIALS = int(os.environ.get("TRIALS", "20"))
HOLD_DOWN_MS = int(os.environ.get("HOLD_DOWN_MS", "5000"))
INTERVAL_MS = int(os.environ.get("PROBE_INTERVAL_MS", "1000"))
TIMEOUT_MS = int(os.environ.get("PROBE_TIMEOUT_MS", "800"))
POLL_MS = float(os.environ.get("POLL_MS", "10"))
SEED = int(os.environ.get("SEED", "1"))
MIN_SAMPLES = int(os.environ.get("MIN_SAMPLES", "100"))
# Bounds of each wait inside a trial.
FAILOVER_LIMIT_S = 30.0
READY_LIMIT_S = 30.0 + HOLD_DOWN_MS / 1000
FAILBACK_LIMIT_S = 30.0 + HOLD_DOWN_MS / 1000

NAME = "failover.example.com"
FIRST_IP, SECOND_IP = "127.0.0.11", "127.0.0.12"
AGENTS = ["fra", "iad", "sin"]
TOKEN = "bench-failover-" + os.urandom(12).hex()

children = {}  # name -> Popen


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


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
    logf.close()
    children[name] = p
    record_pids()
    return p


def stop(name, sig=signal.SIGTERM):
    p = children.pop(name, None)
    if p is None:
        return
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    record_pids()


def stop_all():
    for name in list(children):
        stop(name)


def on_signal(signum, _frame):
    raise SystemExit(f"stopped by signal {signum}")


def free_port(address):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port = s.getsockname()[1]
    # The DNS port must be free for UDP as well.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((address, port))
    return port


# ---------------------------------------------------------------------------------------------
# DNS over UDP, by hand (fast enough to poll every 10 ms)


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def skip_name(msg, at):
    while True:
        n = msg[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:
            return at + 2
        at += 1 + n


class Dns:
    def __init__(self, server):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(server)
        self.qid = random.Random(SEED).randrange(65536)
        self.question = encode_name(NAME) + struct.pack(">HH", 1, 1)

    def a_records(self, wait=0.25):
        """The A records answered for NAME, in order; None if no reply within `wait`."""
        self.qid = (self.qid + 1) & 0xFFFF
        self.sock.send(struct.pack(">HHHHHH", self.qid, 0, 1, 0, 0, 0) + self.question)
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(4096)
            except (socket.timeout, ConnectionRefusedError):
                return None
            qid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
            if qid != self.qid:
                continue  # a late reply to an earlier query
            if flags & 0xF != 0:
                raise RuntimeError(f"rcode {flags & 0xF} for {NAME}")
            at = 12
            for _ in range(qd):
                at = skip_name(msg, at) + 4
            out = []
            for _ in range(an):
                at = skip_name(msg, at)
                rtype, _, _, rdlen = struct.unpack(">HHIH", msg[at : at + 10])
                at += 10
                if rtype == 1 and rdlen == 4:
                    out.append(socket.inet_ntoa(msg[at : at + 4]))
                at += rdlen
            return out


# ---------------------------------------------------------------------------------------------
# The admin API


class Admin:
    def __init__(self, base):
        self.base = base
        # No proxy from the environment: loopback only.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def health(self):
        req = urllib.request.Request(
            self.base + "/api/v1/health",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with self.opener.open(req, timeout=5) as r:
            return json.load(r)

    def all_agents_up(self, target):
        for e in self.health():
            if e["target"] == target:
                states = {l["agent"]: l["state"] for l in e["locations"]}
                return e["state"] == "up" and all(states.get(a) == "up" for a in AGENTS)
        return False


def wait_until(what, limit_s, check, every=0.02):
    deadline = time.monotonic() + limit_s
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError, RuntimeError) as e:
            last = e
        time.sleep(every)
    raise SystemExit(f"timed out after {limit_s:.0f} s waiting for {what} (last error: {last})")


def accepts(address, port):
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Setup


def write_files(dns_port, admin_port, ports):
    os.makedirs(os.path.join(WORK, "zones"), exist_ok=True)
    os.makedirs(os.path.join(WORK, "policies"), exist_ok=True)
    os.makedirs(os.path.join(WORK, "targets"), exist_ok=True)
    shutil.copy(
        os.path.join(REPO, "examples/zones/example.com.zone"),
        os.path.join(WORK, "zones/example.com.zone"),
    )
    with open(os.path.join(WORK, "steerdns.toml"), "w") as f:
        f.write(
            f"""# Written by bench/failover/failover.py. GeoIP: the bundled test databases.
[dns]
listen = ["127.0.0.1:{dns_port}"]

[http]
listen = "off"

[admin]
listen = "127.0.0.1:{admin_port}"

[[zone]]
origin = "example.com"
file = "zones/example.com.zone"

[policies]
dir = "policies"

# Defaults (2 consecutive failures, 3 successes, majority quorum, 5 s stale, windowed criteria
# from 100 samples) except the hold-down, lowered from 30 s so that a trial does not wait
# for it. MIN_SAMPLES can still be set to study the windowed criteria.
[health]
hold_down_ms = {HOLD_DOWN_MS}
min_samples = {MIN_SAMPLES}
"""
        )
    with open(os.path.join(WORK, "policies", f"{NAME}.toml"), "w") as f:
        f.write(
            f"""# Like policies/failover.example.com.toml, with two PoPs on loopback.
name = "{NAME}"
ttl_s = 30
answers = 2

[targets.pop-first]
a = ["{FIRST_IP}"]

[targets.pop-second]
a = ["{SECOND_IP}"]

[[chain]]
kind = "failover"
order = ["pop-first", "pop-second"]
"""
        )
    for target, ip in (("pop-first", FIRST_IP), ("pop-second", SECOND_IP)):
        with open(os.path.join(WORK, "targets", f"{target}.toml"), "w") as f:
            f.write(
                f"""target = "{target}"

[[checks]]
kind = "http"
url = "http://{ip}:{ports[ip]}/health"
interval_ms = {INTERVAL_MS}
timeout_ms = {TIMEOUT_MS}
"""
            )


def start_endpoint(ip, port):
    spawn(f"endpoint-{ip}", [sys.executable, os.path.join(HERE, "endpoint.py"), ip, str(port)])
    wait_until(f"endpoint {ip}:{port}", 10, lambda: accepts(ip, port))


# ---------------------------------------------------------------------------------------------
# Numbers


def pct(values, q):
    """Nearest-rank percentile."""
    s = sorted(values)
    rank = max(1, -(-len(s) * q // 100))
    return s[int(rank) - 1]


def fmt_s(v):
    return f"{v:.2f} s"


def machine_facts():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", REPO, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit or "unknown",
    }


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rng = random.Random(SEED)
    dns_port = free_port("127.0.0.1")
    admin_port = free_port("127.0.0.1")
    ports = {FIRST_IP: free_port(FIRST_IP), SECOND_IP: free_port(SECOND_IP)}
    write_files(dns_port, admin_port, ports)
    load_before = os.getloadavg()

    for ip in (FIRST_IP, SECOND_IP):
        start_endpoint(ip, ports[ip])
    # Health transitions are logged at info; hickory's per-query lines are not wanted.
    env = {
        "STEERDNS_ADMIN_TOKEN": TOKEN,
        "RUST_LOG": "info,hickory_server=warn",
        "NO_COLOR": "1",
    }
    spawn("server", [BIN, "serve", "--config", os.path.join(WORK, "steerdns.toml")], env)
    dns = Dns(("127.0.0.1", dns_port))
    wait_until("the server to answer DNS", 30, lambda: dns.a_records() is not None)
    # Cross-check the hand-made DNS client against dig once.
    dig = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(dns_port), NAME, "A", "+short", "+tries=1", "+time=2"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split()
    mine = dns.a_records()
    if dig != mine:
        raise SystemExit(f"dig says {dig}, the benchmark's DNS client says {mine}")
    log(f"server up: DNS 127.0.0.1:{dns_port}, admin 127.0.0.1:{admin_port}; {NAME} → {mine}")
    for agent in AGENTS:
        spawn(
            f"agent-{agent}",
            [
                BIN,
                "probe",
                "--location",
                agent,
                "--targets",
                os.path.join(WORK, "targets"),
                "--report-to",
                f"http://127.0.0.1:{admin_port}",
            ],
            env,
        )
    admin = Admin(f"http://127.0.0.1:{admin_port}")

    failover, failback = [], []
    for trial in range(1, TRIALS + 1):
        wait_until(
            "pop-first answered and up from fra, iad and sin",
            READY_LIMIT_S,
            lambda: FIRST_IP in (dns.a_records() or [])
            and admin.all_agents_up("pop-first")
            and admin.all_agents_up("pop-second"),
            every=0.05,
        )
        for name, p in children.items():
            if p.poll() is not None:
                raise SystemExit(f"{name} exited with {p.returncode}; see {WORK}/{name}.log")
        # A uniformly random probe phase for the kill.
        time.sleep(rng.uniform(0, INTERVAL_MS / 1000))

        t0 = time.monotonic()
        stop(f"endpoint-{FIRST_IP}", signal.SIGKILL)
        t1 = None
        polls = 0
        while time.monotonic() - t0 < FAILOVER_LIMIT_S:
            answer = dns.a_records()
            polls += 1
            if answer and FIRST_IP not in answer:
                t1 = time.monotonic()
                if answer != [SECOND_IP]:
                    raise SystemExit(f"trial {trial}: unexpected answer {answer}")
                break
            time.sleep(POLL_MS / 1000)
        if t1 is None:
            raise SystemExit(f"trial {trial}: no failover within {FAILOVER_LIMIT_S:.0f} s")
        failover.append(t1 - t0)

        start_endpoint(FIRST_IP, ports[FIRST_IP])
        t_restore = time.monotonic()
        t_back = None
        while time.monotonic() - t_restore < FAILBACK_LIMIT_S:
            answer = dns.a_records()
            if answer and FIRST_IP in answer:
                t_back = time.monotonic()
                break
            time.sleep(POLL_MS / 1000)
        if t_back is None:
            raise SystemExit(
                f"trial {trial}: no fail-back within {FAILBACK_LIMIT_S:.0f} s; "
                f"health: {json.dumps(admin.health())}"
            )
        failback.append(t_back - t_restore)
        log(
            f"trial {trial:2}/{TRIALS}: failover {failover[-1]:.3f} s ({polls} polls), "
            f"fail-back {failback[-1]:.3f} s after the restore "
            f"(restored {t_restore - t1:.2f} s after the failover)"
        )

    load_after = os.getloadavg()
    facts = machine_facts()
    rows = [
        ("failover: kill → DNS excludes it", failover),
        ("fail-back: restart → DNS includes it again", failback),
    ]
    p95 = pct(failover, 95)
    verdict = "met" if p95 <= 3.0 else "NOT met"
    lines = [
        f"## {time.strftime('%Y-%m-%d')}: failover time, 3 probe agents, 1 s HTTP checks "
        f"(`bench/failover/run.sh`)",
        "",
        f"Machine: {facts['cpus']} CPUs ({facts['cpu']}), Linux {facts['kernel']}, a shared VM "
        f"(noisy in general; 1-minute load average {load_before[0]:.2f} before this run, "
        f"{load_after[0]:.2f} after). "
        f"Everything on loopback: steerdns `serve` (commit {facts['commit']}, release build), "
        f"three `steerdns probe` agents (fra, iad, sin), two PoP endpoints (`endpoint.py`) on "
        f"{FIRST_IP} and {SECOND_IP}, and the DNS poller, all on the same machine.",
        "",
        f"Settings: HTTP check every {INTERVAL_MS} ms (timeout {TIMEOUT_MS} ms) from each agent; "
        f"default health thresholds (down after 2 consecutive failures, majority quorum = 2 of "
        f"3, up after 3 successes) except `hold_down_ms = {HOLD_DOWN_MS}` (default 30000) "
        f"and `min_samples = {MIN_SAMPLES}` (default 100). "
        f"Kill = SIGKILL of the endpoint process (connections refused from then on), at a "
        f"uniformly random probe phase; DNS polled over UDP every {POLL_MS:g} ms. "
        f"{TRIALS} trials, nearest-rank percentiles.",
        "",
        "| | p50 | p95 | max | min | mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, values in rows:
        lines.append(
            f"| {label} | {fmt_s(pct(values, 50))} | {fmt_s(pct(values, 95))} | "
            f"{fmt_s(max(values))} | {fmt_s(min(values))} | {fmt_s(statistics.mean(values))} |"
        )
    lines += [
        "",
        f"**Goal: failover p95 ≤ 3 s with 1 s probes: {verdict}** (p95 {fmt_s(p95)}).",
        "",
    ]
    report = "\n".join(lines)
    with open(os.path.join(WORK, "result.md"), "w") as f:
        f.write(report)
    with open(os.path.join(WORK, "trials.json"), "w") as f:
        json.dump({"failover_s": failover, "failback_s": failback}, f)
    print()
    print(report)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
