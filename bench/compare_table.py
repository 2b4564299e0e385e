#!/usr/bin/env python3
"""Results of bench/compare.sh: turn one load-generator output into a results line
(`record`), and print the per-scenario tables from all of them (`table`).

record OUT TOOL SCENARIO SERVER ROUND CPU_TICKS CLK_TCK RSS_KB RCODE SERVER_CORE_PCT CLIENT_CORE_PCT
    OUT is loadgen's or cload's JSON line or dnsperf's text summary; the core percentages are
    how busy the server's and the load generator's CPUs were. Prints one tab-separated line.
    Exits 1 if the output cannot be read or any response had another rcode than RCODE
    (NOERROR, or NXDOMAIN for the random-subdomain flood).
table RESULTS DURATION REPEAT SUBNETS DNSPERF_SUBNET LOAD_DESCRIPTION
    Medians over rounds per (scenario, server, tool); ratios of qps to gdnsd and to the
    no-op responder with the same tool in the same scenario. A row whose client core was
    saturated (>= 95 % busy) while the server's was not is flagged: there the load generator,
    not the server, set the rate.
"""

import json
import re
import statistics
import sys
from collections import defaultdict

FIELDS = ["scenario", "server", "tool", "round", "qps", "completed", "sent", "lost",
          "cpu_us_per_q", "avg_ms", "p50_ms", "p99_ms", "rss_kb", "server_core_pct",
          "client_core_pct"]
SATURATED_PCT = 95.0
SERVER_ORDER = ["steerdns", "steerdns-2cores", "gdnsd", "nsd", "knot", "noop"]
TOOL_ORDER = ["loadgen", "cload", "dnsperf", "dnsperf-tcp"]
NONE = float("nan")


def fail(message):
    print(f"compare_table: {message}", file=sys.stderr)
    sys.exit(1)


def parse_loadgen(text, rcode):
    line = next((l for l in text.splitlines() if l.startswith("{")), None)
    if line is None:
        fail("no JSON line in loadgen output")
    j = json.loads(line)
    other = {k: v for k, v in j["rcodes"].items() if k != rcode}
    if other:
        fail(f"responses other than {rcode}: {other}")
    if j.get("truncated"):
        fail(f"{j['truncated']} responses with TC set (rate limiting?); none are expected")
    lat = j["latency_us"]
    return dict(qps=j["qps"], completed=j["completed"], sent=j["sent"], lost=j["lost"],
                avg_ms=lat["avg"] / 1e3, p50_ms=lat["p50"] / 1e3, p99_ms=lat["p99"] / 1e3)


def parse_dnsperf(text, rcode):
    def num(pattern):
        m = re.search(pattern, text)
        if not m:
            fail(f"no {pattern!r} in dnsperf output")
        return float(m.group(1))
    rcodes = re.search(r"Response codes:\s*(.*)", text)
    if not rcodes or not re.fullmatch(rf"{rcode} \d+ \(100\.00%\)", rcodes.group(1).strip()):
        fail(f"responses other than {rcode}: {rcodes.group(1) if rcodes else 'none'}")
    return dict(qps=num(r"Queries per second:\s*([\d.]+)"),
                completed=int(num(r"Queries completed:\s*(\d+)")),
                sent=int(num(r"Queries sent:\s*(\d+)")),
                lost=int(num(r"Queries lost:\s*(\d+)")),
                avg_ms=num(r"Average Latency \(s\):\s*([\d.]+)") * 1e3,
                p50_ms=NONE, p99_ms=NONE)


