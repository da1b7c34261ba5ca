//! H.264 Annex B byte streams (NAL units behind `00 00 01` start codes, as
//! MPEG-TS carries them) and their conversion to the AVCC framing of
//! [`Frame`](super::Frame) data, with the in-band parameter sets set apart.
//!
//! Sans-IO and total: bytes that hold no start code give no NAL unit.

use super::h264::{self, NAL_AUD, NAL_FILLER, NAL_IDR, NAL_PPS, NAL_SPS};

/// NAL units of an Annex B byte stream (3- or 4-byte start codes); bytes
/// before the first start code and trailing zero bytes are dropped.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start_code(data, 0).map(|i| i + 3);
    std::iter::from_fn(move || loop {
        let start = pos?;
        let next = find_start_code(data, start);
        let end = next.unwrap_or(data.len());
        pos = next.map(|i| i + 3);
        let mut nal = data.get(start..end).unwrap_or_default();
        // A 4-byte start code's leading zero (and trailing_zero_8bits) end up here.
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// Offset of the next `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| i + from)
}

/// One Annex B access unit rewritten for [`Frame`](super::Frame) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvccAccessUnit<'a> {
    /// The picture's NAL units, each behind a 4-byte big-endian length.
    /// SPS, PPS, access unit delimiters and filler are left out: parameter
    /// sets travel in the avcC record, as they do on the RTMP path.
    pub data: Vec<u8>,
    /// Holds an IDR slice.
    pub keyframe: bool,
    /// The last SPS and PPS carried in-band, with their NAL header byte.
    pub sps: Option<&'a [u8]>,
    pub pps: Option<&'a [u8]>,
}

/// Converts an Annex B access unit; `None` when it holds no NAL unit at all
/// (no start code).
pub fn to_avcc(access_unit: &[u8]) -> Option<AvccAccessUnit<'_>> {
    let mut au = AvccAccessUnit {
        data: Vec::with_capacity(access_unit.len() + 16),
        keyframe: false,
        sps: None,
        pps: None,
    };
    let mut any = false;
    for nal in nal_units(access_unit) {
        any = true;
        match h264::nal_unit_type(nal) {
            Some(NAL_SPS) => au.sps = Some(nal),
            Some(NAL_PPS) => au.pps = Some(nal),
            Some(NAL_AUD) | Some(NAL_FILLER) | None => {}
            Some(t) => {
                // Unreachable beyond 4 GiB (callers cap access units far below); dropped.
                let Ok(len) = u32::try_from(nal.len()) else {
                    continue;
                };
                au.keyframe |= t == NAL_IDR;
                au.data.extend_from_slice(&len.to_be_bytes());
                au.data.extend_from_slice(nal);
            }
        }
    }
    any.then_some(au)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_codes_of_both_lengths() {
        let data = [
            &[0xaa, 0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 1, 0x67, 1, 2, 0, 0],
            &[0, 0, 0, 1, 0x65, 0x88, 0],
        ]
        .concat();
        let nals: Vec<_> = nal_units(&data).collect();
        assert_eq!(nals, vec![&[0x09, 0xf0][..], &[0x67, 1, 2], &[0x65, 0x88]]);
        assert_eq!(nal_units(&[1, 2, 3, 0, 0]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1, 0, 0, 1]).count(), 0);
    }

    #[test]
    fn access_unit_to_avcc() {
        let data = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 1, 0x67, 0x64, 0],
            &[0, 0, 1, 0x67, 0x42, 1],
            &[0, 0, 1, 0x68, 0xeb],
            &[0, 0, 1, 0x06, 5],
            &[0, 0, 1, 0x65, 0x88, 0x84],
            &[0, 0, 1, 0x0c, 0xff],
        ]
        .concat();
        let au = to_avcc(&data).unwrap();
        assert_eq!(
            au.data,
            vec![0, 0, 0, 2, 0x06, 5, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        assert!(au.keyframe);
        assert_eq!(au.sps, Some(&[0x67, 0x42, 1][..]));
        assert_eq!(au.pps, Some(&[0x68, 0xeb][..]));
        assert!(h264::check_avcc_framing(&au.data).is_ok());

        let p = to_avcc(&[0, 0, 1, 0x41, 0x9a]).unwrap();
        assert!(!p.keyframe && p.sps.is_none() && p.pps.is_none());
        // Only a delimiter: a NAL unit was found, the picture is empty.
        assert!(to_avcc(&[0, 0, 1, 0x09, 0xf0]).unwrap().data.is_empty());
        assert_eq!(to_avcc(&[0x65, 0x88]), None);
        assert_eq!(to_avcc(&[]), None);
    }
}
