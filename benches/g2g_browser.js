#!/usr/bin/env node
// g2g_browser.js PAGE_URL OUT_DIR [WARM_S=12] [SHOTS=5] [EVERY_S=2]
// Headless Debian Chromium (playwright-core from the shared toolkit's npm_need.js, installed into
// $BENCH_OUT/node_modules) plays PAGE_URL — ferrocast's /watch/NAME or the toolkit's /player.html —
// waits until the video plays, lets the player settle WARM_S seconds, then takes SHOTS screenshots
// of the <video> element EVERY_S seconds apart. For each shot it records the wall time (midpoint of
// the screenshot call) and, from the page's window.H.sample() (both pages expose it), hls.js's
// latency estimate and — where the page provides it (ferrocast's watch page) — playingDate/g2g:
// wall time minus EXT-X-PROGRAM-DATE-TIME of the frame on screen (PDT = when the frame reached
// ferrocast's ingest, so this leaves out encoder and network).
// Writes OUT_DIR/shot_N.png and OUT_DIR/shots.json; prints key=value lines. ocr_shots.py reads them.
// Finding the toolkit: env BENCH_DIR (see lib.sh; default ../shared/bench or /work/shared/bench).
'use strict';
const fs = require('fs'), path = require('path');
const repo = path.resolve(__dirname, '..');
const benchDir = process.env.BENCH_DIR ||
  [path.join(repo, '..', 'shared', 'bench'), '/work/shared/bench'].find(d => fs.existsSync(path.join(d, 'bin', 'npm_need.js')));
const { OUT, need } = require(path.join(benchDir, 'bin', 'npm_need.js'));
process.env.TMPDIR = path.join(OUT, 'tmp');
fs.mkdirSync(process.env.TMPDIR, { recursive: true });
const { chromium } = need('playwright-core');

const [url, outDir, warm = '12', shots = '5', every = '2'] = process.argv.slice(2);
if (!url || !outDir) { console.error('usage: g2g_browser.js PAGE_URL OUT_DIR [WARM_S] [SHOTS] [EVERY_S]'); process.exit(2); }
(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  const udd = fs.mkdtempSync(path.join(OUT, 'tmp', 'chromium-profile-'));
  const ctx = await chromium.launchPersistentContext(udd, {
    executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1600, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--autoplay-policy=no-user-gesture-required'] });
  const result = { url, shots: [] };
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    const errors = [];
    page.on('pageerror', e => errors.push(String(e)));
    page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(url);
    const t0 = Date.now();
    let playingAt = null;
    while (Date.now() - t0 < 30000) {
      const s = await page.evaluate(() => window.H && H.sample ? H.sample() : null);
      if (s && s.currentTime > 0 && !s.paused) { playingAt = Date.now(); break; }
      await page.waitForTimeout(200);
    }
    console.log(`first_playing_after_s=${playingAt ? ((playingAt - t0) / 1000).toFixed(2) : 'NA'}`);
    if (!playingAt) throw new Error('video did not start playing within 30 s');
    await page.waitForTimeout(+warm * 1000);
    const video = page.locator('video').first();
    for (let i = 0; i < +shots; i++) {
      if (i) await page.waitForTimeout(+every * 1000);
      const pre = await page.evaluate(() => H.sample());
      const tb = Date.now();
      const file = path.join(outDir, `shot_${i}.png`);
      await video.screenshot({ path: file });
      const ta = Date.now();
      const post = await page.evaluate(() => H.sample());
      const rec = { file, wall_ms: Math.round((tb + ta) / 2), took_ms: ta - tb,
        hls_latency_s: post.hlsLatency, g2g_pdt_ms: post.g2g == null ? null : post.g2g - (post.t - Math.round((tb + ta) / 2)),
        currentTime: post.currentTime, buffered: post.buffered, decoded: post.decoded, dropped: post.dropped,
        rate: post.playbackRate == null ? null : post.playbackRate, state: post.state || null, pre_g2g_ms: pre.g2g };
      result.shots.push(rec);
      console.log(`shot=${i} wall_ms=${rec.wall_ms} took_ms=${rec.took_ms} hlsjs_latency_s=${rec.hls_latency_s == null ? 'NA' : rec.hls_latency_s.toFixed(3)}` +
                  ` g2g_playingDate_ms=${rec.g2g_pdt_ms == null ? 'NA' : rec.g2g_pdt_ms}`);
    }
    const last = await page.evaluate(() => H.sample());
    result.final = last; result.errors = errors.slice(0, 20);
    result.hls_errors = await page.evaluate(() => (H.errors || []).slice(0, 20));
    console.log(`decoded_frames=${last.decoded} dropped_frames=${last.dropped} hls_errors=${JSON.stringify(result.hls_errors)}`);
  } finally {
    fs.writeFileSync(path.join(outDir, 'shots.json'), JSON.stringify(result, null, 1));
    await ctx.close();
    fs.rmSync(udd, { recursive: true, force: true });
  }
})().catch(e => { console.error('FAILED', e); process.exit(1); });
