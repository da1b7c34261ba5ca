#!/usr/bin/env bash
# srt_pes.sh [SECONDS=40] — SRT part lag against the sender's audio PES size. ffmpeg's mpegts muxer
# (and encoders built on it) packs ~2.9 KB of AAC per PES by default (~150 ms at 160 kb/s), so audio
# arrives in bursts after its video, and ferrocast holds each part's video until its audio is in
# (src/ingest/interleave.rs). Two live 720p30 encodes over SRT into one ferrocast at once: `lat`
# with the default -pes_payload_size 2930, `g2g` with -pes_payload_size 0 (one AAC frame per PES).
# Measure: the `ferrocast::lag` log (part stored minus arrival of its last frame), lag_from_log.py.
set -u
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"
D=${1:-40}
RUN=$BENCH_OUT/runs/srt_pes.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
PIDS=()
cleanup() { kill_pids "${PIDS[@]}" 2>/dev/null; fc_stop; }
trap cleanup EXIT
trap 'exit 130' INT TERM
FC_LOG=info,ferrocast::lag=debug,srt_protocol=error,srt_tokio=error fc_start "$RUN/lag.log" || exit 1
echo "run_dir=$RUN loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
for pes in 2930 0; do
  name=lat; [ "$pes" = 0 ] && name=g2g
  ffmpeg -hide_banner -nostdin -loglevel error \
    -re -f lavfi -i "testsrc2=size=1280x720:rate=30" -re -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$D" -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 3000k -maxrate 3000k -bufsize 3000k \
    -c:a aac -b:a 160k -ar 48000 -ac 2 \
    -f mpegts -pes_payload_size "$pes" "$(fc_srt_url $name)" 2> "$RUN/ffmpeg.$pes.log" & PIDS+=($!)
done
for p in "${PIDS[@]}"; do wait "$p"; done
PIDS=()
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$HERE/lag_from_log.py" "$RUN/lag.log" --stream lat --skip 5 --label pes_2930
python3 "$HERE/lag_from_log.py" "$RUN/lag.log" --stream g2g --skip 5 --label pes_0
