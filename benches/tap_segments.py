#!/usr/bin/env python3
"""tap_segments.py HLS_LATENCY_CSV PUB_LOG_DIR T0_OFFSET_S [--label L] [--tap FILE]

Re-reads the per-segment CSV of the toolkit's hls_latency.py (--csv) with exact send times from
rtmp_tap.py (PUB_LOG_DIR/tap.tsv, written when hls_latency ran the tap as --pre with the same
LOG_DIR): for each segment after the first, "listed after its last frame was sent" =
(wall time the segment first appeared in the playlist, 20 ms poll) - (wall time the tap handed
the segment's last video frame to the server). T0_OFFSET_S is hls_latency's t0_offset_s line
(it recovers hls_latency's launch time: launch = t0 - t0_offset, to 1 ms).
Works for MPEG-TS (nginx-rtmp) and fMP4 (ferrocast) playlists alike: segment start times are
relative to the first segment, whose first frame is the publisher's first video frame."""
import argparse, bisect, os, statistics

def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

ap = argparse.ArgumentParser()
ap.add_argument("csv"); ap.add_argument("pub_log"); ap.add_argument("t0_offset", type=float)
ap.add_argument("--label", default=""); ap.add_argument("--tap")
a = ap.parse_args()
L = a.label and a.label + "."
t0 = min(float(w) - int(u) / 1e6 for w, u in (l.split() for l in open(os.path.join(a.pub_log, "progress.tsv")) if len(l.split()) == 2))
launch = t0 - a.t0_offset
vids, first = {}, None
for line in open(a.tap or os.path.join(a.pub_log, "tap.tsv")):
    f = line.split()
    if len(f) >= 4 and f[1] in ("V", "v"):
        vids.setdefault(int(f[2]), float(f[0])); first = int(f[2]) if first is None else first
keys = sorted(vids)
rows = [l.strip().split(",") for l in open(a.csv)][1:]
segs = [(float(r[2]), float(r[3]), float(r[1]) if r[1] not in ("", "None") else None) for r in rows]
after = []
for i in range(1, len(segs)):
    start_rel, appear_rel, extinf = segs[i]
    nxt = segs[i + 1][0] if i + 1 < len(segs) else start_rel + (extinf or 2.0)
    nxt_ts = first + round(nxt * 1000)
    j = bisect.bisect_left(keys, nxt_ts) - 1          # last video frame before the next segment
    if j < 0:
        continue
    after.append((launch + appear_rel - vids[keys[j]]) * 1000)
print(f"{L}tap_segments_measured={len(after)}")
if after:
    print(f"{L}tap_seg_listed_after_last_frame_p50_ms={statistics.median(after):.1f} "
          f"p95_ms={pct(after, .95):.1f} min_ms={min(after):.1f} max_ms={max(after):.1f}")
