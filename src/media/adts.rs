//! AAC ADTS (ISO/IEC 13818-7 / 14496-3 §1.A.2): the self-framed AAC that
//! MPEG-TS carries (stream type 0x0F). Headers are parsed, a byte stream is
//! split into raw frames, and the header fields become the same
//! [`AudioConfig`] an FLV AudioSpecificConfig would give.
//!
//! Sans-IO and total: damage shows up as skipped bytes or an unsupported
//! frame, never a panic.

use super::aac::{self, AacError, SAMPLE_RATES};
use super::bits::{BitError, BitReader};
use super::AudioConfig;

/// Bytes of a header without / with its CRC.
const HEADER_LEN: usize = 7;
const HEADER_LEN_CRC: usize = 9;
/// frame_length is a 13-bit field: no frame (header included) is longer.
pub const MAX_FRAME_LEN: usize = (1 << 13) - 1;

/// The fields of an ADTS header that framing and configuration need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Object type minus one (1 = AAC-LC).
    pub profile: u8,
    /// Index into [`SAMPLE_RATES`]; always valid in a parsed header.
    pub sampling_index: u8,
    /// 1–7; 0 (layout in a program config element) is rejected.
    pub channel_config: u8,
    /// Whole frame, header included.
    pub frame_length: usize,
    pub header_len: usize,
    /// number_of_raw_data_blocks_in_frame: frames hold this plus one blocks.
    pub raw_blocks: u8,
}

/// Why no header could be read at the front of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdtsProblem {
    /// Fewer than the 7 header bytes.
    NeedMore,
    /// Not a (plausible) header: no sync word, impossible length or rate.
    NoSync,
    /// A real header for a frame we cannot use.
    Unsupported(&'static str),
}

impl From<BitError> for AdtsProblem {
    fn from(_: BitError) -> Self {
        AdtsProblem::NeedMore
    }
}

impl AdtsHeader {
    /// The header fields that determine the decoder configuration.
    pub fn config_fields(&self) -> (u8, u8, u8) {
        (self.profile, self.sampling_index, self.channel_config)
    }

    /// The configuration these header fields describe (as a minimal
    /// AudioSpecificConfig: ADTS cannot signal SBR or PS).
    pub fn audio_config(&self) -> Result<AudioConfig, AacError> {
        let rate = SAMPLE_RATES
            .get(usize::from(self.sampling_index))
            .copied()
            .unwrap_or(0);
        // Channel configuration 7 is 7.1: eight channels.
        let channels = if self.channel_config == 7 {
            8
        } else {
            self.channel_config
        };
        let asc = aac::audio_specific_config(self.profile + 1, rate, channels)?;
        aac::parse_audio_specific_config(&asc)
    }
}

/// Parses the header at the front of `b` (its fixed and variable parts, 7 bytes).
pub fn parse_header(b: &[u8]) -> Result<AdtsHeader, AdtsProblem> {
    let mut r = BitReader::new(b.get(..HEADER_LEN).ok_or(AdtsProblem::NeedMore)?);
    let syncword = r.bits(12, "syncword")?;
    r.bit("ID")?;
    let layer = r.bits(2, "layer")?;
    let protection_absent = r.bit("protection_absent")?;
    if syncword != 0xfff || layer != 0 {
        return Err(AdtsProblem::NoSync);
    }
    let profile = r.bits(2, "profile")? as u8;
    let sampling_index = r.bits(4, "sampling_frequency_index")? as u8;
    r.bit("private_bit")?;
    let channel_config = r.bits(3, "channel_configuration")? as u8;
    r.bits(4, "original_copy/home/copyright bits")?;
    let frame_length = r.bits(13, "frame_length")? as usize;
    r.bits(11, "adts_buffer_fullness")?;
    let raw_blocks = r.bits(2, "number_of_raw_data_blocks_in_frame")? as u8;
    let header_len = if protection_absent {
        HEADER_LEN
    } else {
        HEADER_LEN_CRC
    };
    if frame_length <= header_len || usize::from(sampling_index) >= SAMPLE_RATES.len() {
        return Err(AdtsProblem::NoSync);
    }
    if channel_config == 0 {
        return Err(AdtsProblem::Unsupported(
            "channel layout in a program config element",
        ));
    }
    Ok(AdtsHeader {
        profile,
        sampling_index,
        channel_config,
        frame_length,
        header_len,
        raw_blocks,
    })
}

/// What [`AdtsFrames`] finds in a buffer, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdtsItem<'a> {
    /// A whole frame with one raw data block, starting `offset` bytes into the buffer.
    Frame {
        offset: usize,
        header: AdtsHeader,
        /// The raw AAC frame (header and CRC stripped); never empty.
        raw: &'a [u8],
    },
    /// `skipped` bytes without ADTS sync preceded the next frame (or the end).
    Resync { skipped: usize },
    /// An unusable frame or header was skipped.
    Unsupported(&'static str),
}

/// Splits a buffer of ADTS frames; stops at the first incomplete one, whose
/// bytes [`AdtsFrames::rest`] returns for the caller to complete.
pub struct AdtsFrames<'a> {
    data: &'a [u8],
    pos: usize,
    skipped: usize,
}

/// Iterates the ADTS frames of `data`.
pub fn frames(data: &[u8]) -> AdtsFrames<'_> {
    AdtsFrames {
        data,
        pos: 0,
        skipped: 0,
    }
}

