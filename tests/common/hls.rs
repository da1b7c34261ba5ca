//! A small, strict test-side parser for LL-HLS media and multivariant playlists.
//! (m3u8-rs parses the classic tags but passes LL-HLS tags through as unknown.)

use std::collections::{BTreeMap, BTreeSet};

/// An attribute list (`KEY=VALUE,KEY="quoted"`), quotes removed.
pub type Attrs = BTreeMap<String, String>;

/// Parses an attribute list; panics on malformed input (a malformed playlist fails the test).
pub fn attrs(s: &str) -> Attrs {
    let mut out = Attrs::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("attribute without `=` in `{s}`"));
        assert!(
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-'),
            "bad attribute name `{key}` in `{s}`"
        );
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .unwrap_or_else(|| panic!("unterminated quoted string in `{s}`"));
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        assert!(
            out.insert(key.to_string(), value.to_string()).is_none(),
            "duplicate attribute {key} in `{s}`"
        );
        rest = match after.strip_prefix(',') {
            Some(r) => r,
            None => {
                assert!(after.is_empty(), "junk after attribute {key} in `{s}`");
                ""
            }
        };
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

/// A complete segment (or, for [`MediaPlaylist::open`], the one being built: no URI yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    pub parts: Vec<Part>,
    /// `EXT-X-PROGRAM-DATE-TIME` as UNIX seconds.
    pub pdt: Option<f64>,
    pub discontinuity: bool,
    /// `EXT-X-MAP` URI in force for this segment.
    pub map: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct MediaPlaylist {
    pub text: String,
    pub version: Option<u32>,
    pub target_duration: Option<u64>,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub independent_segments: bool,
    pub server_control: Option<Attrs>,
    pub part_inf: Option<Attrs>,
    pub skip: Option<Attrs>,
    pub segments: Vec<Segment>,
    pub open: Option<Segment>,
    pub preload_hints: Vec<Attrs>,
    pub rendition_reports: Vec<Attrs>,
    pub endlist: bool,
    /// Every tag name used (without `#`).
    pub tags: BTreeSet<String>,
}

