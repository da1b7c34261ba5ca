//! Transcoded ladders end to end: ffmpeg publishes the 1280x720 clip over RTMP, GStreamer
//! encodes the rungs, and every rung is checked the way a player sees it: valid LL-HLS,
//! decodable at its advertised size, and cut at the same media times with the same PDT as
//! the source. A rung whose encoder fails at runtime must not hold anything else up.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::hls::{self, MediaPlaylist};
use common::mp4;
use common::*;

/// The failing-rung test's stream: its own name, so that its transcoder's log lines (logged
/// from a thread outside the test's runtime) cannot be another test's.
const BROKEN: (&str, &str) = ("brokenladder", "broken-ladder-key");

async fn media(srv: &TestServer, stream: &str, rendition: &str) -> Option<MediaPlaylist> {
    let r = srv
        .client
        .get(&srv.url(&format!("/live/{stream}/{rendition}/index.m3u8")))
        .await;
    (r.status == 200).then(|| MediaPlaylist::parse(&r.text()))
}

/// Variants of the multivariant playlist by rendition name (the URI's first path segment).
async fn variants(srv: &TestServer, stream: &str) -> BTreeMap<String, hls::Variant> {
    let r = srv.get(&format!("/live/{stream}/index.m3u8")).await;
    if r.status != 200 {
        return BTreeMap::new();
    }
    hls::parse_multivariant(&r.text())
        .0
        .into_iter()
        .map(|v| (v.uri.split('/').next().unwrap_or("").to_string(), v))
        .collect()
}

