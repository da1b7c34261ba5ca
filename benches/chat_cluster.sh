#!/usr/bin/env bash
# chat_cluster.sh — one chat room spread over a cluster: NODES ferrocast nodes (release binary)
# with one nats-server 2.10+ (JetStream), TOTAL WebSocket clients (ferrocast-chat-load processes
# of <= PER_PROC clients over 127.0.0.x sources) spread evenly over the nodes, one sender process
# on node a at RATE messages/s. Then, in the same run, the single-node baseline: benches/chat_load.sh
# with SINGLE clients on one node without [cluster].
# Prints key=value lines: delivered / expected, p50/p99/max send-to-receive, RSS per connection
# summed over the nodes, CPU of every node and of nats-server, load average.
#
# usage: benches/chat_cluster.sh [TOTAL=50000] [RATE=2] [SECS=20] [NODES=3] [SINGLE=19000]
# Build first: cargo build --release --workspace. Stops everything it started.
set -euo pipefail
TOTAL=${1:-50000}; RATE=${2:-2}; SECS=${3:-20}; NODES=${4:-3}; SINGLE=${5:-19000}
PER_PROC=${PER_PROC:-5000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-/tmp/ferrocast-bench}/chat-cluster/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
BIN=$OUT/ferrocast; LOAD=$OUT/ferrocast-chat-load
cp "$REPO/target/release/ferrocast" "$BIN"; cp "$REPO/target/release/ferrocast-chat-load" "$LOAD"
command -v nats-server >/dev/null || { echo "nats-server missing (scripts/setup.sh test)" >&2; exit 2; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
NATS_PORT=47222
nats-server -js -a 127.0.0.1 -p $NATS_PORT -sd "$OUT/js" > "$OUT/nats.log" 2>&1 &
NATS=$!; PIDS+=($NATS)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$NATS_PORT) 2>/dev/null && break; sleep 0.1; done
declare -a HTTP SERVER
for i in $(seq 0 $((NODES - 1))); do
  name=$(printf "\\x$(printf %x $((97 + i)))")
  HTTP[$i]=127.0.0.1:$((48100 + i * 10)); rtmp=127.0.0.1:$((49400 + i * 10))
  cat > "$OUT/$name.toml" <<TOML
[server]
http = "${HTTP[$i]}"
rtmp = "$rtmp"
srt = "127.0.0.1:$((49100 + i * 10))"

[chat]
store = "$OUT/$name-chat.db"
refill = "0s"
max_connections = 20000

[[stream]]
name = "chat"
key = "bench-chat"
pipeline = "passthrough"

[cluster]
nats = ["nats://127.0.0.1:$NATS_PORT"]
node = "$name"
advertise = "http://${HTTP[$i]}"
TOML
  (cd "$REPO" && RUST_LOG=warn NO_COLOR=1 exec "$BIN" serve --config "$OUT/$name.toml") > "$OUT/$name.log" 2>&1 &
  SERVER[$i]=$!; PIDS+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://${HTTP[$i]}/healthz" && break; sleep 0.1; done
done
ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x180:rate=10 \
  -c:v libx264 -preset ultrafast -tune zerolatency -g 20 -f flv "rtmp://127.0.0.1:49400/live/chat?key=bench-chat" \
  > "$OUT/ffmpeg.log" 2>&1 &
PIDS+=($!)
# The room opens on every node once the stream is live (node a) and known to the others.
for i in $(seq 0 $((NODES - 1))); do
  for _ in $(seq 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
      -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
      --max-time 1 "http://${HTTP[$i]}/live/chat/chat" || true)
    [ "$code" = 101 ] && break; sleep 0.2
  done
done
rss_kib() { local s=0; for p in "${SERVER[@]}"; do s=$((s + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $s; }
cpu_ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $s; }
echo "out=$OUT commit=$(git -C "$REPO" describe --always --dirty) nodes=$NODES"
procs=$(( (TOTAL + PER_PROC - 1) / PER_PROC )); per=$(( TOTAL / procs ))
per_node=$(( TOTAL / NODES ))
ramp=$(( 5 + per_node / 1000 * 2 ))
start_at=$(( $(date +%s%3N) + ramp * 1000 ))
rss0=$(rss_kib)
src=2; LPIDS=()
for k in $(seq 0 $((procs - 1))); do
  i=$(( k % NODES )); a=127.0.0.$src; b=127.0.0.$((src + 1)); src=$((src + 2))
  "$LOAD" --url "ws://${HTTP[$i]}/live/chat/chat" --connections "$per" --start-at "$start_at" \
    --duration "$SECS" --tag "c-p$k" --sources "$a,$b" > "$OUT/c-p$k.json" 2> "$OUT/c-p$k.err" &
  LPIDS+=($!); PIDS+=($!)
done
a=127.0.0.$src
"$LOAD" --url "ws://${HTTP[0]}/live/chat/chat" --connections 10 --senders 10 --rate "$RATE" \
  --start-at "$start_at" --duration "$SECS" --tag "c-send" --sources "$a" > "$OUT/c-send.json" 2> "$OUT/c-send.err" &
LPIDS+=($!); PIDS+=($!)
sleep $(( ramp - 1 ))
rss1=$(rss_kib)
cpu0=$(cpu_ticks "${SERVER[@]}"); ncpu0=$(cpu_ticks $NATS); t0=$(date +%s.%N)
for p in "${LPIDS[@]}"; do wait "$p" || true; done
cpu1=$(cpu_ticks "${SERVER[@]}"); ncpu1=$(cpu_ticks $NATS); t1=$(date +%s.%N)
python3 - "$TOTAL" "$SECS" "$rss0" "$rss1" "$cpu0" "$cpu1" "$ncpu0" "$ncpu1" "$t0" "$t1" "$(cut -d' ' -f1-3 /proc/loadavg)" "$OUT"/c-*.json <<'PY'
import json, sys
n, secs, rss0, rss1, cpu0, cpu1, ncpu0, ncpu1, t0, t1, load = sys.argv[1:12]
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
dt = float(t1) - float(t0)
print(f"cluster n={n} connected={connected} sent={sent} delivered={total} expected={expected} "
      f"delivered_ratio={total / expected if expected else 0:.4f} p50_ms={pct(0.5)} p99_ms={pct(0.99)} "
      f"max_ms={max(hist) / 1000 if hist else None} rss_per_conn_kib={(int(rss1) - int(rss0)) / max(1, connected):.2f} "
      f"nodes_cpu_cores={(int(cpu1) - int(cpu0)) / 100 / dt:.2f} nats_cpu_cores={(int(ncpu1) - int(ncpu0)) / 100 / dt:.2f} "
      f"closed_by_server={sum(r['closed_by_server'] for r in runs)} connect_failed={sum(r['connect_failed'] for r in runs)} "
      f"error_frames={sum(r['error_frames'] for r in runs)} loadavg=\"{load}\"")
PY
cleanup; PIDS=()
sleep 2
if [ "$SINGLE" -gt 0 ]; then
  echo "single node baseline, same run:"
  BENCH_OUT=$OUT "$REPO/benches/chat_load.sh" "$SINGLE" "$RATE" "$SECS" | grep '^n='
fi
