#!/usr/bin/env bash
# chat_load.sh — one chat room under load: N WebSocket clients (ferrocast-chat-load, several
# processes over 127.0.0.x source addresses), one sender process at RATE messages/s, for each N
# in COUNTS. Prints key=value lines per N: delivered messages/s (and the fraction of expected
# deliveries), p50/p99/max send-to-receive latency, server RSS per connection (all connected,
# before sending, minus before connecting), server CPU during the run, load average.
#
# usage: benches/chat_load.sh [COUNTS="1000 10000 19000"] [RATE=10] [SECS=20]
# env:   BENCH_OUT (default /tmp/ferrocast-bench); PER_PROC clients per process (default 5000);
#        CHAT_HTTP / CHAT_RTMP listen addresses (default 127.0.0.1:48080 / 127.0.0.1:49350).
# Stops everything it started, by PID, also on Ctrl-C.
# Build first: `cargo build --release --workspace` (ferrocast and the ferrocast-bench tools).
set -euo pipefail
COUNTS=${1:-"1000 10000 19000"}
RATE=${2:-10}
SECS=${3:-20}
PER_PROC=${PER_PROC:-5000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-/tmp/ferrocast-bench}/chat-load/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
HTTP=${CHAT_HTTP:-127.0.0.1:48080}
RTMP=${CHAT_RTMP:-127.0.0.1:49350}
BIN=$OUT/ferrocast
LOAD=$OUT/ferrocast-chat-load
cp "$REPO/target/release/ferrocast" "$BIN"
cp "$REPO/target/release/ferrocast-chat-load" "$LOAD"

cat > "$OUT/chat.toml" <<TOML
[server]
http = "$HTTP"
rtmp = "$RTMP"
srt = "127.0.0.1:49000"

[chat]
store = "$OUT/chat.db"
refill = "0s"          # the load's senders are not rate-limited
max_connections = 20000

[[stream]]
name = "chat"
key = "bench-chat"
pipeline = "passthrough"
TOML

# A previous run's server may still be exiting.
for _ in $(seq 100); do ss -ltn | grep -q " ${HTTP} " || break; sleep 0.1; done
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

(cd "$REPO" && RUST_LOG=warn,ferrocast::chat=info exec "$BIN" serve --config "$OUT/chat.toml") > "$OUT/server.log" 2>&1 &
SERVER=$!
PIDS+=($SERVER)
for _ in $(seq 50); do curl -sf -o /dev/null "http://$HTTP/healthz" && break; sleep 0.1; done
# A small live publisher: the room opens when its stream goes live.
ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x180:rate=10 \
  -c:v libx264 -preset ultrafast -tune zerolatency -g 20 -f flv "rtmp://$RTMP/live/chat?key=bench-chat" \
  > "$OUT/ffmpeg.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  curl -s "http://$HTTP/api/v1/streams" | grep -q '"chat_connections":0' && break; sleep 0.2
done

chat_conns() {
  curl -s "http://$HTTP/api/v1/streams" | python3 -c "$PY_CONNS"
}
PY_CONNS='import json, sys
print(json.load(sys.stdin)[0]["chat_connections"])'
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
echo "out=$OUT"
echo "commit=$(git -C "$REPO" describe --always --dirty)"
src=2
for N in $COUNTS; do
  procs=$(( (N + PER_PROC - 1) / PER_PROC ))
  per=$(( N / procs ))
  rss0=$(rss_kib)
  ramp=$(( 5 + N / 1000 * 2 ))
  start_at=$(( $(date +%s%3N) + ramp * 1000 ))
  LPIDS=()
  for k in $(seq 0 $((procs - 1))); do
    a=127.0.0.$src; b=127.0.0.$((src + 1)); src=$((src + 2))
    "$LOAD" --url "ws://$HTTP/live/chat/chat" --connections "$per" --start-at "$start_at" \
      --duration "$SECS" --tag "n$N-p$k" --sources "$a,$b" > "$OUT/n$N-p$k.json" 2> "$OUT/n$N-p$k.err" &
    LPIDS+=($!); PIDS+=($!)
  done
  a=127.0.0.$src; src=$((src + 1))
  "$LOAD" --url "ws://$HTTP/live/chat/chat" --connections 10 --senders 10 --rate "$RATE" \
    --start-at "$start_at" --duration "$SECS" --tag "n$N-send" --sources "$a" \
    > "$OUT/n$N-send.json" 2> "$OUT/n$N-send.err" &
  LPIDS+=($!); PIDS+=($!)
  # RSS with everyone connected, before the first message.
  sleep $(( ramp - 1 ))
  rss1=$(rss_kib)
  conns=$(chat_conns)
  cpu0=$(cpu_ticks); t0=$(date +%s.%N)
  for p in "${LPIDS[@]}"; do wait "$p" || true; done
  cpu1=$(cpu_ticks); t1=$(date +%s.%N)
  rss2=$(rss_kib)
  python3 - "$N" "$SECS" "$rss0" "$rss1" "$rss2" "$conns" "$cpu0" "$cpu1" "$t0" "$t1" "$(cut -d' ' -f1-3 /proc/loadavg)" "$OUT"/n$N-*.json <<'PY'
import json, sys
n, secs, rss0, rss1, rss2, conns = sys.argv[1:7]
cpu0, cpu1, t0, t1, load = sys.argv[7:12]
runs = [json.loads(open(f).read()) for f in sys.argv[12:] if open(f).read().strip()]
hist = {}
for r in runs:
    for us, c in r["hist_us"]:
        hist[us] = hist.get(us, 0) + c
total = sum(hist.values())
def pct(p):
    want, acc = max(1, round(total * p)), 0
    for us in sorted(hist):
        acc += hist[us]
        if acc >= want:
            return (us + 50) / 1000
sent = sum(r["sent"] for r in runs)
connected = sum(r["connected_at_start"] for r in runs)
expected = sent * connected
conns = int(conns) if conns.isdigit() else connected
per_conn = (int(rss1) - int(rss0)) / max(1, conns)
cpu = (int(cpu1) - int(cpu0)) / 100 / (float(t1) - float(t0))
print(f"n={n} connected={connected} server_conns={conns} sent={sent} delivered={total} "
      f"expected={expected} delivered_ratio={total / expected if expected else 0:.4f} "
      f"delivered_per_s={total / float(secs):.0f} p50_ms={pct(0.5)} p99_ms={pct(0.99)} "
      f"max_ms={max(hist) / 1000 if hist else None} "
      f"rss_before_kib={rss0} rss_connected_kib={rss1} rss_after_kib={rss2} "
      f"rss_per_conn_kib={per_conn:.2f} server_cpu_cores={cpu:.2f} "
      f"closed_by_server={sum(r['closed_by_server'] for r in runs)} "
      f"connect_failed={sum(r['connect_failed'] for r in runs)} "
      f"error_frames={sum(r['error_frames'] for r in runs)} loadavg=\"{load}\"")
PY
  sleep 3
done
