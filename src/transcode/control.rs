//! The control loop of one stream's transcoder: hub messages in, rung outputs out. It runs on
//! its own thread, starts and stops the pipelines of [`graph`](super::graph) as sessions come
//! and go, and restarts failed ones as [`restart`](super::restart) says.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::broadcast;
use tracing::Instrument;

use super::graph::{self, lock, Feed, Shared};
use super::restart::{self, Restarts, Verdict, BEHIND_LIMIT};
use super::timestamps::{self, SourcePicture, NO_BASE};
use super::{init, RungMsg, RungOutput, DECODE_QUEUE, INPUT_QUEUE};
use crate::config::ladder::{self, Selected};
use crate::config::Pipeline;
use crate::hub::HubMsg;
use crate::media::{AudioConfig, Frame, Track, VideoConfig};
use crate::metrics::Metrics;

/// Longest wait for the encoders to flush when a publisher leaves.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// How often the loop looks at buses, due restarts and rungs behind, without input.
const POLL_EVERY: Duration = Duration::from_millis(50);

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
    let m = metrics.clone();
    // The control thread and the feeding task log in the stream's span. A root span: it names
    // the stream itself. (GStreamer's streaming threads log with explicit fields.)
    let span = tracing::info_span!(parent: None, "transcode", stream = %stream);
    let thread_span = span.clone();
    let thread = std::thread::Builder::new()
        .name(format!("transcode-{stream}"))
        .spawn(move || {
            let _entered = thread_span.enter();
            Control::new(stream, pipeline, rungs, m).run(in_rx)
        })
        .map_err(|e| format!("cannot start the transcoder thread: {e}"))?;
    let feed = async move {
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
                        tracing::warn!(
                            missed = n,
                            "transcoder fell behind the hub; resuming at the next keyframe"
                        );
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
                        tracing::warn!(dropped, "transcoder input resumed after dropping frames");
                    }
                    skipping = false;
                    dropped = 0;
                }
                Err(mpsc::TrySendError::Full(m)) => {
                    if !skipping {
                        tracing::warn!("transcoder input queue full ({INPUT_QUEUE}); dropping until the next keyframe");
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
    };
    Ok(tokio::spawn(feed.instrument(span)))
}

/// A rung slot: its configuration, its packager, and its running pipeline if any.
struct Slot {
    out: RungOutput,
    selected: Option<Selected>,
    running: Option<gst::Pipeline>,
    /// The rung's AAC re-encoder, when it has `audio_bitrate`.
    audio: Option<(gst::Pipeline, gst_app::AppSrc)>,
    restarts: Restarts,
}

