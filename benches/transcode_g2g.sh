#!/usr/bin/env bash
# transcode_g2g.sh [SECS=20] [ROUNDS=2] — glass-to-glass latency of a transcoded rung next to the
# source, in one run: ferrocast on pipelines/default.toml, fed the 720p30 bench clip over RTMP;
# headless Chromium (tests/browser/play.js --pin) plays /watch/g2g pinned to the source (720),
# then to the 360p rung, ROUNDS times alternating. Glass-to-glass = now − program date-time of the
# frame on screen (PDTs are identical across renditions, so the difference between rungs is the
# rung's added latency as a viewer sees it). Ports 127.0.0.1:28190 / :29460.
set -u
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/.." && pwd)
SECS=${1:-20}; ROUNDS=${2:-2}
OUT=${BENCH_OUT:-/tmp/ferrocast-bench}
RUN=$OUT/runs/transcode_g2g.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN/pipelines"
CLIP=$OUT/clip-720p30-bf2-g60-60s.flv
[ -f "$CLIP" ] || { echo "run benches/transcode_cpu.sh first (it makes $CLIP)" >&2; exit 2; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
cp "$REPO"/pipelines/*.toml "$RUN/pipelines/"
printf '[server]\nhttp = "127.0.0.1:28190"\nrtmp = "127.0.0.1:29460"\nsrt = "127.0.0.1:0"\n[hls]\nsegment_target = "2s"\npart_target = "200ms"\n[[stream]]\nname = "g2g"\nkey = "bench-g2g"\npipeline = "default"\n' > "$RUN/ferrocast.toml"
# web/ is served relative to the working directory: run from the repo, config and pipelines from RUN.
(cd "$REPO" && exec "$REPO/target/release/ferrocast" serve --config "$RUN/ferrocast.toml") > "$RUN/server.log" 2>&1 &
PIDS+=($!)
sleep 1
ffmpeg -hide_banner -nostdin -loglevel warning -re -stream_loop -1 -i "$CLIP" -c copy -f flv \
  "rtmp://127.0.0.1:29460/live/g2g?key=bench-g2g" > "$RUN/publisher.log" 2>&1 &
PIDS+=($!)
sleep 6
echo "run_dir=$RUN secs=$SECS rounds=$ROUNDS loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  for h in 720 360; do
    node "$REPO/tests/browser/play.js" --pin "http://127.0.0.1:28190/watch/g2g" "$SECS" "$h" > "$RUN/pin-$h-$r.json" 2> "$RUN/pin-$h-$r.err"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); g=d.get('g2gMs') or {}; print(f\"round={sys.argv[2]} height={sys.argv[3]} g2g_median_ms={g.get('median')} min={g.get('min')} max={g.get('max')} n={g.get('n')} error={d.get('error')}\")" "$RUN/pin-$h-$r.json" "$r" "$h"
  done
done
