#!/usr/bin/env bash
# streams_ab.sh [WINDOW_S=30] [ORDER="F N F N"] [COUNTS="1 8 32"] — CPU and memory per passthrough
# stream, ferrocast (F) vs nginx-rtmp (N), alternating runs so that both see the same machine noise.
# Each run: fresh server, N MODE=copy publishers (pre-encoded clip looped with -c copy; run the
# toolkit's make_clip.sh once first), 12 s to settle, then proc_usage.py over WINDOW_S seconds on the
# server's PIDs (ferrocast: its one process; nginx: master + worker), the publishers' CPU over 5 s,
# and a check that every stream's playlist advances. nginx runs are the toolkit's own
# nginx_streams.sh, unchanged; ferrocast runs (fc_streams below) mirror it.
# No viewers: this is ingest + packaging only. nginx-rtmp writes its HLS files to disk (page cache,
# not in its RSS); ferrocast keeps its window in memory (in RSS): see hls_bytes_on_disk below.
# Output: key=value lines per run; $BENCH_OUT/runs/streams.TIME/summary.tsv.
set -u
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/lib.sh"
WIN=${1:-30}; ORDER=${2:-F N F N}; COUNTS=${3:-1 8 32}
RUN=$BENCH_OUT/runs/streams.$(date +%Y%m%d-%H%M%S); mkdir -p "$RUN"
[ -f "$BENCH_OUT/media/clip.flv" ] || "$B/make_clip.sh" >/dev/null
echo "run_dir=$RUN ferrocast=${FC_VERSION:-$(git -C "$FC_REPO" describe --always --dirty 2>/dev/null)} bin=$FC_BIN nginx=$(nginx -v 2>&1 | cut -d/ -f2)"
PIDS=()
cleanup() { kill_pids "${PIDS[@]}" 2>/dev/null; fc_stop; "$B/nginx_ctl.sh" stop >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 130' INT TERM
echo -e "run\tserver\tstreams\tcpu_pct\trss_mib\thwm_mib\tpss_mib\tpub_cpu_pct\tadvancing\tloadavg\tnginx_hls_dir_mib" > "$RUN/summary.tsv"

fc_streams() {  # fc_streams N WIN  -> key=value lines like nginx_streams.sh
  local N=$1 W=$2 i
  fc_start "$RUN/ferrocast.$N.log" || return 1
  PIDS=()
  for i in $(seq 1 "$N"); do
    MODE=copy LOG_DIR=$BENCH_OUT/logs/fs.$N.$i "$B/publish.sh" "$(fc_pub_url s$i)" & PIDS+=($!)
  done
  sleep 12
  echo "streams=$N mode=copy"
  python3 "$B/proc_usage.py" "$W" "$FC_PID" | sed 's/^/ferrocast_/'
  echo "ferrocast_threads=$(ls /proc/$FC_PID/task | wc -l)"
  python3 "$B/proc_usage.py" 5 "${PIDS[@]}" | sed 's/^/publishers_total_/' | grep cpu
  echo "streams_advancing=$(count_advancing "$N")"
  echo "ferrocast_hub_lagged_frames=$(curl -s "$FC_URL/metrics" | awk '/^ferrocast_hub_lagged_frames_total/{print $2}')"
  echo "system_loadavg_1m=$(cut -d' ' -f1 /proc/loadavg)"
  kill_pids "${PIDS[@]}"; PIDS=()
  fc_stop
}

k=0
for N in $COUNTS; do
  for srv in $ORDER; do
    k=$((k + 1))
    f=$RUN/$k.$srv.$N.txt
    if [ "$srv" = F ]; then
      fc_streams "$N" "$WIN" > "$f" 2>&1; p=ferrocast_; name=ferrocast
    else
      ng_port_free || exit 1
      "$B/nginx_streams.sh" "$N" "$WIN" copy > "$f" 2>&1; p=nginx_; name=nginx
      # its window lives on disk (page cache), not in its RSS: how big it was at the end
      echo "nginx_hls_dir_mib=$(du -sm "$BENCH_OUT/nginx/hls" | cut -f1)" >> "$f"
    fi
    v() { sed -n "s/^$1=//p" "$f" | head -1; }
    row="$k\t$name\t$N\t$(v ${p}cpu_pct)\t$(v ${p}rss_mib)\t$(v ${p}hwm_mib)\t$(v ${p}pss_mib)\t$(v publishers_total_cpu_pct)\t$(v streams_advancing)\t$(v system_loadavg_1m)\t$(v nginx_hls_dir_mib)"
    echo -e "$row" >> "$RUN/summary.tsv"
    echo -e "# $row"
  done
done
echo "summary=$RUN/summary.tsv"
column -t "$RUN/summary.tsv"
