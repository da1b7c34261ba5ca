//! `/api/v1/streams`: what is live, in JSON; `/api/v1/streams/NAME/chat`: stored chat by time.

use serde_json::json;

use super::http::{json, App, Resp};
use crate::util::percent;

/// The stream list: this node's streams, and in a cluster (`cluster_wide`) also those other
/// nodes own, every entry then with the `node` that owns it.
pub async fn streams(app: &App, cluster_wide: bool) -> Resp {
    let mut list = local_streams(app);
    if let Some(proxy) = &app.proxy {
        // A stream that moved to another node is listed from there, not as this node's leftover.
        list.retain(|e| {
            e["name"]
                .as_str()
                .is_none_or(|n| proxy.owner_elsewhere(n).is_none())
        });
        for e in &mut list {
            e["node"] = serde_json::Value::from(proxy.node());
        }
        if cluster_wide {
            list.extend(proxy.remote_streams().await);
            list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        }
    }
    json(serde_json::Value::Array(list).to_string())
}

fn local_streams(app: &App) -> Vec<serde_json::Value> {
    app.store
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
                "publishing": app.hub.is_publishing(&e.name),
                "ended": e.is_ended(),
                "started_at_ms": e.started_unix_ms,
                "uptime_s": e.started.elapsed().as_secs_f64(),
                "bitrate": bitrate,
                "playlist": format!("/live/{}/index.m3u8", e.name),
                "watch": format!("/watch/{}", e.name),
                "renditions": renditions,
                "chat_connections": app.chat.room(&e.name).map(|r| r.connections()),
            })
        })
        .collect()
}

/// `GET /api/v1/streams/NAME/chat?from=&to=&limit=`: stored, undeleted chat of a stream
/// whose `pdt` (timeline position, UNIX ms) is in `[from, to)`, in timeline order, for
/// replaying a recording with its chat. Both bounds are optional.
pub async fn chat_range(app: &App, name: &str, query: Option<&str>) -> Resp {
    use crate::chat::store::MAX_RANGE_ROWS;
    let err = |code: hyper::StatusCode, msg: String| {
        let mut r = json(json!({ "error": msg }).to_string());
        *r.status_mut() = code;
        r
    };
    let Some(rooms) = Some(&app.chat).filter(|_| app.config.stream(name).is_some()) else {
        return err(hyper::StatusCode::NOT_FOUND, "unknown stream".into());
    };
    let (mut from, mut to, mut limit) = (0u64, u64::MAX, MAX_RANGE_ROWS);
    for (k, v) in percent::query_pairs(query) {
        let slot = match &*k {
            "from" => &mut from,
            "to" => &mut to,
            "limit" => {
                match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_RANGE_ROWS).contains(&n) => limit = n,
                    _ => {
                        return err(
                            hyper::StatusCode::BAD_REQUEST,
                            format!("`limit` must be 1 to {MAX_RANGE_ROWS}"),
                        )
                    }
                }
                continue;
            }
            _ => continue,
        };
        match v.parse::<u64>() {
            Ok(n) => *slot = n,
            Err(_) => {
                return err(
                    hyper::StatusCode::BAD_REQUEST,
                    format!("`{k}` must be a time in UNIX milliseconds, found `{v}`"),
                )
            }
        }
    }
    if from > to {
        return err(
            hyper::StatusCode::BAD_REQUEST,
            "`from` is after `to`".into(),
        );
    }
    let store = rooms.store().clone();
    let stream = name.to_string();
    let rows = tokio::task::spawn_blocking(move || store.range(&stream, from, to, limit + 1)).await;
    match rows {
        Ok(Ok(mut messages)) => {
            let truncated = messages.len() > limit;
            messages.truncate(limit);
            json(
                json!({
                    "stream": name,
                    "from": from,
                    "to": to,
                    "truncated": truncated,
                    "messages": messages,
                })
                .to_string(),
            )
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "chat range not read");
            err(
                hyper::StatusCode::INTERNAL_SERVER_ERROR,
                "chat store unavailable".into(),
            )
        }
        Err(_) => err(
            hyper::StatusCode::INTERNAL_SERVER_ERROR,
            "chat store unavailable".into(),
        ),
    }
}
