#!/usr/bin/env python3
"""Tables for the fleet benchmarks (bench/fleet/). Markdown on stdout.

  table.py redis WORKDIR              # WORKDIR/redis-ROUND.redis from beacons.sh
  table.py outage WORKDIR SCENARIO... # WORKDIR/SCENARIO-ROUND.{dns.json,server-cpu,client-core,readyz}
"""
import glob
import json
import os
import statistics
import sys


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def number(path):
    try:
        with open(path) as f:
            return float(f.read())
    except (OSError, ValueError):
        return None


def redis(work):
    rows = []
    for path in sorted(glob.glob(f"{work}/redis-*.redis")):
        with open(path) as f:
            rows.append((os.path.basename(path).split(".")[0], json.load(f)))
    if not rows:
        return
    print("\n| fleet run | beacons accepted | series-minutes in Redis | attempts in Redis (world series) "
          "| expected (accepted x targets) | HINCRBY calls | store dropped writes | buffered |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        expected = r["accepted"] * r["targets"]
        print(f"| {name} | {r['accepted']:,} | {r['series_minutes']:,} | {r['world_attempts']:,} | "
              f"{expected:,} | {r['hincrby_calls']:,} | {r['dropped']} | {r['buffered']} |")


def outage(work, scenarios):
    print("| Redis | DNS qps (median) | vs healthy | p50 ms | p99 ms | lost/sent | non-NOERROR | "
          "server CPU | client core busy | /readyz during | rounds (qps) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    base = None
    for scen in scenarios:
        paths = sorted(glob.glob(f"{work}/{scen}-*.dns.json"))
        if not paths:
            continue
        runs = [json.load(open(p)) for p in paths]
        qps = med([r["qps"] for r in runs])
        if base is None and scen == "healthy":
            base = qps
        ratio = f"{qps / base:.2f}" if base else "-"
        other = sum(n for r in runs for code, n in r["rcodes"].items() if code != "NOERROR")
        stems = [p[: -len(".dns.json")] for p in paths]
        cpu = med([number(f"{s}.server-cpu") for s in stems])
        core = med([number(f"{s}.client-core") for s in stems])
        readyz = set()
        for s in stems:
            try:
                with open(f"{s}.readyz") as f:
                    text = f.read()
            except OSError:
                text = ""
            readyz.add("stale" if "stale" in text else ("ready" if text.startswith("ready") else "?"))
        rounds = ", ".join(f"{r['qps']:,.0f}" for r in runs)
        print(f"| {scen} | {qps:,.0f} | {ratio} | {med([r['latency_us']['p50'] / 1e3 for r in runs]):.2f} | "
              f"{med([r['latency_us']['p99'] / 1e3 for r in runs]):.2f} | "
              f"{sum(r['lost'] for r in runs)}/{sum(r['sent'] for r in runs):,} | {other} | "
              f"{100 * cpu:.0f}% | {100 * core:.0f}% | {', '.join(sorted(readyz))} | "
              f"{rounds} |")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "redis":
        redis(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "outage":
        outage(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
