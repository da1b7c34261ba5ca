//! `/api/v1/streams`: what is live, in JSON.

use serde_json::json;

use crate::hub::Hub;
use crate::origin::http::{json, Resp};

pub fn streams(hub: &Hub) -> Resp {
    let list: Vec<_> = hub
        .store
        .list()
        .into_iter()
        .map(|e| {
            let renditions: Vec<_> = e
                .renditions
                .iter()
                .map(|r| {
                    let info = r.info();
                    let (peak, avg) = r.bandwidth();
                    json!({
                        "name": r.name,
                        "playlist": format!("/live/{}/{}/index.m3u8", e.name, r.name),
                        "codecs": info.codecs(),
                        "width": info.video.as_ref().map(|v| v.width),
                        "height": info.video.as_ref().map(|v| v.height),
                        "fps": info.video.as_ref().and_then(|v| v.fps),
                        "audio_sample_rate": info.audio.as_ref().map(|a| a.sample_rate),
                        "audio_channels": info.audio.as_ref().map(|a| a.channels),
                        "bandwidth": peak,
                        "average_bandwidth": avg,
                        "last_msn": r.last_position().map(|(m, _)| m),
                    })
                })
                .collect();
            let bitrate: u64 = e.renditions.first().map(|r| r.bandwidth().1).unwrap_or(0);
            json!({
                "name": e.name,
                "publishing": hub.is_publishing(&e.name),
                "ended": e.is_ended(),
                "started_at_ms": e.started_unix_ms,
                "uptime_s": e.started.elapsed().as_secs_f64(),
                "bitrate": bitrate,
                "playlist": format!("/live/{}/index.m3u8", e.name),
                "watch": format!("/watch/{}", e.name),
                "renditions": renditions,
            })
        })
        .collect();
    json(serde_json::Value::Array(list).to_string())
}
