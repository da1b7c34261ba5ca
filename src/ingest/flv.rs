//! FLV video/audio tag bodies, as rml_rtmp hands them over in RTMP data messages.
//!
//! Covers legacy FLV (codec id 7 AVC, sound format 10 AAC) and the Enhanced
//! RTMP FourCC headers for `avc1`/`mp4a`. Every other codec is named in an
//! error so the operator can tell the publisher what to change. Payloads are
//! zero-copy slices of the tag body.

use std::fmt;

use bytes::Bytes;

use crate::media::aac::{self, AacError};
use crate::media::h264::{self, H264Error};
use crate::media::{AudioConfig, VideoConfig};

/// FLV video CodecID of H.264/AVC.
const CODEC_AVC: u8 = 7;
/// FLV SoundFormat of AAC.
const SOUND_AAC: u8 = 10;
/// Enhanced RTMP audio: SoundFormat 9 means a FourCC header follows.
const SOUND_EX_HEADER: u8 = 9;
/// Enhanced RTMP video: top bit of the first byte means a FourCC header follows.
const VIDEO_EX_HEADER: u8 = 0x80;
/// FLV FrameType values.
const FRAME_KEY: u8 = 1;
const FRAME_GENERATED_KEY: u8 = 4;
const FRAME_COMMAND: u8 = 5;

/// A parsed FLV video tag body.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    /// AVC sequence header: the avcC record and what its SPS says.
    SequenceHeader(VideoConfig),
    /// One access unit of 4-byte length-prefixed NAL units.
    Frame {
        /// Random access point: FLV key frame flag OR an IDR NAL unit inside.
        keyframe: bool,
        /// Composition time offset (pts − dts) in milliseconds.
        cts_ms: i32,
        data: Bytes,
    },
    /// AVC end of sequence: the publisher is about to stop or reconfigure.
    EndOfSequence,
}

/// A parsed FLV audio tag body.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioTag {
    /// AAC sequence header: the AudioSpecificConfig.
    SequenceHeader(AudioConfig),
    /// One raw AAC frame (no ADTS header).
    Frame(Bytes),
}

/// An Enhanced RTMP codec FourCC, printed as text when it is printable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FourCc(pub [u8; 4]);

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            self.0.iter().try_for_each(|&b| write!(f, "{}", b as char))
        } else {
            write!(f, "0x{:08x}", u32::from_be_bytes(self.0))
        }
    }
}

