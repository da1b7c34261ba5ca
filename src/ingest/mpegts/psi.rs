//! Program specific information: PAT and PMT sections reassembled from
//! their packets, checked (syntax, CRC-32/MPEG-2, current_next) and read
//! for the PIDs of the first H.264 and AAC streams. Any other stream is
//! named once in a warning; a program with neither is fatal.

use super::pes::Pes;
use super::{TsDemuxer, TsError, TsEvent, TsWarning};
use crate::media::Track;

/// PSI sections are at most 1024 bytes (section_length ≤ 1021).
const MAX_SECTION: usize = 1024;

const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;

/// Reassembles PSI sections of one PID.
#[derive(Default)]
pub(super) struct SectionBuf {
    data: Vec<u8>,
    active: bool,
}

impl SectionBuf {
    /// Adds one packet payload; returns complete sections (CRC not yet checked).
    pub(super) fn push(&mut self, pusi: bool, payload: &[u8]) -> Vec<Vec<u8>> {
        let mut sections = Vec::new();
        if pusi {
            let Some((&pointer, rest)) = payload.split_first() else {
                self.active = false;
                return sections;
            };
            let pointer = usize::from(pointer);
            if self.active {
                self.data
                    .extend_from_slice(rest.get(..pointer).unwrap_or(rest));
                self.drain(&mut sections);
            }
            self.data.clear();
            self.data
                .extend_from_slice(rest.get(pointer..).unwrap_or_default());
            self.active = rest.len() >= pointer;
        } else if self.active {
            self.data.extend_from_slice(payload);
        }
        self.drain(&mut sections);
        if self.data.len() > 4 * MAX_SECTION {
            self.data.clear();
            self.active = false;
        }
        sections
    }

    fn drain(&mut self, sections: &mut Vec<Vec<u8>>) {
        while self.active && self.data.len() >= 3 {
            if self.data[0] == 0xff {
                // Stuffing: nothing more in this packet.
                self.data.clear();
                self.active = false;
                break;
            }
            let len = 3 + (usize::from(self.data[1] & 0x0f) << 8 | usize::from(self.data[2]));
            if len > MAX_SECTION {
                self.data.clear();
                self.active = false;
                break;
            }
            if self.data.len() < len {
                break;
            }
            sections.push(self.data.drain(..len).collect());
        }
    }
}

