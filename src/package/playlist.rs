//! Sans-IO LL-HLS playlist writer.
//!
//! Everything here is a pure function of a [`MediaPlaylist`] model: no clocks, no I/O, no
//! allocation beyond the output string. That keeps the text byte-for-byte reproducible, so every
//! rendition of a stream (and every origin) writes identical playlists for identical state, and
//! the tests can compare against golden text.
//!
//! Rules kept (RFC 8216bis, docs/http.md, "LL-HLS behaviour"):
//!
//! * `EXT-X-VERSION` is 9 (the server always advertises `CAN-SKIP-UNTIL`, so the same rendition
//!   may be served as a delta update containing `EXT-X-SKIP`, which needs version 9). A
//!   [`Skip::V2`] delta that actually contains `EXT-X-SKIP` (with
//!   `RECENTLY-REMOVED-DATERANGES`) is version 10, the version the spec ties to a skip that also
//!   covers `EXT-X-DATERANGE` tags. A request for a delta where nothing qualifies for skipping
//!   gets the full playlist, which uses no version-10 feature and so stays version 9.
//! * Numbers: every decimal (`EXTINF`, `EXT-X-PART:DURATION`, `PART-TARGET`, `PART-HOLD-BACK`,
//!   `CAN-SKIP-UNTIL`) is rounded to 5 decimals, trailing zeros trimmed but at least one digit
//!   after the point (`2.0`, `4.00008`, `0.33334`): the form of Apple's reference playlists, and
//!   always a decimal point so version-3+ clients never read an integer `EXTINF`.
//! * All duration arithmetic (skip boundary, which parts to list) is done in integer
//!   microseconds so that float noise cannot move a boundary between two calls.

use std::fmt::Write as _;

/// One partial segment (`EXT-X-PART`).
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// Seconds; must be ≤ the playlist's `part_target`.
    pub duration: f64,
    /// The part starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    pub uri: String,
}

/// One complete media segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub msn: u64,
    /// Seconds.
    pub duration: f64,
    pub uri: String,
    /// Parts of this segment. The model may keep them for older segments too; the writer lists
    /// them only for segments within three target durations of the playlist end.
    pub parts: Vec<Part>,
    /// UNIX milliseconds of the first frame (`EXT-X-PROGRAM-DATE-TIME`).
    pub pdt_ms: u64,
    /// `EXT-X-DISCONTINUITY` before this segment.
    pub discontinuity: bool,
    /// `EXT-X-MAP` URI in force for this segment; a change emits a new `EXT-X-MAP`.
    pub init_uri: String,
}

/// The segment currently being built: only its parts are published.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenSegment {
    pub msn: u64,
    pub pdt_ms: u64,
    pub discontinuity: bool,
    pub init_uri: String,
    pub parts: Vec<Part>,
}

/// `EXT-X-RENDITION-REPORT` for a sibling rendition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionReport {
    /// URI of the sibling's media playlist, relative to this playlist.
    pub uri: String,
    pub last_msn: u64,
    pub last_part: Option<u64>,
}

/// Everything needed to write one rendition's media playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaPlaylist {
    /// Seconds, ≥ every segment duration rounded to the nearest integer. The writer never
    /// writes less than that rounded maximum, even if the model is wrong, since a too-small
    /// target duration makes the playlist invalid.
    pub target_duration: u64,
    /// Seconds.
    pub part_target: f64,
    /// Incremented by the model each time a segment carrying `discontinuity` leaves the window.
    pub discontinuity_sequence: u64,
    /// Complete segments in the window, oldest first, consecutive MSNs.
    pub segments: Vec<Segment>,
    pub open: Option<OpenSegment>,
    /// URI of the next part (`EXT-X-PRELOAD-HINT`); ignored when `ended`.
    pub preload_hint: Option<String>,
    /// Writes `EXT-X-ENDLIST`.
    pub ended: bool,
    pub rendition_reports: Vec<RenditionReport>,
}

/// Playlist delta update requested by `_HLS_skip`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Skip {
    /// Full playlist.
    No,
    /// `_HLS_skip=YES`: skip old segments.
    Yes,
    /// `_HLS_skip=v2`: skip old segments and date ranges (we write none, so the list of
    /// recently removed date ranges is always empty).
    V2,
}

