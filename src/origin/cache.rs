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

/// An ended (EXT-X-ENDLIST) playlist no longer changes.
pub const ENDED_PLAYLIST: &str = "public, max-age=60";
