#!/usr/bin/env node
// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core from the repository's
// node_modules) against ferrocast's web pages. Prints one JSON object on stdout.
//
//   node tests/browser/play.js PAGE_URL [SECS]
//       Opens the player page (/watch/NAME), samples window.H.sample() once a second for SECS
//       seconds (default 12) and prints {samples: [...], summary: {...}, ...}.
//   node tests/browser/play.js --switch PAGE_URL [SECS]
//       Like PAGE_URL, but once playing forces a different hls.js level every 3 s (nextLevel,
//       cycling through every level) and records, per sample, the level on screen; prints
//       {samples, levels, switches, ...}.
//   node tests/browser/play.js --pin PAGE_URL SECS HEIGHT
//       Like PAGE_URL, but once playing pins hls.js to the level of that picture height
//       (e.g. 360) and then samples; benches/transcode_g2g.sh compares rungs with it.
//   node tests/browser/play.js --index INDEX_URL NAME [TIMEOUT_S]
//       Opens the stream list (/) and waits until it shows a link to /watch/NAME; prints
//       {found, links, card}.
//
// Environment: CHROMIUM (default /usr/bin/chromium). Used by tests/browser.rs (`cargo test`).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function fail(msg) {
  process.stderr.write(`play.js: ${msg}\n`);
  process.exit(2);
}

