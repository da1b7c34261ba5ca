//! GStreamer glue: one transcoder per live stream with transcoded rungs.
//!
//! ```text
//! hub ─▶ (bounded) ─▶ control thread ─▶ decode pipeline: appsrc ! h264parse ! avdec_h264 ! appsink
//!                                                                                          │ raw frames
//!            ┌──────────────────────────────────────────────────────────────────────────────┘
//!            ├─▶ rung pipeline: appsrc ! videoscale ! videoconvert ! caps ! ENCODER ! caps ! h264parse ! appsink ─▶ rung packager
//!            └─▶ rung pipeline: …
//! ```
//! Decoding happens once; each rung is its own GStreamer pipeline fed the decoded buffers
//! (shared, not copied), so a rung whose encoder fails or falls behind is torn down and
//! restarted on its own while the decoder, the other rungs and the source rendition carry on.
//! Every queue between stages is bounded and drops (with a log line) rather than grows.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tokio::sync::{broadcast, mpsc as tmpsc};

use crate::config::{Diagnostic, Pipeline};
use crate::hub::HubMsg;
use crate::media::{aac, h264, AudioConfig, Frame, Track, VideoConfig, TIMESCALE};
use crate::metrics::Metrics;
use crate::util::time::unix_ms;
use crate::package::emsg::TimedMetadata;
use crate::pipeline::ladder::{self, Rung, Selected};

/// Hub messages the transcoder may hold before it drops (≈ 4 s of 30 fps video + audio).
pub const INPUT_QUEUE: usize = 256;
/// Compressed frames waiting in the decoder's appsrc before input is dropped (≈ 1 s).
pub const DECODE_QUEUE: u64 = 30;
/// Decoded frames waiting for one rung's encoder before that rung drops frames (≈ 0.5 s).
pub const RUNG_QUEUE: u64 = 15;
/// Encoded frames waiting for one rung's packager before they are dropped.
pub const RUNG_OUT_QUEUE: usize = 256;
/// A rung dropping frames for this long is behind real time: it is restarted.
pub const BEHIND_LIMIT: Duration = Duration::from_secs(4);
/// Restart delays of a failing rung: doubling from the first to the last, then it is dropped.
pub const RESTART_BACKOFF: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];
/// Longest wait for the encoders to flush when a publisher leaves.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// Decoder threads: frame threading adds one frame of delay per extra thread.
const DECODE_THREADS: &str = "2";

/// Initialises GStreamer once; the error says what is missing.
pub fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}")))
        .clone()
}

/// Checks that every encoder element of `p` exists in the installed GStreamer, that each
/// property exists on it and accepts its value, and that a `bitrate` can be set.
pub fn check_elements(p: &Pipeline) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let diag = |pos: ladder::Pos, message: String| Diagnostic {
        file: p.path.clone(),
        line: pos.line.max(1),
        col: pos.col.max(1),
        message,
    };
    if p.rungs.is_empty() {
        return out;
    }
    if let Err(e) = init() {
        out.push(diag(p.rungs[0].pos, e));
        return out;
    }
    for (what, hint) in [
        ("h264parse", "gstreamer1.0-plugins-bad"),
        ("avdec_h264", "gstreamer1.0-libav"),
        ("videoscale", "gstreamer1.0-plugins-base"),
        ("videoconvert", "gstreamer1.0-plugins-base"),
        ("appsrc", "gstreamer1.0-plugins-base"),
    ] {
        if gst::ElementFactory::find(what).is_none() {
            out.push(diag(
                p.rungs[0].pos,
                format!("GStreamer element `{what}` (needed by every transcoded rung) is not installed (Debian package {hint})"),
            ));
        }
    }
    if p.rungs.iter().any(|r| r.audio_kbps.is_some()) {
        for what in [
            "avdec_aac",
            ladder::AUDIO_ENCODER,
            "aacparse",
            "audioconvert",
            "audioresample",
        ] {
            if gst::ElementFactory::find(what).is_none() {
                out.push(diag(
                    p.rungs[0].pos,
                    format!("GStreamer element `{what}` (needed to re-encode audio, `audio_bitrate`) is not installed (Debian packages gstreamer1.0-libav, gstreamer1.0-plugins-good, gstreamer1.0-plugins-base)"),
                ));
            }
        }
    }
    for r in &p.rungs {
        let e = &r.encoder;
        let pos = if e.pos.line == 0 { r.pos } else { e.pos };
        let Some(factory) = gst::ElementFactory::find(&e.element) else {
            let hint = if e.element == ladder::DEFAULT_ENCODER {
                " (Debian package gstreamer1.0-plugins-ugly)"
            } else {
                ""
            };
            out.push(diag(
                pos,
                format!(
                    "rung `{}`: encoder element `{}` is not installed in this GStreamer{hint}; `gst-inspect-1.0 {}` shows whether it is",
                    r.name, e.element, e.element
                ),
            ));
            continue;
        };
        let element = match factory.create().build() {
            Ok(el) => el,
            Err(err) => {
                out.push(diag(
                    pos,
                    format!(
                        "rung `{}`: encoder element `{}` cannot be created: {err}",
                        r.name, e.element
                    ),
                ));
                continue;
            }
        };
        if !factory.has_type(gst::ElementFactoryType::VIDEO_ENCODER) {
            out.push(diag(
                pos,
                format!("rung `{}`: `{}` is not a video encoder", r.name, e.element),
            ));
        }
        for (k, v, at) in &e.properties {
            let at = if at.line == 0 { pos } else { *at };
            if let Err(msg) = set_property(&element, k, v) {
                out.push(diag(at, format!("rung `{}`: {msg}", r.name)));
            }
        }
        if !e.sets("bitrate") && element.find_property("bitrate").is_none() {
            out.push(diag(
                r.bitrate_pos,
                format!(
                    "rung `{}`: encoder `{}` has no `bitrate` property; set its rate control in [rung.encoder] instead",
                    r.name, e.element
                ),
            ));
        }
    }
    out
}

