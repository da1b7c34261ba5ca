// Stream list: polls /api/v1/streams and keeps one card per live stream, each linking to
// /watch/NAME. Stream data is only ever inserted as text (textContent), never as markup.
'use strict';
(() => {
  const REFRESH_MS = 3000;
  const list = document.getElementById('streams');
  const notice = document.getElementById('notice');
  const cards = new Map(); // name -> { li, badge, res, rate, up, upBase, upAt }

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  };

  function fmtUptime(s) {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = String(m).padStart(h ? 2 : 1, '0'), ss = String(sec).padStart(2, '0');
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  function fmtBitrate(bps) {
    if (!bps) return '';
    return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mb/s` : `${Math.round(bps / 1e3)} kb/s`;
  }
  function describe(s) {
    const rs = Array.isArray(s.renditions) ? s.renditions : [];
    // The largest picture among the renditions is "the" resolution of the stream.
    const v = rs.filter(r => r.width && r.height).sort((a, b) => b.height - a.height)[0];
    let res = v ? `${v.width}×${v.height}` : (rs.length ? 'audio only' : 'starting…');
    if (v && v.fps) res += ` ${Math.round(v.fps)} fps`;
    if (rs.length > 1) res += ` · ${rs.length} renditions`;
    return { res, rate: fmtBitrate(s.bitrate) };
  }

  function card(name) {
    let c = cards.get(name);
    if (c) return c;
    const li = el('li', 'stream');
    const a = el('a');
    a.href = '/watch/' + encodeURIComponent(name);
    const title = el('div', 'name');
    const badge = el('span', 'badge live', 'live');
    title.append(badge, ' ', el('span', null, name));
    const meta = el('div', 'meta num');
    const res = el('span'), rate = el('span'), up = el('span');
    meta.append(res, document.createTextNode(' · '), rate, document.createTextNode(' · up '), up);
    a.append(title, meta);
    li.append(a);
    c = { li, badge, res, rate, up, upBase: 0, upAt: 0 };
    cards.set(name, c);
    return c;
  }

  function render(streams) {
    const live = streams.filter(s => s && typeof s.name === 'string' && !s.ended);
    live.sort((a, b) => a.name.localeCompare(b.name));
    const seen = new Set();
    const now = performance.now();
    for (const s of live) {
      const c = card(s.name);
      seen.add(s.name);
      const d = describe(s);
      c.res.textContent = d.res;
      c.rate.textContent = d.rate || '—';
      const reconnecting = s.publishing === false;
      c.badge.textContent = reconnecting ? 'reconnecting' : 'live';
      c.badge.classList.toggle('live', !reconnecting);
      c.upBase = +s.uptime_s || 0;
      c.upAt = now;
      c.up.textContent = fmtUptime(c.upBase);
      list.append(c.li); // (re)appends in sorted order; existing nodes just move
    }
    for (const [name, c] of cards) {
      if (!seen.has(name)) { c.li.remove(); cards.delete(name); }
    }
    notice.hidden = live.length > 0;
    if (!live.length) notice.textContent = 'Nothing is live right now.';
  }

  async function refresh() {
    try {
      const r = await fetch('/api/v1/streams', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const body = await r.json();
      render(Array.isArray(body) ? body : (body.streams || []));
    } catch (e) {
      notice.hidden = false;
      notice.textContent = 'Cannot reach the server; retrying…';
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  // Uptime ticks between refreshes.
  setInterval(() => {
    const now = performance.now();
    for (const c of cards.values()) c.up.textContent = fmtUptime(c.upBase + (now - c.upAt) / 1000);
  }, 1000);
  refresh();
})();
