//! PES packets: reassembly of one elementary stream's PES from its TS
//! packets, the optional PES header with PTS/DTS, and the unwrapping of the
//! 33-bit timestamps onto one timeline shared by audio and video.
//!
//! A continuity gap, a transport error or a PES cut short of its declared
//! length drops the PES being assembled: a frame is whole or not emitted.
//! One repeat of a packet (same continuity counter) is allowed and ignored.
//!
//! Latency: libavformat's muxer (ffmpeg, and OBS's SRT output) writes video
//! PES with PES_packet_length 0, so a picture is complete only when the next
//! picture's first packet arrives (one frame interval late: 33 ms at 30 fps).
//! Audio PES are bounded and emitted the moment they complete, but the muxer
//! batches about 2.9 KB of ADTS frames per PES (≈16 frames ≈ 0.34 s at
//! 64 kb/s), so audio reaches us in bursts up to that far behind the video.

use super::packets::Packet;
use super::{TsDemuxer, TsError, TsEvent, TsWarning};
use crate::media::Track;

/// PES size caps: a 4K intra picture stays well below 8 MiB.
const MAX_VIDEO_PES: usize = 8 << 20;
const MAX_AUDIO_PES: usize = 1 << 20;
/// 33-bit PTS/DTS wrap.
pub(super) const WRAP: i64 = 1 << 33;

/// One elementary stream's PES assembly state.
pub(super) struct Pes {
    pub(super) pid: u16,
    track: Track,
    cc: Option<u8>,
    dup_seen: bool,
    /// Bytes of the PES being assembled, header included; empty when idle.
    buf: Vec<u8>,
    active: bool,
    /// Total PES size from PES_packet_length; `None` while unknown or unbounded.
    declared: Option<usize>,
}

impl Pes {
    pub(super) fn new(pid: u16, track: Track) -> Self {
        Pes {
            pid,
            track,
            cc: None,
            dup_seen: false,
            buf: Vec::new(),
            active: false,
            declared: None,
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
        self.declared = None;
    }

    fn limit(&self) -> usize {
        match self.track {
            Track::Video => MAX_VIDEO_PES,
            Track::Audio => MAX_AUDIO_PES,
        }
    }
}

impl TsDemuxer {
    pub(super) fn track_of(&self, pid: u16) -> Option<Track> {
        if self.video.as_ref().is_some_and(|p| p.pid == pid) {
            Some(Track::Video)
        } else if self.audio.as_ref().is_some_and(|p| p.pid == pid) {
            Some(Track::Audio)
        } else {
            None
        }
    }

    pub(super) fn on_es(
        &mut self,
        track: Track,
        pkt: &Packet,
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) -> Result<(), TsError> {
        let pes = match track {
            Track::Video => self.video.as_mut(),
            Track::Audio => self.audio.as_mut(),
        };
        let Some(pes) = pes else { return Ok(()) };
        let mut damaged = None;
        if pkt.tei {
            damaged = Some(TsWarning::TransportError { pid: pes.pid });
        } else if pkt.has_payload {
            match pes.cc {
                Some(last) if last == pkt.cc && !pes.dup_seen && !pkt.discontinuity => {
                    // A duplicate packet, allowed once: ignore it.
                    pes.dup_seen = true;
                    return Ok(());
                }
                Some(last) if (last + 1) & 0x0f != pkt.cc && !pkt.discontinuity => {
                    damaged = Some(TsWarning::ContinuityGap {
                        pid: pes.pid,
                        expected: (last + 1) & 0x0f,
                        got: pkt.cc,
                    });
                }
                _ => {}
            }
            pes.cc = Some(pkt.cc);
            pes.dup_seen = false;
        }
        if let Some(w) = damaged {
            pes.reset();
            if track == Track::Audio {
                self.adts_leftover.clear();
            } else {
                self.video_needs_key = true;
            }
            out.push(TsEvent::Warning(w));
            if pkt.tei {
                return Ok(());
            }
        }
        let pes = match track {
            Track::Video => self.video.as_mut(),
            Track::Audio => self.audio.as_mut(),
        };
        let Some(pes) = pes else { return Ok(()) };
        let pid = pes.pid;
        let limit = pes.limit();
        let mut completed = Vec::new();
        if pkt.pusi {
            if pes.active {
                completed.push((std::mem::take(&mut pes.buf), pes.declared));
            }
            pes.reset();
            pes.active = true;
        }
        if pes.active && !pkt.payload.is_empty() {
            if pes.buf.len() + pkt.payload.len() > limit {
                return Err(TsError::PesTooLarge { pid, limit });
            }
            pes.buf.extend_from_slice(pkt.payload);
            if pes.declared.is_none() && pes.buf.len() >= 6 {
                let len = usize::from(u16::from_be_bytes([pes.buf[4], pes.buf[5]]));
                if len > 0 {
                    pes.declared = Some(len + 6);
                }
            }
            if let Some(total) = pes.declared {
                if pes.buf.len() >= total {
                    // Bounded PES complete: emit now rather than at the next PUSI.
                    let mut data = std::mem::take(&mut pes.buf);
                    data.truncate(total);
                    completed.push((data, None));
                    pes.reset();
                }
            }
        }
        for (data, declared) in completed {
            self.complete_pes(track, pid, data, declared, arrival_ms, out);
        }
        Ok(())
    }

