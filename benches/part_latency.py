#!/usr/bin/env python3
"""part_latency.py — outside-in LL-HLS part latency: when does each part become available to a
client that follows the live edge, relative to when the publisher sent the part's last frame?
(stdlib only; the toolkit's hls_latency.py measures whole segments only, by polling.)

  part_latency.py --playlist URL [--duration S] [--pub CMD | --pub-log DIR] [--server-log LOG]
                  [--raw FILE.csv] [--csv FILE.csv] [--label L]
  part_latency.py --report RAW.csv --pub-log DIR [--server-log LOG] [--csv ...] [--label L]

Two client loops run side by side, each on its own keep-alive connection, as an LL-HLS player does:
  hint:     GET of the EXT-X-PRELOAD-HINT part URI, issued before the part exists (the server
            holds it); records when the response headers arrive (t_hint) and parses the part's
            moof (tfdt + trun) for the media time of its first and last video frame.
  blocking: GET playlist?_HLS_msn=M&_HLS_part=P for the part after the newest listed one;
            records when each part URI is first listed (t_listed).
Send times: with --tap (or PUB_LOG/tap.tsv present) from rtmp_tap.py, the relay between publisher
and server that logs when each frame's last byte went to the server (exact). Otherwise from publish.sh writes progress.tsv ("wall out_time_us" about
every 0.2 s); t0 = min(wall - out_time) = wall time of stream time 0, as in hls_latency.py.
A frame at stream time x was sent at t0 + x. Stream time of a frame = its decode time minus the
decode time of the first video frame of segment 0 (the stream's first frame; the client must see
segment 0, so start it before or with the publisher). t0 is estimated from 0.2 s-spaced samples
of a clock that also counts audio, so it carries a bias of up to about one frame (tens of ms) —
good for a sanity check and peer-relative figures, not for a 1 ms figure: ferrocast's own
`ferrocast::lag` log (lag_from_log.py) is the exact in-server measure.
With --server-log, each part is matched with its `ferrocast::lag` log line: the line's timestamp
is when the server made it available, so t_hint - log time = origin-to-client delivery delay.

Figures (ms, over parts after the first segment):
  hint_after_last_frame    t_hint   - send(last video frame of the part)
  listed_after_last_frame  t_listed - send(last video frame of the part)
  hint_after_part_end      t_hint   - (send(first frame) + part duration)  (like hls_latency's
                           "after segment end": negative = available before the part's nominal end)
  delivery_after_log       t_hint   - server log time of the part   (needs --server-log)
"""
import argparse, datetime, http.client, os, re, signal, statistics, struct, subprocess, sys, tempfile
import threading, time
from urllib.parse import urljoin, urlsplit

OUT = os.path.abspath(os.environ.get("BENCH_OUT", "/tmp/ferrocast-bench"))


class Conn:
    def __init__(self, url, timeout=15):
        u = urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.c = None

    def get(self, url):
        """-> (status, body, t_headers, t_body)"""
        u = urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        for attempt in (0, 1):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.c.request("GET", path)
                r = self.c.getresponse()
                th = time.time()
                body = r.read()
                return r.status, body, th, time.time()
            except (OSError, http.client.HTTPException):
                try:
                    self.c.close()
                except Exception:
                    pass
                self.c = None
                if attempt:
                    return 0, b"", time.time(), time.time()
        return 0, b"", time.time(), time.time()


def attr(line, key):
    m = re.search(key + r'=("([^"]*)"|[^,]*)', line)
    if not m:
        return None
    return m.group(2) if m.group(2) is not None else m.group(1)


def parse_playlist(text, base):
    """-> dict(msn0, segments=[(msn, uri)], parts=[(msn, idx, uri, dur)], hint, init, ended)"""
    msn = 0
    segs, parts, hint, init, idx, ended = [], [], None, None, 0, False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MAP:"):
            init = urljoin(base, attr(line, "URI"))
        elif line.startswith("#EXT-X-PART:"):
            parts.append((msn, idx, urljoin(base, attr(line, "URI")), float(attr(line, "DURATION"))))
            idx += 1
        elif line.startswith("#EXT-X-PRELOAD-HINT:") and attr(line, "TYPE") == "PART":
            hint = urljoin(base, attr(line, "URI"))
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif line.startswith("#EXT-X-SKIP:"):
            msn += int(attr(line, "SKIPPED-SEGMENTS"))
        elif line and not line.startswith("#"):
            segs.append((msn, urljoin(base, line)))
            msn += 1
            idx = 0
    return dict(segments=segs, parts=parts, hint=hint, init=init, ended=ended, open_msn=msn)