async fn fetch_segment(
    srv: &TestServer,
    rendition: &str,
    seg: &hls::Segment,
    dir: &TempDir,
) -> std::path::PathBuf {
    let base = format!("/live/{STREAM}/{rendition}/");
    let map = seg.map.clone().expect("segment has a map");
    let init = srv.get(&format!("{base}{map}")).await;
    assert_eq!(init.status, 200, "init of {rendition}");
    let media = srv.get(&format!("{base}{}", seg.uri)).await;
    assert_eq!(media.status, 200, "segment {} of {rendition}", seg.uri);
    write_file(
        dir.path(),
        &format!("{rendition}-{}.mp4", seg.msn),
        &[&init.body, &media.body],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ladder_rungs_decode_and_cut_alike() {
    let srv = TestServer::start(ServerOpts {
        window: 10,
        grace: "5s",
        pipeline: "default",
        ..Default::default()
    })
    .await;
    let mut publisher = Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), 24.0, srv.dir.path());
    srv.wait_live(STREAM, &mut publisher, Duration::from_secs(20))
        .await;

    // Every rung appears in the multivariant playlist with full attributes; the 720p rung is
    // skipped for a 720p source.
    let want = [
        ("source", (1280, 720)),
        ("480p", (854, 480)),
        ("360p", (640, 360)),
    ];
    let vs = poll(
        Duration::from_secs(20),
        "every rung in the multivariant playlist",
        || async {
            let v = variants(&srv, STREAM).await;
            want.iter().all(|(n, _)| v.contains_key(*n)).then_some(v)
        },
    )
    .await;
    assert!(
        !vs.contains_key("720p"),
        "720p rung listed for a 720p source: {vs:?}"
    );
    for (name, (w, h)) in want {
        let a = &vs[name].attrs;
        for key in ["BANDWIDTH", "AVERAGE-BANDWIDTH", "CODECS", "FRAME-RATE"] {
            assert!(a.contains_key(key), "{name} lacks {key}: {a:?}");
        }
        assert_eq!(
            a.get("RESOLUTION").map(String::as_str),
            Some(format!("{w}x{h}").as_str()),
            "{name}"
        );
        assert!(
            a["CODECS"].contains("avc1.") && a["CODECS"].contains("mp4a.40.2"),
            "{name}: {a:?}"
        );
    }
    let bw = |n: &str| vs[n].attrs["BANDWIDTH"].parse::<u64>().unwrap();
    assert!(
        bw("source") > bw("480p") && bw("480p") > bw("360p"),
        "bandwidths {vs:?}"
    );

    // Wait for four complete segments in every rung, then compare them.
    let lists = poll(
        Duration::from_secs(30),
        "four segments in every rung",
        || async {
            let mut out = BTreeMap::new();
            for (n, _) in want {
                let p = media(&srv, STREAM, n).await?;
                if p.segments.len() < 4 {
                    return None;
                }
                out.insert(n, p);
            }
            Some(out)
        },
    )
    .await;
    for (n, p) in &lists {
        hls::check_rules(p);
        let reports: Vec<&str> = p
            .rendition_reports
            .iter()
            .filter_map(|r| r.get("URI").map(String::as_str))
            .collect();
        for (other, _) in want.iter().filter(|(o, _)| o != n) {
            assert!(
                reports.contains(&format!("../{other}/index.m3u8").as_str()),
                "{n} has no rendition report for {other}: {reports:?}"
            );
        }
    }
    let source = &lists["source"];
    let mut compared = 0;
    for seg in &source.segments {
        for rung in ["480p", "360p"] {
            let Some(other) = lists[rung].segment(seg.msn) else {
                continue;
            };
            assert!(
                (other.duration - seg.duration).abs() < 0.0015,
                "msn {}: {rung} lasts {} but the source {}",
                seg.msn,
                other.duration,
                seg.duration
            );
            let (a, b) = (seg.pdt.expect("source PDT"), other.pdt.expect("rung PDT"));
            assert!(
                (a - b).abs() < 0.0005,
                "msn {}: PDT {b} in {rung} but {a} in the source",
                seg.msn
            );
            compared += 1;
        }
    }
    assert!(compared >= 6, "only {compared} segments in common");
    // Parts too: same count and durations (within a tick of rounding) in every rung.
    for seg in source.segments.iter().filter(|s| !s.parts.is_empty()) {
        for rung in ["480p", "360p"] {
            let Some(other) = lists[rung].segment(seg.msn).filter(|o| !o.parts.is_empty()) else {
                continue;
            };
            let a: Vec<f64> = seg.parts.iter().map(|p| p.duration).collect();
            let b: Vec<f64> = other.parts.iter().map(|p| p.duration).collect();
            assert!(
                a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.0015),
                "msn {}: parts {a:?} in the source, {b:?} in {rung}",
                seg.msn
            );
        }
    }

    // Each rung decodes at its advertised size, with the source's audio.
    let dir = TempDir::new("transcode");
    for (n, (w, h)) in want {
        let seg = lists[n].segments.last().unwrap();
        let path = fetch_segment(&srv, n, seg, &dir).await;
        let p = probe(&path);
        assert_eq!(
            (p.width, p.height),
            (w, h),
            "{n} decodes at {}x{}",
            p.width,
            p.height
        );
        assert_eq!(p.video_codec, "h264", "{n}");
        assert_eq!(p.audio_codec, "aac", "{n}");
        // Every picture of the segment decodes.
        let expect = (seg.duration * FPS).round() as i64;
        assert!(
            (p.video_frames as i64 - expect).abs() <= 5,
            "{n}: {} frames in {} s, expected ~{expect}",
            p.video_frames,
            seg.duration
        );
        let errors = decode_errors(&path);
        assert!(errors.trim().is_empty(), "{n} decode errors: {errors}");
    }
}

/// A pipeline whose `bad` rung passes `check` (the element and property exist) but fails as
/// soon as the encoder starts: x264 rejects the option string. The healthy rung also
/// re-encodes its audio (64 kbit/s AAC instead of the source's 128).
fn broken_pipeline() -> String {
    "[source]\npassthrough = true\n\n\
     [[rung]]\nname = \"bad\"\nheight = 480\nbitrate = 1000\n\
     [rung.encoder]\nelement = \"x264enc\"\noption-string = \"no-such-option=1\"\n\n\
     [[rung]]\nname = \"360p\"\nheight = 360\nbitrate = 600\naudio_bitrate = 64\n"
        .to_string()
}