let chromium;
try {
  ({ chromium } = require(path.join(ROOT, 'node_modules', 'playwright-core')));
} catch (e) {
  fail(`cannot load ${path.join(ROOT, 'node_modules', 'playwright-core')} (${e.message}); run scripts/setup.sh test`);
}
if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} not found; run scripts/setup.sh test`);

async function withBrowser(fn) {
  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrocast-chromium-'));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(udd, {
      executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 720 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             '--autoplay-policy=no-user-gesture-required'],
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    const consoleErrors = [];
    page.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', e => consoleErrors.push(String(e)));
    const out = await fn(page);
    out.browserVersion = ctx.browser() ? ctx.browser().version() : null;
    out.consoleErrors = consoleErrors.slice(0, 20);
    return out;
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(udd, { recursive: true, force: true });
  }
}

async function play(url, secs) {
  return withBrowser(async page => {
    const resp = await page.goto(url);
    const status = resp ? resp.status() : null;
    if (status !== 200) return { url, status, error: `page answered HTTP ${status}` };
    const hasH = await page.evaluate(() => typeof window.H === 'object' && typeof window.H.sample === 'function');
    if (!hasH) return { url, status, error: 'page does not expose window.H.sample()' };
    const info = await page.evaluate(() => ({ hlsVersion: H.hlsVersion, hlsSupported: H.hlsSupported, native: H.native, mse: H.mse }));
    const samples = [];
    for (let i = 0; i < secs; i++) {
      await page.waitForTimeout(1000);
      samples.push(await page.evaluate(() => H.sample()));
    }
    const end = await page.evaluate(() => ({ errors: H.errors, state: H.state, mode: H.mode, restarts: H.restarts,
                                             config: H.config, width: document.querySelector('video').videoWidth,
                                             height: document.querySelector('video').videoHeight,
                                             stats: (document.getElementById('stats') || {}).textContent || null }));
    const firstPlaying = samples.findIndex(s => s.currentTime > 0);
    const s0 = samples[firstPlaying] || samples[0], s1 = samples[samples.length - 1];
    const g2g = samples.filter(s => s.g2g != null).map(s => s.g2g).sort((a, b) => a - b);
    const lat = samples.filter(s => s.hlsLatency).map(s => s.hlsLatency).sort((a, b) => a - b);
    const median = a => a.length ? a[Math.floor(a.length / 2)] : null;
    return {
      url, status, ...info, ...end, samples,
      summary: {
        firstPlayingAfterS: firstPlaying < 0 ? null : firstPlaying + 1,
        currentTimeStart: s0.currentTime, currentTimeEnd: s1.currentTime,
        wallElapsedS: (s1.t - s0.t) / 1000,
        decoded: s1.decoded, dropped: s1.dropped, fatal: s1.fatal, videoError: s1.videoError,
        g2gMs: { min: g2g[0] ?? null, median: median(g2g), max: g2g[g2g.length - 1] ?? null, last: s1.g2g },
        hlsLatencyS: { min: lat[0] ?? null, median: median(lat), max: lat[lat.length - 1] ?? null, last: s1.hlsLatency },
      },
    };
  });
}

async function switching(url, secs) {
  return withBrowser(async page => {
    const resp = await page.goto(url);
    const status = resp ? resp.status() : null;
    if (status !== 200) return { url, status, error: `page answered HTTP ${status}` };
    // Wait until playing with every level known.
    let ready = false;
    for (let i = 0; i < 30 && !ready; i++) {
      await page.waitForTimeout(1000);
      ready = await page.evaluate(() => !!(window.hls && hls.levels && hls.levels.length > 1 &&
                                           document.querySelector('video').currentTime > 0));
    }
    if (!ready) return { url, status, error: 'never played with several levels', state: await page.evaluate(() => H.state) };
    await page.evaluate(() => {
      window.__switched = [];
      hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => window.__switched.push({ level: d.level, t: Date.now() }));
    });
    const levels = await page.evaluate(() => hls.levels.map(l => ({ width: l.width, height: l.height, bitrate: l.bitrate, name: l.name || null })));
    const samples = [];
    const forced = [];
    for (let i = 0; i < secs; i++) {
      if (i % 3 === 0) {
        const target = await page.evaluate(() => { const next = (Math.max(hls.currentLevel, 0) + 1) % hls.levels.length; hls.nextLevel = next; return next; });
        forced.push({ at: i, level: target });
      }
      await page.waitForTimeout(1000);
      const s = await page.evaluate(() => Object.assign(H.sample(), {
        level: hls.currentLevel, videoHeight: document.querySelector('video').videoHeight,
        waiting: H.state }));
      samples.push(s);
    }
    const end = await page.evaluate(() => ({ errors: H.errors, state: H.state, switched: window.__switched }));
    return { url, status, levels, forced, samples, ...end };
  });
}

async function pinned(url, secs, height) {
  return withBrowser(async page => {
    const resp = await page.goto(url);
    const status = resp ? resp.status() : null;
    if (status !== 200) return { url, status, error: `page answered HTTP ${status}` };
    let level = -1;
    for (let i = 0; i < 30 && level < 0; i++) {
      await page.waitForTimeout(1000);
      level = await page.evaluate(h => (window.hls && hls.levels && document.querySelector('video').currentTime > 0)
        ? hls.levels.findIndex(l => l.height === h) : -1, height);
    }
    if (level < 0) return { url, status, error: `never played a level of height ${height}` };
    await page.evaluate(l => { hls.currentLevel = l; }, level);
    // Settled once the picture on screen is the pinned level's.
    try {
      await page.waitForFunction(([l, h]) => hls.currentLevel === l &&
        document.querySelector('video').videoHeight === h, [level, height], { timeout: 30000, polling: 100 });
    } catch (e) {
      return { url, status, error: `the picture never switched to height ${height}` };
    }
    const samples = [];
    for (let i = 0; i < secs; i++) {
      await page.waitForTimeout(1000);
      samples.push(await page.evaluate(() => Object.assign(H.sample(), {
        level: hls.currentLevel, videoHeight: document.querySelector('video').videoHeight })));
    }
    const g2g = samples.filter(s => s.g2g != null && s.videoHeight === height).map(s => s.g2g).sort((a, b) => a - b);
    return { url, status, height, level, samples,
             g2gMs: { n: g2g.length, min: g2g[0] ?? null, median: g2g.length ? g2g[Math.floor(g2g.length / 2)] : null, max: g2g[g2g.length - 1] ?? null } };
  });
}

async function index(url, name, timeoutS) {
  return withBrowser(async page => {
    const resp = await page.goto(url);
    const status = resp ? resp.status() : null;
    const href = '/watch/' + encodeURIComponent(name);
    let found = false;
    try {
      await page.waitForSelector(`a[href="${href}"]`, { timeout: timeoutS * 1000 });
      found = true;
    } catch (_) { /* reported below */ }
    const links = await page.evaluate(() => [...document.querySelectorAll('a')].map(a => a.getAttribute('href')));
    const card = found ? await page.evaluate(h => document.querySelector(`a[href="${h}"]`).textContent.replace(/\s+/g, ' ').trim(), href) : null;
    return { url, status, href, found, links, card };
  });
}

(async () => {
  const argv = process.argv.slice(2);
  let out;
  if (argv[0] === '--pin') {
    if (!argv[1] || !argv[3]) fail('usage: play.js --pin PAGE_URL SECS HEIGHT');
    out = await pinned(argv[1], +argv[2], +argv[3]);
  } else if (argv[0] === '--switch') {
    if (!argv[1]) fail('usage: play.js --switch PAGE_URL [SECS]');
    out = await switching(argv[1], +(argv[2] || 18));
  } else if (argv[0] === '--index') {
    if (!argv[1] || !argv[2]) fail('usage: play.js --index INDEX_URL NAME [TIMEOUT_S]');
    out = await index(argv[1], argv[2], +(argv[3] || 10));
  } else {
    if (!argv[0]) fail('usage: play.js PAGE_URL [SECS]');
    out = await play(argv[0], +(argv[1] || 12));
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch(e => fail(e && e.stack || String(e)));
