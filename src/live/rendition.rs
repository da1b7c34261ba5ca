//! One rendition's task: runs the sans-IO segmenter on the stream's messages (the source
//! rendition from the hub's feed, a transcoded rung from the transcoder) and publishes its
//! output into the origin store.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::config::Pipeline;
use crate::hub::HubMsg;
use crate::media::{Frame, Track};
use crate::metrics::Metrics;
use crate::package::follow::CutLog;
use crate::package::segmenter::{CutConfig, Output, Segmenter};
use crate::store::{RenditionInfo, StreamEntry};
use crate::transcode::RungMsg;
use crate::util::time::now_ms;
use std::sync::atomic::Ordering;

/// Name of the rendition that carries the publisher's source untouched.
pub const SOURCE_RENDITION: &str = "source";

/// Renditions a stream may get from its pipeline: the source (when passed through) first, then
/// every rung in file order. Rungs that do not suit a particular source stay unlisted.
pub fn renditions(pipeline: Option<&Pipeline>) -> Vec<String> {
    let Some(p) = pipeline else {
        return vec![SOURCE_RENDITION.to_string()];
    };
    let mut v = Vec::new();
    if p.source {
        v.push(SOURCE_RENDITION.to_string());
    }
    v.extend(p.rungs.iter().map(|r| r.name.clone()));
    v
}

/// The span of one rendition's task. A root span: it names its stream itself, so its lines
/// read the same whoever spawned the task.
pub fn span(stream: &str, rendition: &str) -> tracing::Span {
    tracing::info_span!(parent: None, "rendition", stream = %stream, rendition = %rendition)
}

/// Records the source rendition's decision at each video keyframe for the rungs to follow.
fn record_lead(log: &CutLog, seg: &Segmenter, frame: &Frame, out: &[Output]) {
    if frame.track != Track::Video || !frame.keyframe {
        return;
    }
    let lead = seg.lead_in(out);
    log.record((frame.dts + frame.cts as i64, frame.arrival_ms), lead);
}

/// Runs the source rendition (index 0) until the hub says the stream is over (or closes),
/// recording its cut decisions in `leads` for transcoded rungs to follow.
pub async fn run(
    entry: Arc<StreamEntry>,
    idx: Option<usize>,
    mut seg: Segmenter,
    mut rx: broadcast::Receiver<HubMsg>,
    metrics: Arc<Metrics>,
    leads: Arc<CutLog>,
) {
    let mut codecs = RenditionInfo::default();
    // After losing frames, video resumes only at the next keyframe.
    let mut resync = false;
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(RecvError::Lagged(n)) => {
                metrics.hub_lagged_frames.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    missed = n,
                    "packager fell behind; resuming at the next keyframe"
                );
                let out = seg.end_session();
                publish_opt(&entry, idx, &metrics, &seg, out);
                resync = true;
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        let out = match msg {
            HubMsg::Start { video, audio } => {
                codecs = RenditionInfo {
                    video: video.clone(),
                    audio: audio.clone(),
                    nominal_bandwidth: None,
                };
                if let Some(i) = idx {
                    entry.set_info(i, codecs.clone());
                }
                resync = false;
                seg.begin_session(video, audio)
            }
            HubMsg::Config { video, audio } => {
                codecs = RenditionInfo {
                    video: video.clone(),
                    audio: audio.clone(),
                    nominal_bandwidth: None,
                };
                if let Some(i) = idx {
                    entry.set_info(i, codecs.clone());
                }
                seg.change_config(video, audio)
            }
            HubMsg::Frame(frame) => {
                if resync {
                    let video_key = frame.track == Track::Video && frame.keyframe;
                    if !video_key && codecs.video.is_some() {
                        continue;
                    }
                    resync = false;
                    let mut out = seg.begin_session(codecs.video.clone(), codecs.audio.clone());
                    let pushed = seg.push(&frame);
                    record_lead(&leads, &seg, &frame, &pushed);
                    out.extend(pushed);
                    out
                } else {
                    let out = seg.push(&frame);
                    record_lead(&leads, &seg, &frame, &out);
                    out
                }
            }
            HubMsg::Metadata(event) => {
                seg.push_metadata(event);
                continue;
            }
            HubMsg::Stop => seg.end_session(),
            HubMsg::End => {
                let out = seg.end_session();
                publish_opt(&entry, idx, &metrics, &seg, out);
                // The hub ends the playlists once every rendition has flushed.
                return;
            }
        };
        publish_opt(&entry, idx, &metrics, &seg, out);
    }
    let out = seg.end_session();
    publish_opt(&entry, idx, &metrics, &seg, out);
    entry.end();
}

/// [`publish`] for the source rendition, which is not served when passthrough is off (its
/// segmenter then only decides the cuts the rungs follow).
fn publish_opt(
    entry: &StreamEntry,
    idx: Option<usize>,
    metrics: &Metrics,
    seg: &Segmenter,
    out: Vec<Output>,
) {
    if let Some(i) = idx {
        publish(entry, i, metrics, seg, out);
    }
}

