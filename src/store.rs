//! In-memory origin store: the live window of every rendition, its playlist model,
//! and the media objects the playlists point at. Waiters (blocking reload, held
//! preload-hint requests) watch a per-stream version counter.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use crate::media::{AudioConfig, VideoConfig};
use crate::package::playlist::{
    self, MediaPlaylist, OpenSegment, Part, RenditionReport, Segment, Skip, Variant,
};
use crate::package::segmenter::Output;
use crate::util::base36;
use crate::util::time::unix_ms;

/// Complete segments that keep their parts addressable (players may still be
/// fetching parts of a segment that just completed).
const PARTS_KEPT_SEGMENTS: usize = 4;

/// An immutable media object (init, part or segment). A segment is the list of
/// its parts' buffers, shared with the parts rather than copied.
#[derive(Debug, Clone)]
pub struct MediaObject {
    pub chunks: Arc<[Bytes]>,
    pub len: usize,
    pub etag: Arc<str>,
    pub content_type: &'static str,
    /// When the object was stored: its `Last-Modified` (whole seconds on the wire).
    pub created: SystemTime,
}

/// Codec and size facts for the multivariant playlist and the API.
#[derive(Debug, Clone, Default)]
pub struct RenditionInfo {
    pub video: Option<VideoConfig>,
    pub audio: Option<AudioConfig>,
    /// Bits per second to advertise until segments have been measured (a rung's configured
    /// bitrate); None falls back to a generic guess.
    pub nominal_bandwidth: Option<u64>,
}

impl RenditionInfo {
    pub fn codecs(&self) -> String {
        let mut c: Vec<String> = Vec::new();
        if let Some(v) = &self.video {
            c.push(v.codec_string());
        }
        if let Some(a) = &self.audio {
            c.push(a.codec_string());
        }
        c.join(",")
    }
}

struct RenditionState {
    playlist: MediaPlaylist,
    objects: HashMap<String, MediaObject>,
    /// Parts of each segment in the window, to evict with it.
    part_uris: VecDeque<(u64, Vec<String>)>,
    init_uris: HashMap<u32, String>,
    info: RenditionInfo,
    /// (bytes, seconds) of complete segments in the window, for BANDWIDTH.
    sizes: VecDeque<(usize, f64)>,
    open_bytes: Vec<Bytes>,
    cache: [Option<(u64, Bytes)>; 3],
}

/// One rendition (variant) of a stream.
pub struct Rendition {
    pub name: String,
    state: Mutex<RenditionState>,
}

/// A stream as the origin sees it: its renditions and a change counter.
pub struct StreamEntry {
    pub name: String,
    /// Distinguishes this playlist's URIs from any earlier run of the same name, so
    /// long-cached objects at a CDN can never be served for a new stream.
    pub epoch: String,
    pub started: Instant,
    pub started_unix_ms: u64,
    pub renditions: Vec<Arc<Rendition>>,
    version: watch::Sender<u64>,
    window: usize,
    target_min: u64,
    part_target: f64,
    ended_at: Mutex<Option<Instant>>,
}

/// Live and recently ended streams by name.
#[derive(Default)]
pub struct Store {
    streams: RwLock<HashMap<String, Arc<StreamEntry>>>,
}

/// Ended playlists stay readable this long after their stream ends.
pub const ENDED_KEEP: Duration = Duration::from_secs(300);