# --- minimal ISO-BMFF reading ---------------------------------------------------------------
def boxes(buf, off=0, end=None):
    end = len(buf) if end is None else end
    while off + 8 <= end:
        size, typ = struct.unpack_from(">I4s", buf, off)
        hdr = 8
        if size == 1:
            size = struct.unpack_from(">Q", buf, off + 8)[0]; hdr = 16
        elif size == 0:
            size = end - off
        if size < hdr:
            return
        yield typ.decode("latin1"), off + hdr, off + size
        off += size


def child(buf, s, e, path):
    for name in path:
        for t, cs, ce in boxes(buf, s, e):
            if t == name:
                s, e = cs, ce
                break
        else:
            return None
    return s, e


def parse_init(buf):
    """-> {track_id: (timescale, handler, default_duration)}"""
    tracks, trex = {}, {}
    moov = child(buf, 0, None, ["moov"])
    if not moov:
        return tracks
    for t, s, e in boxes(buf, *moov):
        if t == "trak":
            tkhd = child(buf, s, e, ["tkhd"])
            v = buf[tkhd[0]]
            tid = struct.unpack_from(">I", buf, tkhd[0] + (20 if v == 1 else 12))[0]
            mdhd = child(buf, s, e, ["mdia", "mdhd"])
            v = buf[mdhd[0]]
            ts = struct.unpack_from(">I", buf, mdhd[0] + (20 if v == 1 else 12))[0]
            hdlr = child(buf, s, e, ["mdia", "hdlr"])
            handler = buf[hdlr[0] + 8:hdlr[0] + 12].decode("latin1")
            tracks[tid] = [ts, handler, 0]
        elif t == "mvex":
            for t2, s2, e2 in boxes(buf, s, e):
                if t2 == "trex":
                    tid, _, dur = struct.unpack_from(">III", buf, s2 + 4)
                    trex[tid] = dur
    for tid, d in trex.items():
        if tid in tracks:
            tracks[tid][2] = d
    return tracks


def parse_fragment(buf, tracks):
    """-> {track_id: (base_decode_time, [sample durations])} for all moofs in buf."""
    out = {}
    for t, s, e in boxes(buf):
        if t != "moof":
            continue
        for t2, s2, e2 in boxes(buf, s, e):
            if t2 != "traf":
                continue
            tid, ddur, base, durs = None, None, None, []
            for t3, s3, e3 in boxes(buf, s2, e2):
                if t3 == "tfhd":
                    flags = struct.unpack_from(">I", buf, s3)[0] & 0xFFFFFF
                    tid = struct.unpack_from(">I", buf, s3 + 4)[0]
                    o = s3 + 8
                    if flags & 0x1: o += 8
                    if flags & 0x2: o += 4
                    if flags & 0x8: ddur = struct.unpack_from(">I", buf, o)[0]
                elif t3 == "tfdt":
                    v = buf[s3]
                    base = struct.unpack_from(">Q" if v == 1 else ">I", buf, s3 + 4)[0]
                elif t3 == "trun":
                    flags = struct.unpack_from(">I", buf, s3)[0] & 0xFFFFFF
                    n = struct.unpack_from(">I", buf, s3 + 4)[0]
                    o = s3 + 8
                    if flags & 0x1: o += 4
                    if flags & 0x4: o += 4
                    dd = ddur if ddur is not None else (tracks.get(tid, [0, "", 0])[2])
                    for _ in range(n):
                        d = dd
                        if flags & 0x100:
                            d = struct.unpack_from(">I", buf, o)[0]; o += 4
                        if flags & 0x200: o += 4
                        if flags & 0x400: o += 4
                        if flags & 0x800: o += 4
                        durs.append(d)
            if tid is not None and base is not None:
                if tid in out:
                    out[tid][1].extend(durs)
                else:
                    out[tid] = (base, durs)
    return out


def video_track(tracks):
    for tid, (ts, h, _) in tracks.items():
        if h == "vide":
            return tid, ts
    return None, None


