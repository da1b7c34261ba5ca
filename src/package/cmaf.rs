//! Sans-IO fragmented-MP4 (CMAF-style) writer: init segments and `moof`+`mdat` fragments.
//!
//! The `mp4` crate cannot write fragmented files, and LL-HLS needs byte-exact control
//! over every part, so the few boxes we need are written by hand. Every function is
//! pure: bytes in, bytes out, nothing panics on caller input.
//!
//! Layout: `init_segment` = `ftyp` + `moov` (empty sample tables, `mvex`/`trex` per
//! track); each `fragment` = optional `styp` + `moof` (one `traf` per non-empty run)
//! + one `mdat`. Appending fragments to the init segment yields a playable fMP4.
//!
//! Brands. The init `ftyp` is `iso6` (major; covers `tfdt`/`trun` version 1 with
//! signed composition offsets) plus `isom`/`mp41` for older parsers, and `cmfc`
//! (the CMAF track brand) only when the init describes exactly one track: CMAF
//! headers and fragments are single-track, so a muxed audio+video init would make
//! that claim false. `styp` (written at the start of an HLS segment) follows the same
//! rule: `msdh` (a generic ISO/DASH media segment, true for any fragment we write)
//! plus `cmfs` (CMAF segment) when the fragment carries a single track. `msix` is not
//! used because it promises a `sidx`, which live parts never have.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::{AudioConfig, VideoConfig, TIMESCALE};
use crate::package::boxes::{
    patch_u32, put_unity_matrix, put_zeros, saturating_u32, write_box, write_descriptor,
    write_full_box, FourCc, HEADER_LEN,
};

/// Track id of the H.264 track (timescale [`TIMESCALE`]).
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the AAC track (timescale [`audio_timescale`]).
pub const AUDIO_TRACK_ID: u32 = 2;

/// `mvhd` timescale; only informative since every duration in the init is 0.
const MOVIE_TIMESCALE: u32 = 1000;
/// Must exceed every track id in use.
const NEXT_TRACK_ID: u32 = AUDIO_TRACK_ID + 1;

/// `tkhd` flags: track_enabled | track_in_movie.
const TKHD_ENABLED_IN_MOVIE: u32 = 0x000003;
/// `tfhd` flag: data offsets are relative to the start of the enclosing `moof`
/// (required by CMAF, and makes each fragment position-independent).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data-offset | sample-duration | sample-size | sample-flags | sample-cto.
const TRUN_FLAGS: u32 = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800;
/// Sample flags of a sync sample: sample_depends_on = 2 (independent), non-sync bit clear.
const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: sample_depends_on = 1, sample_is_non_sync_sample = 1.
const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;
/// ISO-639-2 "und" packed as three 5-bit letters (each minus 0x60).
const LANGUAGE_UND: u16 = (21 << 10) | (14 << 5) | 4;

/// Timescale of the audio track: one tick per PCM sample, so AAC frame durations are exact.
///
/// Clamped to 1 so a bogus zero sample rate never becomes a zero timescale (a divisor
/// for players).
pub fn audio_timescale(a: &AudioConfig) -> u32 {
    a.sample_rate.max(1)
}

/// One access unit as stored in a `trun`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode duration, in the track's timescale.
    pub duration: u32,
    /// Composition offset (pts − dts), in the track's timescale; written signed (trun v1).
    pub cts: i32,
    /// Sync sample (IDR for video; always true for audio).
    pub keyframe: bool,
    /// Video: AVCC length-prefixed NAL units. Audio: one raw AAC frame.
    pub data: Bytes,
}

/// Consecutive samples of one track inside a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRun {
    /// [`VIDEO_TRACK_ID`] or [`AUDIO_TRACK_ID`].
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    pub samples: Vec<Sample>,
}

