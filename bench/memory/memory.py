#!/usr/bin/env python3
"""Memory and control-plane benchmark driver; run through bench/memory/run.sh (which finds the
databases and binaries and bounds the whole run). Loopback only; every process started here is
recorded in PIDFILE and stopped at the end (run.sh's trap kills what is left, by PID).

1. steerdns serve, real City (+ ASN) database, NAMES policies (bench/rebuild's four shapes):
   start to /readyz, RSS (anonymous and file-backed), VmHWM.
2. A reload with a new copy of the City database (renamed over the old one, then SIGHUP):
   RSS sampled every 10 ms from the signal until the reload is logged, and VmHWM.
3. gdnsd with the same City database (bench/compare/gdnsd.config): RSS once it answers.
4. BIG_NAMES (10,000) policies: start to /readyz and the compile time the server logs.
5. An override file of PREFIXES (500,000) real IPv4 prefixes: start to /readyz and the GeoIP
   load time logged, with and without it; then dnsperf (DNSPERF_SECONDS, fixed ECS inside an
   override, all NAMES names) against each, alternating, ROUNDS rounds.
"""

import json
import os
import re
import signal
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rebuild"))
import rebuild as rb  # noqa: E402  (policy shapes, spawn/stop by PID, /proc readers)

WORK = os.environ["WORK"]
BIN = os.environ["STEERDNS_BIN"]
CITY = os.path.abspath(os.environ["GEOIP_DB"])
ASN = os.environ.get("GEOIP_ASN_DB") or None
PREFIX_FILE = os.environ.get("PREFIX_FILE") or None
GDNSD = os.environ.get("GDNSD_BIN") or None
NAMES = int(os.environ.get("NAMES", "1000"))
BIG_NAMES = int(os.environ.get("BIG_NAMES", "10000"))
PREFIXES = int(os.environ.get("PREFIXES", "500000"))
DNSPERF_SECONDS = int(os.environ.get("DNSPERF_SECONDS", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
REPO = os.path.dirname(os.path.dirname(HERE))
COUNTRIES = ["DE", "FR", "GB", "US", "JP", "BR", "IN", "AU", "ZA", "CA"]

log = rb.log


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) / 1024
    return out


def write_setup(tag, names, city, override_file=None):
    d = os.path.join(WORK, tag)
    pdir = os.path.join(d, "policies")
    os.makedirs(pdir, exist_ok=True)
    for i in range(names):
        with open(os.path.join(pdir, f"n{i:04d}.example.com.toml"), "w") as f:
            f.write(rb.policy(i))
    with open(os.path.join(d, "example.com.zone"), "w") as f:
        f.write("$ORIGIN example.com.\n$TTL 3600\n"
                "@ IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 604800 30\n"
                "@ IN NS ns1.example.com.\nns1 IN A 127.0.0.1\n")
    dns, http, admin = rb.free_port(), rb.free_port(), rb.free_port()
    geo = f'city = "{city}"\n' + (f'asn = "{ASN}"\n' if ASN else "")
    if override_file:
        geo += f'override_file = "{override_file}"\n'
    path = os.path.join(d, "steerdns.toml")
    with open(path, "w") as f:
        f.write(f'[dns]\nlisten = ["127.0.0.1:{dns}"]\n\n[http]\nlisten = "127.0.0.1:{http}"\n\n'
                f'[admin]\nlisten = "127.0.0.1:{admin}"\n\n'
                f'[geoip]\n{geo}\n[[zone]]\norigin = "example.com"\nfile = "example.com.zone"\n\n'
                '[policies]\ndir = "policies"\n')
    return path, dns, http


def ready(http):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def serve(tag, config, http):
    t0 = time.perf_counter()
    p = rb.spawn(tag, [BIN, "serve", "--config", config], env={"RUST_LOG": "info"})
    while not ready(http):
        if p.poll() is not None:
            raise SystemExit(f"{tag}: steerdns exited; see {WORK}/{tag}.log")
        if time.perf_counter() - t0 > 120:
            raise SystemExit(f"{tag}: not ready after 120 s")
        time.sleep(0.01)
    return p, time.perf_counter() - t0


def logged(tag, key):
    """The last `key=N` the server logged (tracing's text format)."""
    with open(os.path.join(WORK, f"{tag}.log"), errors="replace") as f:
        found = re.findall(rf"\b{key}=(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", f.read()))
    return int(found[-1]) if found else None


