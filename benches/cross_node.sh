#!/usr/bin/env bash
# cross_node.sh [SECS=60] — cross-node playback: part delivery to an LL-HLS viewer on node B
# (which proxies the stream from its owner) next to a viewer on the owner A, same run, same parts.
#   nats-server -js (127.0.0.1:28222), node A (HTTP 127.0.0.1:28210, RTMP :29480) and node B
#   (HTTP :28211, RTMP :29481), both the release binary with [cluster]; one ffmpeg publishing the
#   60 s 720p30 clip (-c copy, looped, real time) to A; cross_node.py follows the live edge on A
#   and on B (blocking reloads + preload-hinted parts) and compares both with A's `ferrocast::lag`
#   log (when each part became visible on A). Also prints B's proxy counters.
# Output: key=value lines; files in $BENCH_OUT/runs/cross_node.TIME/. Self-contained (no toolkit).
# Everything started here is stopped here (by PID).
set -u
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/.." && pwd)
SECS=${1:-60}
WARM=6
OUT=${BENCH_OUT:-/tmp/ferrocast-bench}
RUN=$OUT/runs/cross_node.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
FC_BIN=${FC_BIN:-$REPO/target/release/ferrocast}
CLIP=$OUT/clip-720p30-bf2-g60-60s.flv
NATS=127.0.0.1:28222
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v nats-server >/dev/null || { echo "nats-server not found (scripts/setup.sh installs it)" >&2; exit 2; }
for port in 28222 28210 28211 29480 29481; do
  if ss -ltn | grep -q "127.0.0.1:$port "; then echo "port $port is in use: not starting" >&2; exit 1; fi
done
if [ ! -f "$CLIP" ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=30" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 60 \
    -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -bf 2 -g 60 -keyint_min 60 \
    -sc_threshold 0 -b:v 3000k -maxrate 3000k -bufsize 3000k -c:a aac -b:a 128k -ar 48000 -ac 2 \
    "$CLIP.tmp.flv" && mv "$CLIP.tmp.flv" "$CLIP"
fi
cp "$FC_BIN" "$RUN/ferrocast"   # a rebuild during the run cannot swap it
echo "run_dir=$RUN secs=$SECS cores=$(nproc) loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg) ferrocast=$(git -C "$REPO" describe --always --dirty)"

nats-server -js -a 127.0.0.1 -p 28222 -sd "$RUN/js" > "$RUN/nats.log" 2>&1 & PIDS+=($!)
start_node() {  # start_node NAME HTTP_PORT RTMP_PORT RUST_LOG
  mkdir -p "$RUN/$1"
  printf '[server]\nhttp = "127.0.0.1:%s"\nrtmp = "127.0.0.1:%s"\nsrt = "127.0.0.1:0"\n[hls]\nsegment_target = "2s"\npart_target = "200ms"\n[chat]\nstore = "%s"\n[[stream]]\nname = "x"\nkey = "bench-x"\npipeline = "passthrough"\n[cluster]\nnats = ["nats://%s"]\nnode = "%s"\nadvertise = "http://127.0.0.1:%s"\n' \
    "$2" "$3" "$RUN/$1/chat.db" "$NATS" "$1" "$2" > "$RUN/$1/ferrocast.toml"
  (cd "$REPO" && RUST_LOG=$4 exec "$RUN/ferrocast" serve --config "$RUN/$1/ferrocast.toml") > "$RUN/$1.log" 2>&1 & PIDS+=($!)
}
sleep 0.5
start_node a 28210 29480 "info,ferrocast::lag=debug,async_nats=warn"
start_node b 28211 29481 "info,async_nats=warn"
for port in 28210 28211; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
done
ffmpeg -hide_banner -nostdin -loglevel warning -re -stream_loop -1 -i "$CLIP" -t $((SECS + WARM + 10)) \
  -c copy -f flv "rtmp://127.0.0.1:29480/live/x?key=bench-x" > "$RUN/publisher.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:28211/live/x/source/index.m3u8" | grep -q EXTINF && break; sleep 0.2
done
sleep "$WARM"
python3 "$HERE/cross_node.py" --a http://127.0.0.1:28210/live/x/source/index.m3u8 \
  --b http://127.0.0.1:28211/live/x/source/index.m3u8 --log "$RUN/a.log" --stream x \
  --duration "$SECS" --raw "$RUN/parts.csv"
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
curl -s http://127.0.0.1:28211/metrics | grep -E '^ferrocast_proxy' | sed 's/^ferrocast_/b./; s/ /=/'
curl -s http://127.0.0.1:28210/metrics | grep -E '^ferrocast_http_requests_by_kind_total\{kind="(part|playlist_blocking)"' \
  | sed 's/^ferrocast_http_requests_by_kind_total{kind="\([a-z_]*\)"} /a.requests_\1=/'
