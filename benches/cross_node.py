#!/usr/bin/env python3
"""cross_node.py — LL-HLS part delivery to a viewer on the owner node (A) and to a viewer on
another node (B, which proxies A), in the same run, against the same parts (stdlib only).

  cross_node.py --a PLAYLIST_URL_ON_A --b PLAYLIST_URL_ON_B --log A_SERVER_LOG
                [--stream NAME] [--rendition R] [--duration S] [--raw FILE.csv]

Each viewer follows the live edge as an LL-HLS player does, on two keep-alive connections:
  blocking: GET playlist?_HLS_msn=M&_HLS_part=P for the part after the newest listed one;
            records when each part is first listed (t_listed, response fully read).
  hint:     GET of each new EXT-X-PRELOAD-HINT URI (held by the server until the part exists);
            records when the part's bytes have arrived (t_hint).
Availability on A: A's `ferrocast::lag` debug line of the part (RUST_LOG=...,ferrocast::lag=debug),
whose timestamp is when the part became visible to A's HTTP requests (A's clock = this machine's).
Figures (ms, per part seen by both viewers), key=value lines:
  a_listed / b_listed   t_listed on that viewer - availability on A
  a_hint / b_hint       t_hint on that viewer   - availability on A
  extra_listed / extra_hint   B's time - A's time for the same part (what the extra hop costs)
"""
import argparse, datetime, http.client, queue, re, statistics, sys, threading, time
from urllib.parse import urljoin, urlsplit

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LAG = re.compile(r"^(\S+)\s.*ferrocast::lag.*?stream=\"?([A-Za-z0-9_-]+)\"?\s+msn=(\d+)\s+part=(\d+)\s+lag_ms=\d+(?:\s+rendition=\"?([A-Za-z0-9_-]+))?")


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects once on failure."""

    def __init__(self, url, timeout=20):
        u = urlsplit(url)
        self.host, self.port, self.timeout, self.c = u.hostname, u.port or 80, timeout, None

    def get(self, url):
        """-> (status, body, t_done)"""
        u = urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        for attempt in (0, 1):
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.c.request("GET", path)
                r = self.c.getresponse()
                body = r.read()
                return r.status, body, time.time()
            except (OSError, http.client.HTTPException):
                try:
                    self.c.close()
                except Exception:
                    pass
                self.c = None
                if attempt:
                    return 0, b"", time.time()
        return 0, b"", time.time()


def parse(text):
    """-> (parts [(msn, idx, uri)], hint uri or None, (msn, part) of the next part)"""
    msn0, seg, idx, parts, hint, skipped = 0, 0, 0, [], None, 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn0 = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:"):
            skipped = int(re.search(r"SKIPPED-SEGMENTS=(\d+)", line).group(1))
        elif line.startswith("#EXT-X-PART:"):
            parts.append((msn0 + skipped + seg, idx, re.search(r'URI="([^"]+)"', line).group(1)))
            idx += 1
        elif line.startswith("#EXT-X-PRELOAD-HINT:") and "TYPE=PART" in line:
            hint = re.search(r'URI="([^"]+)"', line).group(1)
        elif line and not line.startswith("#"):
            seg, idx = seg + 1, 0
    # After a complete segment the next part is the first of the next segment (as hls.js asks):
    # `_HLS_part` past the end of a complete segment is answered at once, and that answer may be
    # cached for seconds by B or a CDN, so asking that way would spin on a stale copy.
    return parts, hint, (msn0 + skipped + seg, idx)


class Viewer:
    def __init__(self, label, url, until):
        self.label, self.url, self.until = label, url, until
        self.listed, self.hinted, self.uris = {}, {}, {}
        self.hints = queue.Queue()
        self.errors = 0
        self.requests = 0

    def follow(self):
        c = Conn(self.url)
        status, body, _ = c.get(self.url)
        if status != 200:
            print(f"{self.label}: playlist HTTP {status}", file=sys.stderr)
            return
        parts, hint, (m, i) = parse(body.decode())
        for pm, pi, u in parts:
            self.uris[u] = (pm, pi)
            self.listed[(pm, pi)] = None  # there before we waited: not measured
        last_hint = hint
        while time.time() < self.until:
            status, body, t = c.get(f"{self.url}?_HLS_msn={m}&_HLS_part={i}")
            self.requests += 1
            if status != 200:
                self.errors += 1
                time.sleep(0.05)
                continue
            parts, hint, (m, i) = parse(body.decode())
            for pm, pi, u in parts:
                self.uris[u] = (pm, pi)
                self.listed.setdefault((pm, pi), t)
            if hint and hint != last_hint:
                self.hints.put(hint)
                last_hint = hint
        self.hints.put(None)

    def fetch_hints(self):
        c = Conn(self.url)
        while True:
            uri = self.hints.get()
            if uri is None:
                return
            while not self.hints.empty():  # behind: only the newest hint is worth holding
                nxt = self.hints.get()
                if nxt is None:
                    return
                uri = nxt
            status, _, t = c.get(urljoin(self.url, uri))
            if status == 200:
                self.hinted[uri] = t
            else:
                self.errors += 1

    def run(self):
        ts = [threading.Thread(target=self.follow), threading.Thread(target=self.fetch_hints)]
        for t in ts:
            t.start()
        return ts


def availability(log, stream, rendition):
    avail = {}
    for raw in open(log, errors="replace"):
        m = LAG.search(ANSI.sub("", raw))
        if not m or m.group(2) != stream or (m.group(5) and m.group(5) != rendition):
            continue
        ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        avail.setdefault((int(m.group(3)), int(m.group(4))), ts)
    return avail


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def report(name, xs):
    if not xs:
        print(f"{name}.n=0")
        return
    ms = [x * 1000 for x in xs]
    print(f"{name}.n={len(ms)} {name}.p50_ms={statistics.median(ms):.1f} {name}.p90_ms={pct(ms, .9):.1f} "
          f"{name}.p99_ms={pct(ms, .99):.1f} {name}.max_ms={max(ms):.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--stream", default="x")
    ap.add_argument("--rendition", default="source")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--raw")
    a = ap.parse_args()
    until = time.time() + a.duration
    va, vb = Viewer("a", a.a, until), Viewer("b", a.b, until)
    threads = va.run() + vb.run()
    for t in threads:
        t.join()
    time.sleep(0.5)  # the server log is written as parts are stored; let it flush
    avail = availability(a.log, a.stream, a.rendition)
    hint_a = {va.uris.get(u): t for u, t in va.hinted.items() if u in va.uris}
    hint_b = {vb.uris.get(u): t for u, t in vb.hinted.items() if u in vb.uris}
    keys = sorted(k for k in set(va.listed) & set(vb.listed) & set(avail)
                  if va.listed[k] is not None and vb.listed[k] is not None)
    rows = []
    for k in keys:
        rows.append((k, avail[k], va.listed[k], vb.listed[k], hint_a.get(k), hint_b.get(k)))
    print(f"parts_logged={len(avail)} parts_compared={len(rows)} errors_a={va.errors} errors_b={vb.errors} "
          f"playlist_requests_a={va.requests} playlist_requests_b={vb.requests}")
    report("a_listed", [r[2] - r[1] for r in rows])
    report("b_listed", [r[3] - r[1] for r in rows])
    report("extra_listed", [r[3] - r[2] for r in rows])
    both = [r for r in rows if r[4] is not None and r[5] is not None]
    report("a_hint", [r[4] - r[1] for r in both])
    report("b_hint", [r[5] - r[1] for r in both])
    report("extra_hint", [r[5] - r[4] for r in both])
    if a.raw:
        with open(a.raw, "w") as f:
            f.write("msn,part,avail_a,listed_a,listed_b,hint_a,hint_b\n")
            for (m, i), *ts in rows:
                f.write(f"{m},{i}," + ",".join("" if t is None else f"{t:.6f}" for t in ts) + "\n")


if __name__ == "__main__":
    main()
