// Chat panel of /watch/NAME (loaded after watch.js, which owns the player and window.H).
//
// Two sources, chosen by the URL:
//   default        WebSocket /live/NAME/chat (?name=NICK and ?token=T are passed through):
//                  history, live messages, deletions, viewer count, sending, moderation.
//   ?chat=stream   no WebSocket: read-only, messages come from the stream itself (ID3 `TXXX`
//                  frames "ferrocast-chat" in `emsg` boxes of the fMP4 parts, which hls.js hands
//                  over in FRAG_PARSING_METADATA with their time on the media timeline).
//
// In step with the picture (default; the "in step with video" checkbox turns it off):
// every message carries `pdt`, the stream's program date-time at the live edge when the server
// received it. The page holds each message until the picture on screen has reached that
// moment, so chat appears together with the picture it was written against, not ~1 s early.
//   - WebSocket: a message is released when the program date-time of the presented video frame
//     (hls.js's playingDate, mapped to the frame that requestVideoFrameCallback reports) is at
//     or past `pdt`. One whose `pdt` is already behind the picture shows at once.
//   - ?chat=stream: a message is released when the presented frame's media time reaches the
//     event's presentation time (the same moment, placed on the media timeline by the server).
//   - Not playing (offline, starting, autoplay blocked, ended, paused by the viewer): there is
//     no picture to wait for, so messages show at once. A short stall while playing keeps them
//     held (the picture comes back).
//   - Safety valve: nothing is held longer than HOLD_CAP_MS (player far behind, broken clock).
// Deletions always apply at once (and to held messages), so deleted text is never shown later.
//
// User text is data: it goes into the page only through textContent, never as markup.
//
// window.H.chat (tests and benches): mode, connected, wsOpened, me, moderator, viewers, sync,
// held (count), shown[] (one record per displayed message: arrival, release and paint times,
// playing date at both moments, the frame that released it), deleted[], errors[], meta{} (id ->
// in-stream event seen: media time and PDT of that time), setSync(bool).
'use strict';
(() => {
  const H = window.H;
  const $ = id => document.getElementById(id);
  const panel = $('chat');
  if (!H || !panel) return;

  const HOLD_CAP_MS = 30000;        // longest a message waits for its picture
  const MAX_ITEMS = 300;            // messages kept in the list
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
  const FATAL = new Set(['bad_token', 'banned', 'name_invalid', 'name_reserved']); // reconnecting cannot help: stop and say why
  const DESCRIPTION = 'ferrocast-chat';

  const params = new URLSearchParams(location.search);
  const MODE = params.get('chat') === 'stream' ? 'stream' : 'ws';
  const nick = params.get('name') || '';
  const token = params.get('token') || '';
  const video = $('video'), list = $('chat-list'), statusEl = $('chat-status'), errorEl = $('chat-error');
  const form = $('chat-form'), input = $('chat-input'), sendBtn = $('chat-send');
  const viewersEl = $('chat-viewers'), syncBox = $('chat-sync'), modBox = $('chat-mod');
  const modName = $('chat-mod-name');

  const C = H.chat = {
    mode: MODE, connected: false, wsOpened: 0, me: null, moderator: false, open: false,
    viewers: null, sync: true, held: 0, shown: [], deleted: [], errors: [], meta: {},
    frames: 0, vsyncMs: null,
  };

  // ---- in step or instant ------------------------------------------------------------------------
  try { if (localStorage.getItem('ferrocast.chat.sync') === 'instant') C.sync = false; } catch (_) { /* no storage */ }
  syncBox.checked = C.sync;
  function setSync(on) {
    C.sync = !!on;
    syncBox.checked = C.sync;
    try { localStorage.setItem('ferrocast.chat.sync', C.sync ? 'step' : 'instant'); } catch (_) { /* no storage */ }
    if (!C.sync) releaseAll('instant');
  }
  C.setSync = setSync;
  syncBox.addEventListener('change', () => setSync(syncBox.checked));

  // Whether a picture is moving that messages can wait for.
  function playing() {
    return !!H.mode && (H.state === 'playing' || H.state === 'buffering') && !video.paused;
  }
  function holding() { return C.sync && playing(); }

  // ---- messages: known ids, held queue, list ------------------------------------------------------
  const known = new Map();     // id -> 'held' | 'shown' | 'deleted'
  const held = [];             // {msg, key, rec}, key = pdt (ms, WebSocket) or media time (s, stream)
  const items = new Map();     // id -> <li>

  function now() { return performance.now(); }

  // A message from either source. `pts`: its media time (stream mode), else undefined.
  function accept(msg, pts, origin) {
    if (!msg || msg.id == null || known.has(msg.id)) return;
    const pd = H.playingDateMs ? H.playingDateMs() : null;
    const rec = {
      id: msg.id, name: msg.name, pdt: msg.pdt, ts: msg.ts, origin,
      pts: pts === undefined ? null : pts,
      arrivedAt: now(), arrivedWall: Date.now(), playingDateAtArrival: pd,
      currentTimeAtArrival: video.currentTime,
    };
    const key = MODE === 'stream' ? pts : msg.pdt;
    if (!holding() || !Number.isFinite(key)) { show(msg, rec, holding() ? 'no-time' : (C.sync ? 'not-playing' : 'instant')); return; }
    const cur = MODE === 'stream' ? video.currentTime : pd;
    if (cur == null) { show(msg, rec, 'no-clock'); return; } // no program date-time to wait on
    if (cur >= key) { show(msg, rec, 'behind'); return; }
    known.set(msg.id, 'held');
    held.push({ msg, key, rec });
    held.sort((a, b) => a.key - b.key);
    C.held = held.length;
  }

  // Releases every held message whose key is at or before `upTo` (all when upTo is Infinity).
  function release(upTo, why, frame) {
    let n = 0;
    while (n < held.length && held[n].key <= upTo) n++;
    if (!n) return;
    for (const h of held.splice(0, n)) show(h.msg, h.rec, why, frame);
    C.held = held.length;
  }
  function releaseAll(why) { release(Infinity, why); }

  let paintBatch = [];
  function show(msg, rec, why, frame) {
    known.set(msg.id, 'shown');
    rec.reason = why;
    rec.shownAt = now();
    rec.shownWall = Date.now();
    rec.heldMs = rec.shownAt - rec.arrivedAt;
    rec.playingDateAtShow = H.playingDateMs ? H.playingDateMs() : null;
    rec.currentTimeAtShow = video.currentTime;
    if (frame) {
      rec.frameDate = frame.date; rec.frameMediaTime = frame.mediaTime;
      rec.frameExpectedDisplay = frame.expectedDisplayTime;
    }
    C.shown.push(rec);
    if (C.shown.length > 2000) C.shown.splice(0, 1000);
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const li = renderMessage(msg);
    items.set(msg.id, li);
    list.append(li);
    while (list.children.length > MAX_ITEMS) {
      const first = list.firstElementChild;
      if (first.dataset.id) items.delete(+first.dataset.id);
      first.remove();
    }
    if (nearBottom) list.scrollTop = list.scrollHeight;
    // The first animation frame after the insertion renders it: record when.
    if (!paintBatch.length) requestAnimationFrame(ts => { for (const r of paintBatch) r.paintAt = ts; paintBatch = []; });
    paintBatch.push(rec);
  }

  function renderMessage(msg) {
    const li = document.createElement('li');
    li.className = 'msg' + (C.me && msg.name === C.me ? ' mine' : '');
    li.dataset.id = String(msg.id);
    // Moderators can pick a name for timeout/ban by clicking it; for others it is plain text.
    const who = document.createElement(C.moderator ? 'button' : 'span');
    who.className = 'who';
    who.textContent = String(msg.name ?? '');   // text, never markup
    who.title = (msg.ts ? new Date(msg.ts).toLocaleTimeString() : '') + (C.moderator ? ' — click to moderate' : '');
    if (C.moderator) {
      who.type = 'button';
      who.addEventListener('click', () => { modName.value = msg.name; modName.focus(); });
    }
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = String(msg.text ?? '');  // text, never markup
    li.append(who, text);
    if (C.moderator) li.append(deleteButton(msg));
    return li;
  }
  function deleteButton(msg) {
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'del';
    del.textContent = '×';
    del.title = 'Delete this message';
    del.setAttribute('aria-label', 'Delete message from ' + msg.name);
    del.addEventListener('click', () => sendFrame({ type: 'delete', id: msg.id }));
    return del;
  }

  function systemLine(text) {
    const li = document.createElement('li');
    li.className = 'msg system';
    li.textContent = text;
    list.append(li);
    list.scrollTop = list.scrollHeight;
  }

  function remove(id) {
    const state = known.get(id);
    known.set(id, 'deleted');
    C.deleted.push({ id, at: now(), wasShown: state === 'shown', wasHeld: state === 'held' });
    const i = held.findIndex(h => h.msg.id === id);
    if (i >= 0) { held.splice(i, 1); C.held = held.length; }
    const li = items.get(id);
    if (li) { li.remove(); items.delete(id); }
  }

  // ---- the picture: one callback per presented video frame ------------------------------------------
  let lastFrameAt = 0;
  const hasRvfc = 'requestVideoFrameCallback' in HTMLVideoElement.prototype;
  function onVideoFrame(_now, meta) {
    C.frames++;
    lastFrameAt = now();
    if (holding() && held.length) {
      // PDT of the frame being presented: hls.js's playing date (for currentTime) moved to the
      // frame's own media time.
      const pd = H.playingDateMs ? H.playingDateMs() : null;
      const frame = { mediaTime: meta.mediaTime, expectedDisplayTime: meta.expectedDisplayTime,
                      date: pd == null ? null : pd + (meta.mediaTime - video.currentTime) * 1000 };
      const upTo = MODE === 'stream' ? meta.mediaTime : frame.date;
      if (upTo != null) release(upTo, 'sync', frame);
    }
    video.requestVideoFrameCallback(onVideoFrame);
  }
  if (hasRvfc) video.requestVideoFrameCallback(onVideoFrame);

  // Vsync interval (for reports): median of recent animation frame gaps.
  const gaps = [];
  let lastRaf = 0;
  function raf(ts) {
    if (lastRaf) { gaps.push(ts - lastRaf); if (gaps.length > 60) gaps.shift(); }
    lastRaf = ts;
    if (gaps.length >= 10) C.vsyncMs = [...gaps].sort((a, b) => a - b)[gaps.length >> 1];
    if (gaps.length < 60) requestAnimationFrame(raf);
  }
  requestAnimationFrame(raf);

  // Housekeeping: not playing or not in step -> show everything; no frame callbacks (older
  // browsers, hidden video, native HLS without them) -> release on the playing date; cap.
  setInterval(() => {
    if (!held.length) return;
    if (!holding()) { releaseAll(C.sync ? 'not-playing' : 'instant'); return; }
    const t = now();
    if (!hasRvfc || t - lastFrameAt > 250) {
      const upTo = MODE === 'stream' ? video.currentTime : (H.playingDateMs ? H.playingDateMs() : null);
      if (upTo != null) release(upTo, 'sync-timer');
    }
    while (held.length && t - held[0].rec.arrivedAt > HOLD_CAP_MS) {
      const h = held.shift();
      show(h.msg, h.rec, 'cap');
    }
    // Held messages are sorted by time, not arrival: also cap any later one.
    for (let i = held.length - 1; i >= 0; i--) {
      if (t - held[i].rec.arrivedAt > HOLD_CAP_MS) { const [h] = held.splice(i, 1); show(h.msg, h.rec, 'cap'); }
    }
    C.held = held.length;
  }, 50);

  // ---- in-stream metadata (ID3 TXXX in emsg, via hls.js) ---------------------------------------------
  const utf8 = new TextDecoder('utf-8');
  const latin1 = new TextDecoder('latin1');
  function syncsafe(b, o) { return ((b[o] & 0x7f) << 21) | ((b[o + 1] & 0x7f) << 14) | ((b[o + 2] & 0x7f) << 7) | (b[o + 3] & 0x7f); }
  // The TXXX frames of one ID3v2.3/2.4 tag as {description, value}.
  function id3Txxx(b) {
    const out = [];
    if (!b || b.length < 10 || b[0] !== 0x49 || b[1] !== 0x44 || b[2] !== 0x33) return out;
    const version = b[3], flags = b[5];
    const end = Math.min(b.length, 10 + syncsafe(b, 6));
    let o = 10;
    if (flags & 0x40) o += version === 4 ? syncsafe(b, 10) : 4 + ((b[10] << 24) | (b[11] << 16) | (b[12] << 8) | b[13]) >>> 0;
    while (o + 10 <= end) {
      const id = String.fromCharCode(b[o], b[o + 1], b[o + 2], b[o + 3]);
      if (!/^[A-Z0-9]{4}$/.test(id)) break; // padding
      const size = version === 4 ? syncsafe(b, o + 4) : ((b[o + 4] << 24) | (b[o + 5] << 16) | (b[o + 6] << 8) | b[o + 7]) >>> 0;
      const body = b.subarray(o + 10, Math.min(end, o + 10 + size));
      o += 10 + size;
      if (id !== 'TXXX' || body.length < 2) continue;
      const enc = body[0];
      if (enc !== 0 && enc !== 3) continue; // UTF-16 is not what ferrocast writes
      const rest = body.subarray(1);
      const nul = rest.indexOf(0);
      if (nul < 0) continue;
      const dec = enc === 3 ? utf8 : latin1;
      let value = rest.subarray(nul + 1);
      if (value.length && value[value.length - 1] === 0) value = value.subarray(0, value.length - 1);
      out.push({ description: dec.decode(rest.subarray(0, nul)), value: dec.decode(value) });
    }
    return out;
  }
  C.parseId3 = bytes => id3Txxx(bytes);

  function onMetadata(_e, data) {
    for (const s of data.samples || []) {
      for (const f of id3Txxx(s.data)) {
        if (f.description !== DESCRIPTION) continue;
        let ev;
        try { ev = JSON.parse(f.value); } catch (_) { continue; }
        if (!ev || typeof ev !== 'object') continue;
        if (ev.type === 'message' && ev.id != null && !C.meta[ev.id]) {
          // PDT of that media time, for comparing the two timelines in tests.
          const frag = data.frag;
          const pdtAt = frag && Number.isFinite(frag.programDateTime) ? frag.programDateTime + (s.pts - frag.start) * 1000 : null;
          C.meta[ev.id] = { pts: s.pts, pdt: ev.pdt, pdtOfPts: pdtAt, parsedAt: now(), level: frag ? frag.level : null };
        }
        if (MODE !== 'stream') continue; // the WebSocket is the source; metadata only recorded
        if (ev.type === 'message') accept(ev, s.pts, 'stream');
        else if (ev.type === 'deleted' && ev.id != null && known.get(ev.id) !== 'deleted') remove(ev.id);
      }
    }
  }
  H.onHls.push((hls, Hls) => {
    // A new player instance (restart after an error) starts a new media timeline: media times
    // of held in-stream messages mean nothing on it any more.
    if (MODE === 'stream') releaseAll('restart');
    hls.on(Hls.Events.FRAG_PARSING_METADATA, onMetadata);
  });

  // ---- status line and send box ------------------------------------------------------------------------
  function setStatus(text) { statusEl.textContent = text; statusEl.hidden = !text; }
  function setSendable(on, why) {
    input.disabled = sendBtn.disabled = !on;
    input.placeholder = on ? 'Say something…' : (why || 'Chat is not connected');
    input.title = on ? '' : (why || '');
  }
  function showError(text) {
    errorEl.textContent = text;
    clearTimeout(showError.timer);
    if (text) showError.timer = setTimeout(() => { errorEl.textContent = ''; }, 8000);
  }

  // ---- WebSocket ------------------------------------------------------------------------------------------
  let ws = null, attempt = 0, retryTimer = 0, stopped = false;

  function chatUrl() {
    const u = new URL('/live/' + encodeURIComponent(H.name) + '/chat', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (nick) u.searchParams.set('name', nick);
    if (token) u.searchParams.set('token', token);
    return u.href;
  }

  function connectWs() {
    clearTimeout(retryTimer);
    if (stopped) return;
    C.wsOpened++;
    let sock;
    try { sock = ws = new WebSocket(chatUrl()); } catch (e) { scheduleReconnect(); return; }
    sock.onmessage = ev => {
      if (sock !== ws) return;
      let f;
      try { f = JSON.parse(ev.data); } catch (_) { return; }
      onFrame(f);
    };
    sock.onclose = () => {
      if (sock !== ws) return;
      ws = null;
      C.connected = false;
      if (stopped) return;
      setSendable(false, 'Chat is not connected');
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt++;
    const wait = base + Math.random() * base * 0.3;
    setStatus(attempt > 1 ? 'Chat is unavailable (is the stream live?). Retrying in ' + Math.round(wait / 1000) + ' s…'
                          : 'Reconnecting chat…');
    retryTimer = setTimeout(connectWs, wait);
  }

  function onFrame(f) {
    switch (f.type) {
      case 'welcome': {
        attempt = 0;
        C.connected = true;
        C.me = f.name || null;
        C.moderator = !!f.moderator || (f.moderator === undefined && !!token);
        C.open = f.open !== false;
        modBox.hidden = !C.moderator;
        panel.classList.toggle('moderator', C.moderator);
        if (C.moderator) for (const [id, li] of items) if (!li.querySelector('.del')) {
          li.append(deleteButton({ id, name: li.querySelector('.who').textContent }));
        }
        if (f.limits && f.limits.max_message_len) input.maxLength = f.limits.max_message_len;
        setStatus('');
        setSendable(C.open, C.open ? '' : 'The stream has ended: chat is read-only');
        if (C.me) input.setAttribute('aria-label', 'Message as ' + C.me);
        const history = f.history || [];
        // After a reconnect: a shown message inside the history's id range that the history no
        // longer holds was deleted while we were away.
        if (history.length) {
          const ids = new Set(history.map(m => m.id));
          const lo = Math.min(...ids);
          for (const id of [...items.keys()]) if (id >= lo && !ids.has(id)) remove(id);
        }
        for (const m of history) accept(m, undefined, 'history');
        break;
      }
      case 'message': accept(f, undefined, 'ws'); break;
      case 'deleted': remove(f.id); break;
      case 'viewers':
        C.viewers = f.count;
        viewersEl.textContent = f.count === 1 ? '1 viewer' : f.count + ' viewers';
        break;
      case 'moderation':
        systemLine(f.action === 'ban' ? f.name + ' was banned'
                   : (f.seconds ? f.name + ' was timed out for ' + f.seconds + ' s' : f.name + "'s timeout was lifted"));
        break;
      case 'error': {
        C.errors.push({ code: f.code, reason: f.reason, at: now() });
        let text = f.reason || f.code || 'refused';
        if (f.retry_after_ms) text += ' (try again in ' + Math.ceil(f.retry_after_ms / 1000) + ' s)';
        showError(text);
        if (FATAL.has(f.code)) {
          stopped = true;
          setSendable(false, f.reason || f.code);
          setStatus('Chat: ' + (f.reason || f.code));
        }
        break;
      }
      default: break; // newer frame types: ignore
    }
  }

  function sendFrame(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) { showError('Chat is not connected'); return false; }
    ws.send(JSON.stringify(obj));
    return true;
  }
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if (sendFrame({ type: 'send', text })) { input.value = ''; showError(''); }
  });
  $('chat-timeout').addEventListener('click', ev => {
    const name = modName.value.trim();
    if (name) sendFrame({ type: 'timeout', name, seconds: +ev.currentTarget.dataset.seconds });
  });
  $('chat-ban').addEventListener('click', () => {
    const name = modName.value.trim();
    if (name) sendFrame({ type: 'ban', name });
  });

  if (MODE === 'stream') {
    setStatus('Chat from the stream (read-only).');
    setSendable(false, 'Read-only: chat comes from the stream');
  } else if (H.name) {
    setSendable(false, 'Connecting…');
    connectWs();
  }
})();
