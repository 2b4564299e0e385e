#!/usr/bin/env python3
"""Main-thread time of the RUM beacon in a Chromium trace (--trace-startup JSON).

  beacon_trace.py TRACE.json [--script beacon.js]

Finds the renderer main thread (thread name CrRendererMain) that evaluated the script and, on it, sums the
durations of complete events that belong to the beacon:

- EvaluateScript, FunctionCall, v8.compile, v8.compileModule, V8.ScriptCompiler events whose
  args.data.url (or args.fileName) ends with the script's name;
- TimerFire, FireIdleCallback and RunMicrotasks: the page (rum-beacon/test/index.html) runs
  no timers, idle callbacks or promises of its own, so those are the beacon's (its delay
  timer, its idle callback, and its promise chain: fetch callbacks, JSON, building the body).

Nested events are counted once (intervals are merged). Prints one JSON object: the beacon's
total ms, the longest single merged interval, the number of intervals, the same total split by
event name (overlaps counted in each), and the renderer main thread's total busy time (all
top-level tasks, for scale).
"""
import json
import sys

URL_EVENTS = {"EvaluateScript", "FunctionCall", "v8.compile", "v8.compileModule",
              "V8.ScriptCompiler", "v8.produceCache", "v8.run"}
PAGE_QUIET = {"TimerFire", "FireIdleCallback", "RunMicrotasks"}


def url_of(e):
    a = e.get("args", {})
    d = a.get("data", {}) if isinstance(a.get("data"), dict) else {}
    return d.get("url") or d.get("fileName") or a.get("fileName") or ""


def merge(intervals):
    out = []
    for s, t in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], t)
        else:
            out.append([s, t])
    return out


def main():
    path = sys.argv[1]
    script = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--script" else "beacon.js"
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    mains = {(e["pid"], e["tid"]) for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e.get("args", {}).get("name") == "CrRendererMain"}
    # Only the renderer that ran the beacon (others: spare renderers, other frames).
    mains = {(e["pid"], e["tid"]) for e in events
             if (e.get("pid"), e.get("tid")) in mains and e.get("name") == "EvaluateScript"
             and url_of(e).split("?")[0].endswith(script)}
    mine, busy, by_name = [], [], {}
    for e in events:
        if (e.get("pid"), e.get("tid")) not in mains or e.get("ph") != "X" or "dur" not in e:
            continue
        s, t = e["ts"], e["ts"] + e["dur"]
        name = e.get("name", "")
        if name in ("ThreadControllerImpl::RunTask", "RunTask"):
            busy.append((s, t))
        if (name in URL_EVENTS and url_of(e).split("?")[0].endswith(script)) or name in PAGE_QUIET:
            mine.append((s, t))
            by_name[name] = by_name.get(name, 0) + e["dur"] / 1000
    merged = merge(mine)
    total = sum(t - s for s, t in merged) / 1000
    print(json.dumps({
        "renderer_main_threads": len(mains),
        "beacon_main_thread_ms": round(total, 3),
        "longest_ms": round(max((t - s for s, t in merged), default=0) / 1000, 3),
        "intervals": len(merged),
        "by_event_ms": {k: round(v, 3) for k, v in sorted(by_name.items())},
        "main_thread_busy_ms": round(sum(t - s for s, t in merge(busy)) / 1000, 3),
    }))


if __name__ == "__main__":
    main()
