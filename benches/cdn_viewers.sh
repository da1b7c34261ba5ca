#!/usr/bin/env bash
# cdn_viewers.sh [PHASES="direct edge wrk"] [COUNTS="1000 5000 10000"] [SECS=25]
# Viewer-scale load, ferrocast against nginx-rtmp in the same run, one low-bitrate live stream
# (426x240 30 fps x264 400 kb/s, 2 s GOP, AAC 64k) fed to both servers by one ffmpeg (tee):
#   direct  N LL-HLS viewers (ferrocast-viewers) straight at the origin, then N classic HLS
#           viewers (--mode plain) at nginx serving nginx-rtmp's HLS; delivery latency p50/p99,
#           complete viewers, MiB/s, server CPU, for each N in COUNTS.
#   edge    N LL-HLS viewers through config/nginx-edge.conf (scripts/edge.sh) in front of the
#           origin: origin requests/s by kind against N (EDGE_COUNTS, default COUNTS), edge hit
#           ratio, delivery latency, edge and origin CPU.
#   wrk     segment throughput: wrk on one complete 2 s segment of a 3 Mb/s stream (the toolkit's
#           MODE=copy clip) from ferrocast's memory, and the same bytes from disk by nginx;
#           conns WRK_CONNS (default "10 100 400"), WRK_SECS each (default 8). The peer runs
#           NG_WORKERS nginx workers (default 1, like the toolkit's peer; ferrocast has 2 threads).
# Viewers: ceil(N / PER_PROC) processes (PER_PROC default 5000; one process holds <= ~19,995
# sockets), each over source addresses 127.0.0.2-127.0.0.9 (~28k ports per address).
# Ports (away from the toolkit's fixed ones, which other benches may hold): ferrocast
# FC_HTTP 127.0.0.1:38080 / FC_RTMP :39350, nginx-rtmp peer NG_HTTP :38090 / NG_RTMP_ADDR :39390
# (benches/nginx_peer.conf), edge EDGE_PORT 38081. Output: key=value lines and
# $BENCH_OUT/runs/cdn.TIME/ (viewer JSON, logs, summary.txt). Stops what it started, by PID.
# Build first: `cargo build --release --workspace` (ferrocast and the ferrocast-bench tools).
set -u
export FC_HTTP=${FC_HTTP:-127.0.0.1:38080} FC_RTMP=${FC_RTMP:-127.0.0.1:39350}
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"
PHASES=${1:-direct edge wrk}; COUNTS=${2:-1000 5000 10000}; D=${3:-25}
EDGE_COUNTS=${EDGE_COUNTS:-$COUNTS}; PER_PROC=${PER_PROC:-5000}
NG_HTTP=${NG_HTTP:-127.0.0.1:38090}; NG_RTMP_ADDR=${NG_RTMP_ADDR:-127.0.0.1:39390}
EDGE_PORT=${EDGE_PORT:-38081}; WRK_CONNS=${WRK_CONNS:-10 100 400}; WRK_SECS=${WRK_SECS:-8}
SOURCES=127.0.0.2-127.0.0.9
RUN=$BENCH_OUT/runs/cdn.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
NG_DIR=$BENCH_OUT/nginx-peer; EDGE_DIR=$BENCH_OUT/edge
VIEWERS_BIN=$BENCH_OUT/bin/ferrocast-viewers
mkdir -p "$BENCH_OUT/bin"
cp "$FC_REPO/target/release/ferrocast-viewers" "$VIEWERS_BIN.new" && mv -f "$VIEWERS_BIN.new" "$VIEWERS_BIN" \
  || { echo "build the viewer tool: cargo build --release -p ferrocast-bench" >&2; exit 1; }
PIDS=(); NG_PID=; EDGE_PID=
cleanup() {
  kill_pids "${PIDS[@]}" 2>/dev/null
  [ -n "$EDGE_PID" ] && kill_pids "$EDGE_PID"
  [ -n "$NG_PID" ] && kill_pids "$NG_PID"
  fc_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "$*" | tee -a "$RUN/summary.txt"; }

