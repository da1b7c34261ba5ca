//! Sans-IO MPEG-TS demuxer: what OBS/ffmpeg send over SRT, turned into the same
//! [`Frame`]s and configs the RTMP path produces, so nothing downstream can
//! tell the two ingests apart.
//!
//! Bytes (in any chunking) and their arrival time go in; [`TsEvent`]s come out.
//! Only the first program is read, and in it the first H.264 (stream type
//! 0x1B) and the first AAC ADTS (0x0F) elementary stream.
//!
//! Damage is contained: a continuity gap drops the PES being assembled (never
//! a corrupted frame), lost video resumes at the next keyframe (the pictures
//! between might reference the lost one), lost sync is recovered on the 0x47
//! byte, and only input
//! that cannot be a usable stream at all (not TS, no PMT, no supported codec,
//! absurd PES sizes) is a fatal [`TsError`].
//!
//! Start gating: when the PMT lists both video and audio, the first
//! [`TsEvent::Config`] and the frames are held until both configs are known,
//! so the session starts with both codecs. The hold is bounded by
//! [`START_HOLD_TICKS`] of media time, [`MAX_HELD_FRAMES`] and
//! [`MAX_HELD_BYTES`]: past any of them the session starts with what is known
//! (with a [`TsWarning::StartedWithout`]) and a late codec arrives as a
//! config change.
//!
//! Latency: libavformat's muxer (ffmpeg, and OBS's SRT output) writes video
//! PES with PES_packet_length 0, so a picture is complete only when the next
//! picture's first packet arrives (one frame interval late: 33 ms at 30 fps).
//! Audio PES are bounded and emitted the moment they complete, but the muxer
//! batches about 2.9 KB of ADTS frames per PES (≈16 frames ≈ 0.34 s at
//! 64 kb/s), so audio reaches us in bursts up to that far behind the video.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use crate::media::aac;
use crate::media::h264::{self, H264Error, NAL_IDR, NAL_PPS, NAL_SPS};
use crate::media::{AudioConfig, Frame, Track, VideoConfig};

/// Transport packet size; SRT carries seven per 1316-byte datagram.
const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// Non-TS bytes tolerated before sync is declared impossible: enough for a
/// few mangled datagrams, small enough that a wrong payload fails at once.
const MAX_GARBAGE: usize = 16 * 1024;
/// Packets accepted before a usable PAT+PMT must have been seen. Encoders
/// repeat them every 100–500 ms; this is seconds even at high bitrates.
const MAX_PACKETS_WITHOUT_PMT: u64 = 8000;
/// PES size caps: a 4K intra picture stays well below 8 MiB.
const MAX_VIDEO_PES: usize = 8 << 20;
const MAX_AUDIO_PES: usize = 1 << 20;
/// PSI sections are at most 1024 bytes (section_length ≤ 1021).
const MAX_SECTION: usize = 1024;
/// Start gating bounds (see the module docs): 2 s at 90 kHz.
pub const START_HOLD_TICKS: i64 = 2 * 90_000;
pub const MAX_HELD_FRAMES: usize = 600;
pub const MAX_HELD_BYTES: usize = 16 << 20;
/// 33-bit PTS/DTS wrap.
const WRAP: i64 = 1 << 33;

const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
const NAL_AUD: u8 = 9;
const NAL_FILLER: u8 = 12;

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

