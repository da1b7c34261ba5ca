#!/usr/bin/env bash
# transcode_cpu.sh [SECS=30] [ROUNDS=1] — CPU of the default ladder at real time, three ways in
# one run (ROUNDS times, interleaved, so a busy neighbour on the machine hits all three alike):
#   1. ferrocast, pipelines/default.toml, fed a 1280x720 30 fps publisher over RTMP: 480p and
#      360p rungs (the 720p rung is skipped for a 720p source), split by thread name into
#      decode / 480p / 360p / the rest (proc_threads.py); and ferrocast on the passthrough
#      pipeline, the baseline that transcoding adds to;
#   2. gst-launch-1.0 doing the same decode + two encodes (same elements and settings) from the
#      same clip, paced at real time by synchronised sinks;
#   3. ffmpeg doing the same decode + scale + two libx264 encodes, paced by -re.
# Also reads ferrocast's per-part lag log (ferrocast::lag) per rendition: the transcoded rungs'
# extra latency over the source. Output: key=value lines; files in $BENCH_OUT/runs/.
# Ports 127.0.0.1:28180 (HTTP) and :29450 (RTMP). Everything started here is stopped here (by PID).
set -u
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/.." && pwd)
SECS=${1:-30}
ROUNDS=${2:-1}
WARM=8
OUT=${BENCH_OUT:-/tmp/ferrocast-bench}
RUN=$OUT/runs/transcode_cpu.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
FC=$REPO/target/release/ferrocast
CLIP=$OUT/clip-720p30-bf2-g60-60s.flv
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -f "$CLIP" ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=30" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 60 \
    -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -bf 2 -g 60 -keyint_min 60 \
    -sc_threshold 0 -b:v 3000k -maxrate 3000k -bufsize 3000k -c:a aac -b:a 128k -ar 48000 -ac 2 \
    "$CLIP.tmp.flv" && mv "$CLIP.tmp.flv" "$CLIP"
fi
echo "run_dir=$RUN secs=$SECS cores=$(nproc) loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg) ferrocast=$(git -C "$REPO" describe --always --dirty)"

# The same x264 settings as pipelines/default.toml's rungs (plus what ferrocast adds).
X264="tune=zerolatency speed-preset=veryfast key-int-max=600 option-string=scenecut=0"

ferrocast_run() {  # ferrocast_run LABEL PIPELINE
  local label=$1 dir=$RUN/$1; mkdir -p "$dir/pipelines"
  cp "$REPO"/pipelines/*.toml "$dir/pipelines/"
  printf '[server]\nhttp = "127.0.0.1:28180"\nrtmp = "127.0.0.1:29450"\nsrt = "127.0.0.1:0"\n[hls]\nsegment_target = "2s"\npart_target = "200ms"\n[[stream]]\nname = "cpu"\nkey = "bench-cpu"\npipeline = "%s"\n' "$2" > "$dir/ferrocast.toml"
  (cd "$dir" && RUST_LOG=info,ferrocast::lag=debug exec "$FC" serve --config ferrocast.toml) > "$dir/server.log" 2>&1 &
  local fc=$!; PIDS+=($fc)
  sleep 1
  ffmpeg -hide_banner -nostdin -loglevel warning -re -stream_loop -1 -i "$CLIP" -t $((SECS + WARM + 4)) \
    -c copy -f flv "rtmp://127.0.0.1:29450/live/cpu?key=bench-cpu" > "$dir/publisher.log" 2>&1 &
  local pub=$!; PIDS+=($pub)
  sleep "$WARM"
  python3 "$HERE/proc_threads.py" "$fc" "$SECS" decode=decode 480p=rung-480p 360p=rung-360p | sed "s/^/${label}_/"
  wait "$pub" 2>/dev/null
  kill "$fc"; wait "$fc" 2>/dev/null
  # Part lag per rendition (part stored minus arrival of its last frame), after the warm-up.
  python3 - "$dir/server.log" "$label" <<'PY'
import re, statistics, sys
lags = {}
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r"msn=(\d+) part=\d+ lag_ms=(\d+) rendition=\"?([A-Za-z0-9_-]+)", line)
    if m and int(m.group(1)) >= 4:
        lags.setdefault(m.group(3), []).append(int(m.group(2)))
for r, v in sorted(lags.items()):
    v.sort()
    print(f"{sys.argv[2]}_part_lag_{r}_ms p50={v[len(v)//2]} p90={v[int(len(v)*0.9)]} max={v[-1]} parts={len(v)}")
PY
}

gst_run() {  # gst_run LABEL
# gst-launch-1.0: same decode and encoders; queues named so their threads can be told apart.
gst-launch-1.0 -q filesrc location="$CLIP" ! flvdemux name=d d.video ! queue name=decode ! h264parse \
  ! avdec_h264 max-threads=2 ! tee name=t \
  t. ! queue name=rung-480p max-size-buffers=15 ! videoscale ! videoconvert ! video/x-raw,width=854,height=480,pixel-aspect-ratio=1/1 \
     ! x264enc bitrate=1200 $X264 ! video/x-h264,profile=main ! h264parse ! fakesink sync=true \
  t. ! queue name=rung-360p max-size-buffers=15 ! videoscale ! videoconvert ! video/x-raw,width=640,height=360,pixel-aspect-ratio=1/1 \
     ! x264enc bitrate=700 $X264 ! video/x-h264,profile=main ! h264parse ! fakesink sync=true \
  > "$RUN/$1.log" 2>&1 &
GST=$!; PIDS+=($GST)
sleep "$WARM"
python3 "$HERE/proc_threads.py" "$GST" "$SECS" decode=decode 480p=rung-480p 360p=rung-360p | sed "s/^/${1}_/"
kill "$GST"; wait "$GST" 2>/dev/null
}

ffmpeg_run() {  # ffmpeg_run LABEL

# ffmpeg: same decode, scale and x264 settings.
XF="-c:v libx264 -preset veryfast -tune zerolatency -profile:v main -g 600 -sc_threshold 0 -f null -"
ffmpeg -hide_banner -nostdin -loglevel error -re -i "$CLIP" -filter_complex \
  "[0:v]split=2[a][b];[a]scale=854:480[a1];[b]scale=640:360[b1]" \
  -map "[a1]" -b:v 1200k $XF -map "[b1]" -b:v 700k $XF > "$RUN/$1.log" 2>&1 &
FF=$!; PIDS+=($FF)
sleep "$WARM"
python3 "$HERE/proc_threads.py" "$FF" "$SECS" | sed "s/^/${1}_/" | grep total
kill "$FF"; wait "$FF" 2>/dev/null
}

ferrocast_run fc_passthrough passthrough
for r in $(seq 1 "$ROUNDS"); do
  ferrocast_run "r${r}_fc_ladder" default
  gst_run "r${r}_gst_launch"
  ffmpeg_run "r${r}_ffmpeg"
done
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
