//! Cache-Control per object type, the CDN contract of DESIGN.md.

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

#[cfg(test)]
mod tests {
    use super::*;

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
