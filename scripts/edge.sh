#!/usr/bin/env bash
# edge.sh ORIGIN LISTEN DIR [TEMPLATE] — renders config/nginx-edge.conf (or TEMPLATE) with
# {{ORIGIN}}, {{LISTEN}} and {{CACHE_DIR}}=DIR into DIR/nginx.conf and runs nginx in the
# foreground (exec: this script's PID becomes nginx's master PID; SIGTERM/SIGQUIT stop it).
# Everything nginx writes (cache, temp files, pid, access log) goes under DIR; the error log
# goes to stderr. Nothing under /etc/nginx or /var/lib/nginx is touched, so any user can run it.
#   scripts/edge.sh 127.0.0.1:8080 8081 /tmp/ferrocast-edge      # = make edge
# ORIGIN may list several origins (the nodes of a cluster), comma-separated: a template line
# `server {{ORIGIN}}...` is then repeated once per origin; {{ORIGIN}} anywhere else but in a
# comment takes one origin only.
#   scripts/edge.sh 127.0.0.1:8080,127.0.0.1:8090,127.0.0.1:8100 8081 /tmp/ferrocast-edge
# RENDER_ONLY=1: write DIR/nginx.conf, check it with `nginx -t`, and exit.
set -euo pipefail
ORIGIN=${1:?usage: edge.sh ORIGIN LISTEN DIR [TEMPLATE]}
LISTEN=${2:?usage: edge.sh ORIGIN LISTEN DIR [TEMPLATE]}
DIR=${3:?usage: edge.sh ORIGIN LISTEN DIR [TEMPLATE]}
TPL=${4:-$(cd "$(dirname "$0")/.." && pwd)/config/nginx-edge.conf}
command -v nginx >/dev/null || { echo "edge.sh: nginx is not installed (apt-get install nginx)" >&2; exit 2; }
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR/cache" "$DIR/tmp"
# One origin is used as given; a list is split on commas, each entry trimmed (an entry may
# carry nginx `server` parameters: "10.0.0.7:8080 backup").
origins=("$ORIGIN")
if [[ $ORIGIN == *,* ]]; then
  origins=()
  rest=$ORIGIN,
  while [ -n "$rest" ]; do
    o=${rest%%,*}
    rest=${rest#*,}
    o=${o#"${o%%[![:space:]]*}"}
    o=${o%"${o##*[![:space:]]}"}
    [ -n "$o" ] || { echo "edge.sh: empty entry in the origin list \`$ORIGIN\`" >&2; exit 2; }
    origins+=("$o")
  done
fi
conf=""
while IFS= read -r line || [ -n "$line" ]; do
  if [[ $line =~ ^([[:space:]]*server[[:space:]]+)\{\{ORIGIN\}\}(.*)$ ]]; then
    for o in "${origins[@]}"; do conf+="${BASH_REMATCH[1]}$o${BASH_REMATCH[2]}"$'\n'; done
    continue
  fi
  if [[ ${#origins[@]} -gt 1 && $line == *'{{ORIGIN}}'* && ! $line =~ ^[[:space:]]*# ]]; then
    echo "edge.sh: $TPL uses {{ORIGIN}} outside a \`server {{ORIGIN}};\` line, which takes one origin: $line" >&2
    exit 2
  fi
  conf+="${line//'{{ORIGIN}}'/$ORIGIN}"$'\n'
done <"$TPL"
while [[ $conf == *$'\n' ]]; do conf=${conf%$'\n'}; done
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