    /// Handles a finished PES; `declared` is set when it ended before its
    /// announced length (it is then dropped).
    fn complete_pes(
        &mut self,
        track: Track,
        pid: u16,
        data: Vec<u8>,
        declared: Option<usize>,
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) {
        if let Some(declared) = declared {
            out.push(TsEvent::Warning(TsWarning::PesTruncated {
                pid,
                have: data.len(),
                declared,
            }));
            if track == Track::Audio {
                self.adts_leftover.clear();
            } else {
                self.video_needs_key = true;
            }
            return;
        }
        let Some(header) = parse_pes_header(&data) else {
            out.push(TsEvent::Warning(TsWarning::BadPesHeader { pid }));
            return;
        };
        let payload = data.get(header.payload_start..).unwrap_or_default();
        let times = header.pts.map(|pts| {
            let dts = self.extend(header.dts.unwrap_or(pts));
            let cts = wrapped_diff(pts, header.dts.unwrap_or(pts));
            (dts, i32::try_from(cts).unwrap_or(0))
        });
        match track {
            Track::Video => match times {
                Some((dts, cts)) => self.on_video(payload, dts, cts, arrival_ms, out),
                None => out.push(TsEvent::Warning(TsWarning::NoTimestamp { pid })),
            },
            Track::Audio => {
                let dts = times.map(|t| t.0).or(self.audio_next_dts);
                match dts {
                    Some(dts) => self.on_audio(payload, dts, arrival_ms, out),
                    None => out.push(TsEvent::Warning(TsWarning::NoTimestamp { pid })),
                }
            }
        }
    }

    /// Extends a 33-bit timestamp next to the last one seen on either stream,
    /// so audio and video unwrap together and stay aligned across the wrap.
    fn extend(&mut self, raw: u64) -> i64 {
        let raw = (raw & (WRAP as u64 - 1)) as i64;
        let ext = match self.ts_ref {
            None => raw,
            Some(r) => r + wrapped_diff(raw as u64, r.rem_euclid(WRAP) as u64),
        };
        self.ts_ref = Some(ext);
        ext
    }

