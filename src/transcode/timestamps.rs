//! Time on both sides of GStreamer. Source frames carry 90 kHz ticks; the session's first
//! picture sent to the decoder sets the base, and GStreamer sees nanoseconds since that base,
//! counted from [`GST_ORIGIN_NS`]. Encoded pictures come back in running time and are put back
//! on the source's timeline. Pure functions and bounded histories: the callers hold the locks
//! and read the clocks.

use std::collections::VecDeque;

use gstreamer as gst;

use crate::media::TIMESCALE;

/// Where our GStreamer timestamps start: 1000 h. x264enc shifts any earlier timestamps up to
/// 1000 h itself, and GStreamer 1.22's encoder base class then compares forced-keyframe
/// requests in two different timelines and ignores every request after the first. Starting
/// there ourselves keeps one timeline throughout.
pub(super) const GST_ORIGIN_NS: u64 = 1000 * 3600 * 1_000_000_000;

/// The session base before any picture reached the decoder.
pub(super) const NO_BASE: i64 = i64::MIN;

/// Source pictures remembered for [`SourcePictures::place`] (≈ 17 s at 30 fps).
const PICTURES_KEPT: usize = 512;
/// Source keyframes remembered for [`Keyframes::contains`].
const KEYFRAMES_KEPT: usize = 64;

const NS_PER_S: u64 = 1_000_000_000;

/// 90 kHz ticks since the session base → GStreamer nanoseconds. Times before the base (a
/// B-frame's decode time, audio that starts early) are clamped to the origin.
pub(super) fn ticks_to_ns(t: i64) -> u64 {
    GST_ORIGIN_NS + (t.max(0) as u64).saturating_mul(NS_PER_S) / TIMESCALE as u64
}

/// GStreamer nanoseconds → 90 kHz ticks since the session base (rounded to the nearest tick,
/// so [`ticks_to_ns`] round-trips exactly).
pub(super) fn ns_to_ticks(ns: u64) -> i64 {
    let ns = ns.saturating_sub(GST_ORIGIN_NS);
    ((ns as u128 * TIMESCALE as u128 + NS_PER_S as u128 / 2) / NS_PER_S as u128) as i64
}

/// Source time `t` (90 kHz, the source's clock) → GStreamer nanoseconds for a session that
/// started at `base`.
pub(super) fn source_to_ns(base: i64, t: i64) -> u64 {
    ticks_to_ns(t.saturating_sub(base))
}

/// Running time of an encoder's output (GStreamer nanoseconds) → source time (90 kHz).
pub(super) fn ns_to_source(base: i64, ns: u64) -> i64 {
    base.saturating_add(ns_to_ticks(ns))
}

/// Where a source audio frame with decode time `dts` goes in a rung's audio re-encoder: nowhere
/// before the session's first picture, which sets the timeline.
pub(super) fn audio_in_ns(base: i64, dts: i64) -> Option<u64> {
    (base != NO_BASE && dts >= base).then(|| source_to_ns(base, dts))
}

/// The decode time (90 kHz, source timeline) of a re-encoded audio frame with running time
/// `rt_ns`; none while the session has no base.
pub(super) fn audio_out_dts(base: i64, rt_ns: u64) -> Option<i64> {
    (base != NO_BASE).then(|| ns_to_source(base, rt_ns))
}

/// The running time of a buffer timestamped `pts` in `segment`: what matches the input
/// timeline even when an element shifted its output timestamps (x264enc moves them to about
/// 1000 h). Falls back to `pts` without a time segment or when `pts` lies before the segment.
pub(super) fn running_time(segment: Option<&gst::Segment>, pts: gst::ClockTime) -> gst::ClockTime {
    segment
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .and_then(|s| s.to_running_time(pts))
        .unwrap_or(pts)
}

/// Whether a rung with frame rate cap `cap` (fps) takes a decoded picture at running time
/// `rt_ns` after the last one it took at `last_ns`: pictures are kept at least 0.9 / cap apart,
/// and keyframes always pass, since the rungs cut their segments on them.
pub(super) fn fps_cap_keeps(cap: Option<u32>, last_ns: Option<u64>, rt_ns: u64, key: bool) -> bool {
    let (Some(cap), Some(last)) = (cap, last_ns) else {
        return true;
    };
    let min_gap = NS_PER_S / cap.max(1) as u64 * 9 / 10;
    key || rt_ns.saturating_sub(last) >= min_gap
}

/// Source picture facts, looked up by presentation time when its encoded version comes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SourcePicture {
    pub pts: i64,
    pub dts: i64,
    pub arrival_ms: u64,
}