impl<'a> AdtsFrames<'a> {
    /// Bytes not consumed: the start of an incomplete frame (or less than a header).
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// Offset of [`Self::rest`] in the buffer.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    fn flush_skipped(&mut self) -> Option<AdtsItem<'a>> {
        let skipped = std::mem::take(&mut self.skipped);
        (skipped > 0).then_some(AdtsItem::Resync { skipped })
    }
}

impl<'a> Iterator for AdtsFrames<'a> {
    type Item = AdtsItem<'a>;

    fn next(&mut self) -> Option<AdtsItem<'a>> {
        loop {
            let rest = self.rest();
            let header = match parse_header(rest) {
                Ok(h) => h,
                Err(AdtsProblem::NeedMore) => return self.flush_skipped(),
                Err(AdtsProblem::NoSync) => {
                    self.pos += 1;
                    self.skipped += 1;
                    continue;
                }
                Err(AdtsProblem::Unsupported(why)) => {
                    // Likely a real header, but a false sync is possible: step one byte.
                    self.pos += 1;
                    return Some(AdtsItem::Unsupported(why));
                }
            };
            let Some(raw) = rest.get(header.header_len..header.frame_length) else {
                return self.flush_skipped();
            };
            // Report the skipped bytes first; the frame is parsed again next call.
            if let Some(resync) = self.flush_skipped() {
                return Some(resync);
            }
            let offset = self.pos;
            self.pos += header.frame_length;
            if header.raw_blocks > 0 {
                return Some(AdtsItem::Unsupported(
                    "several raw data blocks in one ADTS frame",
                ));
            }
            return Some(AdtsItem::Frame {
                offset,
                header,
                raw,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADTS frame (no CRC) around `raw`: AAC-LC, sampling index 3 (48 kHz).
    fn frame(channel_config: u8, raw_blocks: u8, raw: &[u8]) -> Vec<u8> {
        let len = raw.len() + 7;
        let mut f = vec![
            0xff,
            0xf1,
            0x40 | (3 << 2) | (channel_config >> 2),
            (channel_config << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1f,
            0xfc | raw_blocks,
        ];
        f.extend_from_slice(raw);
        f
    }

    #[test]
    fn header_fields() {
        let f = frame(2, 0, &[1, 2, 3]);
        let h = parse_header(&f).unwrap();
        assert_eq!(
            h,
            AdtsHeader {
                profile: 1,
                sampling_index: 3,
                channel_config: 2,
                frame_length: 10,
                header_len: 7,
                raw_blocks: 0,
            }
        );
        let cfg = h.audio_config().unwrap();
        assert_eq!(&cfg.asc[..], &[0x11, 0x90]);
        assert_eq!((cfg.sample_rate, cfg.channels), (48_000, 2));
        // With a CRC the header is 9 bytes.
        let mut crc = f.clone();
        crc[1] = 0xf0;
        assert_eq!(parse_header(&crc).unwrap().header_len, 9);
        // 7.1 is signalled as channel configuration 7.
        assert_eq!(
            parse_header(&frame(7, 0, &[1]))
                .unwrap()
                .audio_config()
                .unwrap()
                .channels,
            8
        );
    }

    #[test]
    fn header_rejections() {
        let f = frame(2, 0, &[1, 2, 3]);
        assert_eq!(parse_header(&f[..6]), Err(AdtsProblem::NeedMore));
        let mut bad = f.clone();
        bad[1] = 0xf3; // layer 1
        assert_eq!(parse_header(&bad), Err(AdtsProblem::NoSync));
        let mut bad = f.clone();
        bad[2] = 0x40 | (13 << 2); // reserved sampling index
        assert_eq!(parse_header(&bad), Err(AdtsProblem::NoSync));
        let short = frame(2, 0, &[]); // frame_length == header length
        assert_eq!(parse_header(&short), Err(AdtsProblem::NoSync));
        assert!(matches!(
            parse_header(&frame(0, 0, &[1])),
            Err(AdtsProblem::Unsupported(_))
        ));
    }

    #[test]
    fn splits_frames_and_keeps_the_incomplete_tail() {
        let a = frame(2, 0, &[1, 2, 3]);
        let b = frame(2, 0, &[4, 5]);
        let data = [&a[..], &b[..], &b[..4]].concat();
        let mut it = frames(&data);
        let items: Vec<_> = it.by_ref().collect();
        let raws: Vec<_> = items
            .iter()
            .map(|i| match i {
                AdtsItem::Frame { offset, raw, .. } => (*offset, raw.to_vec()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(raws, vec![(0, vec![1, 2, 3]), (10, vec![4, 5])]);
        assert_eq!(it.consumed(), 19);
        assert_eq!(it.rest(), &b[..4]);
    }

    #[test]
    fn resyncs_and_reports_unsupported_frames() {
        let good = frame(2, 0, &[9]);
        let data = [
            &[0x00, 0x12, 0xff][..],
            &frame(2, 1, &[7, 7]),
            &good,
            &[0xff, 0x00],
        ]
        .concat();
        let items: Vec<_> = frames(&data).collect();
        assert_eq!(
            items,
            vec![
                AdtsItem::Resync { skipped: 3 },
                AdtsItem::Unsupported("several raw data blocks in one ADTS frame"),
                AdtsItem::Frame {
                    offset: 12,
                    header: parse_header(&good).unwrap(),
                    raw: &[9],
                },
            ]
        );
        // Trailing garbage longer than a header is skipped and reported at the end.
        let data = [&good[..], &[0u8; 9]].concat();
        let items: Vec<_> = frames(&data).collect();
        assert_eq!(items.last(), Some(&AdtsItem::Resync { skipped: 3 }));
    }
}
