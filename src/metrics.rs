//! Process-wide counters and the part-lag histogram, rendered as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Labels of `ferrocast_http_requests_by_kind_total`: what a request asked for. The origin's
/// request classifier (`origin::cache::Kind`) counts in this order.
pub const HTTP_KINDS: [&str; 7] = [
    "multivariant",
    "playlist",
    "playlist_blocking",
    "part",
    "segment",
    "init",
    "other",
];

/// Upper bounds (ms) of the part-lag histogram buckets.
const LAG_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

#[derive(Default)]
pub struct Metrics {
    pub rtmp_connections: AtomicU64,
    pub rtmp_rejected: AtomicU64,
    pub rtmp_errors: AtomicU64,
    pub srt_connections: AtomicU64,
    pub srt_rejected: AtomicU64,
    pub srt_errors: AtomicU64,
    pub ingest_bytes: AtomicU64,
    pub ingest_frames: AtomicU64,
    pub hub_lagged_frames: AtomicU64,
    pub parts_published: AtomicU64,
    pub segments_published: AtomicU64,
    pub http_requests: AtomicU64,
    pub http_bytes: AtomicU64,
    pub http_blocking_timeouts: AtomicU64,
    pub chat_connections: AtomicU64,
    pub chat_messages: AtomicU64,
    pub chat_refused: AtomicU64,
    pub chat_slow_readers: AtomicU64,
    /// Requests by what they asked for, in [`HTTP_KINDS`] order.
    pub http_requests_by_kind: [AtomicU64; HTTP_KINDS.len()],
    /// Transcoded rung pipelines that failed or fell behind real time (each is restarted or dropped).
    pub rung_failures: AtomicU64,
    /// Frames the transcoders dropped because a stage was full (input, decoder, a rung's encoder).
    pub transcode_dropped_frames: AtomicU64,
    /// Requests for streams other nodes own, answered through this node (cluster).
    pub proxy_requests: AtomicU64,
    /// Requests this node sent to other nodes, after collapsing and caching.
    pub proxy_upstream_requests: AtomicU64,
    /// Proxied requests answered from this node's cache.
    pub proxy_cache_hits: AtomicU64,
    /// Proxied requests that joined an identical request already in flight.
    pub proxy_collapsed: AtomicU64,
    /// Requests to other nodes that failed (no answer in time, refused, too many in flight).
    pub proxy_upstream_errors: AtomicU64,
    /// Bytes held by the proxy's cache (a gauge).
    pub proxy_cache_bytes: AtomicU64,
    lag_buckets: [AtomicU64; LAG_BUCKETS_MS.len()],
    lag_count: AtomicU64,
    lag_sum_ms: AtomicU64,
}