# --- the two client loops -----------------------------------------------------------------
class Follower:
    def __init__(self, playlist, duration):
        self.pl, self.duration = playlist, duration
        self.lock = threading.Lock()
        self.parts = {}        # uri -> dict
        self.stop = threading.Event()
        self.tracks = None
        self.base = None       # decode time of segment 0's first video frame (video timescale)
        self.errors = []

    def rec(self, uri):
        with self.lock:
            return self.parts.setdefault(uri, {"uri": uri})

    def start_playlist(self):
        c = Conn(self.pl)
        t_end = time.time() + self.duration
        while time.time() < t_end:
            st, body, _, _ = c.get(self.pl)
            if st == 200:
                p = parse_playlist(body.decode("utf-8", "replace"), self.pl)
                if p["parts"] and p["init"] and p["hint"]:
                    return c, p
            time.sleep(0.05)
        return c, None

    def run(self):
        c, p = self.start_playlist()
        if p is None:
            self.errors.append("no LL-HLS playlist with parts appeared")
            return
        st, init, _, _ = c.get(p["init"])
        self.tracks = parse_init(init)
        vid, _ = video_track(self.tracks)
        # stream time 0: first video frame of segment 0 (part 0 of msn 0)
        first = [x for x in p["parts"] if x[0] == 0 and x[1] == 0]
        if first:
            st, body, _, _ = c.get(first[0][2])
            f = parse_fragment(body, self.tracks)
            if vid in f:
                self.base = f[vid][0]
        if self.base is None:
            self.errors.append("segment 0 not in the first playlist: stream time base unknown "
                               "(start this client before or with the publisher)")
        for msn, idx, uri, dur in p["parts"]:
            r = self.rec(uri); r.update(msn=msn, idx=idx, dur=dur, pre_listed=True)
        self.t_end = time.time() + self.duration
        th = threading.Thread(target=self.blocking_loop, args=(p,), daemon=True)
        th.start()
        self.hint_loop(c, p["hint"])
        self.stop.set()
        th.join(20)

    def hint_loop(self, c, hint):
        vid, _ = video_track(self.tracks)
        while time.time() < self.t_end and hint:
            t_req = time.time()
            st, body, th, tb = c.get(hint)
            if st != 200:
                self.errors.append(f"hint GET {hint} -> {st}")
                if st == 0:
                    break
                # lost the edge: ask the playlist for the current hint
                s2, b2, _, _ = c.get(self.pl)
                if s2 != 200:
                    break
                hint = parse_playlist(b2.decode("utf-8", "replace"), self.pl)["hint"]
                continue
            r = self.rec(hint)
            f = parse_fragment(body, self.tracks)
            r.update(t_req=t_req, t_hint=th, t_hint_body=tb, bytes=len(body))
            if vid in f:
                base, durs = f[vid]
                r.update(v_first=base, v_last=base + sum(durs[:-1]), v_end=base + sum(durs), frames=len(durs))
            # ferrocast numbers parts across the playlist: part-E-N.m4s -> part-E-(N+1).m4s
            m = re.match(r"(.*?)(\d+)(\.\w+)$", hint)
            if not m:
                break
            hint = m.group(1) + str(int(m.group(2)) + 1) + m.group(3)

    def blocking_loop(self, p):
        c = Conn(self.pl)
        while not self.stop.is_set() and time.time() < self.t_end:
            if p["parts"]:
                msn, idx = p["parts"][-1][0], p["parts"][-1][1] + 1
            else:
                msn, idx = p["open_msn"], 0
            if p["parts"] and p["parts"][-1][0] < p["open_msn"]:
                msn, idx = p["open_msn"], 0     # newest listed part closed its segment
            sep = "&" if "?" in self.pl else "?"
            st, body, th, _ = c.get(f"{self.pl}{sep}_HLS_msn={msn}&_HLS_part={idx}")
            if st != 200:
                self.errors.append(f"blocking reload msn={msn} part={idx} -> {st}")
                if st == 0:
                    return
                time.sleep(0.05)
                continue
            p = parse_playlist(body.decode("utf-8", "replace"), self.pl)
            for pm, pi, uri, dur in p["parts"]:
                r = self.rec(uri)
                with self.lock:
                    if "t_listed" not in r and not r.get("pre_listed"):
                        r["t_listed"] = th
                    r.update(msn=pm, idx=pi, dur=dur)
            if p["ended"]:
                return


# --- reporting --------------------------------------------------------------------------------
def t0_from_progress(path):
    best = None
    for line in open(path):
        try:
            w, us = line.split()
            v = float(w) - int(us) / 1e6
        except ValueError:
            continue
        best = v if best is None else min(best, v)
    return best