fc_start "$RUN/ferrocast.log" || exit 1
# nginx-rtmp peer
rm -rf "$NG_DIR"; mkdir -p "$NG_DIR"/{hls,static,tmp}
conf=$(<"$HERE/nginx_peer.conf"); conf=${conf//@WORKERS@/${NG_WORKERS:-1}}; conf=${conf//@OUT@/$NG_DIR}; conf=${conf//@HTTP@/$NG_HTTP}; conf=${conf//@RTMP@/$NG_RTMP_ADDR}
printf '%s\n' "$conf" > "$NG_DIR/nginx.conf"
G='daemon off;'; [ "$(id -u)" -eq 0 ] && G="$G user root;"
nginx -p "$NG_DIR/" -c "$NG_DIR/nginx.conf" -g "$G" 2>>"$NG_DIR/stderr.log" & NG_PID=$!
wait_port "${NG_HTTP##*:}" || exit 1
say "run_dir=$RUN ferrocast=$(cat "$BENCH_OUT/bin/ferrocast.version") nginx=$(nginx -v 2>&1 | cut -d/ -f2) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"

# one publisher, the same bytes to both servers
ffmpeg -hide_banner -nostdin -loglevel warning -re \
  -f lavfi -i "testsrc2=size=426x240:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -c:v libx264 -preset veryfast -tune zerolatency -profile:v main -pix_fmt yuv420p \
  -g 60 -keyint_min 60 -sc_threshold 0 -b:v 400k -maxrate 400k -bufsize 400k \
  -c:a aac -b:a 64k -ar 48000 -ac 2 -flags +global_header -map 0:v -map 1:a -f tee \
  "[f=flv:onfail=ignore]$(fc_pub_url s1)|[f=flv:onfail=ignore]rtmp://$NG_RTMP_ADDR/live/low" \
  2> "$RUN/publisher.log" & PIDS+=($!)
FC_PL=$FC_URL/live/s1/source/index.m3u8
NG_PL=http://$NG_HTTP/hls/low/index.m3u8
for _ in $(seq 100); do
  curl -sf "$FC_PL" | grep -q EXTINF && curl -sf "$NG_PL" | grep -q EXTINF && break; sleep 0.2
done
curl -sf "$NG_PL" | grep -q EXTINF || { echo "nginx-rtmp playlist did not appear" >&2; exit 1; }
sleep 4   # a few segments in both windows

metric() { curl -s "$FC_URL/metrics" | awk -v k="$1" '$1==k{print $2}'; }
kinds="playlist playlist_blocking part segment init"
origin_counts() { for k in $kinds; do echo -n "$(metric "ferrocast_http_requests_by_kind_total{kind=\"$k\"}") "; done; }

# viewers LABEL N URL WATCH_URL MODE PIDS_TO_SAMPLE... -> merged key=value line + CPU of the PIDs
viewers() {
  local label=$1 n=$2 url=$3 watch=$4 mode=$5; shift 5
  local procs=$(( (n + PER_PROC - 1) / PER_PROC )) i per vp=()
  local ramp; ramp=$(awk -v n="$n" 'BEGIN{r=n/2000; if (r>8) r=8; printf "%.2f", r}')
  for i in $(seq 1 $procs); do
    per=$(( n / procs + (i <= n % procs ? 1 : 0) ))
    "$VIEWERS_BIN" --url "$url" --watch-url "$watch" --mode "$mode" --viewers "$per" \
      --duration "$D" --ramp "$ramp" --tail 3 --sources "$SOURCES" --json "$RUN/$label.$n.$i.json" \
      > /dev/null 2> "$RUN/$label.$n.$i.err" & vp+=($!)
  done
  PIDS+=("${vp[@]}")
  # server CPU over the measuring part of the run (after the ramp)
  sleep "$(awk -v r="$ramp" 'BEGIN{print r + 1}')"
  local win; win=$(awk -v d="$D" -v r="$ramp" 'BEGIN{printf "%d", d - r - 3}')
  python3 "$B/proc_usage.py" "$win" "$@" > "$RUN/$label.$n.cpu" &
  local cpu=$!
  python3 "$B/proc_usage.py" "$win" "${vp[@]}" > "$RUN/$label.$n.clientcpu" &
  local ccpu=$!
  wait "${vp[@]}" $cpu $ccpu
  PIDS=("${PIDS[@]:0:1}")
  python3 "$HERE/merge_viewers.py" "$label" "$RUN/$label.$n".*.json | tr '\n' ' '
  echo "$label.server_cpu_pct=$(sed -n 's/cpu_pct=//p' "$RUN/$label.$n.cpu") $label.server_rss_mib=$(sed -n 's/rss_mib=//p' "$RUN/$label.$n.cpu") $label.client_cpu_pct=$(sed -n 's/cpu_pct=//p' "$RUN/$label.$n.clientcpu") load1=$(cut -d' ' -f1 /proc/loadavg)"
}

for phase in $PHASES; do case $phase in
direct)
  for n in $COUNTS; do
    say "$(viewers ferrocast "$n" "$FC_PL" "$FC_PL" ll "$FC_PID")"
    say "$(viewers nginx "$n" "$NG_PL" "$NG_PL" plain "$NG_PID" $(pgrep -P "$NG_PID"))"
  done;;
edge)
  rm -rf "$EDGE_DIR"
  "$FC_REPO/scripts/edge.sh" "$FC_HTTP" "127.0.0.1:$EDGE_PORT" "$EDGE_DIR" 2> "$RUN/edge.stderr" & EDGE_PID=$!
  wait_port "$EDGE_PORT" || exit 1
  EDGE_PL=http://127.0.0.1:$EDGE_PORT/live/s1/source/index.m3u8
  for n in $EDGE_COUNTS; do
    : > "$EDGE_DIR/access.log"; kill -USR1 "$EDGE_PID"   # reopen the log: one run's lines each
    before=($(origin_counts)); parts0=$(metric ferrocast_parts_total); t0=$EPOCHREALTIME
    line=$(viewers edge "$n" "$EDGE_PL" "$FC_PL" ll "$FC_PID" "$EDGE_PID" $(pgrep -P "$EDGE_PID"))
    after=($(origin_counts)); parts1=$(metric ferrocast_parts_total); t1=$EPOCHREALTIME
    sleep 1.5   # access log buffer (flush=1s)
    hit=$(awk '$NF ~ /\.(m4s|mp4)"$/ {t++; if ($3=="HIT") h++} END{printf "%.2f", t ? 100*h/t : 0}' "$EDGE_DIR/access.log")
    origin=$(awk -v t0="$t0" -v t1="$t1" -v p0="$parts0" -v p1="$parts1" -v ks="$kinds" \
      -v b="${before[*]}" -v a="${after[*]}" 'BEGIN{split(ks,k," "); split(b,x," "); split(a,y," ");
        s=""; tot=0; for (i in k) { d=y[i]-x[i]; tot+=d; s=s sprintf(" edge.origin_%s_per_s=%.1f", k[i], d/(t1-t0)) }
        printf "edge.origin_req_per_s=%.1f%s edge.parts_published=%d edge.origin_part_req_per_part=%.2f", tot/(t1-t0), s, p1-p0, (y[3]-x[3])/(p1-p0)}')
    say "$line edge.hit_pct_media=$hit $origin"
  done
  kill_pids "$EDGE_PID"; EDGE_PID=;;