/// Where an encoded picture goes on the source's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placed {
    pub dts: i64,
    pub cts: i32,
    /// The source picture's arrival; none when it is no longer (or never was) remembered.
    pub arrival_ms: Option<u64>,
}

/// The session's recent source pictures in decode order, at most [`PICTURES_KEPT`].
#[derive(Debug, Default)]
pub(super) struct SourcePictures(VecDeque<SourcePicture>);

impl SourcePictures {
    pub fn new() -> Self {
        SourcePictures(VecDeque::with_capacity(PICTURES_KEPT))
    }

    pub fn push(&mut self, p: SourcePicture) {
        if self.0.len() == PICTURES_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(p);
    }

    /// A new session's clock may restart: forget the old session's pictures.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Places a rung's encoded picture, `pts` its presentation time on the source timeline
    /// ([`ns_to_source`] of its running time), `last_dts` the decode time given to the rung's
    /// previous picture.
    ///
    /// The rung has no B-frames: its decode order is presentation order. It takes the source's
    /// decode times slot by slot: the picture that is n-th in presentation order among the
    /// recent source pictures gets the n-th decode time. So a keyframe gets exactly its source
    /// keyframe's decode time (where segments are cut), and every other picture the source's
    /// (millisecond-rounded) times, so parts are cut alike too. A decode time moves past the
    /// previous one where it can, and never past the presentation time.
    pub fn place(&self, pts: i64, last_dts: Option<i64>) -> Placed {
        // Within a tick: the nanosecond round trip may be off by one.
        let pic = self
            .0
            .iter()
            .rev()
            .find(|p| p.pts.abs_diff(pts) <= 1)
            .copied();
        let pts = pic.map_or(pts, |p| p.pts);
        let rank = self.0.iter().filter(|p| p.pts < pts).count();
        let dts = self.0.get(rank).map_or(pts, |p| p.dts);
        let dts = match last_dts {
            Some(last) => dts.max(last.saturating_add(1)).min(pts),
            None => dts.min(pts),
        };
        Placed {
            dts,
            cts: i32::try_from(pts.saturating_sub(dts)).unwrap_or(i32::MAX),
            arrival_ms: pic.map(|p| p.arrival_ms),
        }
    }
}

/// Presentation times (ns, GStreamer timeline) of the session's recent source keyframes, at
/// most [`KEYFRAMES_KEPT`]: the decoded pictures every rung must encode as keyframes.
#[derive(Debug, Default)]
pub(super) struct Keyframes(VecDeque<u64>);

impl Keyframes {
    pub fn new() -> Self {
        Keyframes(VecDeque::with_capacity(KEYFRAMES_KEPT))
    }

