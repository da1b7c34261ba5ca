//! Sans-IO MPEG-TS demuxer: what OBS/ffmpeg send over SRT, turned into the same
//! [`Frame`]s and configs the RTMP path produces, so nothing downstream can
//! tell the two ingests apart.
//!
//! Bytes (in any chunking) and their arrival time go in; [`TsEvent`]s come out.
//! Only the first program is read, and in it the first H.264 (stream type
//! 0x1B) and the first AAC ADTS (0x0F) elementary stream.
//!
//! One layer per file: `packets` finds sync and reads packet headers, `psi`
//! reads the PAT and PMT, `pes` reassembles PES packets and unwraps their
//! timestamps, `streams` turns H.264 and AAC payloads into frames and
//! configs (with the codec work in [`crate::media::annexb`] and
//! [`crate::media::adts`]); this file gates the start and emits the events.
//!
//! Damage is contained: a continuity gap drops the PES being assembled (never
//! a corrupted frame), lost video resumes at the next keyframe (the pictures
//! between might reference the lost one), lost sync is recovered on the 0x47
//! byte, and only input that cannot be a usable stream at all (not TS, no
//! PMT, no supported codec, absurd PES sizes) is a fatal [`TsError`].
//!
//! Start gating: when the PMT lists both video and audio, the first
//! [`TsEvent::Config`] and the frames are held until both configs are known,
//! so the session starts with both codecs. The hold is bounded by
//! [`START_HOLD_TICKS`] of media time, [`MAX_HELD_FRAMES`] and
//! [`MAX_HELD_BYTES`]: past any of them the session starts with what is known
//! (with a [`TsWarning::StartedWithout`]) and a late codec arrives as a
//! config change.
//!
//! Latency (why video is a frame late and audio comes in bursts) is explained
//! in `pes.rs`, where PES packets complete.

mod packets;
mod pes;
mod psi;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

use crate::media::h264::H264Error;
use crate::media::{AudioConfig, Frame, Track, VideoConfig};

use pes::Pes;
use psi::SectionBuf;

/// Start gating bounds (see the module docs): 2 s at 90 kHz.
pub const START_HOLD_TICKS: i64 = 2 * 90_000;
pub const MAX_HELD_FRAMES: usize = 600;
pub const MAX_HELD_BYTES: usize = 16 << 20;

/// What the demuxer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TsEvent {
    /// Codec configuration: once at start, then whenever either codec changes.
    Config {
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    },
    Frame(Frame),
    /// A survivable problem worth one log line.
    Warning(TsWarning),
}

/// Survivable problems; the stream continues.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsWarning {
    #[error("lost MPEG-TS sync; skipped {skipped} bytes to find it again")]
    Resync { skipped: usize },
    #[error("continuity gap on PID {pid:#x} (expected counter {expected}, got {got}); dropped the PES in progress")]
    ContinuityGap { pid: u16, expected: u8, got: u8 },
    #[error("transport error indicator set on PID {pid:#x}; dropped the PES in progress")]
    TransportError { pid: u16 },
    #[error("ignoring unsupported stream type {stream_type:#04x} ({name}) on PID {pid:#x}")]
    UnsupportedStream {
        pid: u16,
        stream_type: u8,
        name: &'static str,
    },
    #[error("ignoring a {table} section with a bad CRC")]
    BadCrc { table: &'static str },
    #[error("ignoring a malformed {table} section")]
    BadSection { table: &'static str },
    #[error("PES on PID {pid:#x} cut short ({have} of {declared} bytes); dropped")]
    PesTruncated {
        pid: u16,
        have: usize,
        declared: usize,
    },
    #[error("malformed PES header on PID {pid:#x}; dropped")]
    BadPesHeader { pid: u16 },
    #[error("PES without a timestamp on PID {pid:#x}; dropped")]
    NoTimestamp { pid: u16 },
    #[error("dropping {track:?} frames until the codec configuration arrives")]
    FramesBeforeConfig { track: Track },
    #[error("bad H.264 parameter sets: {0}")]
    BadParameterSets(H264Error),
    #[error("H.264 PES without an Annex B start code; dropped")]
    NoStartCode,
    #[error("lost ADTS sync; skipped {skipped} bytes of audio")]
    AdtsResync { skipped: usize },
    #[error("unsupported ADTS frame ({0}); dropped")]
    UnsupportedAdts(&'static str),
    #[error("started without {track:?}: its configuration did not arrive in time")]
    StartedWithout { track: Track },
    #[error("skipped {frames} video frames after lost data, up to the next keyframe")]
    SkippedToKeyframe { frames: u64 },
}

/// Fatal for the session: the input cannot become a usable stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    #[error("not MPEG-TS: no 0x47 sync pattern in {skipped} bytes")]
    NotTs { skipped: usize },
    #[error("broken or missing PMT: no usable {missing} in the first {packets} packets")]
    NoPmt { missing: &'static str, packets: u64 },
    #[error(
        "no supported stream in the program (found: {found}); publish H.264 video and/or AAC audio"
    )]
    NoSupportedStreams { found: String },
    #[error("PES on PID {pid:#x} exceeds {limit} bytes")]
    PesTooLarge { pid: u16, limit: usize },
}

