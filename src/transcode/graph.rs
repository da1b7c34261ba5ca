//! The GStreamer pipelines and what runs on their streaming threads: the decoder, the fan-out
//! of its pictures to the rungs, each rung's encoder and optional AAC re-encoder, and the
//! appsink callbacks that turn encoded samples back into [`Frame`]s for the rung's packager.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tokio::sync::mpsc as tmpsc;

use super::elements::set_property;
use super::timestamps::{self, Keyframes, SourcePictures, NO_BASE};
use super::{RungMsg, RUNG_QUEUE};
use crate::config::ladder::{self, Rung, Selected};
use crate::media::{aac, h264, AudioConfig, Frame, Track, VideoConfig};
use crate::metrics::Metrics;
use crate::util::time::now_ms;

/// Decoder threads: frame threading adds one frame of delay per extra thread.
const DECODE_THREADS: &str = "2";

/// State shared between the control thread and GStreamer's streaming threads.
pub(super) struct Shared {
    /// The stream's name, for the lines logged on GStreamer's threads (outside its span).
    pub stream: String,
    /// 90 kHz time subtracted from source timestamps so GStreamer's start at the origin;
    /// [`NO_BASE`] until the session's first picture reaches the decoder.
    pub base: AtomicI64,
    /// Recent source pictures (bounded).
    pub pictures: Mutex<SourcePictures>,
    /// Presentation times (ns, GStreamer timeline) of recent source keyframes.
    pub keyframes: Mutex<Keyframes>,
    /// The feeds of running rungs, by rung slot.
    pub feeds: Mutex<Vec<Option<Feed>>>,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(stream: String, rungs: usize, metrics: Arc<Metrics>) -> Self {
        Shared {
            stream,
            base: AtomicI64::new(NO_BASE),
            pictures: Mutex::new(SourcePictures::new()),
            keyframes: Mutex::new(Keyframes::new()),
            feeds: Mutex::new(vec![None; rungs]),
            metrics,
        }
    }

    pub fn base(&self) -> i64 {
        self.base.load(Ordering::Relaxed)
    }
}

/// Locks `m`, even if a thread panicked holding it: the data stays usable (bounded lists).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The input side of one running rung pipeline.
#[derive(Clone)]
pub(super) struct Feed {
    pub src: gst_app::AppSrc,
    fps_cap: Option<u32>,
    last_pts: Option<u64>,
    dropped: u64,
    /// First drop of the current run of drops.
    pub dropping_since: Option<Instant>,
    caps: Option<gst::Caps>,
}

impl Feed {
    pub fn new(src: gst_app::AppSrc, fps_cap: Option<u32>) -> Self {
        Feed {
            src,
            fps_cap,
            last_pts: None,
            dropped: 0,
            dropping_since: None,
            caps: None,
        }
    }
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element `{factory}` is not installed"))
}

/// appsrc(H.264) ! h264parse ! avdec_h264 ! appsink, whose pictures go to [`fan_out`].
pub(super) fn build_decoder(
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

/// Hands a source picture (AVCC, GStreamer times from [`timestamps`]) to the decoder.
pub(super) fn push_picture(
    src: &gst_app::AppSrc,
    data: Bytes,
    pts_ns: u64,
    dts_ns: u64,
    keyframe: bool,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let mut buf = gst::Buffer::from_slice(data);
    if let Some(b) = buf.get_mut() {
        b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
        b.set_dts(gst::ClockTime::from_nseconds(dts_ns));
        if !keyframe {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
    }
    src.push_buffer(buf)
}

/// Hands a source AAC frame to a rung's audio re-encoder.
pub(super) fn push_audio(
    src: &gst_app::AppSrc,
    data: Bytes,
    pts_ns: u64,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let mut buf = gst::Buffer::from_slice(data);
    if let Some(b) = buf.get_mut() {
        b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
    }
    src.push_buffer(buf)
}

/// Hands one decoded picture to every running rung (shared buffer, no copy).
fn fan_out(shared: &Shared, sample: &gst::Sample) {
    let Some(buffer) = sample.buffer_owned() else {
        return;
    };
    let Some(pts) = buffer.pts() else {
        return;
    };
    let rt = timestamps::running_time(sample.segment(), pts).nseconds();
    let key = shared
        .keyframes
        .lock()
        .map(|k| k.contains(rt))
        .unwrap_or(false);
    let caps = sample.caps_owned();
    let mut feeds = lock(&shared.feeds);
    for feed in feeds.iter_mut().flatten() {
        if !timestamps::fps_cap_keeps(feed.fps_cap, feed.last_pts, rt, key) {
            continue;
        }
        if feed.src.current_level_buffers() >= RUNG_QUEUE {
            feed.dropped += 1;
            shared
                .metrics
                .transcode_dropped_frames
                .fetch_add(1, Ordering::Relaxed);
            if feed.dropping_since.is_none() {
                feed.dropping_since = Some(Instant::now());
                tracing::warn!(stream = %shared.stream, rung = %feed.src.name(), "encoder cannot keep up ({RUNG_QUEUE} frames queued); dropping frames");
            }
            continue;
        }
        if feed.dropping_since.take().is_some() {
            tracing::info!(stream = %shared.stream, rung = %feed.src.name(), dropped = feed.dropped, "encoder caught up");
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

/// appsrc(raw) ! videoscale ! videoconvert ! caps ! ENCODER ! caps ! h264parse ! appsink, whose
/// samples go to the rung's packager through [`RungOut`].
pub(super) fn build_rung(
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
                .map(|k| k.contains(pts.nseconds()))
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
pub(super) fn reencoded_audio(source: &AudioConfig) -> Option<AudioConfig> {
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
pub(super) fn build_audio(
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
                let rt = timestamps::running_time(sample.segment(), pts);
                let Some(dts) = timestamps::audio_out_dts(shared.base(), rt.nseconds()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(map) = buffer.map_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let frame = Frame {
                    track: Track::Audio,
                    dts,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::copy_from_slice(map.as_slice()),
                    arrival_ms: now_ms(),
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
                        tracing::warn!(stream = %self.shared.stream, rung = %self.name, error = %e, "encoder output has an unusable avcC");
                        return;
                    }
                }
            }
        }
        if self.config.is_none() {
            return;
        }
        let Some(pts) = buffer.pts() else {
            return;
        };
        let rt = timestamps::running_time(sample.segment(), pts);
        let base = self.shared.base();
        if base == NO_BASE {
            return;
        }
        let pts90 = timestamps::ns_to_source(base, rt.nseconds());
        let placed = lock(&self.shared.pictures).place(pts90, self.last_dts);
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let arrival_ms = placed.arrival_ms.unwrap_or_else(now_ms);
        self.last_dts = Some(placed.dts);
        let data = match buffer.map_readable() {
            Ok(m) => Bytes::copy_from_slice(m.as_slice()),
            Err(_) => return,
        };
        let frame = Frame {
            track: Track::Video,
            dts: placed.dts,
            cts: placed.cts,
            keyframe,
            data,
            arrival_ms,
        };
        if self.tx.try_send(RungMsg::Video(frame)).is_err() {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(stream = %self.shared.stream, rung = %self.name, dropped = self.dropped, "rung packager queue full; encoded frames dropped");
            }
        }
    }
}

/// Waits until `p` reports end of stream (true), an error, or the deadline passes.
pub(super) fn wait_eos(p: &gst::Pipeline, deadline: Instant) -> bool {
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
pub(super) fn bus_error(p: &gst::Pipeline) -> Option<String> {
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
