//! H.264: avcC records (ISO/IEC 14496-15), SPS parsing (ITU-T H.264 §7.3.2.1)
//! and walking AVCC length-prefixed access units.
//!
//! Everything here is sans-IO and total: malformed input yields an
//! [`H264Error`] (or `false`/a short iterator), never a panic.

use super::bits::{BitError, BitReader};
use super::VideoConfig;
use bytes::Bytes;

/// NAL unit type of an IDR slice: the only H.264 random access point we trust.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// NAL unit type of filler data.
pub const NAL_FILLER: u8 = 12;

/// Bytes of the big-endian NAL length prefix we accept in AVCC data.
const NAL_LENGTH_SIZE: u8 = 4;

/// Why an avcC record, SPS or AVCC access unit was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H264Error {
    #[error("avcC record truncated: need {need} bytes, got {got}")]
    RecordTruncated { need: usize, got: usize },
    #[error("avcC configurationVersion is {0}, expected 1")]
    UnsupportedRecordVersion(u8),
    #[error(
        "avcC uses {0}-byte NAL unit lengths; only 4-byte lengths are supported (reconfigure the encoder)"
    )]
    UnsupportedNalLengthSize(u8),
    #[error("avcC record carries no SPS")]
    NoSps,
    #[error("avcC record carries no PPS")]
    NoPps,
    #[error("expected an SPS NAL unit (type 7), got NAL unit type {0}")]
    NotSps(u8),
    #[error("SPS truncated: ran out of bits while reading {0}")]
    SpsTruncated(&'static str),
    #[error("SPS has an Exp-Golomb code longer than 32 bits in {0}")]
    ExpGolombOverflow(&'static str),
    #[error("invalid SPS: {0}")]
    InvalidSps(&'static str),
    #[error("AVCC NAL unit at byte {offset} claims {claimed} bytes but only {available} remain")]
    NalFraming {
        offset: usize,
        claimed: usize,
        available: usize,
    },
}

/// Bit reads only happen inside an SPS.
impl From<BitError> for H264Error {
    fn from(e: BitError) -> Self {
        match e {
            BitError::Truncated(field) => H264Error::SpsTruncated(field),
            BitError::ExpGolombOverflow(field) => H264Error::ExpGolombOverflow(field),
        }
    }
}

/// Fields of a sequence parameter set that ingest and packaging care about.
#[derive(Debug, Clone, PartialEq)]
pub struct Sps {
    pub profile_idc: u8,
    /// constraint_set0..5 flags plus the two reserved bits, as one byte.
    pub constraints: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    /// 0 = monochrome, 1 = 4:2:0, 2 = 4:2:2, 3 = 4:4:4.
    pub chroma_format_idc: u8,
    pub separate_colour_plane: bool,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub log2_max_frame_num: u8,
    pub pic_order_cnt_type: u8,
    pub max_num_ref_frames: u32,
    /// False for interlaced-capable streams (fields or MBAFF).
    pub frame_mbs_only: bool,
    /// Displayed size in luma samples, after frame cropping.
    pub width: u32,
    pub height: u32,
    /// VUI timing info, if the SPS carries it and the VUI parsed cleanly.
    pub timing: Option<VuiTiming>,
}

/// VUI timing info: one tick is `num_units_in_tick / time_scale` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VuiTiming {
    pub num_units_in_tick: u32,
    pub time_scale: u32,
    pub fixed_frame_rate: bool,
}

impl VuiTiming {
    /// Frame rate; a frame is two field ticks, hence the factor 2.
    pub fn fps(&self) -> Option<f64> {
        if self.num_units_in_tick == 0 || self.time_scale == 0 {
            return None;
        }
        Some(f64::from(self.time_scale) / (2.0 * f64::from(self.num_units_in_tick)))
    }
}

impl Sps {
    /// Frames per second from VUI timing, when signalled.
    pub fn fps(&self) -> Option<f64> {
        self.timing.as_ref().and_then(VuiTiming::fps)
    }
}

/// The parameter sets held in an avcC record, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcParameterSets<'a> {
    pub profile_indication: u8,
    pub profile_compatibility: u8,
    pub level_indication: u8,
    /// SPS NAL units, with their one-byte NAL header.
    pub sps: Vec<&'a [u8]>,
    /// PPS NAL units, with their one-byte NAL header.
    pub pps: Vec<&'a [u8]>,
}

/// Parses an AVCDecoderConfigurationRecord into the shared [`VideoConfig`].
///
/// Only 4-byte NAL lengths are accepted because [`crate::media::Frame`] data
/// is defined as 4-byte length-prefixed; rewriting 1/2-byte prefixes is not
/// worth it for encoders that nobody ships with such settings.
pub fn parse_avc_decoder_config(record: &[u8]) -> Result<VideoConfig, H264Error> {
    let sets = parse_avc_parameter_sets(record)?;
    let first_sps = sets.sps.first().ok_or(H264Error::NoSps)?;
    let sps = parse_sps(first_sps)?;
    Ok(VideoConfig {
        avcc: Bytes::copy_from_slice(record),
        width: sps.width,
        height: sps.height,
        profile_idc: sps.profile_idc,
        constraints: sps.constraints,
        level_idc: sps.level_idc,
        fps: sps.fps(),
    })
}