impl MediaPlaylist {
    pub fn parse(text: &str) -> MediaPlaylist {
        let mut p = MediaPlaylist {
            text: text.to_string(),
            ..Default::default()
        };
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("#EXTM3U"),
            "playlist must start with #EXTM3U:\n{text}"
        );
        let mut parts: Vec<Part> = Vec::new();
        let mut pdt: Option<f64> = None;
        let mut disc = false;
        let mut map: Option<String> = None;
        let mut extinf: Option<f64> = None;
        let mut skipped = 0u64;
        for line in lines {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let Some(tag) = line.strip_prefix('#') else {
                // A URI line: it closes a segment.
                let duration = extinf
                    .take()
                    .unwrap_or_else(|| panic!("URI `{line}` without #EXTINF:\n{text}"));
                let msn = p.media_sequence + skipped + p.segments.len() as u64;
                p.segments.push(Segment {
                    msn,
                    duration,
                    uri: line.to_string(),
                    parts: std::mem::take(&mut parts),
                    pdt: pdt.take(),
                    discontinuity: std::mem::take(&mut disc),
                    map: map.clone(),
                });
                continue;
            };
            if !tag.starts_with("EXT") {
                continue; // a comment
            }
            let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
            p.tags.insert(name.to_string());
            match name {
                "EXT-X-VERSION" => p.version = Some(value.parse().expect("EXT-X-VERSION")),
                "EXT-X-TARGETDURATION" => {
                    p.target_duration = Some(value.parse().expect("EXT-X-TARGETDURATION integer"))
                }
                "EXT-X-MEDIA-SEQUENCE" => {
                    p.media_sequence = value.parse().expect("EXT-X-MEDIA-SEQUENCE")
                }
                "EXT-X-DISCONTINUITY-SEQUENCE" => {
                    p.discontinuity_sequence = value.parse().expect("EXT-X-DISCONTINUITY-SEQUENCE")
                }
                "EXT-X-INDEPENDENT-SEGMENTS" => p.independent_segments = true,
                "EXT-X-SERVER-CONTROL" => p.server_control = Some(attrs(value)),
                "EXT-X-PART-INF" => p.part_inf = Some(attrs(value)),
                "EXT-X-SKIP" => {
                    let a = attrs(value);
                    skipped = a["SKIPPED-SEGMENTS"].parse().expect("SKIPPED-SEGMENTS");
                    p.skip = Some(a);
                }
                "EXT-X-MAP" => map = Some(attrs(value)["URI"].clone()),
                "EXT-X-PROGRAM-DATE-TIME" => pdt = Some(parse_pdt(value)),
                "EXT-X-DISCONTINUITY" => disc = true,
                "EXTINF" => {
                    let d = value.split(',').next().unwrap();
                    extinf = Some(d.parse().unwrap_or_else(|_| panic!("bad EXTINF `{value}`")));
                }
                "EXT-X-PART" => {
                    let a = attrs(value);
                    parts.push(Part {
                        duration: a["DURATION"].parse().expect("PART DURATION"),
                        uri: a["URI"].clone(),
                        independent: a.get("INDEPENDENT").map(String::as_str) == Some("YES"),
                    });
                }
                "EXT-X-PRELOAD-HINT" => p.preload_hints.push(attrs(value)),
                "EXT-X-RENDITION-REPORT" => p.rendition_reports.push(attrs(value)),
                "EXT-X-ENDLIST" => p.endlist = true,
                _ => {}
            }
        }
        assert!(
            extinf.is_none(),
            "#EXTINF without a URI at the end:\n{text}"
        );
        if !parts.is_empty() {
            let msn = p.media_sequence + skipped + p.segments.len() as u64;
            p.open = Some(Segment {
                msn,
                duration: 0.0,
                uri: String::new(),
                parts,
                pdt,
                discontinuity: disc,
                map,
            });
        } else {
            assert!(
                pdt.is_none() && !disc,
                "segment tags dangle at the end of the playlist:\n{text}"
            );
        }
        p
    }

    pub fn skipped(&self) -> u64 {
        self.skip
            .as_ref()
            .map(|a| a["SKIPPED-SEGMENTS"].parse().unwrap())
            .unwrap_or(0)
    }

    pub fn part_target(&self) -> f64 {
        self.part_inf.as_ref().expect("EXT-X-PART-INF")["PART-TARGET"]
            .parse()
            .unwrap()
    }

    /// `EXT-X-TARGETDURATION` in seconds: what timing windows of the tests scale with.
    pub fn target(&self) -> f64 {
        self.target_duration.expect("EXT-X-TARGETDURATION") as f64
    }

    /// Program date-time (UNIX seconds) of the live edge: the end of the last listed part, or
    /// of the last complete segment. None without a PDT.
    pub fn edge_pdt(&self) -> Option<f64> {
        let last = self.segments.last();
        match &self.open {
            Some(o) if !o.parts.is_empty() => {
                let start = match o.pdt {
                    Some(p) => p,
                    None => last.and_then(|s| Some(s.pdt? + s.duration))?,
                };
                Some(start + o.parts.iter().map(|p| p.duration).sum::<f64>())
            }
            _ => last.and_then(|s| Some(s.pdt? + s.duration)),
        }
    }

    pub fn server_control(&self, key: &str) -> Option<String> {
        self.server_control.as_ref()?.get(key).cloned()
    }

    pub fn preload_hint(&self) -> Option<String> {
        self.preload_hints
            .iter()
            .find(|h| h.get("TYPE").map(String::as_str) == Some("PART"))
            .map(|h| h["URI"].clone())
    }

    /// Newest complete segment's MSN.
    pub fn last_segment_msn(&self) -> Option<u64> {
        self.segments.last().map(|s| s.msn)
    }

    /// (msn, part index) of the last published part, as blocking reload counts it.
    pub fn last_part(&self) -> Option<(u64, u64)> {
        if let Some(o) = &self.open {
            return Some((o.msn, o.parts.len() as u64 - 1));
        }
        let s = self.segments.last()?;
        Some((s.msn, s.parts.len().checked_sub(1)? as u64))
    }

    /// MSN the next new segment (or the open one) has: the live edge's segment.
    pub fn edge_msn(&self) -> u64 {
        match (&self.open, self.segments.last()) {
            (Some(o), _) => o.msn,
            (None, Some(s)) => s.msn + 1,
            (None, None) => self.media_sequence,
        }
    }

    /// Every part listed (complete segments first, then the open one).
    pub fn all_parts(&self) -> Vec<(u64, usize, &Part)> {
        self.segments
            .iter()
            .chain(self.open.iter())
            .flat_map(|s| s.parts.iter().enumerate().map(move |(i, p)| (s.msn, i, p)))
            .collect()
    }

    /// Whether part `idx` of segment `msn` is listed.
    pub fn has_part(&self, msn: u64, idx: usize) -> bool {
        self.all_parts()
            .iter()
            .any(|(m, i, _)| *m == msn && *i == idx)
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.msn == msn)
    }
}