struct Control {
    pipeline: Pipeline,
    slots: Vec<Slot>,
    shared: Arc<Shared>,
    decoder: Option<(gst::Pipeline, gst_app::AppSrc)>,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    /// After a loss or a (re)start, feed the decoder from the next keyframe on.
    need_key: bool,
    decoder_restarts: Restarts,
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
            pipeline,
            slots: rungs
                .into_iter()
                .map(|out| Slot {
                    out,
                    selected: None,
                    running: None,
                    audio: None,
                    restarts: Restarts::default(),
                })
                .collect(),
            shared: Arc::new(Shared::new(stream, n, metrics.clone())),
            decoder: None,
            video: None,
            audio: None,
            need_key: true,
            decoder_restarts: Restarts::default(),
            input_dropped: 0,
            metrics,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<HubMsg>) {
        loop {
            match rx.recv_timeout(POLL_EVERY) {
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
            self.poll(Instant::now());
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
        self.decoder_restarts.new_session();
        self.shared.base.store(NO_BASE, Ordering::Relaxed);
        // A new session's clock may restart: forget the old session's pictures.
        lock(&self.shared.pictures).clear();
        lock(&self.shared.keyframes).clear();
        for s in &self.slots {
            let audio = match (&audio, s.out.rung.audio_kbps) {
                (Some(a), Some(_)) => graph::reencoded_audio(a),
                _ => audio.clone(),
            };
            let _ = s.out.tx.try_send(RungMsg::Session { audio });
        }
        let Some(v) = video else {
            tracing::info!("no video: transcoded rungs are not used");
            self.broadcast(|| RungMsg::Hide);
            return;
        };
        let (selected, skipped) = ladder::select(&self.pipeline, v.width, v.height, v.fps);
        for line in skipped {
            tracing::info!("{line}");
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.selected = selected.iter().find(|s| s.index == i).cloned();
            slot.restarts.new_session();
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
        match graph::build_decoder(&v, self.shared.clone()) {
            Ok(d) => {
                self.decoder = Some(d);
                self.need_key = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the decoder");
                self.decoder_failed();
            }
        }
    }

    fn decoder_failed(&mut self) {
        if let Some((p, _)) = self.decoder.take() {
            let _ = p.set_state(gst::State::Null);
        }
        match self.decoder_restarts.failed(Instant::now()) {
            Verdict::RetryIn(d) => {
                tracing::warn!("decoder restarts in {d:?}");
            }
            Verdict::GiveUp { restarts } => {
                tracing::error!("decoder failed {restarts} times; transcoded rungs are off until the publisher reconnects");
                for i in 0..self.slots.len() {
                    self.stop_rung(i);
                    self.slots[i].selected = None;
                }
            }
        }
    }

    fn start_rung(&mut self, i: usize) {
        let Some(sel) = self.slots[i].selected.clone() else {
            return;
        };
        let rung = self.slots[i].out.rung.clone();
        let tx = self.slots[i].out.tx.clone();
        let audio = match (&self.audio, rung.audio_kbps) {
            (Some(a), Some(kbps)) => {
                match graph::build_audio(&rung.name, a, kbps, self.shared.clone(), tx.clone()) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(rung = %rung.name, error = %e, "audio re-encoder cannot start");
                        self.rung_failed(i);
                        return;
                    }
                }
            }
            _ => None,
        };
        self.slots[i].audio = audio;
        match graph::build_rung(&rung, &sel, self.video.as_ref(), self.shared.clone(), tx) {
            Ok((p, src)) => {
                tracing::info!(rung = %rung.name, "rung started: {}x{} {} kbit/s with {}", sel.width, sel.height, rung.bitrate_kbps, rung.encoder.element);
                self.slots[i].running = Some(p);
                lock(&self.shared.feeds)[i] = Some(Feed::new(src, sel.fps_cap));
            }
            Err(e) => {
                tracing::error!(rung = %rung.name, error = %e, "rung cannot start");
                self.rung_failed(i);
            }
        }
    }

    fn stop_rung(&mut self, i: usize) {
        lock(&self.shared.feeds)[i] = None;
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
        match slot.restarts.failed(Instant::now()) {
            Verdict::RetryIn(d) => {
                tracing::warn!(rung = %slot.out.rung.name, "rung removed from the multivariant playlist; restarting in {d:?}");
            }
            Verdict::GiveUp { restarts } => {
                tracing::error!(rung = %slot.out.rung.name, "rung failed {restarts} times; dropped from the multivariant playlist until the publisher reconnects");
            }
        }
    }

    /// The publisher left: let the decoder and every encoder finish the pictures they hold,
    /// so the rungs' last segment ends where the source's does. Bounded by [`DRAIN_LIMIT`].
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        let Some((decoder, src)) = self.decoder.as_ref() else {
            return;
        };
        let _ = src.end_of_stream();
        if !graph::wait_eos(decoder, deadline) {
            return;
        }
        let feeds: Vec<gst_app::AppSrc> = lock(&self.shared.feeds)
            .iter()
            .flatten()
            .map(|f| f.src.clone())
            .collect();
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
                graph::wait_eos(p, deadline);
            }
            if let Some((p, _)) = &slot.audio {
                graph::wait_eos(p, deadline);
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
            let base = self.shared.base();
            for s in &self.slots {
                if s.running.is_none() {
                    continue;
                }
                match &s.audio {
                    None => {
                        let _ = s.out.tx.try_send(RungMsg::Audio(f.clone()));
                    }
                    // Audio before the first picture has no place on the timeline yet.
                    Some((_, src)) => {
                        if let Some(pts_ns) = timestamps::audio_in_ns(base, f.dts) {
                            if src.current_level_buffers() < DECODE_QUEUE {
                                let _ = graph::push_audio(src, f.data.clone(), pts_ns);
                            }
                        }
                    }
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
                tracing::warn!("decoder cannot keep up ({DECODE_QUEUE} frames queued); dropping until the next keyframe");
            }
            self.need_key = true;
            self.input_dropped += 1;
            self.metrics
                .transcode_dropped_frames
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.need_key && self.input_dropped > 0 {
            tracing::info!(dropped = self.input_dropped, "decoder input resumed");
            self.input_dropped = 0;
        }
        self.need_key = false;
        let base = match self.shared.base() {
            NO_BASE => {
                self.shared.base.store(f.dts, Ordering::Relaxed);
                f.dts
            }
            b => b,
        };
        let pts = f.dts + f.cts as i64;
        lock(&self.shared.pictures).push(SourcePicture {
            pts,
            dts: f.dts,
            arrival_ms: f.arrival_ms,
        });
        let pts_ns = timestamps::source_to_ns(base, pts);
        if f.keyframe {
            lock(&self.shared.keyframes).push(pts_ns);
        }
        let dts_ns = timestamps::source_to_ns(base, f.dts);
        if let Err(e) = graph::push_picture(src, f.data.clone(), pts_ns, dts_ns, f.keyframe) {
            tracing::warn!(error = ?e, "decoder refused input");
        }
    }

    /// Bus messages, restarts due, rungs behind real time.
    fn poll(&mut self, now: Instant) {
        if let Some((p, _)) = &self.decoder {
            if let Some(err) = graph::bus_error(p) {
                tracing::error!(error = %err, "decoder failed");
                self.decoder_failed();
            }
        } else if self.decoder_restarts.take_due(now) {
            self.start_decoder();
        }
        for i in 0..self.slots.len() {
            if let Some(p) = &self.slots[i].running {
                let audio_err = self.slots[i]
                    .audio
                    .as_ref()
                    .and_then(|(a, _)| graph::bus_error(a));
                if let Some(err) = graph::bus_error(p).or(audio_err) {
                    tracing::error!(rung = %self.slots[i].out.rung.name, error = %err, "rung pipeline failed");
                    self.rung_failed(i);
                    continue;
                }
                let dropping_since = lock(&self.shared.feeds)[i]
                    .as_ref()
                    .and_then(|f| f.dropping_since);
                if restart::behind(dropping_since, Instant::now()) {
                    tracing::error!(rung = %self.slots[i].out.rung.name, "rung cannot keep up with real time (dropping frames for {BEHIND_LIMIT:?})");
                    self.rung_failed(i);
                }
            } else if self.decoder.is_some() && self.slots[i].restarts.take_due(now) {
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
