#!/usr/bin/env python3
"""lag_from_log.py SERVER_LOG [--stream NAME] [--skip N] [--csv FILE] [--label L]

Part lag at the origin from ferrocast's own log: one `ferrocast::lag` debug line per published
part (enable with RUST_LOG=info,ferrocast::lag=debug), fields stream, msn, part, lag_ms, where
lag_ms = (part stored and visible to HTTP requests) - (arrival of the part's last frame), both
read from the server's wall clock with millisecond resolution.
Prints key=value lines: parts, p50/p90/p99/max lag in ms, and how many parts were over 20/100 ms.
--skip N ignores the first N parts of each stream (default 0). ANSI colour codes are ignored."""
import argparse, re, statistics

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"^(\S+)\s.*ferrocast::lag.*?stream=\"?([A-Za-z0-9_-]+)\"?\s+msn=(\d+)\s+part=(\d+)\s+lag_ms=(\d+)")

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--stream")
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--csv")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    rows, seen = [], {}
    for raw in open(a.log, errors="replace"):
        m = LINE.search(ANSI.sub("", raw))
        if not m:
            continue
        ts, stream, msn, part, lag = m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5))
        if a.stream and stream != a.stream:
            continue
        seen[stream] = seen.get(stream, 0) + 1
        if seen[stream] <= a.skip:
            continue
        rows.append((ts, stream, msn, part, lag))
    L = a.label and a.label + "."
    lags = [r[4] for r in rows]
    print(f"{L}parts={len(lags)}")
    if lags:
        print(f"{L}lag_p50_ms={statistics.median(lags):.0f}")
        print(f"{L}lag_p90_ms={pct(lags, .90)}")
        print(f"{L}lag_p99_ms={pct(lags, .99)}")
        print(f"{L}lag_max_ms={max(lags)}")
        print(f"{L}lag_mean_ms={statistics.mean(lags):.2f}")
        print(f"{L}parts_over_20ms={sum(l > 20 for l in lags)}")
        print(f"{L}parts_over_100ms={sum(l > 100 for l in lags)}")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("log_time,stream,msn,part,lag_ms\n")
            for r in rows:
                f.write("%s,%s,%d,%d,%d\n" % r)

if __name__ == "__main__":
    main()
