#!/usr/bin/env bash
# cluster.sh — a ferrocast cluster on this machine (`make cluster`; docs/cluster.md): one
# nats-server with JetStream, three nodes (a, b, c) of the release binary, each with its own
# config rendered from CONFIG plus `[cluster]`, and the nginx caching edge with every node as
# an upstream. Prints the URLs and waits; Ctrl-C (or SIGTERM) stops everything it started —
# the edge first, then the nodes (they end their playlists and drop their directory records),
# NATS last — and waits until each process is gone.
#
# Environment (defaults):
#   BIN          ferrocast binary (target/release/ferrocast)
#   CONFIG       config the nodes' configs are rendered from (config/ferrocast.toml)
#   CLUSTER_DIR  state and logs (/tmp/ferrocast-cluster)
#   NODES        node names ("a b c"); node i listens on each base port + 10*i:
#   HTTP_PORT 8080, RTMP_PORT 1935, SRT_PORT 9000; NATS_PORT 4222 (monitoring NATS_HTTP_PORT
#   8222); EDGE_PORT 8081; BIND 0.0.0.0 (listen address of nodes); PUBLIC_HOST (printed URLs)
#
# Under CLUSTER_DIR: nats/ (JetStream store, nats.log), NODE/ (ferrocast.toml, chat.db,
# ferrocast.log), edge/ (nginx.conf, cache, access.log, error.log), pids. Kept between runs
# (chat history, the edge cache); remove the directory to start afresh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Nodes read pipelines/ and web/ relative to the working directory.
cd "$ROOT"

BIN=${BIN:-$ROOT/target/release/ferrocast}
CONFIG=${CONFIG:-config/ferrocast.toml}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/ferrocast-cluster}
read -r -a NODES <<<"${NODES:-a b c}"
HTTP_PORT=${HTTP_PORT:-8080}
RTMP_PORT=${RTMP_PORT:-1935}
SRT_PORT=${SRT_PORT:-9000}
NATS_PORT=${NATS_PORT:-4222}
NATS_HTTP_PORT=${NATS_HTTP_PORT:-8222}
EDGE_PORT=${EDGE_PORT:-8081}
BIND=${BIND:-0.0.0.0}
# Where this script, the nodes (advertise) and the edge reach the nodes: all on this machine.
LOCAL=127.0.0.1
[ "$BIND" = 0.0.0.0 ] || LOCAL=$BIND
PUBLIC_HOST=${PUBLIC_HOST:-$LOCAL}
STOP_WAIT=${STOP_WAIT:-15}   # seconds a process gets after SIGTERM before SIGKILL

die() { echo "cluster: $*" >&2; exit 2; }
for tool in nats-server nginx curl setsid; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/setup.sh test installs nats-server and nginx)"
done
[ -x "$BIN" ] || die "no ferrocast binary at $BIN (make release)"
[ -f "$CONFIG" ] || die "no config at $CONFIG"

# Something already accepts TCP connections on LOCAL:PORT (UDP ports are checked by the node
# itself, which exits with "cannot listen for SRT").
busy() { (exec 3<>"/dev/tcp/$LOCAL/$1") 2>/dev/null; }
ports=("$NATS_PORT" "$NATS_HTTP_PORT" "$EDGE_PORT")
for i in "${!NODES[@]}"; do ports+=($((HTTP_PORT + 10 * i)) $((RTMP_PORT + 10 * i))); done
for p in "${ports[@]}"; do
  if busy "$p"; then
    hint=""
    [ -s "$CLUSTER_DIR/pids" ] && hint=" (a previous run's processes are listed in $CLUSTER_DIR/pids)"
    die "port $p is in use$hint"
  fi
done

mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
: >"$CLUSTER_DIR/pids"

pids=()
names=()
logs=()
# start NAME LOG CMD...: runs CMD in the background in a session of its own, so that Ctrl-C in
# the terminal reaches this script only and the shutdown happens in order (see stop_all).
start() {
  local name=$1 log=$2
  shift 2
  setsid "$@" >>"$log" 2>&1 </dev/null &
  pids+=("$!")
  names+=("$name")
  logs+=("$log")
  echo "$name $!" >>"$CLUSTER_DIR/pids"
}

# Still running (not gone, not a zombie waiting to be reaped).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# stop IDX...: SIGTERM to those processes at once, then waits for each (SIGKILL after STOP_WAIT).
stop() {
  local i n
  for i in "$@"; do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for i in "$@"; do
    for ((n = 0; n < STOP_WAIT * 10; n++)); do
      alive "${pids[i]}" || break
      sleep 0.1
    done
    if alive "${pids[i]}"; then
      echo "cluster: ${names[i]} still running ${STOP_WAIT}s after SIGTERM; killing it" >&2
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    wait "${pids[i]}" 2>/dev/null || true
  done
}

