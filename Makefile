# ferrocast — `make run` starts the server on the default config; `make test` runs every test.
# Both install what is missing first (Debian packages, npm packages) and build.

CONFIG ?= config/ferrocast.toml
HOST   ?= 127.0.0.1
# The address OBS and viewers on other machines use (first address of this host).
PUBLIC_HOST ?= $(or $(shell hostname -I 2>/dev/null | awk '{print $$1}'),127.0.0.1)
RTMP_PORT ?= 1935
HTTP_PORT ?= 8080
SRT_PORT ?= 9000
CARGO  ?= cargo

.PHONY: run test demo demo-srt check build release setup setup-test lint fmt bench clean edge cluster

run: setup release
	@echo ""
	@echo "  OBS → Settings → Stream:  Service: Custom…"
	@echo "      Server:      rtmp://$(PUBLIC_HOST):$(RTMP_PORT)/live"
	@echo "      Stream Key:  demo?key=demo-key"
	@echo "  Watch:           http://$(PUBLIC_HOST):$(HTTP_PORT)/watch/demo"
	@echo "  Playlist:        http://$(PUBLIC_HOST):$(HTTP_PORT)/live/demo/index.m3u8"
	@echo "  Test pattern:    make demo   (in another terminal)"
	@echo ""
	./target/release/ferrocast serve --config $(CONFIG)

# --workspace: the load tools (benches/, package ferrocast-bench) too; tests/cdn_edge.rs runs
# target/release/ferrocast-viewers, and the tools' own unit tests run with the product's.
test: setup-test
	$(CARGO) build --release --workspace --bins
	$(CARGO) test --release --workspace -- --test-threads=2

# The demo publisher: an OBS-like 720p30 test pattern with a tone, encoded live.
DEMO_ENCODE = -hide_banner -loglevel warning -re \
  -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -c:v libx264 -preset veryfast -tune zerolatency -profile:v high -pix_fmt yuv420p \
  -g 60 -keyint_min 60 -sc_threshold 0 -b:v 3000k -maxrate 3000k -bufsize 3000k \
  -c:a aac -b:a 128k -ar 48000 -ac 2

demo:
	@command -v ffmpeg >/dev/null || scripts/setup.sh run
	ffmpeg $(DEMO_ENCODE) -f flv "rtmp://$(HOST):$(RTMP_PORT)/live/demo?key=demo-key"

# The same over SRT (MPEG-TS).
demo-srt:
	@command -v ffmpeg >/dev/null || scripts/setup.sh run
	ffmpeg $(DEMO_ENCODE) -f mpegts -pes_payload_size 0 \
	  "srt://$(HOST):$(SRT_PORT)?streamid=#!::r=live/demo,m=publish,s=demo-key&pkt_size=1316"

# Caching edge in front of an origin: renders config/nginx-edge.conf into EDGE_DIR and runs
# nginx in the foreground (docs/cdn.md). Viewers use http://HOST:EDGE_PORT/live/NAME/index.m3u8.
ORIGIN    ?= 127.0.0.1:$(HTTP_PORT)
EDGE_PORT ?= 8081
EDGE_DIR  ?= /tmp/ferrocast-edge
edge:
	@command -v nginx >/dev/null || scripts/setup.sh test
	scripts/edge.sh $(ORIGIN) $(EDGE_PORT) $(EDGE_DIR)

# A cluster on this machine (docs/cluster.md): nats-server with JetStream, nodes a/b/c (HTTP
# 8080/8090/8100, RTMP 1935/1945/1955, SRT 9000/9010/9020), each with a config rendered from
# CONFIG plus [cluster], and the nginx edge on EDGE_PORT in front of all three. State and logs
# in CLUSTER_DIR; Ctrl-C stops everything (scripts/cluster.sh).
CLUSTER_DIR ?= /tmp/ferrocast-cluster
cluster: setup-test release
	@command -v nats-server >/dev/null && command -v nginx >/dev/null || scripts/setup.sh test
	BIN=./target/release/ferrocast CONFIG=$(CONFIG) CLUSTER_DIR=$(CLUSTER_DIR) PUBLIC_HOST=$(PUBLIC_HOST) \
	  HTTP_PORT=$(HTTP_PORT) RTMP_PORT=$(RTMP_PORT) SRT_PORT=$(SRT_PORT) EDGE_PORT=$(EDGE_PORT) \
	  scripts/cluster.sh

check: release
	./target/release/ferrocast check --config $(CONFIG)

setup:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test

release:
	$(CARGO) build --release

build:
	$(CARGO) build

# clippy compiles the crate, which links GStreamer: install its development packages first.
lint: setup
	python3 scripts/layers.py src >/dev/null
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf node_modules web/vendor
