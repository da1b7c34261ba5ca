//! Interleaves audio and video by decode time (sans-IO).
//!
//! MPEG-TS muxers pack several AAC frames into one PES (ffmpeg and OBS: ~2.9 KB, 150–350 ms of
//! audio), so over SRT the audio for a stretch of time arrives after the video for it. Fed
//! as-is, the packager would close each part with its video and put the late audio into
//! later parts: every part's audio would trail its video, and a player at the live edge would
//! wait for audio anyway. Holding video until audio has caught up gives parts that hold the
//! same time span of both tracks, exactly like RTMP (where FLV arrives interleaved), at no
//! cost to what a viewer sees.

use std::collections::VecDeque;

use crate::media::{Frame, Track, TIMESCALE};

/// Video is never held longer than this much media time waiting for audio (an encoder whose
/// audio stalls must not stall the picture).
pub const MAX_HOLD_TICKS: i64 = TIMESCALE as i64; // 1 s

/// Holds video frames until audio up to their decode time has arrived.
#[derive(Debug, Default)]
pub struct Interleaver {
    held: VecDeque<Frame>,
    /// Decode time of the newest audio frame seen.
    audio_dts: Option<i64>,
    /// Whether the session has an audio track at all (else video passes straight through).
    audio: bool,
}

impl Interleaver {
    /// `audio`: whether audio frames are expected.
    pub fn new(audio: bool) -> Self {
        Interleaver {
            audio,
            ..Interleaver::default()
        }
    }

    /// The session's track set changed (codec configuration); releases nothing.
    pub fn set_audio(&mut self, audio: bool) {
        self.audio = audio;
    }

    /// Takes one frame; appends to `out` every frame now due, in decode order per track.
    pub fn push(&mut self, frame: Frame, out: &mut Vec<Frame>) {
        match frame.track {
            Track::Audio => {
                let dts = frame.dts;
                self.audio_dts = Some(self.audio_dts.map_or(dts, |a| a.max(dts)));
                // Video that decodes before this audio frame goes first.
                self.release_until(dts, out);
                out.push(frame);
                self.release_until(dts, out);
            }
            Track::Video => {
                if !self.audio {
                    self.flush(out);
                    out.push(frame);
                    return;
                }
                let newest = frame.dts;
                self.held.push_back(frame);
                if let Some(a) = self.audio_dts {
                    self.release_until(a, out);
                }
                while self
                    .held
                    .front()
                    .is_some_and(|f| newest - f.dts > MAX_HOLD_TICKS)
                {
                    if let Some(f) = self.held.pop_front() {
                        out.push(f);
                    }
                }
            }
        }
    }

    /// Releases every held frame (end of session, or before a configuration change).
    pub fn flush(&mut self, out: &mut Vec<Frame>) {
        out.extend(self.held.drain(..));
    }

    fn release_until(&mut self, dts: i64, out: &mut Vec<Frame>) {
        while self.held.front().is_some_and(|f| f.dts <= dts) {
            if let Some(f) = self.held.pop_front() {
                out.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(track: Track, dts: i64) -> Frame {
        Frame {
            track,
            dts,
            cts: 0,
            keyframe: true,
            data: Bytes::new(),
            arrival_ms: 0,
        }
    }

    fn order(out: &[Frame]) -> Vec<(char, i64)> {
        out.iter()
            .map(|f| {
                let t = if f.track == Track::Video { 'v' } else { 'a' };
                (t, f.dts)
            })
            .collect()
    }

    #[test]
    fn bursty_audio_comes_out_interleaved() {
        // Video every 3000 ticks; audio (1920 ticks per frame) in bursts of 8 after the video.
        let mut il = Interleaver::new(true);
        let mut out = Vec::new();
        let mut input = Vec::new();
        for v in 0..6 {
            input.push(frame(Track::Video, v * 3000));
        }
        for a in 0..8 {
            input.push(frame(Track::Audio, a * 1920));
        }
        for f in input {
            il.push(f, &mut out);
        }
        // Everything up to the newest audio (13440) is out, in decode order.
        let got = order(&out);
        let mut sorted = got.clone();
        sorted.sort_by_key(|(_, d)| *d);
        assert_eq!(got, sorted, "decode order");
        assert_eq!(got.iter().filter(|(t, _)| *t == 'v').count(), 5);
        assert_eq!(got.last(), Some(&('a', 13440)));
        // The video frame at 15000 waits for audio that reaches it.
        out.clear();
        il.push(frame(Track::Audio, 15360), &mut out);
        assert_eq!(order(&out), [('v', 15000), ('a', 15360)]);
    }

    #[test]
    fn video_is_never_held_longer_than_the_bound() {
        let mut il = Interleaver::new(true);
        let mut out = Vec::new();
        for v in 0..100 {
            il.push(frame(Track::Video, v * 3000), &mut out);
        }
        // Audio never came: all but the last second is out.
        let held = 100 - out.len() as i64;
        assert!(held * 3000 <= MAX_HOLD_TICKS + 3000, "{held} frames held");
        assert!(out.windows(2).all(|w| w[0].dts < w[1].dts));
        il.flush(&mut out);
        assert_eq!(out.len(), 100);
    }

    #[test]
    fn video_only_sessions_pass_straight_through() {
        let mut il = Interleaver::new(false);
        let mut out = Vec::new();
        il.push(frame(Track::Video, 0), &mut out);
        assert_eq!(out.len(), 1);
    }
}