stop_all() {
  set +e
  trap '' INT TERM HUP
  [ ${#pids[@]} -gt 0 ] || return 0
  echo ""
  echo "cluster: stopping (edge, nodes, NATS)..."
  local edge=() nodes=() nats=() i
  for i in "${!pids[@]}"; do
    case ${names[i]} in
      edge) edge+=("$i") ;;
      nats) nats+=("$i") ;;
      *) nodes+=("$i") ;;
    esac
  done
  [ ${#edge[@]} -eq 0 ] || stop "${edge[@]}"
  [ ${#nodes[@]} -eq 0 ] || stop "${nodes[@]}"
  [ ${#nats[@]} -eq 0 ] || stop "${nats[@]}"
  : >"$CLUSTER_DIR/pids"
  echo "cluster: stopped; logs are in $CLUSTER_DIR"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# wait_for WHAT SECONDS CHECK...: polls CHECK until it succeeds; fails if the last started
# process exits or time runs out, showing its log.
wait_for() {
  local what=$1 secs=$2 n last=$((${#pids[@]} - 1))
  shift 2
  for ((n = 0; n < secs * 5; n++)); do
    "$@" && return 0
    if ! alive "${pids[last]}"; then
      echo "cluster: $what exited while starting; the end of ${logs[last]}:" >&2
      tail -n 30 "${logs[last]}" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "cluster: $what not ready after ${secs}s; the end of ${logs[last]}:" >&2
  tail -n 30 "${logs[last]}" >&2
  exit 1
}
healthy() { curl -fs -o /dev/null --max-time 2 "$1"; }

# NATS with JetStream: the directory bucket (memory) and chat (file store under nats/).
mkdir -p "$CLUSTER_DIR/nats"
start nats "$CLUSTER_DIR/nats/nats.log" nats-server -js -n ferrocast-dev -a "$LOCAL" -p "$NATS_PORT" \
  -m "$NATS_HTTP_PORT" -sd "$CLUSTER_DIR/nats"
wait_for nats-server 20 busy "$NATS_PORT"

# The stream directory's bucket, created here as an operator would (docs/cluster.md, "NATS
# sizing"), with the settings a node would use. Nodes find it and use it. They cannot create it
# themselves on nats-server 2.9 (Debian 12 ships 2.9.10): async-nats cannot read that server's
# account-info answer, and the node keeps logging "directory unavailable". Plain NATS protocol
# over bash's /dev/tcp, so no NATS CLI is needed.
create_directory() {
  local cfg='{"name":"KV_ferrocast-streams","subjects":["$KV.ferrocast-streams.>"],"max_msgs_per_subject":1,"max_age":5000000000,"storage":"memory","num_replicas":1,"discard":"new","allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true}'
  local line reply=""
  exec 3<>"/dev/tcp/$LOCAL/$NATS_PORT"
  IFS= read -r -t 5 line <&3 || true # INFO
  printf 'CONNECT {"verbose":false,"pedantic":false,"name":"cluster.sh"}\r\nSUB _INBOX.cluster-sh 1\r\nPUB $JS.API.STREAM.CREATE.KV_ferrocast-streams _INBOX.cluster-sh %d\r\n%s\r\n' \
    "${#cfg}" "$cfg" >&3
  while IFS= read -r -t 5 line <&3; do
    case $line in
      MSG*) IFS= read -r -t 5 reply <&3 || true; break ;;
      PING*) printf 'PONG\r\n' >&3 ;;
      -ERR*) reply=$line; break ;;
    esac
  done
  exec 3>&-
  case $reply in
    *'"error"'*'already in use'*) echo "cluster: the directory bucket exists with other settings; using it" >&2 ;;
    *'"error"'* | -ERR* | "") die "cannot create the directory bucket in NATS: ${reply:-no answer}" ;;
  esac
}
create_directory

# Render one config per node: CONFIG with the node's listen addresses, its own chat store and
# `[cluster]` (any [server] http/rtmp/srt, [chat] store and [cluster] of CONFIG are replaced).
render() { # NODE_DIR NODE HTTP RTMP SRT
  awk -v http="$3" -v rtmp="$4" -v srt="$5" -v store="$1/chat.db" \
    -v nats="nats://$LOCAL:$NATS_PORT" -v node="$2" -v adv="http://$LOCAL:${3##*:}" '
    function server_keys() {
      printf "http = \"%s\"\nrtmp = \"%s\"\nsrt  = \"%s\"\n", http, rtmp, srt
      had_server = 1
    }
    function chat_keys() { printf "store = \"%s\"\n", store; had_chat = 1 }
    /^[ \t]*\[/ {
      name = $0
      sub(/^[ \t]*\[+[ \t]*/, "", name)
      sub(/[ \t]*\].*$/, "", name)
      section = ($0 ~ /^[ \t]*\[\[/) ? "[[" name "]]" : name
      skip = (section == "cluster")
      if (skip) next
      print
      if (section == "server") server_keys()
      if (section == "chat") chat_keys()
      next
    }
    skip { next }
    section == "server" && /^[ \t]*(http|rtmp|srt)[ \t]*=/ { next }
    section == "chat" && /^[ \t]*store[ \t]*=/ { next }
    { print }
    END {
      if (!had_server) { print "\n[server]"; server_keys() }
      if (!had_chat) { print "\n[chat]"; chat_keys() }
      printf "\n[cluster]                      # rendered by scripts/cluster.sh\n"
      printf "nats = [\"%s\"]\nnode = \"%s\"\nadvertise = \"%s\"\n", nats, node, adv
    }' "$CONFIG" >"$1/ferrocast.toml"
}

origins=()
for i in "${!NODES[@]}"; do
  node=${NODES[i]}
  dir=$CLUSTER_DIR/$node
  mkdir -p "$dir"
  http=$((HTTP_PORT + 10 * i))
  render "$dir" "$node" "$BIND:$http" "$BIND:$((RTMP_PORT + 10 * i))" "$BIND:$((SRT_PORT + 10 * i))"
  if ! out=$("$BIN" check --config "$dir/ferrocast.toml" 2>&1); then
    printf '%s\n' "$out" >&2
    die "node $node's config ($dir/ferrocast.toml, rendered from $CONFIG) is not valid"
  fi
  # NO_COLOR: plain text in the log files.
  start "$node" "$dir/ferrocast.log" env NO_COLOR=1 "$BIN" serve --config "$dir/ferrocast.toml"
  wait_for "node $node" 60 healthy "http://$LOCAL:$http/healthz"
  origins+=("$LOCAL:$http")
done

# The edge: every node is an upstream (any node answers for any stream).
mkdir -p "$CLUSTER_DIR/edge"
list=$(IFS=,; echo "${origins[*]}")
start edge "$CLUSTER_DIR/edge/error.log" "$ROOT/scripts/edge.sh" "$list" "$EDGE_PORT" "$CLUSTER_DIR/edge"
wait_for "the nginx edge" 20 healthy "http://$LOCAL:$EDGE_PORT/healthz"

H=$PUBLIC_HOST
echo ""
echo "  ferrocast cluster: ${#NODES[@]} nodes, NATS nats://$LOCAL:$NATS_PORT (JetStream), nginx edge on :$EDGE_PORT"
echo "  State and logs: $CLUSTER_DIR   (processes: $CLUSTER_DIR/pids)"
echo ""
for i in "${!NODES[@]}"; do
  printf '  node %-3s http://%s:%d   OBS Server: rtmp://%s:%d/live   SRT: srt://%s:%d   log: %s\n' \
    "${NODES[i]}" "$H" $((HTTP_PORT + 10 * i)) "$H" $((RTMP_PORT + 10 * i)) "$H" $((SRT_PORT + 10 * i)) \
    "$CLUSTER_DIR/${NODES[i]}/ferrocast.log"
done
echo "      Stream Key:  demo?key=demo-key   (one publisher per name in the whole cluster)"
echo ""
echo "  Watch (edge):    http://$H:$EDGE_PORT/watch/demo"
echo "  Playlist (edge): http://$H:$EDGE_PORT/live/demo/index.m3u8"
echo "  Streams (edge):  http://$H:$EDGE_PORT/api/v1/streams"
echo "  NATS monitoring: http://$LOCAL:$NATS_HTTP_PORT/jsz"
echo "  Test pattern:    make demo   (to node ${NODES[0]}; RTMP_PORT=$((RTMP_PORT + 10)) make demo for node ${NODES[1]:-?})"
echo "  Ctrl-C stops everything."
echo ""

# Until Ctrl-C, or until one of them exits on its own (then the rest are stopped too).
while true; do
  wait -n || true
  for i in "${!pids[@]}"; do
    if ! alive "${pids[i]}"; then
      echo "cluster: ${names[i]} exited; the end of ${logs[i]}:" >&2
      tail -n 20 "${logs[i]}" >&2
      exit 1
    fi
  done
done
