//! Who may publish: wrong, missing and unknown keys are refused, logged and counted, and
//! create nothing; a second publisher cannot take over a healthy live stream.

mod common;

use std::time::Duration;

use common::*;

/// How long ffmpeg may take to give up after the server refuses it.
const REFUSAL_EXIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_or_unknown_keys_are_refused_and_create_nothing() {
    let srv = TestServer::start(ServerOpts::default()).await;
    let attempts = [
        (
            "wrong key",
            srv.rtmp_url(STREAM, Some("not-the-key")),
            "stream `demo`: wrong key",
        ),
        (
            "missing key",
            srv.rtmp_url(STREAM, None),
            "stream `demo`: no key given",
        ),
        (
            "empty key",
            srv.rtmp_url(STREAM, Some("")),
            "stream `demo`: no key given",
        ),
        (
            "unknown stream",
            srv.rtmp_url("ghost", Some(KEY)),
            "stream `ghost` is not configured",
        ),
        (
            "unknown app",
            format!("rtmp://{}/other/{STREAM}?key={KEY}", srv.rtmp),
            "application `other` does not exist",
        ),
    ];
    // All at once: each is refused on its own.
    let mut pubs: Vec<(&str, Publisher, &str)> = attempts
        .iter()
        .map(|(what, url, log)| (*what, Publisher::start(url, 20.0, srv.dir.path()), *log))
        .collect();
    for (what, publisher, _) in pubs.iter_mut() {
        let status = publisher.wait_exit(REFUSAL_EXIT).await;
        assert!(
            !status.success(),
            "ffmpeg publishing with a {what} exited with {status}; log:\n{}",
            publisher.stderr()
        );
    }
    let m = srv.metrics().await;
    assert!(
        m.get("ferrocast_rtmp_rejected_total") >= attempts.len() as f64,
        "every refusal is counted"
    );
    assert_eq!(m.get("ferrocast_live_streams"), 0.0);
    assert_eq!(
        m.get("ferrocast_ingest_frames_total"),
        0.0,
        "no media was taken from a refused publisher"
    );
    // The server logs a refusal when it closes the session, which may be just after ffmpeg
    // gave up; the log holds only this test's server's lines.
    for (what, _, line) in &pubs {
        wait_log_line(
            Duration::from_secs(10),
            &format!("for the {what} refusal (`{line}`)"),
            false,
            |l| l.contains(line),
        )
        .await;
    }
    let logs = server_logs();
    assert!(
        !logs.contains("not-the-key"),
        "a wrong key must not be logged"
    );
    // Nothing was created.
    for name in [STREAM, "ghost"] {
        for path in [
            format!("/live/{name}/index.m3u8"),
            format!("/live/{name}/{RENDITION}/index.m3u8"),
        ] {
            let r = srv.get(&path).await;
            assert_eq!(r.status, 404, "{path} after refused publishes");
        }
    }
    let api = srv.get("/api/v1/streams").await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&api.body).unwrap(),
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_is_refused_while_the_first_is_live() {
    let srv = TestServer::start(ServerOpts::default()).await;
    let mut first = Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), 30.0, srv.dir.path());
    let before = srv
        .wait_playlist(STREAM, Duration::from_secs(30), "the first segment", |p| {
            !p.segments.is_empty()
        })
        .await;

    let mut second = Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), 30.0, srv.dir.path());
    let status = second.wait_exit(REFUSAL_EXIT).await;
    assert!(
        !status.success(),
        "second publisher exited with {status}; log:\n{}",
        second.stderr()
    );
    wait_log_line(
        Duration::from_secs(10),
        "for the second publisher's refusal",
        false,
        |l| l.contains(&format!("stream `{STREAM}` is already being published")),
    )
    .await;
    assert_eq!(
        srv.metrics().await.get("ferrocast_rtmp_rejected_total"),
        1.0
    );

    // The first publisher carries on, into the same playlist.
    let msn = before.edge_msn() + 2;
    let after = srv
        .wait_playlist(STREAM, Duration::from_secs(15), "two more segments", |p| {
            p.last_segment_msn() >= Some(msn)
        })
        .await;
    assert!(
        first.try_wait().is_none(),
        "first publisher was cut off:\n{}",
        first.stderr()
    );
    // The window may have slid; the segment `before` ended with is still there, unchanged.
    let last = before.segments.last().unwrap();
    assert_eq!(
        after.segment(last.msn).map(|s| &s.uri),
        Some(&last.uri),
        "same playlist (same epoch, same segment msn {})",
        last.msn
    );
    assert!(
        !after.segments.iter().any(|s| s.discontinuity),
        "no discontinuity: the first publisher never left"
    );
    common::hls::check_rules(&after);
    let api: serde_json::Value =
        serde_json::from_slice(&srv.get("/api/v1/streams").await.body).unwrap();
    assert_eq!(api.as_array().unwrap().len(), 1);
    assert_eq!(api[0]["publishing"], true);
}

/// The harness's log capture, which the refusal checks above rely on: a test sees the lines
/// its own runtime logged (tasks, blocking threads), never another test's; lines of threads
/// outside every runtime are only in `server_and_thread_logs`.
#[test]
fn a_test_sees_only_its_own_runtimes_log_lines() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    let (a, b) = (runtime(), runtime());
    a.block_on(async {
        server_logs(); // installs the capture
        tokio::spawn(async { tracing::info!(check = "rt-a-task", "harness check") })
            .await
            .unwrap();
        tokio::task::spawn_blocking(|| tracing::info!(check = "rt-a-blocking", "harness check"))
            .await
            .unwrap();
    });
    b.block_on(async { tracing::info!(check = "rt-b", "harness check") });
    std::thread::spawn(|| tracing::info!(check = "no-runtime", "harness check"))
        .join()
        .unwrap();
    let (own, with_threads) = a.block_on(async { (server_logs(), server_and_thread_logs()) });
    for tag in ["check=\"rt-a-task\"", "check=\"rt-a-blocking\""] {
        assert!(own.contains(tag), "{tag} missing:\n{own}");
    }
    assert!(!own.contains("rt-b"), "another runtime's line:\n{own}");
    assert!(!own.contains("no-runtime"), "a runtime-less line:\n{own}");
    assert!(with_threads.contains("no-runtime") && !with_threads.contains("rt-b"));
    assert!(b
        .block_on(async { server_logs() })
        .contains("check=\"rt-b\""));
}