impl Metrics {
    /// Records a part's availability minus its last frame's arrival.
    pub fn observe_part_lag(&self, lag_ms: u64) {
        for (i, bound) in LAG_BUCKETS_MS.iter().enumerate() {
            if lag_ms <= *bound {
                self.lag_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lag_count.fetch_add(1, Ordering::Relaxed);
        self.lag_sum_ms.fetch_add(lag_ms, Ordering::Relaxed);
    }

    pub fn render(&self, live_streams: usize) -> String {
        let mut s = String::new();
        let counters: [(&str, &str, &AtomicU64); 25] = [
            (
                "ferrocast_rtmp_connections_total",
                "RTMP connections accepted",
                &self.rtmp_connections,
            ),
            (
                "ferrocast_rtmp_rejected_total",
                "RTMP publish requests refused",
                &self.rtmp_rejected,
            ),
            (
                "ferrocast_rtmp_errors_total",
                "RTMP sessions ended by a protocol or media error",
                &self.rtmp_errors,
            ),
            (
                "ferrocast_srt_connections_total",
                "SRT callers accepted",
                &self.srt_connections,
            ),
            (
                "ferrocast_srt_rejected_total",
                "SRT callers refused (streamid, key, passphrase or name in use)",
                &self.srt_rejected,
            ),
            (
                "ferrocast_srt_errors_total",
                "SRT sessions ended by a protocol or media error",
                &self.srt_errors,
            ),
            (
                "ferrocast_ingest_bytes_total",
                "Bytes received from publishers",
                &self.ingest_bytes,
            ),
            (
                "ferrocast_ingest_frames_total",
                "Access units received from publishers",
                &self.ingest_frames,
            ),
            (
                "ferrocast_hub_lagged_frames_total",
                "Frames a slow consumer missed",
                &self.hub_lagged_frames,
            ),
            (
                "ferrocast_parts_total",
                "LL-HLS parts published",
                &self.parts_published,
            ),
            (
                "ferrocast_segments_total",
                "HLS segments published",
                &self.segments_published,
            ),
            (
                "ferrocast_http_requests_total",
                "HTTP requests served",
                &self.http_requests,
            ),
            (
                "ferrocast_http_body_bytes_total",
                "HTTP body bytes sent",
                &self.http_bytes,
            ),
            (
                "ferrocast_http_blocking_timeouts_total",
                "Blocking requests answered 503",
                &self.http_blocking_timeouts,
            ),
            (
                "ferrocast_rung_failures_total",
                "Transcoded rung pipelines that failed or fell behind real time",
                &self.rung_failures,
            ),
            (
                "ferrocast_transcode_dropped_frames_total",
                "Frames dropped by transcoders because a stage was full",
                &self.transcode_dropped_frames,
            ),
            (
                "ferrocast_chat_connections_total",
                "chat WebSocket connections admitted to a room",
                &self.chat_connections,
            ),
            (
                "ferrocast_chat_messages_total",
                "chat messages stored and broadcast",
                &self.chat_messages,
            ),
            (
                "ferrocast_chat_refused_total",
                "chat actions and connections refused with an error frame",
                &self.chat_refused,
            ),
            (
                "ferrocast_chat_slow_readers_total",
                "chat connections dropped for falling behind their room",
                &self.chat_slow_readers,
            ),
            (
                "ferrocast_proxy_requests_total",
                "Requests for streams other nodes own, answered through this node",
                &self.proxy_requests,
            ),
            (
                "ferrocast_proxy_upstream_requests_total",
                "Requests sent to other nodes (after collapsing and caching)",
                &self.proxy_upstream_requests,
            ),
            (
                "ferrocast_proxy_cache_hits_total",
                "Proxied requests answered from this node's cache",
                &self.proxy_cache_hits,
            ),
            (
                "ferrocast_proxy_collapsed_total",
                "Proxied requests that joined an identical request in flight",
                &self.proxy_collapsed,
            ),
            (
                "ferrocast_proxy_upstream_errors_total",
                "Requests to other nodes that failed (answered 502)",
                &self.proxy_upstream_errors,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let name = "ferrocast_http_requests_by_kind_total";
        let _ = writeln!(
            s,
            "# HELP {name} HTTP requests by what they asked for\n# TYPE {name} counter"
        );
        for (label, v) in HTTP_KINDS.iter().zip(&self.http_requests_by_kind) {
            let _ = writeln!(
                s,
                "{name}{{kind=\"{label}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(s, "# HELP ferrocast_live_streams Streams with a live playlist\n# TYPE ferrocast_live_streams gauge\nferrocast_live_streams {live_streams}");
        let _ = writeln!(
            s,
            "# HELP ferrocast_proxy_cache_bytes Bytes in the cache of other nodes' answers\n# TYPE ferrocast_proxy_cache_bytes gauge\nferrocast_proxy_cache_bytes {}",
            self.proxy_cache_bytes.load(Ordering::Relaxed)
        );
        let name = "ferrocast_part_lag_seconds";
        let _ = writeln!(s, "# HELP {name} Part availability minus arrival of its last frame\n# TYPE {name} histogram");
        for (i, bound) in LAG_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                s,
                "{name}_bucket{{le=\"{}\"}} {}",
                *bound as f64 / 1000.0,
                self.lag_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.lag_count.load(Ordering::Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "{name}_sum {}",
            self.lag_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(s, "{name}_count {count}");
        s
    }
}