/// One elementary stream's PES assembly state.
struct Pes {
    pid: u16,
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
    fn new(pid: u16, track: Track) -> Self {
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

/// Reassembles PSI sections of one PID.
#[derive(Default)]
struct SectionBuf {
    data: Vec<u8>,
    active: bool,
}

impl SectionBuf {
    /// Adds one packet payload; returns complete sections (CRC not yet checked).
    fn push(&mut self, pusi: bool, payload: &[u8]) -> Vec<Vec<u8>> {
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

/// A parsed transport packet header.
struct Packet<'a> {
    pid: u16,
    pusi: bool,
    tei: bool,
    cc: u8,
    has_payload: bool,
    discontinuity: bool,
    payload: &'a [u8],
}

fn parse_packet(p: &[u8]) -> Option<Packet<'_>> {
    let [_, b1, b2, b3] = *p.get(..4)? else {
        return None;
    };
    let afc = (b3 >> 4) & 0x03;
    let mut start = 4;
    let mut discontinuity = false;
    if afc & 0x02 != 0 {
        let af_len = usize::from(*p.get(4)?);
        if af_len > 0 {
            discontinuity = p.get(5)? & 0x80 != 0;
        }
        start = 5 + af_len;
        if start > PACKET {
            return None;
        }
    }
    let has_payload = afc & 0x01 != 0;
    Some(Packet {
        pid: u16::from(b1 & 0x1f) << 8 | u16::from(b2),
        pusi: b1 & 0x40 != 0,
        tei: b1 & 0x80 != 0,
        cc: b3 & 0x0f,
        has_payload,
        discontinuity,
        payload: if has_payload {
            p.get(start..PACKET)?
        } else {
            &[]
        },
    })
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
        // A last packet found after resync has no successor to confirm it.
        if !self.locked && self.buf.len() >= PACKET && self.buf[0] == SYNC {
            let packet: Vec<u8> = self.buf.drain(..PACKET).collect();
            if let Err(e) = self.packet(&packet, arrival_ms, out) {
                self.failed = Some(e);
                return;
            }
        }
        self.buf.clear();
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
        self.adts_leftover.clear();
        self.try_start(true, out);
    }

    fn process(&mut self, arrival_ms: u64, out: &mut Vec<TsEvent>) -> Result<(), TsError> {
        let mut pos = 0;
        let result = loop {
            let rest = self.buf.get(pos..).unwrap_or_default();
            if self.locked {
                if rest.len() < PACKET {
                    break Ok(());
                }
                if rest[0] == SYNC {
                    let packet: [u8; PACKET] = match rest[..PACKET].try_into() {
                        Ok(p) => p,
                        Err(_) => break Ok(()),
                    };
                    pos += PACKET;
                    if let Err(e) = self.packet(&packet, arrival_ms, out) {
                        break Err(e);
                    }
                    continue;
                }
                self.locked = false;
            }
            match rest.iter().position(|&b| b == SYNC) {
                None => {
                    self.garbage += rest.len();
                    pos = self.buf.len();
                    if self.garbage > MAX_GARBAGE {
                        break Err(TsError::NotTs {
                            skipped: self.garbage,
                        });
                    }
                    break Ok(());
                }
                Some(i) => {
                    self.garbage += i;
                    pos += i;
                    if self.garbage > MAX_GARBAGE {
                        break Err(TsError::NotTs {
                            skipped: self.garbage,
                        });
                    }
                    // Lock only when the next packet starts with sync too.
                    match rest.get(i + PACKET) {
                        None => break Ok(()),
                        Some(&SYNC) => {
                            self.locked = true;
                            if self.garbage > 0 {
                                out.push(TsEvent::Warning(TsWarning::Resync {
                                    skipped: self.garbage,
                                }));
                            }
                        }
                        Some(_) => {
                            self.garbage += 1;
                            pos += 1;
                        }
                    }
                }
            }
        };
        self.buf.drain(..pos.min(self.buf.len()));
        result
    }

    fn packet(&mut self, p: &[u8], arrival_ms: u64, out: &mut Vec<TsEvent>) -> Result<(), TsError> {
        self.garbage = 0;
        self.packets += 1;
        let Some(pkt) = parse_packet(p) else {
            return Ok(());
        };
        if pkt.pid == 0 {
            if !pkt.tei {
                for section in self.pat.push(pkt.pusi, pkt.payload) {
                    self.on_pat(&section, out);
                }
            }
        } else if Some(pkt.pid) == self.pmt_pid {
            if !pkt.tei {
                for section in self.pmt.push(pkt.pusi, pkt.payload) {
                    self.on_pmt(&section, out)?;
                }
            }
        } else if let Some(track) = self.track_of(pkt.pid) {
            self.on_es(track, &pkt, arrival_ms, out)?;
        }
        if self.pmt_section.is_empty() && self.packets >= MAX_PACKETS_WITHOUT_PMT {
            return Err(TsError::NoPmt {
                missing: if self.pmt_pid.is_some() { "PMT" } else { "PAT" },
                packets: self.packets,
            });
        }
        Ok(())
    }

    fn track_of(&self, pid: u16) -> Option<Track> {
        if self.video.as_ref().is_some_and(|p| p.pid == pid) {
            Some(Track::Video)
        } else if self.audio.as_ref().is_some_and(|p| p.pid == pid) {
            Some(Track::Audio)
        } else {
            None
        }
    }

    fn on_pat(&mut self, section: &[u8], out: &mut Vec<TsEvent>) {
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

    fn on_pmt(&mut self, section: &[u8], out: &mut Vec<TsEvent>) -> Result<(), TsError> {
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

    fn on_es(
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

    fn on_video(
        &mut self,
        payload: &[u8],
        dts: i64,
        cts: i32,
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) {
        let mut data = Vec::with_capacity(payload.len() + 16);
        let mut keyframe = false;
        let mut params_changed = false;
        let mut any = false;
        for nal in annexb_nal_units(payload) {
            any = true;
            match h264::nal_unit_type(nal) {
                Some(NAL_SPS) => {
                    params_changed |= self.sps.as_deref() != Some(nal);
                    self.sps = Some(nal.to_vec());
                }
                Some(NAL_PPS) => {
                    params_changed |= self.pps.as_deref() != Some(nal);
                    self.pps = Some(nal.to_vec());
                }
                Some(NAL_AUD) | Some(NAL_FILLER) | None => {}
                Some(t) => {
                    keyframe |= t == NAL_IDR;
                    // NAL sizes are bounded by the PES cap, far below 4 GiB.
                    data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    data.extend_from_slice(nal);
                }
            }
        }
        if !any {
            out.push(TsEvent::Warning(TsWarning::NoStartCode));
            return;
        }
        if params_changed {
            if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
                match h264::avc_decoder_config(sps, pps)
                    .and_then(|avcc| h264::parse_avc_decoder_config(&avcc))
                {
                    Ok(cfg) => {
                        if self.video_config.as_ref() != Some(&cfg) {
                            self.video_config = Some(cfg);
                            self.config_changed(out);
                        }
                    }
                    Err(e) => {
                        // Forget the bad set so it is retried (and reported) once more at most.
                        self.sps = None;
                        out.push(TsEvent::Warning(TsWarning::BadParameterSets(e)));
                    }
                }
            }
        }
        if data.is_empty() {
            return;
        }
        if self.video_config.is_none() {
            self.warn_before_config(Track::Video, out);
            return;
        }
        if self.video_needs_key {
            if !keyframe {
                self.skipped_for_key += 1;
                return;
            }
            self.video_needs_key = false;
            let frames = std::mem::take(&mut self.skipped_for_key);
            if frames > 0 {
                out.push(TsEvent::Warning(TsWarning::SkippedToKeyframe { frames }));
            }
        }
        self.emit(
            Frame {
                track: Track::Video,
                dts,
                cts,
                keyframe,
                data: Bytes::from(data),
                arrival_ms,
            },
            out,
        );
    }

    fn on_audio(&mut self, payload: &[u8], pes_dts: i64, arrival_ms: u64, out: &mut Vec<TsEvent>) {
        let carried = self.adts_leftover.len();
        let mut data = std::mem::take(&mut self.adts_leftover);
        data.extend_from_slice(payload);
        let carried_dts = self.adts_leftover_dts.take();
        // Frames starting in the carried bytes continue the previous PES's timeline;
        // the PES PTS belongs to the first frame that starts in this PES.
        let (mut old_n, mut new_n) = (0i64, 0i64);
        let mut pos = 0;
        let mut skipped = 0;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            if rest.len() < 7 {
                break;
            }
            let header = match parse_adts(rest) {
                Ok(h) => h,
                Err(AdtsProblem::NeedMore) => break,
                Err(AdtsProblem::NoSync) => {
                    pos += 1;
                    skipped += 1;
                    continue;
                }
                Err(AdtsProblem::Unsupported(why)) => {
                    self.warn_adts(why, out);
                    pos += 1;
                    continue;
                }
            };
            if rest.len() < header.frame_length {
                break;
            }
            if skipped > 0 {
                out.push(TsEvent::Warning(TsWarning::AdtsResync { skipped }));
                skipped = 0;
            }
            let raw = rest.get(header.header_len..header.frame_length);
            pos += header.frame_length;
            if header.raw_blocks > 0 {
                self.warn_adts("several raw data blocks in one ADTS frame", out);
                continue;
            }
            if !self.set_audio_config(&header, out) {
                continue;
            }
            let Some(cfg) = &self.audio_config else {
                continue;
            };
            let step = |n: i64| frames_to_ticks(cfg, n);
            let started_in_carried = pos - header.frame_length < carried;
            let dts = match (started_in_carried, carried_dts) {
                (true, Some(d)) => {
                    old_n += 1;
                    d + step(old_n - 1)
                }
                _ => {
                    new_n += 1;
                    pes_dts + step(new_n - 1)
                }
            };
            self.audio_next_dts = Some(dts + step(1));
            let Some(raw) = raw.filter(|r| !r.is_empty()) else {
                continue;
            };
            self.emit(
                Frame {
                    track: Track::Audio,
                    dts,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::copy_from_slice(raw),
                    arrival_ms,
                },
                out,
            );
        }
        if skipped > 0 {
            out.push(TsEvent::Warning(TsWarning::AdtsResync { skipped }));
        }
        let rest = data.get(pos..).unwrap_or_default();
        if !rest.is_empty() && rest.len() < (1 << 13) {
            self.adts_leftover = rest.to_vec();
            let step = |n| {
                self.audio_config
                    .as_ref()
                    .map_or(0, |c| frames_to_ticks(c, n))
            };
            self.adts_leftover_dts = Some(if pos < carried {
                carried_dts.unwrap_or(pes_dts) + step(old_n)
            } else {
                pes_dts + step(new_n)
            });
        }
    }

    /// Updates the audio config from an ADTS header; false when it is unusable.
    fn set_audio_config(&mut self, h: &AdtsHeader, out: &mut Vec<TsEvent>) -> bool {
        let fields = (h.profile, h.sampling_index, h.channel_config);
        if self.adts_fields == Some(fields) {
            return true;
        }
        let rate = ADTS_RATES
            .get(usize::from(h.sampling_index))
            .copied()
            .unwrap_or(0);
        let channels = if h.channel_config == 7 {
            8
        } else {
            h.channel_config
        };
        let cfg = aac::audio_specific_config(h.profile + 1, rate, channels)
            .and_then(|asc| aac::parse_audio_specific_config(&asc));
        match cfg {
            Ok(cfg) => {
                self.adts_fields = Some(fields);
                if self.audio_config.as_ref() != Some(&cfg) {
                    self.audio_config = Some(cfg);
                    self.config_changed(out);
                }
                true
            }
            Err(_) => {
                self.warn_adts("no AudioSpecificConfig for its header fields", out);
                false
            }
        }
    }

    /// Unsupported ADTS frames repeat with every frame: one warning per reason.
    fn warn_adts(&mut self, why: &'static str, out: &mut Vec<TsEvent>) {
        if !self.warned_adts.contains(&why) {
            self.warned_adts.push(why);
            out.push(TsEvent::Warning(TsWarning::UnsupportedAdts(why)));
        }
    }

    fn warn_before_config(&mut self, track: Track, out: &mut Vec<TsEvent>) {
        let i = usize::from(track == Track::Audio);
        if !self.warned_before_config[i] {
            self.warned_before_config[i] = true;
            out.push(TsEvent::Warning(TsWarning::FramesBeforeConfig { track }));
        }
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

/// Duration of `n` AAC frames in 90 kHz ticks, rounded down from the exact
/// value (not accumulated per frame, so no drift within a PES).
fn frames_to_ticks(cfg: &AudioConfig, n: i64) -> i64 {
    n * i64::from(cfg.samples_per_frame) * 90_000 / i64::from(cfg.sample_rate.max(1))
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
fn read_timestamp(b: &[u8]) -> Option<u64> {
    let [a, b1, b2, b3, b4] = *b else { return None };
    Some(
        (u64::from(a >> 1) & 0x07) << 30
            | u64::from(b1) << 22
            | (u64::from(b2) >> 1) << 15
            | u64::from(b3) << 7
            | u64::from(b4) >> 1,
    )
}

/// NAL units of an Annex B byte stream (3- or 4-byte start codes); bytes
/// before the first start code and trailing zero bytes are dropped.
fn annexb_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start_code(data, 0).map(|i| i + 3);
    std::iter::from_fn(move || loop {
        let start = pos?;
        let next = find_start_code(data, start);
        let end = next.unwrap_or(data.len());
        pos = next.map(|i| i + 3);
        let mut nal = data.get(start..end).unwrap_or_default();
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| i + from)
}

const ADTS_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

struct AdtsHeader {
    profile: u8,
    sampling_index: u8,
    channel_config: u8,
    frame_length: usize,
    header_len: usize,
    raw_blocks: u8,
}

enum AdtsProblem {
    NeedMore,
    NoSync,
    Unsupported(&'static str),
}

fn parse_adts(b: &[u8]) -> Result<AdtsHeader, AdtsProblem> {
    let [b0, b1, b2, b3, b4, b5, b6, ..] = *b else {
        return Err(AdtsProblem::NeedMore);
    };
    // Sync word and layer 0.
    if b0 != 0xff || b1 & 0xf6 != 0xf0 {
        return Err(AdtsProblem::NoSync);
    }
    let protection_absent = b1 & 0x01 != 0;
    let header_len = if protection_absent { 7 } else { 9 };
    let frame_length = usize::from(b3 & 0x03) << 11 | usize::from(b4) << 3 | usize::from(b5 >> 5);
    if frame_length <= header_len {
        return Err(AdtsProblem::NoSync);
    }
    let sampling_index = (b2 >> 2) & 0x0f;
    if usize::from(sampling_index) >= ADTS_RATES.len() {
        return Err(AdtsProblem::NoSync);
    }
    let channel_config = (b2 & 0x01) << 2 | b3 >> 6;
    if channel_config == 0 {
        return Err(AdtsProblem::Unsupported(
            "channel layout in a program config element",
        ));
    }
    Ok(AdtsHeader {
        profile: b2 >> 6,
        sampling_index,
        channel_config,
        frame_length,
        header_len,
        raw_blocks: b6 & 0x03,
    })
}

/// CRC-32/MPEG-2 (poly 0x04C11DB7, no reflection); a section including its
/// CRC field checks to 0.
fn crc32_mpeg2(data: &[u8]) -> u32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    const AV: &[u8] = include_bytes!("../../fixtures/ts_h264_aac.ts");

    fn demux(data: &[u8], chunk: usize) -> (Vec<TsEvent>, Result<(), TsError>) {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            if let Err(e) = d.push(c, 7, &mut out) {
                return (out, Err(e));
            }
        }
        d.finish(7, &mut out);
        (out, Ok(()))
    }

    const BFRAMES: &[u8] = include_bytes!("../../fixtures/ts_h264_bframes.ts");
    const WRAPPING: &[u8] = include_bytes!("../../fixtures/ts_wrap.ts");
    const AAC_ONLY: &[u8] = include_bytes!("../../fixtures/ts_aac_only.ts");
    /// The same encode as `AV`, muxed to FLV (what the RTMP path would receive).
    const AV_FLV: &[u8] = include_bytes!("../../fixtures/ts_h264_aac.flv");

    fn frames(events: &[TsEvent], track: Track) -> Vec<&Frame> {
        events
            .iter()
            .filter_map(|e| match e {
                TsEvent::Frame(f) if f.track == track => Some(f),
                _ => None,
            })
            .collect()
    }

    fn warnings(events: &[TsEvent]) -> Vec<&TsWarning> {
        events
            .iter()
            .filter_map(|e| match e {
                TsEvent::Warning(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    fn configs(events: &[TsEvent]) -> Vec<(Option<VideoConfig>, Option<AudioConfig>)> {
        events
            .iter()
            .filter_map(|e| match e {
                TsEvent::Config { video, audio } => Some((video.clone(), audio.clone())),
                _ => None,
            })
            .collect()
    }

    fn pid(packet: &[u8]) -> u16 {
        u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2])
    }

    /// Rewrites every packet for which `f` returns Some.
    fn map_packets(data: &[u8], mut f: impl FnMut(usize, &[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
        data.chunks(PACKET)
            .enumerate()
            .flat_map(|(i, p)| f(i, p).unwrap_or_else(|| p.to_vec()))
            .collect()
    }

    /// Replaces the PMT (PID 0x1000 in ffmpeg output) with `streams`, CRC fixed or not.
    fn with_pmt(data: &[u8], streams: &[(u8, u16)], good_crc: bool) -> Vec<u8> {
        let mut section = vec![0x02, 0xb0, 0, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0];
        for &(t, pid) in streams {
            section.extend_from_slice(&[t, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
        }
        let len = section.len() - 3 + 4;
        section[1] = 0xb0 | (len >> 8) as u8;
        section[2] = len as u8;
        let crc = crc32_mpeg2(&section) ^ u32::from(!good_crc);
        section.extend_from_slice(&crc.to_be_bytes());
        map_packets(data, |_, p| {
            (pid(p) == 0x1000).then(|| {
                let mut q = vec![0x47, 0x50, 0x00, p[3], 0];
                q.extend_from_slice(&section);
                q.resize(PACKET, 0xff);
                q
            })
        })
    }

    /// FLV tags (type, ms timestamp, body) of a file.
    fn flv_tags(file: &[u8]) -> Vec<(u8, u32, Bytes)> {
        let file = Bytes::copy_from_slice(file);
        let mut off = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize + 4;
        let mut tags = Vec::new();
        while off + 11 <= file.len() {
            let h = &file[off..off + 11];
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            tags.push((h[0] & 0x1f, ts, file.slice(off + 11..off + 11 + size)));
            off += 11 + size + 4;
        }
        tags
    }

    #[test]
    fn fixture_matches_ffprobe() {
        // `ffprobe -show_packets fixtures/ts_h264_aac.ts`: 60 video packets from
        // dts 127920 in steps of 3000 (30 fps, no B-frames), keyframes every 30;
        // 95 AAC frames from 126000 in steps of 1920 (1024 samples at 48 kHz).
        let (ev, r) = demux(AV, AV.len());
        r.unwrap();
        let video = frames(&ev, Track::Video);
        let audio = frames(&ev, Track::Audio);
        assert_eq!(video.len(), 60);
        assert_eq!(audio.len(), 95);
        for (i, f) in video.iter().enumerate() {
            assert_eq!(f.dts, 127_920 + 3000 * i as i64);
            assert_eq!(f.cts, 0);
            assert_eq!(f.keyframe, i % 30 == 0, "frame {i}");
            assert_eq!(f.arrival_ms, 7);
            assert!(h264::check_avcc_framing(&f.data).is_ok());
            for nal in h264::avcc_nal_units(&f.data) {
                let t = h264::nal_unit_type(nal).unwrap();
                assert!(![NAL_SPS, NAL_PPS, NAL_AUD, NAL_FILLER].contains(&t));
            }
        }
        for (i, f) in audio.iter().enumerate() {
            assert_eq!(f.dts, 126_000 + 1920 * i as i64);
            assert!(f.keyframe && f.cts == 0);
            assert_ne!(&f.data[..2], &[0xff, 0xf1], "ADTS header stripped");
        }
        assert!(warnings(&ev).is_empty(), "{:?}", warnings(&ev));
        // One Config, before any frame, with both codecs.
        let cfgs = configs(&ev);
        assert_eq!(cfgs.len(), 1);
        assert!(matches!(ev[0], TsEvent::Config { .. }));
        let (v, a) = &cfgs[0];
        let v = v.as_ref().unwrap();
        let a = a.as_ref().unwrap();
        assert_eq!(
            (v.width, v.height, v.profile_idc, v.level_idc),
            (320, 240, 100, 13)
        );
        assert_eq!(v.fps, Some(30.0));
        assert_eq!(v.codec_string(), "avc1.64000D");
        assert_eq!((a.sample_rate, a.channels, a.object_type), (48_000, 2, 2));
        assert_eq!(a.samples_per_frame, 1024);
    }

    #[test]
    fn same_configs_and_frames_as_rtmp() {
        use crate::ingest::flv::{parse_audio_tag, parse_video_tag, AudioTag, VideoTag};
        let (ev, r) = demux(AV, 1316);
        r.unwrap();
        let (v, a) = configs(&ev)[0].clone();
        let (mut flv_video, mut flv_audio, mut vframes, mut aframes) = (None, None, vec![], vec![]);
        for (kind, ts, body) in flv_tags(AV_FLV) {
            match kind {
                9 => match parse_video_tag(&body).unwrap() {
                    VideoTag::SequenceHeader(c) => flv_video = Some(c),
                    VideoTag::Frame { data, keyframe, .. } => vframes.push((ts, data, keyframe)),
                    VideoTag::EndOfSequence => {}
                },
                8 => match parse_audio_tag(&body).unwrap() {
                    AudioTag::SequenceHeader(c) => flv_audio = Some(c),
                    AudioTag::Frame(data) => aframes.push(data),
                },
                _ => {}
            }
        }
        // Identical avcC bytes: the SRT and RTMP sessions are indistinguishable.
        assert_eq!(v, flv_video);
        // ffmpeg's FLV ASC adds explicit "no SBR" signalling (11 90 56 e5 00);
        // ADTS cannot carry it, so only the decoded fields are compared.
        let (a, fa) = (a.unwrap(), flv_audio.unwrap());
        assert_eq!(&a.asc[..], &[0x11, 0x90]);
        assert_eq!(
            (
                a.object_type,
                a.sample_rate,
                a.channels,
                a.samples_per_frame
            ),
            (
                fa.object_type,
                fa.sample_rate,
                fa.channels,
                fa.samples_per_frame
            )
        );
        // Same access units: AUD and in-band SPS/PPS removed, everything else kept.
        let video = frames(&ev, Track::Video);
        assert_eq!(video.len(), vframes.len());
        for (f, (_, data, key)) in video.iter().zip(&vframes) {
            assert_eq!(&f.data, data);
            assert_eq!(f.keyframe, *key);
        }
        let audio = frames(&ev, Track::Audio);
        assert_eq!(audio.len(), aframes.len());
        for (f, data) in audio.iter().zip(&aframes) {
            assert_eq!(&f.data, data);
        }
    }

    #[test]
    fn every_chunking_gives_the_same_events() {
        for file in [AV, BFRAMES, WRAPPING, AAC_ONLY] {
            let (whole, r) = demux(file, file.len());
            r.unwrap();
            for chunk in [1, 7, 100, 188, 1316, 4096] {
                assert_eq!(demux(file, chunk).0, whole, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn b_frames_carry_composition_offsets() {
        // ffprobe: first video packet pts 132000 dts 126000; 60 frames, 30 fps.
        let (ev, r) = demux(BFRAMES, 1316);
        r.unwrap();
        let video = frames(&ev, Track::Video);
        assert_eq!(video.len(), 60);
        assert_eq!((video[0].dts, video[0].cts), (126_000, 6000));
        assert!(video[0].keyframe);
        assert!(video.iter().filter(|f| f.cts > 0).count() > 30);
        for w in video.windows(2) {
            assert_eq!(w[1].dts - w[0].dts, 3000);
        }
        // Presentation times are a permutation of the 30 fps grid.
        let mut pts: Vec<i64> = video.iter().map(|f| f.dts + i64::from(f.cts)).collect();
        pts.sort();
        for w in pts.windows(2) {
            assert_eq!(w[1] - w[0], 3000);
        }
        assert_eq!(frames(&ev, Track::Audio).len(), 95);
    }

    #[test]
    fn timestamps_unwrap_across_the_33_bit_wrap() {
        // ffprobe shows the first video dts as -91592: 2^33 - 91592 raw, wrapping ~1 s in.
        let (ev, r) = demux(WRAPPING, 1316);
        r.unwrap();
        let video = frames(&ev, Track::Video);
        let audio = frames(&ev, Track::Audio);
        assert_eq!((video.len(), audio.len()), (60, 95));
        assert_eq!(video[0].dts, WRAP - 91_592);
        assert!(video.last().unwrap().dts > WRAP);
        for w in video.windows(2) {
            assert_eq!(w[1].dts - w[0].dts, 3000);
        }
        for w in audio.windows(2) {
            assert_eq!(w[1].dts - w[0].dts, 1920);
        }
        // A/V offset is the same as in the unwrapped fixture.
        let (plain, _) = demux(AV, AV.len());
        let offset =
            |ev: &[TsEvent]| frames(ev, Track::Video)[0].dts - frames(ev, Track::Audio)[0].dts;
        assert_eq!(offset(&ev), offset(&plain));
    }

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
    fn audio_only_stream() {
        // ffprobe: 45 AAC frames, 44.1 kHz mono, first dts 126000.
        let (ev, r) = demux(AAC_ONLY, 1316);
        r.unwrap();
        let (v, a) = configs(&ev)[0].clone();
        assert!(v.is_none());
        let a = a.unwrap();
        assert_eq!((a.sample_rate, a.channels), (44_100, 1));
        let audio = frames(&ev, Track::Audio);
        assert_eq!(audio.len(), 45);
        assert_eq!(audio[0].dts, 126_000);
        for (i, f) in audio.iter().enumerate() {
            // Each PES PTS is rounded to 90 kHz by the muxer: allow one tick.
            let exact = 126_000 + i as i64 * 1024 * 90_000 / 44_100;
            assert!((f.dts - exact).abs() <= 1, "{} vs {exact}", f.dts);
        }
        assert!(warnings(&ev).is_empty());
    }

    #[test]
    fn lost_packets_drop_whole_frames_and_resume_at_a_keyframe() {
        let (clean, _) = demux(AV, AV.len());
        let clean_frames: Vec<&Frame> =
            [frames(&clean, Track::Video), frames(&clean, Track::Audio)].concat();
        // Remove a few packets from the middle of both elementary streams.
        let mut es_seen = 0;
        let damaged = map_packets(AV, |_, p| {
            if pid(p) == 0x100 || pid(p) == 0x101 {
                es_seen += 1;
                if [150, 151, 300, 420, 500].contains(&es_seen) {
                    return Some(Vec::new());
                }
            }
            None
        });
        for chunk in [188, 1316] {
            let (ev, r) = demux(&damaged, chunk);
            r.unwrap();
            let gaps = warnings(&ev)
                .iter()
                .filter(|w| matches!(w, TsWarning::ContinuityGap { .. }))
                .count();
            assert!(gaps >= 3, "{:?}", warnings(&ev));
            let video = frames(&ev, Track::Video);
            assert!(video.len() < 60 && video.len() >= 10, "{}", video.len());
            // After lost video data, the next picture out is a keyframe (the ones between
            // could reference what was lost), and the skip is reported.
            let mut need_key = false;
            for e in &ev {
                match e {
                    TsEvent::Warning(
                        TsWarning::ContinuityGap { pid: 0x100, .. }
                        | TsWarning::PesTruncated { pid: 0x100, .. },
                    ) => need_key = true,
                    TsEvent::Frame(f) if f.track == Track::Video => {
                        assert!(!need_key || f.keyframe, "picture at {} after a loss", f.dts);
                        need_key = false;
                    }
                    _ => {}
                }
            }
            assert!(warnings(&ev)
                .iter()
                .any(|w| matches!(w, TsWarning::SkippedToKeyframe { .. })));
            // Audio carries on to the end.
            assert_eq!(
                frames(&ev, Track::Audio).last().unwrap().dts,
                frames(&clean, Track::Audio).last().unwrap().dts,
                "stream continues"
            );
            // Every emitted frame is byte-identical to the clean one with that dts.
            for f in frames(&ev, Track::Video)
                .into_iter()
                .chain(frames(&ev, Track::Audio))
            {
                assert!(
                    clean_frames.contains(&f),
                    "corrupt {:?} frame at {}",
                    f.track,
                    f.dts
                );
            }
        }
    }

    #[test]
    fn joining_mid_gop_drops_undecodable_pictures() {
        // Start 100 packets in: no SPS/PPS until the second keyframe (frame 30).
        let (ev, r) = demux(&AV[188 * 100..], 1316);
        r.unwrap();
        let w = warnings(&ev);
        assert!(
            w.contains(&&TsWarning::FramesBeforeConfig {
                track: Track::Video
            }),
            "{w:?}"
        );
        let video = frames(&ev, Track::Video);
        assert_eq!(video.len(), 30);
        assert!(video[0].keyframe);
        assert_eq!(video[0].dts, 127_920 + 30 * 3000);
        // Audio was held until video could start, then released in order.
        assert!(matches!(
            ev.iter().find(|e| !matches!(e, TsEvent::Warning(_))),
            Some(TsEvent::Config { .. })
        ));
        assert!(!frames(&ev, Track::Audio).is_empty());
    }

    #[test]
    fn parameter_set_change_emits_config_before_the_frame() {
        // Two encodes back to back: the second has a different SPS (B-frames, refs).
        let input = [AV, BFRAMES].concat();
        let (ev, r) = demux(&input, 1316);
        r.unwrap();
        let cfgs = configs(&ev);
        assert_eq!(cfgs.len(), 2);
        assert_ne!(cfgs[0].0, cfgs[1].0);
        assert_eq!(cfgs[0].1, cfgs[1].1);
        // The second Config comes right before the first picture of the second encode.
        let i = ev
            .iter()
            .rposition(|e| matches!(e, TsEvent::Config { .. }))
            .unwrap();
        let next_video = ev[i..]
            .iter()
            .find_map(|e| match e {
                TsEvent::Frame(f) if f.track == Track::Video => Some(f),
                _ => None,
            })
            .unwrap();
        assert!(next_video.keyframe);
        // The splice breaks continuity: the last picture of the first encode,
        // still open (unbounded PES) when the gap shows, is dropped as unsafe.
        assert_eq!(frames(&ev, Track::Video).len(), 119);
        assert!(warnings(&ev)
            .iter()
            .all(|w| matches!(w, TsWarning::ContinuityGap { .. })));
    }

    #[test]
    fn pmt_changes_mid_stream() {
        // First second: the PMT lists video only (audio packets are then
        // unknown PIDs); then a new PMT version adds the AAC stream.
        let half = 188 * (AV.len() / 188 / 2);
        let video_only = with_pmt(&AV[..half], &[(0x1b, 0x100)], true);
        let input = [video_only, AV[half..].to_vec()].concat();
        let (ev, r) = demux(&input, 1316);
        r.unwrap();
        let cfgs = configs(&ev);
        assert_eq!(cfgs.len(), 2, "{cfgs:?}");
        assert!(cfgs[0].0.is_some() && cfgs[0].1.is_none());
        assert!(cfgs[1].0 == cfgs[0].0 && cfgs[1].1.is_some());
        assert_eq!(frames(&ev, Track::Video).len(), 60);
        let audio = frames(&ev, Track::Audio);
        assert!(!audio.is_empty() && audio.len() < 95);
        assert!(warnings(&ev).is_empty(), "{:?}", warnings(&ev));
    }

    #[test]
    fn duplicate_packets_are_ignored() {
        let dup = map_packets(AV, |i, p| (i == 40 || i == 41).then(|| [p, p].concat()));
        assert_eq!(demux(&dup, 1316).0, demux(AV, 1316).0);
    }

    #[test]
    fn garbage_is_skipped() {
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let (clean, _) = demux(AV, AV.len());
        let mut input = noise.clone();
        input.extend_from_slice(AV);
        let (ev, r) = demux(&input, 1316);
        r.unwrap();
        assert!(matches!(warnings(&ev)[..], [TsWarning::Resync { .. }]));
        assert_eq!(frames(&ev, Track::Video), frames(&clean, Track::Video));
        // Garbage between packets too: resync, some loss, no corrupt frame.
        let mid = 188 * 300;
        let input = [&AV[..mid], &noise[..500], &AV[mid..]].concat();
        let (ev, r) = demux(&input, 1316);
        r.unwrap();
        assert!(warnings(&ev)
            .iter()
            .any(|w| matches!(w, TsWarning::Resync { .. })));
        let clean_video = frames(&clean, Track::Video);
        for f in frames(&ev, Track::Video) {
            assert!(clean_video.contains(&f));
        }
    }

    #[test]
    fn non_ts_input_fails_fast() {
        let text = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".repeat(4000);
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let err = text
            .chunks(1316)
            .find_map(|c| {
                fed += c.len();
                d.push(c, 0, &mut out).err()
            })
            .expect("fatal error");
        assert!(matches!(err, TsError::NotTs { .. }), "{err}");
        assert!(fed <= MAX_GARBAGE + 1316);
        assert!(err.to_string().contains("not MPEG-TS"));
        // The session stays failed.
        assert_eq!(d.push(AV, 0, &mut out), Err(err));
        // All 0x47 bytes: "in sync" but never a PMT.
        let (_, r) = demux(&vec![0x47; 188 * 9000], 1316);
        assert!(matches!(r, Err(TsError::NoPmt { .. })), "{r:?}");
    }

    #[test]
    fn pmt_with_bad_crc_is_ignored_then_fatal() {
        let bad = with_pmt(AV, &[(0x1b, 0x100), (0x0f, 0x101)], false);
        let input = bad.repeat(12);
        let (ev, r) = demux(&input, 1316);
        let err = r.unwrap_err();
        assert!(
            matches!(err, TsError::NoPmt { missing: "PMT", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("broken or missing PMT"));
        assert_eq!(warnings(&ev), vec![&TsWarning::BadCrc { table: "PMT" }]);
        assert!(frames(&ev, Track::Video).is_empty());
        // The same PMT with a good CRC works (the rewrite itself is sound).
        let good = with_pmt(AV, &[(0x1b, 0x100), (0x0f, 0x101)], true);
        assert_eq!(frames(&demux(&good, 1316).0, Track::Video).len(), 60);
    }

    #[test]
    fn no_supported_stream_is_fatal_and_named() {
        let hevc = with_pmt(AV, &[(0x24, 0x100), (0x03, 0x101)], true);
        let (_, r) = demux(&hevc, 1316);
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("0x24 HEVC on PID 0x100"), "{msg}");
        assert!(msg.contains("0x03 MPEG-1 audio (MP3)"), "{msg}");
    }

    #[test]
    fn unsupported_streams_are_warned_once_and_skipped() {
        let input = with_pmt(AV, &[(0x1b, 0x100), (0x03, 0x101), (0x15, 0x102)], true);
        let (ev, r) = demux(&input, 1316);
        r.unwrap();
        let w = warnings(&ev);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(matches!(
            w[0],
            TsWarning::UnsupportedStream {
                stream_type: 0x03,
                ..
            }
        ));
        assert!(matches!(
            w[1],
            TsWarning::UnsupportedStream {
                stream_type: 0x15,
                ..
            }
        ));
        let (v, a) = configs(&ev)[0].clone();
        assert!(v.is_some() && a.is_none());
        assert_eq!(frames(&ev, Track::Video).len(), 60);
        assert!(frames(&ev, Track::Audio).is_empty());
    }

    #[test]
    fn start_waits_for_both_codecs_but_not_forever() {
        // Audio listed in the PMT but never sent: start after 2 s of video at most.
        let no_audio = map_packets(AV, |_, p| (pid(p) == 0x101).then(Vec::new));
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        d.push(&no_audio, 0, &mut out).unwrap();
        // 60 frames span 1.97 s: still held before finish.
        assert!(out.is_empty(), "{out:?}");
        d.finish(0, &mut out);
        assert_eq!(
            warnings(&out),
            vec![&TsWarning::StartedWithout {
                track: Track::Audio
            }]
        );
        assert_eq!(frames(&out, Track::Video).len(), 60);
        // Held frames are bounded even when the media time does not advance
        // (the same 2 s replayed): the frame cap starts the session.
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        let mut started_at = None;
        for round in 0..12 {
            for c in no_audio.chunks(1316) {
                d.push(c, 0, &mut out).unwrap();
                if started_at.is_none() && !configs(&out).is_empty() {
                    started_at = Some(round);
                }
                assert!(d.held.len() < MAX_HELD_FRAMES);
            }
        }
        // ~60 frames a round (continuity breaks at each replay cost one).
        assert!(matches!(started_at, Some(9..=10)), "{started_at:?}");
        // Media time past START_HOLD_TICKS starts it as well.
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        d.push(&no_audio, 0, &mut out).unwrap();
        assert!(out.is_empty());
        let later = map_packets(&no_audio, |_, p| {
            // Shift the video PTS by 1 s: PES header PTS at byte 13.. of PUSI packets.
            (pid(p) == 0x100 && p[1] & 0x40 != 0 && p[3] & 0x20 == 0).then(|| {
                let mut q = p.to_vec();
                let pts = read_timestamp(&q[13..18]).unwrap() + 90_000;
                q[13] = 0x21 | ((pts >> 29) & 0x0e) as u8;
                q[14] = (pts >> 22) as u8;
                q[15] = 0x01 | ((pts >> 14) as u8 & 0xfe);
                q[16] = (pts >> 7) as u8;
                q[17] = 0x01 | (pts << 1) as u8;
                q
            })
        });
        d.push(&later, 0, &mut out).unwrap();
        assert_eq!(configs(&out).len(), 1);
        // Audio starting late arrives as a config change.
        d.push(AV, 0, &mut out).unwrap();
        let cfgs = configs(&out);
        assert_eq!(cfgs.len(), 2);
        assert!(cfgs[0].1.is_none() && cfgs[1].1.is_some());
        assert_eq!(cfgs[0].0, cfgs[1].0);
    }

    /// Builds TS packets for one PES on `pid` starting at continuity counter `cc`.
    fn pes_packets(pid: u16, cc: &mut u8, pes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in pes.chunks(184).enumerate() {
            let pusi = if i == 0 { 0x40 } else { 0 };
            let mut p = vec![0x47, pusi | (pid >> 8) as u8, pid as u8];
            if chunk.len() == 184 {
                p.push(0x10 | *cc);
            } else {
                // Pad with an adaptation field.
                let af = 184 - chunk.len() - 1;
                p.push(0x30 | *cc);
                p.push(af as u8);
                if af > 0 {
                    p.push(0);
                    p.resize(p.len() + af - 1, 0xff);
                }
            }
            p.extend_from_slice(chunk);
            *cc = (*cc + 1) & 0x0f;
            out.extend_from_slice(&p);
        }
        out
    }

    fn pes(stream_id: u8, pts: u64, payload: &[u8], bounded: bool) -> Vec<u8> {
        let len = if bounded { payload.len() + 8 } else { 0 };
        let mut v = vec![
            0,
            0,
            1,
            stream_id,
            (len >> 8) as u8,
            len as u8,
            0x80,
            0x80,
            5,
        ];
        v.extend_from_slice(&[
            0x21 | ((pts >> 29) & 0x0e) as u8,
            (pts >> 22) as u8,
            0x01 | (pts >> 14) as u8 & 0xfe,
            (pts >> 7) as u8,
            0x01 | (pts << 1) as u8,
        ]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn adts_frames_split_across_pes() {
        // Take the AAC frames of the audio-only fixture and re-mux them so each
        // PES ends in the middle of a frame.
        let (ev, _) = demux(AAC_ONLY, AAC_ONLY.len());
        let src = frames(&ev, Track::Audio);
        let adts: Vec<u8> = src
            .iter()
            .flat_map(|f| {
                let len = f.data.len() + 7;
                let mut h = vec![
                    0xff,
                    0xf1,
                    0x50 | (4 << 2),
                    0x40 | (len >> 11) as u8,
                    (len >> 3) as u8,
                    ((len & 7) << 5) as u8 | 0x1f,
                    0xfc,
                ];
                h.extend_from_slice(&f.data);
                h
            })
            .collect();
        let mut stream: Vec<u8> = AAC_ONLY[..188 * 3]
            .iter()
            .copied()
            .filter(|_| true)
            .collect();
        // Keep only PAT/PMT packets from the original head.
        stream = map_packets(&stream, |_, p| {
            (pid(p) != 0 && pid(p) != 0x1000).then(Vec::new)
        });
        let mut cc = 0;
        let mut off = 0;
        let mut frames_before = 0usize;
        for (k, size) in [500usize, 333, 1000, 777].iter().cycle().enumerate() {
            if off >= adts.len() {
                break;
            }
            let end = (off + size).min(adts.len());
            // PTS of the first frame starting in this PES.
            let mut starts = 0usize;
            let mut pos = 0usize;
            let mut first_start = None;
            for f in &src {
                if pos >= off && pos < end && first_start.is_none() {
                    first_start = Some(starts);
                }
                if pos < end {
                    starts += 1;
                }
                pos += f.data.len() + 7;
            }
            let idx = first_start.unwrap_or(frames_before) as u64;
            frames_before = starts;
            let pts = 126_000 + idx * 1024 * 90_000 / 44_100;
            stream.extend(pes_packets(
                0x100,
                &mut cc,
                &pes(0xc0, pts, &adts[off..end], k % 2 == 0),
            ));
            off = end;
        }
        let (ev2, r) = demux(&stream, 1316);
        r.unwrap();
        assert!(warnings(&ev2).is_empty(), "{:?}", warnings(&ev2));
        let got = frames(&ev2, Track::Audio);
        assert_eq!(got.len(), src.len());
        for (a, b) in got.iter().zip(&src) {
            assert_eq!(a.data, b.data);
            assert!((a.dts - b.dts).abs() <= 2, "{} vs {}", a.dts, b.dts);
        }
    }

    /// Throughput probe: `cargo test --release --lib mpegts_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn mpegts_throughput() {
        let input = AV.repeat(200);
        let t = std::time::Instant::now();
        let (ev, _) = demux(&input, 1316);
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{} MiB in {secs:.3} s = {:.0} MiB/s, {} events",
            input.len() >> 20,
            input.len() as f64 / secs / 1048576.0,
            ev.len()
        );
    }

    #[test]
    fn random_mutations_never_panic() {
        let base = &AV[..188 * 200];
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..5000 {
            let mut data = base.to_vec();
            for _ in 0..(1 + next() % 16) {
                if data.is_empty() {
                    break;
                }
                let i = next() as usize % data.len();
                match next() % 4 {
                    0 => data[i] ^= 1 << (next() % 8),
                    1 => data[i] = next() as u8,
                    2 => data.truncate(i.max(1)),
                    _ => {
                        let n = (next() % 400) as usize;
                        data.drain(i..(i + n).min(data.len()));
                    }
                }
            }
            let chunk = 1 + next() as usize % 2000;
            let _ = demux(&data, chunk);
        }
    }
}