/// Why a tag body was rejected. Codec errors mean the publisher must change
/// its settings; the others are per-tag and can be logged and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("video tag truncated: need {need} bytes, got {got}")]
    VideoTruncated { need: usize, got: usize },
    #[error("audio tag truncated: need {need} bytes, got {got}")]
    AudioTruncated { need: usize, got: usize },
    #[error("unsupported video codec: {0}; publish H.264 (AVC)")]
    UnsupportedVideoCodec(&'static str),
    #[error("unknown video codec id {0}; publish H.264 (AVC)")]
    UnknownVideoCodec(u8),
    #[error("unknown Enhanced RTMP video codec '{0}'; publish H.264 (AVC)")]
    UnknownVideoFourCc(FourCc),
    #[error("invalid FLV video frame type {0}")]
    InvalidVideoFrameType(u8),
    #[error("video info/command frame carries no picture")]
    VideoCommandFrame,
    #[error("unsupported video packet type {0}")]
    UnsupportedVideoPacketType(u8),
    #[error("bad AVC sequence header: {0}")]
    AvcSequenceHeader(#[source] H264Error),
    #[error("bad AVC frame: {0}")]
    AvcFrame(#[source] H264Error),
    #[error("AVC frame carries no NAL units")]
    EmptyVideoFrame,
    #[error("unsupported audio codec: {0}; publish AAC")]
    UnsupportedAudioCodec(&'static str),
    #[error("unknown audio sound format {0}; publish AAC")]
    UnknownAudioCodec(u8),
    #[error("unknown Enhanced RTMP audio codec '{0}'; publish AAC")]
    UnknownAudioFourCc(FourCc),
    #[error("unsupported audio packet type {0}")]
    UnsupportedAudioPacketType(u8),
    #[error("bad AAC sequence header: {0}")]
    AacSequenceHeader(#[source] AacError),
    #[error("AAC frame is empty")]
    EmptyAudioFrame,
}

/// What an AVC packet carries, whichever header (legacy or Enhanced) framed it.
enum AvcPacket {
    SequenceHeader,
    Nalus,
    EndOfSequence,
}

/// Parses a video tag body (everything after the 11-byte FLV tag header).
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(video_truncated(body, 1))?;
    if first & VIDEO_EX_HEADER != 0 {
        return parse_enhanced_video(body, first);
    }
    let codec_id = first & 0x0f;
    if codec_id != CODEC_AVC {
        return Err(legacy_video_codec_error(codec_id));
    }
    let frame_type = first >> 4;
    check_frame_type(frame_type)?;
    let [_, packet_type, c0, c1, c2] = prefix(body).ok_or(video_truncated(body, 5))?;
    let packet = match packet_type {
        0 => AvcPacket::SequenceHeader,
        1 => AvcPacket::Nalus,
        2 => AvcPacket::EndOfSequence,
        other => return Err(FlvError::UnsupportedVideoPacketType(other)),
    };
    let cts_ms = i24(c0, c1, c2);
    avc_packet(packet, frame_type, cts_ms, body.slice(5..))
}

/// Enhanced RTMP: `[1|frame type:3|packet type:4] [FourCC] ...`.
fn parse_enhanced_video(body: &Bytes, first: u8) -> Result<VideoTag, FlvError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0f;
    // Multitrack (6) and ModEx (7) put more fields before the FourCC.
    if packet_type >= 6 {
        return Err(FlvError::UnsupportedVideoPacketType(packet_type));
    }
    let [_, a, b, c, d] = prefix(body).ok_or(video_truncated(body, 5))?;
    let fourcc = FourCc([a, b, c, d]);
    if &fourcc.0 != b"avc1" {
        return Err(enhanced_video_codec_error(fourcc));
    }
    check_frame_type(frame_type)?;
    match packet_type {
        0 => avc_packet(AvcPacket::SequenceHeader, frame_type, 0, body.slice(5..)),
        1 => {
            let [.., c0, c1, c2] = prefix::<8>(body).ok_or(video_truncated(body, 8))?;
            let cts_ms = i24(c0, c1, c2);
            avc_packet(AvcPacket::Nalus, frame_type, cts_ms, body.slice(8..))
        }
        2 => avc_packet(AvcPacket::EndOfSequence, frame_type, 0, body.slice(5..)),
        // CodedFramesX: composition time implied zero.
        3 => avc_packet(AvcPacket::Nalus, frame_type, 0, body.slice(5..)),
        other => Err(FlvError::UnsupportedVideoPacketType(other)),
    }
}

/// Builds the tag from an AVC payload.
///
/// Key frame rule: an IDR NAL unit always makes a random access point, and the
/// FLV key flag is trusted as well, because encoders with periodic intra
/// refresh or open-GOP recovery points only signal those via the flag, and
/// that is what every RTMP segmenter cuts on.
fn avc_packet(
    packet: AvcPacket,
    frame_type: u8,
    cts_ms: i32,
    payload: Bytes,
) -> Result<VideoTag, FlvError> {
    match packet {
        AvcPacket::SequenceHeader => {
            let mut config =
                h264::parse_avc_decoder_config(&payload).map_err(FlvError::AvcSequenceHeader)?;
            config.avcc = payload;
            Ok(VideoTag::SequenceHeader(config))
        }
        AvcPacket::Nalus => {
            if payload.is_empty() {
                return Err(FlvError::EmptyVideoFrame);
            }
            h264::check_avcc_framing(&payload).map_err(FlvError::AvcFrame)?;
            let flagged = frame_type == FRAME_KEY || frame_type == FRAME_GENERATED_KEY;
            Ok(VideoTag::Frame {
                keyframe: flagged || h264::avcc_has_idr(&payload),
                cts_ms,
                data: payload,
            })
        }
        AvcPacket::EndOfSequence => Ok(VideoTag::EndOfSequence),
    }
}

/// Frame types 1–4 carry pictures; 5 is a command; the rest are reserved.
fn check_frame_type(frame_type: u8) -> Result<(), FlvError> {
    match frame_type {
        1..=4 => Ok(()),
        FRAME_COMMAND => Err(FlvError::VideoCommandFrame),
        other => Err(FlvError::InvalidVideoFrameType(other)),
    }
}

fn legacy_video_codec_error(codec_id: u8) -> FlvError {
    let name = match codec_id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        12 => "HEVC (codec id 12, non-standard)",
        13 => "AV1 (codec id 13, non-standard)",
        other => return FlvError::UnknownVideoCodec(other),
    };
    FlvError::UnsupportedVideoCodec(name)
}

fn enhanced_video_codec_error(fourcc: FourCc) -> FlvError {
    let name = match &fourcc.0 {
        b"hvc1" => "HEVC (Enhanced RTMP hvc1)",
        b"av01" => "AV1 (Enhanced RTMP av01)",
        b"vp09" => "VP9 (Enhanced RTMP vp09)",
        b"vp08" => "VP8 (Enhanced RTMP vp08)",
        b"vvc1" => "VVC (Enhanced RTMP vvc1)",
        _ => return FlvError::UnknownVideoFourCc(fourcc),
    };
    FlvError::UnsupportedVideoCodec(name)
}

/// Parses an audio tag body (everything after the 11-byte FLV tag header).
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    let first = *body.first().ok_or(audio_truncated(body, 1))?;
    match first >> 4 {
        SOUND_AAC => {
            let packet_type = *body.get(1).ok_or(audio_truncated(body, 2))?;
            aac_packet(packet_type, body.slice(2..))
        }
        SOUND_EX_HEADER => parse_enhanced_audio(body, first & 0x0f),
        format => Err(legacy_audio_codec_error(format)),
    }
}