/// Hands segmenter output for rendition `idx` to the store; counts and logs part lag.
pub fn publish(
    entry: &StreamEntry,
    idx: usize,
    metrics: &Metrics,
    seg: &Segmenter,
    out: Vec<Output>,
) {
    if out.is_empty() {
        return;
    }
    // (msn, index, last frame arrival) of each part, measured once the store has it.
    let parts: Vec<(u64, u32, u64)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Part(p) => Some((p.msn, p.index, p.last_arrival_ms)),
            _ => None,
        })
        .collect();
    let segments = out
        .iter()
        .filter(|o| matches!(o, Output::SegmentEnd { .. }))
        .count();
    entry.apply(idx, out, seg.next_part_number());
    let now = now_ms();
    for (msn, part, arrival) in parts {
        let lag_ms = now.saturating_sub(arrival);
        metrics.parts_published.fetch_add(1, Ordering::Relaxed);
        metrics.observe_part_lag(lag_ms);
        let rendition = entry.renditions.get(idx).map_or("", |r| r.name.as_str());
        // Its own fields, though the span has them: benches/lag_from_log.py parses this line.
        tracing::debug!(target: "ferrocast::lag", stream = %entry.name, msn, part, lag_ms, rendition);
    }
    metrics
        .segments_published
        .fetch_add(segments as u64, Ordering::Relaxed);
}

/// Source audio a rung holds until its (delayed) video has caught up (≈ 10 s of AAC).
const RUNG_AUDIO_HELD: usize = 480;
/// How long a rung waits for the source's decision on a keyframe it produced.
const LEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs one transcoded rung's segmenter (rendition `idx`), following the source's cuts.
/// Audio is passed through, interleaved behind the rung's video so each part holds audio of
/// the same media time as its pictures.
pub async fn run_rung(
    entry: Arc<StreamEntry>,
    idx: usize,
    cut: CutConfig,
    mut rx: tokio::sync::mpsc::Receiver<RungMsg>,
    metrics: Arc<Metrics>,
    leads: Arc<CutLog>,
    nominal_bandwidth: u64,
) {
    let mut seg = Segmenter::new(cut);
    let mut audio_cfg = None;
    let mut video_cfg = None;
    let mut in_session = false;
    let mut listed = false;
    let mut held: std::collections::VecDeque<Frame> = std::collections::VecDeque::new();
    while let Some(msg) = rx.recv().await {
        let out = match msg {
            RungMsg::Session { audio } => {
                audio_cfg = audio;
                video_cfg = None;
                in_session = false;
                held.clear();
                seg.end_session()
            }
            RungMsg::VideoConfig(v) => {
                video_cfg = Some(v.clone());
                if in_session {
                    seg.change_config(Some(v), audio_cfg.clone())
                } else {
                    in_session = true;
                    seg.begin_session(Some(v), audio_cfg.clone())
                }
            }
            RungMsg::Video(frame) => {
                let mut out = Vec::new();
                while held.front().is_some_and(|a| a.dts <= frame.dts) {
                    if let Some(a) = held.pop_front() {
                        out.extend(seg.push_following(&a, None));
                    }
                }
                let lead = if frame.keyframe {
                    let key = (frame.dts + frame.cts as i64, frame.arrival_ms);
                    match leads.wait(key, LEAD_WAIT).await {
                        Some(l) => l,
                        None => {
                            tracing::debug!("no source decision for a keyframe");
                            None
                        }
                    }
                } else {
                    None
                };
                out.extend(seg.push_following(&frame, lead));
                if !listed && out.iter().any(|o| matches!(o, Output::SegmentStart { .. })) {
                    listed = true;
                    entry.set_info(
                        idx,
                        RenditionInfo {
                            video: video_cfg.clone(),
                            audio: audio_cfg.clone(),
                            nominal_bandwidth: Some(nominal_bandwidth),
                        },
                    );
                    tracing::info!("rung listed in the multivariant playlist");
                }
                out
            }
            RungMsg::Metadata(event) => {
                seg.push_metadata(event);
                continue;
            }
            RungMsg::Audio(frame) => {
                if held.len() == RUNG_AUDIO_HELD {
                    held.pop_front();
                }
                held.push_back(frame);
                continue;
            }
            RungMsg::Hide => {
                if listed {
                    entry.set_info(idx, RenditionInfo::default());
                    listed = false;
                }
                in_session = false;
                held.clear();
                seg.end_session()
            }
            RungMsg::Stop => {
                held.clear();
                seg.end_session()
            }
            RungMsg::End => {
                let out = seg.end_session();
                publish(&entry, idx, &metrics, &seg, out);
                return;
            }
        };
        publish(&entry, idx, &metrics, &seg, out);
    }
    let out = seg.end_session();
    publish(&entry, idx, &metrics, &seg, out);
}