ANSI = re.compile(r"\x1b\[[0-9;]*m")
LAGLINE = re.compile(r"^(\S+)\s.*ferrocast::lag.*?stream=\"?([A-Za-z0-9_-]+)\"?\s+msn=(\d+)\s+part=(\d+)\s+lag_ms=(\d+)")


def server_log_times(path, stream):
    out = {}
    for raw in open(path, errors="replace"):
        m = LAGLINE.search(ANSI.sub("", raw))
        if m and (stream is None or m.group(2) == stream):
            ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            out[(int(m.group(3)), int(m.group(4)))] = (ts, int(m.group(5)))
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


RAW_COLS = ["uri", "msn", "idx", "dur", "frames", "bytes", "v_first", "v_last", "v_end", "t_req", "t_hint",
            "t_hint_body", "t_listed"]


def write_raw(path, parts, base, timescale):
    with open(path, "w") as f:
        f.write("# base=%s timescale=%s\n" % (base, timescale))
        f.write(",".join(RAW_COLS) + "\n")
        for r in sorted(parts.values(), key=lambda r: (r.get("msn", -1), r.get("idx", -1))):
            f.write(",".join("" if r.get(k) is None else str(r[k]) for k in RAW_COLS) + "\n")


def read_raw(path):
    rows, base, ts = [], None, None
    with open(path) as f:
        head = f.readline()
        m = re.search(r"base=(\S+) timescale=(\S+)", head)
        base = None if m.group(1) == "None" else int(m.group(1))
        ts = None if m.group(2) == "None" else int(m.group(2))
        cols = f.readline().strip().split(",")
        for line in f:
            vals = line.rstrip("\n").split(",")
            r = {}
            for k, v in zip(cols, vals):
                if v == "":
                    continue
                r[k] = v if k == "uri" else (float(v) if "." in v or k.startswith("t_") or k == "dur" else int(v))
            rows.append(r)
    return rows, base, ts


def read_tap(path):
    """rtmp_tap.py log -> {rtmp_ts_ms: wall} of video frames, first video ts"""
    vids, first = {}, None
    for line in open(path):
        f = line.split()
        if len(f) >= 4 and f[1] in ("V", "v"):
            ts = int(f[2])
            vids.setdefault(ts, float(f[0]))
            if first is None:
                first = ts
    return vids, first


