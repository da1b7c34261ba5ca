//! Decoding with ffprobe / ffmpeg: what a player's decoder makes of the media the tests fetch.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::require_tool;

/// What ffprobe counted in a file.
#[derive(Debug, Default)]
pub struct Probe {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub width: u32,
    pub height: u32,
    pub video_codec: String,
    pub audio_codec: String,
    pub sample_rate: u32,
    pub channels: u32,
}

/// `ffprobe -count_frames` on `path`.
pub fn probe(path: &Path) -> Probe {
    let out = Command::new(require_tool("ffprobe"))
        .args([
            "-v",
            "error",
            "-count_frames",
            "-of",
            "json",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let mut p = Probe::default();
    for s in v["streams"].as_array().cloned().unwrap_or_default() {
        let frames = s["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match s["codec_type"].as_str() {
            Some("video") => {
                p.video_frames = frames;
                p.width = s["width"].as_u64().unwrap_or(0) as u32;
                p.height = s["height"].as_u64().unwrap_or(0) as u32;
                p.video_codec = s["codec_name"].as_str().unwrap_or("").into();
            }
            Some("audio") => {
                p.audio_frames = frames;
                p.audio_codec = s["codec_name"].as_str().unwrap_or("").into();
                p.sample_rate = s["sample_rate"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                p.channels = s["channels"].as_u64().unwrap_or(0) as u32;
            }
            _ => {}
        }
    }
    p
}

/// (key_frame, pict_type) of the first decoded video frame.
pub fn first_video_frame(path: &Path) -> (bool, String) {
    let out = Command::new(require_tool("ffprobe"))
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_frames",
            "-read_intervals",
            "%+#1",
        ])
        .args(["-show_entries", "frame=key_frame,pict_type", "-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let f = &v["frames"][0];
    assert!(
        f.is_object(),
        "no video frame decoded from {}",
        path.display()
    );
    (
        f["key_frame"].as_i64() == Some(1),
        f["pict_type"].as_str().unwrap_or("").to_string(),
    )
}

/// Whatever `ffmpeg -v error -i FILE -f null -` prints: empty for a clean decode.
pub fn decode_errors(path: &Path) -> String {
    let out = Command::new(require_tool("ffmpeg"))
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        s.push_str(&format!("\n(ffmpeg exited with {})", out.status));
    }
    s
}

/// Writes `parts` concatenated to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, parts: &[&[u8]]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for p in parts {
        f.write_all(p).unwrap();
    }
    path
}
