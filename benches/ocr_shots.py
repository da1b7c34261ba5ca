#!/usr/bin/env python3
"""ocr_shots.py SHOT_DIR PUB_LOG_DIR [--label L]

Glass-to-glass latency from the screenshots g2g_browser.js took (SHOT_DIR/shots.json): reads the
clock publish.sh burns into each frame ("SENT HH:MM:SS.mmm" = publisher launch time of day +
frame PTS) with ffmpeg (scale the video to 1280x720, crop the clock, negate) + tesseract, then
  raw          = screenshot wall time - burned clock
  corrected    = raw - (t0 - launch)     the toolkit's ocr_latency.py method (t0 from progress.tsv;
                                         README peer figures use it; t0 is biased ~1-2 frames early,
                                         so this reads a few tens of ms high)
  tap          = screenshot wall time - the time rtmp_tap.py saw that very frame (PTS -> RTMP ts)
                 leave the publisher (PUB_LOG_DIR/tap.tsv; exact)
Prints per-shot lines and median/min/max per method. Temp images go to $BENCH_OUT/tmp.
"""
import argparse, bisect, json, os, re, statistics, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("shot_dir"); ap.add_argument("pub_log"); ap.add_argument("--label", default="")
a = ap.parse_args()
L = a.label and a.label + "."
TMP = os.path.join(os.environ.get("BENCH_OUT", "/tmp/ferrocast-bench"), "tmp")
os.makedirs(TMP, exist_ok=True)
start = dict(kv.split("=", 1) for kv in open(os.path.join(a.pub_log, "start.txt")).read().split() if "=" in kv)
launch, tod_offset = float(start["start_epoch"]), float(start["tod_offset"])
t0 = min(float(w) - int(u) / 1e6 for w, u in (l.split() for l in open(os.path.join(a.pub_log, "progress.tsv")) if len(l.split()) == 2))
vids, first = {}, None
tap = os.path.join(a.pub_log, "tap.tsv")
if os.path.exists(tap):
    for line in open(tap):
        f = line.split()
        if len(f) >= 4 and f[1] in ("V", "v"):
            vids.setdefault(int(f[2]), float(f[0])); first = int(f[2]) if first is None else first
keys = sorted(vids)
shots = json.load(open(os.path.join(a.shot_dir, "shots.json")))["shots"]
res = {"raw": [], "corrected": [], "tap": [], "pdt": [], "hlsjs": []}
for i, s in enumerate(shots):
    png = os.path.join(TMP, "ocr_%d.png" % os.getpid())
    subprocess.run(["ffmpeg", "-v", "error", "-i", s["file"], "-vf", "scale=1280:720,crop=720:80:30:30,negate", "-y", png], check=True)
    txt = subprocess.run(["tesseract", png, "-", "--psm", "7"], capture_output=True, text=True).stdout
    os.remove(png)
    m = re.search(r"(\d\d):(\d\d):(\d\d)[.,](\d{3})", txt)
    if not m:
        print(f"{L}shot={i} ocr_failed text={txt.strip()!r}"); continue
    h, mi, sec, ms = map(int, m.groups())
    burned = h * 3600 + mi * 60 + sec + ms / 1000
    wall = s["wall_ms"] / 1000
    wall_tod = wall - int(wall / 86400) * 86400
    raw = (wall_tod - burned) % 86400
    corr = raw - (t0 - launch)
    line = f"{L}shot={i} ocr={m.group(0)} raw_s={raw:.3f} corrected_s={corr:.3f}"
    res["raw"].append(raw); res["corrected"].append(corr)
    if keys:
        pts_ms = round(((burned - tod_offset) % 86400) * 1000)
        ts = first + pts_ms
        j = min(len(keys) - 1, bisect.bisect_left(keys, ts))
        if j > 0 and abs(keys[j - 1] - ts) < abs(keys[j] - ts):
            j -= 1
        if abs(keys[j] - ts) <= 20:
            g = wall - vids[keys[j]]
            res["tap"].append(g); line += f" tap_s={g:.3f}"
    if s.get("g2g_pdt_ms") is not None:
        res["pdt"].append(s["g2g_pdt_ms"] / 1000); line += f" playingDate_s={s['g2g_pdt_ms'] / 1000:.3f}"
    if s.get("hls_latency_s") is not None:
        res["hlsjs"].append(s["hls_latency_s"]); line += f" hlsjs_latency_s={s['hls_latency_s']:.3f}"
    print(line)
for k, xs in res.items():
    if xs:
        print(f"{L}g2g_{k}_median_s={statistics.median(xs):.3f} min_s={min(xs):.3f} max_s={max(xs):.3f} n={len(xs)}")
