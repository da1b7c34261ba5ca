//! Just enough ISO-BMFF reading to check fMP4 init segments and fragments independently of
//! the server's writer: tracks, `trex` defaults, `moof`/`traf`/`trun` samples with their flags
//! and data, `emsg` event messages, and the H.264 NAL unit types inside a sample. The tests'
//! only box reader: every test that looks inside media uses this one.

/// One box: its type and the byte range of its payload within the buffer it came from.
#[derive(Debug, Clone, Copy)]
pub struct BoxRef {
    pub kind: [u8; 4],
    /// Offset of the box header.
    pub start: usize,
    /// Offset of the payload (after size/type/largesize).
    pub body: usize,
    pub end: usize,
}

impl BoxRef {
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }
}

/// The boxes laid end to end in `data[from..to]`.
pub fn boxes(data: &[u8], from: usize, to: usize) -> Vec<BoxRef> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        assert!(at + 8 <= to, "truncated box header at {at}");
        let size32 = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().unwrap();
        let (size, body) = match size32 {
            1 => (
                u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap()) as usize,
                at + 16,
            ),
            0 => (to - at, at + 8),
            n => (n, at + 8),
        };
        assert!(
            size >= body - at && at + size <= to,
            "box {} at {at} has bad size {size}",
            String::from_utf8_lossy(&kind)
        );
        out.push(BoxRef {
            kind,
            start: at,
            body,
            end: at + size,
        });
        at += size;
    }
    out
}

fn find<'a>(list: &'a [BoxRef], kind: &[u8; 4]) -> Option<&'a BoxRef> {
    list.iter().find(|b| &b.kind == kind)
}

fn children(data: &[u8], b: &BoxRef) -> Vec<BoxRef> {
    boxes(data, b.body, b.end)
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(d[at..at + 2].try_into().unwrap())
}
fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}
fn u64_at(d: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(d[at..at + 8].try_into().unwrap())
}

/// A track of an init segment.
#[derive(Debug, Clone, Default)]
pub struct Track {
    pub id: u32,
    pub handler: String,
    pub timescale: u32,
    pub default_duration: u32,
    pub default_size: u32,
    pub default_flags: u32,
    /// H.264 only: NAL length field size, and `avc1.PPCCLL` from the avcC.
    pub nal_length_size: usize,
    pub avc_codec: Option<String>,
    pub width: u16,
    pub height: u16,
}

#[derive(Debug, Clone, Default)]
pub struct Init {
    pub tracks: Vec<Track>,
    pub major_brand: String,
}

impl Init {
    pub fn video(&self) -> &Track {
        self.tracks
            .iter()
            .find(|t| t.handler == "vide")
            .expect("init has a video track")
    }
    pub fn audio(&self) -> &Track {
        self.tracks
            .iter()
            .find(|t| t.handler == "soun")
            .expect("init has an audio track")
    }
    pub fn track(&self, id: u32) -> &Track {
        self.tracks
            .iter()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("no track {id} in init"))
    }
}

pub fn parse_init(d: &[u8]) -> Init {
    let top = boxes(d, 0, d.len());
    let ftyp = find(&top, b"ftyp").expect("init has ftyp");
    let moov = find(&top, b"moov").expect("init has moov");
    assert!(find(&top, b"moof").is_none(), "init must not carry media");
    let mut init = Init {
        major_brand: String::from_utf8_lossy(&d[ftyp.body..ftyp.body + 4]).into(),
        ..Default::default()
    };
    let moov_kids = children(d, moov);
    for trak in moov_kids.iter().filter(|b| &b.kind == b"trak") {
        let tk = children(d, trak);
        let tkhd = find(&tk, b"tkhd").expect("tkhd");
        let v = d[tkhd.body];
        let id = if v == 1 {
            u32_at(d, tkhd.body + 4 + 16)
        } else {
            u32_at(d, tkhd.body + 4 + 8)
        };
        let mdia = children(d, find(&tk, b"mdia").expect("mdia"));
        let mdhd = find(&mdia, b"mdhd").expect("mdhd");
        let timescale = if d[mdhd.body] == 1 {
            u32_at(d, mdhd.body + 4 + 16)
        } else {
            u32_at(d, mdhd.body + 4 + 8)
        };
        let hdlr = find(&mdia, b"hdlr").expect("hdlr");
        let handler = String::from_utf8_lossy(&d[hdlr.body + 8..hdlr.body + 12]).into_owned();
        let mut t = Track {
            id,
            handler,
            timescale,
            ..Default::default()
        };
        let minf = children(d, find(&mdia, b"minf").expect("minf"));
        let stbl = children(d, find(&minf, b"stbl").expect("stbl"));
        let stsd = find(&stbl, b"stsd").expect("stsd");
        // stsd: full box header + entry_count, then sample entries.
        for entry in boxes(d, stsd.body + 8, stsd.end) {
            if &entry.kind == b"avc1" || &entry.kind == b"avc3" {
                // SampleEntry (8) + VisualSampleEntry fields (70) before child boxes.
                t.width = u16_at(d, entry.body + 24);
                t.height = u16_at(d, entry.body + 26);
                let kids = boxes(d, entry.body + 78, entry.end);
                let avcc = find(&kids, b"avcC").expect("avcC");
                let c = &d[avcc.body..avcc.end];
                t.nal_length_size = usize::from(c[4] & 3) + 1;
                t.avc_codec = Some(format!("avc1.{:02X}{:02X}{:02X}", c[1], c[2], c[3]));
            }
        }
        init.tracks.push(t);
    }
    let mvex = children(
        d,
        find(&moov_kids, b"mvex").expect("fragmented init has mvex"),
    );
    for trex in mvex.iter().filter(|b| &b.kind == b"trex") {
        let id = u32_at(d, trex.body + 4);
        let t = init
            .tracks
            .iter_mut()
            .find(|t| t.id == id)
            .expect("trex for a known track");
        t.default_duration = u32_at(d, trex.body + 12);
        t.default_size = u32_at(d, trex.body + 16);
        t.default_flags = u32_at(d, trex.body + 20);
    }
    init
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    pub cts: i64,
    /// Offset of the sample data in the buffer.
    pub offset: usize,
}