/// Bytes of audio samples in a segment (init + media).
fn audio_bytes(init: &[u8], media: &[u8]) -> u64 {
    let init = mp4::parse_init(init);
    let id = init.audio().id;
    mp4::parse_fragments(media, &init)
        .iter()
        .flat_map(|f| f.runs.iter().filter(|r| r.track_id == id))
        .flat_map(|r| r.samples.iter().map(|s| u64::from(s.size)))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rung_is_dropped_while_the_others_keep_moving() {
    let text = broken_pipeline();
    // It passes validation: the failure only shows at runtime.
    let dir = TempDir::new("broken-pipeline");
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, &text).unwrap();
    let p = ferrocast::config::load_pipeline("broken", &file).expect("parses");
    assert!(ferrocast::transcode::check_elements(&p).is_empty());

    let (name, key) = BROKEN;
    let srv = TestServer::start(ServerOpts {
        window: 10,
        grace: "5s",
        streams: vec![BROKEN],
        pipeline: "broken",
        pipelines: vec![("broken", text)],
        ..Default::default()
    })
    .await;
    let mut publisher = Publisher::start(&srv.rtmp_url(name, Some(key)), 20.0, srv.dir.path());
    srv.wait_live(name, &mut publisher, Duration::from_secs(20))
        .await;
    poll(Duration::from_secs(20), "the 360p rung listed", || async {
        variants(&srv, name)
            .await
            .contains_key("360p")
            .then_some(())
    })
    .await;

    // While the source and the healthy rung advance two segments each, the bad rung is never
    // listed; its failure and restart are logged.
    let edge = |p: &MediaPlaylist| p.edge_msn();
    let source0 = media(&srv, name, "source").await.unwrap();
    let (s0, td) = (edge(&source0), source0.target());
    let r0 = edge(&media(&srv, name, "360p").await.unwrap());
    let (s1, r1) = poll(
        Duration::from_secs_f64(10.0 * td),
        "the source and the healthy rung to advance two segments",
        || async {
            let v = variants(&srv, name).await;
            assert!(!v.contains_key("bad"), "the failing rung is listed: {v:?}");
            let s1 = edge(&media(&srv, name, "source").await?);
            let r1 = edge(&media(&srv, name, "360p").await?);
            (s1 >= s0 + 2 && r1 >= r0 + 2).then_some((s1, r1))
        },
    )
    .await;
    eprintln!("source msn {s0} -> {s1}, 360p msn {r0} -> {r1}; `bad` never listed");
    // The transcoder logs from its own thread, outside the runtime: these lines are matched
    // by this test's stream name.
    let stream_field = format!("stream={name}");
    wait_log_line(
        Duration::from_secs(10),
        "for the bad rung's failure",
        true,
        |l| {
            l.contains("rung pipeline failed")
                && l.contains(&stream_field)
                && l.contains("rung=bad")
        },
    )
    .await;
    wait_log_line(
        Duration::from_secs(10),
        "for the bad rung's restart",
        true,
        |l| l.contains("restarting in") && l.contains(&stream_field) && l.contains("rung=bad"),
    )
    .await;
    // The healthy rung's audio was re-encoded: about half the source's bytes, still AAC.
    let (src_p, rung_p) = (
        media(&srv, name, "source").await.unwrap(),
        media(&srv, name, "360p").await.unwrap(),
    );
    let seg = rung_p.segments.last().expect("a 360p segment");
    let same = src_p
        .segment(seg.msn)
        .expect("the source has the same segment");
    let mut sizes = Vec::new();
    for (r, s) in [("source", same), ("360p", seg)] {
        let base = format!("/live/{name}/{r}/");
        let init = srv.get(&format!("{base}{}", s.map.clone().unwrap())).await;
        let body = srv.get(&format!("{base}{}", s.uri)).await;
        sizes.push(audio_bytes(&init.body, &body.body));
        let path = write_file(dir.path(), &format!("{r}.mp4"), &[&init.body, &body.body]);
        let p = probe(&path);
        assert_eq!(
            (p.audio_codec.as_str(), p.sample_rate, p.channels),
            ("aac", 48_000, 2),
            "{r}"
        );
    }
    let ratio = sizes[1] as f64 / sizes[0] as f64;
    assert!(
        (0.35..0.7).contains(&ratio),
        "audio bytes source {} vs 360p {}",
        sizes[0],
        sizes[1]
    );
    let failures = srv.metrics().await.get("ferrocast_rung_failures_total");
    assert!(
        failures >= 1.0,
        "ferrocast_rung_failures_total = {failures}"
    );
}