/// Sets a property from its string form, as `gst-launch-1.0` would.
fn set_property(element: &gst::Element, name: &str, value: &str) -> Result<(), String> {
    let factory = element
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_default();
    let Some(pspec) = element.find_property(name) else {
        return Err(format!("encoder `{factory}` has no property `{name}`"));
    };
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        return Err(format!("property `{name}` of `{factory}` is read-only"));
    }
    use gst::prelude::GstValueExt;
    let v = glib::Value::deserialize_with_pspec(value, &pspec).map_err(|_| {
        format!(
            "`{value}` is not a valid value for property `{name}` of `{factory}` (type {})",
            pspec.value_type().name()
        )
    })?;
    element.set_property_from_value(name, &v);
    Ok(())
}

/// What a rung's packager receives.
#[derive(Debug)]
pub enum RungMsg {
    /// A publisher session (re)starts: end what is open, next video config begins anew.
    Session { audio: Option<AudioConfig> },
    /// The rung's encoder produced (new) parameter sets.
    VideoConfig(VideoConfig),
    /// One encoded picture, on the source's timeline (dts/cts/arrival of the source picture).
    Video(Frame),
    /// A source audio frame, passed through.
    Audio(Frame),
    /// Timed metadata (a chat event) for the rung's next part.
    Metadata(Arc<TimedMetadata>),
    /// The rung stopped (failed, restarting, or not used for this source): unlist it.
    Hide,
    /// The publisher left.
    Stop,
    /// The stream is over.
    End,
}

/// A rung as the transcoder runs it: its rendition index and its packager's input.
pub struct RungOutput {
    pub rung: Rung,
    pub tx: tmpsc::Sender<RungMsg>,
}

/// Source picture facts, looked up by presentation time when its encoded version comes out.
#[derive(Debug, Clone, Copy)]
struct SourcePicture {
    pts: i64,
    dts: i64,
    arrival_ms: u64,
}

/// State shared between the control thread and GStreamer's streaming threads.
struct Shared {
    /// 90 kHz time subtracted from source timestamps so GStreamer's start at zero.
    base: AtomicI64,
    /// Recent source pictures (bounded).
    pictures: Mutex<VecDeque<SourcePicture>>,
    /// Presentation times (ns, GStreamer timeline) of recent source keyframes.
    keyframes: Mutex<VecDeque<u64>>,
    /// The feeds of running rungs, by rung slot.
    feeds: Mutex<Vec<Option<Feed>>>,
    metrics: Arc<Metrics>,
}

const PICTURES_KEPT: usize = 512;
const KEYFRAMES_KEPT: usize = 64;

/// The input side of one running rung pipeline.
#[derive(Clone)]
struct Feed {
    src: gst_app::AppSrc,
    fps_cap: Option<u32>,
    last_pts: Option<u64>,
    dropped: u64,
    /// First drop of the current run of drops.
    dropping_since: Option<Instant>,
    caps: Option<gst::Caps>,
}

/// Where our GStreamer timestamps start: 1000 h. x264enc shifts any earlier timestamps up to
/// 1000 h itself, and GStreamer 1.22's encoder base class then compares forced-keyframe
/// requests in two different timelines and ignores every request after the first. Starting
/// there ourselves keeps one timeline throughout.
const GST_ORIGIN_NS: u64 = 1000 * 3600 * 1_000_000_000;

/// 90 kHz ticks since the session base → GStreamer nanoseconds.
fn ticks_to_ns(t: i64) -> u64 {
    GST_ORIGIN_NS + (t.max(0) as u64).saturating_mul(1_000_000_000) / TIMESCALE as u64
}

/// GStreamer nanoseconds → 90 kHz ticks since the session base.
fn ns_to_ticks(ns: u64) -> i64 {
    let ns = ns.saturating_sub(GST_ORIGIN_NS);
    ((ns as u128 * TIMESCALE as u128 + 500_000_000) / 1_000_000_000) as i64
}

