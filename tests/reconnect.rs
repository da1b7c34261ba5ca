//! A publisher that drops and comes back within the grace period continues the same
//! playlist behind an EXT-X-DISCONTINUITY; once it stays away longer, the playlist ends.

mod common;

use std::time::{Duration, Instant};

use common::hls::{self, MediaPlaylist};
use common::mp4;
use common::*;

/// The server's `grace`: generous, so the second publisher (an ffmpeg starting on a busy
/// machine) is surely back in time.
const GRACE: Duration = Duration::from_secs(6);
/// How long the publisher stays away before it comes back (well within GRACE).
const AWAY: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reconnecting_within_grace_continues_the_playlist_then_it_ends() {
    // A window long enough to keep both sessions in view.
    let srv = TestServer::start(ServerOpts {
        window: 12,
        grace: "6s",
        ..Default::default()
    })
    .await;
    let url = srv.rtmp_url(STREAM, Some(KEY));

    // --- First session: 8 s.
    let mut first = Publisher::start(&url, 8.0, srv.dir.path());
    let status = first.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "first publish failed ({status}):\n{}",
        first.stderr()
    );
    let first_gone = Instant::now();
    // The server sees the session end, then flushes its last part: the segment it was
    // building is closed and nothing is open. Only then is `p1` the first session's last word.
    srv.wait_not_publishing(STREAM, Duration::from_secs(10))
        .await;
    let p1 = srv
        .wait_playlist(
            STREAM,
            Duration::from_secs(10),
            "the first session's last part flushed",
            |p| p.open.is_none(),
        )
        .await;
    hls::check_rules(&p1);
    assert!(
        !p1.endlist,
        "the playlist must not end within the grace period:\n{}",
        p1.text
    );
    let last_old = p1
        .segments
        .last()
        .expect("segments from the first session")
        .clone();
    let whole_gops = (8.0 / gop_secs()).floor() as usize;
    assert!(
        p1.segments.len() + 1 >= whole_gops,
        "8 s of media make at least {} segments:\n{}",
        whole_gops - 1,
        p1.text
    );
    assert!(p1.segments.iter().all(|s| !s.discontinuity));

    // A player blocking on the next segment across the gap gets it once the publisher is back.
    let held = tokio::spawn({
        let client = srv.client.clone();
        let url = srv.playlist_url(
            STREAM,
            &format!("_HLS_msn={}&_HLS_part=0", last_old.msn + 1),
        );
        async move { client.get(&url).await }
    });

    // --- Nobody publishes for AWAY (the scenario's gap, not a wait for anything), then the
    // publisher is back, well within the grace.
    tokio::time::sleep(AWAY).await;
    assert!(
        !held.is_finished(),
        "the blocking request was answered while nobody published"
    );
    let gap = first_gone.elapsed().as_secs_f64();
    assert!(
        gap < GRACE.as_secs_f64() - 2.0,
        "test too slow to reconnect within grace ({gap}s)"
    );
    let mut second = Publisher::start(&url, 8.0, srv.dir.path());
    let r = held.await.unwrap();
    assert_eq!(
        r.status,
        200,
        "blocking request across the reconnect: {}",
        r.text()
    );
    let across = MediaPlaylist::parse(&r.text());
    assert!(
        across.has_part(last_old.msn + 1, 0),
        "answer lacks the resumed segment's first part:\n{}",
        across.text
    );
    hls::check_rules(&across);
    let p2 = srv
        .wait_playlist(
            STREAM,
            Duration::from_secs(20),
            "two segments from the second session",
            |p| p.last_segment_msn().is_some_and(|m| m >= last_old.msn + 2),
        )
        .await;
    hls::check_rules(&p2);
    assert_eq!(
        p2.media_sequence, p1.media_sequence,
        "same playlist, same window start"
    );
    let epoch = |uri: &str| uri.split('-').nth(1).unwrap().to_string();
    for s in &p2.segments {
        assert_eq!(
            epoch(&s.uri),
            epoch(&last_old.uri),
            "same epoch in every URI: {}",
            s.uri
        );
    }
    let resumed = p2
        .segment(last_old.msn + 1)
        .expect("the msn after the first session's last");
    assert!(
        resumed.discontinuity,
        "EXT-X-DISCONTINUITY before the first new segment:\n{}",
        p2.text
    );
    assert_eq!(
        p2.segments.iter().filter(|s| s.discontinuity).count(),
        1,
        "exactly one discontinuity:\n{}",
        p2.text
    );
    assert_eq!(
        p2.segment(last_old.msn).map(|s| &s.uri),
        Some(&last_old.uri),
        "old segments stay as they were"
    );
    // PDT jumps forward by about the time the publisher was away.
    let jump = resumed.pdt.unwrap() - (last_old.pdt.unwrap() + last_old.duration);
    // Upper bound: the second ffmpeg's start-up on a busy machine.
    assert!(
        jump > gap - 0.5 && jump < gap + 5.0,
        "PDT jumps {jump:.3}s across a reconnect gap of {gap:.3}s:\n{}",
        p2.text
    );
    // The media timeline keeps going (tfdt never goes back), so the window decodes as one.
    let init_uri = p2.segments[0].map.clone().unwrap();
    assert!(
        p2.segments
            .iter()
            .all(|s| s.map.as_deref() == Some(init_uri.as_str())),
        "same codecs, same init"
    );
    let init_bytes = srv.client.get(&srv.media_url(STREAM, &init_uri)).await.body;
    let init = mp4::parse_init(&init_bytes);
    let vid = init.video().id;
    let mut end_prev: Option<u64> = None;
    let mut all = vec![init_bytes.to_vec()];
    for s in &p2.segments {
        let body = srv.client.get(&srv.media_url(STREAM, &s.uri)).await.body;
        let frags = mp4::parse_fragments(&body, &init);
        let runs: Vec<&mp4::Run> = frags
            .iter()
            .flat_map(|f| &f.runs)
            .filter(|r| r.track_id == vid)
            .collect();
        let start = runs[0].base_decode_time;
        if let Some(prev) = end_prev {
            assert!(
                start + 90 >= prev,
                "video time goes back at msn {}: {start} < {prev}",
                s.msn
            );
        }
        end_prev =
            Some(runs.last().unwrap().base_decode_time + runs.last().unwrap().duration_ticks());
        all.push(body.to_vec());
    }
    let dir = TempDir::new("reconnect");
    let refs: Vec<&[u8]> = all.iter().map(|v| v.as_slice()).collect();
    let whole = write_file(dir.path(), "window.mp4", &refs);
    let errors = decode_errors(&whole);
    assert!(
        errors.trim().is_empty(),
        "window across the reconnect does not decode cleanly:\n{errors}"
    );

    // --- Second session ends; nobody comes back.
    let status = second.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "second publish failed ({status}):\n{}",
        second.stderr()
    );
    let gone = Instant::now();
    // Once the server has noticed, the grace runs: still not ended.
    srv.wait_not_publishing(STREAM, Duration::from_secs(10))
        .await;
    let during = srv.playlist(STREAM, "").await;
    assert!(
        !during.endlist || gone.elapsed() >= GRACE,
        "ended before the grace period was over"
    );
    let ended = srv
        .wait_playlist(
            STREAM,
            GRACE + Duration::from_secs(10),
            "EXT-X-ENDLIST",
            |p| p.endlist,
        )
        .await;
    assert!(
        gone.elapsed() >= GRACE - Duration::from_millis(300),
        "ended {:?} after the publisher left",
        gone.elapsed()
    );
    hls::check_rules(&ended);
    assert!(ended.preload_hints.is_empty(), "no preload hint once ended");
    assert!(ended.open.is_none());
    assert!(ended.last_segment_msn() >= p2.last_segment_msn());
    // Blocking requests no longer wait.
    let next = ended.last_segment_msn().unwrap() + 1;
    for q in [
        format!("_HLS_msn={next}"),
        format!("_HLS_msn={next}&_HLS_part=0"),
        format!("_HLS_msn={}&_HLS_part=3", next + 1),
    ] {
        let r = srv.client.get(&srv.playlist_url(STREAM, &q)).await;
        assert_eq!(r.status, 200, "?{q} on an ended stream: {}", r.text());
        // Not held: a held request would wait up to three target durations.
        assert!(
            r.elapsed < Duration::from_secs_f64(ended.target()),
            "?{q} held {:?} on an ended stream",
            r.elapsed
        );
        assert!(MediaPlaylist::parse(&r.text()).endlist);
    }
    // Media of the ended stream stays available for late viewers.
    let r = srv
        .client
        .get(&srv.media_url(STREAM, &ended.segments.last().unwrap().uri))
        .await;
    assert_eq!(r.status, 200);
    let api: serde_json::Value =
        serde_json::from_slice(&srv.get("/api/v1/streams").await.body).unwrap();
    assert_eq!(api[0]["ended"], true, "{api}");
    assert_eq!(api[0]["publishing"], false, "{api}");
    assert_eq!(srv.metrics().await.get("ferrocast_live_streams"), 0.0);

    // --- Publishing the name again after the end starts a new playlist under a new epoch,
    // so URIs cached at a CDN for the old one can never be served for it.
    let _third = Publisher::start(&url, 20.0, srv.dir.path());
    let fresh = srv
        .wait_playlist(STREAM, Duration::from_secs(20), "a new playlist", |p| {
            !p.endlist && !p.segments.is_empty()
        })
        .await;
    hls::check_rules(&fresh);
    assert_eq!(
        fresh.media_sequence, 0,
        "a new playlist starts at msn 0:\n{}",
        fresh.text
    );
    assert!(!fresh.segments.iter().any(|s| s.discontinuity));
    assert_ne!(
        epoch(&fresh.segments[0].uri),
        epoch(&last_old.uri),
        "new stream, new epoch"
    );
}