/// Enhanced RTMP audio: `[9:4|packet type:4] [FourCC] ...`.
fn parse_enhanced_audio(body: &Bytes, packet_type: u8) -> Result<AudioTag, FlvError> {
    // Multitrack (5) and ModEx (7) put more fields before the FourCC.
    if packet_type == 5 || packet_type == 7 {
        return Err(FlvError::UnsupportedAudioPacketType(packet_type));
    }
    let [_, a, b, c, d] = prefix(body).ok_or(audio_truncated(body, 5))?;
    let fourcc = FourCc([a, b, c, d]);
    if &fourcc.0 != b"mp4a" {
        return Err(enhanced_audio_codec_error(fourcc));
    }
    aac_packet(packet_type, body.slice(5..))
}

/// AACPacketType 0 = AudioSpecificConfig, 1 = raw frame (same in Enhanced RTMP).
fn aac_packet(packet_type: u8, payload: Bytes) -> Result<AudioTag, FlvError> {
    match packet_type {
        0 => {
            let mut config =
                aac::parse_audio_specific_config(&payload).map_err(FlvError::AacSequenceHeader)?;
            config.asc = payload;
            Ok(AudioTag::SequenceHeader(config))
        }
        1 if payload.is_empty() => Err(FlvError::EmptyAudioFrame),
        1 => Ok(AudioTag::Frame(payload)),
        other => Err(FlvError::UnsupportedAudioPacketType(other)),
    }
}

fn legacy_audio_codec_error(format: u8) -> FlvError {
    let name = match format {
        0 => "Linear PCM (platform endian)",
        1 => "ADPCM",
        2 => "MP3",
        3 => "Linear PCM (little endian)",
        4 => "Nellymoser 16 kHz mono",
        5 => "Nellymoser 8 kHz mono",
        6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        11 => "Speex",
        14 => "MP3 8 kHz",
        15 => "device-specific sound",
        other => return FlvError::UnknownAudioCodec(other),
    };
    FlvError::UnsupportedAudioCodec(name)
}

fn enhanced_audio_codec_error(fourcc: FourCc) -> FlvError {
    let name = match &fourcc.0 {
        b"Opus" => "Opus (Enhanced RTMP Opus)",
        b"fLaC" => "FLAC (Enhanced RTMP fLaC)",
        b"ac-3" => "AC-3 (Enhanced RTMP ac-3)",
        b"ec-3" => "E-AC-3 (Enhanced RTMP ec-3)",
        b".mp3" => "MP3 (Enhanced RTMP .mp3)",
        _ => return FlvError::UnknownAudioFourCc(fourcc),
    };
    FlvError::UnsupportedAudioCodec(name)
}

fn video_truncated(body: &Bytes, need: usize) -> FlvError {
    FlvError::VideoTruncated {
        need,
        got: body.len(),
    }
}

