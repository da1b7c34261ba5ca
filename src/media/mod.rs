//! Codec-neutral media model shared by every ingest and every packager.
//!
//! Ingest (RTMP, SRT) turns its wire format into [`Frame`]s plus one
//! [`VideoConfig`]/[`AudioConfig`] per publish session; nothing downstream knows
//! which protocol a frame came from.
//!
//! The codec modules are the bottom layer (they use nothing else of the
//! crate): [`h264`] (avcC, SPS, AVCC access units), [`annexb`] (start-code
//! framed H.264 → AVCC), [`aac`] (AudioSpecificConfig), [`adts`] (self-framed
//! AAC), all reading bits through the one [`bits`] cursor.

pub mod aac;
pub mod adts;
pub mod annexb;
pub mod bits;
pub mod h264;

use bytes::Bytes;

/// Media timestamps are 90 kHz ticks, the MPEG-TS clock; RTMP milliseconds map ×90.
pub const TIMESCALE: u32 = 90_000;

/// Which elementary stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Video,
    Audio,
}

/// One access unit: a whole H.264 picture or one raw AAC frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: Track,
    /// Decode timestamp in [`TIMESCALE`] ticks.
    pub dts: i64,
    /// Composition offset (pts − dts) in [`TIMESCALE`] ticks; 0 for audio.
    pub cts: i32,
    /// Video: an IDR picture (random access point). Audio: always true.
    pub keyframe: bool,
    /// Video: AVCC NAL units, each prefixed by a 4-byte big-endian length.
    /// Audio: one raw AAC frame (no ADTS header).
    pub data: Bytes,
    /// Wall clock when the frame reached ingest, UNIX milliseconds (the PDT basis).
    pub arrival_ms: u64,
}

/// H.264 decoder configuration, as found in the FLV AVC sequence header.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    /// The AVCDecoderConfigurationRecord (body of an `avcC` box), NAL length size 4.
    pub avcc: Bytes,
    pub width: u32,
    pub height: u32,
    pub profile_idc: u8,
    /// The constraint_set flags byte of the SPS.
    pub constraints: u8,
    pub level_idc: u8,
    /// Frames per second from the SPS VUI timing info, when present.
    pub fps: Option<f64>,
}

/// AAC decoder configuration, from the FLV AAC sequence header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// The AudioSpecificConfig bytes (body of the esds DecoderSpecificInfo).
    pub asc: Bytes,
    /// MPEG-4 audio object type (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS).
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// PCM samples per AAC frame (1024 for AAC-LC).
    pub samples_per_frame: u32,
}

impl VideoConfig {
    /// RFC 6381 codec string, e.g. `avc1.640028`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02X}{:02X}{:02X}",
            self.profile_idc, self.constraints, self.level_idc
        )
    }
}

impl AudioConfig {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}