def record(out, tool, scenario, server, rnd, ticks, clk_tck, rss_kb, rcode, server_pct,
           client_pct):
    if not re.fullmatch(r"[A-Z]+", rcode):
        fail(f"not an rcode name: {rcode!r}")
    with open(out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    # loadgen and cload print the same JSON fields.
    if tool in ("loadgen", "cload"):
        r = parse_loadgen(text, rcode)
    else:
        r = parse_dnsperf(text, rcode)
    cpu_us = int(ticks) * 1e6 / int(clk_tck)
    r["cpu_us_per_q"] = cpu_us / r["completed"] if r["completed"] else NONE
    r.update(scenario=scenario, server=server, tool=tool, round=rnd, rss_kb=int(rss_kb),
             server_core_pct=float(server_pct), client_core_pct=float(client_pct))
    print("\t".join(str(r[k]) for k in FIELDS))


def fmt(v, spec):
    """NaN (no value) as "-", right-aligned to the width in `spec`."""
    width = int(re.match(r"\d*", spec).group(0) or 0)
    return f"{'-':>{width}}" if v != v else format(v, spec)


def table(path, duration, repeat, subnets, dnsperf_subnet, load):
    runs = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(FIELDS):
                continue
            r = dict(zip(FIELDS, parts))
            for k in FIELDS[4:]:
                r[k] = float(r[k])
            runs[(r["scenario"], r["server"], r["tool"])].append(r)

    def med(rs, k):
        vals = [r[k] for r in rs if r[k] == r[k]]
        return statistics.median(vals) if vals else NONE

    titles = {
        "steered": f"steered: steer.example.com A/AAAA, geo+weighted+up; loadgen: ECS from {subnets} "
                   f"subnets (real GeoLite2-City); dnsperf: fixed ECS {dnsperf_subnet}",
        "static": "static: A queries for 15 static names, EDNS0 without ECS",
        "tcp": f"tcp: dnsperf -m tcp, steered queries, fixed ECS {dnsperf_subnet}",
        "nxdomain": "nxdomain: random-subdomain flood, A queries for random names under "
                    "example.com, EDNS0 without ECS; NXDOMAIN with the SOA (no-op: echoed)",
    }
    flagged_any = [False]
    for scenario in ["steered", "static", "tcp", "nxdomain"]:
        keys = [k for k in runs if k[0] == scenario]
        if not keys:
            continue
        keys.sort(key=lambda k: (TOOL_ORDER.index(k[2]) if k[2] in TOOL_ORDER else 9,
                                 SERVER_ORDER.index(k[1]) if k[1] in SERVER_ORDER else 9))
        print()
        print(f"== {titles[scenario]}")
        print(f"   {duration} s x {repeat} round(s), medians; {load}")
        head = (f"{'server':<16} {'tool':<11} {'qps':>9} {'CPU us/q':>9} {'avg ms':>7} "
                f"{'p50 ms':>7} {'p99 ms':>7} {'lost/sent':>17} {'RSS MB':>7} {'x gdnsd':>7} {'x floor':>7} "
                f"{'srv core%':>9} {'cli core%':>9}")
        print(head)
        print("-" * len(head))
        for key in keys:
            rs = runs[key]
            qps = med(rs, "qps")
            gd = runs.get((scenario, "gdnsd", key[2]))
            fl = runs.get((scenario, "noop", key[2]))
            x_gd = qps / med(gd, "qps") if gd else NONE
            x_fl = qps / med(fl, "qps") if fl else NONE
            lost = int(sum(r["lost"] for r in rs))
            sent = int(sum(r["sent"] for r in rs))
            rss = max(r["rss_kb"] for r in rs) / 1024
            srv, cli = med(rs, "server_core_pct"), med(rs, "client_core_pct")
            client_bound = any(r["client_core_pct"] >= SATURATED_PCT > r["server_core_pct"]
                               for r in rs)
            flagged_any[0] |= client_bound
            print(f"{key[1]:<16} {key[2]:<11} {qps:>9.0f} {fmt(med(rs, 'cpu_us_per_q'), '9.2f')} "
                  f"{fmt(med(rs, 'avg_ms'), '7.3f')} {fmt(med(rs, 'p50_ms'), '7.3f')} "
                  f"{fmt(med(rs, 'p99_ms'), '7.3f')} {f'{lost}/{sent}':>17} {rss:>7.1f} "
                  f"{fmt(x_gd, '7.2f')} {fmt(x_fl, '7.2f')} {srv:>9.0f} {cli:>9.0f}"
                  f"{'  CLIENT-BOUND' if client_bound else ''}")

    print()
    print("srv/cli core%: how busy the server's and the load generator's CPUs were (medians).")
    if flagged_any[0]:
        print("CLIENT-BOUND: in some round the client core was saturated before the server's; "
              "that row measures the load generator, not the server.")


def main(argv):
    if len(argv) == 13 and argv[1] == "record":
        record(*argv[2:])
    elif len(argv) == 8 and argv[1] == "table":
        table(*argv[2:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