/// Sans-IO MPEG-TS demuxer; see the module docs.
pub struct TsDemuxer {
    /// Unconsumed input: at most a packet plus a sync-confirmation byte.
    buf: Vec<u8>,
    locked: bool,
    /// Bytes skipped since the last good packet.
    garbage: usize,
    packets: u64,
    failed: Option<TsError>,
    pat: SectionBuf,
    pmt: SectionBuf,
    pmt_pid: Option<u16>,
    /// Raw bytes of the PMT section in force, to skip identical repeats.
    pmt_section: Vec<u8>,
    warned_streams: Vec<(u16, u8)>,
    warned_crc: bool,
    video: Option<Pes>,
    audio: Option<Pes>,
    /// Last extended DTS of either stream: the shared unwrapping reference.
    ts_ref: Option<i64>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    video_config: Option<VideoConfig>,
    audio_config: Option<AudioConfig>,
    /// ADTS header fields (profile, sampling index, channel config) of `audio_config`.
    adts_fields: Option<(u8, u8, u8)>,
    /// Bytes of an ADTS frame continued in the next PES, and its DTS.
    adts_leftover: Vec<u8>,
    adts_leftover_dts: Option<i64>,
    /// Video data was lost: pictures until the next IDR would decode with errors (they may
    /// reference the lost one), so they are skipped.
    video_needs_key: bool,
    skipped_for_key: u64,
    audio_next_dts: Option<i64>,
    warned_before_config: [bool; 2],
    warned_adts: Vec<&'static str>,
    started: bool,
    held: VecDeque<Frame>,
    held_bytes: usize,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    pub fn new() -> Self {
        TsDemuxer {
            buf: Vec::new(),
            locked: false,
            garbage: 0,
            packets: 0,
            failed: None,
            pat: SectionBuf::default(),
            pmt: SectionBuf::default(),
            pmt_pid: None,
            pmt_section: Vec::new(),
            warned_streams: Vec::new(),
            warned_crc: false,
            video: None,
            audio: None,
            ts_ref: None,
            sps: None,
            pps: None,
            video_config: None,
            audio_config: None,
            adts_fields: None,
            adts_leftover: Vec::new(),
            adts_leftover_dts: None,
            video_needs_key: false,
            skipped_for_key: 0,
            audio_next_dts: None,
            warned_before_config: [false; 2],
            warned_adts: Vec::new(),
            started: false,
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }

    /// Feeds bytes in any chunking (SRT delivers 1316-byte payloads = 7 packets).
    /// `arrival_ms`: wall clock (UNIX ms) of these bytes, copied into every
    /// frame completed by them. After an error every call returns it again.
    pub fn push(
        &mut self,
        data: &[u8],
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) -> Result<(), TsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        let result = self.process(arrival_ms, out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf.clear();
        }
        result
    }

    /// End of input: emits what is complete (an unbounded last PES, frames
    /// still held by start gating).
    pub fn finish(&mut self, arrival_ms: u64, out: &mut Vec<TsEvent>) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.finish_input(arrival_ms, out) {
            self.failed = Some(e);
            return;
        }
        self.finish_pes(arrival_ms, out);
        self.adts_leftover.clear();
        self.try_start(true, out);
    }

    fn config_changed(&mut self, out: &mut Vec<TsEvent>) {
        if self.started {
            out.push(TsEvent::Config {
                video: self.video_config.clone(),
                audio: self.audio_config.clone(),
            });
        }
    }

    fn emit(&mut self, frame: Frame, out: &mut Vec<TsEvent>) {
        if self.started {
            out.push(TsEvent::Frame(frame));
            return;
        }
        self.held_bytes += frame.data.len();
        self.held.push_back(frame);
        self.try_start(false, out);
    }

    /// Starts the session when every stream the PMT lists has a config, or
    /// (bounded hold, or `force` at end of input) with whatever is known.
    fn try_start(&mut self, force: bool, out: &mut Vec<TsEvent>) {
        if self.started || (self.video_config.is_none() && self.audio_config.is_none()) {
            return;
        }
        let missing_video = self.video.is_some() && self.video_config.is_none();
        let missing_audio = self.audio.is_some() && self.audio_config.is_none();
        if missing_video || missing_audio {
            let (lo, hi) = self.held.iter().fold((i64::MAX, i64::MIN), |(lo, hi), f| {
                (lo.min(f.dts), hi.max(f.dts))
            });
            let over = (!self.held.is_empty() && hi.saturating_sub(lo) >= START_HOLD_TICKS)
                || self.held.len() >= MAX_HELD_FRAMES
                || self.held_bytes >= MAX_HELD_BYTES;
            if !over && !force {
                return;
            }
            for (missing, track) in [(missing_video, Track::Video), (missing_audio, Track::Audio)] {
                if missing {
                    out.push(TsEvent::Warning(TsWarning::StartedWithout { track }));
                }
            }
        }
        self.started = true;
        out.push(TsEvent::Config {
            video: self.video_config.clone(),
            audio: self.audio_config.clone(),
        });
        self.held_bytes = 0;
        out.extend(self.held.drain(..).map(TsEvent::Frame));
    }
}

impl fmt::Display for TsEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TsEvent::Config { video, audio } => write!(
                f,
                "config video={} audio={}",
                video.as_ref().map_or("-".into(), |v| v.codec_string()),
                audio.as_ref().map_or("-".into(), |a| a.codec_string())
            ),
            TsEvent::Frame(fr) => write!(
                f,
                "{:?} dts={} cts={} key={} {}B",
                fr.track,
                fr.dts,
                fr.cts,
                fr.keyframe,
                fr.data.len()
            ),
            TsEvent::Warning(w) => write!(f, "warning: {w}"),
        }
    }
}
