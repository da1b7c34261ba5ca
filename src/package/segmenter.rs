//! Cuts a stream of [`Frame`]s into LL-HLS parts and segments (sans-IO).
//!
//! Rules: a segment starts on a video keyframe at or after `segment_target`;
//! a part never exceeds `part_target`. A part is closed as soon as the frame that
//! fills it arrives (its last frame's duration is predicted from the previous
//! frame interval), so a part is available one processing step after its last
//! frame, not one frame later. Each part carries its own `tfdt`, so a
//! mispredicted duration costs a sub-millisecond gap, never drift.
//!
//! Output media time is continuous across publisher sessions: a reconnecting
//! publisher whose clock restarts at zero is shifted to follow on, and the first
//! segment after it is flagged as a discontinuity.

use bytes::{Bytes, BytesMut};

use crate::media::{AudioConfig, Frame, Track, VideoConfig, TIMESCALE};
use crate::package::cmaf::{self, Sample, TrackRun, AUDIO_TRACK_ID, VIDEO_TRACK_ID};
use crate::package::emsg::{self, TimedMetadata};
use crate::package::follow::Lead;

/// Cut settings in 90 kHz ticks.
#[derive(Debug, Clone, Copy)]
pub struct CutConfig {
    pub segment_target: u64,
    /// The longest part we ever emit; advertised as `PART-TARGET`.
    pub part_target: u64,
}

/// Slack on the configured part target. RTMP timestamps are whole milliseconds,
/// so six 30 fps frames span 199–201 ms; without slack a 200 ms target would get
/// five-frame parts. The playlist advertises the target including this slack, so
/// "every part ≤ PART-TARGET" holds exactly.
pub const PART_TARGET_SLACK: u64 = 90;

impl CutConfig {
    pub fn from_durations(segment: std::time::Duration, part: std::time::Duration) -> Self {
        let ticks = |d: std::time::Duration| (d.as_micros() as u64 * TIMESCALE as u64) / 1_000_000;
        CutConfig {
            segment_target: ticks(segment),
            part_target: ticks(part) + PART_TARGET_SLACK,
        }
    }

    /// The advertised `PART-TARGET` in seconds.
    pub fn part_target_secs(&self) -> f64 {
        self.part_target as f64 / TIMESCALE as f64
    }
}