def count_logged(tag, text):
    with open(os.path.join(WORK, f"{tag}.log"), errors="replace") as f:
        return f.read().count(text)


def reload_peak(tag, p, city_copy):
    """Rename a fresh copy of the City database over the served one, SIGHUP, sample RSS."""
    fresh = city_copy + ".new"
    shutil.copyfile(CITY, fresh)
    os.rename(fresh, city_copy)
    before = count_logged(tag, "reloaded configuration")
    base = status(p.pid)
    t0 = time.perf_counter()
    p.send_signal(signal.SIGHUP)
    peak, done_at = 0.0, None
    while time.perf_counter() - t0 < 60:
        s = status(p.pid)
        peak = max(peak, s["VmRSS"])
        if done_at is None and count_logged(tag, "reloaded configuration") > before:
            done_at = time.perf_counter() - t0
        if done_at is not None and time.perf_counter() - t0 > done_at + 1.0:
            break
        time.sleep(0.01)
    after = status(p.pid)
    return {"before": base, "peak_sampled": peak, "after": after, "reload_s": done_at}


def gdnsd_rss():
    d = os.path.join(WORK, "gdnsd")
    os.makedirs(os.path.join(d, "zones"), exist_ok=True)
    os.makedirs(os.path.join(d, "geoip"), exist_ok=True)
    port = rb.free_port()
    with open(os.path.join(REPO, "bench/compare/gdnsd.config")) as f:
        text = f.read()
    for k, v in {"@DNS_PORT@": str(port), "@RUN_DIR@": f"{d}/run", "@STATE_DIR@": f"{d}/state",
                 "@GEOIP_FILE@": "GeoLite2-City.mmdb", "@DIR@": d}.items():
        text = text.replace(k, v)
    with open(os.path.join(d, "config"), "w") as f:
        f.write(text)
    with open(os.path.join(REPO, "bench/compare/example.com.zone")) as f:
        zone = f.read()
    with open(os.path.join(d, "zones/example.com"), "w") as f:
        f.write(zone + "steer 30 DYNA geoip!steer\n")
    os.symlink(CITY, os.path.join(d, "geoip/GeoLite2-City.mmdb"))
    t0 = time.perf_counter()
    # "start" runs in the foreground; env execs gdnsd (same PID) without NOTIFY_SOCKET.
    p = rb.spawn("gdnsd", ["env", "-u", "NOTIFY_SOCKET", GDNSD, "-c", d, "start"])
    r = rb.Resolver(port)
    while True:
        try:
            r.ask("example.com", 6)
            break
        except OSError:
            if p.poll() is not None or time.perf_counter() - t0 > 60:
                raise SystemExit(f"gdnsd did not answer; see {WORK}/gdnsd.log")
    up = time.perf_counter() - t0
    time.sleep(1)
    s = status(p.pid)
    rb.stop("gdnsd")
    return {"status": s, "answering_s": up}


def write_prefixes():
    path = os.path.join(WORK, "overrides.txt")
    n = 0
    with open(PREFIX_FILE) as src, open(path, "w") as out:
        out.write("# real IPv4 prefixes (routing data), placed round-robin in ten countries\n")
        for line in src:
            if n >= PREFIXES:
                break
            out.write(f"{line.strip()} country={COUNTRIES[n % len(COUNTRIES)]}\n")
            n += 1
    return path, n


