#!/usr/bin/env bash
# part_lag.sh [DURATION_S=75] — part/segment availability latency, ferrocast and nginx-rtmp side by
# side in one run, each fed by its own live-encoded publish.sh (720p30 x264, 2 s GOP) through an
# rtmp_tap.py relay that logs exact frame send times:
#   1. ferrocast's own `ferrocast::lag` log lines (lag_from_log.py): part stored minus arrival of
#      its last frame, server clock, ms resolution.
#   2. part_latency.py on ferrocast: a client following the live edge with blocking playlist
#      reloads and preload-hinted part GETs; each part's availability minus its last frame's send
#      time (tap) — and the same with publish.sh's progress.tsv (the coarse method).
#   3. the toolkit's hls_latency.py against both servers (segments, 20 ms poll; its "after segment
#      end" is the README's peer figure), plus tap_segments.py: segment listed minus its last
#      frame's send time (tap).
# Output: $BENCH_OUT/runs/part_lag.TIME/ (server log, CSVs, publisher logs) and key=value lines.
# Ports: ferrocast $FC_HTTP/$FC_RTMP, taps 127.0.0.1:29351 (-> ferrocast) and :29352 (-> nginx),
# nginx 18080/19350. Everything started here is stopped here (by PID).
set -u
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"
D=${1:-75}
RUN=$BENCH_OUT/runs/part_lag.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
ng_port_free || exit 1
PIDS=()
cleanup() { kill_pids "${PIDS[@]}" 2>/dev/null; fc_stop; "$B/nginx_ctl.sh" stop >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 130' INT TERM
FC_LOG=info,ferrocast::lag=debug fc_start "$RUN/ferrocast.log" || exit 1
"$B/nginx_ctl.sh" start >/dev/null || exit 1
echo "run_dir=$RUN ferrocast=$(cat "$BENCH_OUT/bin/ferrocast.version" 2>/dev/null) loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"

# the outside-in client must see segment 0: start it first (it waits for the playlist)
python3 "$HERE/part_latency.py" --label ferrocast_parts --playlist "$FC_URL/live/lat/source/index.m3u8" \
  --duration $((D - 8)) --pub-log "$RUN/fc_pub" --server-log "$RUN/ferrocast.log" \
  --raw "$RUN/fc_parts.raw.csv" --csv "$RUN/fc_parts.csv" > "$RUN/fc_parts.txt" 2>&1 & PIDS+=($!)
sleep 0.5
# hls_latency.py runs the tap (--pre) and the publisher (--pub) with the same LOG_DIR; the
# publisher links that dir to a fixed name so that the other tools can find tap.tsv/progress.tsv
lat() {  # lat LABEL PLAYLIST TAP_PORT UPSTREAM PUB_PATH LINK
  python3 "$B/hls_latency.py" --label "$1" --playlist "$2" --duration "$D" --csv "$RUN/$1_segments.csv" \
    --pre "python3 $HERE/rtmp_tap.py $3 $4 --max-seconds $((D + 30))" --pre-wait 2 \
    --pub "bash -c 'ln -sfn \"\$LOG_DIR\" $6; exec $B/publish.sh \"rtmp://127.0.0.1:$3$5\"'" > "$RUN/$1_hls_latency.txt" 2>&1
}
lat ferrocast "$FC_URL/live/lat/source/index.m3u8" 29351 "$FC_RTMP" "/live/lat?key=bench-lat" "$RUN/fc_pub" & PIDS+=($!)
lat nginx "$NG_URL/hls/lat/index.m3u8" 29352 127.0.0.1:19350 "/live/lat" "$RUN/ng_pub" & PIDS+=($!)
for p in "${PIDS[@]}"; do wait "$p"; done
PIDS=()
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$HERE/lag_from_log.py" "$RUN/ferrocast.log" --stream lat --label ferrocast_log --csv "$RUN/fc_lag_log.csv"
cat "$RUN/fc_parts.txt"
# same parts, coarse method (publish.sh progress.tsv instead of the tap)
python3 "$HERE/part_latency.py" --label ferrocast_parts_progress_tsv --report "$RUN/fc_parts.raw.csv" \
  --pub-log "$RUN/fc_pub" --tap '' | grep -E 'source|after_last_frame' || true
for s in ferrocast nginx; do
  grep -vE 'logdir' "$RUN/${s}_hls_latency.txt"
  off=$(sed -n "s/^$s.t0_offset_s=//p" "$RUN/${s}_hls_latency.txt")
  pub=$RUN/fc_pub; [ $s = nginx ] && pub=$RUN/ng_pub
  [ -n "$off" ] && python3 "$HERE/tap_segments.py" "$RUN/${s}_segments.csv" "$pub" "$off" --label $s
done