wrk)
  # a 3 Mb/s stream for a realistic segment size (the toolkit's MODE=copy clip)
  [ -f "$BENCH_OUT/media/clip.flv" ] || "$B/make_clip.sh" >/dev/null
  MODE=copy LOG_DIR=$RUN/pub_wrk "$B/publish.sh" "$(fc_pub_url s2)" > /dev/null 2>&1 & PIDS+=($!)
  # the newest complete segment before each pair of runs: it stays in ferrocast's window
  # (6 segments, 12 s) through the 8 s ferrocast run; nginx serves the same bytes from disk
  newest_seg() { curl -sf "$FC_URL/live/s2/source/index.m3u8" | grep '^seg-' | tail -1; }
  for _ in $(seq 100); do [ -n "$(newest_seg)" ] && break; sleep 0.2; done
  for c in $WRK_CONNS; do
    seg=$(newest_seg); [ -n "$seg" ] || { echo "no segment on s2" >&2; exit 1; }
    curl -sf -o "$NG_DIR/static/seg.m4s" "$FC_URL/live/s2/source/$seg" || exit 1
    f=$("$B/wrk_bench.sh" "$FC_URL/live/s2/source/$seg" "$WRK_SECS" "$c")
    g=$("$B/wrk_bench.sh" "http://$NG_HTTP/static/seg.m4s" "$WRK_SECS" "$c")
    fr=$(sed -n 's/.*requests_per_s=\([0-9.]*\).*/\1/p' <<<"$f"); gr=$(sed -n 's/.*requests_per_s=\([0-9.]*\).*/\1/p' <<<"$g")
    say "wrk.conns=$c segment=$seg bytes=$(stat -c %s "$NG_DIR/static/seg.m4s") ferrocast: $f | nginx: $g | ratio=$(awk -v a="$fr" -v b="$gr" 'BEGIN{printf "%.2f", b ? a/b : 0}') load1=$(cut -d' ' -f1 /proc/loadavg)"
  done;;
*) echo "unknown phase $phase" >&2; exit 2;;
esac; done
say "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
