#!/usr/bin/env bash
# edge.sh ORIGIN LISTEN DIR [TEMPLATE] — renders config/nginx-edge.conf (or TEMPLATE) with
# {{ORIGIN}}, {{LISTEN}} and {{CACHE_DIR}}=DIR into DIR/nginx.conf and runs nginx in the
# foreground (exec: this script's PID becomes nginx's master PID; SIGTERM/SIGQUIT stop it).
# Everything nginx writes (cache, temp files, pid, access log) goes under DIR; the error log
# goes to stderr. Nothing under /etc/nginx or /var/lib/nginx is touched, so any user can run it.
#   scripts/edge.sh 127.0.0.1:8080 8081 /tmp/ferrocast-edge      # = make edge
# RENDER_ONLY=1: write DIR/nginx.conf, check it with `nginx -t`, and exit.
set -euo pipefail
ORIGIN=${1:?usage: edge.sh ORIGIN LISTEN DIR [TEMPLATE]}
LISTEN=${2:?usage: edge.sh ORIGIN LISTEN DIR [TEMPLATE]}
DIR=${3:?usage: edge.sh ORIGIN LISTEN DIR [TEMPLATE]}
TPL=${4:-$(cd "$(dirname "$0")/.." && pwd)/config/nginx-edge.conf}
command -v nginx >/dev/null || { echo "edge.sh: nginx is not installed (apt-get install nginx)" >&2; exit 2; }
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR/cache" "$DIR/tmp"
conf=$(<"$TPL")
conf=${conf//'{{ORIGIN}}'/$ORIGIN}
conf=${conf//'{{LISTEN}}'/$LISTEN}
conf=${conf//'{{CACHE_DIR}}'/$DIR}
if grep -q '{{' <<<"$conf"; then echo "edge.sh: unreplaced placeholder in $TPL" >&2; exit 2; fi
printf '%s\n' "$conf" > "$DIR/nginx.conf"
# As root the workers would drop to `nobody`, who cannot write DIR: keep them as root here (an
# operator's own install sets `user` and owns CACHE_DIR accordingly).
G='daemon off;'
[ "$(id -u)" -eq 0 ] && G="$G user root;"
if [ "${RENDER_ONLY:-}" = 1 ]; then
  exec nginx -t -q -p "$DIR/" -c "$DIR/nginx.conf" -g "$G"
fi
exec nginx -p "$DIR/" -c "$DIR/nginx.conf" -g "$G"
