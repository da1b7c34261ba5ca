//! Just enough of an HLS media playlist for a viewer that follows the live edge: the
//! segments and parts with their media sequence numbers, the init URI, the target duration.
//! Understands delta updates (`EXT-X-SKIP`). Sans-IO: text in, model out. URIs are kept as
//! spans of the text, not copied: thousands of viewers parse a playlist every 200 ms.

/// Byte range of a URI in [`Playlist::text`].
pub type Span = (u32, u32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub msn: u64,
    pub index: u64,
    pub uri: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub msn: u64,
    pub uri: Span,
}

#[derive(Debug, Default, Clone)]
pub struct Playlist {
    pub text: String,
    pub target_duration: f64,
    pub init: Option<String>,
    /// Complete segments, oldest first.
    pub segments: Vec<Segment>,
    /// Every listed part, oldest first (complete segments' and the open segment's).
    pub parts: Vec<Part>,
    /// msn of the segment after the last complete one (the open one, if parts are listed).
    pub next_msn: u64,
    pub can_block: bool,
    pub can_skip: bool,
    pub ended: bool,
}

fn attr<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = line.split_once(':')?.1;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, t)) => (v, t),
                None => (after, ""),
            }
        };
        if k.trim() == key {
            return Some(v);
        }
        rest = tail;
    }
    None
}

fn span(text: &str, sub: &str) -> Span {
    let start = sub.as_ptr() as usize - text.as_ptr() as usize;
    (start as u32, (start + sub.len()) as u32)
}

impl Playlist {
    pub fn uri(&self, s: Span) -> &str {
        self.text.get(s.0 as usize..s.1 as usize).unwrap_or("")
    }

    pub fn parse(text: String) -> Option<Playlist> {
        if text.len() > u32::MAX as usize {
            return None;
        }
        let mut p = Playlist::default();
        let mut lines = text.lines().map(str::trim);
        if lines.next()? != "#EXTM3U" {
            return None;
        }
        let (mut msn, mut index, mut in_segment) = (0u64, 0u64, false);
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if let Some(tag) = line.strip_prefix('#') {
                if let Some(v) = tag.strip_prefix("EXT-X-MEDIA-SEQUENCE:") {
                    msn = v.parse().ok()?;
                } else if let Some(v) = tag.strip_prefix("EXT-X-TARGETDURATION:") {
                    p.target_duration = v.parse().ok()?;
                } else if tag.starts_with("EXT-X-SKIP:") {
                    msn += attr(line, "SKIPPED-SEGMENTS")?.parse::<u64>().ok()?;
                } else if tag.starts_with("EXT-X-MAP:") {
                    p.init = attr(line, "URI").map(str::to_string);
                } else if tag.starts_with("EXT-X-PART:") {
                    p.parts.push(Part {
                        msn,
                        index,
                        uri: span(&text, attr(line, "URI")?),
                    });
                    index += 1;
                } else if tag.starts_with("EXTINF:") {
                    in_segment = true;
                } else if tag.starts_with("EXT-X-SERVER-CONTROL:") {
                    p.can_block = attr(line, "CAN-BLOCK-RELOAD") == Some("YES");
                    p.can_skip = attr(line, "CAN-SKIP-UNTIL").is_some();
                } else if tag == "EXT-X-ENDLIST" {
                    p.ended = true;
                }
            } else if in_segment {
                p.segments.push(Segment {
                    msn,
                    uri: span(&text, line),
                });
                msn += 1;
                index = 0;
                in_segment = false;
            }
        }
        p.next_msn = msn;
        p.text = text;
        Some(p)
    }

    /// The (msn, part) a blocking reload asks for next: the part after the newest listed.
    pub fn next_part(&self) -> (u64, u64) {
        match self.parts.last() {
            Some(last) if last.msn == self.next_msn => (last.msn, last.index + 1),
            _ => (self.next_msn, 0),
        }
    }

    /// (msn, index) of the newest listed part.
    pub fn last_part(&self) -> Option<(u64, u64)> {
        self.parts.last().map(|p| (p.msn, p.index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.603,CAN-SKIP-UNTIL=12.0\n\
#EXT-X-PART-INF:PART-TARGET=0.201\n#EXT-X-MEDIA-SEQUENCE:7\n\
#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n#EXT-X-MAP:URI=\"init-a-1.mp4\"\n\
#EXT-X-PART:DURATION=0.2,URI=\"part-a-90.m4s\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.2,URI=\"part-a-91.m4s\"\n#EXTINF:0.4,\nseg-a-9.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"part-a-92.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-a-93.m4s\"\n";

    #[test]
    fn parses_ll_hls_with_skip() {
        let p = Playlist::parse(LL.to_string()).unwrap();
        assert_eq!(p.target_duration, 2.0);
        assert!(p.can_block && p.can_skip && !p.ended);
        assert_eq!(p.init.as_deref(), Some("init-a-1.mp4"));
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].msn, 9);
        assert_eq!(p.uri(p.segments[0].uri), "seg-a-9.m4s");
        assert_eq!(p.parts.len(), 3);
        assert_eq!(p.uri(p.parts[2].uri), "part-a-92.m4s");
        assert_eq!((p.parts[1].msn, p.parts[1].index), (9, 1));
        assert_eq!((p.parts[2].msn, p.parts[2].index), (10, 0));
        assert_eq!(p.next_part(), (10, 1));
        assert_eq!(p.last_part(), Some((10, 0)));
    }

    #[test]
    fn next_part_after_a_complete_segment_is_part_zero_of_the_next() {
        let text = LL.replace(
            "#EXT-X-PART:DURATION=0.2,URI=\"part-a-92.m4s\",INDEPENDENT=YES\n",
            "",
        );
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.next_part(), (10, 0));
    }

    #[test]
    fn plain_hls_and_garbage() {
        let p = Playlist::parse(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.0,\n3.ts\n#EXTINF:2.0,\n4.ts\n"
                .to_string(),
        )
        .unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].msn, 4);
        assert!(!p.can_block && p.parts.is_empty());
        assert_eq!(p.uri(p.segments[1].uri), "4.ts");
        assert!(Playlist::parse("<html>".into()).is_none());
        assert!(Playlist::parse("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n".into()).is_none());
    }
}
