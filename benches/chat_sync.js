#!/usr/bin/env node
// chat_sync.js PAGE_URL [N=30] [EVERY_MS=1200] [OUT_JSON]
// How far, on the watch page, a chat message's appearance is from the moment its picture is on
// screen. Headless Debian Chromium (playwright-core from the repository's node_modules) opens
// PAGE_URL (/watch/NAME, or /watch/NAME?chat=stream), waits until it plays, then a separate
// WebSocket opened inside the page (name "syncbench", not the chat panel's own connection) sends
// N messages EVERY_MS apart (+0..300 ms jitter, so sends are not phase-locked to frames).
//
// Independent of the page's release logic, an extra requestVideoFrameCallback logger records
// every presented frame: expectedDisplayTime, its media time, and its program date-time from
// hls.js's fragment list (frag.programDateTime + (mediaTime − frag.start)). For each message:
//   picture  = expectedDisplayTime of the first logged frame at/after the message's time
//              (WebSocket: PDT ≥ pdt; ?chat=stream: media time ≥ the emsg event's time)
//   appears  = the page's paint frame for the message (H.chat.shown[].paintAt, the animation
//              frame that renders the insertion) + one vsync (that frame reaches the screen at
//              the next vsync, as expectedDisplayTime counts for video frames)
//   delta    = appears − picture (negative: before its picture)
// Prints key=value lines and writes OUT_JSON (raw records) when given.
'use strict';
const fs = require('fs'), os = require('os'), path = require('path');
const ROOT = path.resolve(__dirname, '..');
const { chromium } = require(path.join(ROOT, 'node_modules', 'playwright-core'));
const [url, nArg = '30', everyArg = '1200', outJson] = process.argv.slice(2);
if (!url) { console.error('usage: chat_sync.js PAGE_URL [N] [EVERY_MS] [OUT_JSON]'); process.exit(2); }
const N = +nArg, EVERY = +everyArg;

(async () => {
  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrocast-chatsync-'));
  const ctx = await chromium.launchPersistentContext(udd, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--autoplay-policy=no-user-gesture-required'] });
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    const errors = [];
    page.on('pageerror', e => errors.push(String(e)));
    await page.goto(url);
    const t0 = Date.now();
    for (;;) {
      const ok = await page.evaluate(() => window.H && H.chat && H.sample().currentTime > 0.5 && H.state === 'playing' &&
                                           (H.chat.mode === 'stream' || H.chat.connected));
      if (ok) break;
      if (Date.now() - t0 > 45000) throw new Error('the page did not play within 45 s');
      await page.waitForTimeout(200);
    }
    await page.waitForTimeout(5000); // settle at the player's distance from the live edge
    await page.evaluate(() => {
      const v = document.querySelector('video');
      window.__frames = [];
      const cb = (_now, m) => {
        let pdt = null;
        const d = window.hls && hls.latestLevelDetails;
        if (d) {
          // The last segment that starts at or before the frame: at the live edge that is the
          // segment still being filled with parts (hls.js lists it with duration 0 until done).
          let f = null;
          for (const x of d.fragments) if (x.start <= m.mediaTime + 1e-3 && Number.isFinite(x.programDateTime)) f = x;
          if (f) pdt = f.programDateTime + (m.mediaTime - f.start) * 1000;
        }
        window.__frames.push({ edt: m.expectedDisplayTime, mt: m.mediaTime, pdt });
        if (window.__frames.length > 20000) window.__frames.splice(0, 10000);
        v.requestVideoFrameCallback(cb);
      };
      v.requestVideoFrameCallback(cb);
    });
    const sent = await page.evaluate(async ({ N, EVERY }) => {
      const u = new URL('/live/' + encodeURIComponent(H.name) + '/chat?name=syncbench', location.href);
      u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const s = new WebSocket(u);
      const ids = [];
      s.onmessage = e => { const f = JSON.parse(e.data); if (f.type === 'message' && f.name === 'syncbench') ids.push(f.id); };
      await new Promise((res, rej) => { s.onopen = res; s.onerror = rej; });
      for (let i = 0; i < N; i++) {
        s.send(JSON.stringify({ type: 'send', text: 'sync bench ' + i }));
        await new Promise(r => setTimeout(r, EVERY + Math.random() * 300));
      }
      await new Promise(r => setTimeout(r, 4000)); // the last ones reach their pictures
      s.close();
      return ids;
    }, { N, EVERY });
    const res = await page.evaluate(() => ({ shown: H.chat.shown, frames: window.__frames, meta: H.chat.meta,
                                             vsync: H.chat.vsyncMs, mode: H.chat.mode, sample: H.sample() }));
    const vs = res.vsync || 1000 / 60;
    const mine = new Set(sent);
    const rows = [];
    for (const r of res.shown) {
      if (!mine.has(r.id)) continue;
      const stream = res.mode === 'stream';
      const cross = stream ? res.frames.find(f => f.mt >= r.pts) : res.frames.find(f => f.pdt != null && f.pdt >= r.pdt);
      const meta = res.meta[r.id];
      const crossMeta = !stream && meta ? res.frames.find(f => f.mt >= meta.pts) : null;
      rows.push({ id: r.id, reason: r.reason, heldMs: r.heldMs, pdt: r.pdt, pts: r.pts,
                  aheadMs: stream ? (r.pts - r.currentTimeAtArrival) * 1000 : r.pdt - r.playingDateAtArrival,
                  delta: cross && r.paintAt ? r.paintAt + vs - cross.edt : null,
                  deltaVsStreamEvent: crossMeta && r.paintAt ? r.paintAt + vs - crossMeta.edt : null,
                  eventVsPdtMs: meta ? meta.pdtOfPts - r.pdt : null });
    }
    const stat = a => {
      const v = a.filter(x => x != null && Number.isFinite(x)).sort((x, y) => x - y);
      if (!v.length) return 'n=0';
      const q = p => v[Math.min(v.length - 1, Math.floor(p * v.length))];
      return `n=${v.length} p50=${q(0.5).toFixed(1)} p95=${q(0.95).toFixed(1)} max=${v[v.length - 1].toFixed(1)} min=${v[0].toFixed(1)}`;
    };
    const reasons = {};
    for (const r of rows) reasons[r.reason] = (reasons[r.reason] || 0) + 1;
    console.log(`mode=${res.mode} sent=${N} acked=${sent.length} shown=${rows.length} reasons=${JSON.stringify(reasons)} vsync_ms=${vs.toFixed(1)}`);
    console.log(`delta_ms ${stat(rows.map(r => r.delta))}`);
    console.log(`abs_delta_ms ${stat(rows.map(r => r.delta == null ? null : Math.abs(r.delta)))}`);
    if (res.mode !== 'stream') {
      console.log(`delta_vs_stream_event_ms ${stat(rows.map(r => r.deltaVsStreamEvent))}`);
      console.log(`stream_event_minus_pdt_ms ${stat(rows.map(r => r.eventVsPdtMs))}`);
    }
    console.log(`ahead_of_picture_on_arrival_ms ${stat(rows.map(r => r.aheadMs))}`);
    console.log(`held_ms ${stat(rows.map(r => r.heldMs))}`);
    console.log(`page_errors=${errors.length} hls_latency_s=${(res.sample.hlsLatency || 0).toFixed(2)}`);
    if (outJson) fs.writeFileSync(outJson, JSON.stringify({ url, rows, vsync: vs, errors }, null, 1));
  } finally {
    await ctx.close().catch(() => {});
    fs.rmSync(udd, { recursive: true, force: true });
  }
})().catch(e => { console.error(e && e.stack || String(e)); process.exit(1); });