/// Builds the initialization segment (`ftyp` + `moov`) for the tracks present.
pub fn init_segment(video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes {
    let mut buf = BytesMut::with_capacity(1024);
    let single_track = video.is_some() != audio.is_some();
    write_ftyp(&mut buf, single_track);
    write_box(&mut buf, b"moov", |b| {
        write_mvhd(b);
        if let Some(v) = video {
            write_video_trak(b, v);
        }
        if let Some(a) = audio {
            write_audio_trak(b, a);
        }
        write_box(b, b"mvex", |b| {
            if video.is_some() {
                write_trex(b, VIDEO_TRACK_ID);
            }
            if audio.is_some() {
                write_trex(b, AUDIO_TRACK_ID);
            }
        });
    });
    buf.freeze()
}

/// Builds one movie fragment: optional `styp`, `moof`, then a single `mdat` holding the
/// runs' samples in run order. Runs without samples are skipped.
///
/// Pass `with_styp` for the first fragment of an HLS segment; later parts of the same
/// segment omit it so that the concatenated parts form the segment.
pub fn fragment(sequence_number: u32, runs: &[TrackRun], with_styp: bool) -> Bytes {
    fragment_with_events(sequence_number, runs, with_styp, &[])
}

/// [`fragment`] with `events` (complete `emsg` boxes) between `styp` and `moof`, where CMAF
/// places a chunk's event messages.
pub fn fragment_with_events(
    sequence_number: u32,
    runs: &[TrackRun],
    with_styp: bool,
    events: &[u8],
) -> Bytes {
    let runs: Vec<&TrackRun> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let run_lens: Vec<usize> = runs.iter().map(|r| run_data_len(r)).collect();
    let data_len = run_lens
        .iter()
        .fold(0usize, |acc, l| acc.saturating_add(*l));
    let mdat_header = mdat_header_len(data_len);

    // Exact enough that the buffer never grows: a part lives in the store for the
    // whole window, so a doubled allocation would double the origin's memory.
    let samples: usize = runs.iter().map(|r| r.samples.len()).sum();
    let header_len = 128 + runs.len() * 80 + samples * 16 + events.len();
    let mut buf = BytesMut::with_capacity(data_len.saturating_add(header_len));
    if with_styp {
        write_styp(&mut buf, runs.len() == 1);
    }
    buf.put_slice(events);
    let moof_start = buf.len();
    let mut offset_slots = Vec::with_capacity(runs.len());
    write_box(&mut buf, b"moof", |b| {
        write_full_box(b, b"mfhd", 0, 0, |b| b.put_u32(sequence_number));
        for run in &runs {
            offset_slots.push(write_traf(b, run));
        }
    });

    // With default-base-is-moof, each data offset counts from the first byte of `moof`.
    let mut offset = (buf.len() - moof_start).saturating_add(mdat_header);
    for (slot, len) in offset_slots.iter().zip(&run_lens) {
        patch_u32(&mut buf, *slot, i32_field(offset));
        offset = offset.saturating_add(*len);
    }

    write_mdat_header(&mut buf, data_len);
    for sample in runs.iter().flat_map(|r| &r.samples) {
        buf.put_slice(&sample.data);
    }
    buf.freeze()
}

fn run_data_len(run: &TrackRun) -> usize {
    run.samples
        .iter()
        .fold(0usize, |acc, s| acc.saturating_add(s.data.len()))
}

/// A trun data_offset is a signed 32-bit field; clamp rather than wrap.
fn i32_field(v: usize) -> u32 {
    i32::try_from(v).unwrap_or(i32::MAX).unsigned_abs()
}

/// 8-byte header normally; 16 bytes (64-bit largesize) if the payload would not fit.
fn mdat_header_len(data_len: usize) -> usize {
    if data_len.saturating_add(HEADER_LEN) > u32::MAX as usize {
        HEADER_LEN + 8
    } else {
        HEADER_LEN
    }
}

fn write_mdat_header(buf: &mut BytesMut, data_len: usize) {
    let header = mdat_header_len(data_len);
    let total = data_len.saturating_add(header);
    if header == HEADER_LEN {
        buf.put_u32(saturating_u32(total));
        buf.put_slice(b"mdat");
    } else {
        buf.put_u32(1);
        buf.put_slice(b"mdat");
        buf.put_u64(u64::try_from(total).unwrap_or(u64::MAX));
    }
}

fn write_brands(buf: &mut BytesMut, major: &FourCc, compatible: &[&FourCc]) {
    buf.put_slice(major);
    buf.put_u32(0); // minor_version
    for brand in compatible {
        buf.put_slice(*brand);
    }
}

fn write_ftyp(buf: &mut BytesMut, single_track: bool) {
    write_box(buf, b"ftyp", |b| {
        let mut brands: Vec<&FourCc> = vec![b"iso6", b"isom", b"mp41"];
        if single_track {
            brands.push(b"cmfc");
        }
        write_brands(b, b"iso6", &brands);
    });
}

fn write_styp(buf: &mut BytesMut, single_track: bool) {
    write_box(buf, b"styp", |b| {
        if single_track {
            write_brands(b, b"cmfs", &[b"cmfs", b"msdh"]);
        } else {
            write_brands(b, b"msdh", &[b"msdh"]);
        }
    });
}

fn write_mvhd(buf: &mut BytesMut) {
    write_full_box(buf, b"mvhd", 0, 0, |b| {
        b.put_u32(0); // creation_time
        b.put_u32(0); // modification_time
        b.put_u32(MOVIE_TIMESCALE);
        b.put_u32(0); // duration: unknown (live)
        b.put_u32(0x0001_0000); // rate 1.0
        b.put_u16(0x0100); // volume 1.0
        put_zeros(b, 2 + 8); // reserved
        put_unity_matrix(b);
        put_zeros(b, 24); // pre_defined
        b.put_u32(NEXT_TRACK_ID);
    });
}

/// What differs between the video and the audio `trak`.
struct TrackParams {
    id: u32,
    timescale: u32,
    handler: FourCc,
    /// Null-terminated UTF-8 handler name.
    handler_name: &'static [u8],
    /// 16.16 fixed point; 0 for audio.
    width: u32,
    height: u32,
    /// 8.8 fixed point; 0 for video.
    volume: u16,
}

fn write_video_trak(buf: &mut BytesMut, v: &VideoConfig) {
    let params = TrackParams {
        id: VIDEO_TRACK_ID,
        timescale: TIMESCALE,
        handler: *b"vide",
        handler_name: b"VideoHandler\0",
        width: fixed_16_16(v.width),
        height: fixed_16_16(v.height),
        volume: 0,
    };
    write_trak(buf, &params, write_vmhd, |b| write_avc1(b, v));
}

fn write_audio_trak(buf: &mut BytesMut, a: &AudioConfig) {
    let params = TrackParams {
        id: AUDIO_TRACK_ID,
        timescale: audio_timescale(a),
        handler: *b"soun",
        handler_name: b"SoundHandler\0",
        width: 0,
        height: 0,
        volume: 0x0100,
    };
    write_trak(buf, &params, write_smhd, |b| write_mp4a(b, a));
}

/// Integer pixels → 16.16 fixed point, clamped to the representable range.
fn fixed_16_16(v: u32) -> u32 {
    v.min(0xFFFF) << 16
}

fn write_trak(
    buf: &mut BytesMut,
    t: &TrackParams,
    media_header: fn(&mut BytesMut),
    sample_entry: impl FnOnce(&mut BytesMut),
) {
    write_box(buf, b"trak", |b| {
        write_tkhd(b, t);
        write_box(b, b"mdia", |b| {
            write_mdhd(b, t.timescale);
            write_hdlr(b, &t.handler, t.handler_name);
            write_box(b, b"minf", |b| {
                media_header(b);
                write_dinf(b);
                write_stbl(b, sample_entry);
            });
        });
    });
}

fn write_tkhd(buf: &mut BytesMut, t: &TrackParams) {
    write_full_box(buf, b"tkhd", 0, TKHD_ENABLED_IN_MOVIE, |b| {
        b.put_u32(0); // creation_time
        b.put_u32(0); // modification_time
        b.put_u32(t.id);
        b.put_u32(0); // reserved
        b.put_u32(0); // duration
        put_zeros(b, 8); // reserved
        b.put_u16(0); // layer
        b.put_u16(0); // alternate_group
        b.put_u16(t.volume);
        b.put_u16(0); // reserved
        put_unity_matrix(b);
        b.put_u32(t.width);
        b.put_u32(t.height);
    });
}

fn write_mdhd(buf: &mut BytesMut, timescale: u32) {
    write_full_box(buf, b"mdhd", 0, 0, |b| {
        b.put_u32(0); // creation_time
        b.put_u32(0); // modification_time
        b.put_u32(timescale);
        b.put_u32(0); // duration
        b.put_u16(LANGUAGE_UND);
        b.put_u16(0); // pre_defined
    });
}

fn write_hdlr(buf: &mut BytesMut, handler: &FourCc, name: &[u8]) {
    write_full_box(buf, b"hdlr", 0, 0, |b| {
        b.put_u32(0); // pre_defined
        b.put_slice(handler);
        put_zeros(b, 12); // reserved
        b.put_slice(name);
    });
}

fn write_vmhd(buf: &mut BytesMut) {
    // Flags 1 is mandated by ISO/IEC 14496-12 for vmhd.
    write_full_box(buf, b"vmhd", 0, 1, |b| {
        b.put_u16(0); // graphicsmode: copy
        put_zeros(b, 6); // opcolor
    });
}

fn write_smhd(buf: &mut BytesMut) {
    write_full_box(buf, b"smhd", 0, 0, |b| {
        b.put_u16(0); // balance: centre
        b.put_u16(0); // reserved
    });
}

/// One `url ` entry with flag 1: the media data is in this same file.
fn write_dinf(buf: &mut BytesMut) {
    write_box(buf, b"dinf", |b| {
        write_full_box(b, b"dref", 0, 0, |b| {
            b.put_u32(1); // entry_count
            write_full_box(b, b"url ", 0, 1, |_| {});
        });
    });
}

/// Sample tables stay empty: all samples live in fragments.
fn write_stbl(buf: &mut BytesMut, sample_entry: impl FnOnce(&mut BytesMut)) {
    write_box(buf, b"stbl", |b| {
        write_full_box(b, b"stsd", 0, 0, |b| {
            b.put_u32(1); // entry_count
            sample_entry(b);
        });
        write_full_box(b, b"stts", 0, 0, |b| b.put_u32(0));
        write_full_box(b, b"stsc", 0, 0, |b| b.put_u32(0));
        write_full_box(b, b"stsz", 0, 0, |b| {
            b.put_u32(0); // sample_size: varies
            b.put_u32(0); // sample_count
        });
        write_full_box(b, b"stco", 0, 0, |b| b.put_u32(0));
    });
}

/// Common head of every SampleEntry: 6 reserved bytes + data_reference_index 1.
fn put_sample_entry_head(buf: &mut BytesMut) {
    put_zeros(buf, 6);
    buf.put_u16(1);
}

fn write_avc1(buf: &mut BytesMut, v: &VideoConfig) {
    write_box(buf, b"avc1", |b| {
        put_sample_entry_head(b);
        b.put_u16(0); // pre_defined
        b.put_u16(0); // reserved
        put_zeros(b, 12); // pre_defined
        b.put_u16(u16::try_from(v.width).unwrap_or(u16::MAX));
        b.put_u16(u16::try_from(v.height).unwrap_or(u16::MAX));
        b.put_u32(0x0048_0000); // horizresolution 72 dpi
        b.put_u32(0x0048_0000); // vertresolution 72 dpi
        b.put_u32(0); // reserved
        b.put_u16(1); // frame_count
        put_zeros(b, 32); // compressorname (empty Pascal string)
        b.put_u16(0x0018); // depth: colour, no alpha
        b.put_i16(-1); // pre_defined
        write_box(b, b"avcC", |b| b.put_slice(&v.avcc));
    });
}

fn write_mp4a(buf: &mut BytesMut, a: &AudioConfig) {
    write_box(buf, b"mp4a", |b| {
        put_sample_entry_head(b);
        put_zeros(b, 8); // reserved
                         // Channel configuration 0 (layout in a PCE) has no count here; 2 is the
                         // conventional placeholder, decoders take the real layout from the ASC.
        b.put_u16(if a.channels == 0 {
            2
        } else {
            u16::from(a.channels)
        });
        b.put_u16(16); // samplesize
        b.put_u16(0); // pre_defined
        b.put_u16(0); // reserved
                      // 16.16 sample rate; rates ≥ 65536 Hz do not fit and are left to the ASC.
        b.put_u32(if a.sample_rate <= 0xFFFF {
            a.sample_rate << 16
        } else {
            0
        });
        write_esds(b, a);
    });
}

/// `esds` per ISO/IEC 14496-14: ES_Descriptor → DecoderConfigDescriptor
/// (→ DecoderSpecificInfo = ASC) + SLConfigDescriptor.
fn write_esds(buf: &mut BytesMut, a: &AudioConfig) {
    write_full_box(buf, b"esds", 0, 0, |b| {
        write_descriptor(b, 0x03, |b| {
            b.put_u16(0); // ES_ID: 0 in files (14496-14 §3.1.2)
            b.put_u8(0); // no dependsOn / URL / OCR stream
            write_descriptor(b, 0x04, |b| {
                b.put_u8(0x40); // objectTypeIndication: MPEG-4 Audio
                b.put_u8((0x05 << 2) | 1); // streamType audio, upStream 0, reserved 1
                b.put_slice(&[0, 0, 0]); // bufferSizeDB: unknown
                b.put_u32(0); // maxBitrate: unknown
                b.put_u32(0); // avgBitrate: unknown (VBR/live)
                write_descriptor(b, 0x05, |b| b.put_slice(&a.asc));
            });
            write_descriptor(b, 0x06, |b| b.put_u8(2)); // SLConfig predefined = MP4
        });
    });
}

fn write_trex(buf: &mut BytesMut, track_id: u32) {
    write_full_box(buf, b"trex", 0, 0, |b| {
        b.put_u32(track_id);
        b.put_u32(1); // default_sample_description_index
        b.put_u32(0); // default_sample_duration (every trun carries its own)
        b.put_u32(0); // default_sample_size
        b.put_u32(0); // default_sample_flags
    });
}

/// Writes a `traf` and returns the buffer position of its `trun` data_offset field,
/// to be patched once the `moof` size is known.
fn write_traf(buf: &mut BytesMut, run: &TrackRun) -> usize {
    let mut slot = 0;
    write_box(buf, b"traf", |b| {
        write_full_box(b, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |b| {
            b.put_u32(run.track_id);
        });
        write_full_box(b, b"tfdt", 1, 0, |b| b.put_u64(run.base_decode_time));
        write_full_box(b, b"trun", 1, TRUN_FLAGS, |b| {
            b.put_u32(saturating_u32(run.samples.len()));
            slot = b.len();
            b.put_u32(0); // data_offset, patched by the caller
            for s in &run.samples {
                b.put_u32(s.duration);
                b.put_u32(saturating_u32(s.data.len()));
                b.put_u32(sample_flags(s.keyframe));
                b.put_i32(s.cts);
            }
        });
    });
    slot
}

fn sample_flags(keyframe: bool) -> u32 {
    if keyframe {
        SAMPLE_FLAGS_SYNC
    } else {
        SAMPLE_FLAGS_NON_SYNC
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    // ---- fixtures -------------------------------------------------------------

    /// avcC with one (truncated) High-profile SPS and one PPS: enough for box parsers.
    const AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1F, 0x01, 0x00, 0x02,
        0x68, 0xEE,
    ];
    /// AudioSpecificConfig: AAC-LC, 48 kHz, stereo.
    const ASC: &[u8] = &[0x11, 0x90];

    fn video_config() -> VideoConfig {
        VideoConfig {
            avcc: Bytes::from_static(AVCC),
            width: 320,
            height: 240,
            profile_idc: 0x64,
            constraints: 0,
            level_idc: 0x1F,
            fps: Some(30.0),
        }
    }

    fn audio_config() -> AudioConfig {
        AudioConfig {
            asc: Bytes::from_static(ASC),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
            samples_per_frame: 1024,
        }
    }

    /// Distinct payload per (track, index) so misplaced bytes are caught.
    fn payload(track: u32, i: usize, len: usize) -> Bytes {
        (0..len)
            .map(|k| (track as usize * 97 + i * 31 + k) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    /// Video run of `n` frames at 30 fps with an IBBP-like cts pattern (incl. a negative one).
    fn video_run(base: u64, n: usize) -> TrackRun {
        let samples = (0..n)
            .map(|i| Sample {
                duration: 3000,
                cts: [6000, -3000, 0, 3000][i % 4],
                keyframe: i == 0,
                data: payload(VIDEO_TRACK_ID, i, 100 + i * 7),
            })
            .collect();
        TrackRun {
            track_id: VIDEO_TRACK_ID,
            base_decode_time: base,
            samples,
        }
    }

    fn audio_run(base: u64, n: usize) -> TrackRun {
        let samples = (0..n)
            .map(|i| Sample {
                duration: 1024,
                cts: 0,
                keyframe: true,
                data: payload(AUDIO_TRACK_ID, i, 20 + i),
            })
            .collect();
        TrackRun {
            track_id: AUDIO_TRACK_ID,
            base_decode_time: base,
            samples,
        }
    }

    // ---- a tiny box parser for structural checks --------------------------------

    #[derive(Debug, Clone, Copy)]
    struct BoxAt<'a> {
        kind: [u8; 4],
        /// Offset of the box header within the parsed slice's origin.
        start: usize,
        size: usize,
        body: &'a [u8],
        /// Offset of `body` within the origin.
        body_start: usize,
    }

    /// Splits `data` (which sits at `origin` in the enclosing buffer) into boxes,
    /// asserting that their sizes tile it exactly.
    fn boxes(data: &[u8], origin: usize) -> Vec<BoxAt<'_>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            assert!(pos + 8 <= data.len(), "truncated box header at {pos}");
            let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
            let mut header = 8;
            if size == 1 {
                size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize;
                header = 16;
            }
            assert!(
                size >= header && pos + size <= data.len(),
                "bad size {size} at {pos}"
            );
            out.push(BoxAt {
                kind,
                start: origin + pos,
                size,
                body: &data[pos + header..pos + size],
                body_start: origin + pos + header,
            });
            pos += size;
        }
        assert_eq!(pos, data.len(), "boxes must add up to the container size");
        out
    }

    fn children<'a>(b: &BoxAt<'a>) -> Vec<BoxAt<'a>> {
        boxes(b.body, b.body_start)
    }

    fn child<'a>(b: &BoxAt<'a>, kind: &[u8; 4]) -> BoxAt<'a> {
        let all = children(b);
        let found: Vec<_> = all.iter().filter(|c| &c.kind == kind).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {:?}",
            String::from_utf8_lossy(kind)
        );
        *found[0]
    }

    fn path<'a>(b: &BoxAt<'a>, kinds: &[&[u8; 4]]) -> BoxAt<'a> {
        kinds.iter().fold(*b, |cur, k| child(&cur, k))
    }

    fn u32_at(d: &[u8], pos: usize) -> u32 {
        u32::from_be_bytes(d[pos..pos + 4].try_into().unwrap())
    }

    fn u64_at(d: &[u8], pos: usize) -> u64 {
        u64::from_be_bytes(d[pos..pos + 8].try_into().unwrap())
    }

    fn brands(body: &[u8]) -> (String, Vec<String>) {
        let s = |c: &[u8]| String::from_utf8_lossy(c).into_owned();
        (s(&body[..4]), body[8..].chunks(4).map(s).collect())
    }

    #[derive(Debug, PartialEq)]
    struct TrunEntry {
        duration: u32,
        size: u32,
        flags: u32,
        cts: i32,
    }

    struct ParsedTraf {
        track_id: u32,
        tfhd_flags: u32,
        decode_time: u64,
        data_offset: i32,
        entries: Vec<TrunEntry>,
    }

    fn parse_traf(traf: &BoxAt<'_>) -> ParsedTraf {
        let tfhd = child(traf, b"tfhd");
        let tfdt = child(traf, b"tfdt");
        let trun = child(traf, b"trun");
        assert_eq!(tfdt.body[0], 1, "tfdt version 1");
        assert_eq!(
            u32_at(trun.body, 0),
            (1 << 24) | TRUN_FLAGS,
            "trun v1 + flags"
        );
        let count = u32_at(trun.body, 4) as usize;
        assert_eq!(trun.body.len(), 12 + 16 * count);
        let entries = (0..count)
            .map(|i| {
                let p = 12 + 16 * i;
                TrunEntry {
                    duration: u32_at(trun.body, p),
                    size: u32_at(trun.body, p + 4),
                    flags: u32_at(trun.body, p + 8),
                    cts: u32_at(trun.body, p + 12) as i32,
                }
            })
            .collect();
        ParsedTraf {
            track_id: u32_at(tfhd.body, 4),
            tfhd_flags: u32_at(tfhd.body, 0),
            decode_time: u64_at(tfdt.body, 4),
            data_offset: u32_at(trun.body, 8) as i32,
            entries,
        }
    }

    // ---- init segment -----------------------------------------------------------

    fn read_mp4(bytes: &[u8]) -> mp4::Mp4Reader<Cursor<Vec<u8>>> {
        mp4::Mp4Reader::read_header(Cursor::new(bytes.to_vec()), bytes.len() as u64)
            .expect("mp4 crate must parse our output")
    }

    #[test]
    fn init_muxed_reads_back_with_mp4_crate() {
        let init = init_segment(Some(&video_config()), Some(&audio_config()));
        let r = read_mp4(&init);
        assert_eq!(r.major_brand().to_string(), "iso6");
        assert!(r.moov.mvex.is_some(), "mvex present");
        assert_eq!(r.moov.mvhd.timescale, MOVIE_TIMESCALE);
        assert_eq!(r.moov.mvhd.next_track_id, NEXT_TRACK_ID);
        assert_eq!(r.tracks().len(), 2);

        let v = &r.tracks()[&VIDEO_TRACK_ID];
        assert_eq!(v.track_type().unwrap(), mp4::TrackType::Video);
        assert_eq!(v.media_type().unwrap(), mp4::MediaType::H264);
        assert_eq!(v.timescale(), 90_000);
        assert_eq!((v.width(), v.height()), (320, 240));
        assert_eq!(v.trak.tkhd.width.value(), 320);
        assert_eq!(v.trak.tkhd.height.value(), 240);
        assert_eq!(v.trak.tkhd.flags, 3);
        assert_eq!(v.sequence_parameter_set().unwrap(), &AVCC[8..12]);
        assert_eq!(v.picture_parameter_set().unwrap(), &AVCC[15..]);
        assert_eq!(v.language(), "und");
        assert_eq!(v.sample_count(), 0);

        let a = &r.tracks()[&AUDIO_TRACK_ID];
        assert_eq!(a.track_type().unwrap(), mp4::TrackType::Audio);
        assert_eq!(a.media_type().unwrap(), mp4::MediaType::AAC);
        assert_eq!(a.timescale(), 48_000);
        assert_eq!(
            a.audio_profile().unwrap(),
            mp4::AudioObjectType::AacLowComplexity
        );
        assert_eq!(
            a.sample_freq_index().unwrap(),
            mp4::SampleFreqIndex::Freq48000
        );
        assert_eq!(a.channel_config().unwrap(), mp4::ChannelConfig::Stereo);
        assert_eq!(a.trak.tkhd.volume.value(), 1);
        let mp4a = a.trak.mdia.minf.stbl.stsd.mp4a.as_ref().unwrap();
        assert_eq!(mp4a.channelcount, 2);
        assert_eq!(mp4a.samplesize, 16);
        assert_eq!(mp4a.samplerate.value(), 48_000);
        let dc = &mp4a.esds.as_ref().unwrap().es_desc.dec_config;
        assert_eq!((dc.object_type_indication, dc.stream_type), (0x40, 5));
    }

    #[test]
    fn init_single_tracks_read_back() {
        let v = read_mp4(&init_segment(Some(&video_config()), None));
        assert_eq!(v.tracks().len(), 1);
        assert_eq!(v.moov.mvex.as_ref().unwrap().trex.track_id, VIDEO_TRACK_ID);
        let a = read_mp4(&init_segment(None, Some(&audio_config())));
        assert_eq!(a.tracks().len(), 1);
        assert_eq!(a.tracks()[&AUDIO_TRACK_ID].timescale(), 48_000);
        let trex = &a.moov.mvex.as_ref().unwrap().trex;
        assert_eq!(
            (trex.track_id, trex.default_sample_description_index),
            (2, 1)
        );
    }

    #[test]
    fn ftyp_claims_cmaf_only_for_single_track() {
        let check = |init: Bytes, cmfc: bool| {
            let top = boxes(&init, 0);
            assert_eq!(&top[0].kind, b"ftyp");
            let (major, compat) = brands(top[0].body);
            assert_eq!(major, "iso6");
            assert!(compat.iter().any(|b| b == "iso6"));
            assert!(compat.iter().any(|b| b == "isom"));
            assert_eq!(compat.iter().any(|b| b == "cmfc"), cmfc);
        };
        check(init_segment(Some(&video_config()), None), true);
        check(init_segment(None, Some(&audio_config())), true);
        check(
            init_segment(Some(&video_config()), Some(&audio_config())),
            false,
        );
    }

    #[test]
    fn init_box_layout() {
        let init = init_segment(Some(&video_config()), Some(&audio_config()));
        let top = boxes(&init, 0);
        assert_eq!(
            top.iter().map(|b| &b.kind).collect::<Vec<_>>(),
            [b"ftyp", b"moov"]
        );
        let moov = top[1];
        let kinds: Vec<[u8; 4]> = children(&moov).iter().map(|b| b.kind).collect();
        assert_eq!(kinds, [*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
        let traks: Vec<_> = children(&moov)
            .into_iter()
            .filter(|b| &b.kind == b"trak")
            .collect();

        let minf = path(&traks[0], &[b"mdia", b"minf"]);
        let vmhd = child(&minf, b"vmhd");
        assert_eq!(u32_at(vmhd.body, 0), 1, "vmhd flags 1");
        let url = path(&minf, &[b"dinf", b"dref"]);
        assert_eq!(u32_at(url.body, 4), 1, "one dref entry");
        assert_eq!(&url.body[12..16], b"url ");
        assert_eq!(u32_at(url.body, 16), 1, "self-contained");
        let hdlr = path(&traks[0], &[b"mdia", b"hdlr"]);
        assert_eq!(&hdlr.body[8..12], b"vide");
        assert_eq!(hdlr.body.last(), Some(&0), "name null-terminated");
        let mdhd = path(&traks[0], &[b"mdia", b"mdhd"]);
        assert_eq!(u32_at(mdhd.body, 12), 90_000);
        assert_eq!(&mdhd.body[20..22], &LANGUAGE_UND.to_be_bytes());

        let stbl = child(&minf, b"stbl");
        for (kind, empty_len) in [(b"stts", 8), (b"stsc", 8), (b"stsz", 12), (b"stco", 8)] {
            let b = child(&stbl, kind);
            assert_eq!(b.body.len(), empty_len);
            assert!(b.body.iter().all(|&x| x == 0));
        }
        let stsd = child(&stbl, b"stsd");
        assert_eq!(u32_at(stsd.body, 4), 1);
        let avc1 = boxes(&stsd.body[8..], stsd.body_start + 8)[0];
        assert_eq!(&avc1.kind, b"avc1");
        assert_eq!(&avc1.body[24..28], &[0x01, 0x40, 0x00, 0xF0], "320x240");
        assert_eq!(
            &avc1.body[74..78],
            &[0x00, 0x18, 0xFF, 0xFF],
            "depth, pre_defined"
        );
        let avcc = boxes(&avc1.body[78..], avc1.body_start + 78)[0];
        assert_eq!(
            (&avcc.kind, avcc.body),
            (b"avcC", AVCC),
            "avcC copied verbatim"
        );

        let smhd = path(&traks[1], &[b"mdia", b"minf", b"smhd"]);
        assert_eq!(smhd.body, &[0u8; 8]);
    }

    #[test]
    fn esds_bytes_are_exact() {
        let init = init_segment(None, Some(&audio_config()));
        let moov = boxes(&init, 0)[1];
        let stsd = path(&moov, &[b"trak", b"mdia", b"minf", b"stbl", b"stsd"]);
        let mp4a = boxes(&stsd.body[8..], 0)[0];
        assert_eq!(&mp4a.body[16..20], &[0, 2, 0, 16], "channels, samplesize");
        assert_eq!(u32_at(mp4a.body, 24), 48_000 << 16);
        let esds = boxes(&mp4a.body[28..], 0)[0];
        assert_eq!(&esds.kind, b"esds");
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 0, 0, 0,                     // version, flags
            0x03, 25, 0, 0, 0,              // ES_Descriptor, ES_ID 0, flags 0
            0x04, 17, 0x40, 0x15, 0, 0, 0,  // DecoderConfig: AAC, audio, bufferSizeDB 0
            0, 0, 0, 0, 0, 0, 0, 0,         // max/avg bitrate
            0x05, 2, 0x11, 0x90,            // DecoderSpecificInfo = ASC
            0x06, 1, 2,                     // SLConfig predefined 2
        ];
        assert_eq!(esds.body, expected);
    }

    #[test]
    fn odd_audio_parameters_do_not_panic() {
        let a = AudioConfig {
            asc: Bytes::new(),
            object_type: 2,
            sample_rate: 96_000,
            channels: 0,
            samples_per_frame: 1024,
        };
        assert_eq!(
            audio_timescale(&AudioConfig {
                sample_rate: 0,
                ..a.clone()
            }),
            1
        );
        let v = VideoConfig {
            width: 100_000,
            height: 0,
            avcc: Bytes::new(),
            ..video_config()
        };
        let init = init_segment(Some(&v), Some(&a));
        let moov = boxes(&init, 0)[1];
        assert_eq!(children(&moov).len(), 4);
    }

    // ---- fragments --------------------------------------------------------------

    #[test]
    fn fragments_read_back_with_mp4_crate() {
        let mut file = init_segment(Some(&video_config()), Some(&audio_config())).to_vec();
        file.extend_from_slice(&fragment(1, &[video_run(0, 10), audio_run(0, 15)], true));
        file.extend_from_slice(&fragment(
            2,
            &[video_run(30_000, 10), audio_run(15_360, 16)],
            false,
        ));
        file.extend_from_slice(&fragment(3, &[video_run(60_000, 5)], true));
        let r = read_mp4(&file);

        assert!(r.is_fragmented());
        assert_eq!(r.moofs.len(), 3);
        let seqs: Vec<u32> = r.moofs.iter().map(|m| m.mfhd.sequence_number).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(r.moofs[2].trafs.len(), 1);
        assert_eq!(r.tracks()[&VIDEO_TRACK_ID].sample_count(), 25);
        assert_eq!(r.tracks()[&AUDIO_TRACK_ID].sample_count(), 31);

        let traf = &r.moofs[1].trafs[0];
        assert_eq!(traf.tfhd.track_id, VIDEO_TRACK_ID);
        assert_eq!(traf.tfhd.flags, TFHD_DEFAULT_BASE_IS_MOOF);
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 30_000);
        let trun = traf.trun.as_ref().unwrap();
        assert_eq!(trun.version, 1);
        assert_eq!(trun.sample_count, 10);
        assert_eq!(trun.sample_durations, vec![3000; 10]);
        assert_eq!(
            trun.sample_cts[1] as i32, -3000,
            "signed composition offset"
        );
        assert_eq!(trun.sample_flags[0], SAMPLE_FLAGS_SYNC);
        assert_eq!(trun.sample_flags[1], SAMPLE_FLAGS_NON_SYNC);
        let audio = &r.moofs[1].trafs[1];
        assert_eq!(audio.tfdt.as_ref().unwrap().base_media_decode_time, 15_360);
        let atrun = audio.trun.as_ref().unwrap();
        assert!(atrun.sample_flags.iter().all(|&f| f == SAMPLE_FLAGS_SYNC));
    }

    /// Checks every trun entry against its run and every data offset against the mdat bytes.
    fn assert_fragment_matches(frag: &[u8], seq: u32, runs: &[TrackRun], styp: bool) {
        let top = boxes(frag, 0);
        let kinds: Vec<[u8; 4]> = top.iter().map(|b| b.kind).collect();
        if styp {
            assert_eq!(kinds, [*b"styp", *b"moof", *b"mdat"]);
        } else {
            assert_eq!(kinds, [*b"moof", *b"mdat"]);
        }
        let (moof, mdat) = (top[kinds.len() - 2], top[kinds.len() - 1]);
        assert_eq!(u32_at(child(&moof, b"mfhd").body, 4), seq);

        let non_empty: Vec<&TrackRun> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
        let trafs: Vec<_> = children(&moof)
            .into_iter()
            .filter(|b| &b.kind == b"traf")
            .collect();
        assert_eq!(trafs.len(), non_empty.len());

        let mut expected_offset = moof.size + 8;
        for (traf, run) in trafs.iter().zip(&non_empty) {
            let t = parse_traf(traf);
            assert_eq!(t.track_id, run.track_id);
            assert_eq!(t.tfhd_flags, TFHD_DEFAULT_BASE_IS_MOOF);
            assert_eq!(t.decode_time, run.base_decode_time);
            assert_eq!(t.data_offset as usize, expected_offset);
            let mut pos = moof.start + t.data_offset as usize;
            for (e, s) in t.entries.iter().zip(&run.samples) {
                let want = TrunEntry {
                    duration: s.duration,
                    size: s.data.len() as u32,
                    flags: sample_flags(s.keyframe),
                    cts: s.cts,
                };
                assert_eq!(e, &want);
                assert_eq!(&frag[pos..pos + s.data.len()], &s.data[..], "sample bytes");
                pos += s.data.len();
            }
            assert_eq!(t.entries.len(), run.samples.len());
            expected_offset = pos - moof.start;
        }
        assert_eq!(mdat.start + mdat.size, frag.len());
        assert_eq!(
            moof.start + expected_offset,
            frag.len(),
            "mdat holds exactly the samples"
        );
    }

    #[test]
    fn data_offsets_point_at_sample_bytes() {
        let runs = [video_run(90_000, 7), audio_run(48_000, 11)];
        assert_fragment_matches(&fragment(7, &runs, false), 7, &runs, false);
        assert_fragment_matches(&fragment(8, &runs, true), 8, &runs, true);
        let reversed = [audio_run(5, 3), video_run(u64::MAX - 1, 2)];
        assert_fragment_matches(
            &fragment(u32::MAX, &reversed, false),
            u32::MAX,
            &reversed,
            false,
        );
    }

    #[test]
    fn empty_runs_are_skipped() {
        let runs = [audio_run(0, 0), video_run(0, 3), audio_run(0, 0)];
        let frag = fragment(1, &runs, false);
        assert_fragment_matches(&frag, 1, &runs, false);

        let nothing = fragment(2, &[audio_run(0, 0)], true);
        let top = boxes(&nothing, 0);
        assert_eq!(children(&top[1]).len(), 1, "moof with mfhd only");
        assert_eq!(top[2].size, 8, "empty mdat");
        assert_eq!(fragment(3, &[], false).len(), 8 + 16 + 8);
    }

    #[test]
    fn styp_brands_follow_track_count() {
        let single = fragment(1, &[video_run(0, 2)], true);
        let (major, compat) = brands(boxes(&single, 0)[0].body);
        assert_eq!(
            (major.as_str(), compat),
            ("cmfs", vec!["cmfs".into(), "msdh".into()])
        );
        let muxed = fragment(1, &[video_run(0, 2), audio_run(0, 2)], true);
        let (major, compat) = brands(boxes(&muxed, 0)[0].body);
        assert_eq!((major.as_str(), compat), ("msdh", vec!["msdh".to_string()]));
    }

    #[test]
    fn helpers_clamp_instead_of_wrapping() {
        assert_eq!(fixed_16_16(320), 320 << 16);
        assert_eq!(fixed_16_16(70_000), 0xFFFF_0000);
        assert_eq!(i32_field(12), 12);
        assert_eq!(i32_field(usize::MAX), i32::MAX as u32);
        assert_eq!(mdat_header_len(100), 8);
        assert_eq!(mdat_header_len(u32::MAX as usize), 16);
        let mut b = BytesMut::new();
        write_mdat_header(&mut b, u32::MAX as usize);
        assert_eq!(&b[..8], &[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        assert_eq!(u64_at(&b, 8), u32::MAX as u64 + 16);
    }

    // ---- end to end with ffmpeg -------------------------------------------------

    const FFPROBE: &str = "/usr/bin/ffprobe";
    const FFMPEG: &str = "/usr/bin/ffmpeg";

    /// 2 s of testsrc2 320x240@30 (x264 High, GOP 30, 2 B-frames) + 48 kHz stereo AAC-LC,
    /// 51 KB. Made with: `ffmpeg -f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i
    /// sine=frequency=440:sample_rate=48000 -t 2 -c:v libx264 -preset veryfast -profile:v
    /// high -g 30 -keyint_min 30 -sc_threshold 0 -bf 2 -b:v 150k -pix_fmt yuv420p -c:a aac
    /// -b:a 48k -ac 2 -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a
    /// +bitexact -movflags +faststart fixtures/cmaf_src.mp4`.
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cmaf_src.mp4")
    }

    /// A sample with its decode time, in its track's timescale.
    struct Timed {
        dts: u64,
        sample: Sample,
    }

    struct Source {
        video: VideoConfig,
        audio: AudioConfig,
        frames: Vec<Timed>,
        aac: Vec<Timed>,
    }

    /// Rebuilds the avcC record from the mp4 crate's parsed form.
    fn avcc_record(t: &mp4::Mp4Track) -> Bytes {
        let a = &t.trak.mdia.minf.stbl.stsd.avc1.as_ref().unwrap().avcc;
        let mut out = vec![
            a.configuration_version,
            a.avc_profile_indication,
            a.profile_compatibility,
            a.avc_level_indication,
            0xFC | a.length_size_minus_one,
            0xE0 | a.sequence_parameter_sets.len() as u8,
        ];
        for nal in &a.sequence_parameter_sets {
            out.extend_from_slice(&(nal.bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&nal.bytes);
        }
        out.push(a.picture_parameter_sets.len() as u8);
        for nal in &a.picture_parameter_sets {
            out.extend_from_slice(&(nal.bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&nal.bytes);
        }
        out.into()
    }

    fn read_track(
        r: &mut mp4::Mp4Reader<std::io::BufReader<std::fs::File>>,
        id: u32,
        rescale: impl Fn(u64) -> u64,
    ) -> Vec<Timed> {
        let count = r.sample_count(id).unwrap();
        let raw: Vec<mp4::Mp4Sample> = (1..=count)
            .map(|i| r.read_sample(id, i).unwrap().unwrap())
            .collect();
        raw.iter()
            .enumerate()
            .map(|(i, s)| {
                let dts = rescale(s.start_time);
                let next = raw
                    .get(i + 1)
                    .map_or(rescale(s.start_time + s.duration as u64), |n| {
                        rescale(n.start_time)
                    });
                let pts = rescale(s.start_time + s.rendering_offset as u64);
                Timed {
                    dts,
                    sample: Sample {
                        duration: (next - dts) as u32,
                        cts: (pts as i64 - dts as i64) as i32,
                        keyframe: s.is_sync,
                        data: s.bytes.clone(),
                    },
                }
            })
            .collect()
    }

    fn read_source() -> Source {
        let path = fixture();
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let size = file.metadata().unwrap().len();
        let mut r = mp4::Mp4Reader::read_header(std::io::BufReader::new(file), size).unwrap();
        let find = |t: mp4::TrackType| {
            let found = r.tracks().values().find(|x| x.track_type().unwrap() == t);
            found.unwrap().track_id()
        };
        let (vid, aid) = (find(mp4::TrackType::Video), find(mp4::TrackType::Audio));
        let vt = &r.tracks()[&vid];
        let avc1 = vt.trak.mdia.minf.stbl.stsd.avc1.as_ref().unwrap();
        let video = VideoConfig {
            avcc: avcc_record(vt),
            width: u32::from(vt.width()),
            height: u32::from(vt.height()),
            profile_idc: avc1.avcc.avc_profile_indication,
            constraints: avc1.avcc.profile_compatibility,
            level_idc: avc1.avcc.avc_level_indication,
            fps: None,
        };
        let vscale = u64::from(vt.timescale());
        let at = &r.tracks()[&aid];
        let dsi = &at
            .trak
            .mdia
            .minf
            .stbl
            .stsd
            .mp4a
            .as_ref()
            .unwrap()
            .esds
            .as_ref()
            .unwrap();
        let dsi = &dsi.es_desc.dec_config.dec_specific;
        let asc = ((u16::from(dsi.profile) << 11)
            | (u16::from(dsi.freq_index) << 7)
            | (u16::from(dsi.chan_conf) << 3))
            .to_be_bytes();
        let audio = AudioConfig {
            asc: Bytes::copy_from_slice(&asc),
            object_type: dsi.profile,
            sample_rate: at.timescale(),
            channels: dsi.chan_conf,
            samples_per_frame: 1024,
        };
        let frames = read_track(&mut r, vid, |t| t * u64::from(TIMESCALE) / vscale);
        let aac = read_track(&mut r, aid, |t| t);
        Source {
            video,
            audio,
            frames,
            aac,
        }
    }

    /// Packages the source like a live packager would: a fragment per 10 video
    /// frames with the audio that decodes in the same span, styp at every keyframe.
    fn package(src: &Source) -> Vec<u8> {
        let mut out = init_segment(Some(&src.video), Some(&src.audio)).to_vec();
        let rate = u64::from(audio_timescale(&src.audio));
        let mut audio = src.aac.iter().peekable();
        let chunks: Vec<&[Timed]> = src.frames.chunks(10).collect();
        for (k, chunk) in chunks.iter().enumerate() {
            let last = k + 1 == chunks.len();
            let end =
                chunk[chunk.len() - 1].dts + u64::from(chunk[chunk.len() - 1].sample.duration);
            let mut a: Vec<&Timed> = Vec::new();
            while let Some(s) = audio.next_if(|s| last || s.dts * 90_000 < end * rate) {
                a.push(s);
            }
            let runs = [
                TrackRun {
                    track_id: VIDEO_TRACK_ID,
                    base_decode_time: chunk[0].dts,
                    samples: chunk.iter().map(|t| t.sample.clone()).collect(),
                },
                TrackRun {
                    track_id: AUDIO_TRACK_ID,
                    base_decode_time: a.first().map_or(0, |t| t.dts),
                    samples: a.iter().map(|t| t.sample.clone()).collect(),
                },
            ];
            let frag = fragment(k as u32 + 1, &runs, chunk[0].sample.keyframe);
            assert_fragment_matches(&frag, k as u32 + 1, &runs, chunk[0].sample.keyframe);
            out.extend_from_slice(&frag);
        }
        out
    }

    fn run(tool: &str, args: &[&str]) -> (String, String) {
        let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
            panic!("{tool} is required for this test (CI installs ffmpeg): {e}")
        });
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{tool} {args:?} failed: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("ffprobe json: {e}: {s}"))
    }

    #[test]
    fn ffmpeg_plays_packaged_fixture() {
        let src = read_source();
        assert_eq!(src.frames.len(), 60);
        assert!(
            src.frames.iter().any(|f| f.sample.cts != 0),
            "fixture has B-frames"
        );
        let bytes = package(&src);
        let out = std::env::temp_dir().join(format!("cmaf_e2e_{}.mp4", std::process::id()));
        std::fs::write(&out, &bytes).unwrap();
        let file = out.to_str().unwrap();

        // The mp4 crate agrees on the structure.
        let r = read_mp4(&bytes);
        assert_eq!(r.moofs.len(), 6);
        assert_eq!(r.tracks()[&VIDEO_TRACK_ID].sample_count(), 60);
        assert_eq!(
            r.tracks()[&AUDIO_TRACK_ID].sample_count(),
            src.aac.len() as u32
        );

        let (probe, _) = run(
            FFPROBE,
            &[
                "-v",
                "error",
                "-count_frames",
                "-show_streams",
                "-of",
                "json",
                file,
            ],
        );
        let streams = json(&probe)["streams"].as_array().cloned().unwrap();
        assert_eq!(streams.len(), 2, "{probe}");
        let v = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
        assert_eq!(v["codec_name"], "h264");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(320), Some(240))
        );
        assert_eq!(v["nb_read_frames"], "60");
        assert_eq!(v["time_base"], "1/90000");
        let a = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
        assert_eq!(a["codec_name"], "aac");
        assert_eq!(a["sample_rate"], "48000");
        assert_eq!(a["channels"].as_u64(), Some(2));
        assert_eq!(a["nb_read_frames"], src.aac.len().to_string());

        // Timestamps and keyframe flags survive exactly (cts offsets exercised).
        let (pk, _) = run(
            FFPROBE,
            &[
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=pts,dts,flags",
                "-of",
                "json",
                file,
            ],
        );
        let packets = json(&pk)["packets"].as_array().cloned().unwrap();
        assert_eq!(packets.len(), 60);
        for (p, f) in packets.iter().zip(&src.frames) {
            assert_eq!(p["dts"].as_i64(), Some(f.dts as i64));
            assert_eq!(
                p["pts"].as_i64(),
                Some(f.dts as i64 + i64::from(f.sample.cts))
            );
            let key = p["flags"].as_str().unwrap().starts_with('K');
            assert_eq!(key, f.sample.keyframe);
        }

        // Full decode: no errors, and the pictures are identical to the source's.
        let (_, err) = run(FFMPEG, &["-v", "error", "-i", file, "-f", "null", "-"]);
        assert!(err.trim().is_empty(), "ffmpeg decode errors: {err}");
        let md5 = |f: &str| {
            let args = [
                "-v",
                "error",
                "-i",
                f,
                "-map",
                "0:v",
                "-fps_mode",
                "passthrough",
            ];
            run(FFMPEG, &[&args[..], &["-f", "md5", "-"]].concat()).0
        };
        let ours = md5(file);
        assert!(ours.starts_with("MD5="), "{ours}");
        assert_eq!(ours, md5(fixture().to_str().unwrap()));
        let _ = std::fs::remove_file(&out);
    }

    #[test]
    fn fragment_buffer_is_allocated_once() {
        let runs: Vec<TrackRun> = [(VIDEO_TRACK_ID, 6), (AUDIO_TRACK_ID, 12)]
            .iter()
            .map(|&(track_id, n)| TrackRun {
                track_id,
                base_decode_time: 0,
                samples: (0..n)
                    .map(|i| Sample {
                        duration: 3000,
                        cts: 0,
                        keyframe: i == 0,
                        data: Bytes::from(vec![0u8; 20_000]),
                    })
                    .collect(),
            })
            .collect();
        let frag = fragment(1, &runs, true);
        let data: usize = 18 * 20_000;
        let headers = frag.len() - data;
        // Within the reservation, so the buffer never reallocated to twice its size.
        assert!(
            headers <= 128 + 2 * 80 + 18 * 16,
            "headers {headers} exceed the reservation"
        );
    }
}
