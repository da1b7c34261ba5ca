//! Glue between a stream's hub and the origin store: runs the sans-IO segmenter
//! for each rendition and publishes its output.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::config::Config;
use crate::hub::HubMsg;
use crate::media::Track;
use crate::metrics::Metrics;
use crate::origin::store::{unix_ms, RenditionInfo, StreamEntry};
use crate::package::segmenter::{CutConfig, Output, Segmenter};
use std::sync::atomic::Ordering;

/// Name of the rendition that carries the publisher's source untouched.
pub const SOURCE_RENDITION: &str = "source";

/// Renditions a stream gets from its pipeline (today: the source passed through).
pub fn renditions(config: &Config, pipeline: &str) -> Vec<String> {
    match config.pipelines.get(pipeline) {
        Some(p) if !p.source => Vec::new(),
        _ => vec![SOURCE_RENDITION.to_string()],
    }
}

/// Runs until the hub says the stream is over (or closes).
pub async fn run(
    entry: Arc<StreamEntry>,
    cut: CutConfig,
    mut rx: broadcast::Receiver<HubMsg>,
    metrics: Arc<Metrics>,
) {
    let mut seg = Segmenter::new(cut);
    let mut codecs = RenditionInfo::default();
    // After losing frames, video resumes only at the next keyframe.
    let mut resync = false;
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(RecvError::Lagged(n)) => {
                metrics.hub_lagged_frames.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(stream = %entry.name, missed = n, "packager fell behind; resuming at the next keyframe");
                let out = seg.end_session();
                publish(&entry, &metrics, &seg, out);
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
                };
                entry.set_info(0, codecs.clone());
                resync = false;
                seg.begin_session(video, audio)
            }
            HubMsg::Config { video, audio } => {
                codecs = RenditionInfo {
                    video: video.clone(),
                    audio: audio.clone(),
                };
                entry.set_info(0, codecs.clone());
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
                    out.extend(seg.push(&frame));
                    out
                } else {
                    seg.push(&frame)
                }
            }
            HubMsg::Stop => seg.end_session(),
            HubMsg::End => {
                let out = seg.end_session();
                publish(&entry, &metrics, &seg, out);
                entry.end();
                return;
            }
        };
        publish(&entry, &metrics, &seg, out);
    }
    let out = seg.end_session();
    publish(&entry, &metrics, &seg, out);
    entry.end();
}

fn publish(entry: &StreamEntry, metrics: &Metrics, seg: &Segmenter, out: Vec<Output>) {
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
    entry.apply(0, out, seg.next_part_number());
    let now = unix_ms(SystemTime::now());
    for (msn, part, arrival) in parts {
        let lag_ms = now.saturating_sub(arrival);
        metrics.parts_published.fetch_add(1, Ordering::Relaxed);
        metrics.observe_part_lag(lag_ms);
        tracing::debug!(target: "ferrocast::lag", stream = %entry.name, msn, part, lag_ms);
    }
    metrics
        .segments_published
        .fetch_add(segments as u64, Ordering::Relaxed);
}
