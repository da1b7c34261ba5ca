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
                codecs = RenditionInfo { video: video.clone(), audio: audio.clone() };
                entry.set_info(0, codecs.clone());
                resync = false;
                seg.begin_session(video, audio)
            }
            HubMsg::Config { video, audio } => {
                codecs = RenditionInfo { video: video.clone(), audio: audio.clone() };
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
    let now = unix_ms(SystemTime::now());
    for o in &out {
        match o {
            Output::Part(p) => {
                metrics.parts_published.fetch_add(1, Ordering::Relaxed);
                metrics.observe_part_lag(now.saturating_sub(p.last_arrival_ms));
            }
            Output::SegmentEnd { .. } => {
                metrics.segments_published.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    entry.apply(0, out, seg.next_part_number());
}