impl Store {
    pub fn get(&self, name: &str) -> Option<Arc<StreamEntry>> {
        self.streams.read().ok()?.get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<StreamEntry>> {
        let mut v: Vec<_> = match self.streams.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Starts a new playlist for `name`, replacing any ended one.
    pub fn create(
        &self,
        name: &str,
        renditions: &[&str],
        segment_target: Duration,
        part_target_secs: f64,
        window: usize,
    ) -> Arc<StreamEntry> {
        let now = SystemTime::now();
        let started_unix_ms = unix_ms(now);
        let target_min = segment_target.as_secs_f64().ceil().max(1.0) as u64;
        let entry = Arc::new(StreamEntry {
            name: name.to_string(),
            epoch: base36(started_unix_ms),
            started: Instant::now(),
            started_unix_ms,
            renditions: renditions
                .iter()
                .map(|r| Arc::new(Rendition::new(r, target_min, part_target_secs)))
                .collect(),
            version: watch::channel(0).0,
            window: window.max(3),
            target_min,
            part_target: part_target_secs,
            ended_at: Mutex::new(None),
        });
        if let Ok(mut m) = self.streams.write() {
            m.insert(name.to_string(), entry.clone());
        }
        entry
    }

    /// Forgets `entry` if it is still the one registered under its name.
    pub fn remove(&self, entry: &Arc<StreamEntry>) {
        if let Ok(mut m) = self.streams.write() {
            if m.get(&entry.name).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                m.remove(&entry.name);
            }
        }
    }

    /// Drops ended streams older than `keep`.
    pub fn sweep(&self, keep: Duration) {
        if let Ok(mut m) = self.streams.write() {
            m.retain(|_, e| match e.ended_at.lock().ok().and_then(|g| *g) {
                Some(t) => t.elapsed() < keep,
                None => true,
            });
        }
    }
}

impl Rendition {
    fn new(name: &str, target_min: u64, part_target: f64) -> Self {
        Rendition {
            name: name.to_string(),
            state: Mutex::new(RenditionState {
                playlist: MediaPlaylist {
                    target_duration: target_min,
                    part_target,
                    discontinuity_sequence: 0,
                    segments: Vec::new(),
                    open: None,
                    preload_hint: None,
                    ended: false,
                    rendition_reports: Vec::new(),
                },
                objects: HashMap::new(),
                part_uris: VecDeque::new(),
                init_uris: HashMap::new(),
                info: RenditionInfo::default(),
                sizes: VecDeque::new(),
                open_bytes: Vec::new(),
                cache: [None, None, None],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RenditionState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn info(&self) -> RenditionInfo {
        self.lock().info.clone()
    }

    /// Whether the publisher's codecs are known (the rendition can be listed).
    pub fn has_media(&self) -> bool {
        let st = self.lock();
        st.info.video.is_some() || st.info.audio.is_some()
    }

    /// (msn, last part index) of the newest published part.
    pub fn last_position(&self) -> Option<(u64, Option<u64>)> {
        playlist::last_msn_part(&self.lock().playlist)
    }

    /// The newest segment's media sequence number (open or complete) and its discontinuity
    /// number (the playlist's discontinuity sequence plus the tags up to it): where another
    /// node continues this playlist.
    pub fn newest_segment(&self) -> Option<(u64, u64)> {
        let st = self.lock();
        let p = &st.playlist;
        let mut number = p.discontinuity_sequence;
        let mut newest = None;
        for seg in &p.segments {
            number += u64::from(seg.discontinuity);
            newest = Some((seg.msn, number));
        }
        if let Some(open) = &p.open {
            number += u64::from(open.discontinuity);
            newest = Some((open.msn, number));
        }
        newest
    }

    /// Starts the discontinuity count at `sequence` (a playlist continued from another node).
    pub fn continue_discontinuities(&self, sequence: u64) {
        self.lock().playlist.discontinuity_sequence = sequence;
    }

    /// Peak and average bits per second over the complete segments in the window.
    pub fn bandwidth(&self) -> (u64, u64) {
        let st = self.lock();
        let mut peak = 0f64;
        let (mut bytes, mut secs) = (0usize, 0f64);
        for &(b, d) in &st.sizes {
            if d > 0.0 {
                peak = peak.max(b as f64 * 8.0 / d);
            }
            bytes += b;
            secs += d;
        }
        let avg = if secs > 0.0 {
            bytes as f64 * 8.0 / secs
        } else {
            0.0
        };
        (peak as u64, avg as u64)
    }

    pub fn object(&self, uri: &str) -> Option<MediaObject> {
        self.lock().objects.get(uri).cloned()
    }

    /// True when `uri` is the part the playlist currently hints at.
    pub fn is_hinted(&self, uri: &str) -> bool {
        let st = self.lock();
        st.playlist.preload_hint.as_deref() == Some(uri)
    }

    pub fn ended(&self) -> bool {
        self.lock().playlist.ended
    }

    /// Whether the playlist holds part `part` of segment `msn` (or the whole segment).
    pub fn has(&self, msn: u64, part: Option<u64>) -> bool {
        let st = self.lock();
        if st.playlist.segments.last().is_some_and(|s| s.msn >= msn) {
            return true;
        }
        match (&st.playlist.open, part) {
            (Some(open), Some(p)) => {
                open.msn > msn || (open.msn == msn && (open.parts.len() as u64) > p)
            }
            (Some(open), None) => open.msn > msn,
            _ => false,
        }
    }

    fn init_uri(st: &RenditionState, version: u32) -> String {
        st.init_uris.get(&version).cloned().unwrap_or_default()
    }
}

impl StreamEntry {
    pub fn rendition(&self, name: &str) -> Option<&Arc<Rendition>> {
        self.renditions.iter().find(|r| r.name == name)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn is_ended(&self) -> bool {
        self.ended_at.lock().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Target duration in seconds (the playlist's `EXT-X-TARGETDURATION`).
    pub fn target_duration(&self) -> u64 {
        self.renditions
            .iter()
            .map(|r| r.lock().playlist.target_duration)
            .max()
            .unwrap_or(self.target_min)
    }

    pub fn part_target(&self) -> f64 {
        self.part_target
    }

    /// Program date-time (UNIX ms) at the end of the newest published part of the first
    /// rendition: the live edge a player can reach. None before any media. Renditions share
    /// PDT, so the first one speaks for all.
    pub fn live_edge_pdt_ms(&self) -> Option<u64> {
        let st = self.renditions.first()?.lock();
        let pl = &st.playlist;
        let secs_ms = |s: f64| (s * 1000.0).round() as u64;
        if let Some(open) = pl.open.as_ref().filter(|o| !o.parts.is_empty()) {
            let d: f64 = open.parts.iter().map(|p| p.duration).sum();
            return Some(open.pdt_ms + secs_ms(d));
        }
        pl.segments
            .last()
            .map(|seg| seg.pdt_ms + secs_ms(seg.duration))
    }

    /// Records the codecs of a rendition (from the publisher's sequence headers).
    pub fn set_info(&self, rendition: usize, info: RenditionInfo) {
        if let Some(r) = self.renditions.get(rendition) {
            r.lock().info = info;
        }
    }

    /// Applies segmenter output to rendition `idx`.
    pub fn apply(&self, idx: usize, outputs: Vec<Output>, next_part_number: u64) {
        let Some(r) = self.renditions.get(idx) else {
            return;
        };
        if outputs.is_empty() {
            return;
        }
        {
            let mut st = r.lock();
            for o in outputs {
                self.apply_one(&mut st, o);
            }
            st.playlist.preload_hint = (!st.playlist.ended)
                .then(|| format!("part-{}-{}.m4s", self.epoch, next_part_number));
        }
        self.bump();
    }

    fn apply_one(&self, st: &mut RenditionState, o: Output) {
        match o {
            Output::Init { version, bytes } => {
                let uri = format!("init-{}-{}.mp4", self.epoch, version);
                st.objects
                    .insert(uri.clone(), self.object(&uri, vec![bytes], "video/mp4"));
                st.init_uris.insert(version, uri);
            }
            Output::SegmentStart {
                msn,
                pdt_ms,
                discontinuity,
                init_version,
            } => {
                // A rung that restarted resumes at its leader's current number: the segments
                // in between do not exist, so the window starts afresh rather than lie
                // about media sequence numbers.
                let expected = st.playlist.segments.last().map(|s| s.msn + 1);
                if expected.is_some_and(|e| e != msn) {
                    for seg in st.playlist.segments.drain(..) {
                        st.objects.remove(&seg.uri);
                    }
                    for (_, uris) in st.part_uris.drain(..) {
                        for u in uris {
                            st.objects.remove(&u);
                        }
                    }
                    st.sizes.clear();
                }
                st.playlist.open = Some(OpenSegment {
                    msn,
                    pdt_ms,
                    discontinuity,
                    init_uri: Rendition::init_uri(st, init_version),
                    parts: Vec::new(),
                });
                st.part_uris.push_back((msn, Vec::new()));
                st.open_bytes.clear();
            }
            Output::Part(p) => {
                let uri = format!("part-{}-{}.m4s", self.epoch, p.number);
                st.objects.insert(
                    uri.clone(),
                    self.object(&uri, vec![p.bytes.clone()], "video/iso.segment"),
                );
                st.open_bytes.push(p.bytes);
                if let Some((_, uris)) = st.part_uris.back_mut() {
                    uris.push(uri.clone());
                }
                if let Some(open) = st.playlist.open.as_mut() {
                    open.parts.push(Part {
                        duration: p.duration,
                        independent: p.independent,
                        uri,
                    });
                }
            }
            Output::SegmentEnd { msn, duration } => {
                let Some(open) = st.playlist.open.take() else {
                    return;
                };
                let uri = format!("seg-{}-{}.m4s", self.epoch, msn);
                let chunks = std::mem::take(&mut st.open_bytes);
                let object = self.object(&uri, chunks, "video/iso.segment");
                st.sizes.push_back((object.len, duration));
                st.objects.insert(uri.clone(), object);
                let rounded = duration.round() as u64;
                if rounded > st.playlist.target_duration {
                    st.playlist.target_duration = rounded;
                }
                st.playlist.segments.push(Segment {
                    msn: open.msn,
                    duration,
                    uri,
                    parts: open.parts,
                    pdt_ms: open.pdt_ms,
                    discontinuity: open.discontinuity,
                    init_uri: open.init_uri,
                });
                self.evict(st);
            }
        }
    }

    fn evict(&self, st: &mut RenditionState) {
        while st.playlist.segments.len() > self.window {
            let old = st.playlist.segments.remove(0);
            // EXT-X-DISCONTINUITY-SEQUENCE counts the tags that slid out of the window.
            if old.discontinuity {
                st.playlist.discontinuity_sequence += 1;
            }
            st.objects.remove(&old.uri);
            st.sizes.pop_front();
        }
        // Parts stay fetchable only for the newest few segments; the writer lists no older ones.
        let keep = PARTS_KEPT_SEGMENTS + usize::from(st.playlist.open.is_some());
        while st.part_uris.len() > keep {
            if let Some((msn, uris)) = st.part_uris.pop_front() {
                for u in uris {
                    st.objects.remove(&u);
                }
                if let Some(seg) = st.playlist.segments.iter_mut().find(|s| s.msn == msn) {
                    seg.parts.clear();
                }
            }
        }
    }

    fn object(&self, uri: &str, chunks: Vec<Bytes>, content_type: &'static str) -> MediaObject {
        MediaObject {
            len: chunks.iter().map(|c| c.len()).sum(),
            chunks: chunks.into(),
            etag: Arc::from(format!("\"{uri}\"")),
            content_type,
            created: SystemTime::now(),
        }
    }

    /// Ends every rendition's playlist (EXT-X-ENDLIST).
    pub fn end(&self) {
        for r in &self.renditions {
            let mut st = r.lock();
            st.playlist.ended = true;
            st.playlist.preload_hint = None;
            // The packager flushed the last segment before this; an open one is empty.
            st.playlist.open = None;
        }
        if let Ok(mut g) = self.ended_at.lock() {
            g.get_or_insert_with(Instant::now);
        }
        self.bump();
    }

    /// Renders rendition `idx`'s media playlist, cached per stream version.
    pub fn media_playlist(&self, idx: usize, skip: Skip) -> Option<Bytes> {
        let version = *self.version.borrow();
        let r = self.renditions.get(idx)?;
        let slot = match skip {
            Skip::No => 0,
            Skip::Yes => 1,
            Skip::V2 => 2,
        };
        if let Some((v, text)) = &r.lock().cache[slot] {
            if *v == version {
                return Some(text.clone());
            }
        }
        let reports: Vec<RenditionReport> = self
            .renditions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != idx)
            .filter_map(|(_, sib)| {
                let (msn, part) = sib.last_position()?;
                Some(RenditionReport {
                    uri: format!("../{}/index.m3u8", sib.name),
                    last_msn: msn,
                    last_part: part,
                })
            })
            .collect();
        let mut st = r.lock();
        st.playlist.rendition_reports = reports;
        let text = Bytes::from(playlist::write_media_playlist(&st.playlist, skip));
        st.cache[slot] = Some((version, text.clone()));
        Some(text)
    }

    /// The multivariant playlist, or None before any rendition has media.
    pub fn multivariant(&self) -> Option<String> {
        let variants: Vec<Variant> = self
            .renditions
            .iter()
            .filter_map(|r| {
                let info = r.info();
                if info.video.is_none() && info.audio.is_none() {
                    return None;
                }
                let (peak, avg) = r.bandwidth();
                // Before the first segment completes there is no measurement; assume a
                // modest rate rather than advertise zero.
                let bandwidth = if peak > 0 {
                    peak
                } else {
                    info.nominal_bandwidth.unwrap_or(3_000_000)
                };
                Some(Variant {
                    uri: format!("{}/index.m3u8", r.name),
                    bandwidth,
                    average_bandwidth: if avg > 0 {
                        Some(avg)
                    } else {
                        info.nominal_bandwidth
                    },
                    codecs: info.codecs(),
                    resolution: info.video.as_ref().map(|v| (v.width, v.height)),
                    frame_rate: info.video.as_ref().and_then(|v| v.fps),
                    name: r.name.clone(),
                })
            })
            .collect();
        (!variants.is_empty()).then(|| playlist::write_multivariant(&variants))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::segmenter::PartOut;

    fn playlist_text(e: &StreamEntry) -> String {
        String::from_utf8_lossy(&e.media_playlist(0, Skip::No).unwrap()).into_owned()
    }

    fn entry(window: usize) -> Arc<StreamEntry> {
        Store::default().create("s", &["source"], Duration::from_secs(2), 0.201, window)
    }

    /// Feeds `segments` complete 2 s segments of ten parts each, plus `open_parts` parts.
    fn feed(
        e: &StreamEntry,
        first_msn: u64,
        segments: u64,
        open_parts: u32,
        discontinuity_at: Option<u64>,
    ) {
        let mut number = first_msn * 10;
        let mut out = vec![Output::Init {
            version: 1,
            bytes: Bytes::from_static(b"init"),
        }];
        for msn in first_msn..first_msn + segments + 1 {
            let parts = if msn == first_msn + segments {
                open_parts
            } else {
                10
            };
            out.push(Output::SegmentStart {
                msn,
                pdt_ms: 1_000_000 + msn * 2000,
                discontinuity: discontinuity_at == Some(msn),
                init_version: 1,
            });
            for index in 0..parts {
                out.push(Output::Part(PartOut {
                    msn,
                    index,
                    number,
                    duration: 0.2,
                    independent: index == 0,
                    bytes: Bytes::from(vec![index as u8; 10]),
                    last_arrival_ms: 0,
                }));
                number += 1;
            }
            if msn < first_msn + segments {
                out.push(Output::SegmentEnd { msn, duration: 2.0 });
            }
        }
        e.apply(0, out, number);
    }

    #[test]
    fn window_keeps_the_newest_segments_and_their_objects() {
        let e = entry(3);
        feed(&e, 0, 5, 2, None);
        let r = &e.renditions[0];
        let text = playlist_text(&e);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        assert!(
            r.object(&format!("seg-{}-1.m4s", e.epoch)).is_none(),
            "evicted"
        );
        let seg4 = r.object(&format!("seg-{}-4.m4s", e.epoch)).unwrap();
        assert_eq!(seg4.len, 100, "a segment is its parts concatenated");
        assert_eq!(seg4.chunks.len(), 10, "sharing the parts' buffers");
        assert_eq!(seg4.etag.as_ref(), format!("\"seg-{}-4.m4s\"", e.epoch));
        assert!(r.object(&format!("init-{}-1.mp4", e.epoch)).is_some());
    }

    #[test]
    fn blocking_conditions_follow_the_playlist() {
        let e = entry(6);
        feed(&e, 0, 2, 3, None);
        let r = &e.renditions[0];
        assert!(r.has(1, None) && r.has(1, Some(9)));
        assert!(r.has(2, Some(2)));
        assert!(!r.has(2, Some(3)));
        assert!(!r.has(2, None), "segment 2 is still open");
        assert_eq!(r.last_position(), Some((2, Some(2))));
        let hint = format!("part-{}-23.m4s", e.epoch);
        assert!(r.is_hinted(&hint));
        assert!(playlist_text(&e).contains(&hint));
    }

    #[test]
    fn discontinuity_sequence_counts_tags_that_left_the_window() {
        let e = entry(3);
        feed(&e, 0, 5, 1, Some(1));
        assert!(playlist_text(&e).contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
    }

    #[test]
    fn live_edge_pdt_is_the_end_of_the_newest_part() {
        let e = entry(6);
        assert_eq!(e.live_edge_pdt_ms(), None, "no media yet");
        // Segments 0 and 1 complete (pdt 1_000_000 + msn*2000), three parts of segment 2.
        feed(&e, 0, 2, 3, None);
        assert_eq!(e.live_edge_pdt_ms(), Some(1_004_000 + 600));
        let e = entry(6);
        feed(&e, 0, 2, 0, None);
        // Segment 2 opened without parts: the edge is the end of segment 1.
        assert_eq!(e.live_edge_pdt_ms(), Some(1_002_000 + 2000));
    }

    #[test]
    fn ended_playlist_has_endlist_and_no_hint() {
        let e = entry(6);
        feed(&e, 0, 2, 0, None);
        e.end();
        let text = playlist_text(&e);
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!(!text.contains("PRELOAD-HINT"));
        assert!(e.renditions[0].ended());
        assert!(e.is_ended());
    }

    #[test]
    fn rendered_playlist_is_cached_until_the_stream_changes() {
        let e = entry(6);
        feed(&e, 0, 1, 1, None);
        let a = e.media_playlist(0, Skip::No).unwrap();
        let b = e.media_playlist(0, Skip::No).unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same buffer, not a re-render");
        e.end();
        let c = e.media_playlist(0, Skip::No).unwrap();
        assert_ne!(a.as_ptr(), c.as_ptr());
    }

    #[test]
    fn a_jump_in_media_sequence_starts_the_window_afresh() {
        // A restarted rung resumes at its source's current number; the missing segments must
        // not be renumbered into existence.
        let e = entry(6);
        feed(&e, 0, 3, 0, None);
        let old = format!("seg-{}-1.m4s", e.epoch);
        assert!(e.renditions[0].object(&old).is_some());
        feed(&e, 7, 2, 1, None);
        let text = playlist_text(&e);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:7\n"), "{text}");
        assert!(
            e.renditions[0].object(&old).is_none(),
            "old segments evicted"
        );
        assert_eq!(e.renditions[0].last_position(), Some((9, Some(0))));
    }

    #[test]
    fn ended_streams_are_swept_after_keep() {
        let store = Store::default();
        let e = store.create("s", &["source"], Duration::from_secs(2), 0.201, 6);
        store.sweep(Duration::ZERO);
        assert!(store.get("s").is_some(), "live streams stay");
        e.end();
        store.sweep(Duration::ZERO);
        assert!(store.get("s").is_none());
    }
}