/// Builds an AVCDecoderConfigurationRecord (4-byte NAL lengths) from one SPS
/// and one PPS NAL unit, each with its NAL header byte.
///
/// Used where parameter sets arrive in-band (MPEG-TS over SRT). The layout
/// matches what ffmpeg writes into FLV/MP4, including the chroma/bit-depth
/// extension for profiles other than Baseline/Main/Extended, so an SRT
/// publish yields the same `avcC` bytes as an RTMP publish of the same encode.
pub fn avc_decoder_config(sps: &[u8], pps: &[u8]) -> Result<Bytes, H264Error> {
    let parsed = parse_sps(sps)?;
    if nal_unit_type(pps) != Some(NAL_PPS) {
        return Err(H264Error::NoPps);
    }
    let (Ok(sps_len), Ok(pps_len)) = (u16::try_from(sps.len()), u16::try_from(pps.len())) else {
        return Err(H264Error::InvalidSps(
            "parameter set longer than 65535 bytes",
        ));
    };
    let mut rec = Vec::with_capacity(sps.len() + pps.len() + 15);
    rec.extend_from_slice(&[
        1,
        parsed.profile_idc,
        parsed.constraints,
        parsed.level_idc,
        0xfc | (NAL_LENGTH_SIZE - 1),
        0xe1,
    ]);
    rec.extend_from_slice(&sps_len.to_be_bytes());
    rec.extend_from_slice(sps);
    rec.push(1);
    rec.extend_from_slice(&pps_len.to_be_bytes());
    rec.extend_from_slice(pps);
    if !matches!(parsed.profile_idc, 66 | 77 | 88) {
        rec.extend_from_slice(&[
            0xfc | parsed.chroma_format_idc,
            0xf8 | (parsed.bit_depth_luma - 8),
            0xf8 | (parsed.bit_depth_chroma - 8),
            0, // numOfSequenceParameterSetExt
        ]);
    }
    Ok(Bytes::from(rec))
}

/// Splits an avcC record into its SPS and PPS lists, validating the framing.
///
/// Trailing bytes after the PPS list (the optional high-profile extension,
/// or encoder padding) are ignored: many encoders omit or mangle them.
pub fn parse_avc_parameter_sets(record: &[u8]) -> Result<AvcParameterSets<'_>, H264Error> {
    let mut r = RecordReader {
        data: record,
        pos: 0,
    };
    let [version, profile_indication, profile_compatibility, level_indication, length_size, sps_count] =
        r.array()?;
    if version != 1 {
        return Err(H264Error::UnsupportedRecordVersion(version));
    }
    let nal_length_size = (length_size & 0x03) + 1;
    if nal_length_size != NAL_LENGTH_SIZE {
        return Err(H264Error::UnsupportedNalLengthSize(nal_length_size));
    }
    let sps = r.parameter_sets(usize::from(sps_count & 0x1f))?;
    let [pps_count] = r.array()?;
    let pps = r.parameter_sets(usize::from(pps_count))?;
    if sps.is_empty() {
        return Err(H264Error::NoSps);
    }
    if pps.is_empty() {
        return Err(H264Error::NoPps);
    }
    Ok(AvcParameterSets {
        profile_indication,
        profile_compatibility,
        level_indication,
        sps,
        pps,
    })
}

/// Byte cursor over an avcC record whose errors report the missing length.
struct RecordReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> RecordReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], H264Error> {
        let need = self.pos.saturating_add(n);
        let got = self.data.len();
        let bytes = self
            .data
            .get(self.pos..need)
            .ok_or(H264Error::RecordTruncated { need, got })?;
        self.pos = need;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], H264Error> {
        let bytes = self.take(N)?;
        // take() returned exactly N bytes.
        bytes.try_into().map_err(|_| H264Error::RecordTruncated {
            need: self.pos,
            got: self.data.len(),
        })
    }

    /// Reads `count` entries of `u16 length` + NAL unit.
    fn parameter_sets(&mut self, count: usize) -> Result<Vec<&'a [u8]>, H264Error> {
        (0..count)
            .map(|_| {
                let len = u16::from_be_bytes(self.array()?);
                self.take(usize::from(len))
            })
            .collect()
    }
}