/// One `EXT-X-STREAM-INF` entry of the multivariant playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub uri: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codecs string; empty means "not known" and omits `CODECS`.
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    /// Written as `STABLE-VARIANT-ID` when it only uses the characters the spec allows there;
    /// `EXT-X-STREAM-INF` has no `NAME` attribute.
    pub name: String,
}

const MICROS: f64 = 1_000_000.0;

/// Seconds → integer microseconds; non-finite or negative durations count as zero so that a
/// broken model cannot make the writer panic or loop.
fn to_us(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        // Saturating float→int cast; durations are tiny compared to u64::MAX µs.
        (secs * MICROS).round() as u64
    } else {
        0
    }
}

/// Decimal with up to 5 places, trailing zeros trimmed, always a decimal point.
fn fmt_dec(x: f64) -> String {
    let x = if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let mut s = format!("{x:.5}");
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

/// `PART-HOLD-BACK` is 3 × `PART-TARGET`, rounded *up* to the 5 decimals we write so it never
/// ends below three part targets (the spec's SHOULD) after formatting.
fn fmt_hold_back(part_target: f64) -> String {
    let v = 3.0
        * if part_target.is_finite() {
            part_target
        } else {
            0.0
        };
    // The small epsilon absorbs float noise such as 1.0000200000000001.
    fmt_dec(((v * 1e5) - 1e-6).ceil() / 1e5)
}

/// Rounds to the nearest integer number of seconds the way the spec's `EXTINF` ≤
/// `EXT-X-TARGETDURATION` rule does (half up).
fn rounded_secs(secs: f64) -> u64 {
    to_us(secs).saturating_add(500_000) / 1_000_000
}

/// The target duration actually written: the model's, raised to cover every segment.
fn effective_target(p: &MediaPlaylist) -> u64 {
    p.segments
        .iter()
        .map(|s| rounded_secs(s.duration))
        .fold(p.target_duration.max(1), u64::max)
}

/// Media sequence number of the first segment in the playlist (`EXT-X-MEDIA-SEQUENCE`).
pub fn media_sequence(p: &MediaPlaylist) -> u64 {
    match (p.segments.first(), &p.open) {
        (Some(s), _) => s.msn,
        (None, Some(o)) => o.msn,
        (None, None) => 0,
    }
}

/// MSN and part index of the last published part, for `EXT-X-RENDITION-REPORT` and blocking
/// reload (`_HLS_msn`/`_HLS_part`). While the open segment has no part yet, the last part is the
/// last one of the newest complete segment (part index `None` if that segment has no parts).
/// `None` when nothing at all is published.
pub fn last_msn_part(p: &MediaPlaylist) -> Option<(u64, Option<u64>)> {
    if let Some(o) = &p.open {
        if let Some(last) = o.parts.len().checked_sub(1) {
            return Some((o.msn, Some(last as u64)));
        }
    }
    p.segments
        .last()
        .map(|s| (s.msn, s.parts.len().checked_sub(1).map(|i| i as u64)))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for UNIX milliseconds (proleptic Gregorian, UTC).
pub fn format_pdt(unix_ms: u64) -> String {
    let ms = unix_ms % 1000;
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Howard Hinnant's `civil_from_days` for days since 1970-01-01 (non-negative only, since
/// UNIX ms are unsigned here): shift the epoch to 0000-03-01 so the leap day is the last day of
/// the "year", then split into 400-year eras of 146 097 days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Writes the tags that precede a segment's (or the open segment's) first part/URI:
/// `EXT-X-DISCONTINUITY`, `EXT-X-MAP` when the init segment differs from the one in force, and
/// `EXT-X-PROGRAM-DATE-TIME` (on every segment, so a client joining or merging a delta update
/// can map any segment to wall-clock time without summing durations).
fn write_segment_head(
    out: &mut String,
    discontinuity: bool,
    init_uri: &str,
    map_in_force: &mut Option<String>,
    pdt_ms: u64,
) {
    if discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if map_in_force.as_deref() != Some(init_uri) {
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{init_uri}\"");
        *map_in_force = Some(init_uri.to_owned());
    }
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", format_pdt(pdt_ms));
}

fn write_parts(out: &mut String, parts: &[Part]) {
    for part in parts {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{}\"",
            fmt_dec(part.duration),
            part.uri
        );
        out.push_str(if part.independent {
            ",INDEPENDENT=YES\n"
        } else {
            "\n"
        });
    }
}

/// Writes the media playlist text for `p`, as a full playlist or as a delta update.
///
/// Delta updates (`skip` ≠ [`Skip::No`]): the skip boundary is `CAN-SKIP-UNTIL` =
/// 6 × target duration before the playlist end (end of the last published part). The leading
/// run of complete segments whose *end* lies strictly more than that before the playlist end is
/// replaced by `EXT-X-SKIP:SKIPPED-SEGMENTS=N`; `EXT-X-MEDIA-SEQUENCE` and
/// `EXT-X-DISCONTINUITY-SEQUENCE` still describe the first (skipped) segment, as the spec
/// requires. The skipped segments' Media Segment tags go with them, including the leading
/// `EXT-X-MAP`: the client merging the delta already holds that map from the skipped
/// segments, and the spec's own example delta has no `EXT-X-MAP` after the skip. An
/// `EXT-X-MAP` follows the skip only when the first listed segment's init differs from the last
/// skipped one's — exactly where the full playlist has one. If no segment qualifies, the
/// output is the full playlist with no `EXT-X-SKIP` tag.
///
/// Parts are listed for the open segment and for complete segments ending less than three
/// target durations before the playlist end (the spec asks servers to drop older
/// `EXT-X-PART` tags; erring towards listing keeps every part a client inside
/// `PART-HOLD-BACK` may need).
pub fn write_media_playlist(p: &MediaPlaylist, skip: Skip) -> String {
    let target = effective_target(p);
    let target_us = target.saturating_mul(1_000_000);

    // Segment end offsets in µs from the start of the first segment.
    let mut ends = Vec::with_capacity(p.segments.len());
    let mut acc: u64 = 0;
    for s in &p.segments {
        acc = acc.saturating_add(to_us(s.duration));
        ends.push(acc);
    }
    let open_us: u64 = p
        .open
        .iter()
        .flat_map(|o| o.parts.iter())
        .map(|part| to_us(part.duration))
        .fold(0, u64::saturating_add);
    let total = acc.saturating_add(open_us);

    let skip_until_us = target_us.saturating_mul(6);
    let skipped = if skip == Skip::No {
        0
    } else {
        ends.iter()
            .take_while(|&&end| total - end > skip_until_us)
            .count()
    };
    let parts_window_us = target_us.saturating_mul(3);

    let version = if skip == Skip::V2 && skipped > 0 {
        10
    } else {
        9
    };

    let mut out = String::with_capacity(256 + 160 * p.segments.len());
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{version}");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}",
        fmt_hold_back(p.part_target),
        fmt_dec(skip_until_us as f64 / MICROS)
    );
    let _ = writeln!(
        out,
        "#EXT-X-PART-INF:PART-TARGET={}",
        fmt_dec(p.part_target)
    );
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", media_sequence(p));
    if p.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            p.discontinuity_sequence
        );
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");

    let mut map_in_force: Option<String> = None;
    if skipped > 0 {
        map_in_force = p.segments.get(skipped - 1).map(|s| s.init_uri.clone());
        let _ = write!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        out.push_str(if skip == Skip::V2 {
            ",RECENTLY-REMOVED-DATERANGES=\"\"\n"
        } else {
            "\n"
        });
    }

    for (seg, &end) in p.segments.iter().zip(&ends).skip(skipped) {
        write_segment_head(
            &mut out,
            seg.discontinuity,
            &seg.init_uri,
            &mut map_in_force,
            seg.pdt_ms,
        );
        if total - end < parts_window_us {
            write_parts(&mut out, &seg.parts);
        }
        let _ = writeln!(out, "#EXTINF:{},\n{}", fmt_dec(seg.duration), seg.uri);
    }

    // Tags of the open segment only once it has a part: tags with neither a part nor a URI
    // after them would dangle at the end of the playlist.
    if let Some(open) = p.open.as_ref().filter(|o| !o.parts.is_empty()) {
        write_segment_head(
            &mut out,
            open.discontinuity,
            &open.init_uri,
            &mut map_in_force,
            open.pdt_ms,
        );
        write_parts(&mut out, &open.parts);
    }

    if !p.ended {
        if let Some(hint) = &p.preload_hint {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
        }
    }

    for r in &p.rendition_reports {
        let _ = write!(
            out,
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
            r.uri, r.last_msn
        );
        if let Some(part) = r.last_part {
            let _ = write!(out, ",LAST-PART={part}");
        }
        out.push('\n');
    }

    if p.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// `STABLE-VARIANT-ID` only allows `[a-zA-Z0-9]` and `. - _ + / = :`; anything else is dropped
