// Player for /watch/NAME: plays /live/NAME/index.m3u8 with hls.js in low-latency mode (native
// HLS where MSE is missing, e.g. older iOS Safari). Waits for a stream that is not live yet,
// recovers when it comes back, and shows latency statistics.
//
// window.H is the driver interface used by tests/browser/play.js and the shared bench driver
// (same shape as bench/www/player.html): state fields plus H.sample().
'use strict';
(() => {
  // ---- hls.js settings ----------------------------------------------------------------------------
  // Measured on loopback (Chromium 156, hls.js 1.7.4, 2 s segments / 200 ms parts): whatever the
  // target below ~1 s, playback settles ~1.1 s behind the edge (hls.js only speeds up to catch up
  // while more than 1 s is buffered), so a 1 s target costs nothing against the server's
  // PART-HOLD-BACK (0.6 s) yet starts with a safer buffer. hls.js does not request
  // EXT-X-PRELOAD-HINT parts, so every part costs one blocking reload plus one fetch; a second
  // of buffer absorbs a late part. When the server's PART-HOLD-BACK is larger (bigger parts),
  // it wins (see LEVEL_LOADED below). Each stall moves the target back by 0.5 s (hls.js caps
  // the total at one target duration); far behind (background tab, long stall) jumps back.
  const HLS_CONFIG = {
    lowLatencyMode: true,           // parts, blocking playlist reload, delta updates (_HLS_skip)
    liveSyncDuration: 1.0,          // target distance (s) from the live edge (at least PART-HOLD-BACK)
    liveMaxLatencyDuration: 5,      // further behind than this: seek to the target (needs liveSyncDuration)
    maxLiveSyncPlaybackRate: 1.15,  // catch up gently when behind target (pitch is preserved)
    liveSyncOnStallIncrease: 0.5,   // each stall moves the target back by 0.5 s (hls.js caps it at +1 target duration)
    backBufferLength: 4,            // keep only 4 s behind the playhead: live, no seeking back
    maxBufferLength: 8,             // never more than a few seconds ahead anyway at the live edge
    maxMaxBufferLength: 16,
    enableWorker: true,
    startLevel: -1,                 // ABR picks the first rendition from its bandwidth estimate
    manifestLoadPolicy: { default: {
      maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 15000,
      timeoutRetry: { maxNumRetry: 2, retryDelayMs: 0, maxRetryDelayMs: 0 },
      errorRetry: { maxNumRetry: 1, retryDelayMs: 1000, maxRetryDelayMs: 4000 } } },
    // A stream that ended and went live again reuses its playlist URLs, and the origin lets an
    // ended playlist be cached for a minute: fetch plain (non-blocking) playlists from the
    // network, or a restarted player would load the old ENDLIST playlist from the browser cache.
    // Blocking reloads (_HLS_msn) and media objects keep their caching.
    xhrSetup(xhr, url) {
      if (/\.m3u8(\?|$)/.test(url) && !/[?&]_HLS_msn=/.test(url)) {
        xhr.open('GET', url, true);
        xhr.setRequestHeader('Cache-Control', 'no-cache');
      }
    },
    // Blocking reloads are held by the origin for up to 3 target durations (then 503).
    playlistLoadPolicy: { default: {
      maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 15000,
      timeoutRetry: { maxNumRetry: 3, retryDelayMs: 0, maxRetryDelayMs: 0 },
      errorRetry: { maxNumRetry: 4, retryDelayMs: 500, maxRetryDelayMs: 4000 } } },
  };
  // ?sync=SECONDS overrides the target distance from the live edge (0 = the server's PART-HOLD-BACK);
  // for measurements and for operators comparing settings.
  const sync = new URLSearchParams(location.search).get('sync');
  if (sync !== null && Number.isFinite(+sync) && +sync >= 0) {
    if (+sync === 0) {
      // hls.js refuses liveMaxLatencyDuration without liveSyncDuration.
      delete HLS_CONFIG.liveSyncDuration;
      delete HLS_CONFIG.liveMaxLatencyDuration;
    } else {
      HLS_CONFIG.liveSyncDuration = +sync;
      HLS_CONFIG.liveMaxLatencyDuration = Math.max(HLS_CONFIG.liveMaxLatencyDuration, +sync + 4);
    }
  }
  const OFFLINE_RETRY_MS = 3000;     // stream not live (404) or ended: ask again this often
  const STARTING_RETRY_MS = 1500;    // stream exists but has no media yet (503), or server unreachable
  const STUCK_RESTART_S = 10;        // playing but the picture has not moved this long: start over

  const $ = id => document.getElementById(id);
  const video = $('video'), overlay = $('overlay'), overlayText = $('overlay-text');
  const overlayDetail = $('overlay-detail'), spinner = $('spinner'), playBtn = $('play');
  const muteBtn = $('mute'), fsBtn = $('fullscreen'), statsEl = $('stats'), badge = $('badge');

  const m = location.pathname.match(/^\/watch\/([^/]+)/);
  let name = '';
  try { name = m ? decodeURIComponent(m[1]) : ''; } catch (_) { /* malformed %-escape: no name */ }
  const src = '/live/' + encodeURIComponent(name) + '/index.m3u8';
  $('title').textContent = name;
  document.title = name + ' — ferrocast';

  const HlsCtor = typeof window.Hls === 'function' ? window.Hls : null;
  const H = window.H = {
    name, src, config: HLS_CONFIG,
    hlsVersion: HlsCtor ? HlsCtor.version : null,
    hlsSupported: HlsCtor ? HlsCtor.isSupported() : false,
    native: video.canPlayType('application/vnd.apple.mpegurl'),
    mse: {},
    mode: null,            // 'hls.js' | 'native' | null
    state: 'connecting',   // connecting | offline | starting | unreachable | playing | buffering | blocked | ended | unsupported
    errors: [], errorCount: 0, fatal: null, videoError: null,
    frag: null, levelLoaded: 0, live: null, partTarget: null, targetDuration: null,
    restarts: 0, playingDate: null, g2g: null,
    onHls: [],             // functions called with (hls, Hls) for every new hls.js instance
  };
  for (const t of ['video/mp4; codecs="avc1.64001f"', 'video/mp4; codecs="avc1.4d401f"', 'video/mp4; codecs="avc1.42e01e"',
                   'audio/mp4; codecs="mp4a.40.2"', 'video/mp4; codecs="avc1.64001f,mp4a.40.2"', 'video/mp2t; codecs="avc1.64001f,mp4a.40.2"',
                   'video/mp4; codecs="hvc1.1.6.L93.B0"', 'video/webm; codecs="vp9"', 'audio/webm; codecs="opus"'])
    H.mse[t] = window.MediaSource ? MediaSource.isTypeSupported(t) : null;

  let hls = null;          // current hls.js instance
  let retryTimer = 0;
  let session = 0;         // bumps on every teardown so stale callbacks do nothing
  let lastMediaRecover = 0, audioSwapped = false;
  let lastProgress = { t: 0, ct: -1 };
  let waitingTimer = 0;

  // ---- UI -------------------------------------------------------------------------------------------
  const MESSAGES = {
    connecting: ['Connecting…', ''],
    offline: ['Stream is offline', 'Playback starts by itself when it goes live.'],
    starting: ['Stream is starting…', ''],
    unreachable: ['Cannot reach the server', 'Retrying…'],
    buffering: ['Buffering…', ''],
    ended: ['Stream ended', 'Playback starts by itself if it comes back.'],
    unsupported: ['This browser cannot play HLS', 'Try a current Chrome, Firefox, Edge or Safari.'],
    blocked: ['Autoplay was blocked', ''],
  };
  function setState(state, detail) {
    H.state = state;
    const visible = state !== 'playing';
    overlay.hidden = !visible;
    if (visible) {
      const [text, sub] = MESSAGES[state] || [state, ''];
      overlayText.textContent = text;
      overlayDetail.textContent = detail || sub;
      spinner.hidden = !(state === 'connecting' || state === 'starting' || state === 'buffering');
      playBtn.hidden = state !== 'blocked';
    }
    const live = state === 'playing' || state === 'buffering' || state === 'blocked';
    badge.textContent = live ? 'live' : (state === 'ended' ? 'ended' : 'offline');
    badge.classList.toggle('live', live);
  }
  function updateMuteButton() {
    muteBtn.textContent = video.muted ? 'Unmute' : 'Mute';
  }
  muteBtn.addEventListener('click', () => {
    video.muted = !video.muted;
    if (!video.muted && video.volume === 0) video.volume = 1;
    if (video.paused) tryPlay();
  });
  video.addEventListener('volumechange', updateMuteButton);
  playBtn.addEventListener('click', () => { tryPlay(); });
  fsBtn.addEventListener('click', () => {
    const screen = $('screen');
    if (document.fullscreenElement) document.exitFullscreen();
    else if (screen.requestFullscreen) screen.requestFullscreen().catch(() => {});
    else if (video.webkitEnterFullscreen) video.webkitEnterFullscreen(); // iOS Safari
  });
  if (!document.fullscreenEnabled && !video.webkitEnterFullscreen) fsBtn.hidden = true;
  updateMuteButton();

  function tryPlay() {
    const p = video.play();
    if (p && p.catch) p.catch(err => {
      if (err && err.name === 'NotAllowedError') setState('blocked', 'Press play to start.');
    });
  }

  // ---- errors -----------------------------------------------------------------------------------------
  function recordError(text) {
    H.errorCount++;
    if (H.errors.length < 200) H.errors.push(text);
  }
  video.addEventListener('error', () => {
    // Reported by the element itself; with hls.js the same failure also arrives as a media error.
    // Nothing attached (the error of an emptied element after a teardown): not a playback error.
    if (!H.mode) return;
    H.videoError = video.error ? (video.error.code + ' ' + video.error.message) : 'unknown';
    if (H.mode === 'native') restart('video error');
  });

  function onHlsError(_e, d) {
    recordError(d.type + '/' + d.details + (d.fatal ? ' FATAL' : ''));
    if (!d.fatal) return; // hls.js retries and recovers non-fatal errors itself
    H.fatal = d.details;
    if (d.type === HlsCtor.ErrorTypes.MEDIA_ERROR) {
      const now = Date.now();
      if (now - lastMediaRecover > 5000) {
        lastMediaRecover = now;
        hls.recoverMediaError();
      } else if (!audioSwapped) {
        audioSwapped = true;
        lastMediaRecover = now;
        hls.swapAudioCodec();
        hls.recoverMediaError();
      } else {
        restart('media error');
      }
    } else {
      // Network (playlist or media unreachable after hls.js's own retries) or anything else:
      // start over, which first waits until the stream is reachable and live again.
      restart(d.details);
    }
  }

  // ---- lifecycle ---------------------------------------------------------------------------------------
  // Asks the origin whether the stream can be played: 'live' | 'offline' | 'starting' | 'ended' | 'unreachable'.
  async function probe() {
    let r;
    try { r = await fetch(src, { cache: 'no-store' }); } catch (_) { return 'unreachable'; }
    if (r.status === 404) return 'offline';
    if (!r.ok) return r.status === 503 ? 'starting' : 'unreachable';
    const text = await r.text();
    const uri = text.split(/\r?\n/).map(l => l.trim()).find(l => l && !l.startsWith('#'));
    if (!uri) return 'starting';
    try {
      const mr = await fetch(new URL(uri, new URL(src, location.href)), { cache: 'no-store' });
      if (mr.status === 404) return 'offline';
      if (!mr.ok) return 'starting';
      const media = await mr.text();
      if (media.includes('#EXT-X-ENDLIST')) return 'ended';
      // A stream that just went live: wait for its first complete segment. Starting on a
      // handful of parts leaves hls.js nothing to buffer and it stalls at once (which also
      // costs it 0.5 s of extra latency for the rest of the session).
      return media.includes('#EXTINF') ? 'live' : 'starting';
    } catch (_) { return 'unreachable'; }
  }

  async function connect() {
    clearTimeout(retryTimer);
    const my = session;
    let s;
    try { s = await probe(); } catch (_) { s = 'unreachable'; } // e.g. connection lost mid-body
    if (my !== session) return;
    if (s !== 'live') {
      setState(s);
      retryTimer = setTimeout(connect, s === 'offline' || s === 'ended' ? OFFLINE_RETRY_MS : STARTING_RETRY_MS);
      return;
    }
    setState('connecting');
    start();
  }

  function start() {
    lastProgress = { t: performance.now(), ct: -1 };
    if (H.hlsSupported) {
      H.mode = 'hls.js';
      const my = session;
      try {
        hls = window.hls = new HlsCtor(HLS_CONFIG);
      } catch (e) {
        recordError('config/' + e.message + ' FATAL');
        H.fatal = 'config';
        setState('unsupported', 'Player setup failed: ' + e.message);
        return;
      }
      // Other scripts (chat.js) hook every new hls.js instance through H.onHls.
      for (const f of H.onHls) { try { f(hls, HlsCtor); } catch (e) { recordError('onHls/' + e.message); } }
      hls.on(HlsCtor.Events.ERROR, onHlsError);
      hls.on(HlsCtor.Events.MANIFEST_PARSED, () => tryPlay());
      hls.on(HlsCtor.Events.FRAG_CHANGED, (_e, d) => {
        H.frag = { sn: d.frag.sn, start: d.frag.start, duration: d.frag.duration };
      });
      hls.on(HlsCtor.Events.LEVEL_LOADED, (_e, d) => {
        H.levelLoaded++;
        H.live = d.details.live;
        H.partTarget = d.details.partTarget;
        H.targetDuration = d.details.targetduration;
        // Never sit closer to the edge than the server's PART-HOLD-BACK (RFC 8216bis 4.4.3.8).
        const phb = d.details.partHoldBack;
        if (phb && hls && hls.config.liveSyncDuration !== undefined && hls.config.liveSyncDuration < phb) {
          hls.config.liveMaxLatencyDuration = Math.max(hls.config.liveMaxLatencyDuration || 0, phb + 4);
          hls.targetLatency = phb;
        }
        // An ended stream's playlist on first load: say so instead of replaying its window.
        // (Not from inside hls.js's own event dispatch: destroy it on the next task.)
        if (!d.details.live && !(video.currentTime > 0)) {
          setTimeout(() => {
            if (my !== session) return;
            teardown();
            setState('ended');
            retryTimer = setTimeout(connect, OFFLINE_RETRY_MS);
          }, 0);
        }
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (H.native) {
      H.mode = 'native';
      video.src = src;
      tryPlay();
    } else {
      setState('unsupported', HlsCtor ? '' : 'The player library (hls.min.js) did not load.');
    }
  }

  function teardown() {
    session++;
    clearTimeout(retryTimer);
    clearTimeout(waitingTimer);
    if (hls) { hls.destroy(); hls = window.hls = null; }
    if (H.mode === 'native') { video.removeAttribute('src'); video.load(); }
    H.mode = null;
    H.frag = null;
    audioSwapped = false;
  }

  // Tears down and connects again. Called from hls.js's error events, so the teardown runs on
  // the next task, outside hls.js's own event dispatch.
  function restart(why) {
    const my = session;
    setState('connecting', why ? 'Reconnecting (' + why + ')…' : '');
    setTimeout(() => {
      if (my !== session) return;
      H.restarts++;
      teardown();
      retryTimer = setTimeout(connect, 500);
    }, 0);
  }

  video.addEventListener('playing', () => { clearTimeout(waitingTimer); setState('playing'); });
  video.addEventListener('waiting', () => {
    clearTimeout(waitingTimer);
    // Short waits at the live edge are normal; only say "buffering" when it lasts.
    waitingTimer = setTimeout(() => { if (H.state === 'playing') setState('buffering'); }, 1000);
  });
  video.addEventListener('ended', () => {
    // EXT-X-ENDLIST reached: the publisher stopped for good. Wait for a new broadcast.
    teardown();
    setState('ended');
    retryTimer = setTimeout(connect, OFFLINE_RETRY_MS);
  });

  // ---- stats and watchdog --------------------------------------------------------------------------------
  function bufferedRange() {
    const b = video.buffered;
    return b.length ? [b.start(0), b.end(b.length - 1)] : null;
  }
  function liveLatency() {
    if (hls) return hls.latency || null;
    if (H.mode === 'native' && video.seekable.length) return video.seekable.end(video.seekable.length - 1) - video.currentTime;
    return null;
  }
  function playingDateMs() {
    if (hls) { const d = hls.playingDate; return d ? d.getTime() : null; }
    if (H.mode === 'native' && video.getStartDate) {
      const start = video.getStartDate().getTime();
      return Number.isFinite(start) ? start + video.currentTime * 1000 : null;
    }
    return null;
  }
  function currentBitrate() {
    if (!hls || !hls.levels) return null;
    const l = hls.levels[hls.currentLevel >= 0 ? hls.currentLevel : hls.loadLevel];
    return l ? (l.averageBitrate || l.bitrate) : null;
  }

  H.playingDateMs = playingDateMs;

  H.sample = () => {
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const pd = playingDateMs();
    const now = Date.now();
    H.playingDate = pd;
    H.g2g = pd == null ? null : now - pd;
    const segdur = H.targetDuration || 2;
    return {
      t: now, currentTime: video.currentTime, readyState: video.readyState, paused: video.paused,
      buffered: bufferedRange(),
      decoded: q ? q.totalVideoFrames : null, dropped: q ? q.droppedVideoFrames : null,
      hlsLatency: hls ? hls.latency : liveLatency(), frag: H.frag, errors: H.errorCount, fatal: H.fatal,
      videoError: H.videoError,
      // Stream time of the frame on screen, valid when every segment lasts exactly the target
      // duration (encoder keyframe interval = segment target, as the bench publisher does).
      streamTime: H.frag ? H.frag.sn * segdur + (video.currentTime - H.frag.start) : null,
      playingDate: pd, g2g: H.g2g,
      state: H.state, mode: H.mode, playbackRate: video.playbackRate,
      targetLatency: hls ? hls.targetLatency : null,
    };
  };

  const fmtS = v => (v == null || !Number.isFinite(v)) ? '–' : v.toFixed(2) + ' s';
  function stat(label, value, title) {
    const span = document.createElement('span');
    if (title) span.title = title;
    span.append(label + ' ');
    const b = document.createElement('b');
    b.textContent = value;
    span.append(b);
    return span;
  }
  function renderStats() {
    const s = H.sample();
    if (!H.mode || !(s.currentTime > 0)) { statsEl.replaceChildren(); return; }
    const items = [
      stat('latency', fmtS(liveLatency()), 'Distance behind the live edge of the playlist'),
      stat('glass-to-glass', fmtS(s.g2g == null ? null : s.g2g / 1000),
           'Now minus the time the frame on screen reached the server (program date-time)'),
    ];
    if (video.videoWidth) items.push(stat('', video.videoWidth + '×' + video.videoHeight));
    const br = currentBitrate();
    if (br) items.push(stat('', br >= 1e6 ? (br / 1e6).toFixed(1) + ' Mb/s' : Math.round(br / 1e3) + ' kb/s'));
    if (s.buffered) items.push(stat('buffer', fmtS(s.buffered[1] - s.currentTime)));
    if (s.dropped) items.push(stat('dropped', String(s.dropped)));
    statsEl.replaceChildren(...items);
  }

  function watchdog() {
    if (!H.mode || video.paused || H.state === 'blocked') return;
    const now = performance.now();
    if (video.currentTime !== lastProgress.ct) { lastProgress = { t: now, ct: video.currentTime }; return; }
    if (now - lastProgress.t > STUCK_RESTART_S * 1000) restart('stalled');
  }

  setInterval(() => { renderStats(); watchdog(); }, 1000);

  if (!name) { setState('offline', 'No stream name in the address.'); return; }
  if (!H.hlsSupported && !H.native) { setState('unsupported', HlsCtor ? '' : 'The player library (hls.min.js) did not load.'); return; }
  connect();
})();
