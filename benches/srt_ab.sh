#!/usr/bin/env bash
# srt_ab.sh [WINDOW_S=30] [COUNTS="1 8"] [ORDER="R S R S"] [LAG_S=60] — SRT ingest beside RTMP.
# 1. Part lag, same measure as part_lag.sh (ferrocast::lag log: part stored minus arrival of its
#    last frame, server clock): two live-encoded publish.sh streams into one ferrocast at the same
#    time, `lat` over SRT and `g2g` over RTMP, LAG_S seconds.
# 2. CPU and memory per stream: alternating runs of N MODE=copy publishers over RTMP (R) or SRT
#    (S) into a fresh ferrocast, 12 s to settle, proc_usage.py over WINDOW_S seconds, then a check
#    that every stream's playlist advances. Same clip, same bitrate, only the protocol differs.
# Output: key=value lines; $BENCH_OUT/runs/srt.TIME/summary.tsv.
set -u
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"
WIN=${1:-30}; COUNTS=${2:-1 8}; ORDER=${3:-R S R S}; LAG=${4:-60}
RUN=$BENCH_OUT/runs/srt.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
[ -f "$BENCH_OUT/media/clip.flv" ] || "$B/make_clip.sh" >/dev/null
echo "run_dir=$RUN ferrocast=${FC_VERSION:-$(git -C "$FC_REPO" describe --always --dirty 2>/dev/null)}"
PIDS=()
cleanup() { kill_pids "${PIDS[@]}" 2>/dev/null; fc_stop; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. part lag, SRT and RTMP side by side
if [ "$LAG" -gt 0 ]; then
  FC_LOG=info,ferrocast::lag=debug,srt_protocol=error,srt_tokio=error fc_start "$RUN/lag.log" || exit 1
  LOG_DIR=$RUN/pub_srt "$B/publish.sh" "$(fc_srt_url lat)" "$LAG" & PIDS+=($!)
  LOG_DIR=$RUN/pub_rtmp "$B/publish.sh" "$(fc_pub_url g2g)" "$LAG" & PIDS+=($!)
  for p in "${PIDS[@]}"; do wait "$p"; done
  PIDS=()
  echo "lag_loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
  python3 "$HERE/lag_from_log.py" "$RUN/lag.log" --stream lat --skip 5 --label srt
  python3 "$HERE/lag_from_log.py" "$RUN/lag.log" --stream g2g --skip 5 --label rtmp
  fc_stop
fi

# --- 2. CPU per stream
echo -e "run\tprotocol\tstreams\tcpu_pct\trss_mib\tpub_cpu_pct\tadvancing\tloadavg" > "$RUN/summary.tsv"
run_streams() {  # run_streams PROTO N
  local proto=$1 N=$2 i url
  fc_start "$RUN/ferrocast.$proto.$N.log" || return 1
  PIDS=()
  for i in $(seq 1 "$N"); do
    if [ "$proto" = srt ]; then url=$(fc_srt_url "s$i"); else url=$(fc_pub_url "s$i"); fi
    MODE=copy LOG_DIR=$BENCH_OUT/logs/srt_ab.$proto.$N.$i "$B/publish.sh" "$url" & PIDS+=($!)
  done
  sleep 12
  python3 "$B/proc_usage.py" "$WIN" "$FC_PID"
  python3 "$B/proc_usage.py" 5 "${PIDS[@]}" | sed 's/^/publishers_total_/' | grep cpu
  echo "advancing=$(count_advancing "$N")"
  echo "loadavg=$(cut -d' ' -f1 /proc/loadavg)"
  kill_pids "${PIDS[@]}"; PIDS=()
  fc_stop
}
k=0
for N in $COUNTS; do
  for o in $ORDER; do
    k=$((k + 1)); proto=rtmp; [ "$o" = S ] && proto=srt
    f=$RUN/$k.$proto.$N.txt
    run_streams "$proto" "$N" > "$f" 2>&1
    v() { sed -n "s/^$1=//p" "$f" | head -1; }
    row="$k\t$proto\t$N\t$(v cpu_pct)\t$(v rss_mib)\t$(v publishers_total_cpu_pct)\t$(v advancing)\t$(v loadavg)"
    echo -e "$row" >> "$RUN/summary.tsv"; echo -e "# $row"
  done
done
echo "summary=$RUN/summary.tsv"
column -t "$RUN/summary.tsv"
