//! The origin behind a real cache: nginx rendered from `config/nginx-edge.conf` (by
//! `scripts/edge.sh`) in front of an in-process origin, one ffmpeg publisher, and 200
//! simulated LL-HLS viewers (`ferrocast-viewers`) following the live edge through the edge for
//! 20 s. Checks the headers an edge relies on, that concurrent requests (a crowd joining, 20
//! viewers asking for the preload-hinted part before it exists) are answered at once and reach
//! the origin once, that every viewer gets every part, that the edge answers parts and segments
//! from its cache, and that the origin sees about one request per part, not one per viewer.
//! nginx missing is a failure, not a skip (`scripts/setup.sh test` installs it).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::edge::Edge;
use common::*;

const VIEWERS: usize = 200;
const RUN_SECS: u64 = 20;

/// Runs the futures concurrently (on this task) and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The viewer tool belongs to the ferrocast-bench workspace member, so Cargo gives this test no
/// CARGO_BIN_EXE_ for it: it is built into target/<profile>/, the parent of this test's deps/.
fn viewers_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps/");
    let bin = dir.join(format!("ferrocast-viewers{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release --workspace --bins` first \
         (without --release for a debug test run)",
        bin.display()
    );
    bin
}

fn kind_counts(m: &Metrics) -> BTreeMap<&'static str, f64> {
    [
        "playlist",
        "playlist_blocking",
        "part",
        "segment",
        "init",
        "multivariant",
    ]
    .into_iter()
    .map(|k| {
        (
            k,
            m.get(&format!(
                "ferrocast_http_requests_by_kind_total{{kind=\"{k}\"}}"
            )),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_caches_ll_hls_for_200_viewers() {
    let srv = TestServer::start(ServerOpts::default()).await;
    let edge_dir = TempDir::new("edge");
    let mut edge = Edge::start(&srv.http.to_string(), edge_dir.path());
    let mut publisher = Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), 60.0, srv.dir.path());
    srv.wait_live(STREAM, &mut publisher, Duration::from_secs(20))
        .await;

    // --- Headers an edge relies on, through the edge.
    let p = srv.playlist(STREAM, "").await;
    // Part counts below scale with PART-TARGET; waits with the target duration.
    let (td, pt) = (p.target(), p.part_target());
    let (msn, part) = p.last_part().expect("a part is listed");
    let part_uri = p
        .all_parts()
        .last()
        .expect("a part is listed")
        .2
        .uri
        .clone();
    let media = edge.url(&format!("/live/{STREAM}/{RENDITION}/{part_uri}"));
    let first = srv.client.get(&media).await;
    let second = srv.client.get(&media).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.header("x-cache-status").as_deref(), Some("HIT"));
    assert_eq!(first.body, second.body);
    for h in ["etag", "last-modified"] {
        assert!(first.header(h).is_some(), "part without {h}");
    }
    for h in ["set-cookie", "vary", "age"] {
        assert!(first.header(h).is_none(), "part with {h} from the origin");
    }
    // The origin answers a revalidation by date with 304 (immutable objects).
    let lm = first.header("last-modified").unwrap();
    let reval = srv
        .client
        .get_with(
            &srv.media_url(STREAM, &part_uri),
            &[("if-modified-since", &lm)],
        )
        .await;
    assert_eq!(reval.status, 304, "If-Modified-Since on an immutable part");
    // Plain live playlists pass through, never from the cache; blocking ones are cached.
    let plain = edge.url(&format!("/live/{STREAM}/{RENDITION}/index.m3u8"));
    for _ in 0..2 {
        let r = srv.client.get(&plain).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-cache-status").as_deref(), Some("HIT"));
        assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    }
    // A crowd asking for the live playlist at once is answered at once: it must not queue
    // behind the edge's cache lock (one request per 500 ms lock poll).
    let t = Instant::now();
    let crowd = futures_join_all((0..50).map(|_| srv.client.get(&plain))).await;
    let slowest = t.elapsed();
    assert!(crowd.iter().all(|r| r.status == 200));
    assert!(
        slowest < Duration::from_millis(1500),
        "50 concurrent plain playlist requests through the edge took {slowest:?}"
    );
    let blocking = format!("{plain}?_HLS_msn={msn}&_HLS_part={part}");
    let a = srv.client.get(&blocking).await;
    let b = srv.client.get(&blocking).await;
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(b.header("x-cache-status").as_deref(), Some("HIT"));
    assert_eq!(
        a.body, b.body,
        "a cached blocking reload is the same playlist"
    );

    // The preload-hinted part, asked for by many viewers before it exists: the origin holds one
    // request until the part is published and the edge hands that one answer to everyone.
    let p = srv.playlist(STREAM, "").await;
    let hint = p.preload_hint().expect("a preload hint");
    let parts_before = srv
        .metrics()
        .await
        .get("ferrocast_http_requests_by_kind_total{kind=\"part\"}");
    let hinted = edge.url(&format!("/live/{STREAM}/{RENDITION}/{hint}"));
    let t = Instant::now();
    let answers = futures_join_all((0..20).map(|_| srv.client.get(&hinted))).await;
    let took = t.elapsed();
    let parts_after = srv
        .metrics()
        .await
        .get("ferrocast_http_requests_by_kind_total{kind=\"part\"}");
    assert!(
        answers
            .iter()
            .all(|r| r.status == 200 && r.body == answers[0].body && !r.body.is_empty()),
        "hinted part through the edge: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // The hinted part is at most a part away; held requests give up only after 3 x td.
    assert!(
        took < Duration::from_secs_f64(td + 1.0),
        "20 held requests took {took:?}"
    );
    assert!(
        parts_after - parts_before <= 2.0,
        "20 concurrent requests for the hinted part reached the origin {} times",
        parts_after - parts_before
    );

    // --- 200 viewers through the edge for 20 s.
    let before = srv.metrics().await;
    let args: Vec<String> = vec![
        "--url".into(),
        plain.clone(),
        "--watch-url".into(),
        srv.playlist_url(STREAM, ""),
        "--viewers".into(),
        VIEWERS.to_string(),
        "--duration".into(),
        RUN_SECS.to_string(),
        "--sources".into(),
        "127.0.0.2-127.0.0.5".into(),
        // Joins within 0.2 s: a crowd arriving at once (the plain playlist must not queue
        // behind the edge's cache lock).
        "--ramp".into(),
        "0.2".into(),
    ];
    let viewers = viewers_bin();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(viewers)
            .args(&args)
            .output()
            .expect("run ferrocast-viewers")
    })
    .await
    .unwrap();
    let after = srv.metrics().await;
    assert!(
        out.status.success(),
        "ferrocast-viewers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        publisher.try_wait().is_none(),
        "ffmpeg exited during the run:\n{}",
        publisher.stderr()
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    eprintln!("viewers summary: {}", {
        let mut short = s.clone();
        short["latency_hist_ms"] = serde_json::Value::Null;
        short
    });

    // Every viewer got every part that appeared at the origin inside the window.
    // A part appears every PART-TARGET; allow a busy machine 40 % less.
    let expected = s["expected_per_viewer"].as_u64().unwrap();
    let window_s = s["window_s"].as_f64().unwrap();
    let min_expected = (0.6 * window_s / pt).floor();
    assert!(
        window_s >= RUN_SECS as f64 / 2.0 && expected as f64 >= min_expected,
        "only {expected} parts appeared in the {window_s:.1} s window (PART-TARGET {pt})"
    );
    assert_eq!(s["viewers"].as_u64(), Some(VIEWERS as u64));
    // Every viewer was following the edge before the window opened (so "every part" is every
    // part of the window, not just those after a late join).
    assert_eq!(
        s["never_joined"].as_u64(),
        Some(0),
        "viewers that never joined"
    );
    assert_eq!(
        s["joined_late"].as_u64(),
        Some(0),
        "viewers that joined after the window opened (last at {} s)",
        s["last_join_s"]
    );
    assert_eq!(
        s["viewers_complete"].as_u64(),
        Some(VIEWERS as u64),
        "viewers missing parts: {}",
        s["missing_total"]
    );
    assert_eq!(s["min_received"].as_u64(), Some(expected));
    let requests = &s["requests"];
    assert!(requests["part"].as_u64().unwrap() >= VIEWERS as u64 * expected);
    assert!(requests["segment"].as_u64().unwrap() > 0 && requests["init"].as_u64().unwrap() > 0);
    // Delivery through the edge: bounded by the origin's hold limit, never a stall.
    let p99 = s["latency_ms"]["p99"].as_f64().unwrap();
    assert!(
        p99 < 1000.0 * td,
        "part delivery p99 {p99} ms through the edge (target duration {td} s)"
    );

    // The edge answered parts and segments from its cache.
    edge.stop();
    let log = edge.log();
    let media: Vec<_> = log
        .iter()
        .filter(|(_, _, u)| u.ends_with(".m4s") || u.ends_with(".mp4"))
        .collect();
    let hits = media.iter().filter(|(_, c, _)| c == "HIT").count();
    let ratio = hits as f64 / media.len().max(1) as f64;
    eprintln!(
        "edge: {} media requests, {hits} hits ({:.2} %)",
        media.len(),
        ratio * 100.0
    );
    assert!(
        media.len() as u64 >= VIEWERS as u64 * expected,
        "edge log has {} media requests",
        media.len()
    );
    assert!(
        ratio >= 0.95,
        "edge hit ratio {ratio:.3} for parts/segments"
    );
    let bad = log.iter().filter(|(st, _, _)| *st >= 500).count();
    assert!(bad * 200 <= log.len(), "{bad} 5xx answers at the edge");

    // The origin saw about one request per part, not one per viewer.
    let (b, a) = (kind_counts(&before), kind_counts(&after));
    let d = |k: &str| a[k] - b[k];
    let parts_published = after.get("ferrocast_parts_total") - before.get("ferrocast_parts_total");
    eprintln!(
        "origin during the run: {parts_published} parts published; requests {:?}",
        a.keys().map(|k| (*k, d(k))).collect::<Vec<_>>()
    );
    let min_published = (0.6 * RUN_SECS as f64 / pt).floor();
    assert!(
        parts_published >= min_published,
        "{parts_published} parts published in {RUN_SECS} s at PART-TARGET {pt}"
    );
    let part_ratio = d("part") / parts_published;
    assert!(
        (0.5..=1.5).contains(&part_ratio),
        "origin part requests per published part: {part_ratio:.2} (200 viewers)"
    );
    // Blocking reloads: the edge's collapsed one plus the load tool's own watcher, per part.
    let blocking_ratio = d("playlist_blocking") / parts_published;
    assert!(
        blocking_ratio <= 3.5,
        "origin blocking reloads per published part: {blocking_ratio:.2}"
    );
    assert!(
        d("segment") <= parts_published / 2.0,
        "origin segment requests {}",
        d("segment")
    );
}