impl Sample {
    /// `sample_is_non_sync_sample` clear.
    pub fn is_sync(&self) -> bool {
        self.flags & 0x0001_0000 == 0
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    pub track_id: u32,
    pub base_decode_time: u64,
    pub samples: Vec<Sample>,
}

impl Run {
    pub fn duration_ticks(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }
}

#[derive(Debug, Clone)]
pub struct Fragment {
    pub sequence: u32,
    pub runs: Vec<Run>,
}

/// Every `moof` in `d` (a part holds one, a segment several), with samples resolved against
/// the `trex` defaults of `init`. Checks that sample data lies inside the following `mdat`.
pub fn parse_fragments(d: &[u8], init: &Init) -> Vec<Fragment> {
    let top = boxes(d, 0, d.len());
    let mut out = Vec::new();
    for (i, moof) in top.iter().enumerate().filter(|(_, b)| &b.kind == b"moof") {
        let mdat = top
            .get(i + 1)
            .filter(|b| &b.kind == b"mdat")
            .expect("moof is followed by mdat");
        let kids = children(d, moof);
        let mfhd = find(&kids, b"mfhd").expect("mfhd");
        let mut frag = Fragment {
            sequence: u32_at(d, mfhd.body + 4),
            runs: Vec::new(),
        };
        for traf in kids.iter().filter(|b| &b.kind == b"traf") {
            let tk = children(d, traf);
            let tfhd = find(&tk, b"tfhd").expect("tfhd");
            let tf_flags = u32_at(d, tfhd.body) & 0x00ff_ffff;
            let track_id = u32_at(d, tfhd.body + 4);
            let track = init.track(track_id);
            let mut at = tfhd.body + 8;
            let mut base = moof.start;
            if tf_flags & 0x01 != 0 {
                base = u64_at(d, at) as usize;
                at += 8;
            }
            if tf_flags & 0x02 != 0 {
                at += 4;
            }
            let mut def_dur = track.default_duration;
            let mut def_size = track.default_size;
            let mut def_flags = track.default_flags;
            if tf_flags & 0x08 != 0 {
                def_dur = u32_at(d, at);
                at += 4;
            }
            if tf_flags & 0x10 != 0 {
                def_size = u32_at(d, at);
                at += 4;
            }
            if tf_flags & 0x20 != 0 {
                def_flags = u32_at(d, at);
            }
            let tfdt = find(&tk, b"tfdt").expect("CMAF fragments carry tfdt");
            let bdt = if d[tfdt.body] == 1 {
                u64_at(d, tfdt.body + 4)
            } else {
                u64::from(u32_at(d, tfdt.body + 4))
            };
            for trun in tk.iter().filter(|b| &b.kind == b"trun") {
                let version = d[trun.body];
                let flags = u32_at(d, trun.body) & 0x00ff_ffff;
                let count = u32_at(d, trun.body + 4) as usize;
                let mut at = trun.body + 8;
                let mut data = base;
                if flags & 0x01 != 0 {
                    data = (base as i64 + i64::from(u32_at(d, at) as i32)) as usize;
                    at += 4;
                }
                let mut first_flags = None;
                if flags & 0x04 != 0 {
                    first_flags = Some(u32_at(d, at));
                    at += 4;
                }
                let mut run = Run {
                    track_id,
                    base_decode_time: bdt,
                    samples: Vec::with_capacity(count),
                };
                for n in 0..count {
                    let mut s = Sample {
                        duration: def_dur,
                        size: def_size,
                        flags: def_flags,
                        cts: 0,
                        offset: data,
                    };
                    if n == 0 {
                        if let Some(f) = first_flags {
                            s.flags = f;
                        }
                    }
                    if flags & 0x100 != 0 {
                        s.duration = u32_at(d, at);
                        at += 4;
                    }
                    if flags & 0x200 != 0 {
                        s.size = u32_at(d, at);
                        at += 4;
                    }
                    if flags & 0x400 != 0 {
                        s.flags = u32_at(d, at);
                        at += 4;
                    }
                    if flags & 0x800 != 0 {
                        let raw = u32_at(d, at);
                        s.cts = if version == 0 {
                            i64::from(raw)
                        } else {
                            i64::from(raw as i32)
                        };
                        at += 4;
                    }
                    assert!(
                        s.offset >= mdat.body && s.offset + s.size as usize <= mdat.end,
                        "sample data of track {track_id} lies outside the mdat"
                    );
                    data += s.size as usize;
                    run.samples.push(s);
                }
                assert!(at <= trun.end, "trun overruns its box");
                frag.runs.push(run);
            }
        }
        out.push(frag);
    }
    out
}

/// An `emsg` event message (ISO/IEC 23009-1 5.10.3.3).
#[derive(Debug, Clone)]
pub struct Emsg {
    pub version: u8,
    pub timescale: u32,
    /// Version 1: presentation time on the track's timeline, in `timescale` units.
    pub presentation_time: Option<u64>,
    /// Version 0: presentation time relative to the fragment's earliest time.
    pub presentation_time_delta: Option<u32>,
    pub event_duration: u32,
    pub id: u32,
    pub scheme_id_uri: String,
    pub value: String,
    pub message_data: Vec<u8>,
}

/// A NUL-terminated string at `d[*at..end]`; advances `at` past the NUL.
fn cstr(d: &[u8], at: &mut usize, end: usize) -> String {
    let len = d[*at..end]
        .iter()
        .position(|&c| c == 0)
        .expect("NUL-terminated string in emsg");
    let s = String::from_utf8_lossy(&d[*at..*at + len]).into_owned();
    *at += len + 1;
    s
}

/// Every top-level `emsg` box of `d` (a part or segment), in order.
pub fn emsgs(d: &[u8]) -> Vec<Emsg> {
    let mut out = Vec::new();
    for b in boxes(d, 0, d.len()).iter().filter(|b| &b.kind == b"emsg") {
        let version = d[b.body];
        let mut at = b.body + 4;
        let e = if version == 1 {
            let timescale = u32_at(d, at);
            let pt = u64_at(d, at + 4);
            let event_duration = u32_at(d, at + 12);
            let id = u32_at(d, at + 16);
            at += 20;
            let scheme_id_uri = cstr(d, &mut at, b.end);
            let value = cstr(d, &mut at, b.end);
            Emsg {
                version,
                timescale,
                presentation_time: Some(pt),
                presentation_time_delta: None,
                event_duration,
                id,
                scheme_id_uri,
                value,
                message_data: d[at..b.end].to_vec(),
            }
        } else {
            assert_eq!(version, 0, "emsg version {version}");
            let scheme_id_uri = cstr(d, &mut at, b.end);
            let value = cstr(d, &mut at, b.end);
            let timescale = u32_at(d, at);
            let delta = u32_at(d, at + 4);
            let event_duration = u32_at(d, at + 8);
            let id = u32_at(d, at + 12);
            at += 16;
            Emsg {
                version,
                timescale,
                presentation_time: None,
                presentation_time_delta: Some(delta),
                event_duration,
                id,
                scheme_id_uri,
                value,
                message_data: d[at..b.end].to_vec(),
            }
        };
        out.push(e);
    }
    out
}

/// NAL unit types of a length-prefixed (AVCC) H.264 sample.
pub fn nal_types(sample: &[u8], length_size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + length_size <= sample.len() {
        let mut len = 0usize;
        for b in &sample[at..at + length_size] {
            len = (len << 8) | usize::from(*b);
        }
        at += length_size;
        assert!(
            len > 0 && at + len <= sample.len(),
            "bad NAL length {len} in a sample of {} bytes",
            sample.len()
        );
        out.push(sample[at] & 0x1f);
        at += len;
    }
    assert_eq!(at, sample.len(), "trailing bytes after the last NAL unit");
    out
}

/// Whether a video sample is an IDR picture (NAL type 5).
pub fn is_idr(sample: &[u8], length_size: usize) -> bool {
    nal_types(sample, length_size).contains(&5)
}