def dnsperf(dns, ecs_net, tag):
    qfile = os.path.join(WORK, "queries.txt")
    with open(qfile, "w") as f:
        for i in range(NAMES):
            f.write(f"n{i:04d}.example.com A\n")
    ecs = rb.ecs_option(ecs_net)
    out = subprocess.run(
        ["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(dns), "-d", qfile,
         "-l", str(DNSPERF_SECONDS), "-c", "4", "-q", "256", "-E", f"8:{ecs.hex()}"],
        capture_output=True, text=True, timeout=DNSPERF_SECONDS + 30)
    with open(os.path.join(WORK, f"dnsperf-{tag}.log"), "a") as f:
        f.write(out.stdout + out.stderr)
    m = re.search(r"Queries per second:\s+([0-9.]+)", out.stdout)
    return float(m.group(1)) if m else float("nan")


def main():
    res = {"load_start": rb.loadavg(), "city": CITY, "asn": ASN}
    city_copy = os.path.join(WORK, "GeoLite2-City.mmdb")
    shutil.copyfile(CITY, city_copy)

    log(f"1. serve: {NAMES} names, City{' + ASN' if ASN else ''}")
    config, dns, http = write_setup("base", NAMES, city_copy)
    p, t = serve("base", config, http)
    time.sleep(2)
    res["base"] = {"ready_s": t, "status": status(p.pid), "geoip_ms": logged("base", "geoip_ms"),
                   "compile_ms": logged("base", "compile_ms")}
    log(f"   ready in {t:.2f} s, {res['base']['status']}")
    log("2. reload with a new City file (rename + SIGHUP)")
    res["reload"] = reload_peak("base", p, city_copy)
    log(f"   {res['reload']}")
    rb.stop("base")

    if GDNSD:
        log("3. gdnsd with the same City database")
        res["gdnsd"] = gdnsd_rss()
        log(f"   {res['gdnsd']}")

    log(f"4. serve: {BIG_NAMES} names")
    config, dns, http = write_setup("big", BIG_NAMES, CITY)
    p, t = serve("big", config, http)
    res["big"] = {"ready_s": t, "status": status(p.pid), "geoip_ms": logged("big", "geoip_ms"),
                  "compile_ms": logged("big", "compile_ms")}
    log(f"   {res['big']}")
    rb.stop("big")

    if PREFIX_FILE:
        path, n = write_prefixes()
        log(f"5. serve: {NAMES} names and an override file of {n} prefixes")
        with open(path) as f:
            f.readline()
            # A /24 inside an override, the same client for both servers.
            ecs_net = f.readlines()[n // 2].split()[0]
        base_ip, plen = ecs_net.split("/")
        ecs_net = base_ip + "/" + str(max(int(plen), 24))
        c_plain, dns_plain, http_plain = write_setup("plain", NAMES, CITY)
        c_over, dns_over, http_over = write_setup("over", NAMES, CITY, override_file=path)
        p, t = serve("over", c_over, http_over)
        res["over"] = {"prefixes": n, "ready_s": t, "status": status(p.pid),
                       "geoip_ms": logged("over", "geoip_ms"), "ecs": ecs_net}
        log(f"   {res['over']}")
        p2, t2 = serve("plain", c_plain, http_plain)
        res["plain"] = {"ready_s": t2, "status": status(p2.pid),
                        "geoip_ms": logged("plain", "geoip_ms")}
        qps = {"plain": [], "over": []}
        for r in range(ROUNDS):
            order = ["plain", "over"] if r % 2 == 0 else ["over", "plain"]
            for tag in order:
                port = dns_plain if tag == "plain" else dns_over
                qps[tag].append(dnsperf(port, ecs_net, tag))
                log(f"   dnsperf {tag}: {qps[tag][-1]:.0f} qps")
        res["qps"] = qps
        rb.stop("over")
        rb.stop("plain")

    res["load_end"] = rb.loadavg()
    with open(os.path.join(WORK, "result.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        rb.stop_all()
