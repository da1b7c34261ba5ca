#!/usr/bin/env bash
# g2g.sh [ROUNDS=2] [EXTRAS=1] — glass-to-glass latency in headless Chromium, ferrocast vs nginx-rtmp,
# alternating sessions in one run. Each session: a fresh live-encoded publish.sh (burned-in
# "SENT hh:mm:ss.mmm" clock) through rtmp_tap.py (exact send time of every frame), 7 s for the
# playlist to fill, then g2g_browser.js (play, settle WARM s, SHOTS screenshots EVERY s apart) and
# ocr_shots.py (OCR of the burned clock: raw, toolkit-corrected, and exact via the tap; plus the
# watch page's playingDate figure and hls.js's own latency estimate). Only one publisher runs at a
# time, so the two servers see the same load.
# Sessions per round: ferrocast /watch/NAME (the product page, its default hls.js settings) and
# nginx-rtmp through the toolkit's /player.html with hls.js tuned for the live edge (&sync=1, as in
# the toolkit README). EXTRAS=1 adds, once: /watch/NAME?sync=1, /watch/NAME?sync=0 (PART-HOLD-BACK)
# and the toolkit's /player.html on ferrocast's playlist with hls.js lowLatencyMode defaults.
# In nginx sessions the toolkit's browser_latency.sh (20 s, one OCR shot, "&sync=1") then runs on
# the same stream, reproducing the README's peer row (TOOLKIT=0 skips it).
# env WARM (12), SHOTS (5), EVERY (2). Output: $BENCH_OUT/runs/g2g.TIME/. Stops all it started.
set -u
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"
ROUNDS=${1:-2}; EXTRAS=${2:-1}
WARM=${WARM:-12}; SHOTS=${SHOTS:-5}; EVERY=${EVERY:-2}
RUN=$BENCH_OUT/runs/g2g.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
ng_port_free || exit 1
PIDS=()
cleanup() { kill_pids "${PIDS[@]}" 2>/dev/null; fc_stop; "$B/nginx_ctl.sh" stop >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 130' INT TERM
fc_start "$RUN/ferrocast.log" || exit 1
"$B/nginx_ctl.sh" start >/dev/null || exit 1     # also serves /player.html and /hls.min.js
node "$B/npm_need.js" >/dev/null
echo "run_dir=$RUN ferrocast=$(cat "$BENCH_OUT/bin/ferrocast.version" 2>/dev/null) chromium=$(chromium --version 2>/dev/null | tr ' ' _)"
n=0
session() {  # session LABEL SERVER(fc|ng) PAGE_URL_TEMPLATE (NAME is replaced by the stream name)
  n=$((n + 1))
  local label=$1 srv=$2 dir=$RUN/$n.$1 name up path port=$((29360 + n))
  if [ "$srv" = fc ]; then name=s$n; up=$FC_RTMP; path="/live/$name?key=bench-$name"
  else name=g$n; up=127.0.0.1:19350; path="/live/$name"; fi
  mkdir -p "$dir"
  LOG_DIR=$dir python3 "$HERE/rtmp_tap.py" $port "$up" --max-seconds 120 2>/dev/null & local tap=$!
  wait_port $port
  LOG_DIR=$dir "$B/publish.sh" "rtmp://127.0.0.1:$port$path" 90 & local pub=$!
  PIDS=($tap $pub)
  sleep 7
  local url=${3//NAME/$name}
  echo "# session $n $label $url load=$(cut -d' ' -f1 /proc/loadavg)"
  timeout 120 node "$HERE/g2g_browser.js" "$url" "$dir/shots" "$WARM" "$SHOTS" "$EVERY" > "$dir/browser.txt" 2>&1
  grep -E 'first_playing|decoded|FAILED' "$dir/browser.txt" | sed "s/^/$label./"
  python3 "$HERE/ocr_shots.py" "$dir/shots" "$dir" --label "$label" | grep -E 'median|failed'
  if [ "$srv" = ng ] && [ "${TOOLKIT:-1}" = 1 ]; then   # the toolkit's own method, same stream (README row)
    "$B/browser_latency.sh" "/hls/$name/index.m3u8" "$dir" 20 "$dir/toolkit_shot.png" "&sync=1" > "$dir/toolkit.txt" 2>&1
    grep -E '^latency_|hlsjs_latency' "$dir/toolkit.txt" | sed "s/^/$label.toolkit_browser_latency_sh./"
  fi
  kill_pids $pub $tap; PIDS=()
}
FCW="$FC_URL/watch/NAME"
NGP="$NG_URL/player.html?src=/hls/NAME/index.m3u8&ll=0&sync=1"
for r in $(seq 1 "$ROUNDS"); do
  session ferrocast_watch fc "$FCW"
  session nginx_hlsjs_sync1 ng "$NGP"
done
if [ "$EXTRAS" = 1 ]; then
  session ferrocast_watch_sync1 fc "$FCW?sync=1"
  session ferrocast_watch_sync0 fc "$FCW?sync=0"
  session ferrocast_benchplayer_ll fc "$NG_URL/player.html?src=$FC_URL/live/NAME/source/index.m3u8&ll=1"
  session ferrocast_watch fc "$FCW"
fi