/// One `EXT-X-STREAM-INF` entry.
#[derive(Debug, Clone)]
pub struct Variant {
    pub attrs: Attrs,
    pub uri: String,
}

/// Parses a multivariant playlist into its variants (and the tags used).
pub fn parse_multivariant(text: &str) -> (Vec<Variant>, BTreeSet<String>) {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("#EXTM3U"),
        "multivariant must start with #EXTM3U:\n{text}"
    );
    let mut tags = BTreeSet::new();
    let mut out = Vec::new();
    let mut pending: Option<Attrs> = None;
    for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(tag) = line.strip_prefix('#') {
            let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
            tags.insert(name.to_string());
            if name == "EXT-X-STREAM-INF" {
                pending = Some(attrs(value));
            }
        } else {
            let a = pending
                .take()
                .unwrap_or_else(|| panic!("URI `{line}` without EXT-X-STREAM-INF:\n{text}"));
            out.push(Variant {
                attrs: a,
                uri: line.to_string(),
            });
        }
    }
    (out, tags)
}

/// `YYYY-MM-DDTHH:MM:SS(.fff)(Z|±HH:MM)` → UNIX seconds.
pub fn parse_pdt(s: &str) -> f64 {
    try_parse_pdt(s).unwrap_or_else(|| panic!("bad EXT-X-PROGRAM-DATE-TIME `{s}`"))
}

fn try_parse_pdt(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 {
        return None;
    }
    let (clock, offset_secs) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0i64)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':')?;
        (
            c,
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60),
        )
    };
    let t: Vec<&str> = clock.split(':').collect();
    if t.len() != 3 {
        return None;
    }
    let (h, mi): (i64, i64) = (t[0].parse().ok()?, t[1].parse().ok()?);
    let sec: f64 = t[2].parse().ok()?;
    let days = days_from_civil(d[0], d[1], d[2]);
    Some((days * 86_400 + h * 3600 + mi * 60 - offset_secs) as f64 + sec)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Rounds seconds half up, as the `EXTINF` ≤ `EXT-X-TARGETDURATION` rule does.
pub fn rounded(secs: f64) -> u64 {
    (secs + 0.5).floor() as u64
}