/// Runs the transcoder of one stream until the hub ends it. Spawns its control thread and a
/// small task that moves hub messages into the thread's bounded queue.
pub fn spawn(
    stream: String,
    pipeline: Pipeline,
    start: Option<HubMsg>,
    mut rx: broadcast::Receiver<HubMsg>,
    rungs: Vec<RungOutput>,
    metrics: Arc<Metrics>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    init()?;
    let (tx, in_rx) = mpsc::sync_channel::<HubMsg>(INPUT_QUEUE);
    let name = stream.clone();
    let m = metrics.clone();
    let thread = std::thread::Builder::new()
        .name(format!("transcode-{stream}"))
        .spawn(move || Control::new(stream, pipeline, rungs, m).run(in_rx))
        .map_err(|e| format!("cannot start the transcoder thread: {e}"))?;
    Ok(tokio::spawn(async move {
        // Drop-and-resync: when the thread cannot keep up, skip to the next keyframe.
        let mut skipping = false;
        let mut dropped = 0u64;
        // A transcoder that joined a running session starts with its codecs.
        let mut start = start;
        loop {
            let msg = match start.take() {
                Some(m) => m,
                None => match rx.recv().await {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics
                        .transcode_dropped_frames
                        .fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(stream = %name, missed = n, "transcoder fell behind the hub; resuming at the next keyframe");
                    skipping = true;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => HubMsg::End,
                },
            };
            let end = matches!(msg, HubMsg::End);
            if let HubMsg::Frame(f) = &msg {
                if skipping && !(f.track == Track::Video && f.keyframe) {
                    dropped += 1;
                    metrics
                        .transcode_dropped_frames
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            match tx.try_send(msg) {
                Ok(()) => {
                    if skipping && dropped > 0 {
                        tracing::warn!(stream = %name, dropped, "transcoder input resumed after dropping frames");
                    }
                    skipping = false;
                    dropped = 0;
                }
                Err(mpsc::TrySendError::Full(m)) => {
                    if !skipping {
                        tracing::warn!(stream = %name, "transcoder input queue full ({INPUT_QUEUE}); dropping until the next keyframe");
                    }
                    skipping = true;
                    dropped += 1;
                    metrics
                        .transcode_dropped_frames
                        .fetch_add(1, Ordering::Relaxed);
                    if matches!(
                        m,
                        HubMsg::End | HubMsg::Stop | HubMsg::Start { .. } | HubMsg::Metadata(_)
                    ) {
                        // Control messages must arrive; wait for room (off the async threads).
                        let tx = tx.clone();
                        let _ = tokio::task::spawn_blocking(move || tx.send(m)).await;
                    }
                }
                Err(mpsc::TrySendError::Disconnected(_)) => break,
            }
            if end {
                break;
            }
        }
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }))
}

/// A rung slot: its configuration, its packager, and its running pipeline if any.
struct Slot {
    out: RungOutput,
    selected: Option<Selected>,
    running: Option<gst::Pipeline>,
    /// The rung's AAC re-encoder, when it has `audio_bitrate`.
    audio: Option<(gst::Pipeline, gst_app::AppSrc)>,
    failures: usize,
    restart_at: Option<Instant>,
    dropped_for_session: bool,
}

struct Control {
    stream: String,
    pipeline: Pipeline,
    slots: Vec<Slot>,
    shared: Arc<Shared>,
    decoder: Option<(gst::Pipeline, gst_app::AppSrc)>,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    /// After a loss or a (re)start, feed the decoder from the next keyframe on.
    need_key: bool,
    decoder_failures: usize,
    decoder_retry_at: Option<Instant>,
    input_dropped: u64,
    metrics: Arc<Metrics>,
}

impl Control {
    fn new(
        stream: String,
        pipeline: Pipeline,
        rungs: Vec<RungOutput>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let n = rungs.len();
        Control {
            stream,
            pipeline,
            slots: rungs
                .into_iter()
                .map(|out| Slot {
                    out,
                    selected: None,
                    running: None,
                    audio: None,
                    failures: 0,
                    restart_at: None,
                    dropped_for_session: false,
                })
                .collect(),
            shared: Arc::new(Shared {
                base: AtomicI64::new(i64::MIN),
                pictures: Mutex::new(VecDeque::with_capacity(PICTURES_KEPT)),
                keyframes: Mutex::new(VecDeque::with_capacity(KEYFRAMES_KEPT)),
                feeds: Mutex::new(vec![None; n]),
                metrics: metrics.clone(),
            }),
            decoder: None,
            video: None,
            audio: None,
            need_key: true,
            decoder_failures: 0,
            decoder_retry_at: None,
            input_dropped: 0,
            metrics,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<HubMsg>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(HubMsg::End) | Err(RecvTimeoutError::Disconnected) => {
                    self.stop_all();
                    self.broadcast(|| RungMsg::End);
                    return;
                }
                Ok(HubMsg::Start { video, audio }) | Ok(HubMsg::Config { video, audio }) => {
                    self.start_session(video, audio);
                }
                Ok(HubMsg::Stop) => {
                    self.drain();
                    self.stop_all();
                    self.broadcast(|| RungMsg::Stop);
                }
                Ok(HubMsg::Frame(f)) => self.frame(f),
                Ok(HubMsg::Metadata(event)) => self.broadcast(|| RungMsg::Metadata(event.clone())),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.poll();
        }
    }

    fn broadcast(&self, msg: impl Fn() -> RungMsg) {
        for s in &self.slots {
            let _ = s.out.tx.try_send(msg());
        }
    }

    fn start_session(&mut self, video: Option<VideoConfig>, audio: Option<AudioConfig>) {
        self.stop_all();
        self.audio = audio.clone();
        self.video = video.clone();
        self.need_key = true;
        self.decoder_failures = 0;
        self.shared.base.store(i64::MIN, Ordering::Relaxed);
        // A new session's clock may restart: forget the old session's pictures.
        self.shared
            .pictures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.shared
            .keyframes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for s in &self.slots {
            let audio = match (&audio, s.out.rung.audio_kbps) {
                (Some(a), Some(_)) => reencoded_audio(a),
                _ => audio.clone(),
            };
            let _ = s.out.tx.try_send(RungMsg::Session { audio });
        }
        let Some(v) = video else {
            tracing::info!(stream = %self.stream, "no video: transcoded rungs are not used");
            self.broadcast(|| RungMsg::Hide);
            return;
        };
        let (selected, skipped) = ladder::select(&self.pipeline, v.width, v.height, v.fps);
        for line in skipped {
            tracing::info!(stream = %self.stream, "{line}");
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.selected = selected.iter().find(|s| s.index == i).cloned();
            slot.failures = 0;
            slot.restart_at = None;
            slot.dropped_for_session = false;
            if slot.selected.is_none() {
                let _ = slot.out.tx.try_send(RungMsg::Hide);
            }
        }
        self.start_decoder();
        for i in 0..self.slots.len() {
            if self.slots[i].selected.is_some() {
                self.start_rung(i);
            }
        }
    }

    fn start_decoder(&mut self) {
        let Some(v) = self.video.clone() else {
            return;
        };
        match build_decoder(&v, self.shared.clone()) {
            Ok(d) => {
                self.decoder = Some(d);
                self.need_key = true;
            }
            Err(e) => {
                tracing::error!(stream = %self.stream, "cannot start the decoder: {e}");
                self.decoder_failed();
            }
        }
    }

    fn decoder_failed(&mut self) {
        if let Some((p, _)) = self.decoder.take() {
            let _ = p.set_state(gst::State::Null);
        }
        match RESTART_BACKOFF.get(self.decoder_failures) {
            Some(d) => {
                self.decoder_retry_at = Some(Instant::now() + *d);
                tracing::warn!(stream = %self.stream, "decoder restarts in {d:?}");
            }
            None => {
                tracing::error!(stream = %self.stream, "decoder failed {} times; transcoded rungs are off until the publisher reconnects", self.decoder_failures);
                self.decoder_retry_at = None;
                for i in 0..self.slots.len() {
                    self.stop_rung(i);
                    self.slots[i].selected = None;
                }
            }
        }
        self.decoder_failures += 1;
    }

    fn start_rung(&mut self, i: usize) {
        let Some(sel) = self.slots[i].selected.clone() else {
            return;
        };
        let rung = self.slots[i].out.rung.clone();
        let tx = self.slots[i].out.tx.clone();
        let audio = match (&self.audio, rung.audio_kbps) {
            (Some(a), Some(kbps)) => {
                match build_audio(&rung.name, a, kbps, self.shared.clone(), tx.clone()) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(stream = %self.stream, rung = %rung.name, "audio re-encoder cannot start: {e}");
                        self.rung_failed(i);
                        return;
                    }
                }
            }
            _ => None,
        };
        self.slots[i].audio = audio;
        match build_rung(&rung, &sel, self.video.as_ref(), self.shared.clone(), tx) {
            Ok((p, src)) => {
                tracing::info!(stream = %self.stream, rung = %rung.name, "rung started: {}x{} {} kbit/s with {}", sel.width, sel.height, rung.bitrate_kbps, rung.encoder.element);
                self.slots[i].running = Some(p);
                let mut feeds = self.shared.feeds.lock().unwrap_or_else(|e| e.into_inner());
                feeds[i] = Some(Feed {
                    src,
                    fps_cap: sel.fps_cap,
                    last_pts: None,
                    dropped: 0,
                    dropping_since: None,
                    caps: None,
                });
            }
            Err(e) => {
                tracing::error!(stream = %self.stream, rung = %rung.name, "rung cannot start: {e}");
                self.rung_failed(i);
            }
        }
    }

    fn stop_rung(&mut self, i: usize) {
        self.shared.feeds.lock().unwrap_or_else(|e| e.into_inner())[i] = None;
        if let Some(p) = self.slots[i].running.take() {
            let _ = p.set_state(gst::State::Null);
        }
        if let Some((p, _)) = self.slots[i].audio.take() {
            let _ = p.set_state(gst::State::Null);
        }
    }

    fn rung_failed(&mut self, i: usize) {
        self.metrics.rung_failures.fetch_add(1, Ordering::Relaxed);
        self.stop_rung(i);
        let slot = &mut self.slots[i];
        let _ = slot.out.tx.try_send(RungMsg::Hide);
        match RESTART_BACKOFF.get(slot.failures) {
            Some(d) => {
                tracing::warn!(stream = %self.stream, rung = %slot.out.rung.name, "rung removed from the multivariant playlist; restarting in {d:?}");
                slot.restart_at = Some(Instant::now() + *d);
            }
            None => {
                tracing::error!(stream = %self.stream, rung = %slot.out.rung.name, "rung failed {} times; dropped from the multivariant playlist until the publisher reconnects", slot.failures);
                slot.restart_at = None;
                slot.dropped_for_session = true;
            }
        }
        slot.failures += 1;
    }

    /// The publisher left: let the decoder and every encoder finish the pictures they hold,
    /// so the rungs' last segment ends where the source's does. Bounded by [`DRAIN_LIMIT`].
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        let Some((decoder, src)) = self.decoder.as_ref() else {
            return;
        };
        let _ = src.end_of_stream();
        if !wait_eos(decoder, deadline) {
            return;
        }
        let feeds: Vec<gst_app::AppSrc> = {
            let feeds = self.shared.feeds.lock().unwrap_or_else(|e| e.into_inner());
            feeds.iter().flatten().map(|f| f.src.clone()).collect()
        };
        for src in feeds {
            let _ = src.end_of_stream();
        }
        for slot in &self.slots {
            if let Some((_, src)) = &slot.audio {
                let _ = src.end_of_stream();
            }
        }
        for slot in &self.slots {
            if let Some(p) = &slot.running {
                wait_eos(p, deadline);
            }
            if let Some((p, _)) = &slot.audio {
                wait_eos(p, deadline);
            }
        }
    }

    fn stop_all(&mut self) {
        for i in 0..self.slots.len() {
            self.stop_rung(i);
        }
        if let Some((p, _)) = self.decoder.take() {
            let _ = p.set_state(gst::State::Null);
        }
    }

    fn frame(&mut self, f: Frame) {
        if f.track == Track::Audio {
            let base = self.shared.base.load(Ordering::Relaxed);
            for s in &self.slots {
                if s.running.is_none() {
                    continue;
                }
                match &s.audio {
                    None => {
                        let _ = s.out.tx.try_send(RungMsg::Audio(f.clone()));
                    }
                    // Audio before the first picture has no place on the timeline yet.
                    Some((_, src)) if base != i64::MIN && f.dts >= base => {
                        let mut buf = gst::Buffer::from_slice(f.data.clone());
                        if let Some(b) = buf.get_mut() {
                            b.set_pts(gst::ClockTime::from_nseconds(ticks_to_ns(f.dts - base)));
                        }
                        if src.current_level_buffers() < DECODE_QUEUE {
                            let _ = src.push_buffer(buf);
                        }
                    }
                    Some(_) => {}
                }
            }
            return;
        }
        let Some((_, src)) = self.decoder.as_ref() else {
            return;
        };
        if self.need_key && !f.keyframe {
            return;
        }
        if src.current_level_buffers() >= DECODE_QUEUE {
            if !self.need_key {
                tracing::warn!(stream = %self.stream, "decoder cannot keep up ({DECODE_QUEUE} frames queued); dropping until the next keyframe");
            }
            self.need_key = true;
            self.input_dropped += 1;
            self.metrics
                .transcode_dropped_frames
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.need_key && self.input_dropped > 0 {
            tracing::info!(stream = %self.stream, dropped = self.input_dropped, "decoder input resumed");
            self.input_dropped = 0;
        }
        self.need_key = false;
        let base = match self.shared.base.load(Ordering::Relaxed) {
            i64::MIN => {
                self.shared.base.store(f.dts, Ordering::Relaxed);
                f.dts
            }
            b => b,
        };
        let pts = f.dts + f.cts as i64;
        {
            let mut pics = self
                .shared
                .pictures
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if pics.len() == PICTURES_KEPT {
                pics.pop_front();
            }
            pics.push_back(SourcePicture {
                pts,
                dts: f.dts,
                arrival_ms: f.arrival_ms,
            });
        }
        let pts_ns = ticks_to_ns(pts - base);
        if f.keyframe {
            let mut k = self
                .shared
                .keyframes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if k.len() == KEYFRAMES_KEPT {
                k.pop_front();
            }
            k.push_back(pts_ns);
        }
        let mut buf = gst::Buffer::from_slice(f.data.clone());
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            b.set_dts(gst::ClockTime::from_nseconds(ticks_to_ns(f.dts - base)));
            if !f.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        if let Err(e) = src.push_buffer(buf) {
            tracing::warn!(stream = %self.stream, "decoder refused input: {e:?}");
        }
    }

    /// Bus messages, restarts due, rungs behind real time.
    fn poll(&mut self) {
        let now = Instant::now();
        if let Some((p, _)) = &self.decoder {
            if let Some(err) = bus_error(p) {
                tracing::error!(stream = %self.stream, "decoder failed: {err}");
                self.decoder_failed();
            }
        } else if self.decoder_retry_at.is_some_and(|t| now >= t) {
            self.decoder_retry_at = None;
            self.start_decoder();
        }
        for i in 0..self.slots.len() {
            if let Some(p) = &self.slots[i].running {
                let audio_err = self.slots[i].audio.as_ref().and_then(|(a, _)| bus_error(a));
                if let Some(err) = bus_error(p).or(audio_err) {
                    tracing::error!(stream = %self.stream, rung = %self.slots[i].out.rung.name, "rung pipeline failed: {err}");
                    self.rung_failed(i);
                    continue;
                }
                let behind = {
                    let feeds = self.shared.feeds.lock().unwrap_or_else(|e| e.into_inner());
                    feeds[i]
                        .as_ref()
                        .and_then(|f| f.dropping_since)
                        .is_some_and(|t| t.elapsed() >= BEHIND_LIMIT)
                };
                if behind {
                    tracing::error!(stream = %self.stream, rung = %self.slots[i].out.rung.name, "rung cannot keep up with real time (dropping frames for {BEHIND_LIMIT:?})");
                    self.rung_failed(i);
                }
            } else if self.slots[i].restart_at.is_some_and(|t| now >= t) && self.decoder.is_some() {
                self.slots[i].restart_at = None;
                self.start_rung(i);
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Waits until `p` reports end of stream (true), an error, or the deadline passes.
fn wait_eos(p: &gst::Pipeline, deadline: Instant) -> bool {
    let Some(bus) = p.bus() else {
        return false;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let Some(msg) = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(left.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) else {
        return false;
    };
    matches!(msg.view(), gst::MessageView::Eos(_))
}

/// The first error (or an unexpected end) posted on `p`'s bus, if any.
fn bus_error(p: &gst::Pipeline) -> Option<String> {
    let bus = p.bus()?;
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
        match msg.view() {
            gst::MessageView::Error(e) => {
                let src = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
                let first = debug.lines().last().unwrap_or("").trim().to_string();
                return Some(format!("{src}: {} {first}", e.error()));
            }
            gst::MessageView::Eos(_) => return Some("unexpected end of stream".to_string()),
            _ => {}
        }
    }
    None
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element `{factory}` is not installed"))
}

fn build_decoder(
    v: &VideoConfig,
    shared: Arc<Shared>,
) -> Result<(gst::Pipeline, gst_app::AppSrc), String> {
    let mut caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(v.avcc.clone()));
    if let Some(fps) = v.fps.filter(|f| *f > 0.0 && *f <= 240.0) {
        let frac = gst::Fraction::approximate_f64(fps).unwrap_or(gst::Fraction::new(30, 1));
        caps = caps.field("framerate", frac);
    }
    // Element names become thread names ("decode:src"), which the CPU benchmark groups by.
    let src = gst_app::AppSrc::builder()
        .name("decode")
        .caps(&caps.build())
        .format(gst::Format::Time)
        .is_live(true)
        .build();
    let parse = make("h264parse")?;
    let dec = make("avdec_h264")?;
    if dec.find_property("max-threads").is_some() {
        let _ = set_property(&dec, "max-threads", DECODE_THREADS);
    }
    let sink = gst_app::AppSink::builder()
        .caps(&gst::Caps::builder("video/x-raw").build())
        .sync(false)
        .max_buffers(2)
        .build();
    let p = gst::Pipeline::with_name("decode");
    p.add_many([src.upcast_ref(), &parse, &dec, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([src.upcast_ref(), &parse, &dec, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                fan_out(&shared, &sample);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing)
        .map_err(|e| format!("decoder does not start: {e}"))?;
    Ok((p, src))
}

/// Hands one decoded picture to every running rung (shared buffer, no copy).
fn fan_out(shared: &Shared, sample: &gst::Sample) {
    let Some(buffer) = sample.buffer_owned() else {
        return;
    };
    let Some(pts) = buffer.pts() else {
        return;
    };
    let rt = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .and_then(|s| s.to_running_time(pts))
        .unwrap_or(pts)
        .nseconds();
    let key = shared
        .keyframes
        .lock()
        .map(|k| k.contains(&rt))
        .unwrap_or(false);
    let caps = sample.caps_owned();
    let mut feeds = shared.feeds.lock().unwrap_or_else(|e| e.into_inner());
    for feed in feeds.iter_mut().flatten() {
        if let (Some(cap), Some(last)) = (feed.fps_cap, feed.last_pts) {
            // Keep frames at most 1/cap apart (keyframes always pass: rungs cut on them).
            let min_gap = 1_000_000_000 / cap as u64 * 9 / 10;
            if !key && rt.saturating_sub(last) < min_gap {
                continue;
            }
        }
        if feed.src.current_level_buffers() >= RUNG_QUEUE {
            feed.dropped += 1;
            shared
                .metrics
                .transcode_dropped_frames
                .fetch_add(1, Ordering::Relaxed);
            if feed.dropping_since.is_none() {
                feed.dropping_since = Some(Instant::now());
                tracing::warn!(rung = %feed.src.name(), "encoder cannot keep up ({RUNG_QUEUE} frames queued); dropping frames");
            }
            continue;
        }
        if feed.dropping_since.take().is_some() {
            tracing::info!(rung = %feed.src.name(), dropped = feed.dropped, "encoder caught up");
        }
        if feed.caps.as_ref() != caps.as_ref() {
            feed.src.set_caps(caps.as_ref());
            feed.caps = caps.clone();
        }
        let mut b = buffer.clone();
        if b.pts() != Some(gst::ClockTime::from_nseconds(rt)) {
            let m = b.make_mut();
            m.set_pts(gst::ClockTime::from_nseconds(rt));
        }
        feed.last_pts = Some(rt);
        let _ = feed.src.push_buffer(b);
    }
}

fn build_rung(
    rung: &Rung,
    sel: &Selected,
    source: Option<&VideoConfig>,
    shared: Arc<Shared>,
    tx: tmpsc::Sender<RungMsg>,
) -> Result<(gst::Pipeline, gst_app::AppSrc), String> {
    let src = gst_app::AppSrc::builder()
        .name(format!("rung-{}", rung.name))
        .format(gst::Format::Time)
        .is_live(true)
        .build();
    let scale = make("videoscale")?;
    let convert = make("videoconvert")?;
    let size = make("capsfilter")?;
    size.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("width", sel.width as i32)
            .field("height", sel.height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    let enc = make(&rung.encoder.element)?;
    if !rung.encoder.sets("bitrate") && enc.find_property("bitrate").is_some() {
        set_property(&enc, "bitrate", &rung.bitrate_kbps.to_string())?;
    }
    for (k, v, _) in &rung.encoder.properties {
        set_property(&enc, k, v)?;
    }
    let profile = make("capsfilter")?;
    profile.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("profile", rung.profile.as_str())
            .build(),
    );
    let parse = make("h264parse")?;
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        )
        .sync(false)
        .build();
    let p = gst::Pipeline::with_name(&format!("rung-{}", rung.name));
    let chain = [
        src.upcast_ref(),
        &scale,
        &convert,
        &size,
        &enc,
        &profile,
        &parse,
        sink.upcast_ref(),
    ];
    p.add_many(chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(chain).map_err(|e| format!("cannot link the rung: {e}"))?;

    // Force a keyframe on every picture that is a keyframe in the source, so every rung can
    // cut its segments where the source does.
    if let Some(pad) = src.static_pad("src") {
        let shared = shared.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                return gst::PadProbeReturn::Ok;
            };
            let key = shared
                .keyframes
                .lock()
                .map(|k| k.contains(&pts.nseconds()))
                .unwrap_or(false);
            tracing::trace!(pts = pts.nseconds(), key, "rung input");
            if key {
                let ev = gst_video::DownstreamForceKeyUnitEvent::builder()
                    .running_time(pts)
                    .timestamp(pts)
                    .all_headers(true)
                    .build();
                let ok = pad.push_event(ev);
                tracing::trace!(ok, "force key unit");
            }
            gst::PadProbeReturn::Ok
        });
    }

    let fps = sel
        .fps_cap
        .map(|c| c as f64)
        .or(source.and_then(|v| v.fps))
        .map(|f| match source.and_then(|v| v.fps) {
            Some(s) => f.min(s),
            None => f,
        });
    let mut out = RungOut {
        shared,
        tx,
        config: None,
        fps,
        last_dts: None,
        name: rung.name.clone(),
        dropped: 0,
    };
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                out.sample(&sample);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing)
        .map_err(|e| format!("rung pipeline does not start: {e}"))?;
    Ok((p, src))
}

/// The AAC-LC configuration a rung's audio re-encoder produces from `source`'s audio (same
/// rate and channels).
fn reencoded_audio(source: &AudioConfig) -> Option<AudioConfig> {
    let asc = aac::audio_specific_config(2, source.sample_rate, source.channels).ok()?;
    Some(AudioConfig {
        asc,
        object_type: 2,
        sample_rate: source.sample_rate,
        channels: source.channels,
        samples_per_frame: 1024,
    })
}

/// appsrc(AAC) ! avdec_aac ! audioconvert ! audioresample ! caps ! avenc_aac ! aacparse ! appsink
fn build_audio(
    rung: &str,
    source: &AudioConfig,
    kbps: u32,
    shared: Arc<Shared>,
    tx: tmpsc::Sender<RungMsg>,
) -> Result<(gst::Pipeline, gst_app::AppSrc), String> {
    let caps = gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .field("codec_data", gst::Buffer::from_slice(source.asc.clone()))
        .build();
    let src = gst_app::AppSrc::builder()
        .name(format!("rung-{rung}-aac"))
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(true)
        .build();
    let dec = make("avdec_aac")?;
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let raw = make("capsfilter")?;
    raw.set_property(
        "caps",
        gst::Caps::builder("audio/x-raw")
            .field("rate", source.sample_rate as i32)
            .field("channels", source.channels as i32)
            .build(),
    );
    let enc = make(ladder::AUDIO_ENCODER)?;
    set_property(&enc, "bitrate", &(kbps as u64 * 1000).to_string())?;
    let parse = make("aacparse")?;
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("audio/mpeg")
                .field("mpegversion", 4i32)
                .field("stream-format", "raw")
                .build(),
        )
        .sync(false)
        .build();
    let p = gst::Pipeline::with_name(&format!("rung-{rung}-aac"));
    let chain = [
        src.upcast_ref(),
        &dec,
        &convert,
        &resample,
        &raw,
        &enc,
        &parse,
        sink.upcast_ref(),
    ];
    p.add_many(chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(chain).map_err(|e| format!("cannot link the audio re-encoder: {e}"))?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(pts)) =
                    (sample.buffer(), sample.buffer().and_then(|b| b.pts()))
                else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let rt = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                    .and_then(|s| s.to_running_time(pts))
                    .unwrap_or(pts);
                let base = shared.base.load(Ordering::Relaxed);
                if base == i64::MIN {
                    return Ok(gst::FlowSuccess::Ok);
                }
                let Ok(map) = buffer.map_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let frame = Frame {
                    track: Track::Audio,
                    dts: base + ns_to_ticks(rt.nseconds()),
                    cts: 0,
                    keyframe: true,
                    data: Bytes::copy_from_slice(map.as_slice()),
                    arrival_ms: unix_ms(SystemTime::now()),
                };
                let _ = tx.try_send(RungMsg::Audio(frame));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing)
        .map_err(|e| format!("audio re-encoder does not start: {e}"))?;
    Ok((p, src))
}