    pub fn push(&mut self, pts_ns: u64) {
        if self.0.len() == KEYFRAMES_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(pts_ns);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn contains(&self, pts_ns: u64) -> bool {
        self.0.contains(&pts_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = TIMESCALE as i64;

    fn pic(pts: i64, dts: i64) -> SourcePicture {
        SourcePicture {
            pts,
            dts,
            arrival_ms: pts as u64,
        }
    }

    #[test]
    fn timestamps_round_trip_through_gstreamer_nanoseconds() {
        for t in [0i64, 1, 2, 3000, 3003, 90_000, 123_456_789] {
            assert_eq!(ns_to_ticks(ticks_to_ns(t)), t, "{t}");
        }
        assert_eq!(
            ticks_to_ns(0),
            GST_ORIGIN_NS,
            "GStreamer time starts at 1000 h"
        );
        assert_eq!(ticks_to_ns(90_000) - GST_ORIGIN_NS, 1_000_000_000);
    }

    #[test]
    fn gstreamer_time_starts_at_1000_hours_where_x264enc_would_move_it() {
        assert_eq!(GST_ORIGIN_NS, 3_600_000 * 1_000_000_000);
        // A session base far from zero (a publisher's clock after days) still starts there.
        let base = 40 * 24 * 3600 * S;
        assert_eq!(source_to_ns(base, base), GST_ORIGIN_NS);
        assert_eq!(source_to_ns(base, base + 3003), GST_ORIGIN_NS + 33_366_666);
        assert_eq!(ns_to_source(base, GST_ORIGIN_NS + 33_366_666), base + 3003);
        // Anything GStreamer reports below the origin maps to the base.
        assert_eq!(ns_to_ticks(0), 0);
        assert_eq!(ns_to_ticks(GST_ORIGIN_NS - 1), 0);
    }

    #[test]
    fn conversions_round_to_the_nearest_tick_and_clamp_at_the_edges() {
        // 1 tick = 11 111.1 ns: half a tick either way rounds back.
        assert_eq!(ns_to_ticks(GST_ORIGIN_NS + 5_555), 0);
        assert_eq!(ns_to_ticks(GST_ORIGIN_NS + 5_556), 1);
        assert_eq!(ns_to_ticks(GST_ORIGIN_NS + 16_666), 1);
        // Before the base: clamped to the origin, never wrapped.
        assert_eq!(ticks_to_ns(-1), GST_ORIGIN_NS);
        assert_eq!(ticks_to_ns(i64::MIN), GST_ORIGIN_NS);
        assert_eq!(source_to_ns(1000, 999), GST_ORIGIN_NS);
        assert_eq!(source_to_ns(i64::MAX, i64::MIN), GST_ORIGIN_NS);
        // Far future: saturates instead of overflowing.
        let far = ticks_to_ns(i64::MAX);
        assert!(far > GST_ORIGIN_NS && far == GST_ORIGIN_NS + u64::MAX / 90_000);
        assert_eq!(source_to_ns(i64::MIN + 1, i64::MAX), far);
        assert!(ns_to_ticks(u64::MAX) > 0);
        assert_eq!(ns_to_source(i64::MAX - 1, u64::MAX), i64::MAX);
    }

    #[test]
    fn audio_waits_for_the_first_picture_and_maps_back() {
        assert_eq!(audio_in_ns(NO_BASE, 0), None);
        assert_eq!(audio_in_ns(NO_BASE, i64::MAX), None);
        assert_eq!(audio_in_ns(9000, 8999), None, "before the first picture");
        assert_eq!(audio_in_ns(9000, 9000), Some(GST_ORIGIN_NS));
        assert_eq!(
            audio_in_ns(9000, 9000 + S),
            Some(GST_ORIGIN_NS + 1_000_000_000)
        );
        assert_eq!(audio_out_dts(NO_BASE, GST_ORIGIN_NS), None);
        assert_eq!(
            audio_out_dts(9000, GST_ORIGIN_NS + 1_000_000_000),
            Some(9000 + S)
        );
        // 1024 samples at 48 kHz = 1920 ticks: whole AAC frames round-trip.
        for n in 0..100 {
            let dts = 9000 + n * 1920;
            let ns = audio_in_ns(9000, dts).unwrap();
            assert_eq!(audio_out_dts(9000, ns), Some(dts));
        }
    }

    #[test]
    fn running_time_follows_the_segment_and_falls_back_to_the_timestamp() {
        crate::transcode::init().unwrap();
        let ns = gst::ClockTime::from_nseconds;
        let pts = ns(GST_ORIGIN_NS + 5_000_000_000);
        assert_eq!(running_time(None, pts), pts, "no segment: the timestamp");

        // Our own input segment: running time is the timestamp.
        let plain = gst::FormattedSegment::<gst::ClockTime>::new();
        assert_eq!(running_time(Some(plain.upcast_ref()), pts), pts);

        // An encoder that shifted its output by an hour moves its segment start along.
        let mut shifted = gst::FormattedSegment::<gst::ClockTime>::new();
        shifted.set_start(ns(3_600_000_000_000));
        let out = ns(GST_ORIGIN_NS + 3_600_000_000_000 + 5_000_000_000);
        assert_eq!(
            running_time(Some(shifted.upcast_ref()), out),
            ns(GST_ORIGIN_NS + 5_000_000_000)
        );

        // A segment whose running time continues from an earlier one (base).
        let mut based = gst::FormattedSegment::<gst::ClockTime>::new();
        based.set_start(ns(1_000));
        based.set_base(ns(7_000));
        assert_eq!(running_time(Some(based.upcast_ref()), ns(3_000)), ns(9_000));

        // Before the segment starts there is no running time: keep the timestamp.
        assert_eq!(running_time(Some(based.upcast_ref()), ns(500)), ns(500));

        // A segment in another format says nothing about time.
        let bytes = gst::FormattedSegment::<gst::format::Bytes>::new();
        assert_eq!(running_time(Some(bytes.upcast_ref()), pts), pts);
    }

    #[test]
    fn fps_cap_keeps_pictures_far_enough_apart_and_every_keyframe() {
        let ms = |n: u64| GST_ORIGIN_NS + n * 1_000_000;
        assert!(fps_cap_keeps(None, Some(ms(0)), ms(1), false), "no cap");
        assert!(fps_cap_keeps(Some(30), None, ms(0), false), "first picture");
        // 30 fps cap: at least 30 ms apart (0.9 × 33.3 ms).
        assert!(!fps_cap_keeps(Some(30), Some(ms(0)), ms(16), false));
        assert!(!fps_cap_keeps(Some(30), Some(ms(0)), ms(29), false));
        assert!(fps_cap_keeps(Some(30), Some(ms(0)), ms(30), false));
        assert!(
            fps_cap_keeps(Some(30), Some(ms(0)), ms(16), true),
            "keyframes pass"
        );
        // Time going backwards (a new decoder) is not a reason to keep a picture.
        assert!(!fps_cap_keeps(Some(30), Some(ms(100)), ms(0), false));
        // Halving 60 fps keeps every other picture.
        let kept = (0..60)
            .filter(|n| {
                let rt = GST_ORIGIN_NS + n * 1_000_000_000 / 60;
                let last = GST_ORIGIN_NS + (n - n % 2) * 1_000_000_000 / 60;
                n % 2 == 0 || fps_cap_keeps(Some(30), Some(last), rt, false)
            })
            .count();
        assert_eq!(kept, 30);
        // A cap of 0 (never valid in a pipeline file) does not divide by zero.
        assert!(!fps_cap_keeps(Some(0), Some(ms(0)), ms(1), false));
    }

    #[test]
    fn encoded_pictures_take_the_source_decode_times_slot_by_slot() {
        // Source with B-frames (decode order I P B B), 3000-tick pictures, 2 pictures delay.
        let mut pics = SourcePictures::new();
        for p in [
            pic(6000, 0),
            pic(15000, 3000),
            pic(9000, 6000),
            pic(12000, 9000),
        ] {
            pics.push(p);
        }
        // The rung outputs in presentation order; each gets the n-th source decode time.
        let mut last = None;
        let mut got = Vec::new();
        for pts in [6000, 9000, 12000, 15000] {
            let placed = pics.place(pts, last);
            last = Some(placed.dts);
            got.push((placed.dts, placed.cts, placed.arrival_ms));
        }
        assert_eq!(
            got,
            [
                (0, 6000, Some(6000)),
                (3000, 6000, Some(9000)),
                (6000, 6000, Some(12000)),
                (9000, 6000, Some(15000))
            ]
        );
    }

    #[test]
    fn placement_tolerates_one_tick_and_keeps_decode_times_increasing() {
        let mut pics = SourcePictures::new();
        pics.push(pic(3000, 3000));
        pics.push(pic(6000, 6000));
        // One tick off (nanosecond rounding): still the source picture, with its exact times.
        assert_eq!(
            pics.place(6001, None),
            Placed {
                dts: 6000,
                cts: 0,
                arrival_ms: Some(6000)
            }
        );
        // Unknown picture past the history: decode time = presentation time, no arrival.
        assert_eq!(
            pics.place(9000, Some(6000)),
            Placed {
                dts: 9000,
                cts: 0,
                arrival_ms: None
            }
        );
        // Decode times move past the previous one, unless that passes the presentation time.
        assert_eq!(pics.place(3000, Some(3000)).dts, 3000);
        assert_eq!(pics.place(6000, Some(6000)).dts, 6000);
        assert_eq!(pics.place(6000, Some(5000)).dts, 6000);
        assert_eq!(pics.place(3000, Some(2999)).dts, 3000);
        // Empty history (a new session): presentation time.
        pics.clear();
        assert_eq!(pics.place(42, None).dts, 42);
        assert_eq!(pics.place(i64::MAX, Some(i64::MAX)).dts, i64::MAX);
        // A huge composition offset saturates instead of wrapping.
        pics.push(pic(i64::MAX, 0));
        pics.push(pic(i64::MAX - 1, 1));
        assert_eq!(pics.place(i64::MAX, None).cts, i32::MAX);
    }

    #[test]
    fn histories_are_bounded_and_forget_the_oldest() {
        let mut pics = SourcePictures::new();
        for n in 0..PICTURES_KEPT as i64 + 10 {
            pics.push(pic(n * 3000, n * 3000));
        }
        assert_eq!(pics.0.len(), PICTURES_KEPT);
        assert_eq!(pics.place(0, None).arrival_ms, None, "forgotten");
        assert_eq!(pics.place(10 * 3000, None).arrival_ms, Some(30_000));
        let mut keys = Keyframes::new();
        for n in 0..KEYFRAMES_KEPT as u64 + 1 {
            keys.push(GST_ORIGIN_NS + n);
        }
        assert!(!keys.contains(GST_ORIGIN_NS));
        assert!(keys.contains(GST_ORIGIN_NS + 1));
        assert!(keys.contains(GST_ORIGIN_NS + KEYFRAMES_KEPT as u64));
        keys.clear();
        assert!(!keys.contains(GST_ORIGIN_NS + 1));
    }
}
