#!/usr/bin/env python3
"""Tables for the RUM benchmarks (bench/rum/; the ingest table also for bench/fleet/beacons.sh): medians over rounds of the JSON lines that
beaconflood and loadgen print, and a grouped perf profile. Markdown on stdout.

  table.py ingest WORKDIR SERVER...   # WORKDIR/SERVER-ROUND.json from beaconflood
  table.py dns WORKDIR                # WORKDIR/{alone,flood,paced}-ROUND.{dns,beacons}.json
                                      # (+ .server-cpu, .client-core)
  table.py perf PERF_REPORT_TXT       # perf report --no-children --sort dso,symbol -g none
"""
import glob
import json
import re
import statistics
import sys


def load(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            text = f.read().strip()
        if text:
            out.append(json.loads(text.splitlines()[-1]))
    return out


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def numbers(pattern):
    out = []
    for path in glob.glob(pattern):
        with open(path) as f:
            out.append(float(f.read()))
    return out


def ingest(work, servers):
    print("| server | beacons/s accepted (median) | refused | p50 ms | p99 ms | server CPU | "
          "server µs/beacon | capacity on 1 core | client CPU | client µs/beacon | rounds (beacons/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = {}
    for s in servers:
        runs = load(f"{work}/{s}-*.json")
        if not runs:
            continue
        us = [1e6 * r["server_cpu_s"] / max(r["accepted"], 1) for r in runs]
        cus = [1e6 * r["client_cpu_s"] / max(r["sent"], 1) for r in runs]
        row = {
            "rate": med([r["accepted_per_s"] for r in runs]),
            "refused": sum(sum(r["refused"].values()) for r in runs),
            "p50": med([r["latency_us"]["p50"] / 1e3 for r in runs]),
            "p99": med([r["latency_us"]["p99"] / 1e3 for r in runs]),
            "cpu": med([r["server_cpu_share"] for r in runs]),
            "us": med(us),
            "ccpu": med([r["client_cpu_share"] for r in runs]),
            "cus": med(cus),
            "rounds": ", ".join(f"{r['accepted_per_s']:,.0f}" for r in runs),
        }
        rows[s] = row
        print(f"| {s} | {row['rate']:,.0f} | {row['refused']} | {row['p50']:.2f} | {row['p99']:.2f} | "
              f"{100 * row['cpu']:.0f}% | {row['us']:.1f} | {1e6 / row['us']:,.0f}/s | "
              f"{100 * row['ccpu']:.0f}% | {row['cus']:.1f} | {row['rounds']} |")
    if len(rows) == 2:
        (na, a), (nb, b) = rows.items()
        print(f"\n{na} / {nb}: beacons/s {a['rate'] / b['rate']:.2f}, "
              f"server CPU per beacon {a['us'] / b['us']:.2f}")


def dns(work):
    print("| scenario | DNS qps (median) | DNS p50 ms | DNS p99 ms | lost/sent | beacons/s accepted | "
          "beacons refused | server CPU | client core busy | rounds (qps) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    base = None
    for scen in ("alone", "paced", "flood"):
        d = load(f"{work}/{scen}-*.dns.json")
        if not d:
            continue
        b = load(f"{work}/{scen}-*.beacons.json")
        qps = med([r["qps"] for r in d])
        if scen == "alone":
            base = qps
        rate = f"{med([r['accepted_per_s'] for r in b]):,.0f}" if b else "-"
        refused = sum(sum(r["refused"].values()) for r in b) if b else "-"
        rounds = ", ".join(f"{r['qps']:,.0f}" for r in d)
        cpus = numbers(f"{work}/{scen}-*.server-cpu")
        cores = numbers(f"{work}/{scen}-*.client-core")
        ratio = f" ({qps / base:.2f} x alone)" if base and scen != "alone" else ""
        print(f"| {scen} | {qps:,.0f}{ratio} | {med([r['latency_us']['p50'] / 1e3 for r in d]):.2f} | "
              f"{med([r['latency_us']['p99'] / 1e3 for r in d]):.2f} | "
              f"{sum(r['lost'] for r in d)}/{sum(r['sent'] for r in d)} | {rate} | {refused} | "
              f"{100 * med(cpus):.0f}% | {100 * med(cores):.0f}% | "
              f"{rounds} |")


GROUPS = [
    ("kernel (TCP loopback, syscalls, scheduling)", lambda d, s: d.startswith("[kernel")),
    ("malloc / free / memmove / memcpy", lambda d, s: re.search(r"malloc|free|memmove|memcpy|memset|realloc|memcmp", s)),
    ("serde_json (beacon parse, config render)", lambda d, s: "serde" in s),
    ("hyper / axum / http / tower (HTTP/1.1)", lambda d, s: re.search(r"hyper|axum|http::|tower|httparse|bytes::", s)),
    ("tokio (tasks, I/O driver)", lambda d, s: "tokio" in s or "mio" in s),
    ("hashing (SipHash), HashMap, BTreeMap", lambda d, s: re.search(r"sip::|hashbrown|btree|BTree|hash_one|Hash", s)),
    ("HMAC-SHA256 (token check)", lambda d, s: re.search(r"sha2|hmac|Sha256|sha256", s)),
    ("steerdns::rum (windows, histogram, limit, replay, collector)", lambda d, s: "steerdns::rum" in s),
    ("steerdns::api::rum (ingest checks, client IP)", lambda d, s: "api::rum" in s),
    ("steerdns::geo (locate)", lambda d, s: "steerdns::geo" in s or "maxminddb" in s),
]


def perf(path):
    totals = {}
    line_re = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$")
    with open(path, errors="replace") as f:
        for line in f:
            m = line_re.match(line)
            if not m:
                continue
            pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
            name = "other (std, libm, unresolved)"
            for g, test in GROUPS:
                if test(dso, sym):
                    name = g
                    break
            totals[name] = totals.get(name, 0.0) + pct
    print("| where (perf, beacon phase) | share of server CPU |")
    print("|---|---:|")
    for name, pct in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {pct:.1f}% |")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "ingest":
        ingest(sys.argv[2], sys.argv[3:])
    elif mode == "dns":
        dns(sys.argv[2])
    elif mode == "perf":
        perf(sys.argv[2])
    else:
        sys.exit(__doc__)
