#!/usr/bin/env python3
"""proc_threads.py PID SECS GROUP=PREFIX[,PREFIX...] ...

CPU of one process over SECS seconds of wall time, split by thread name: reads utime+stime of
every thread (/proc/PID/task/TID/stat) before and after, and sums the difference per group of
thread-name prefixes (threads inherit their creator's name, so x264's worker threads count with
the GStreamer streaming thread that started them). Threads matching no group count as `other`.
Prints key=value lines: cpu_total_pct and cpu_GROUP_pct (100 = one core)."""
import os, sys, time

def threads(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            raw = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]))  # utime, stime
    return out

def main():
    pid, secs = int(sys.argv[1]), float(sys.argv[2])
    groups = [(g.split("=")[0], g.split("=")[1].split(",")) for g in sys.argv[3:]]
    tck = os.sysconf("SC_CLK_TCK")
    a, t0 = threads(pid), time.time()
    time.sleep(secs)
    b, t1 = threads(pid), time.time()
    wall = t1 - t0
    sums = {g: 0 for g, _ in groups}
    sums["other"] = 0
    for tid, (name, ticks) in b.items():
        d = ticks - a.get(tid, (name, 0))[1]
        for g, prefixes in groups:
            if any(name.startswith(p) for p in prefixes):
                sums[g] += d
                break
        else:
            sums["other"] += d
    total = sum(sums.values())
    print(f"cpu_total_pct={100 * total / tck / wall:.1f}")
    for g, v in sums.items():
        print(f"cpu_{g}_pct={100 * v / tck / wall:.1f}")

main()