/// Parses an SPS NAL unit (with its NAL header byte, emulation prevention intact).
pub fn parse_sps(nal: &[u8]) -> Result<Sps, H264Error> {
    let (&header, payload) = nal
        .split_first()
        .ok_or(H264Error::SpsTruncated("NAL header"))?;
    if header & 0x1f != NAL_SPS {
        return Err(H264Error::NotSps(header & 0x1f));
    }
    let rbsp = unescape_rbsp(payload);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.byte("profile_idc")?;
    let constraints = r.byte("constraint flags")?;
    let level_idc = r.byte("level_idc")?;
    let seq_parameter_set_id = r.ue("seq_parameter_set_id")?;
    if seq_parameter_set_id > 31 {
        return Err(H264Error::InvalidSps("seq_parameter_set_id above 31"));
    }
    let chroma = if has_chroma_info(profile_idc) {
        read_chroma_info(&mut r)?
    } else {
        ChromaInfo::default()
    };
    let log2_max_frame_num = bounded_ue(&mut r, "log2_max_frame_num_minus4", 12)? + 4;
    let pic_order_cnt_type = bounded_ue(&mut r, "pic_order_cnt_type", 2)?;
    skip_pic_order_cnt(&mut r, pic_order_cnt_type)?;
    let max_num_ref_frames = r.ue("max_num_ref_frames")?;
    r.bit("gaps_in_frame_num_value_allowed_flag")?;
    let width_mbs = u64::from(r.ue("pic_width_in_mbs_minus1")?) + 1;
    let height_map_units = u64::from(r.ue("pic_height_in_map_units_minus1")?) + 1;
    let frame_mbs_only = r.bit("frame_mbs_only_flag")?;
    if !frame_mbs_only {
        r.bit("mb_adaptive_frame_field_flag")?;
    }
    r.bit("direct_8x8_inference_flag")?;
    let crop = read_crop(&mut r)?;
    let (width, height) =
        display_size(&chroma, frame_mbs_only, width_mbs, height_map_units, &crop)?;
    let timing = if r.bit("vui_parameters_present_flag")? {
        // A broken VUI must not cost the stream; we only lose the frame rate.
        read_vui_timing(&mut r).ok().flatten()
    } else {
        None
    };
    Ok(Sps {
        profile_idc,
        constraints,
        level_idc,
        seq_parameter_set_id,
        chroma_format_idc: chroma.format_idc,
        separate_colour_plane: chroma.separate_colour_plane,
        bit_depth_luma: chroma.bit_depth_luma,
        bit_depth_chroma: chroma.bit_depth_chroma,
        log2_max_frame_num,
        pic_order_cnt_type,
        max_num_ref_frames,
        frame_mbs_only,
        width,
        height,
        timing,
    })
}

/// Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists.
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

struct ChromaInfo {
    format_idc: u8,
    separate_colour_plane: bool,
    bit_depth_luma: u8,
    bit_depth_chroma: u8,
}

impl Default for ChromaInfo {
    /// Profiles without the fields imply 8-bit 4:2:0.
    fn default() -> Self {
        ChromaInfo {
            format_idc: 1,
            separate_colour_plane: false,
            bit_depth_luma: 8,
            bit_depth_chroma: 8,
        }
    }
}

fn read_chroma_info(r: &mut BitReader) -> Result<ChromaInfo, H264Error> {
    let format_idc = bounded_ue(r, "chroma_format_idc", 3)?;
    let separate_colour_plane = format_idc == 3 && r.bit("separate_colour_plane_flag")?;
    let bit_depth_luma = bounded_ue(r, "bit_depth_luma_minus8", 6)? + 8;
    let bit_depth_chroma = bounded_ue(r, "bit_depth_chroma_minus8", 6)? + 8;
    r.bit("qpprime_y_zero_transform_bypass_flag")?;
    if r.bit("seq_scaling_matrix_present_flag")? {
        let lists = if format_idc == 3 { 12 } else { 8 };
        for i in 0..lists {
            if r.bit("seq_scaling_list_present_flag")? {
                skip_scaling_list(r, if i < 6 { 16 } else { 64 })?;
            }
        }
    }
    Ok(ChromaInfo {
        format_idc,
        separate_colour_plane,
        bit_depth_luma,
        bit_depth_chroma,
    })
}