/// What the segmenter produced; the origin store turns these into playlists.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A new initialisation segment; following segments use it.
    Init { version: u32, bytes: Bytes },
    /// A segment opened (its first part follows).
    SegmentStart {
        msn: u64,
        pdt_ms: u64,
        discontinuity: bool,
        init_version: u32,
    },
    /// A finished part of the open segment.
    Part(PartOut),
    /// The open segment is complete.
    SegmentEnd { msn: u64, duration: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartOut {
    pub msn: u64,
    /// Index within the segment.
    pub index: u32,
    /// Global part number: stays valid as a preload hint across segment cuts.
    pub number: u64,
    pub duration: f64,
    pub independent: bool,
    pub bytes: Bytes,
    /// Arrival (UNIX ms) of the last frame in the part, for the part-lag metric.
    pub last_arrival_ms: u64,
}

#[derive(Debug, Default)]
struct OpenPart {
    video: Vec<Sample>,
    audio: Vec<Sample>,
    video_base: u64,
    audio_base: u64,
    /// Output dts (90 kHz) where the part starts on the driving track.
    start: u64,
    /// Output dts just past the last sample of the driving track.
    end: u64,
    last_arrival_ms: u64,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    start: u64,
    parts: u32,
    /// Program date-time of `start` (UNIX ms): maps event times onto the media timeline.
    pdt_ms: u64,
}

/// Timed metadata events waiting for the next part; beyond this the oldest are dropped
/// (a stream without media for a long time must not grow memory).
pub const MAX_PENDING_EVENTS: usize = 256;

/// The sans-IO segmenter for one rendition.
#[derive(Debug)]
pub struct Segmenter {
    cfg: CutConfig,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    init_version: u32,
    /// Added to input dts to keep output time continuous across sessions.
    offset: Option<i64>,
    /// Output time the next session should continue from.
    resume_at: u64,
    discontinuity_pending: bool,
    /// (output dts, UNIX ms) pair that maps media time to program date-time.
    anchor: Option<(u64, u64)>,
    /// Smallest (arrival ms − media ms) seen since the open segment began: the
    /// least-delayed frame shows where the ingest clock really is.
    arrival_offset_min: Option<i64>,
    segment: Option<OpenSegment>,
    part: OpenPart,
    next_msn: u64,
    next_part_number: u64,
    fragment_seq: u32,
    last_video_dts: Option<u64>,
    /// Predicted duration of the newest frame: the shortest of the last few intervals.
    /// Millisecond timestamps (RTMP, and TS remuxed from FLV) jitter by a tick of 90, and
    /// a part published with a too-long last frame would overlap the next part; a short
    /// prediction only leaves a sub-millisecond gap.
    video_interval: u64,
    recent_intervals: [u64; RECENT_INTERVALS],
    /// Timed metadata for the next part (emsg boxes in front of its `moof`).
    pending_events: std::collections::VecDeque<std::sync::Arc<TimedMetadata>>,
    /// Next expected audio decode time in the audio timescale.
    audio_next: Option<u64>,
    /// Following a leader ([`Segmenter::push_following`]): cut only where it cut.
    follow: bool,
    /// The leader's segment opening at the frame being pushed.
    lead: Option<Lead>,
}

/// Largest PDT correction per segment: 1 % of a 2 s segment, far inside what any
/// player notices, and PDT stays within 20 ms of EXTINF from one segment to the next.
pub const PDT_SLEW_MS: i64 = 20;

/// How many frame intervals the duration prediction looks back over (covers the 16/17 ms
/// pattern of 60 fps in millisecond timestamps).
const RECENT_INTERVALS: usize = 4;

/// An event whose PDT is further ahead of a part than this is placed at once (a clock jump
/// must not hold chat out of the media).
const MAX_EVENT_HOLD_MS: i64 = 10_000;

/// Frame interval assumed until two frames have been seen (30 fps).
const DEFAULT_VIDEO_INTERVAL: u64 = (TIMESCALE / 30) as u64;

impl Segmenter {
    /// A segmenter whose first segment is `next_msn`, after a discontinuity (a playlist
    /// continued from another node).
    pub fn continuing(cfg: CutConfig, next_msn: u64) -> Self {
        let mut s = Segmenter::new(cfg);
        s.next_msn = next_msn;
        s
    }

    pub fn new(cfg: CutConfig) -> Self {
        Segmenter {
            cfg,
            video: None,
            audio: None,
            init_version: 0,
            offset: None,
            resume_at: 0,
            discontinuity_pending: false,
            anchor: None,
            arrival_offset_min: None,
            segment: None,
            part: OpenPart::default(),
            next_msn: 0,
            next_part_number: 0,
            fragment_seq: 1,
            last_video_dts: None,
            video_interval: DEFAULT_VIDEO_INTERVAL,
            recent_intervals: [0; RECENT_INTERVALS],
            pending_events: std::collections::VecDeque::new(),
            audio_next: None,
            follow: false,
            lead: None,
        }
    }

    /// Output decode time where the open segment starts, if one is open.
    pub fn open_segment_start(&self) -> Option<u64> {
        self.segment.as_ref().map(|s| s.start)
    }

    /// The decision a follower copies when `out` (this segmenter's output for one frame)
    /// opened a segment: its number, PDT, discontinuity and output start time.
    pub fn lead_in(&self, out: &[Output]) -> Option<Lead> {
        out.iter().find_map(|o| match o {
            Output::SegmentStart {
                msn,
                pdt_ms,
                discontinuity,
                ..
            } => Some(Lead {
                msn: *msn,
                pdt_ms: *pdt_ms,
                discontinuity: *discontinuity,
                start: self.open_segment_start().unwrap_or(0),
            }),
            _ => None,
        })
    }

    /// Feeds one frame of a rendition that follows a leader (a transcoded rung following the
    /// source): a segment opens only at a video keyframe where the leader opened one (`lead`),
    /// with the leader's number, PDT and output time. Until the first lead, nothing is output.
    pub fn push_following(&mut self, frame: &Frame, lead: Option<Lead>) -> Vec<Output> {
        self.follow = true;
        self.lead = lead.filter(|_| frame.track == Track::Video && frame.keyframe);
        if let Some(l) = self.lead {
            // The leader's timeline, so a player switching renditions sees the same times.
            self.offset = Some(l.start as i64 - frame.dts);
        }
        let out = self.push(frame);
        self.lead = None;
        out
    }

    /// Number the next part will carry (the preload hint).
    pub fn next_part_number(&self) -> u64 {
        self.next_part_number
    }

    /// A publisher session starts (first one or a reconnect) with these codecs.
    pub fn begin_session(
        &mut self,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    ) -> Vec<Output> {
        let mut out = self.end_session();
        let first = self.init_version == 0 && self.next_msn == 0;
        if !first {
            self.discontinuity_pending = true;
        }
        if first || video != self.video || audio != self.audio {
            self.video = video;
            self.audio = audio;
            self.init_version += 1;
            out.push(Output::Init {
                version: self.init_version,
                bytes: cmaf::init_segment(self.video.as_ref(), self.audio.as_ref()),
            });
        }
        self.offset = None;
        self.anchor = None;
        self.arrival_offset_min = None;
        self.last_video_dts = None;
        self.audio_next = None;
        out
    }

    /// Codec parameters changed mid-session: new init segment and a discontinuity.
    pub fn change_config(
        &mut self,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    ) -> Vec<Output> {
        if video == self.video && audio == self.audio {
            return Vec::new();
        }
        let mut out = self.close_segment();
        self.video = video;
        self.audio = audio;
        self.init_version += 1;
        self.discontinuity_pending = true;
        out.push(Output::Init {
            version: self.init_version,
            bytes: cmaf::init_segment(self.video.as_ref(), self.audio.as_ref()),
        });
        out
    }

    /// The publisher went away: flush what is buffered as a final part and segment.
    pub fn end_session(&mut self) -> Vec<Output> {
        let out = self.close_segment();
        self.resume_at = self.resume_at.max(self.part.end);
        out
    }

    /// Queues a timed metadata event for the next part this rendition publishes. Every
    /// rendition of a stream shares the segments' PDTs, so each places it at the same media time.
    pub fn push_metadata(&mut self, event: std::sync::Arc<TimedMetadata>) {
        if self.pending_events.len() == MAX_PENDING_EVENTS {
            self.pending_events.pop_front();
        }
        self.pending_events.push_back(event);
    }

    /// Feeds one frame; returns what became available.
    pub fn push(&mut self, frame: &Frame) -> Vec<Output> {
        let mut out = Vec::new();
        let has_video = self.video.is_some();
        match frame.track {
            Track::Video if has_video => self.push_video(frame, &mut out),
            Track::Audio if self.audio.is_some() => self.push_audio(frame, !has_video, &mut out),
            _ => {}
        }
        out
    }

    fn out_dts(&mut self, frame: &Frame) -> u64 {
        let offset = *self.offset.get_or_insert(self.resume_at as i64 - frame.dts);
        let dts = (frame.dts + offset).max(0) as u64;
        let arrival_offset = frame.arrival_ms as i64 - (dts / 90) as i64;
        self.arrival_offset_min = Some(match self.arrival_offset_min {
            Some(m) => m.min(arrival_offset),
            None => arrival_offset,
        });
        dts
    }

    fn push_video(&mut self, frame: &Frame, out: &mut Vec<Output>) {
        if self.segment.is_none() && !frame.keyframe {
            return; // a segment must start on a keyframe
        }
        if self.follow && self.segment.is_none() && self.lead.is_none() {
            return; // a follower starts where its leader starts a segment
        }
        let dts = self.out_dts(frame);
        if let Some(prev) = self.last_video_dts {
            if dts > prev && dts - prev < TIMESCALE as u64 {
                self.recent_intervals.rotate_right(1);
                self.recent_intervals[0] = dts - prev;
                self.video_interval = self
                    .recent_intervals
                    .iter()
                    .copied()
                    .filter(|&i| i > 0)
                    .min()
                    .unwrap_or(DEFAULT_VIDEO_INTERVAL);
            }
        }
        self.last_video_dts = Some(dts);
        // Fix the previous sample's predicted duration when it is still in the open part.
        if let Some(last) = self.part.video.last_mut() {
            let start = self.part.end - last.duration as u64;
            if dts > start {
                last.duration = (dts - start) as u32;
                self.part.end = dts;
            }
        }
        // Keyframes land within a millisecond of the GOP grid; half a frame of
        // tolerance keeps a 2 s GOP from making 4 s segments.
        let tolerance = self.video_interval / 2;
        let cut_segment = match &self.segment {
            _ if self.follow => self.lead.is_some(),
            None => true,
            Some(seg) => frame.keyframe && dts + tolerance >= seg.start + self.cfg.segment_target,
        };
        if cut_segment {
            // Audio that arrived after the last video part closed moves on with the
            // keyframe rather than forming a zero-length, audio-only part.
            let carried = if self.part.video.is_empty() {
                self.part.end = dts; // the last part ended on a prediction; the keyframe is the truth
                Some((std::mem::take(&mut self.part.audio), self.part.audio_base))
            } else {
                None
            };
            out.extend(self.close_segment());
            self.open_segment(dts, frame.arrival_ms, out);
            if let Some((audio, base)) = carried.filter(|(a, _)| !a.is_empty()) {
                self.part.audio = audio;
                self.part.audio_base = base;
            }
        } else if !self.part.video.is_empty()
            && dts + self.video_interval > self.part.start + self.cfg.part_target
        {
            // This frame would overflow the part: the part is done.
            out.extend(self.close_part());
        }
        if self.part.video.is_empty() && self.part.audio.is_empty() {
            self.part.start = dts;
        }
        if self.part.video.is_empty() {
            self.part.video_base = dts;
        }
        self.part.video.push(Sample {
            duration: self.video_interval as u32,
            cts: frame.cts,
            keyframe: frame.keyframe,
            data: frame.data.clone(),
        });
        self.part.end = dts + self.video_interval;
        self.part.last_arrival_ms = self.part.last_arrival_ms.max(frame.arrival_ms);
        // Eager close: one more frame would not fit, so publish now.
        if self.part.end + self.video_interval > self.part.start + self.cfg.part_target {
            out.extend(self.close_part());
        }
    }

    fn push_audio(&mut self, frame: &Frame, drives: bool, out: &mut Vec<Output>) {
        let Some(cfg) = self.audio.as_ref() else {
            return;
        };
        let rate = cfg.sample_rate.max(1) as u64;
        let spf = cfg.samples_per_frame.max(1) as u64;
        if self.follow && (self.offset.is_none() || self.segment.is_none()) {
            return; // the leader's timeline is not known yet
        }
        let dts = self.out_dts(frame);
        if drives && self.segment.is_none() {
            self.open_segment(dts, frame.arrival_ms, out);
        }
        let Some(seg) = self.segment.as_ref() else {
            return; // waiting for the first video keyframe
        };
        if dts < seg.start {
            return; // audio from before the first picture: not shown
        }
        let actual = dts * rate / TIMESCALE as u64;
        // Keep audio sample-exact unless the source clock jumps by a frame or more.
        let at = match self.audio_next {
            Some(next) if actual.abs_diff(next) < spf => next,
            _ => actual,
        };
        self.audio_next = Some(at + spf);
        if drives {
            let seg_start = seg.start;
            let at90 = at * TIMESCALE as u64 / rate;
            let frame90 = spf * TIMESCALE as u64 / rate;
            if at90 + frame90 / 2 >= seg_start + self.cfg.segment_target {
                out.extend(self.close_segment());
                self.open_segment(at90, frame.arrival_ms, out);
            } else if !self.part.audio.is_empty()
                && at90 + frame90 > self.part.start + self.cfg.part_target
            {
                out.extend(self.close_part());
            }
            if self.part.audio.is_empty() {
                self.part.start = at90;
            }
            self.part.end = at90 + frame90;
        }
        if self.part.audio.is_empty() {
            self.part.audio_base = at;
        }
        self.part.audio.push(Sample {
            duration: spf as u32,
            cts: 0,
            keyframe: true,
            data: frame.data.clone(),
        });
        self.part.last_arrival_ms = self.part.last_arrival_ms.max(frame.arrival_ms);
    }

    /// Program date-time of a segment starting at `start`. It follows media time, so
    /// PDT and EXTINF agree; and it slews (at most [`PDT_SLEW_MS`] per segment)
    /// towards the arrival of the least-delayed frame of the previous segment, so a
    /// publisher whose first frames came late (encoder start-up, then a catch-up
    /// burst) does not leave every later PDT that much behind the ingest clock.
    fn segment_pdt(&mut self, start: u64, arrival_ms: u64) -> i64 {
        let Some((anchor_dts, anchor_ms)) = self.anchor else {
            self.anchor = Some((start, arrival_ms));
            self.arrival_offset_min = None;
            return arrival_ms as i64;
        };
        let predicted =
            anchor_ms as i64 + (start as i64 - anchor_dts as i64) * 1000 / TIMESCALE as i64;
        let pdt = match self.arrival_offset_min.take() {
            Some(offset) => {
                let ideal = (start / 90) as i64 + offset;
                predicted + (ideal - predicted).clamp(-PDT_SLEW_MS, PDT_SLEW_MS)
            }
            None => predicted,
        };
        self.anchor = Some((start, pdt.max(0) as u64));
        pdt
    }

    fn open_segment(&mut self, start: u64, arrival_ms: u64, out: &mut Vec<Output>) {
        let (pdt_ms, msn) = match self.lead.filter(|_| self.follow) {
            Some(l) => {
                self.discontinuity_pending = l.discontinuity;
                (l.pdt_ms as i64, l.msn)
            }
            None => (self.segment_pdt(start, arrival_ms), self.next_msn),
        };
        self.next_msn = msn + 1;
        self.segment = Some(OpenSegment {
            msn,
            start,
            parts: 0,
            pdt_ms: pdt_ms.max(0) as u64,
        });
        self.part = OpenPart {
            start,
            end: start,
            ..OpenPart::default()
        };
        out.push(Output::SegmentStart {
            msn,
            pdt_ms: pdt_ms.max(0) as u64,
            discontinuity: std::mem::take(&mut self.discontinuity_pending),
            init_version: self.init_version,
        });
    }

    fn close_part(&mut self) -> Option<Output> {
        let seg = self.segment.as_mut()?;
        if self.part.video.is_empty() && self.part.audio.is_empty() {
            return None;
        }
        let part = std::mem::take(&mut self.part);
        // Where the part's picture starts (its media start if it has no video).
        let first = if part.video.is_empty() {
            part.start
        } else {
            part.video_base
        };
        let independent = match part.video.first() {
            Some(s) => s.keyframe,
            None => self.video.is_none(),
        };
        let mut runs = Vec::with_capacity(2);
        if !part.video.is_empty() {
            runs.push(TrackRun {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: part.video_base,
                samples: part.video,
            });
        }
        if !part.audio.is_empty() {
            runs.push(TrackRun {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: part.audio_base,
                samples: part.audio,
            });
        }
        let mut events = BytesMut::new();
        // An event rides in the part whose media reaches its PDT. A rendition that lags the
        // source (a transcoded rung) holds it until then, so every rendition places it through
        // the same segment and at the same media time.
        let part_end_pdt =
            seg.pdt_ms as i64 + (part.end as i64 - seg.start as i64) * 1000 / TIMESCALE as i64;
        let mut later = std::collections::VecDeque::new();
        for ev in self.pending_events.drain(..) {
            let ahead = ev.pdt_ms as i64 - part_end_pdt;
            if ahead > 0 && ahead < MAX_EVENT_HOLD_MS {
                later.push_back(ev);
                continue;
            }
            // The event's PDT on this segment's timeline, never before the part it rides in
            // (it arrived while that part was the live edge).
            let offset = (ev.pdt_ms as i64 - seg.pdt_ms as i64) * (TIMESCALE as i64 / 1000);
            let at = (seg.start as i64 + offset).max(first as i64) as u64;
            emsg::write_emsg(&mut events, ev.id, at, &ev.id3);
        }
        self.pending_events = later;
        let bytes = cmaf::fragment_with_events(self.fragment_seq, &runs, seg.parts == 0, &events);
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        let out = PartOut {
            msn: seg.msn,
            index: seg.parts,
            number: self.next_part_number,
            duration: part.end.saturating_sub(part.start) as f64 / TIMESCALE as f64,
            independent,
            bytes,
            last_arrival_ms: part.last_arrival_ms,
        };
        seg.parts += 1;
        self.next_part_number += 1;
        self.part = OpenPart {
            start: part.end,
            end: part.end,
            ..OpenPart::default()
        };
        Some(Output::Part(out))
    }

    fn close_segment(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        out.extend(self.close_part());
        if let Some(seg) = self.segment.take() {
            let end = self.part.end.max(seg.start);
            out.push(Output::SegmentEnd {
                msn: seg.msn,
                duration: (end - seg.start) as f64 / TIMESCALE as f64,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn video_cfg() -> VideoConfig {
        VideoConfig {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
            width: 1280,
            height: 720,
            profile_idc: 0x64,
            constraints: 0,
            level_idc: 0x1f,
            fps: Some(30.0),
        }
    }

    fn audio_cfg() -> AudioConfig {
        AudioConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
            samples_per_frame: 1024,
        }
    }

    fn cut() -> CutConfig {
        CutConfig::from_durations(Duration::from_secs(2), Duration::from_millis(200))
    }

    /// An RTMP-like stream: 30 fps video with a keyframe every `gop` frames and 48 kHz
    /// AAC, both with whole-millisecond timestamps, interleaved by decode time.
    fn rtmp_stream(seconds: u64, gop: u64, start_ms: i64) -> Vec<Frame> {
        let mut frames = Vec::new();
        let video_n = seconds * 30;
        let audio_n = seconds * 48_000 / 1024;
        let (mut v, mut a) = (0u64, 0u64);
        while v < video_n || a < audio_n {
            let vt = (v * 1000 / 30) as i64;
            let at = (a * 1024 * 1000 / 48_000) as i64;
            let (track, ms, key) = if v < video_n && (a >= audio_n || vt <= at) {
                v += 1;
                (Track::Video, vt, (v - 1) % gop == 0)
            } else {
                a += 1;
                (Track::Audio, at, true)
            };
            frames.push(Frame {
                track,
                dts: (start_ms + ms) * 90,
                cts: if track == Track::Video { 2 * 3000 } else { 0 },
                keyframe: key,
                data: Bytes::from(vec![0u8; 100]),
                arrival_ms: 1_700_000_000_000 + (start_ms + ms) as u64,
            });
        }
        frames
    }

    fn run(seg: &mut Segmenter, frames: &[Frame]) -> Vec<Output> {
        frames.iter().flat_map(|f| seg.push(f)).collect()
    }

    fn parts(out: &[Output]) -> Vec<&PartOut> {
        out.iter()
            .filter_map(|o| match o {
                Output::Part(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn segment_durations(out: &[Output]) -> Vec<f64> {
        out.iter()
            .filter_map(|o| match o {
                Output::SegmentEnd { duration, .. } => Some(*duration),
                _ => None,
            })
            .collect()
    }

    /// (msn, pdt, duration) of every complete segment.
    fn segments(out: &[Output]) -> Vec<(u64, u64, f64)> {
        let mut open = None;
        let mut v = Vec::new();
        for o in out {
            match o {
                Output::SegmentStart { msn, pdt_ms, .. } => open = Some((*msn, *pdt_ms)),
                Output::SegmentEnd { msn, duration } => {
                    let (m, pdt) = open.take().expect("segment opened");
                    assert_eq!(m, *msn);
                    v.push((m, pdt, *duration));
                }
                _ => {}
            }
        }
        v
    }

    #[test]
    fn a_follower_cuts_where_its_leader_cut_even_when_it_starts_late() {
        // Keyframes every second, segments every two: the follower must not cut on the
        // keyframes its leader skipped, and must take the leader's numbers and PDTs.
        let frames = rtmp_stream(20, 30, 1000);
        let mut leader = Segmenter::new(cut());
        let mut lead_out = leader.begin_session(Some(video_cfg()), Some(audio_cfg()));
        let mut leads = std::collections::HashMap::new();
        for f in &frames {
            let out = leader.push(f);
            if f.track == Track::Video && f.keyframe {
                let lead = leader.lead_in(&out);
                leads.insert(f.dts, lead);
            }
            lead_out.extend(out);
        }
        // The follower (a rung) starts 3.5 s in; its first keyframe (4 s) is where the leader
        // opened msn 2.
        let mut follower = Segmenter::new(cut());
        let mut out = follower.begin_session(Some(video_cfg()), Some(audio_cfg()));
        for f in frames.iter().filter(|f| f.dts >= (1000 + 3500) * 90) {
            let lead = leads.get(&f.dts).copied().flatten();
            out.extend(follower.push_following(f, lead));
        }
        let ours = segments(&out);
        let theirs = segments(&lead_out);
        assert_eq!(
            ours.first().map(|s| s.0),
            Some(2),
            "first segment: the leader's msn 2 (media 4 s)"
        );
        assert!(ours.len() >= 5, "{ours:?}");
        for s in &ours {
            assert!(
                theirs.contains(s),
                "{s:?} not among the leader's {theirs:?}"
            );
        }
        assert!(
            parts(&out)[0].independent,
            "the first part starts with a keyframe"
        );
        // Skipped keyframes (every odd second) opened nothing.
        assert!(ours.iter().all(|s| (s.2 - 2.0).abs() < 0.01), "{ours:?}");
    }

    #[test]
    fn segments_cut_on_keyframes_at_target() {
        let mut seg = Segmenter::new(cut());
        let mut out = seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        assert!(matches!(out[0], Output::Init { version: 1, .. }));
        out.extend(run(&mut seg, &rtmp_stream(20, 60, 0)));
        let durations = segment_durations(&out);
        assert_eq!(
            durations.len(),
            9,
            "20 s of 2 s GOPs: 9 closed, the 10th open"
        );
        for d in &durations {
            assert!((d - 2.0).abs() < 0.002, "segment duration {d}");
        }
    }

    /// Parts of each segment, in order, must tile it: their durations add up to at most the
    /// segment's (a mispredicted last frame may leave a gap, never an overlap).
    fn assert_parts_tile_segments(out: &[Output]) {
        let mut sum = 0.0;
        let mut checked = 0;
        for o in out {
            match o {
                Output::Part(p) => sum += p.duration,
                Output::SegmentEnd { msn, duration } => {
                    assert!(
                        sum <= duration + 1e-9 && sum >= duration - 0.02,
                        "msn {msn}: parts add up to {sum}, segment lasts {duration}"
                    );
                    sum = 0.0;
                    checked += 1;
                }
                _ => {}
            }
        }
        assert!(checked > 3);
    }

    /// Top-level boxes of a part: (type, body).
    fn top_boxes(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 8 <= b.len() {
            let size = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
            let kind = [b[i + 4], b[i + 5], b[i + 6], b[i + 7]];
            out.push((kind, &b[i + 8..i + size]));
            i += size;
        }
        out
    }

    #[test]
    fn metadata_rides_in_the_next_part_at_its_pdt() {
        let mut seg = Segmenter::new(cut());
        seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        let frames = rtmp_stream(10, 60, 0);
        let (before, after) = frames.split_at(frames.len() / 2);
        let out = run(&mut seg, before);
        // The newest segment's start and PDT, and the live edge (end of the newest part).
        let (seg_pdt, seg_start) = out
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::SegmentStart { pdt_ms, .. } => Some(*pdt_ms),
                _ => None,
            })
            .map(|p| (p, seg.open_segment_start().unwrap()))
            .unwrap();
        // One event ahead of the edge (kept where it is), one behind (moved up to the part).
        let id3 = emsg::id3_txxx(emsg::CHAT_DESCRIPTION, "{\"type\":\"message\"}");
        for (id, pdt) in [(1, seg_pdt + 1500), (2, seg_pdt + 100)] {
            seg.push_metadata(std::sync::Arc::new(TimedMetadata {
                id,
                pdt_ms: pdt,
                id3: id3.clone(),
            }));
        }
        let later = run(&mut seg, after);
        let with_events: Vec<&PartOut> = parts(&later)
            .into_iter()
            .filter(|p| top_boxes(&p.bytes).iter().any(|(k, _)| k == b"emsg"))
            .collect();
        assert_eq!(with_events.len(), 2, "each event rides in its own part");
        let first_part = parts(&later)[0];
        assert_eq!(
            with_events[0].number, first_part.number,
            "the event behind the edge: the very next part"
        );
        let emsgs = |p: &PartOut| -> Vec<u64> {
            let boxes = top_boxes(&p.bytes);
            let kinds: Vec<&[u8; 4]> = boxes.iter().map(|(k, _)| k).collect();
            let moof = kinds.iter().position(|k| *k == b"moof").unwrap();
            assert!(
                kinds[moof..].iter().all(|k| *k != b"emsg"),
                "emsg boxes come before moof: {kinds:?}"
            );
            boxes
                .iter()
                .filter(|(k, _)| k == b"emsg")
                .map(|(_, body)| {
                    assert!(body.ends_with(&id3));
                    u64::from_be_bytes(body[8..16].try_into().unwrap())
                })
                .collect()
        };
        let behind = emsgs(with_events[0]);
        let part_start = mp4_tfdt(&with_events[0].bytes);
        assert_eq!(behind, [part_start], "behind the edge: at the part's start");
        assert!(part_start > seg_start + 100 * 90);
        // The event ahead of the edge waits for the part whose media reaches its PDT, and is
        // placed exactly: every rendition, however far behind, places it alike.
        let ahead = emsgs(with_events[1]);
        assert_eq!(ahead, [seg_start + 1500 * 90], "ahead of the edge: exact");
        let carrier_start = mp4_tfdt(&with_events[1].bytes);
        let carrier_end = carrier_start + (with_events[1].duration * 90_000.0).round() as u64;
        assert!(
            carrier_start <= seg_start + 1500 * 90 + 3000
                && seg_start + 1500 * 90 <= carrier_end + 3000,
            "carried by the part that reaches its time: {carrier_start}..{carrier_end}"
        );
    }

    /// Base decode time of the first track fragment (tfdt v1) in a part.
    fn mp4_tfdt(b: &[u8]) -> u64 {
        let at = b.windows(4).position(|w| w == b"tfdt").unwrap();
        u64::from_be_bytes(b[at + 8..at + 16].try_into().unwrap())
    }

    #[test]
    fn millisecond_jitter_in_any_phase_never_overlaps_parts() {
        // 30 and 60 fps in whole milliseconds (33/34 and 16/17 ms intervals), keyframes at every
        // phase of the rounding pattern (MPEG-TS remuxed from FLV hit the unlucky one).
        for fps in [30u64, 60] {
            for phase in 0..6u64 {
                let mut seg = Segmenter::new(cut());
                seg.begin_session(Some(video_cfg()), None);
                let frames: Vec<Frame> = (0..fps * 12)
                    .map(|i| Frame {
                        track: Track::Video,
                        dts: (1400 + ((i + phase) * 1000 / fps) as i64) * 90,
                        cts: 0,
                        keyframe: i % (2 * fps) == 0,
                        data: Bytes::from(vec![0u8; 10]),
                        arrival_ms: 0,
                    })
                    .collect();
                let out = run(&mut seg, &frames);
                assert_parts_tile_segments(&out);
            }
        }
    }

    #[test]
    fn parts_never_exceed_the_advertised_target() {
        let c = cut();
        let mut seg = Segmenter::new(c);
        seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        let out = run(&mut seg, &rtmp_stream(20, 60, 0));
        let ps = parts(&out);
        assert!(ps.len() > 90);
        for p in &ps {
            assert!(
                p.duration <= c.part_target_secs() + 1e-9,
                "part {} lasts {}",
                p.number,
                p.duration
            );
            assert!(
                p.duration > 0.15,
                "part {} is only {} s",
                p.number,
                p.duration
            );
        }
        // Numbers are global and contiguous: the preload hint always materialises.
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.number, i as u64);
        }
        assert_eq!(seg.next_part_number(), ps.len() as u64);
    }

    #[test]
    fn independent_parts_are_exactly_the_segment_starts() {
        let mut seg = Segmenter::new(cut());
        seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        let out = run(&mut seg, &rtmp_stream(10, 60, 0));
        for p in parts(&out) {
            assert_eq!(p.independent, p.index == 0, "part {}.{}", p.msn, p.index);
        }
    }

    #[test]
    fn parts_close_when_their_last_frame_arrives() {
        let mut seg = Segmenter::new(cut());
        seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        let frames = rtmp_stream(6, 60, 0);
        let mut last_video_arrival = 0;
        for f in &frames {
            if f.track == Track::Video {
                last_video_arrival = f.arrival_ms;
            }
            for o in seg.push(f) {
                if let Output::Part(p) = o {
                    // Published on the arrival of its own last frame, never a frame later.
                    assert!(
                        f.arrival_ms.saturating_sub(p.last_arrival_ms) <= 22,
                        "part {} published {} ms after its last frame",
                        p.number,
                        f.arrival_ms - p.last_arrival_ms
                    );
                    assert!(p.last_arrival_ms <= last_video_arrival);
                }
            }
        }
    }

    #[test]
    fn pdt_follows_media_time() {
        let mut seg = Segmenter::new(cut());
        let mut out = seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        out.extend(run(&mut seg, &rtmp_stream(10, 60, 0)));
        let pdts: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Output::SegmentStart { pdt_ms, .. } => Some(*pdt_ms),
                _ => None,
            })
            .collect();
        assert_eq!(pdts[0], 1_700_000_000_000);
        for w in pdts.windows(2) {
            assert_eq!(w[1] - w[0], 2000);
        }
    }

    #[test]
    fn reconnect_continues_the_timeline_with_a_discontinuity() {
        let mut seg = Segmenter::new(cut());
        let mut out = seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        out.extend(run(&mut seg, &rtmp_stream(6, 60, 0)));
        out.extend(seg.end_session());
        let before = parts(&out).len();
        // The publisher's clock restarts near zero.
        let again = seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        assert!(
            again.iter().all(|o| !matches!(o, Output::Init { .. })),
            "same codecs: same init"
        );
        let out2 = run(&mut seg, &rtmp_stream(4, 60, 0));
        let starts: Vec<(u64, bool)> = out2
            .iter()
            .filter_map(|o| match o {
                Output::SegmentStart {
                    msn, discontinuity, ..
                } => Some((*msn, *discontinuity)),
                _ => None,
            })
            .collect();
        assert_eq!(starts[0], (3, true), "msn continues after 0,1,2");
        assert!(starts[1..].iter().all(|(_, d)| !d));
        assert_eq!(parts(&out2)[0].number, before as u64);
    }

    #[test]
    fn new_codec_parameters_get_a_new_init_and_discontinuity() {
        let mut seg = Segmenter::new(cut());
        seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        run(&mut seg, &rtmp_stream(3, 60, 0));
        let mut bigger = video_cfg();
        bigger.width = 1920;
        bigger.height = 1080;
        let out = seg.change_config(Some(bigger), Some(audio_cfg()));
        assert!(out.iter().any(|o| matches!(o, Output::SegmentEnd { .. })));
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Init { version: 2, .. })));
        let next = run(&mut seg, &rtmp_stream(3, 60, 3000));
        assert!(next.iter().any(|o| matches!(
            o,
            Output::SegmentStart {
                discontinuity: true,
                init_version: 2,
                ..
            }
        )));
    }

    #[test]
    fn frames_before_the_first_keyframe_are_dropped() {
        let mut seg = Segmenter::new(cut());
        seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        // Join mid-GOP: the first keyframe is at frame 30 (1 s).
        let frames: Vec<Frame> = rtmp_stream(5, 60, 0)
            .into_iter()
            .map(|mut f| {
                if f.track == Track::Video {
                    let n = f.dts / 3000;
                    f.keyframe = n % 60 == 30;
                }
                f
            })
            .collect();
        let out = run(&mut seg, &frames);
        let first = out.iter().find_map(|o| match o {
            Output::SegmentStart { pdt_ms, .. } => Some(*pdt_ms),
            _ => None,
        });
        assert_eq!(first, Some(1_700_000_001_000));
        assert!(parts(&out)[0].independent);
    }

    #[test]
    fn long_gop_makes_long_segments_not_broken_ones() {
        let mut seg = Segmenter::new(cut());
        seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        let out = run(&mut seg, &rtmp_stream(13, 120, 0));
        for d in segment_durations(&out) {
            assert!(
                (d - 4.0).abs() < 0.002,
                "4 s GOP gives 4 s segments, got {d}"
            );
        }
    }

    #[test]
    fn audio_only_streams_are_cut_on_audio() {
        let mut seg = Segmenter::new(cut());
        seg.begin_session(None, Some(audio_cfg()));
        let frames: Vec<Frame> = rtmp_stream(7, 60, 0)
            .into_iter()
            .filter(|f| f.track == Track::Audio)
            .collect();
        let out = run(&mut seg, &frames);
        let durations = segment_durations(&out);
        assert_eq!(durations.len(), 3);
        for d in &durations {
            assert!((d - 2.0).abs() < 0.03, "audio segment {d}");
        }
        for p in parts(&out) {
            assert!(p.independent);
            assert!(p.duration <= cut().part_target_secs() + 1e-9);
        }
    }

    #[test]
    fn hours_of_stream_stay_on_time() {
        // Two hours of media in well under a second: the output clock must not drift.
        let mut seg = Segmenter::new(cut());
        let mut out = seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        let frames = rtmp_stream(7200, 60, 0);
        let mut total = 0.0;
        let mut count = 0;
        for f in &frames {
            out.clear();
            out.extend(seg.push(f));
            for d in segment_durations(&out) {
                total += d;
                count += 1;
            }
        }
        assert_eq!(count, 3599);
        assert!((total - 7198.0).abs() < 0.05, "drifted: {total}");
    }

    #[test]
    fn pdt_slews_to_the_ingest_clock_after_a_late_start() {
        // The encoder starts 300 ms late, then bursts to catch up within the first second.
        let frames: Vec<Frame> = rtmp_stream(60, 60, 0)
            .into_iter()
            .map(|mut f| {
                let media_ms = (f.dts / 90) as u64;
                let late = 300u64.saturating_sub(media_ms * 300 / 1000);
                f.arrival_ms = (1_700_000_000_000 + media_ms + late).max(1_700_000_000_300);
                f
            })
            .collect();
        let mut seg = Segmenter::new(cut());
        let mut out = seg.begin_session(Some(video_cfg()), Some(audio_cfg()));
        out.extend(run(&mut seg, &frames));
        let pdts: Vec<i64> = out
            .iter()
            .filter_map(|o| match o {
                Output::SegmentStart { pdt_ms, .. } => Some(*pdt_ms as i64),
                _ => None,
            })
            .collect();
        // Segment k starts at media time 2k s; the ingest clock puts it at base + 2k s.
        let error = |k: usize| pdts[k] - (1_700_000_000_000 + 2000 * k as i64);
        assert_eq!(
            error(0),
            300,
            "the first segment can only use its own arrival"
        );
        for k in 1..pdts.len() {
            let step = pdts[k] - pdts[k - 1];
            assert!(
                (step - 2000).abs() <= PDT_SLEW_MS,
                "PDT step {step} at segment {k}"
            );
            assert!(
                error(k) <= error(k - 1),
                "PDT moves towards the ingest clock"
            );
        }
        assert_eq!(error(pdts.len() - 1), 0, "converged: {pdts:?}");
    }
}
