#!/usr/bin/env python3
"""The soak's table (bench/soak/soak.sh): what loadgen, the checker and beaconflood saw, the
server's counters over the run, RSS over time, and PASS or FAIL with the reasons.

    report.py WORK_DIR DURATION ALIVE(yes|no) CHECKER_EXIT_CODE
"""
import json
import os
import sys

work, duration, alive, soak_rc = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def lines(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip().startswith("{")]


def metrics(name):
    out = {}
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return out
    for line in open(path):
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def n(x):
    return f"{int(x):,}"


failures = []
load = lines("loadgen.jsonl")
beacons = lines("beacons.jsonl")
soak = json.load(open(os.path.join(work, "soak.json")))
before, after = metrics("metrics.before"), metrics("metrics.after")
rss = [tuple(map(int, l.split())) for l in open(os.path.join(work, "rss.txt")) if l.strip()]

print(f"# Soak: {duration} s\n")
print("| stream | figures |")
print("|---|---|")
sent = sum(r["sent"] for r in load)
done = sum(r["completed"] for r in load)
lost = sum(r["lost"] for r in load)
bad = sum(r["unexpected"] + r["mismatched"] for r in load)
run_s = sum(r["run_time_s"] for r in load) or 1
print(f"| loadgen (UDP, ECS, {len(load)} runs) | {n(sent)} queries, {n(done)} answered "
      f"({done / run_s:,.0f}/s), {n(lost)} lost, {n(bad)} unexpected or mismatched |")
print(f"| checked answers (vs explain) | UDP {n(soak['checked_udp'])}, TCP {n(soak['checked_tcp'])}; "
      f"{n(soak['raced'])} during an edit (either version accepted); **{n(soak['wrong'])} wrong**; "
      f"{n(soak['udp_timeouts'])} UDP timeouts |")
print(f"| policy edits | {n(soak['edits'])} applied, {n(soak['edit_failures'])} failed |")
print(f"| TCP churn | {n(soak['tcp_connections'])} connections ({n(soak['slowloris'])} slowloris), "
      f"{n(soak['tcp_errors'])} errors |")
print(f"| malformed datagrams | {n(soak['junk_sent'])} sent, {n(soak['junk_replies'])} replies, "
      f"{n(soak['junk_bad_replies'])} unparseable, {n(soak['qr_replies'])} replies to QR=1 |")
b_sent = sum(r["sent"] for r in beacons)
b_ok = sum(r["accepted"] for r in beacons)
b_tokens = sum(r["tokens"] for r in beacons)
refused = {}
for r in beacons:
    for k, v in (r.get("refused") or {}).items():
        refused[k] = refused.get(k, 0) + v
print(f"| beacons ({len(beacons)} runs) | {n(b_tokens)} tokens, {n(b_sent)} beacons, {n(b_ok)} accepted, "
      f"refused {refused or 0} |")

print("\nServer counters over the run (after − before; only those that moved):\n")
print("| counter | value |")
print("|---|---:|")
for key in sorted(after):
    if not key.startswith("steerdns_") or not key.split("{")[0].endswith("_total"):
        continue
    delta = after[key] - before.get(key, 0)
    if delta:
        print(f"| `{key}` | {n(delta)} |")

print("\nRSS (MiB) over time:\n")
print("| s | " + " | ".join(str(t) for t, _ in rss[:: max(1, len(rss) // 12)]) + " |")
print("|---|" + "---:|" * len(rss[:: max(1, len(rss) // 12)]))
print("| RSS | " + " | ".join(f"{kb / 1024:.1f}" for _, kb in rss[:: max(1, len(rss) // 12)]) + " |")

if alive != "yes":
    failures.append("the server exited")
if soak_rc != 0:
    failures.append(f"the checker exited {soak_rc}")
for key in ("wrong", "junk_bad_replies", "qr_replies", "edit_failures"):
    if soak[key]:
        failures.append(f"{key} = {soak[key]}")
if not load or sent == 0:
    failures.append("loadgen sent nothing")
if bad:
    failures.append(f"loadgen saw {bad} unexpected or mismatched replies")
if soak["checked_udp"] == 0 or soak["checked_tcp"] == 0 or soak["edits"] == 0:
    failures.append("a checked stream did nothing")
# Memory must be flat once the bounded RUM structures have filled (used tokens are
# remembered for their 300 s lifetime; the session log holds 100,000): from 300 s or the
# second half of the run, whichever is later, at most 5% (and 2 MiB) of growth. A leak keeps
# growing; a warm-up does not. A run too short to get past the warm-up is not judged.
WARM_UP = 300
judged_from = max(duration // 2, WARM_UP)
tail = [kb for t, kb in rss if t >= judged_from]
if duration - judged_from >= 100 and tail:
    start, end = tail[0], rss[-1][1]
    print(f"\nRSS from {judged_from} s to the end: {start / 1024:.1f} → {end / 1024:.1f} MiB "
          f"({100 * (end - start) / max(start, 1):+.2f}%); peak {max(kb for _, kb in rss) / 1024:.1f} MiB")
    if end > 1.05 * start + 2048:
        failures.append(f"RSS grew from {start / 1024:.1f} MiB to {end / 1024:.1f} MiB after the warm-up")
else:
    print(f"\nRSS not judged: {duration} s does not get 100 s past the {WARM_UP} s warm-up "
          f"(peak {max(kb for _, kb in rss) / 1024:.1f} MiB)")
for e in soak.get("examples", []):
    print(f"\n- example: {e}")
print()
print("RESULT: PASS" if not failures else "RESULT: FAIL: " + "; ".join(failures))