/// Consumes one scaling_list(); its values do not affect anything we report.
fn skip_scaling_list(r: &mut BitReader, size: usize) -> Result<(), H264Error> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se("delta_scale")?;
            if !(-128..=127).contains(&delta) {
                return Err(H264Error::InvalidSps("delta_scale outside -128..=127"));
            }
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn skip_pic_order_cnt(r: &mut BitReader, pic_order_cnt_type: u8) -> Result<(), H264Error> {
    match pic_order_cnt_type {
        0 => {
            bounded_ue(r, "log2_max_pic_order_cnt_lsb_minus4", 12)?;
        }
        1 => {
            r.bit("delta_pic_order_always_zero_flag")?;
            r.se("offset_for_non_ref_pic")?;
            r.se("offset_for_top_to_bottom_field")?;
            let cycle = bounded_ue(r, "num_ref_frames_in_pic_order_cnt_cycle", 255)?;
            for _ in 0..cycle {
                r.se("offset_for_ref_frame")?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// frame_crop_{left,right,top,bottom}_offset, zero when cropping is absent.
#[derive(Default)]
struct Crop {
    left: u64,
    right: u64,
    top: u64,
    bottom: u64,
}

fn read_crop(r: &mut BitReader) -> Result<Crop, H264Error> {
    if !r.bit("frame_cropping_flag")? {
        return Ok(Crop::default());
    }
    Ok(Crop {
        left: r.ue("frame_crop_left_offset")?.into(),
        right: r.ue("frame_crop_right_offset")?.into(),
        top: r.ue("frame_crop_top_offset")?.into(),
        bottom: r.ue("frame_crop_bottom_offset")?.into(),
    })
}

/// Applies H.264 §7.4.2.1.1 (CropUnitX/CropUnitY) to the coded macroblock size.
fn display_size(
    chroma: &ChromaInfo,
    frame_mbs_only: bool,
    width_mbs: u64,
    height_map_units: u64,
    crop: &Crop,
) -> Result<(u32, u32), H264Error> {
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if chroma.separate_colour_plane {
        0
    } else {
        chroma.format_idc
    };
    let (sub_width, sub_height) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1), // 4:4:4, or monochrome / separate planes where crop units are luma samples
    };
    let coded_width = width_mbs * 16;
    let coded_height = height_map_units * 16 * field_factor;
    let crop_x = (crop.left + crop.right) * sub_width;
    let crop_y = (crop.top + crop.bottom) * sub_height * field_factor;
    if crop_x >= coded_width || crop_y >= coded_height {
        return Err(H264Error::InvalidSps(
            "frame cropping removes the whole picture",
        ));
    }
    let width = u32::try_from(coded_width - crop_x);
    let height = u32::try_from(coded_height - crop_y);
    match (width, height) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(H264Error::InvalidSps("picture size exceeds 32 bits")),
    }
}

/// Reads the VUI up to and including timing_info; later fields are irrelevant.
fn read_vui_timing(r: &mut BitReader) -> Result<Option<VuiTiming>, H264Error> {
    if r.bit("aspect_ratio_info_present_flag")? && r.byte("aspect_ratio_idc")? == 255 {
        r.bits(32, "sar_width/sar_height")?;
    }
    if r.bit("overscan_info_present_flag")? {
        r.bit("overscan_appropriate_flag")?;
    }
    if r.bit("video_signal_type_present_flag")? {
        r.bits(4, "video_format/video_full_range_flag")?;
        if r.bit("colour_description_present_flag")? {
            r.bits(24, "colour description")?;
        }
    }
    if r.bit("chroma_loc_info_present_flag")? {
        r.ue("chroma_sample_loc_type_top_field")?;
        r.ue("chroma_sample_loc_type_bottom_field")?;
    }
    if !r.bit("timing_info_present_flag")? {
        return Ok(None);
    }
    Ok(Some(VuiTiming {
        num_units_in_tick: r.bits(32, "num_units_in_tick")?,
        time_scale: r.bits(32, "time_scale")?,
        fixed_frame_rate: r.bit("fixed_frame_rate_flag")?,
    }))
}

/// Reads an ue(v) that the spec bounds to `max`, so it can be narrowed to u8.
fn bounded_ue(r: &mut BitReader, field: &'static str, max: u8) -> Result<u8, H264Error> {
    match u8::try_from(r.ue(field)?) {
        Ok(v) if v <= max => Ok(v),
        _ => Err(H264Error::InvalidSps(field)),
    }
}

/// Drops emulation-prevention bytes: `00 00 03` becomes `00 00`.
pub fn unescape_rbsp(nal_payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal_payload.len());
    let mut zeros = 0usize;
    for &b in nal_payload {
        if zeros >= 2 && b == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Iterates the NAL units of 4-byte length-prefixed (AVCC) data.
///
/// Stops at the first unit whose length prefix overruns the buffer, so a
/// truncated access unit yields only its complete units. Empty units are skipped.
pub fn avcc_nal_units(data: &[u8]) -> AvccNalUnits<'_> {
    AvccNalUnits { rest: data }
}

/// Iterator returned by [`avcc_nal_units`].
#[derive(Debug, Clone)]
pub struct AvccNalUnits<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AvccNalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let (nal, rest) = split_nal(self.rest)?;
            self.rest = rest;
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// Splits one length-prefixed NAL unit off the front of `data`.
fn split_nal(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = nal_length(data)?.checked_add(4)?;
    Some((data.get(4..end)?, data.get(end..)?))
}

/// The big-endian length prefix at the front of `data`.
fn nal_length(data: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = data.get(..4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(prefix)).ok()
}

/// Checks that length prefixes tile `data` exactly, so packagers can copy it blindly.
pub fn check_avcc_framing(data: &[u8]) -> Result<(), H264Error> {
    let mut offset = 0;
    while offset < data.len() {
        let rest = data.get(offset..).unwrap_or_default();
        match split_nal(rest) {
            Some((nal, _)) => offset += 4 + nal.len(),
            None => {
                return Err(H264Error::NalFraming {
                    offset,
                    claimed: nal_length(rest).unwrap_or(0),
                    available: rest.len().saturating_sub(4),
                });
            }
        }
    }
    Ok(())
}

/// NAL unit type (low 5 bits of the header byte), `None` for an empty unit.
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// True if the AVCC access unit holds an IDR slice (NAL type 5).
pub fn avcc_has_idr(data: &[u8]) -> bool {
    avcc_nal_units(data).any(|nal| nal_unit_type(nal) == Some(NAL_IDR))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::media::bits::BitWriter;

    /// rbsp_trailing_bits, then the SPS NAL header and emulation prevention.
    fn into_sps_nal(mut w: BitWriter) -> Vec<u8> {
        w.bit(true);
        while !w.bit_len().is_multiple_of(8) {
            w.bit(false);
        }
        let mut nal = vec![0x67];
        let mut zeros = 0;
        for b in w.into_bytes() {
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// x264 High profile 1280x720 SPS with VUI timing 30 fps (from fixtures/h264_high_720p30.flv).
    const SPS_HIGH_720P: &str = "6764001facd9405005bb0110000003001000000303c0f1831960";

    /// Wraps SPS/PPS NAL units into an avcC record.
    fn avcc_record(length_size_minus_one: u8, sps: &[&[u8]], pps: &[&[u8]]) -> Vec<u8> {
        let first = sps.first().copied().unwrap_or(&[0x67, 0x42, 0xc0, 0x1e]);
        let mut rec = vec![
            1,
            first[1],
            first[2],
            first[3],
            0xfc | length_size_minus_one,
        ];
        rec.push(0xe0 | sps.len() as u8);
        for s in sps {
            rec.extend_from_slice(&(s.len() as u16).to_be_bytes());
            rec.extend_from_slice(s);
        }
        rec.push(pps.len() as u8);
        for p in pps {
            rec.extend_from_slice(&(p.len() as u16).to_be_bytes());
            rec.extend_from_slice(p);
        }
        rec
    }

    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    /// Writes a baseline/high SPS for the given geometry; returns the NAL.
    struct SpsSpec {
        profile_idc: u8,
        chroma_format_idc: u32,
        separate_colour_plane: bool,
        scaling_lists: bool,
        poc_type: u32,
        width_mbs: u32,
        height_map_units: u32,
        frame_mbs_only: bool,
        crop: Option<[u32; 4]>,
        vui: Option<(u32, u32)>,
    }

    impl Default for SpsSpec {
        fn default() -> Self {
            SpsSpec {
                profile_idc: 66,
                chroma_format_idc: 1,
                separate_colour_plane: false,
                scaling_lists: false,
                poc_type: 2,
                width_mbs: 40,
                height_map_units: 30,
                frame_mbs_only: true,
                crop: None,
                vui: None,
            }
        }
    }

    fn build_sps(spec: &SpsSpec) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(8, spec.profile_idc.into())
            .bits(8, 0xc0)
            .bits(8, 31)
            .ue(0);
        if has_chroma_info(spec.profile_idc) {
            w.ue(spec.chroma_format_idc);
            if spec.chroma_format_idc == 3 {
                w.bit(spec.separate_colour_plane);
            }
            w.ue(2).ue(2).bit(false).bit(spec.scaling_lists);
            if spec.scaling_lists {
                let lists = if spec.chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    // Alternate explicit lists, "use default" lists and absent lists.
                    match i % 3 {
                        0 => {
                            w.bit(true);
                            let size = if i < 6 { 16 } else { 64 };
                            for j in 0..size {
                                w.se(if j % 2 == 0 { 3 } else { -2 });
                            }
                        }
                        1 => {
                            w.bit(true).se(-8); // nextScale becomes 0: default list
                        }
                        _ => {
                            w.bit(false);
                        }
                    }
                }
            }
        }
        w.ue(0).ue(spec.poc_type);
        match spec.poc_type {
            0 => {
                w.ue(2);
            }
            1 => {
                w.bit(false).se(-3).se(5).ue(3).se(1).se(-1).se(7);
            }
            _ => {}
        }
        w.ue(4).bit(false);
        w.ue(spec.width_mbs - 1).ue(spec.height_map_units - 1);
        w.bit(spec.frame_mbs_only);
        if !spec.frame_mbs_only {
            w.bit(true);
        }
        w.bit(true);
        match spec.crop {
            Some([l, r, t, b]) => {
                w.bit(true).ue(l).ue(r).ue(t).ue(b);
            }
            None => {
                w.bit(false);
            }
        }
        match spec.vui {
            Some((units, scale)) => {
                w.bit(true);
                w.bit(true).bits(8, 255).bits(16, 4).bits(16, 3); // SAR 4:3 (extended)
                w.bit(true).bit(false); // overscan
                w.bit(true)
                    .bits(3, 5)
                    .bit(false)
                    .bit(true)
                    .bits(24, 0x010101);
                w.bit(true).ue(1).ue(1); // chroma loc
                w.bit(true)
                    .bits(32, units.into())
                    .bits(32, scale.into())
                    .bit(true);
                w.bit(false).bit(false).bit(false).bit(false); // hrd, pic_struct, restriction
            }
            None => {
                w.bit(false);
            }
        }
        into_sps_nal(w)
    }

    #[test]
    fn real_x264_high_sps() {
        let sps = parse_sps(&hex(SPS_HIGH_720P)).unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(
            (sps.profile_idc, sps.constraints, sps.level_idc),
            (100, 0, 31)
        );
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!(sps.bit_depth_luma, 8);
        assert!(sps.frame_mbs_only);
        assert_eq!(sps.fps(), Some(30.0));
    }

    #[test]
    fn bit_errors_name_the_sps_field() {
        let zeros = [0u8; 8];
        let ue = |data: &[u8]| BitReader::new(data).ue("x").map_err(H264Error::from);
        assert_eq!(ue(&zeros), Err(H264Error::ExpGolombOverflow("x")));
        assert_eq!(ue(&[0x00, 0x01]), Err(H264Error::SpsTruncated("x")));
        assert_eq!(ue(&[]), Err(H264Error::SpsTruncated("x")));
    }

    #[test]
    fn unescape_removes_emulation_prevention_only() {
        assert_eq!(unescape_rbsp(&[0, 0, 3, 1]), vec![0, 0, 1]);
        assert_eq!(unescape_rbsp(&[0, 0, 3, 0, 0, 3]), vec![0, 0, 0, 0]);
        assert_eq!(unescape_rbsp(&[0, 3, 0, 3]), vec![0, 3, 0, 3]);
        assert_eq!(unescape_rbsp(&[0, 0, 0, 3, 3]), vec![0, 0, 0, 3]);
        assert_eq!(unescape_rbsp(&[]), Vec::<u8>::new());
    }

    #[test]
    fn emulation_prevention_in_sps_is_honoured() {
        // VUI num_units_in_tick = 1 puts 00 00 00 01 in the RBSP: needs escaping.
        let nal = build_sps(&SpsSpec {
            vui: Some((1, 60)),
            ..Default::default()
        });
        assert!(nal.windows(3).any(|w| w == [0, 0, 3]), "{nal:02x?}");
        let sps = parse_sps(&nal).unwrap();
        assert_eq!(sps.fps(), Some(30.0));
        assert_eq!(
            sps.timing,
            Some(VuiTiming {
                num_units_in_tick: 1,
                time_scale: 60,
                fixed_frame_rate: true
            })
        );
    }

    #[test]
    fn cropping_for_each_chroma_format() {
        // 1920x1080 as 120x68 MBs: crop 8 luma rows at the bottom.
        let cases = [
            (1, [0, 0, 0, 4], (1920, 1080)), // 4:2:0: CropUnitY = 2
            (2, [0, 0, 0, 8], (1920, 1080)), // 4:2:2: CropUnitY = 1
            (3, [0, 0, 0, 8], (1920, 1080)), // 4:4:4: CropUnitY = 1
            (0, [0, 0, 0, 8], (1920, 1080)), // monochrome: luma units
            (1, [1, 2, 0, 4], (1914, 1080)), // CropUnitX = 2
            (3, [1, 2, 0, 8], (1917, 1080)), // CropUnitX = 1
        ];
        for (chroma_format_idc, crop, expect) in cases {
            let nal = build_sps(&SpsSpec {
                profile_idc: 100,
                chroma_format_idc,
                width_mbs: 120,
                height_map_units: 68,
                crop: Some(crop),
                ..Default::default()
            });
            let sps = parse_sps(&nal).unwrap();
            assert_eq!(
                (sps.width, sps.height),
                expect,
                "chroma {chroma_format_idc}"
            );
            assert_eq!(sps.chroma_format_idc, chroma_format_idc as u8);
            assert_eq!(sps.bit_depth_luma, 10);
        }
    }

    #[test]
    fn separate_colour_plane_crops_in_luma_units() {
        let nal = build_sps(&SpsSpec {
            profile_idc: 244,
            chroma_format_idc: 3,
            separate_colour_plane: true,
            width_mbs: 120,
            height_map_units: 68,
            crop: Some([0, 1, 0, 8]),
            ..Default::default()
        });
        let sps = parse_sps(&nal).unwrap();
        assert!(sps.separate_colour_plane);
        assert_eq!((sps.width, sps.height), (1919, 1080));
    }

    #[test]
    fn interlaced_doubles_map_units_and_crop() {
        // 1080i: 120x34 map units of field pairs, crop 4 × CropUnitY(2*2) = 8 rows.
        let nal = build_sps(&SpsSpec {
            profile_idc: 100,
            width_mbs: 120,
            height_map_units: 34,
            frame_mbs_only: false,
            crop: Some([0, 0, 0, 2]),
            poc_type: 0,
            ..Default::default()
        });
        let sps = parse_sps(&nal).unwrap();
        assert!(!sps.frame_mbs_only);
        assert_eq!((sps.width, sps.height), (1920, 1080));
    }

    #[test]
    fn scaling_lists_are_skipped() {
        for chroma_format_idc in [1, 3] {
            let nal = build_sps(&SpsSpec {
                profile_idc: 100,
                chroma_format_idc,
                scaling_lists: true,
                crop: Some([0, 0, 0, 4]),
                width_mbs: 80,
                height_map_units: 46,
                vui: Some((1001, 60000)),
                ..Default::default()
            });
            let sps = parse_sps(&nal).unwrap();
            let expect_h = if chroma_format_idc == 1 { 728 } else { 732 };
            assert_eq!((sps.width, sps.height), (1280, expect_h));
            let fps = sps.fps().unwrap();
            assert!((fps - 29.97).abs() < 0.001, "{fps}");
        }
    }

    #[test]
    fn poc_type_1_cycle_is_skipped() {
        let nal = build_sps(&SpsSpec {
            poc_type: 1,
            vui: Some((1, 50)),
            ..Default::default()
        });
        let sps = parse_sps(&nal).unwrap();
        assert_eq!(sps.pic_order_cnt_type, 1);
        assert_eq!((sps.width, sps.height), (640, 480));
        assert_eq!(sps.fps(), Some(25.0));
    }

    #[test]
    fn zero_timing_gives_no_fps() {
        let nal = build_sps(&SpsSpec {
            vui: Some((0, 60)),
            ..Default::default()
        });
        assert_eq!(parse_sps(&nal).unwrap().fps(), None);
    }

    #[test]
    fn invalid_sps_values_are_rejected() {
        let over_crop = build_sps(&SpsSpec {
            crop: Some([0, 0, 0, 240]),
            ..Default::default()
        });
        assert!(matches!(
            parse_sps(&over_crop),
            Err(H264Error::InvalidSps(_))
        ));
        let bad_poc = build_sps(&SpsSpec {
            poc_type: 3,
            ..Default::default()
        });
        assert_eq!(
            parse_sps(&bad_poc),
            Err(H264Error::InvalidSps("pic_order_cnt_type"))
        );
        let bad_chroma = build_sps(&SpsSpec {
            profile_idc: 100,
            chroma_format_idc: 4,
            ..Default::default()
        });
        assert_eq!(
            parse_sps(&bad_chroma),
            Err(H264Error::InvalidSps("chroma_format_idc"))
        );
        assert_eq!(parse_sps(&[0x68, 0x42]), Err(H264Error::NotSps(8)));
        assert_eq!(parse_sps(&[]), Err(H264Error::SpsTruncated("NAL header")));
    }

    #[test]
    fn huge_dimensions_do_not_overflow() {
        let nal = build_sps(&SpsSpec {
            width_mbs: u32::MAX - 1,
            height_map_units: u32::MAX - 1,
            frame_mbs_only: false,
            ..Default::default()
        });
        assert_eq!(
            parse_sps(&nal),
            Err(H264Error::InvalidSps("picture size exceeds 32 bits"))
        );
    }

    #[test]
    fn truncated_vui_keeps_the_picture() {
        let nal = build_sps(&SpsSpec {
            vui: Some((1, 60)),
            ..Default::default()
        });
        // Cut inside the VUI timing fields: size survives, fps is lost.
        let cut = &nal[..nal.len() - 6];
        let sps = parse_sps(cut).unwrap();
        assert_eq!((sps.width, sps.height), (640, 480));
        assert_eq!(sps.timing, None);
    }

    #[test]
    fn every_sps_prefix_is_err_or_consistent() {
        let full = hex(SPS_HIGH_720P);
        let whole = parse_sps(&full).unwrap();
        for n in 0..full.len() {
            if let Ok(sps) = parse_sps(&full[..n]) {
                assert_eq!(
                    (sps.width, sps.height),
                    (whole.width, whole.height),
                    "prefix {n}"
                );
            }
        }
        // Ending before frame cropping is always an error.
        for n in 0..8 {
            assert!(parse_sps(&full[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn avcc_record_parses_into_video_config() {
        let sps = hex(SPS_HIGH_720P);
        let rec = avcc_record(3, &[&sps], &[PPS]);
        let cfg = parse_avc_decoder_config(&rec).unwrap();
        assert_eq!((cfg.width, cfg.height), (1280, 720));
        assert_eq!(cfg.codec_string(), "avc1.64001F");
        assert_eq!(cfg.fps, Some(30.0));
        assert_eq!(&cfg.avcc[..], &rec[..]);
        let sets = parse_avc_parameter_sets(&rec).unwrap();
        assert_eq!(sets.sps, vec![&sps[..]]);
        assert_eq!(sets.pps, vec![PPS]);
    }

    #[test]
    fn avcc_record_with_extension_and_padding_is_accepted() {
        let sps = hex(SPS_HIGH_720P);
        let mut rec = avcc_record(3, &[&sps], &[PPS]);
        rec.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0x00]); // high-profile extension
        assert_eq!(parse_avc_decoder_config(&rec).unwrap().width, 1280);
    }

    #[test]
    fn avcc_record_errors() {
        let sps = hex(SPS_HIGH_720P);
        for (minus_one, size) in [(0u8, 1u8), (1, 2), (2, 3)] {
            let rec = avcc_record(minus_one, &[&sps], &[PPS]);
            assert_eq!(
                parse_avc_decoder_config(&rec),
                Err(H264Error::UnsupportedNalLengthSize(size))
            );
        }
        let msg = H264Error::UnsupportedNalLengthSize(2).to_string();
        assert!(msg.contains("2-byte"), "{msg}");

        let mut rec = avcc_record(3, &[&sps], &[PPS]);
        rec[0] = 0;
        assert_eq!(
            parse_avc_decoder_config(&rec),
            Err(H264Error::UnsupportedRecordVersion(0))
        );
        assert_eq!(
            parse_avc_decoder_config(&avcc_record(3, &[], &[PPS])),
            Err(H264Error::NoSps)
        );
        assert_eq!(
            parse_avc_decoder_config(&avcc_record(3, &[&sps], &[])),
            Err(H264Error::NoPps)
        );
        assert_eq!(
            parse_avc_decoder_config(&avcc_record(3, &[PPS], &[PPS])),
            Err(H264Error::NotSps(8))
        );
        assert_eq!(
            parse_avc_decoder_config(&[1, 2]),
            Err(H264Error::RecordTruncated { need: 6, got: 2 })
        );
    }

    #[test]
    fn every_avcc_record_prefix_is_err() {
        let sps = hex(SPS_HIGH_720P);
        let rec = avcc_record(3, &[&sps], &[PPS]);
        for n in 0..rec.len() {
            assert!(parse_avc_decoder_config(&rec[..n]).is_err(), "prefix {n}");
        }
    }

    fn avcc_frame(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| {
                (n.len() as u32)
                    .to_be_bytes()
                    .into_iter()
                    .chain(n.iter().copied())
            })
            .collect()
    }

    #[test]
    fn nal_unit_walk() {
        let data = avcc_frame(&[&[0x09, 0xf0], &[], &[0x06, 1, 2, 3], &[0x65, 0x88]]);
        let nals: Vec<_> = avcc_nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![&[0x09, 0xf0][..], &[0x06, 1, 2, 3], &[0x65, 0x88]]
        );
        assert!(avcc_has_idr(&data));
        assert!(check_avcc_framing(&data).is_ok());
        assert!(!avcc_has_idr(&avcc_frame(&[&[0x41, 0x9a]])));
        assert!(!avcc_has_idr(&[]));
        assert_eq!(nal_unit_type(&[0x65]), Some(NAL_IDR));
        assert_eq!(nal_unit_type(&[]), None);
    }

    #[test]
    fn nal_unit_walk_survives_truncation() {
        let data = avcc_frame(&[&[0x06, 1, 2, 3], &[0x65, 0x88, 0x84]]);
        for n in 0..data.len() {
            let prefix = &data[..n];
            let count = avcc_nal_units(prefix).count();
            assert_eq!(count, if n >= 8 { 1 } else { 0 }, "prefix {n}");
            assert!(!avcc_has_idr(prefix));
            // Only cuts at a unit boundary keep the framing valid.
            assert_eq!(
                check_avcc_framing(prefix).is_ok(),
                n == 0 || n == 8,
                "prefix {n}"
            );
        }
        assert_eq!(
            check_avcc_framing(&data[..12]),
            Err(H264Error::NalFraming {
                offset: 8,
                claimed: 3,
                available: 0
            })
        );
        assert!(avcc_nal_units(&[0xff, 0xff, 0xff, 0xff, 0x65])
            .next()
            .is_none());
    }

    #[test]
    fn avc_decoder_config_rebuilds_ffmpeg_records() {
        // ffmpeg wrote these avcC records into the FLV fixtures; rebuilding
        // them from their own SPS/PPS must give the same bytes.
        let files: [&[u8]; 5] = [
            include_bytes!("../../fixtures/h264_high_720p30.flv"),
            include_bytes!("../../fixtures/h264_main_1080p25.flv"),
            include_bytes!("../../fixtures/h264_baseline_360p.flv"),
            include_bytes!("../../fixtures/h264_high444_cqm_642x362.flv"),
            include_bytes!("../../fixtures/h264_high422_interlaced_320x240.flv"),
        ];
        for file in files {
            let record = flv_avcc(file).expect("fixture has an AVC sequence header");
            let sets = parse_avc_parameter_sets(record).unwrap();
            let built = avc_decoder_config(sets.sps[0], sets.pps[0]).unwrap();
            assert_eq!(&built[..], record);
            assert_eq!(
                parse_avc_decoder_config(&built).unwrap(),
                parse_avc_decoder_config(record).unwrap()
            );
        }
    }

    #[test]
    fn avc_decoder_config_rejects_bad_input() {
        let sps = hex(SPS_HIGH_720P);
        assert_eq!(avc_decoder_config(&sps, &[]), Err(H264Error::NoPps));
        assert_eq!(avc_decoder_config(&sps, &sps), Err(H264Error::NoPps));
        assert_eq!(avc_decoder_config(PPS, PPS), Err(H264Error::NotSps(8)));
        assert!(avc_decoder_config(&sps[..4], PPS).is_err());
        let big_pps = [&[0x68u8][..], &[0xaa; 70_000]].concat();
        assert!(avc_decoder_config(&sps, &big_pps).is_err());
        let built = avc_decoder_config(&sps, PPS).unwrap();
        let sets = parse_avc_parameter_sets(&built).unwrap();
        assert_eq!(sets.sps, vec![&sps[..]]);
        assert_eq!(sets.pps, vec![PPS]);
        // High profile: the 4-byte chroma/bit-depth extension follows.
        assert_eq!(&built[built.len() - 4..], &[0xfd, 0xf8, 0xf8, 0]);
    }

    /// The avcC of the first AVC sequence header tag in an FLV file.
    fn flv_avcc(file: &[u8]) -> Option<&[u8]> {
        let mut off = u32::from_be_bytes(file.get(5..9)?.try_into().ok()?) as usize + 4;
        while off + 11 <= file.len() {
            let size =
                u32::from_be_bytes([0, file[off + 1], file[off + 2], file[off + 3]]) as usize;
            let body = file.get(off + 11..off + 11 + size)?;
            if file[off] & 0x1f == 9 && body.len() > 5 && body[0] & 0x0f == 7 && body[1] == 0 {
                return Some(&body[5..]);
            }
            off += 11 + size + 4;
        }
        None
    }
}
