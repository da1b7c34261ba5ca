#!/usr/bin/env node
// Headless Chromium on the watch page's chat, driven line by line over stdin/stdout so that a
// Rust test (tests/browser_chat.rs) or a bench can interleave its own WebSocket clients.
//
//   node tests/browser/chat.js PAGE_URL
//
// Reads one JSON command per stdin line, answers one JSON line on stdout for each:
//   {"cmd":"wait-playing","timeout":S}   -> {ok, sample, chat}: video playing (and chat connected
//                                            unless the page runs ?chat=stream)
//   {"cmd":"wait-steady","timeout":S}    -> {ok, sample, waitedMs}: playing at normal speed (hls.js
//                                            done catching up) within 1 s of its target distance
//                                            from the live edge, with media buffered ahead
//   {"cmd":"wait-shown","id":N,"timeout":S} -> {ok, rec, dom}: message N is in the list and its
//                                            paint time recorded; rec is its H.chat.shown
//                                            record, dom what the list holds
//   {"cmd":"wait-gone","id":N,"timeout":S}  -> {ok}: message N is no longer in the list
//   {"cmd":"click-delete","id":N}        -> {ok}: clicks the moderator delete button of N
//   {"cmd":"type-send","text":T}         -> {ok}: types T into the send box and presses Enter
//   {"cmd":"set-sync"}                   -> {ok, sync}: clicks the "in step with video" toggle
//   {"cmd":"state"}                      -> {chat, sample, websockets, alerts, consoleErrors}
//   {"cmd":"quit"}                       -> closes the browser, exits 0
// Every answer also carries `websockets` (URLs the page opened) and `alerts` (dialogs seen).
// Environment: CHROMIUM (default /usr/bin/chromium).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

