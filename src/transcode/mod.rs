//! The GStreamer transcoder (an adapter): one per live stream with transcoded rungs, driven by
//! the live supervisor. The ladder it builds comes from [`crate::config::ladder`].
//!
//! ```text
//! hub ─▶ (bounded) ─▶ control thread ─▶ decode pipeline: appsrc ! h264parse ! avdec_h264 ! appsink
//!                                                                                          │ raw frames
//!            ┌──────────────────────────────────────────────────────────────────────────────┘
//!            ├─▶ rung pipeline: appsrc ! videoscale ! videoconvert ! caps ! ENCODER ! caps ! h264parse ! appsink ─▶ rung packager
//!            └─▶ rung pipeline: …
//! ```
//! Decoding happens once; each rung is its own GStreamer pipeline fed the decoded buffers
//! (shared, not copied), so a rung whose encoder fails or falls behind is torn down and
//! restarted on its own while the decoder, the other rungs and the source rendition carry on.
//! Every queue between stages is bounded and drops (with a log line) rather than grows.
//!
//! - `control`: the control thread: hub messages in, rung outputs out; starts, stops and
//!   restarts the pipelines.
//! - `graph`: the pipelines (decoder, rung encoders, AAC re-encoders), the fan-out of decoded
//!   pictures to the rungs, and encoded samples back to [`RungMsg`]s.
//! - `timestamps`: source 90 kHz ticks ↔ GStreamer time, and encoded pictures back onto the
//!   source's timeline (pure).
//! - `restart`: when a failed rung or decoder starts again, and when it is given up (pure).
//! - `elements`: whether a pipeline file's elements and properties exist in this GStreamer.

use std::sync::{Arc, OnceLock};

use gstreamer as gst;
use tokio::sync::mpsc as tmpsc;

use crate::config::ladder::Rung;
use crate::media::{AudioConfig, Frame, VideoConfig};
use crate::package::emsg::TimedMetadata;

mod control;
mod elements;
mod graph;
mod restart;
mod timestamps;

pub use control::spawn;
pub use elements::check_elements;
pub use restart::{BEHIND_LIMIT, RESTART_BACKOFF};

/// Hub messages the transcoder may hold before it drops (≈ 4 s of 30 fps video + audio).
pub const INPUT_QUEUE: usize = 256;
/// Compressed frames waiting in the decoder's appsrc before input is dropped (≈ 1 s).
pub const DECODE_QUEUE: u64 = 30;
/// Decoded frames waiting for one rung's encoder before that rung drops frames (≈ 0.5 s).
pub const RUNG_QUEUE: u64 = 15;
/// Encoded frames waiting for one rung's packager before they are dropped.
pub const RUNG_OUT_QUEUE: usize = 256;

/// Initialises GStreamer once; the error says what is missing.
pub fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}")))
        .clone()
}

/// What a rung's packager receives.
#[derive(Debug)]
pub enum RungMsg {
    /// A publisher session (re)starts: end what is open, next video config begins anew.
    Session { audio: Option<AudioConfig> },
    /// The rung's encoder produced (new) parameter sets.
    VideoConfig(VideoConfig),
    /// One encoded picture, on the source's timeline (dts/cts/arrival of the source picture).
    Video(Frame),
    /// A source audio frame, passed through.
    Audio(Frame),
    /// Timed metadata (a chat event) for the rung's next part.
    Metadata(Arc<TimedMetadata>),
    /// The rung stopped (failed, restarting, or not used for this source): unlist it.
    Hide,
    /// The publisher left.
    Stop,
    /// The stream is over.
    End,
}

/// A rung as the transcoder runs it: its rendition index and its packager's input.
pub struct RungOutput {
    pub rung: Rung,
    pub tx: tmpsc::Sender<RungMsg>,
}