    /// End of input: an unbounded PES still open is complete.
    pub(super) fn finish_pes(&mut self, arrival_ms: u64, out: &mut Vec<TsEvent>) {
        for track in [Track::Video, Track::Audio] {
            let pes = match track {
                Track::Video => self.video.as_mut(),
                Track::Audio => self.audio.as_mut(),
            };
            if let Some(pes) = pes {
                if pes.active {
                    let pid = pes.pid;
                    let declared = pes.declared;
                    let data = std::mem::take(&mut pes.buf);
                    pes.reset();
                    self.complete_pes(track, pid, data, declared, arrival_ms, out);
                }
            }
        }
    }
}

/// `a − b` for 33-bit timestamps, in −2^32..2^32.
fn wrapped_diff(a: u64, b: u64) -> i64 {
    let d = (a as i64 - b as i64).rem_euclid(WRAP);
    if d >= WRAP / 2 {
        d - WRAP
    } else {
        d
    }
}

struct PesHeader {
    pts: Option<u64>,
    dts: Option<u64>,
    payload_start: usize,
}

fn parse_pes_header(data: &[u8]) -> Option<PesHeader> {
    let [0, 0, 1, stream_id, _, _, flags1, flags2, header_len, ..] = *data else {
        return None;
    };
    // Streams without the optional header carry no media we read.
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xff | 0xf2 | 0xf8
    ) {
        return None;
    }
    if flags1 & 0xc0 != 0x80 {
        return None;
    }
    let payload_start = 9 + usize::from(header_len);
    if payload_start > data.len() {
        return None;
    }
    let fields = data.get(9..payload_start)?;
    let (pts, dts) = match flags2 >> 6 {
        2 => (Some(read_timestamp(fields.get(..5)?)?), None),
        3 => (
            Some(read_timestamp(fields.get(..5)?)?),
            Some(read_timestamp(fields.get(5..10)?)?),
        ),
        _ => (None, None),
    };
    Some(PesHeader {
        pts,
        dts,
        payload_start,
    })
}

/// A 33-bit PTS/DTS from its 5-byte marker-bit layout.
pub(super) fn read_timestamp(b: &[u8]) -> Option<u64> {
    let [a, b1, b2, b3, b4] = *b else { return None };
    Some(
        (u64::from(a >> 1) & 0x07) << 30
            | u64::from(b1) << 22
            | (u64::from(b2) >> 1) << 15
            | u64::from(b3) << 7
            | u64::from(b4) >> 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_handles_wrap_both_ways() {
        let mut d = TsDemuxer::new();
        assert_eq!(d.extend((WRAP - 10) as u64), WRAP - 10);
        assert_eq!(d.extend(5), WRAP + 5);
        assert_eq!(d.extend((WRAP - 20) as u64), WRAP - 20); // small step back
        assert_eq!(d.extend(100), WRAP + 100);
        let mut d = TsDemuxer::new();
        assert_eq!(d.extend(10), 10);
        assert_eq!(d.extend((WRAP - 10) as u64), -10);
    }

    #[test]
    fn pes_header_timestamps() {
        // Video PES, PTS 0x1_2345_6789 and DTS 3 in the marker-bit layout.
        let pts = 0x1_2345_6789u64;
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
        pes.extend_from_slice(&[
            0x31 | ((pts >> 29) & 0x0e) as u8,
            (pts >> 22) as u8,
            0x01 | ((pts >> 14) as u8 & 0xfe),
            (pts >> 7) as u8,
            0x01 | (pts << 1) as u8,
        ]);
        pes.extend_from_slice(&[0x11, 0, 0x01, 0, 0x07, 0xaa]);
        let h = parse_pes_header(&pes).unwrap();
        assert_eq!((h.pts, h.dts, h.payload_start), (Some(pts), Some(3), 19));
        assert_eq!(wrapped_diff(pts, 3), pts as i64 - 3 - WRAP);
        // PTS only; then no timestamps at all.
        pes[7] = 0x80;
        let h = parse_pes_header(&pes).unwrap();
        assert_eq!((h.pts, h.dts), (Some(pts), None));
        pes[7] = 0;
        assert_eq!(parse_pes_header(&pes).unwrap().pts, None);
        // Padding streams carry no header; a header longer than the data is refused.
        pes[3] = 0xbe;
        assert!(parse_pes_header(&pes).is_none());
        pes[3] = 0xe0;
        pes[8] = 200;
        assert!(parse_pes_header(&pes).is_none());
        assert!(parse_pes_header(&[0, 0, 1, 0xe0]).is_none());
    }
}
