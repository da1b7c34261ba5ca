//! Cache-Control per object type: the CDN contract (docs/http.md, docs/cdn.md).

use std::time::{SystemTime, UNIX_EPOCH};

/// Parts, segments and init: their URIs are never reused (they carry the playlist epoch).
pub const IMMUTABLE: &str = "public, max-age=86400, immutable";
/// Plain live media playlist: always revalidate.
pub const LIVE_PLAYLIST: &str = "no-cache";
/// Multivariant playlist: changes only when renditions come and go.
pub const MULTIVARIANT: &str = "public, max-age=2";
/// Errors and held-request timeouts must not stick at an edge.
pub const NO_STORE: &str = "no-store";

/// A blocking-reload answer (`_HLS_msn` present) never changes once given, but the
/// same URL means a different playlist after a restart, so keep it short: a few
/// segment durations, long enough for an edge to collapse all viewers onto one fetch.
pub fn blocking_playlist(target_duration: u64) -> String {
    format!("public, max-age={}", (target_duration * 3).max(1))
}

/// An ended (EXT-X-ENDLIST) playlist: its URL is reused when the name goes live again,
/// so an edge must revalidate it like a live one.
pub const ENDED_PLAYLIST: &str = "no-cache";

/// Whether an `If-None-Match` header value (`*` or a comma-separated list of entity tags)
/// matches `etag`. The comparison is weak (RFC 9110 13.1.2): a `W/` prefix on either side is
/// ignored, so an edge revalidating with a weakened or listed tag still gets 304.
pub fn if_none_match(header: &[u8], etag: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    fn opaque(t: &str) -> &str {
        t.trim().trim_start_matches("W/")
    }
    let etag = opaque(etag);
    header.trim() == "*" || header.split(',').any(|t| opaque(t) == etag)
}

/// `Last-Modified` value for an object stored at `t` (HTTP-date, whole seconds).
pub fn last_modified(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Whether an `If-Modified-Since` header lets an immutable object stored at `created`
/// answer 304: the date must parse and not be earlier than the object's (second-truncated)
/// time. Only used for immutable objects; playlists change several times a second, which
/// a one-second date cannot express, so they never take this path.
pub fn not_modified_since(header: &[u8], created: SystemTime) -> bool {
    let Some(since) = std::str::from_utf8(header)
        .ok()
        .and_then(|h| httpdate::parse_http_date(h.trim()).ok())
    else {
        return false;
    };
    let created_s = created
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    since
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.as_secs() >= created_s)
}

/// What a request asked for, for the per-kind request counters (an edge in front should
/// make the origin see about one request per object, whatever the viewer count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Multivariant,
    /// Media playlist without `_HLS_msn` (no-cache: every edge revalidates).
    Playlist,
    /// Blocking reload (`_HLS_msn` present).
    PlaylistBlocking,
    Part,
    Segment,
    Init,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Multivariant,
        Kind::Playlist,
        Kind::PlaylistBlocking,
        Kind::Part,
        Kind::Segment,
        Kind::Init,
        Kind::Other,
    ];

    /// The metrics label (`crate::metrics::HTTP_KINDS`, same order as [`Kind::ALL`]).
    pub fn label(self) -> &'static str {
        crate::metrics::HTTP_KINDS[self as usize]
    }

    /// Classifies a request by path and query, without looking anything up.
    pub fn of(path: &str, query: Option<&str>) -> Kind {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segs.as_slice() {
            ["live", _, "index.m3u8"] => Kind::Multivariant,
            ["live", _, _, "index.m3u8"] => {
                let blocking =
                    crate::util::percent::query_pairs(query).any(|(k, _)| k == "_HLS_msn");
                if blocking {
                    Kind::PlaylistBlocking
                } else {
                    Kind::Playlist
                }
            }
            ["live", _, _, f] if f.starts_with("part-") => Kind::Part,
            ["live", _, _, f] if f.starts_with("seg-") => Kind::Segment,
            ["live", _, _, f] if f.starts_with("init-") => Kind::Init,
            _ => Kind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn last_modified_round_trips_and_answers_304_only_when_not_older() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_000_000_750);
        let lm = last_modified(t);
        assert_eq!(lm, "Mon, 24 Nov 2025 16:00:00 GMT");
        assert!(not_modified_since(lm.as_bytes(), t), "same second");
        assert!(not_modified_since(b"Mon, 24 Nov 2025 16:00:05 GMT", t));
        assert!(!not_modified_since(b"Mon, 24 Nov 2025 15:59:59 GMT", t));
        assert!(!not_modified_since(b"yesterday", t));
        assert!(!not_modified_since(b"", t));
    }

    #[test]
    fn cache_control_values_keep_the_cdn_contract() {
        // Immutable objects: cacheable by shared caches for at least a day.
        assert!(IMMUTABLE.starts_with("public, "));
        let age: u64 = IMMUTABLE
            .split(", ")
            .find_map(|d| d.strip_prefix("max-age=")?.parse().ok())
            .unwrap();
        assert!(age >= 86_400);
        // Blocking reloads: three target durations (the longest the origin holds a request).
        assert_eq!(blocking_playlist(2), "public, max-age=6");
        assert_eq!(blocking_playlist(0), "public, max-age=1");
        // Live and ended playlists always revalidate; errors are never stored.
        assert_eq!(LIVE_PLAYLIST, "no-cache");
        assert_eq!(ENDED_PLAYLIST, "no-cache");
        assert_eq!(NO_STORE, "no-store");
    }

    #[test]
    fn kinds_follow_the_url_layout() {
        assert_eq!(Kind::of("/live/a/index.m3u8", None), Kind::Multivariant);
        assert_eq!(Kind::of("/live/a/source/index.m3u8", None), Kind::Playlist);
        assert_eq!(
            Kind::of("/live/a/source/index.m3u8", Some("_HLS_skip=YES")),
            Kind::Playlist
        );
        assert_eq!(
            Kind::of("/live/a/source/index.m3u8", Some("_HLS_msn=3&_HLS_part=1")),
            Kind::PlaylistBlocking
        );
        assert_eq!(
            Kind::of("/live/a/source/index.m3u8", Some("x=1&_HLS_msn=3")),
            Kind::PlaylistBlocking
        );
        assert_eq!(Kind::of("/live/a/source/part-k1-7.m4s", None), Kind::Part);
        assert_eq!(Kind::of("/live/a/source/seg-k1-7.m4s", None), Kind::Segment);
        assert_eq!(Kind::of("/live/a/source/init-k1-1.mp4", None), Kind::Init);
        assert_eq!(Kind::of("/metrics", None), Kind::Other);
        assert_eq!(Kind::of("/live/a/chat", None), Kind::Other);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = "\"seg-a-1.m4s\"";
        assert!(if_none_match(b"\"seg-a-1.m4s\"", tag));
        assert!(if_none_match(b"*", tag));
        assert!(if_none_match(b"W/\"seg-a-1.m4s\"", tag));
        assert!(if_none_match(b"\"x\", \"seg-a-1.m4s\"", tag));
        assert!(!if_none_match(b"\"seg-a-2.m4s\"", tag));
        assert!(
            !if_none_match(b"seg-a-1.m4s", tag),
            "an unquoted tag is not the same tag"
        );
        assert!(!if_none_match(b"", tag));
    }
}