/// rather than escaped, since quoted strings have no escapes.
fn stable_variant_id(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_+/=:".contains(c));
    ok.then(|| name.to_owned())
}

/// Writes the multivariant playlist with m3u8-rs (plain `EXT-X-STREAM-INF` is exactly what
/// it models), adding `EXT-X-INDEPENDENT-SEGMENTS`. No `EXT-X-VERSION`: nothing written here
/// needs more than version 1.
pub fn write_multivariant(variants: &[Variant]) -> String {
    use m3u8_rs::{MasterPlaylist, QuotedOrUnquoted, Resolution, VariantStream};
    use std::collections::HashMap;

    let pl = MasterPlaylist {
        independent_segments: true,
        variants: variants
            .iter()
            .map(|v| VariantStream {
                uri: v.uri.clone(),
                bandwidth: v.bandwidth,
                average_bandwidth: v.average_bandwidth,
                codecs: (!v.codecs.is_empty()).then(|| v.codecs.clone()),
                resolution: v.resolution.map(|(w, h)| Resolution {
                    width: u64::from(w),
                    height: u64::from(h),
                }),
                // The spec wants FRAME-RATE rounded to three decimals.
                frame_rate: v
                    .frame_rate
                    .filter(|f| f.is_finite() && *f > 0.0)
                    .map(|f| (f * 1000.0).round() / 1000.0),
                other_attributes: stable_variant_id(&v.name).map(|id| {
                    HashMap::from([("STABLE-VARIANT-ID".to_owned(), QuotedOrUnquoted::Quoted(id))])
                }),
                ..VariantStream::default()
            })
            .collect(),
        ..MasterPlaylist::default()
    };
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail, and the writer only emits our UTF-8 strings.
    let _ = pl.write_to(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_795_659_216_106; // 2026-11-26T02:13:36.106Z

    fn parts(msn: u64, n: usize, dur: f64) -> Vec<Part> {
        (0..n)
            .map(|i| Part {
                duration: dur,
                independent: i == 0,
                uri: format!("p{msn}.{i}.m4s"),
            })
            .collect()
    }

    /// `n` segments of `dur` seconds from `first`, parts (of `part` s) only on the last
    /// `with_parts` of them, as the packager keeps them.
    fn segs(first: u64, n: u64, dur: f64, part: f64, with_parts: u64) -> Vec<Segment> {
        (0..n)
            .map(|i| {
                let msn = first + i;
                let per = (dur / part).round() as usize;
                Segment {
                    msn,
                    duration: dur,
                    uri: format!("s{msn}.m4s"),
                    parts: if i + with_parts >= n {
                        parts(msn, per, part)
                    } else {
                        Vec::new()
                    },
                    pdt_ms: T0 + (i as f64 * dur * 1000.0) as u64,
                    discontinuity: false,
                    init_uri: "init.mp4".into(),
                }
            })
            .collect()
    }

    fn open_after(segs: &[Segment], n: usize, part: f64) -> OpenSegment {
        let last = segs.last().expect("segments");
        OpenSegment {
            msn: last.msn + 1,
            pdt_ms: last.pdt_ms + (last.duration * 1000.0) as u64,
            discontinuity: false,
            init_uri: last.init_uri.clone(),
            parts: parts(last.msn + 1, n, part),
        }
    }

    fn live6() -> MediaPlaylist {
        let segments = segs(100, 6, 2.0, 0.5, 4);
        let open = open_after(&segments, 2, 0.5);
        MediaPlaylist {
            target_duration: 2,
            part_target: 0.5,
            discontinuity_sequence: 0,
            segments,
            open: Some(open),
            preload_hint: Some("p106.2.m4s".into()),
            ended: false,
            rendition_reports: vec![RenditionReport {
                uri: "../audio/index.m3u8".into(),
                last_msn: 106,
                last_part: Some(1),
            }],
        }
    }

    const LIVE6: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=0.5
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:36.106Z
#EXTINF:2.0,
s100.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:38.106Z
#EXTINF:2.0,
s101.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:40.106Z
#EXTINF:2.0,
s102.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:42.106Z
#EXT-X-PART:DURATION=0.5,URI=\"p103.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.5,URI=\"p103.1.m4s\"
#EXT-X-PART:DURATION=0.5,URI=\"p103.2.m4s\"
#EXT-X-PART:DURATION=0.5,URI=\"p103.3.m4s\"
#EXTINF:2.0,
s103.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:44.106Z
#EXT-X-PART:DURATION=0.5,URI=\"p104.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.5,URI=\"p104.1.m4s\"
#EXT-X-PART:DURATION=0.5,URI=\"p104.2.m4s\"
#EXT-X-PART:DURATION=0.5,URI=\"p104.3.m4s\"
#EXTINF:2.0,
s104.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:46.106Z
#EXT-X-PART:DURATION=0.5,URI=\"p105.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.5,URI=\"p105.1.m4s\"
#EXT-X-PART:DURATION=0.5,URI=\"p105.2.m4s\"
#EXT-X-PART:DURATION=0.5,URI=\"p105.3.m4s\"
#EXTINF:2.0,
s105.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:48.106Z
#EXT-X-PART:DURATION=0.5,URI=\"p106.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.5,URI=\"p106.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p106.2.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=106,LAST-PART=1
";

    #[test]
    fn live_playlist_golden() {
        // s102 carries parts in the model but ends 7 s (> 3 × 2 s) before the end: not listed.
        assert_eq!(write_media_playlist(&live6(), Skip::No), LIVE6);
    }

    #[test]
    fn skip_requested_but_window_too_short_gives_full_playlist() {
        let p = live6();
        assert_eq!(write_media_playlist(&p, Skip::Yes), LIVE6);
        assert_eq!(write_media_playlist(&p, Skip::V2), LIVE6);
    }

    #[test]
    fn reconnect_discontinuity_golden() {
        let mut segments = segs(200, 4, 2.0, 0.5, 0);
        // Publisher reconnected before s202: new timeline, later wall clock.
        segments[2].discontinuity = true;
        segments[2].pdt_ms += 5_000;
        segments[3].pdt_ms += 5_000;
        let open = open_after(&segments, 1, 0.5);
        let p = MediaPlaylist {
            target_duration: 2,
            part_target: 0.5,
            discontinuity_sequence: 3,
            segments,
            open: Some(open),
            preload_hint: Some("p204.1.m4s".into()),
            ended: false,
            rendition_reports: Vec::new(),
        };
        let want = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=0.5
#EXT-X-MEDIA-SEQUENCE:200
#EXT-X-DISCONTINUITY-SEQUENCE:3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:36.106Z
#EXTINF:2.0,
s200.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:38.106Z
#EXTINF:2.0,
s201.m4s
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:45.106Z
#EXTINF:2.0,
s202.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:47.106Z
#EXTINF:2.0,
s203.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:49.106Z
#EXT-X-PART:DURATION=0.5,URI=\"p204.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p204.1.m4s\"
";
        assert_eq!(write_media_playlist(&p, Skip::No), want);
    }

    #[test]
    fn changed_init_golden() {
        let mut segments = segs(10, 3, 2.0, 1.0, 1);
        segments[2].discontinuity = true;
        segments[2].init_uri = "init-1.mp4".into();
        // A second reconnect while the open segment is being built: its tags precede its parts.
        let mut open = open_after(&segments, 1, 1.0);
        open.discontinuity = true;
        open.init_uri = "init-2.mp4".into();
        let p = MediaPlaylist {
            target_duration: 2,
            part_target: 1.0,
            discontinuity_sequence: 0,
            segments,
            open: Some(open),
            preload_hint: Some("p13.1.m4s".into()),
            ended: false,
            rendition_reports: Vec::new(),
        };
        let want = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.0,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=1.0
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:36.106Z
#EXTINF:2.0,
s10.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:38.106Z
#EXTINF:2.0,
s11.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init-1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:40.106Z
#EXT-X-PART:DURATION=1.0,URI=\"p12.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.0,URI=\"p12.1.m4s\"
#EXTINF:2.0,
s12.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init-2.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:42.106Z
#EXT-X-PART:DURATION=1.0,URI=\"p13.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p13.1.m4s\"
";
        assert_eq!(write_media_playlist(&p, Skip::No), want);
    }

    #[test]
    fn ended_golden() {
        let segments = vec![
            Segment {
                msn: 7,
                duration: 4.00008,
                uri: "s7.m4s".into(),
                parts: Vec::new(),
                pdt_ms: T0,
                discontinuity: false,
                init_uri: "init.mp4".into(),
            },
            Segment {
                msn: 8,
                duration: 1.00002,
                uri: "s8.m4s".into(),
                parts: vec![
                    Part {
                        duration: 0.33334,
                        independent: true,
                        uri: "p8.0.m4s".into(),
                    },
                    Part {
                        duration: 0.33334,
                        independent: false,
                        uri: "p8.1.m4s".into(),
                    },
                    Part {
                        duration: 0.33334,
                        independent: false,
                        uri: "p8.2.m4s".into(),
                    },
                ],
                pdt_ms: T0 + 4000,
                discontinuity: false,
                init_uri: "init.mp4".into(),
            },
        ];
        let p = MediaPlaylist {
            target_duration: 4,
            part_target: 0.33334,
            discontinuity_sequence: 0,
            segments,
            open: None,
            preload_hint: Some("p9.0.m4s".into()), // stale hint: must not be written
            ended: true,
            rendition_reports: vec![RenditionReport {
                uri: "../audio/index.m3u8".into(),
                last_msn: 8,
                last_part: None,
            }],
        };
        let want = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:4
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.00002,CAN-SKIP-UNTIL=24.0
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:36.106Z
#EXTINF:4.00008,
s7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:13:40.106Z
#EXT-X-PART:DURATION=0.33334,URI=\"p8.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"p8.1.m4s\"
#EXT-X-PART:DURATION=0.33334,URI=\"p8.2.m4s\"
#EXTINF:1.00002,
s8.m4s
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=8
#EXT-X-ENDLIST
";
        assert_eq!(write_media_playlist(&p, Skip::No), want);
        assert_eq!(last_msn_part(&p), Some((8, Some(2))));
    }

    fn long20() -> MediaPlaylist {
        let segments = segs(1000, 20, 2.0, 1.0, 4);
        let open = open_after(&segments, 1, 1.0);
        MediaPlaylist {
            target_duration: 2,
            part_target: 1.0,
            discontinuity_sequence: 1,
            segments,
            open: Some(open),
            preload_hint: Some("p1020.1.m4s".into()),
            ended: false,
            rendition_reports: Vec::new(),
        }
    }

    /// Playlist end = 40 s + 1 s of open parts = 41 s; skip boundary 12 s before it (29 s).
    /// s1000..s1013 end at or before 28 s: 14 skipped; s1014 ends at 30 s: kept.
    const LONG20_TAIL: &str = "#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:14:04.106Z
#EXTINF:2.0,
s1014.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:14:06.106Z
#EXTINF:2.0,
s1015.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:14:08.106Z
#EXTINF:2.0,
s1016.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:14:10.106Z
#EXT-X-PART:DURATION=1.0,URI=\"p1017.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.0,URI=\"p1017.1.m4s\"
#EXTINF:2.0,
s1017.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:14:12.106Z
#EXT-X-PART:DURATION=1.0,URI=\"p1018.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.0,URI=\"p1018.1.m4s\"
#EXTINF:2.0,
s1018.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:14:14.106Z
#EXT-X-PART:DURATION=1.0,URI=\"p1019.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.0,URI=\"p1019.1.m4s\"
#EXTINF:2.0,
s1019.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-26T02:14:16.106Z
#EXT-X-PART:DURATION=1.0,URI=\"p1020.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p1020.1.m4s\"
";

    fn long20_head(version: u8) -> String {
        format!(
            "#EXTM3U
#EXT-X-VERSION:{version}
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.0,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=1.0
#EXT-X-MEDIA-SEQUENCE:1000
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-INDEPENDENT-SEGMENTS
"
        )
    }

    #[test]
    fn skip_yes_golden() {
        let want = format!(
            "{}#EXT-X-SKIP:SKIPPED-SEGMENTS=14\n{LONG20_TAIL}",
            long20_head(9)
        );
        assert_eq!(write_media_playlist(&long20(), Skip::Yes), want);
    }

    #[test]
    fn skip_v2_golden() {
        let want = format!(
            "{}#EXT-X-SKIP:SKIPPED-SEGMENTS=14,RECENTLY-REMOVED-DATERANGES=\"\"\n{LONG20_TAIL}",
            long20_head(10)
        );
        assert_eq!(write_media_playlist(&long20(), Skip::V2), want);
    }

    #[test]
    fn full_long_playlist_is_head_map_all_segments() {
        let full = write_media_playlist(&long20(), Skip::No);
        assert!(full.starts_with(&format!("{}#EXT-X-MAP:URI=\"init.mp4\"\n", long20_head(9))));
        assert!(full.ends_with(LONG20_TAIL));
        assert_eq!(full.matches("#EXTINF:").count(), 20);
        assert!(!full.contains("EXT-X-SKIP"));
    }

    #[test]
    fn skip_keeps_map_change_after_boundary() {
        let mut p = long20();
        for s in &mut p.segments[14..] {
            s.init_uri = "init-b.mp4".into();
        }
        p.segments[14].discontinuity = true;
        let out = write_media_playlist(&p, Skip::Yes);
        assert!(out.contains(
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=14\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-b.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"
        ));
        // The open segment still uses init.mp4 (from open_after before the edit): map switches back.
        assert_eq!(out.matches("#EXT-X-MAP:").count(), 2);
    }

    #[test]
    fn skip_boundary_is_strict() {
        // Ended, 7 × 2 s: s0 ends exactly 12 s (= CAN-SKIP-UNTIL) before the end: not skipped.
        let mut p = long20();
        p.open = None;
        p.ended = true;
        p.segments.truncate(7);
        assert!(!write_media_playlist(&p, Skip::Yes).contains("EXT-X-SKIP"));
        // One more segment: s0 ends 14 s before the end and is skipped, s1 (12 s) is not.
        p.segments = segs(1000, 8, 2.0, 1.0, 4);
        let out = write_media_playlist(&p, Skip::Yes);
        assert!(out.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n#EXT-X-PROGRAM-DATE-TIME:"));
        assert!(out.contains("#EXT-X-MEDIA-SEQUENCE:1000\n"));
        assert!(!out.contains("s1000.m4s"));
        assert!(out.contains("s1001.m4s"));
        assert!(out.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn pdt_formatting() {
        assert_eq!(format_pdt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_pdt(T0), "2026-11-26T02:13:36.106Z");
        assert_eq!(format_pdt(951_825_600_000), "2000-02-29T12:00:00.000Z"); // 400-year leap
        assert_eq!(format_pdt(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(format_pdt(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(format_pdt(1_709_251_200_000), "2024-03-01T00:00:00.000Z");
        assert_eq!(format_pdt(1_677_628_799_000), "2023-02-28T23:59:59.000Z");
        assert_eq!(format_pdt(1_677_628_800_000), "2023-03-01T00:00:00.000Z");
        assert_eq!(format_pdt(4_107_542_400_001), "2100-03-01T00:00:00.001Z"); // no Feb 29
        assert_eq!(format_pdt(94_694_399_500), "1972-12-31T23:59:59.500Z");
        assert_eq!(format_pdt(1_735_689_600_000), "2025-01-01T00:00:00.000Z");
    }

    #[test]
    fn number_formatting() {
        assert_eq!(fmt_dec(2.0), "2.0");
        assert_eq!(fmt_dec(4.00008), "4.00008");
        assert_eq!(fmt_dec(0.333_336_7), "0.33334");
        assert_eq!(fmt_dec(1.5), "1.5");
        assert_eq!(fmt_dec(f64::NAN), "0.0");
        assert_eq!(fmt_hold_back(0.33334), "1.00002");
        assert_eq!(fmt_hold_back(1.0 / 3.0), "1.0");
        assert_eq!(fmt_hold_back(0.333_334), "1.00001");
    }

    #[test]
    fn multivariant_golden() {
        let variants = [
            Variant {
                uri: "720p/index.m3u8".into(),
                bandwidth: 3_200_000,
                average_bandwidth: Some(2_800_000),
                codecs: "avc1.64001f,mp4a.40.2".into(),
                resolution: Some((1280, 720)),
                frame_rate: Some(29.97003),
                name: "720p".into(),
            },
            Variant {
                uri: "audio/index.m3u8".into(),
                bandwidth: 140_000,
                average_bandwidth: None,
                codecs: "mp4a.40.2".into(),
                resolution: None,
                frame_rate: None,
                name: "audio only".into(), // space: not a valid STABLE-VARIANT-ID, dropped
            },
        ];
        let want = "#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=3200000,AVERAGE-BANDWIDTH=2800000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.97,STABLE-VARIANT-ID=\"720p\"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=140000,CODECS=\"mp4a.40.2\"
audio/index.m3u8
";
        let out = write_multivariant(&variants);
        assert_eq!(out, want);
        let parsed = m3u8_rs::parse_master_playlist_res(out.as_bytes()).expect("parses");
        assert_eq!(parsed.variants.len(), 2);
        assert!(parsed.independent_segments);
    }

    fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    fn golden_inputs() -> Vec<MediaPlaylist> {
        let mut ended = long20();
        ended.open = None;
        ended.ended = true;
        vec![live6(), long20(), ended]
    }

    #[test]
    fn parts_fit_part_target_and_target_covers_segments() {
        for p in golden_inputs() {
            for skip in [Skip::No, Skip::Yes, Skip::V2] {
                let out = write_media_playlist(&p, skip);
                let mut part_target = None;
                let mut target = None;
                for line in out.lines() {
                    if let Some(rest) = line.strip_prefix("#EXT-X-PART-INF:") {
                        part_target = attr(rest, "PART-TARGET").map(|v| v.parse::<f64>());
                    } else if let Some(rest) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                        target = Some(rest.parse::<u64>().expect("integer"));
                    } else if let Some(rest) = line.strip_prefix("#EXT-X-PART:") {
                        let d: f64 = attr(rest, "DURATION")
                            .expect("DURATION")
                            .parse()
                            .expect("f64");
                        let pt = part_target.clone().expect("PART-INF first").expect("f64");
                        assert!(d <= pt, "part {d} > PART-TARGET {pt}");
                    } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
                        let d: f64 = rest.trim_end_matches(',').parse().expect("f64");
                        assert!(d.round() as u64 <= target.expect("TARGETDURATION first"));
                    }
                }
            }
        }
    }

    #[test]
    fn target_duration_is_raised_to_cover_segments() {
        let mut p = live6();
        p.segments[3].duration = 2.6; // rounds to 3 > model's 2
        let out = write_media_playlist(&p, Skip::No);
        assert!(out.contains("#EXT-X-TARGETDURATION:3\n"));
        assert!(out.contains("CAN-SKIP-UNTIL=18.0\n"));
    }

    #[test]
    fn m3u8_rs_reads_back_segments() {
        for p in golden_inputs() {
            let out = write_media_playlist(&p, Skip::No);
            let parsed = m3u8_rs::parse_media_playlist_res(out.as_bytes()).expect("parses");
            assert_eq!(parsed.media_sequence, p.segments[0].msn);
            assert_eq!(parsed.target_duration, effective_target(&p));
            assert_eq!(parsed.end_list, p.ended);
            assert_eq!(parsed.segments.len(), p.segments.len());
            for (got, want) in parsed.segments.iter().zip(&p.segments) {
                assert_eq!(got.uri, want.uri);
                assert!((f64::from(got.duration) - want.duration).abs() < 1e-4);
                assert!(got.program_date_time.is_some());
            }
            assert!(parsed.segments[0].map.is_some());
        }
    }

    #[test]
    fn helpers() {
        let mut p = live6();
        assert_eq!(media_sequence(&p), 100);
        assert_eq!(last_msn_part(&p), Some((106, Some(1))));
        if let Some(o) = p.open.as_mut() {
            o.parts.clear();
        }
        assert_eq!(last_msn_part(&p), Some((105, Some(3))));
        // Open segment without parts writes no dangling tags, only the hint.
        let out = write_media_playlist(&p, Skip::No);
        assert!(out.contains("s105.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p106.2.m4s\"\n"));
        p.segments.clear();
        assert_eq!(media_sequence(&p), 106);
        assert_eq!(last_msn_part(&p), None);
        p.open = None;
        assert_eq!(media_sequence(&p), 0);
        let empty = write_media_playlist(&p, Skip::V2);
        assert!(!empty.contains("EXT-X-MAP") && !empty.contains("EXT-X-SKIP"));
    }
}