fn audio_truncated(body: &Bytes, need: usize) -> FlvError {
    FlvError::AudioTruncated {
        need,
        got: body.len(),
    }
}

/// The first `N` bytes of the body, if it has that many.
fn prefix<const N: usize>(body: &[u8]) -> Option<[u8; N]> {
    body.get(..N)?.try_into().ok()
}

/// Signed 24-bit big-endian (FLV CompositionTime).
fn i24(a: u8, b: u8, c: u8) -> i32 {
    i32::from_be_bytes([a, b, c, 0]) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tag of an FLV file: type (8 audio, 9 video, 18 script), ms timestamp, body.
    struct FlvTag {
        kind: u8,
        timestamp_ms: u32,
        body: Bytes,
    }

    /// Minimal FLV file walker for fixtures: header, then (tag, PreviousTagSize)*.
    fn flv_tags(file: &[u8]) -> Vec<FlvTag> {
        assert_eq!(&file[..3], b"FLV");
        let file = Bytes::copy_from_slice(file);
        let mut off = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize + 4;
        let mut tags = Vec::new();
        while off + 11 <= file.len() {
            let h = &file[off..off + 11];
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let timestamp_ms = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let body = file.slice(off + 11..off + 11 + size);
            tags.push(FlvTag {
                kind: h[0] & 0x1f,
                timestamp_ms,
                body,
            });
            off += 11 + size + 4;
        }
        tags
    }

    struct Fixture {
        file: &'static [u8],
        width: u32,
        height: u32,
        profile_idc: u8,
        level_idc: u8,
        fps: Option<f64>,
        b_frames: bool,
        audio: Option<(u32, u8)>,
    }

    const FIXTURES: &[Fixture] = &[
        Fixture {
            file: include_bytes!("../../fixtures/h264_high_720p30.flv"),
            width: 1280,
            height: 720,
            profile_idc: 100,
            level_idc: 31,
            fps: Some(30.0),
            b_frames: true,
            audio: Some((48000, 2)),
        },
        Fixture {
            file: include_bytes!("../../fixtures/h264_main_1080p25.flv"),
            width: 1920,
            height: 1080,
            profile_idc: 77,
            level_idc: 40,
            fps: Some(25.0),
            b_frames: true,
            audio: Some((44100, 1)),
        },
        Fixture {
            file: include_bytes!("../../fixtures/h264_baseline_360p.flv"),
            width: 640,
            height: 360,
            profile_idc: 66,
            level_idc: 30,
            fps: Some(30000.0 / 1001.0),
            b_frames: false,
            audio: Some((48000, 2)),
        },
        Fixture {
            file: include_bytes!("../../fixtures/h264_high444_cqm_642x362.flv"),
            width: 642,
            height: 362,
            profile_idc: 244,
            level_idc: 30,
            fps: Some(24.0),
            b_frames: true,
            audio: None,
        },
        Fixture {
            file: include_bytes!("../../fixtures/h264_high422_interlaced_320x240.flv"),
            width: 320,
            height: 240,
            profile_idc: 122,
            level_idc: 21,
            fps: Some(30.0),
            b_frames: true,
            audio: None,
        },
    ];

    fn video(body: &[u8]) -> Result<VideoTag, FlvError> {
        parse_video_tag(&Bytes::copy_from_slice(body))
    }

    fn audio(body: &[u8]) -> Result<AudioTag, FlvError> {
        parse_audio_tag(&Bytes::copy_from_slice(body))
    }

    fn video_tags(f: &Fixture) -> impl Iterator<Item = FlvTag> {
        flv_tags(f.file).into_iter().filter(|t| t.kind == 9)
    }

    #[test]
    fn fixture_video_sequence_headers() {
        for f in FIXTURES {
            let first = video_tags(f).next().unwrap();
            let VideoTag::SequenceHeader(cfg) = parse_video_tag(&first.body).unwrap() else {
                panic!("first video tag is not a sequence header");
            };
            let name = (f.width, f.height);
            assert_eq!((cfg.width, cfg.height), name);
            assert_eq!(
                (cfg.profile_idc, cfg.level_idc),
                (f.profile_idc, f.level_idc),
                "{name:?}"
            );
            match (cfg.fps, f.fps) {
                (Some(got), Some(want)) => assert!((got - want).abs() < 1e-6, "{name:?}: {got}"),
                (got, want) => assert_eq!(got, want, "{name:?}"),
            }
            assert_eq!(&cfg.avcc[..], &first.body[5..]);
        }
    }

    #[test]
    fn fixture_video_frames() {
        for f in FIXTURES {
            let mut frames = 0;
            let mut keyframes = Vec::new();
            let mut saw_cts = false;
            let mut last_dts = 0;
            for tag in video_tags(f).skip(1) {
                assert!(tag.timestamp_ms >= last_dts, "decode order");
                last_dts = tag.timestamp_ms;
                match parse_video_tag(&tag.body).unwrap() {
                    VideoTag::Frame {
                        keyframe,
                        cts_ms,
                        data,
                    } => {
                        assert!(cts_ms >= 0);
                        saw_cts |= cts_ms > 0;
                        // Zero-copy: the payload points into the tag body.
                        assert_eq!(data.as_ptr(), tag.body[5..].as_ptr());
                        assert_eq!(keyframe, tag.body[0] >> 4 == 1);
                        assert_eq!(keyframe, h264::avcc_has_idr(&data));
                        if keyframe {
                            keyframes.push(frames);
                        }
                        frames += 1;
                    }
                    VideoTag::EndOfSequence => {}
                    VideoTag::SequenceHeader(_) => panic!("second sequence header"),
                }
            }
            assert!(frames >= 7, "{frames}");
            // One GOP: only the first picture is an IDR.
            assert_eq!(keyframes, vec![0], "{}x{}", f.width, f.height);
            assert_eq!(saw_cts, f.b_frames, "{}x{}", f.width, f.height);
        }
    }

    #[test]
    fn fixture_audio() {
        for f in FIXTURES {
            let tags: Vec<_> = flv_tags(f.file)
                .into_iter()
                .filter(|t| t.kind == 8)
                .collect();
            let Some((rate, channels)) = f.audio else {
                assert!(tags.is_empty());
                continue;
            };
            let AudioTag::SequenceHeader(cfg) = parse_audio_tag(&tags[0].body).unwrap() else {
                panic!("first audio tag is not a sequence header");
            };
            assert_eq!(
                (
                    cfg.object_type,
                    cfg.sample_rate,
                    cfg.channels,
                    cfg.samples_per_frame
                ),
                (2, rate, channels, 1024)
            );
            assert_eq!(&cfg.asc[..], &tags[0].body[2..]);
            for tag in &tags[1..] {
                let AudioTag::Frame(data) = parse_audio_tag(&tag.body).unwrap() else {
                    panic!("audio frame expected");
                };
                assert_eq!(&data[..], &tag.body[2..]);
            }
        }
    }

    #[test]
    fn every_prefix_of_every_fixture_tag_is_safe() {
        for f in FIXTURES {
            for tag in flv_tags(f.file) {
                for n in 0..tag.body.len() {
                    let prefix = tag.body.slice(..n);
                    match tag.kind {
                        9 => check_video_prefix(&tag.body, &prefix),
                        8 => check_audio_prefix(&tag.body, &prefix),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Sequence headers must fail (bar the optional trailer); frames may only
    /// succeed when cut at a NAL boundary.
    fn check_video_prefix(whole: &Bytes, prefix: &Bytes) {
        match parse_video_tag(prefix) {
            Err(_) => {}
            Ok(VideoTag::Frame { data, .. }) => {
                assert_eq!(whole[1], 1, "prefix {} of a non-frame parsed", prefix.len());
                assert!(h264::check_avcc_framing(&data).is_ok());
            }
            // Only the optional 4-byte high-profile avcC extension may be cut.
            Ok(VideoTag::SequenceHeader(_)) if prefix.len() >= whole.len() - 4 => {
                assert_eq!(whole[1], 0);
            }
            Ok(other) => panic!("prefix {} parsed as {other:?}", prefix.len()),
        }
    }

    /// Raw AAC cannot be validated, so only headers and empty frames must fail.
    fn check_audio_prefix(whole: &Bytes, prefix: &Bytes) {
        let result = parse_audio_tag(prefix);
        if prefix.len() < 3 {
            assert!(result.is_err(), "prefix {}", prefix.len());
        } else if whole[1] == 0 {
            // The AAC core config ends at byte 4; the rest is an optional extension.
            assert_eq!(result.is_ok(), prefix.len() >= 4, "prefix {}", prefix.len());
        }
    }

    /// Legacy AVC tag: `[frame type|7] [packet type] [cts:24]` + payload.
    fn avc_tag(frame_type: u8, packet_type: u8, cts: i32, payload: &[u8]) -> Vec<u8> {
        let cts = cts.to_be_bytes();
        let mut body = vec![frame_type << 4 | 7, packet_type, cts[1], cts[2], cts[3]];
        body.extend_from_slice(payload);
        body
    }

    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| {
                (n.len() as u32)
                    .to_be_bytes()
                    .into_iter()
                    .chain(n.iter().copied())
            })
            .collect()
    }

    fn first_sequence_header() -> Bytes {
        video_tags(&FIXTURES[0]).next().unwrap().body
    }

    #[test]
    fn composition_time_is_signed_24_bit() {
        let nals = avcc(&[&[0x41, 0x9a]]);
        for cts in [0, 1, 40, -1, -80, 0x7f_ffff, -0x80_0000] {
            let Ok(VideoTag::Frame { cts_ms, .. }) = video(&avc_tag(2, 1, cts, &nals)) else {
                panic!("frame expected");
            };
            assert_eq!(cts_ms, cts);
        }
    }

    #[test]
    fn keyframe_is_flag_or_idr() {
        let idr = avcc(&[&[0x06, 5], &[0x65, 0x88]]);
        let non_idr = avcc(&[&[0x41, 0x9a]]);
        for (frame_type, data, expect) in [
            (1, &idr, true),
            (2, &idr, true),     // mislabelled IDR still counts
            (1, &non_idr, true), // encoder-declared recovery point
            (4, &non_idr, true), // generated key frame
            (2, &non_idr, false),
            (3, &non_idr, false), // disposable inter frame
        ] {
            let Ok(VideoTag::Frame { keyframe, .. }) = video(&avc_tag(frame_type, 1, 0, data))
            else {
                panic!("frame expected");
            };
            assert_eq!(keyframe, expect, "frame type {frame_type}");
        }
    }

    #[test]
    fn end_of_sequence_and_bad_packets() {
        assert_eq!(video(&avc_tag(1, 2, 0, &[])), Ok(VideoTag::EndOfSequence));
        assert_eq!(
            video(&avc_tag(1, 3, 0, &[])),
            Err(FlvError::UnsupportedVideoPacketType(3))
        );
        assert_eq!(
            video(&avc_tag(1, 1, 0, &[])),
            Err(FlvError::EmptyVideoFrame)
        );
        assert_eq!(
            video(&avc_tag(5, 1, 0, &[0])),
            Err(FlvError::VideoCommandFrame)
        );
        assert_eq!(
            video(&avc_tag(0, 1, 0, &[0])),
            Err(FlvError::InvalidVideoFrameType(0))
        );
        assert!(matches!(
            video(&avc_tag(2, 1, 0, &[0, 0, 0, 9, 0x41])),
            Err(FlvError::AvcFrame(H264Error::NalFraming { .. }))
        ));
        assert!(matches!(
            video(&avc_tag(1, 0, 0, &[1, 0x64, 0, 0x1f, 0xfd, 0xe1])),
            Err(FlvError::AvcSequenceHeader(
                H264Error::UnsupportedNalLengthSize(2)
            ))
        ));
    }

    #[test]
    fn truncation_messages() {
        let err = video(&[0x17, 0x01]).unwrap_err();
        assert_eq!(err.to_string(), "video tag truncated: need 5 bytes, got 2");
        assert_eq!(
            video(&[]).unwrap_err().to_string(),
            "video tag truncated: need 1 bytes, got 0"
        );
        assert_eq!(
            audio(&[0xaf]).unwrap_err().to_string(),
            "audio tag truncated: need 2 bytes, got 1"
        );
        let header = video(&[0x17, 0, 0, 0, 0, 1, 0x64]).unwrap_err();
        assert!(
            header
                .to_string()
                .starts_with("bad AVC sequence header: avcC record truncated"),
            "{header}"
        );
    }

    #[test]
    fn legacy_video_codecs_are_named() {
        for (id, name) in [
            (2, "Sorenson H.263"),
            (3, "Screen video"),
            (4, "On2 VP6"),
            (5, "On2 VP6 with alpha"),
            (6, "Screen video v2"),
            (12, "HEVC (codec id 12, non-standard)"),
            (13, "AV1 (codec id 13, non-standard)"),
        ] {
            assert_eq!(
                video(&[0x10 | id, 0, 0, 0, 0]),
                Err(FlvError::UnsupportedVideoCodec(name))
            );
        }
        assert_eq!(video(&[0x19]), Err(FlvError::UnknownVideoCodec(9)));
        let msg = FlvError::UnsupportedVideoCodec("On2 VP6").to_string();
        assert_eq!(msg, "unsupported video codec: On2 VP6; publish H.264 (AVC)");
    }

    #[test]
    fn enhanced_video_codecs_are_named() {
        for (fourcc, name) in [
            (b"hvc1", "HEVC (Enhanced RTMP hvc1)"),
            (b"av01", "AV1 (Enhanced RTMP av01)"),
            (b"vp09", "VP9 (Enhanced RTMP vp09)"),
        ] {
            let mut body = vec![0x90];
            body.extend_from_slice(fourcc);
            assert_eq!(video(&body), Err(FlvError::UnsupportedVideoCodec(name)));
        }
        let err = video(&[0x90, b'x', b'y', b'z', b'1']).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown Enhanced RTMP video codec 'xyz1'; publish H.264 (AVC)"
        );
        let err = video(&[0x90, 0, 1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("0x00010203"), "{err}");
        assert_eq!(video(&[0x96]), Err(FlvError::UnsupportedVideoPacketType(6)));
        assert_eq!(
            video(&[0x90, b'h']),
            Err(FlvError::VideoTruncated { need: 5, got: 2 })
        );
    }

    #[test]
    fn enhanced_avc1() {
        let legacy = first_sequence_header();
        let mut seq = vec![0x90];
        seq.extend_from_slice(b"avc1");
        seq.extend_from_slice(&legacy[5..]);
        let Ok(VideoTag::SequenceHeader(cfg)) = video(&seq) else {
            panic!("sequence start expected");
        };
        assert_eq!((cfg.width, cfg.height), (1280, 720));

        let nals = avcc(&[&[0x65, 0x88]]);
        let mut coded = vec![0x91, b'a', b'v', b'c', b'1', 0xff, 0xff, 0xd8];
        coded.extend_from_slice(&nals);
        assert_eq!(
            video(&coded),
            Ok(VideoTag::Frame {
                keyframe: true,
                cts_ms: -40,
                data: Bytes::from(nals.clone())
            })
        );
        let mut coded_x = vec![0xa3, b'a', b'v', b'c', b'1'];
        coded_x.extend_from_slice(&avcc(&[&[0x41, 0x9a]]));
        assert!(matches!(
            video(&coded_x),
            Ok(VideoTag::Frame {
                keyframe: false,
                cts_ms: 0,
                ..
            })
        ));
        assert_eq!(video(b"\x92avc1"), Ok(VideoTag::EndOfSequence));
        assert_eq!(
            video(b"\x94avc1\x02"),
            Err(FlvError::UnsupportedVideoPacketType(4))
        );
        assert_eq!(
            video(b"\x91avc1\x00"),
            Err(FlvError::VideoTruncated { need: 8, got: 6 })
        );
    }

    #[test]
    fn aac_tags() {
        let Ok(AudioTag::SequenceHeader(cfg)) = audio(&[0xaf, 0x00, 0x11, 0x90]) else {
            panic!("sequence header expected");
        };
        assert_eq!((cfg.sample_rate, cfg.channels), (48000, 2));
        assert_eq!(
            audio(&[0xaf, 0x01, 0x21]),
            Ok(AudioTag::Frame(Bytes::from_static(&[0x21])))
        );
        assert_eq!(audio(&[0xaf, 0x01]), Err(FlvError::EmptyAudioFrame));
        assert_eq!(
            audio(&[0xaf, 0x02, 0x00]),
            Err(FlvError::UnsupportedAudioPacketType(2))
        );
        assert_eq!(
            audio(&[0xaf, 0x00, 0x11]),
            Err(FlvError::AacSequenceHeader(AacError::Truncated(
                "samplingFrequencyIndex"
            )))
        );
        // Sound rate/size/type bits are ignored for AAC (always 0xaf in practice).
        assert!(audio(&[0xa0, 0x01, 0x21]).is_ok());
    }

    #[test]
    fn legacy_audio_codecs_are_named() {
        for (format, name) in [
            (0, "Linear PCM (platform endian)"),
            (1, "ADPCM"),
            (2, "MP3"),
            (3, "Linear PCM (little endian)"),
            (4, "Nellymoser 16 kHz mono"),
            (5, "Nellymoser 8 kHz mono"),
            (6, "Nellymoser"),
            (7, "G.711 A-law"),
            (8, "G.711 mu-law"),
            (11, "Speex"),
            (14, "MP3 8 kHz"),
            (15, "device-specific sound"),
        ] {
            assert_eq!(
                audio(&[format << 4 | 0x0e, 1, 2]),
                Err(FlvError::UnsupportedAudioCodec(name))
            );
        }
        assert_eq!(audio(&[0xd0]), Err(FlvError::UnknownAudioCodec(13)));
        assert_eq!(
            FlvError::UnsupportedAudioCodec("Speex").to_string(),
            "unsupported audio codec: Speex; publish AAC"
        );
    }

    #[test]
    fn enhanced_audio() {
        assert_eq!(
            audio(b"\x90Opus\x01"),
            Err(FlvError::UnsupportedAudioCodec("Opus (Enhanced RTMP Opus)"))
        );
        for (fourcc, name) in [
            (b"fLaC", "FLAC (Enhanced RTMP fLaC)"),
            (b"ac-3", "AC-3 (Enhanced RTMP ac-3)"),
            (b"ec-3", "E-AC-3 (Enhanced RTMP ec-3)"),
            (b".mp3", "MP3 (Enhanced RTMP .mp3)"),
        ] {
            let mut body = vec![0x91];
            body.extend_from_slice(fourcc);
            assert_eq!(audio(&body), Err(FlvError::UnsupportedAudioCodec(name)));
        }
        assert!(matches!(
            audio(b"\x90abcd"),
            Err(FlvError::UnknownAudioFourCc(_))
        ));
        let Ok(AudioTag::SequenceHeader(cfg)) = audio(b"\x90mp4a\x12\x08") else {
            panic!("sequence start expected");
        };
        assert_eq!((cfg.sample_rate, cfg.channels), (44100, 1));
        assert_eq!(
            audio(b"\x91mp4a\x21\x00"),
            Ok(AudioTag::Frame(Bytes::from_static(&[0x21, 0x00])))
        );
        assert_eq!(audio(b"\x95"), Err(FlvError::UnsupportedAudioPacketType(5)));
        assert_eq!(
            audio(b"\x92mp4a"),
            Err(FlvError::UnsupportedAudioPacketType(2))
        );
        assert_eq!(
            audio(b"\x90mp"),
            Err(FlvError::AudioTruncated { need: 5, got: 3 })
        );
    }

    /// Deterministic mutation run over fixture tags: any outcome but a panic is fine.
    #[test]
    fn mutated_fixture_tags_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let tags: Vec<_> = FIXTURES
            .iter()
            .flat_map(|f| flv_tags(f.file).into_iter().take(4))
            .collect();
        for _ in 0..20_000 {
            let tag = &tags[next() as usize % tags.len()];
            let mut body = tag.body.to_vec();
            for _ in 0..1 + next() % 4 {
                if body.is_empty() {
                    break;
                }
                let at = next() as usize % body.len().min(64);
                body[at] = next() as u8;
            }
            body.truncate(next() as usize % (body.len() + 1));
            let body = Bytes::from(body);
            let _ = parse_video_tag(&body);
            let _ = parse_audio_tag(&body);
            let _ = h264::parse_avc_decoder_config(&body);
            let _ = aac::parse_audio_specific_config(&body);
        }
    }

    #[test]
    fn every_prefix_of_hand_built_headers_is_err() {
        // Baseline: its avcC has no optional trailer, so every cut is fatal.
        let seq = video_tags(&FIXTURES[2]).next().unwrap().body;
        for n in 0..seq.len() {
            assert!(parse_video_tag(&seq.slice(..n)).is_err(), "prefix {n}");
        }
        let aac = [0xaf, 0x00, 0x11, 0x90];
        for n in 0..aac.len() {
            assert!(audio(&aac[..n]).is_err(), "prefix {n}");
        }
    }
}