impl TsDemuxer {
    pub(super) fn on_pat(&mut self, section: &[u8], out: &mut Vec<TsEvent>) {
        let Some(body) = self.checked_section(section, 0x00, "PAT", out) else {
            return;
        };
        let pmt_pid = body
            .chunks_exact(4)
            .filter(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
            .map(|e| u16::from(e[2] & 0x1f) << 8 | u16::from(e[3]))
            .next();
        if let Some(pid) = pmt_pid {
            if self.pmt_pid != Some(pid) {
                self.pmt_pid = Some(pid);
                self.pmt = SectionBuf::default();
                self.pmt_section.clear();
            }
        }
    }

    /// Checks table id, syntax and CRC; returns the bytes between the 8-byte
    /// long header and the CRC. PMT-specific fields are read by the caller.
    fn checked_section<'s>(
        &mut self,
        section: &'s [u8],
        table_id: u8,
        table: &'static str,
        out: &mut Vec<TsEvent>,
    ) -> Option<&'s [u8]> {
        if section.first() != Some(&table_id) {
            return None; // other tables may share the PID
        }
        if section.len() < 12 || section[1] & 0x80 == 0 {
            out.push(TsEvent::Warning(TsWarning::BadSection { table }));
            return None;
        }
        if crc32_mpeg2(section) != 0 {
            if !self.warned_crc {
                self.warned_crc = true;
                out.push(TsEvent::Warning(TsWarning::BadCrc { table }));
            }
            return None;
        }
        if section[5] & 0x01 == 0 {
            return None; // current_next_indicator 0: not in force yet
        }
        section.get(8..section.len() - 4)
    }

    pub(super) fn on_pmt(&mut self, section: &[u8], out: &mut Vec<TsEvent>) -> Result<(), TsError> {
        if section == self.pmt_section.as_slice() {
            return Ok(());
        }
        let Some(body) = self.checked_section(section, 0x02, "PMT", out) else {
            return Ok(());
        };
        let Some(&[pil_hi, pil_lo]) = body.get(2..4) else {
            out.push(TsEvent::Warning(TsWarning::BadSection { table: "PMT" }));
            return Ok(());
        };
        let program_info_len = usize::from(pil_hi & 0x0f) << 8 | usize::from(pil_lo);
        let mut es = body.get(4 + program_info_len..).unwrap_or_default();
        let mut streams = Vec::new();
        while let [stream_type, pid_hi, pid_lo, len_hi, len_lo, rest @ ..] = es {
            let pid = u16::from(pid_hi & 0x1f) << 8 | u16::from(*pid_lo);
            streams.push((*stream_type, pid));
            let info_len = usize::from(len_hi & 0x0f) << 8 | usize::from(*len_lo);
            es = rest.get(info_len..).unwrap_or_default();
        }
        let video_pid = streams
            .iter()
            .find(|s| s.0 == STREAM_TYPE_H264)
            .map(|s| s.1);
        let audio_pid = streams
            .iter()
            .find(|s| s.0 == STREAM_TYPE_AAC_ADTS)
            .map(|s| s.1);
        if video_pid.is_none() && audio_pid.is_none() {
            let found = if streams.is_empty() {
                "none".to_string()
            } else {
                streams
                    .iter()
                    .map(|(t, pid)| format!("{t:#04x} {} on PID {pid:#x}", stream_type_name(*t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(TsError::NoSupportedStreams { found });
        }
        for &(stream_type, pid) in &streams {
            if Some(pid) == video_pid || Some(pid) == audio_pid {
                continue;
            }
            if !self.warned_streams.contains(&(pid, stream_type)) && self.warned_streams.len() < 64
            {
                self.warned_streams.push((pid, stream_type));
                out.push(TsEvent::Warning(TsWarning::UnsupportedStream {
                    pid,
                    stream_type,
                    name: stream_type_name(stream_type),
                }));
            }
        }
        if self.video.as_ref().map(|p| p.pid) != video_pid {
            self.video = video_pid.map(|pid| Pes::new(pid, Track::Video));
        }
        if self.audio.as_ref().map(|p| p.pid) != audio_pid {
            self.audio = audio_pid.map(|pid| Pes::new(pid, Track::Audio));
            self.adts_leftover.clear();
        }
        self.pmt_section = section.to_vec();
        Ok(())
    }
}

/// CRC-32/MPEG-2 (poly 0x04C11DB7, no reflection); a section including its
/// CRC field checks to 0.
pub(super) fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Names of stream types publishers commonly send, for warnings and errors.
fn stream_type_name(stream_type: u8) -> &'static str {
    match stream_type {
        0x01 => "MPEG-1 video",
        0x02 => "MPEG-2 video",
        0x03 => "MPEG-1 audio (MP3)",
        0x04 => "MPEG-2 audio (MP3)",
        0x06 => "private data (e.g. Opus, AC-3, subtitles)",
        0x0f => "AAC ADTS",
        0x10 => "MPEG-4 video",
        0x11 => "AAC LATM",
        0x15 => "ID3 metadata",
        0x1b => "H.264",
        0x24 => "HEVC",
        0x33 => "VVC",
        0x81 => "AC-3",
        0x86 => "SCTE-35",
        0x87 => "E-AC-3",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_mpeg2_check_value() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
        // A section followed by its CRC checks to zero.
        let mut section = vec![0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01];
        section.extend_from_slice(&[0xf0, 0x00]);
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(crc32_mpeg2(&section), 0);
    }

    #[test]
    fn sections_span_packets_and_share_them() {
        let mut buf = SectionBuf::default();
        // Two 5-byte sections (table 0x02, length 2); the second is split.
        let a = [0x02, 0xb0, 0x02, 0xaa, 0xbb];
        let b = [0x02, 0xb0, 0x02, 0xcc, 0xdd];
        let first = [&[0u8][..], &a, &b[..2]].concat();
        assert_eq!(buf.push(true, &first), vec![a.to_vec()]);
        // The pointer field of the next section start finishes the previous one.
        let next = [&[3u8][..], &b[2..], &[0xff; 4]].concat();
        assert_eq!(buf.push(true, &next), vec![b.to_vec()]);
        // Continuation packets without a section in progress are ignored.
        let mut idle = SectionBuf::default();
        assert!(idle.push(false, &a).is_empty());
    }
}
