//! One real publisher (ffmpeg, OBS-like 720p30 H.264 + AAC) and everything a player and a CDN
//! see while it is live: the LL-HLS playlist rules of DESIGN.md, the media behind them
//! (decoded with ffprobe/ffmpeg), blocking reload, preload hints, delta updates, cache
//! headers, CORS, 404s, the JSON API and /metrics.

mod common;

use std::time::{Duration, Instant};

use common::hls::{self, MediaPlaylist};
use common::mp4;
use common::*;

/// Server for these tests: a 20-segment window, so the whole ~20 s publish stays in the
/// playlist (every frame can be counted) and delta updates have segments to skip; a long
/// grace, so a vanished publisher leaves a stalled (not ended) playlist.
async fn server() -> TestServer {
    TestServer::start(ServerOpts {
        window: 20,
        grace: "30s",
        ..Default::default()
    })
    .await
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_playlists_and_media_follow_ll_hls_rules() {
    let srv = server().await;
    let publish_wall = unix_now_secs();
    let mut publisher = Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), 30.0, srv.dir.path());

    // --- Multivariant playlist: codecs, resolution, bandwidth.
    let mv = poll(
        Duration::from_secs(20),
        "the multivariant playlist",
        || async {
            let r = srv.get(&format!("/live/{STREAM}/index.m3u8")).await;
            (r.status == 200).then_some(r)
        },
    )
    .await;
    let (variants, mv_tags) = hls::parse_multivariant(&mv.text());
    assert_eq!(
        variants.len(),
        1,
        "passthrough has one variant:\n{}",
        mv.text()
    );
    let v = &variants[0];
    assert_eq!(
        v.uri,
        format!("{RENDITION}/index.m3u8"),
        "relative variant URI"
    );
    let codecs = &v.attrs["CODECS"];
    let avc = codecs
        .split(',')
        .find(|c| c.starts_with("avc1."))
        .unwrap_or_else(|| panic!("no avc1 codec in {codecs}"));
    assert!(
        avc.to_ascii_lowercase().starts_with("avc1.64") && avc.len() == 11,
        "H.264 High is avc1.64xxxx, got {avc}"
    );
    assert!(
        codecs.split(',').any(|c| c == "mp4a.40.2"),
        "AAC-LC is mp4a.40.2, got {codecs}"
    );
    assert_eq!(v.attrs["RESOLUTION"], format!("{WIDTH}x{HEIGHT}"));
    let bw: u64 = v.attrs["BANDWIDTH"].parse().unwrap();
    assert!(
        (100_000..50_000_000).contains(&bw),
        "implausible BANDWIDTH {bw}"
    );
    if let Some(fr) = v.attrs.get("FRAME-RATE") {
        assert!(close(fr.parse().unwrap(), FPS, 0.01), "FRAME-RATE {fr}");
    }
    assert!(mv_tags.contains("EXT-X-STREAM-INF"));

    // --- Wait for ~16 s of complete segments while the publisher is still live.
    let p = srv
        .wait_playlist(
            STREAM,
            Duration::from_secs(45),
            "8 complete segments",
            |p| p.segments.len() >= 8,
        )
        .await;
    assert!(
        publisher.try_wait().is_none(),
        "ffmpeg exited early:\n{}",
        publisher.stderr()
    );
    hls::check_rules(&p);
    assert!(!p.endlist && p.skip.is_none());
    assert_eq!(
        p.media_sequence, 0,
        "first segment of a new stream is msn 0"
    );
    assert_eq!(
        p.target_duration,
        Some(gop_secs().round() as u64),
        "segments of one {} s GOP each: TARGETDURATION is the GOP",
        gop_secs()
    );
    assert!(
        close(p.part_target(), 0.2, 0.0015),
        "PART-TARGET {} for a 200ms part target",
        p.part_target()
    );
    // Segments cut on the clip's GOP.
    for s in &p.segments[..p.segments.len() - 1] {
        assert!(
            close(s.duration, gop_secs(), 0.05),
            "msn {} lasts {} with a {} s GOP:\n{}",
            s.msn,
            s.duration,
            gop_secs(),
            p.text
        );
    }
    // PDT comes from the ingest clock: the stream started about when ffmpeg did.
    let first_pdt = p.segments[0].pdt.unwrap();
    assert!(
        first_pdt > publish_wall - 1.0 && first_pdt < publish_wall + 10.0,
        "first PDT {first_pdt} vs publish start {publish_wall}"
    );
    // The last complete segment ends at most one open segment (a target duration) and a
    // little scheduling before now.
    let last = p.segments.last().unwrap();
    let edge = last.pdt.unwrap() + last.duration;
    let now = unix_now_secs();
    assert!(
        edge <= now + 1.0 && edge > now - (p.target() + 5.0),
        "live edge PDT {edge} vs now {now}"
    );
    // m3u8-rs (a generic parser) accepts the playlist too and sees the same segments.
    let generic = m3u8_rs::parse_media_playlist_res(p.text.as_bytes())
        .expect("m3u8-rs parses the media playlist");
    assert_eq!(generic.segments.len(), p.segments.len());
    assert_eq!(generic.media_sequence, p.media_sequence);

    // --- Init segment.
    let map = p.segments[0].map.clone().unwrap();
    let init_resp = srv.client.get(&srv.media_url(STREAM, &map)).await;
    assert_eq!(init_resp.status, 200, "init {map}");
    let init_bytes = init_resp.body.clone();
    let init = mp4::parse_init(&init_bytes);
    let video = init.video().clone();
    assert_eq!((video.width, video.height), (WIDTH as u16, HEIGHT as u16));
    assert_eq!(
        video.avc_codec.as_deref().map(str::to_ascii_lowercase),
        Some(avc.to_ascii_lowercase()),
        "avcC matches CODECS"
    );
    let audio = init.audio().clone();
    assert_eq!(audio.timescale, 48_000, "AAC track at its sample rate");

    // --- Every part listed: INDEPENDENT=YES exactly when it starts with a keyframe, and its
    // media really fits in PART-TARGET.
    let part_target = p.part_target();
    let mut independent_parts = 0;
    for (msn, idx, part) in p.all_parts() {
        let r = srv.client.get(&srv.media_url(STREAM, &part.uri)).await;
        assert_eq!(r.status, 200, "part {}", part.uri);
        let frags = mp4::parse_fragments(&r.body, &init);
        assert_eq!(frags.len(), 1, "a part is one CMAF chunk: {}", part.uri);
        let vrun = frags[0].runs.iter().find(|r| r.track_id == video.id);
        let Some(vrun) = vrun else {
            assert!(
                !part.independent || idx > 0,
                "audio-only part {} marked independent",
                part.uri
            );
            continue;
        };
        let first = &vrun.samples[0];
        let starts_with_idr = mp4::is_idr(
            &r.body[first.offset..first.offset + first.size as usize],
            video.nal_length_size,
        );
        assert_eq!(
            part.independent, starts_with_idr,
            "part {idx} of msn {msn} ({}): INDEPENDENT={} but first video sample IDR={starts_with_idr}",
            part.uri, part.independent
        );
        assert_eq!(
            first.is_sync(),
            starts_with_idr,
            "sync-sample flag of the first sample of {}",
            part.uri
        );
        for (i, s) in vrun.samples.iter().enumerate() {
            let data = &r.body[s.offset..s.offset + s.size as usize];
            if i > 0 {
                assert!(
                    !mp4::is_idr(data, video.nal_length_size),
                    "keyframe inside part {} (not at its start)",
                    part.uri
                );
            }
        }
        let media = vrun.duration_ticks() as f64 / f64::from(video.timescale);
        assert!(
            media <= part_target + 0.0005,
            "part {} holds {media}s of video > PART-TARGET {part_target}",
            part.uri
        );
        assert!(
            close(media, part.duration, 0.034),
            "part {} holds {media}s of video, playlist says {}",
            part.uri,
            part.duration
        );
        if part.independent {
            independent_parts += 1;
        }
    }
    assert!(
        independent_parts >= 3,
        "several keyframe parts expected, saw {independent_parts}"
    );

    // --- Every segment: starts on a keyframe, ~EXTINF x 30 frames, contiguous media time.
    let dir = TempDir::new("segments");
    let mut all = vec![init_bytes.to_vec()];
    let mut next_video_dts: Option<u64> = None;
    for s in &p.segments {
        let r = srv.client.get(&srv.media_url(STREAM, &s.uri)).await;
        assert_eq!(r.status, 200, "segment {}", s.uri);
        let frags = mp4::parse_fragments(&r.body, &init);
        let vruns: Vec<&mp4::Run> = frags
            .iter()
            .flat_map(|f| &f.runs)
            .filter(|r| r.track_id == video.id)
            .collect();
        let first = &vruns[0].samples[0];
        assert!(
            mp4::is_idr(
                &r.body[first.offset..first.offset + first.size as usize],
                video.nal_length_size
            ) && first.is_sync(),
            "segment {} does not start with an IDR sync sample",
            s.uri
        );
        if let Some(expect) = next_video_dts {
            assert!(
                vruns[0].base_decode_time.abs_diff(expect) <= 90,
                "video time jumps at {}: {} vs {expect}",
                s.uri,
                vruns[0].base_decode_time
            );
        }
        let ticks: u64 = vruns.iter().map(|r| r.duration_ticks()).sum();
        next_video_dts =
            Some(vruns.last().unwrap().base_decode_time + vruns.last().unwrap().duration_ticks());
        assert!(
            close(ticks as f64 / f64::from(video.timescale), s.duration, 0.034),
            "segment {} video {ticks} ticks vs EXTINF {}",
            s.uri,
            s.duration
        );
        let path = write_file(
            dir.path(),
            &format!("seg-{}.mp4", s.msn),
            &[&init_bytes, &r.body],
        );
        let (key, pict) = first_video_frame(&path);
        assert!(
            key,
            "ffprobe: first frame of {} is not a keyframe (pict_type {pict})",
            s.uri
        );
        let pr = probe(&path);
        let expect = (s.duration * FPS).round() as i64;
        assert!(
            (pr.video_frames as i64 - expect).abs() <= 2,
            "segment {} decodes to {} video frames, EXTINF {} means ~{expect}",
            s.uri,
            pr.video_frames,
            s.duration
        );
        assert!(pr.audio_frames > 0, "segment {} has no audio", s.uri);
        all.push(r.body.to_vec());
    }

    // --- The whole window, decoded: right size, right frame count, audio and video, no errors.
    let refs: Vec<&[u8]> = all.iter().map(|v| v.as_slice()).collect();
    let whole = write_file(dir.path(), "window.mp4", &refs);
    let pr = probe(&whole);
    let total: f64 = p.segments.iter().map(|s| s.duration).sum();
    assert_eq!(pr.video_codec, "h264");
    assert_eq!(pr.audio_codec, "aac");
    assert_eq!((pr.width, pr.height), (WIDTH, HEIGHT));
    assert_eq!((pr.sample_rate, pr.channels), (48_000, 2));
    let expect = (total * FPS).round() as i64;
    assert!(
        (pr.video_frames as i64 - expect).abs() <= 2 * p.segments.len() as i64,
        "window of {total}s decodes to {} video frames, expected ~{expect}",
        pr.video_frames
    );
    let expect_audio = total * 48_000.0 / 1024.0;
    assert!(
        (pr.audio_frames as f64 - expect_audio).abs() <= expect_audio * 0.05,
        "window of {total}s has {} AAC frames, expected ~{expect_audio:.0}",
        pr.audio_frames
    );
    let errors = decode_errors(&whole);
    assert!(
        errors.trim().is_empty(),
        "ffmpeg reports decode errors for the window:\n{errors}"
    );

    // Still live the whole time.
    assert!(
        publisher.try_wait().is_none(),
        "ffmpeg exited early:\n{}",
        publisher.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_preload_hints_delta_updates_and_cdn_headers() {
    let srv = server().await;

    // --- Before anything publishes.
    let h = srv.get("/healthz").await;
    assert_eq!((h.status, h.text().trim()), (200, "ok"));
    for path in [
        format!("/live/{STREAM}/index.m3u8"),
        format!("/live/{STREAM}/{RENDITION}/index.m3u8"),
        "/live/nope/index.m3u8".to_string(),
        "/live/nope/source/index.m3u8".to_string(),
        "/live/nope/source/seg-x-1.m4s".to_string(),
    ] {
        let r = srv.get(&path).await;
        assert_eq!(r.status, 404, "{path} before any publish");
        assert_ne!(
            r.max_age().unwrap_or(0),
            86400,
            "a 404 must not be cached for long: {path}"
        );
    }
    let api = srv.get("/api/v1/streams").await;
    assert_eq!(api.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&api.body).unwrap(),
        serde_json::json!([])
    );

    let started = Instant::now();
    let mut publisher = Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), 30.0, srv.dir.path());
    let p = srv
        .wait_playlist(STREAM, Duration::from_secs(30), "the first segment", |p| {
            !p.segments.is_empty()
        })
        .await;
    hls::check_rules(&p);
    let pl_url = |q: &str| srv.playlist_url(STREAM, q);
    // Timing scales with the playlist: a part is ~PART-TARGET away; a request that is not held
    // is answered well within one target duration (a held one waits up to three).
    let (td, pt) = (p.target(), p.part_target());
    let quick = Duration::from_secs_f64(td);
    let held_part = Duration::from_secs_f64(pt / 2.0);

    // --- Cache headers and CORS on playlists.
    let mv = srv.get(&format!("/live/{STREAM}/index.m3u8")).await;
    assert_eq!(mv.status, 200);
    let mv_age = mv.max_age().unwrap_or_else(|| {
        panic!(
            "multivariant needs a short max-age: {:?}",
            mv.header("cache-control")
        )
    });
    assert!((1..=30).contains(&mv_age), "multivariant max-age {mv_age}");
    let plain = srv.client.get(&pl_url("")).await;
    assert!(
        plain
            .header("cache-control")
            .unwrap_or_default()
            .contains("no-cache"),
        "plain playlist: {:?}",
        plain.header("cache-control")
    );
    for r in [&mv, &plain] {
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.contains("mpegurl"), "playlist content-type {ct}");
        assert!(r.header("set-cookie").is_none());
    }

    // --- Blocking reload.
    // The first part of the next segment: held until it exists.
    let next = p.edge_msn() + 1;
    let r = srv
        .client
        .get(&pl_url(&format!("_HLS_msn={next}&_HLS_part=0")))
        .await;
    assert_eq!(r.status, 200, "blocking reload: {}", r.text());
    let held = MediaPlaylist::parse(&r.text());
    assert!(
        held.has_part(next, 0),
        "answer to _HLS_msn={next}&_HLS_part=0 lacks that part:\n{}",
        held.text
    );
    hls::check_rules(&held);
    let age = r.max_age().unwrap_or(0);
    let cc = r.header("cache-control").unwrap_or_default();
    assert!(
        cc.contains("public") && (1..=60).contains(&age),
        "blocking response must be briefly cacheable: {cc}"
    );
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    // Segment `next` has just begun: more than two segments ahead is refused at once...
    let r = srv
        .client
        .get(&pl_url(&format!("_HLS_msn={}", next + 3)))
        .await;
    assert_eq!(r.status, 400, "_HLS_msn=last+3: {}", r.text());
    assert!(
        r.elapsed < quick,
        "a refused request is not held ({:?})",
        r.elapsed
    );
    // ... while two ahead is held until it exists (about two segment durations).
    let r = srv
        .client
        .get(&pl_url(&format!("_HLS_msn={}&_HLS_part=0", next + 2)))
        .await;
    assert_eq!(r.status, 200, "_HLS_msn=last+2: {}", r.text());
    assert!(
        r.elapsed > Duration::from_secs_f64(td),
        "_HLS_msn=last+2 answered after only {:?} (~2 x {td} s expected)",
        r.elapsed
    );
    let held = MediaPlaylist::parse(&r.text());
    assert!(
        held.has_part(next + 2, 0),
        "answer lacks part 0 of msn {}:\n{}",
        next + 2,
        held.text
    );
    // The next part: held until it exists.
    let mut waits = Vec::new();
    let mut pl = held;
    for _ in 0..3 {
        let (msn, part) = pl.last_part().unwrap();
        let r = srv
            .client
            .get(&pl_url(&format!("_HLS_msn={msn}&_HLS_part={}", part + 1)))
            .await;
        assert_eq!(r.status, 200);
        let np = MediaPlaylist::parse(&r.text());
        assert!(
            np.has_part(msn, part as usize + 1) || np.has_part(msn + 1, 0),
            "answer to _HLS_msn={msn}&_HLS_part={} has neither that part nor the next segment's first:\n{}",
            part + 1,
            np.text
        );
        waits.push(r.elapsed);
        pl = np;
    }
    assert!(
        waits.iter().any(|w| *w > held_part),
        "next-part requests were never held: {waits:?}"
    );
    // An msn already in the playlist is answered at once.
    let r = srv.client.get(&pl_url("_HLS_msn=0")).await;
    assert_eq!(r.status, 200);
    assert!(r.elapsed < quick, "_HLS_msn=0 held {:?}", r.elapsed);
    // Malformed directives.
    for q in [
        "_HLS_part=0",
        "_HLS_msn=abc",
        "_HLS_msn=-1",
        "_HLS_msn=1&_HLS_part=x",
        "_HLS_skip=maybe",
    ] {
        let r = srv.client.get(&pl_url(q)).await;
        assert_eq!(r.status, 400, "?{q} -> {}", r.status);
        assert!(r.elapsed < quick, "?{q} held {:?}", r.elapsed);
    }

    // --- Preload hint: a request for the hinted part is held, then answered with the part,
    // which the next playlist lists.
    let mut hint_waits = Vec::new();
    for _ in 0..3 {
        // Right after a part is published, the hinted one is ~one part duration away.
        let (msn, part) = pl.last_part().unwrap();
        let r = srv
            .client
            .get(&pl_url(&format!("_HLS_msn={msn}&_HLS_part={}", part + 1)))
            .await;
        pl = MediaPlaylist::parse(&r.text());
        let hint = pl.preload_hint().expect("live playlist has a preload hint");
        assert!(!pl.all_parts().iter().any(|(_, _, p)| p.uri == hint));
        let r = srv.client.get(&srv.media_url(STREAM, &hint)).await;
        assert_eq!(r.status, 200, "hinted part {hint}: {}", r.text());
        hint_waits.push(r.elapsed);
        assert!(r.body.len() > 100, "hinted part is media");
        let etag = r.header("etag").expect("hinted part has an ETag");
        let after = srv.playlist(STREAM, "").await;
        assert!(
            after.all_parts().iter().any(|(_, _, p)| p.uri == hint),
            "part {hint} not listed after it was served:\n{}",
            after.text
        );
        let again = srv.client.get(&srv.media_url(STREAM, &hint)).await;
        assert_eq!(again.body, r.body, "a part never changes");
        assert_eq!(again.header("etag").as_deref(), Some(etag.as_str()));
        pl = after;
    }
    assert!(
        hint_waits.iter().any(|w| *w > held_part),
        "hinted-part requests were never held: {hint_waits:?}"
    );
    // A part number that is neither published nor hinted is simply not found (not held).
    let hint = pl.preload_hint().unwrap();
    let (prefix, n) = hint.trim_end_matches(".m4s").rsplit_once('-').unwrap();
    let far = format!("{prefix}-{}.m4s", n.parse::<u64>().unwrap() + 50);
    let r = srv.client.get(&srv.media_url(STREAM, &far)).await;
    assert_eq!(r.status, 404, "unhinted future part {far}");
    assert!(r.elapsed < quick, "unhinted part held {:?}", r.elapsed);

    // --- Immutable objects: init, segment, part.
    let p = srv.playlist(STREAM, "").await;
    let objects = [
        p.segments[0].map.clone().unwrap(),
        p.segments[0].uri.clone(),
        p.all_parts().last().unwrap().2.uri.clone(),
    ];
    for uri in &objects {
        let url = srv.media_url(STREAM, uri);
        let r = srv.client.get(&url).await;
        assert_eq!(r.status, 200, "{uri}");
        let cc = r.header("cache-control").unwrap_or_default();
        assert!(
            cc.contains("public") && r.max_age().unwrap_or(0) >= 86_400,
            "{uri}: Cache-Control {cc}"
        );
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some("*"),
            "{uri}"
        );
        assert!(r.header("set-cookie").is_none());
        let ct = r.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("video/") || ct.starts_with("audio/"),
            "{uri}: content-type {ct}"
        );
        let etag = r
            .header("etag")
            .unwrap_or_else(|| panic!("{uri} has no ETag"));
        let nm = srv.client.get_with(&url, &[("if-none-match", &etag)]).await;
        assert_eq!(nm.status, 304, "{uri} with If-None-Match {etag}");
        assert!(nm.body.is_empty());
        assert_eq!(nm.header("etag").as_deref(), Some(etag.as_str()));
        let other = srv
            .client
            .get_with(&url, &[("if-none-match", "\"something-else\"")])
            .await;
        assert_eq!(other.status, 200);
        // Edges may revalidate with a list of tags or a weak one: still a match.
        for inm in [
            format!("\"something-else\", {etag}"),
            format!("W/{etag}"),
            "*".to_string(),
        ] {
            let nm = srv.client.get_with(&url, &[("if-none-match", &inm)]).await;
            assert_eq!(nm.status, 304, "{uri} with If-None-Match: {inm}");
        }
        let head = srv.client.request(reqwest::Method::HEAD, &url, &[]).await;
        assert_eq!(head.status, 200, "HEAD {uri}");
        assert_eq!(
            head.header("content-length"),
            Some(r.body.len().to_string()),
            "HEAD {uri} content-length"
        );
        assert_eq!(head.header("etag").as_deref(), Some(etag.as_str()));
    }
    // CORS preflight from a player on another origin.
    let pre = srv
        .client
        .request(
            reqwest::Method::OPTIONS,
            &pl_url(""),
            &[
                ("origin", "https://player.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert!(
        pre.status == 200 || pre.status == 204,
        "CORS preflight: {}",
        pre.status
    );
    assert_eq!(
        pre.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .contains("GET"));
    // Unknown files and renditions.
    let epoch = p.segments[0].uri.split('-').nth(1).unwrap().to_string();
    for path in [
        format!("/live/{STREAM}/{RENDITION}/seg-{epoch}-9999.m4s"),
        format!("/live/{STREAM}/{RENDITION}/init-{epoch}-99.mp4"),
        format!("/live/{STREAM}/{RENDITION}/nothing.txt"),
        format!("/live/{STREAM}/nope/index.m3u8"),
        format!("/live/{STREAM}/{RENDITION}/../../../etc/passwd"),
        "/live/nope/index.m3u8".to_string(),
        "/nope".to_string(),
    ] {
        let r = srv.get(&path).await;
        assert_eq!(r.status, 404, "{path}");
    }

    // --- Delta updates: once the playlist is longer than CAN-SKIP-UNTIL, old segments go.
    let full = srv
        .wait_playlist(
            STREAM,
            Duration::from_secs(40),
            "a playlist longer than CAN-SKIP-UNTIL + a segment",
            |p| {
                let csu: f64 = p.server_control("CAN-SKIP-UNTIL").unwrap().parse().unwrap();
                p.segments.iter().map(|s| s.duration).sum::<f64>() > csu + 1.25 * td
            },
        )
        .await;
    let csu: f64 = full
        .server_control("CAN-SKIP-UNTIL")
        .unwrap()
        .parse()
        .unwrap();
    let mut checked = false;
    for _ in 0..5 {
        // Ask both at the same, just published, part so they describe the same state.
        let (msn, part) = srv.playlist(STREAM, "").await.last_part().unwrap();
        let q = format!("_HLS_msn={msn}&_HLS_part={}", part + 1);
        let full_r = srv.client.get(&pl_url(&q)).await;
        let delta_r = srv.client.get(&pl_url(&format!("{q}&_HLS_skip=YES"))).await;
        let v2_r = srv.client.get(&pl_url(&format!("{q}&_HLS_skip=v2"))).await;
        let (full, delta, v2) = (
            MediaPlaylist::parse(&full_r.text()),
            MediaPlaylist::parse(&delta_r.text()),
            MediaPlaylist::parse(&v2_r.text()),
        );
        if full.last_part() != delta.last_part() || full.last_part() != v2.last_part() {
            continue; // a part landed between the requests; try again
        }
        for d in [&delta, &v2] {
            hls::check_rules(d);
            let n = d.skipped();
            assert!(
                n >= 1,
                "delta update of a {}-segment playlist skips nothing:\n{}",
                full.segments.len(),
                d.text
            );
            assert_eq!(
                d.media_sequence, full.media_sequence,
                "MEDIA-SEQUENCE of a delta update"
            );
            assert_eq!(
                n as usize + d.segments.len(),
                full.segments.len(),
                "skipped + listed = full:\n{}",
                d.text
            );
            for s in &d.segments {
                assert_eq!(
                    Some(&s.uri),
                    full.segment(s.msn).map(|f| &f.uri),
                    "msn {} differs between delta and full",
                    s.msn
                );
            }
            // What remains still covers CAN-SKIP-UNTIL.
            let remaining: f64 = d.segments.iter().map(|s| s.duration).sum::<f64>()
                + d.open
                    .iter()
                    .flat_map(|o| &o.parts)
                    .map(|p| p.duration)
                    .sum::<f64>();
            assert!(
                remaining > csu,
                "delta keeps {remaining}s < CAN-SKIP-UNTIL {csu}"
            );
            assert_eq!(d.preload_hint(), full.preload_hint());
            assert_eq!(
                d.open.as_ref().map(|o| o.parts.len()),
                full.open.as_ref().map(|o| o.parts.len())
            );
        }
        assert!(
            v2.skip
                .as_ref()
                .unwrap()
                .contains_key("RECENTLY-REMOVED-DATERANGES"),
            "v2 delta:\n{}",
            v2.text
        );
        assert!(v2.version.unwrap() >= 10);
        checked = true;
        break;
    }
    assert!(
        checked,
        "never got a full playlist and a delta update of the same state"
    );

    // --- API and metrics.
    let api = srv.get("/api/v1/streams").await;
    assert_eq!(api.status, 200);
    assert!(api
        .header("content-type")
        .unwrap_or_default()
        .contains("application/json"));
    let list: serde_json::Value = serde_json::from_slice(&api.body).expect("API returns JSON");
    let streams = list.as_array().expect("API returns a list");
    assert_eq!(streams.len(), 1, "{list}");
    let s = &streams[0];
    assert_eq!(s["name"], STREAM);
    assert_eq!(s["publishing"], true, "{s}");
    assert_eq!(s["ended"], false);
    // Live at least as long as the media `full` listed (more than CAN-SKIP-UNTIL).
    let uptime = s["uptime_s"].as_f64().expect("uptime_s");
    assert!(
        uptime > csu && uptime <= started.elapsed().as_secs_f64() + 1.0,
        "uptime {uptime}s after {:?}",
        started.elapsed()
    );
    let bitrate = s["bitrate"].as_u64().expect("bitrate");
    assert!(
        (500_000..20_000_000).contains(&bitrate),
        "bitrate {bitrate} for a ~2.6 Mbit/s source"
    );
    let rend = &s["renditions"][0];
    assert_eq!(rend["name"], RENDITION);
    assert_eq!(rend["width"], WIDTH);
    assert_eq!(rend["height"], HEIGHT);
    let codecs = rend["codecs"].as_str().unwrap();
    assert!(
        codecs.contains("avc1.64") && codecs.contains("mp4a.40.2"),
        "{codecs}"
    );
    assert_eq!(
        rend["playlist"],
        format!("/live/{STREAM}/{RENDITION}/index.m3u8")
    );
    // At least what `full` listed was published: its segments, each of at least
    // duration / PART-TARGET parts.
    let m = srv.metrics().await;
    let min_parts: f64 = full
        .segments
        .iter()
        .map(|s| (s.duration / pt - 1e-6).ceil())
        .sum();
    assert!(
        m.get("ferrocast_segments_total") >= full.segments.len() as f64,
        "{} segments counted, {} listed",
        m.get("ferrocast_segments_total"),
        full.segments.len()
    );
    assert!(
        m.get("ferrocast_parts_total") >= min_parts,
        "{} parts counted, at least {min_parts} listed",
        m.get("ferrocast_parts_total")
    );
    assert_eq!(m.get("ferrocast_live_streams"), 1.0);
    assert_eq!(m.get("ferrocast_rtmp_rejected_total"), 0.0);
    assert!(m.get("ferrocast_http_requests_total") > 20.0);

    assert!(
        publisher.try_wait().is_none(),
        "ffmpeg exited early:\n{}",
        publisher.stderr()
    );

    // --- The publisher vanishes (within its 30 s grace): held requests give up with 503
    // after three target durations, and the 503 is not cacheable. The server must know it is
    // gone first (ffmpeg's last bytes may still be in flight when the process dies), then its
    // last part is flushed: the segment it was building is closed, none is open.
    publisher.kill();
    srv.wait_not_publishing(STREAM, Duration::from_secs(15))
        .await;
    let stalled = srv
        .wait_playlist(
            STREAM,
            Duration::from_secs(10),
            "the publisher's last part flushed",
            |p| p.open.is_none(),
        )
        .await;
    assert!(!stalled.endlist, "ended within the grace period");
    assert_eq!(
        srv.api_stream(STREAM)
            .await
            .map(|s| s["publishing"].clone()),
        Some(serde_json::json!(false)),
        "nobody publishes while the stalled requests are made"
    );
    let (last_msn, _) = stalled.last_part().unwrap();
    let hint = stalled
        .preload_hint()
        .expect("still live within grace: preload hint");
    let playlist_req = tokio::spawn({
        let (client, url) = (
            srv.client.clone(),
            pl_url(&format!("_HLS_msn={}", last_msn + 1)),
        );
        async move { client.get(&url).await }
    });
    let part_req = tokio::spawn({
        let (client, url) = (srv.client.clone(), srv.media_url(STREAM, &hint));
        async move { client.get(&url).await }
    });
    let limit = Duration::from_secs_f64(3.0 * stalled.target());
    for (what, r) in [
        ("playlist", playlist_req.await.unwrap()),
        ("hinted part", part_req.await.unwrap()),
    ] {
        assert_eq!(
            r.status,
            503,
            "stalled blocking {what} request: {}",
            r.text()
        );
        assert!(
            r.elapsed >= limit - Duration::from_millis(300) && r.elapsed < limit + Duration::from_secs(3),
            "stalled {what} request answered after {:?}, expected three target durations ({limit:?})",
            r.elapsed
        );
        let cc = r.header("cache-control").unwrap_or_default();
        assert!(
            cc.contains("no-store") || cc.contains("no-cache"),
            "a 503 must not be cached: {cc}"
        );
    }
    assert!(
        srv.metrics()
            .await
            .get("ferrocast_http_blocking_timeouts_total")
            >= 2.0
    );
}
