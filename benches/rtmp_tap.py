#!/usr/bin/env python3
"""rtmp_tap.py LISTEN_PORT UPSTREAM_HOST:PORT [--log FILE] [--max-seconds S]

A transparent TCP relay between an RTMP publisher and a server that writes down, for every audio
and video message the publisher sends, the wall time at which its last byte reached the relay
X
Listens on 127.0.0.1:LISTEN_PORT; one publisher connection at a time (more are relayed, only the
first is logged). Parses the client->server RTMP chunk stream (handshake, chunk sizes, header
formats 0-3, extended timestamps).

Log (default $LOG_DIR/tap.tsv, else $BENCH_OUT/tmp/tap.tsv): one line per media message:
  wall_epoch  kind(V|v|A)  rtmp_ts_ms  bytes
  V = video frame (AVC NALU packet), keyframe; v = video frame, not key; A = AAC frame;
  sequence headers and metadata are not logged.
The relay adds one loopback hop (~0.1 ms). Exits after --max-seconds (default 900) or when the
last relayed connection closes after the first one was logged.
"""
import argparse, os, socket, struct, sys, threading, time


class RtmpParser:
    def __init__(self, out):
        self.out = out
        self.hs = 1 + 1536 + 1536          # C0 C1 C2
        self.buf = bytearray()
        self.chunk = 128
        self.cs = {}                       # csid -> dict(ts, delta, len, type, sid, body, ext)

    def feed(self, data, wall):
        self.buf += data
        if self.hs:
            n = min(self.hs, len(self.buf))
            del self.buf[:n]
            self.hs -= n
        while self.parse_one(wall):
            pass

    def parse_one(self, wall):
        b = self.buf
        if not b:
            return False
        i = 0
        fmt, csid = b[0] >> 6, b[0] & 0x3F
        i = 1
        if csid == 0:
            if len(b) < 2: return False
            csid = 64 + b[1]; i = 2
        elif csid == 1:
            if len(b) < 3: return False
            csid = 64 + b[1] + b[2] * 256; i = 3
        st = self.cs.setdefault(csid, {"ts": 0, "delta": 0, "len": 0, "type": 0, "body": None, "ext": False})
        hl = (11, 7, 3, 0)[fmt]
        if len(b) < i + hl: return False
        h = b[i:i + hl]; i += hl
        tsf = None
        if fmt <= 2:
            tsf = (h[0] << 16) | (h[1] << 8) | h[2]
        ext = (tsf == 0xFFFFFF) if tsf is not None else st["ext"]
        if ext:
            if len(b) < i + 4: return False
            tsf = struct.unpack_from(">I", b, i)[0]; i += 4
        new_msg = st["body"] is None
        # work on a copy: the state changes only once the whole chunk is in the buffer
        nst = dict(st)
        if fmt == 0:
            nst["len"] = (h[3] << 16) | (h[4] << 8) | h[5]; nst["type"] = h[6]
            nst["ts"] = tsf; nst["delta"] = 0; nst["ext"] = ext
        elif fmt == 1:
            nst["len"] = (h[3] << 16) | (h[4] << 8) | h[5]; nst["type"] = h[6]
            nst["delta"] = tsf; nst["ts"] += tsf; nst["ext"] = ext
        elif fmt == 2:
            nst["delta"] = tsf; nst["ts"] += tsf; nst["ext"] = ext
        elif new_msg:
            nst["ts"] += nst["delta"]
        have = 0 if st["body"] is None else len(st["body"])
        n = min(self.chunk, nst["len"] - have)
        if len(b) < i + n: return False
        st.update(nst)
        if st["body"] is None:
            st["body"] = bytearray()
        st["body"] += b[i:i + n]
        del b[:i + n]
        if len(st["body"]) >= st["len"]:
            self.message(st["type"], st["ts"], bytes(st["body"]), wall)
            st["body"] = None
        return True

    def message(self, typ, ts, body, wall):
        if typ == 1 and len(body) >= 4:
            self.chunk = struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF
        elif typ == 9 and len(body) >= 2 and (body[0] & 0x0F) == 7 and body[1] == 1:
            self.out.write("%.6f %s %d %d\n" % (wall, "V" if body[0] >> 4 == 1 else "v", ts, len(body)))
        elif typ == 8 and len(body) >= 2 and (body[0] >> 4) == 10 and body[1] == 1:
            self.out.write("%.6f A %d %d\n" % (wall, ts, len(body)))


def pump(src, dst, parser=None, done=None):
    try:
        while True:
            data = src.recv(65536)
            t = time.time()           # the bytes reached the relay; forwarded right below
            if not data:
                break
            dst.sendall(data)
            if parser:
                parser.feed(data, t)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if done:
            done.set()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("upstream")
    ap.add_argument("--log")
    ap.add_argument("--max-seconds", type=float, default=900)
    a = ap.parse_args()
    log = a.log or os.path.join(os.environ.get("LOG_DIR") or
                                os.path.join(os.environ.get("BENCH_OUT", "/tmp/ferrocast-bench"), "tmp"), "tap.tsv")
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    out = open(log, "w", buffering=1)
    host, port = a.upstream.rsplit(":", 1)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(8)
    ls.settimeout(0.5)
    deadline = time.time() + a.max_seconds
    logged, first_done = False, threading.Event()
    print(f"rtmp_tap 127.0.0.1:{a.port} -> {a.upstream} log={log}", file=sys.stderr, flush=True)
    while time.time() < deadline and not first_done.is_set():
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        u = socket.create_connection((host, int(port)))
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parser = None if logged else RtmpParser(out)
        threading.Thread(target=pump, args=(c, u, parser, None if logged else first_done), daemon=True).start()
        threading.Thread(target=pump, args=(u, c), daemon=True).start()
        logged = True
    while time.time() < deadline and not first_done.wait(0.5):
        pass
    out.close()


if __name__ == "__main__":
    main()
