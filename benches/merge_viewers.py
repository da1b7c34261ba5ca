#!/usr/bin/env python3
"""merge_viewers.py LABEL JSON... — merges the summaries of several ferrocast-viewers processes
(one run split over processes) into key=value lines: viewers, complete viewers, parts expected
per viewer, delivery latency p50/p90/p99/max from the merged 1 ms histograms, requests by kind,
errors, MiB/s."""
import json, sys

label, files = sys.argv[1], sys.argv[2:]
runs = []
for f in files:
    try:
        runs.append(json.load(open(f)))
    except (OSError, ValueError) as e:
        print(f"{label}.error=unreadable_{f}:{e}")
if not runs:
    sys.exit(1)
hist, req, err = {}, {}, {}
for r in runs:
    for k, v in r["latency_hist_ms"].items():
        hist[int(k)] = hist.get(int(k), 0) + v
    for k, v in r["requests"].items():
        req[k] = req.get(k, 0) + v
    for k, v in r["errors"].items():
        err[k] = err.get(k, 0) + v
n = sum(hist.values())

def pct(q):
    if n == 0:
        return 0
    target, acc = q * n, 0
    for ms in sorted(hist):
        acc += hist[ms]
        if acc >= target:
            return ms
    return max(hist)

dur = max(r["duration_s"] for r in runs)
viewers = sum(r["viewers"] for r in runs)
out = {
    "viewers": viewers,
    "processes": len(runs),
    "complete": sum(r["viewers_complete"] for r in runs),
    "expected_per_viewer": "/".join(str(r["expected_per_viewer"]) for r in runs),
    "missing": sum(r["missing_total"] for r in runs),
    "joined_late": sum(r.get("joined_late", 0) for r in runs),
    "last_join_s": round(max(r.get("last_join_s", 0) for r in runs), 2),
    "lat_p50_ms": pct(0.5), "lat_p90_ms": pct(0.9), "lat_p99_ms": pct(0.99),
    "lat_max_ms": max(hist) if hist else 0, "lat_n": n,
    "recv_mib_s": round(sum(r["bytes"] for r in runs) / dur / 2**20, 1),
    "req_s": round(sum(req.values()) / dur),
    "requests": ",".join(f"{k}:{v}" for k, v in sorted(req.items())),
    "errors": ",".join(f"{k}:{v}" for k, v in sorted(err.items())) or "none",
}
print(" ".join(f"{label}.{k}={v}" for k, v in out.items()))
