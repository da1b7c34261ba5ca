#!/usr/bin/env python3
"""failover.py [TRIES=5] — publisher failover across two cluster nodes, timed.

Starts one nats-server (JetStream) and two ferrocast nodes (a, b) of the release binary on
loopback, publishes a looped copy of a short H.264/AAC clip to one node, then moves the
publisher back and forth TRIES times: kill the publisher on the current node, wait until that
node reports it gone, start it on the other node (t0), and follow the other node's playlist
with blocking reloads until a part newer than the old owner's last one is listed (t1).
Prints each try's t1 - t0 and the p50/max, plus checks: media sequence only moves forward and
the first new segment follows EXT-X-DISCONTINUITY.

Needs: nats-server, ffmpeg, target/release/ferrocast (cargo build --release).
Output: key=value lines; the run's logs in $BENCH_OUT/runs/failover.TIME (or /tmp).
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("FC_BIN", os.path.join(REPO, "target", "release", "ferrocast"))
STREAM, KEY = "demo", "bench-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, within=30):
    t0 = time.time()
    while time.time() - t0 < within:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port} after {within}s")


def get(url, timeout=15):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def newest(text):
    """(newest msn listed with a part or segment, media sequence, first segment discontinuity?)"""
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    msn, first_disc, seen_uri, disc = seq - 1, False, False, False
    count = seq
    for line in text.splitlines():
        if line.startswith("#EXT-X-DISCONTINUITY") and not line.startswith("#EXT-X-DISCONTINUITY-SEQ"):
            disc = True
        elif line.startswith("#EXT-X-PART:"):
            if not seen_uri:
                first_disc, seen_uri = disc, True
            msn = max(msn, count)
        elif line and not line.startswith("#"):
            if not seen_uri:
                first_disc, seen_uri = disc, True
            msn = max(msn, count)
            count += 1
    return msn, seq, first_disc


def main():
    tries = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for tool in ("nats-server", "ffmpeg"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: cargo build --release")
    out = os.path.join(os.environ.get("BENCH_OUT", "/tmp"), "runs", time.strftime("failover.%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    procs = []

    def spawn(args, log, **kw):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(out, log), "ab"), **kw)
        procs.append(p)
        return p

    def cleanup(*_):
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(130)))
    try:
        clip = os.path.join(out, "clip.flv")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                        "-t", "8", "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                        "-keyint_min", "60", "-sc_threshold", "0", "-b:v", "2500k",
                        "-c:a", "aac", "-b:a", "128k", clip], check=True)
        nats_port = free_port()
        spawn(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", os.path.join(out, "js")], "nats.log")
        wait_port(nats_port)
        nodes = {}
        for name in ("a", "b"):
            http, rtmp = free_port(), free_port()
            cfg = os.path.join(out, f"{name}.toml")
            with open(cfg, "w") as f:
                f.write(f'[server]\nhttp = "127.0.0.1:{http}"\nrtmp = "127.0.0.1:{rtmp}"\nsrt = "127.0.0.1:0"\n\n'
                        f'[hls]\nsegment_target = "2s"\npart_target = "200ms"\nwindow = 6\ngrace = "20s"\n\n'
                        f'[[stream]]\nname = "{STREAM}"\nkey = "{KEY}"\npipeline = "passthrough"\n\n'
                        f'[chat]\nstore = "{out}/{name}-chat.db"\n\n'
                        f'[cluster]\nnats = ["nats://127.0.0.1:{nats_port}"]\nnode = "{name}"\nadvertise = "http://127.0.0.1:{http}"\n')
            spawn([BIN, "serve", "--config", cfg], f"{name}.log", cwd=REPO)
            wait_port(http)
            nodes[name] = (http, rtmp)

        def publish(node):
            _, rtmp = nodes[node]
            return spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip,
                          "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/{STREAM}?key={KEY}"], f"ffmpeg-{node}.log")

        def playlist(node, query=""):
            http, _ = nodes[node]
            return get(f"http://127.0.0.1:{http}/live/{STREAM}/source/index.m3u8{query}")

        def publishing(node):
            http, _ = nodes[node]
            status, body = get(f"http://127.0.0.1:{http}/api/v1/streams")
            for s in json.loads(body or "[]") if status == 200 else []:
                if s.get("name") == STREAM and s.get("node", node) == node:
                    return s.get("publishing")
            return None

        current, pub = "a", publish("a")
        t0 = time.time()
        while True:
            status, text = playlist("a")
            if status == 200 and "#EXTINF" in text:
                break
            if time.time() - t0 > 60:
                sys.exit("stream never went live on a")
            time.sleep(0.2)
        times, checks = [], []
        for i in range(tries):
            time.sleep(4)  # a few parts on the current owner
            other = "b" if current == "a" else "a"
            pub.kill()
            pub.wait()
            while publishing(current) is not False:
                time.sleep(0.05)
            _, before = playlist(current)
            last_msn, last_seq, _ = newest(before)
            start = time.time()
            pub = publish(other)
            seen = None
            while time.time() - start < 30:
                if pub.poll() is not None:  # refused (directory not updated yet): retry
                    pub = publish(other)
                status, text = playlist(other, "")
                if status == 200:
                    msn, seq, first_disc = newest(text)
                    if msn > last_msn:
                        seen = time.time() - start
                        checks.append((seq > last_seq or seq > last_msn, first_disc))
                        break
                time.sleep(0.01)
            if seen is None:
                sys.exit(f"try {i}: no new part on {other} within 30 s; logs in {out}")
            times.append(seen)
            print(f"try={i} from={current} to={other} first_new_part_s={seen:.3f}")
            current = other
        print(f"tries={tries} p50_s={statistics.median(times):.3f} max_s={max(times):.3f} "
              f"msn_forward={all(c[0] for c in checks)} discontinuity_first={all(c[1] for c in checks)} run_dir={out}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