/// Checks a media playlist (full or delta) against every playlist rule of DESIGN.md
/// ("LL-HLS rules the origin keeps"); panics with the playlist on the first violation.
pub fn check_rules(p: &MediaPlaylist) {
    let fail = |msg: String| -> ! { panic!("LL-HLS rule broken: {msg}\nplaylist:\n{}", p.text) };
    let version = p.version.unwrap_or_else(|| fail("no EXT-X-VERSION".into()));
    // The version must cover every feature used.
    let mut need = 3; // decimal EXTINF
    if p.tags.contains("EXT-X-MAP") {
        need = need.max(6); // EXT-X-MAP without I-FRAMES-ONLY
    }
    if p.server_control("CAN-SKIP-UNTIL").is_some() || p.skip.is_some() {
        need = need.max(9);
    }
    if p.skip
        .as_ref()
        .is_some_and(|s| s.contains_key("RECENTLY-REMOVED-DATERANGES"))
    {
        need = need.max(10);
    }
    if version < need {
        fail(format!(
            "EXT-X-VERSION {version} but the tags used need {need}"
        ));
    }
    if version < 9 {
        fail(format!("EXT-X-VERSION {version} < 9"));
    }
    if !p.independent_segments {
        fail("no EXT-X-INDEPENDENT-SEGMENTS".into());
    }
    if p.skip.is_none() && !p.segments.is_empty() && p.segments.iter().any(|s| s.map.is_none()) {
        fail("a segment has no EXT-X-MAP in force".into());
    }
    if let Some(o) = &p.open {
        if o.map.is_none() && p.skip.is_none() {
            fail("the open segment has no EXT-X-MAP in force".into());
        }
    }
    let td = p
        .target_duration
        .unwrap_or_else(|| fail("no EXT-X-TARGETDURATION".into()));
    for s in &p.segments {
        if rounded(s.duration) > td {
            fail(format!(
                "EXTINF {} of msn {} rounds above TARGETDURATION {td}",
                s.duration, s.msn
            ));
        }
        if s.duration <= 0.0 {
            fail(format!("msn {} has EXTINF {}", s.msn, s.duration));
        }
    }
    // Parts.
    let part_target = p
        .part_inf
        .as_ref()
        .and_then(|a| a.get("PART-TARGET"))
        .unwrap_or_else(|| fail("no EXT-X-PART-INF:PART-TARGET".into()));
    let part_target: f64 = part_target
        .parse()
        .unwrap_or_else(|_| fail("bad PART-TARGET".into()));
    if part_target <= 0.0 {
        fail("PART-TARGET must be positive".into());
    }
    let mut uris = BTreeSet::new();
    for (msn, i, part) in p.all_parts() {
        if part.duration > part_target + 1e-9 {
            fail(format!(
                "part {i} of msn {msn} lasts {} > PART-TARGET {part_target}",
                part.duration
            ));
        }
        if part.duration <= 0.0 {
            fail(format!("part {i} of msn {msn} lasts {}", part.duration));
        }
        if !uris.insert(part.uri.clone()) {
            fail(format!("part URI {} listed twice", part.uri));
        }
    }
    for s in p.segments.iter().chain(p.open.iter()) {
        if let Some(first) = s.parts.first() {
            // A segment starts on a keyframe, so its first part is independent.
            if !first.independent {
                fail(format!("first part of msn {} lacks INDEPENDENT=YES", s.msn));
            }
        }
        if !s.uri.is_empty() && !s.parts.is_empty() {
            let sum: f64 = s.parts.iter().map(|x| x.duration).sum();
            if (sum - s.duration).abs() > 0.005 {
                fail(format!(
                    "parts of msn {} add up to {sum}, EXTINF says {}",
                    s.msn, s.duration
                ));
            }
        }
        if !s.uri.is_empty() && !uris.insert(s.uri.clone()) {
            fail(format!("segment URI {} listed twice", s.uri));
        }
    }
    // Server control.
    if p.server_control("CAN-BLOCK-RELOAD").as_deref() != Some("YES") {
        fail("EXT-X-SERVER-CONTROL lacks CAN-BLOCK-RELOAD=YES".into());
    }
    let phb: f64 = p
        .server_control("PART-HOLD-BACK")
        .unwrap_or_else(|| fail("no PART-HOLD-BACK".into()))
        .parse()
        .unwrap();
    if phb + 1e-9 < 3.0 * part_target {
        fail(format!(
            "PART-HOLD-BACK {phb} < 3 x PART-TARGET {part_target}"
        ));
    }
    let csu: f64 = p
        .server_control("CAN-SKIP-UNTIL")
        .unwrap_or_else(|| fail("no CAN-SKIP-UNTIL".into()))
        .parse()
        .unwrap();
    if csu + 1e-9 < 6.0 * td as f64 {
        fail(format!("CAN-SKIP-UNTIL {csu} < 6 x TARGETDURATION {td}"));
    }
    if let Some(hb) = p.server_control("HOLD-BACK") {
        let hb: f64 = hb.parse().unwrap();
        if hb + 1e-9 < 3.0 * td as f64 {
            fail(format!("HOLD-BACK {hb} < 3 x TARGETDURATION"));
        }
    }
    // Program date-time: on every segment, consistent with the durations inside a
    // discontinuity-free run.
    for s in p.segments.iter().chain(p.open.iter()) {
        if s.pdt.is_none() {
            fail(format!("msn {} has no EXT-X-PROGRAM-DATE-TIME", s.msn));
        }
    }
    let all: Vec<&Segment> = p.segments.iter().chain(p.open.iter()).collect();
    for w in all.windows(2) {
        let (a, b) = (w[0], w[1]);
        let gap = b.pdt.unwrap() - a.pdt.unwrap();
        if b.discontinuity {
            if gap < a.duration - 0.05 {
                fail(format!(
                    "PDT goes backwards across the discontinuity before msn {}",
                    b.msn
                ));
            }
        } else if (gap - a.duration).abs() > 0.05 {
            fail(format!(
                "PDT of msn {} is {gap:.3}s after msn {}, whose EXTINF is {}",
                b.msn, a.msn, a.duration
            ));
        }
    }
    // Preload hint: the next part, while live; none once ended.
    if p.endlist {
        if !p.preload_hints.is_empty() {
            fail("EXT-X-PRELOAD-HINT after EXT-X-ENDLIST".into());
        }
        if p.open.is_some() {
            fail("parts of an unfinished segment in an ended playlist".into());
        }
    } else {
        let hint = p
            .preload_hint()
            .unwrap_or_else(|| fail("live playlist without EXT-X-PRELOAD-HINT:TYPE=PART".into()));
        if uris.contains(&hint) {
            fail(format!(
                "preload hint {hint} names a part that is already listed"
            ));
        }
    }
    // A rendition never reports on itself.
    for r in &p.rendition_reports {
        if r.get("URI").is_none() || r.get("LAST-MSN").is_none() {
            fail("EXT-X-RENDITION-REPORT needs URI and LAST-MSN".into());
        }
    }
}