/// Turns a rung's encoded samples back into [`Frame`]s on the source's timeline.
struct RungOut {
    shared: Arc<Shared>,
    tx: tmpsc::Sender<RungMsg>,
    config: Option<Bytes>,
    fps: Option<f64>,
    last_dts: Option<i64>,
    name: String,
    dropped: u64,
}

impl RungOut {
    fn sample(&mut self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        if let Some(codec_data) = sample
            .caps()
            .and_then(|c| c.structure(0))
            .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
        {
            let bytes = codec_data
                .map_readable()
                .map(|m| Bytes::copy_from_slice(m.as_slice()))
                .unwrap_or_default();
            if self.config.as_ref() != Some(&bytes) {
                match h264::parse_avc_decoder_config(&bytes) {
                    Ok(mut v) => {
                        if v.fps.is_none() {
                            v.fps = self.fps;
                        }
                        self.config = Some(bytes);
                        let _ = self.tx.try_send(RungMsg::VideoConfig(v));
                    }
                    Err(e) => {
                        tracing::warn!(rung = %self.name, "encoder output has an unusable avcC: {e}");
                        return;
                    }
                }
            }
        }
        if self.config.is_none() {
            return;
        }
        // x264enc shifts its timestamps (to about 1000 h); the running time is what matches
        // the input.
        let Some(pts) = buffer.pts() else {
            return;
        };
        let rt = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>())
            .and_then(|s| s.to_running_time(pts))
            .unwrap_or(pts);
        let base = self.shared.base.load(Ordering::Relaxed);
        if base == i64::MIN {
            return;
        }
        let pts90 = base + ns_to_ticks(rt.nseconds());
        // The rung has no B-frames: its decode order is presentation order. It takes the
        // source's decode times slot by slot: the picture that is n-th in presentation order
        // among the recent source pictures gets the n-th decode time. So a keyframe gets exactly
        // its source keyframe's decode time (where segments are cut), and every other picture
        // the source's (millisecond-rounded) times, so parts are cut alike too.
        let (pic, slot_dts) = {
            let pics = self
                .shared
                .pictures
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let pic = pics
                .iter()
                .rev()
                .find(|p| (p.pts - pts90).abs() <= 1)
                .copied();
            let pts = pic.map_or(pts90, |p| p.pts);
            let rank = pics.iter().filter(|p| p.pts < pts).count();
            (pic, pics.get(rank).map(|p| p.dts))
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let (arrival_ms, pts90) = match pic {
            Some(p) => (p.arrival_ms, p.pts),
            None => (unix_ms(SystemTime::now()), pts90),
        };
        let dts = slot_dts.unwrap_or(pts90);
        let dts = match self.last_dts {
            Some(last) => dts.max(last + 1).min(pts90),
            None => dts.min(pts90),
        };
        self.last_dts = Some(dts);
        let data = match buffer.map_readable() {
            Ok(m) => Bytes::copy_from_slice(m.as_slice()),
            Err(_) => return,
        };
        let frame = Frame {
            track: Track::Video,
            dts,
            cts: (pts90 - dts) as i32,
            keyframe,
            data,
            arrival_ms,
        };
        if self.tx.try_send(RungMsg::Video(frame)).is_err() {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(rung = %self.name, dropped = self.dropped, "rung packager queue full; encoded frames dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_gstreamer_nanoseconds() {
        for t in [0i64, 1, 2, 3000, 3003, 90_000, 123_456_789] {
            assert_eq!(ns_to_ticks(ticks_to_ns(t)), t, "{t}");
        }
        assert_eq!(
            ticks_to_ns(0),
            GST_ORIGIN_NS,
            "GStreamer time starts at 1000 h"
        );
        assert_eq!(ticks_to_ns(90_000) - GST_ORIGIN_NS, 1_000_000_000);
    }

    #[test]
    fn check_reports_missing_elements_and_bad_properties_by_name() {
        let mut rung = Rung {
            name: "r".into(),
            width: None,
            height: 360,
            fps: None,
            bitrate_kbps: 600,
            audio_kbps: None,
            profile: "main".into(),
            encoder: ladder::Encoder {
                element: "no-such-encoder-element".into(),
                pos: ladder::Pos { line: 3, col: 11 },
                properties: Vec::new(),
            },
            pos: ladder::Pos { line: 1, col: 1 },
            bitrate_pos: ladder::Pos { line: 2, col: 11 },
        };
        let mut p = Pipeline {
            name: "p".into(),
            path: "p.toml".into(),
            description: None,
            source: true,
            rungs: vec![rung.clone()],
        };
        let msgs: Vec<String> = check_elements(&p).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            ["p.toml:3:11: rung `r`: encoder element `no-such-encoder-element` is not installed in this GStreamer; `gst-inspect-1.0 no-such-encoder-element` shows whether it is"]
        );
        rung.encoder.element = "x264enc".into();
        rung.encoder.properties = vec![
            (
                "speed-preset".into(),
                "warp".into(),
                ladder::Pos { line: 4, col: 16 },
            ),
            (
                "colour".into(),
                "1".into(),
                ladder::Pos { line: 5, col: 10 },
            ),
            (
                "tune".into(),
                "zerolatency".into(),
                ladder::Pos { line: 6, col: 8 },
            ),
        ];
        p.rungs = vec![rung.clone()];
        let msgs: Vec<String> = check_elements(&p).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "p.toml:4:16: rung `r`: `warp` is not a valid value for property `speed-preset` of `x264enc` (type GstX264EncPreset)",
                "p.toml:5:10: rung `r`: encoder `x264enc` has no property `colour`",
            ]
        );
        rung.encoder.element = "videoscale".into();
        rung.encoder.properties.clear();
        p.rungs = vec![rung];
        let msgs: Vec<String> = check_elements(&p).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "p.toml:3:11: rung `r`: `videoscale` is not a video encoder",
                "p.toml:2:11: rung `r`: encoder `videoscale` has no `bitrate` property; set its rate control in [rung.encoder] instead",
            ]
        );
    }
}
