#!/usr/bin/env bash
# ferrocast_ctl.sh start [LOGFILE] | stop | pids | config
# Starts the ferrocast release binary on a generated bench config ($BENCH_OUT/ferrocast/bench.toml:
# streams lat, g2g, s1..s$FC_STREAMS, key `bench-NAME`, pipeline passthrough, 2 s segments,
# 200 ms parts) at $FC_HTTP / $FC_RTMP (default 127.0.0.1:28080 / 127.0.0.1:29350), like the
# toolkit's nginx_ctl.sh. RUST_LOG comes from FC_LOG (e.g. FC_LOG=info,ferrocast::lag=debug).
# stop sends SIGTERM to the recorded PID only. See lib.sh for every setting.
set -u
. "$(dirname "$0")/lib.sh"
case "${1:-}" in
  start)  fc_start "${2:-$FC_DIR/server.log}" || exit 1
          echo "ferrocast pid $FC_PID http=$FC_URL rtmp=rtmp://$FC_RTMP/live log=${2:-$FC_DIR/server.log}";;
  stop)   pid=$(cat "$FC_DIR/ferrocast.pid" 2>/dev/null); fc_stop; [ -n "$pid" ] && echo "ferrocast $pid stopped";;
  pids)   cat "$FC_DIR/ferrocast.pid";;
  config) fc_config; echo "$FC_DIR/bench.toml";;
  *)      echo "usage: ferrocast_ctl.sh start [LOGFILE] | stop | pids | config" >&2; exit 2;;
esac
