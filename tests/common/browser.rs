//! What the Chromium tests share: where things are, and one clear failure when a
//! prerequisite is missing (never a skip).

use std::path::PathBuf;

use super::runs;

/// The crate root (the server serves `web/` relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Debian's Chromium, or `$CHROMIUM`.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails with one clear message naming everything that is missing.
pub fn check_prerequisites() {
    let r = root();
    let mut missing = Vec::new();
    if !runs("node", "--version") {
        missing.push("`node` on PATH".to_string());
    }
    if !chromium().exists() {
        missing.push(format!(
            "{} (Debian package chromium)",
            chromium().display()
        ));
    }
    if !r.join("node_modules/playwright-core/package.json").exists() {
        missing.push("node_modules/playwright-core".to_string());
    }
    if !r.join("web/vendor/hls.min.js").exists() {
        missing.push("web/vendor/hls.min.js (copied from node_modules/hls.js)".to_string());
    }
    if !runs("ffmpeg", "-version") {
        missing.push("`ffmpeg` on PATH".to_string());
    }
    assert!(
        missing.is_empty(),
        "browser test prerequisites missing: {}.\nRun `scripts/setup.sh test` from the repository root \
         (installs chromium, node, ffmpeg and the npm packages, and copies hls.js to web/vendor/).",
        missing.join(", ")
    );
}