const ROOT = path.resolve(__dirname, '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const fail = msg => { process.stderr.write(`chat.js: ${msg}\n`); process.exit(2); };
let chromium;
try {
  ({ chromium } = require(path.join(ROOT, 'node_modules', 'playwright-core')));
} catch (e) { fail(`cannot load playwright-core (${e.message}); run scripts/setup.sh test`); }
if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} not found; run scripts/setup.sh test`);
const url = process.argv[2];
if (!url) fail('usage: chat.js PAGE_URL');

(async () => {
  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrocast-chromium-'));
  const ctx = await chromium.launchPersistentContext(udd, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--autoplay-policy=no-user-gesture-required'],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const websockets = [], alerts = [], consoleErrors = [];
  page.on('websocket', ws => websockets.push(ws.url()));
  page.on('dialog', d => { alerts.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', e => consoleErrors.push(String(e)));
  // Any script run by injected markup would call these; record instead of blocking.
  await page.addInitScript(() => {
    window.__alerts = [];
    for (const k of ['alert', 'confirm', 'prompt']) window[k] = m => { window.__alerts.push(k + ':' + m); };
  });
  const resp = await page.goto(url);
  const status = resp ? resp.status() : null;
  const out = o => process.stdout.write(JSON.stringify(Object.assign(o, { websockets, alerts })) + '\n');
  if (status !== 200) { out({ ok: false, error: `page answered HTTP ${status}` }); }

  const chatState = () => page.evaluate(() => {
    const c = window.H && H.chat;
    if (!c) return null;
    return { mode: c.mode, connected: c.connected, wsOpened: c.wsOpened, me: c.me, moderator: c.moderator,
             open: c.open, viewers: c.viewers, sync: c.sync, held: c.held, frames: c.frames, vsyncMs: c.vsyncMs,
             shown: c.shown, deleted: c.deleted, errors: c.errors, meta: c.meta, pageAlerts: window.__alerts,
             modVisible: !document.getElementById('chat-mod').hidden,
             inputDisabled: document.getElementById('chat-input').disabled,
             inputPlaceholder: document.getElementById('chat-input').placeholder };
  });
  const domOf = id => page.evaluate(id => {
    const list = document.getElementById('chat-list');
    const li = list.querySelector(`li[data-id="${id}"]`);
    return {
      present: !!li,
      name: li ? li.querySelector('.who').textContent : null,
      text: li ? li.querySelector('.text').textContent : null,
      textHTML: li ? li.querySelector('.text').innerHTML : null,
      textChildElements: li ? li.querySelector('.text').children.length : null,
      deleteButton: li ? !!li.querySelector('button.del') : null,
      listImgs: list.querySelectorAll('img').length, listBolds: list.querySelectorAll('b').length,
      docImgs: document.querySelectorAll('img').length,
    };
  }, id);
  const waitFor = async (timeoutS, pred) => {
    const end = Date.now() + timeoutS * 1000;
    for (;;) {
      const v = await pred();
      if (v) return v;
      if (Date.now() > end) return null;
      await page.waitForTimeout(20);
    }
  };

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let c;
    try { c = JSON.parse(line); } catch (e) { out({ ok: false, error: 'bad command ' + line }); continue; }
    try {
      if (c.cmd === 'quit') break;
      if (c.cmd === 'wait-playing') {
        const ok = await waitFor(c.timeout || 30, () => page.evaluate(() => {
          const v = document.querySelector('video');
          const s = H.sample();
          return v.currentTime > 0.5 && !v.paused && s.playingDate != null && H.state === 'playing' &&
                 (H.chat.mode === 'stream' || H.chat.connected);
        }));
        out({ ok: !!ok, sample: await page.evaluate(() => H.sample()), chat: await chatState() });
      } else if (c.cmd === 'wait-steady') {
        const t0 = Date.now();
        const ok = await waitFor(c.timeout || 30, () => page.evaluate(() => {
          const v = document.querySelector('video');
          const s = H.sample();
          const ahead = s.buffered ? s.buffered[1] - v.currentTime : 0;
          return H.state === 'playing' && !v.paused && v.readyState >= 3 && v.playbackRate === 1 &&
                 s.hlsLatency != null && s.targetLatency != null &&
                 s.hlsLatency <= s.targetLatency + 1 && ahead > 0;
        }));
        out({ ok: !!ok, sample: await page.evaluate(() => H.sample()), waitedMs: Date.now() - t0 });
      } else if (c.cmd === 'wait-shown') {
        const shown = () => page.evaluate(id => !!document.querySelector(`#chat-list li[data-id="${id}"]`), c.id);
        // Shown, then painted: the first animation frame after the insertion records paintAt.
        const painted = () => page.evaluate(id => (H.chat.shown.find(r => r.id === id) || {}).paintAt != null, c.id);
        const ok = await waitFor(c.timeout || 15, shown) && await waitFor(5, painted);
        const chat = await chatState();
        out({ ok: !!ok, rec: chat.shown.find(r => r.id === c.id) || null, dom: await domOf(c.id), chat,
              meta: chat.meta[c.id] || null, sample: await page.evaluate(() => H.sample()) });
      } else if (c.cmd === 'wait-gone') {
        const ok = await waitFor(c.timeout || 15, () => page.evaluate(id => !document.querySelector(`#chat-list li[data-id="${id}"]`), c.id));
        out({ ok: !!ok, dom: await domOf(c.id), chat: await chatState() });
      } else if (c.cmd === 'click-delete') {
        await page.click(`#chat-list li[data-id="${c.id}"] button.del`, { timeout: 5000 });
        out({ ok: true });
      } else if (c.cmd === 'type-send') {
        // Through the page's own send box, as a viewer would.
        await page.fill('#chat-input', c.text);
        await page.press('#chat-input', 'Enter');
        out({ ok: true, inputAfter: await page.inputValue('#chat-input') });
      } else if (c.cmd === 'set-sync') {
        await page.click('#chat-sync');
        out({ ok: true, sync: await page.evaluate(() => H.chat.sync) });
      } else if (c.cmd === 'state') {
        out({ ok: true, chat: await chatState(), sample: await page.evaluate(() => H.sample()), consoleErrors });
      } else {
        out({ ok: false, error: 'unknown command ' + c.cmd });
      }
    } catch (e) {
      out({ ok: false, error: String(e && e.stack || e) });
    }
  }
  await ctx.close().catch(() => {});
  fs.rmSync(udd, { recursive: true, force: true });
  process.exit(0);
})().catch(e => fail(e && e.stack || String(e)));