def report(rows, base, timescale, pub_log, server_log, stream, label, csv, tap=None):
    L = label and label + "."
    t0 = t0_from_progress(os.path.join(pub_log, "progress.tsv"))
    launch = float(open(os.path.join(pub_log, "start.txt")).read().split()[0].split("=")[1])
    print(f"{L}t0_offset_s={t0 - launch:.3f}")
    if tap is None and os.path.exists(os.path.join(pub_log, "tap.tsv")):
        tap = os.path.join(pub_log, "tap.tsv")
    logt = server_log_times(server_log, stream) if server_log else {}
    got = [r for r in rows if "t_hint" in r and "v_last" in r and r.get("msn", 0) >= 1]
    print(f"{L}parts_via_hint={len(got)}")
    print(f"{L}parts_listed_by_blocking_reload={sum('t_listed' in r and r.get('msn', 0) >= 1 for r in rows)}")
    if base is None or timescale is None:
        print(f"{L}error=no stream time base (segment 0 not seen)")
        return
    send_pts = lambda v: t0 + (v - base) / timescale
    send = send_pts
    if tap:
        vids, first_ts = read_tap(tap)
        keys = sorted(vids)
        print(f"{L}send_time_source=rtmp_tap ({len(vids)} video frames in {tap})")
        def send(v):
            ts = first_ts + round((v - base) * 1000 / timescale)
            if ts in vids:
                return vids[ts]
            import bisect
            k = keys[max(0, min(len(keys) - 1, bisect.bisect_left(keys, ts)))]
            return vids[k]
        # how far publish.sh's progress-based estimate is off (positive = it says "sent" too early)
        offs = [send(r["v_last"]) - send_pts(r["v_last"]) for r in got]
        if offs:
            print(f"{L}progress_tsv_send_estimate_early_by_ms_p50={statistics.median(offs) * 1000:.1f}")
    else:
        print(f"{L}send_time_source=progress.tsv (t0 + stream time; ~1 frame bias, see --help)")
    a_hint, a_list, a_end, a_deliv, a_wait, out = [], [], [], [], [], []
    for r in got:
        sl = send(r["v_last"])
        h = (r["t_hint"] - sl) * 1000
        e = (r["t_hint"] - send(r["v_first"]) - (r["v_end"] - r["v_first"]) / timescale) * 1000
        a_hint.append(h); a_end.append(e)
        a_wait.append((r["t_hint"] - r["t_req"]) * 1000)
        li = (r["t_listed"] - sl) * 1000 if "t_listed" in r else None
        if li is not None:
            a_list.append(li)
        lg = logt.get((r["msn"], r["idx"]))
        d = (r["t_hint"] - lg[0]) * 1000 if lg else None
        if d is not None:
            a_deliv.append(d)
        out.append((r["msn"], r["idx"], r["frames"], (r["v_first"] - base) / timescale, h, li, e, d, lg[1] if lg else None))
    def stats(name, xs):
        if xs:
            print(f"{L}{name}_p50_ms={statistics.median(xs):.1f} {name}_p95_ms={pct(xs, .95):.1f} "
                  f"{name}_min_ms={min(xs):.1f} {name}_max_ms={max(xs):.1f} n={len(xs)}")
    stats("hint_after_last_frame", a_hint)
    stats("listed_after_last_frame", a_list)
    stats("hint_after_part_end", a_end)
    stats("delivery_after_log", a_deliv)
    stats("hint_request_held", a_wait)
    if csv:
        with open(csv, "w") as f:
            f.write("msn,part,frames,stream_time_s,hint_after_last_frame_ms,listed_after_last_frame_ms,"
                    "hint_after_part_end_ms,delivery_after_log_ms,server_lag_ms\n")
            for o in out:
                f.write(",".join("" if v is None else (("%.1f" % v) if isinstance(v, float) else str(v)) for v in o) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--playlist")
    ap.add_argument("--duration", type=float, default=70)
    ap.add_argument("--pub", help="publisher command to launch (gets LOG_DIR); ended at the end")
    ap.add_argument("--pub-log", help="publisher LOG_DIR (start.txt, progress.tsv) for the report")
    ap.add_argument("--server-log", help="ferrocast log with ferrocast::lag lines")
    ap.add_argument("--tap", help="rtmp_tap.py log: exact send times (default: PUB_LOG/tap.tsv if present; \x27\x27 = use progress.tsv)")
    ap.add_argument("--stream", help="stream name in the server log (default: from the playlist URL)")
    ap.add_argument("--raw", help="write the raw per-part timings here (for --report later)")
    ap.add_argument("--report", help="report from a raw file written earlier")
    ap.add_argument("--csv", help="per-part figures")
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    stream = a.stream
    if a.report:
        rows, base, ts = read_raw(a.report)
        report(rows, base, ts, a.pub_log, a.server_log, stream, a.label, a.csv, a.tap)
        return
    if not a.playlist:
        ap.error("--playlist or --report is required")
    if stream is None:
        m = re.search(r"/live/([^/]+)/", a.playlist)
        stream = m.group(1) if m else None
    pub = None
    if a.pub:
        os.makedirs(OUT + "/logs", exist_ok=True)
        a.pub_log = a.pub_log or tempfile.mkdtemp(prefix="part.", dir=OUT + "/logs")
        pub = subprocess.Popen(["bash", "-c", "exec env " + a.pub], env=dict(os.environ, LOG_DIR=a.pub_log))
    f = Follower(a.playlist, a.duration)
    try:
        f.run()
    finally:
        if pub and pub.poll() is None:
            pub.send_signal(signal.SIGTERM)
            try:
                pub.wait(5)
            except subprocess.TimeoutExpired:
                pub.kill(); pub.wait()
    vid, ts = video_track(f.tracks or {})
    raw = a.raw or os.path.join(OUT, "tmp", "part_latency.raw.csv")
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    write_raw(raw, f.parts, f.base, ts)
    L = a.label and a.label + "."
    print(f"{L}raw={raw}")
    errs = f.errors
    print(f"{L}client_errors={len(errs)}" + (f" first={errs[0]!r}" if errs else ""))
    if a.pub_log:
        print(f"{L}pub_log={a.pub_log}")
        rows, base, ts = read_raw(raw)
        report(rows, base, ts, a.pub_log, a.server_log, stream, a.label, a.csv, a.tap)


if __name__ == "__main__":
    main()
