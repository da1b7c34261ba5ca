#!/usr/bin/env bash
# chat_sync.sh [N=30] [EVERY_MS=1200] — chat in step with the picture on the watch page.
# Starts ferrocast (benches/lib.sh: $FC_BIN, bench config plus a [chat] store in $BENCH_OUT),
# publishes `g2g` with the toolkit's publish.sh (live 720p30 x264, 2 s GOP), then runs
# benches/chat_sync.js twice in headless Chromium: /watch/g2g (messages over the WebSocket, held
# until the picture's program date-time reaches each message's pdt) and /watch/g2g?chat=stream
# (messages from the in-stream emsg/ID3 metadata, held until playback reaches their media time).
# Each sends N messages EVERY_MS apart and reports, per message, its appearance on the page minus
# the moment its picture was on screen (p50/p95/max). Output: $BENCH_OUT/runs/chat_sync.TIME/.
# Ports 28200/29470 (UDP 29120) unless FC_HTTP/FC_RTMP/FC_SRT say otherwise. ~2.5 min.
# Everything started here is stopped here (by PID).
set -u
# Own ports unless set (away from the other scripts' defaults).
export FC_HTTP=${FC_HTTP:-127.0.0.1:28200} FC_RTMP=${FC_RTMP:-127.0.0.1:29470} FC_SRT=${FC_SRT:-127.0.0.1:29120}
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"
N=${1:-30}; EVERY=${2:-1200}
RUN=$BENCH_OUT/runs/chat_sync.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
# The bench config plus a chat log of its own (not the repository's data/).
eval "$(declare -f fc_config | sed '1s/fc_config/fc_config_base/')"
fc_config() { fc_config_base; printf '\n[chat]\nstore = "%s"\n' "$RUN/chat.db" >> "$FC_DIR/bench.toml"; }
PIDS=()
cleanup() { kill_pids "${PIDS[@]}" 2>/dev/null; fc_stop; }
trap cleanup EXIT
trap 'exit 130' INT TERM
fc_start "$RUN/ferrocast.log" || exit 1
LOG_DIR=$RUN/pub "$B/publish.sh" "$(fc_pub_url g2g)" > "$RUN/publish.out" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -s "$FC_URL/live/g2g/source/index.m3u8" | grep -q EXTINF && break; sleep 0.2; done
echo "run_dir=$RUN ferrocast=$(cat "$BENCH_OUT/bin/ferrocast.version" 2>/dev/null) loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== websocket (/watch/g2g)"
node "$HERE/chat_sync.js" "$FC_URL/watch/g2g" "$N" "$EVERY" "$RUN/ws.json" | tee "$RUN/ws.txt"
echo "== in-stream metadata (/watch/g2g?chat=stream)"
node "$HERE/chat_sync.js" "$FC_URL/watch/g2g?chat=stream" "$N" "$EVERY" "$RUN/stream.json" | tee "$RUN/stream.txt"
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
