//! End to end with a real browser: ffmpeg publishes over RTMP to an in-process server, headless
//! Chromium (playwright-core, `tests/browser/play.js`) opens the stream list and the player page,
//! and the page's hls.js plays the LL-HLS stream.
//!
//! Asserts that the index page links the stream, that playback advances in real time without
//! fatal errors, that frames are decoded, and that glass-to-glass latency (now − the program
//! date-time of the frame on screen, i.e. from ingest to display) is under 5 s.
//!
//! The publisher is the shared harness's (`common::Publisher`): the cached OBS-like clip (720p30
//! H.264 High, 2 s GOP = segment target, AAC 48 kHz), looped in real time.
//!
//! Needs node, Debian's chromium, `node_modules/playwright-core` and `web/vendor/hls.min.js`
//! (all installed by `scripts/setup.sh test`), and ffmpeg. Fails, not skips, when they are missing.
//! See the measured numbers with `cargo test --release --test browser -- --nocapture`.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{check_prerequisites, root};
use common::{tail, KillOnDrop, Publisher, ServerOpts, TestServer};
use serde_json::Value;

const STREAM: &str = "browsertest";
const KEY: &str = "browser-test-key";
/// Seconds the player page is sampled (once a second).
const PLAY_SECS: u64 = 12;
/// Upper bound on publishing; the publisher is killed as soon as the browser is done (~25 s).
const PUBLISH_CAP_SECS: f64 = 60.0;
const G2G_LIMIT_MS: f64 = 5000.0;

/// Runs `node tests/browser/play.js ARGS...` (off the async runtime) and parses its JSON.
async fn play_js(args: Vec<String>, scratch: PathBuf, timeout: Duration) -> Value {
    tokio::task::spawn_blocking(move || {
        let tag = args
            .first()
            .cloned()
            .unwrap_or_default()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let out_path = scratch.join(format!("play-{tag}.out"));
        let err_path = scratch.join(format!("play-{tag}.err"));
        let mut child = KillOnDrop(
            Command::new("node")
                .arg(root().join("tests/browser/play.js"))
                .args(&args)
                .current_dir(root())
                .env("TMPDIR", &scratch)
                .stdin(Stdio::null())
                .stdout(File::create(&out_path).unwrap())
                .stderr(File::create(&err_path).unwrap())
                .spawn()
                .expect("start node"),
        );
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.0.try_wait().expect("wait for node") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "node tests/browser/play.js {args:?} did not finish in {timeout:?}\n{}",
                tail(&err_path, 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        assert!(
            status.success(),
            "node tests/browser/play.js {args:?} failed ({status}):\n{}\n{}",
            tail(&err_path, 30),
            out
        );
        serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!(
                "play.js printed no JSON ({e}):\n{out}\n{}",
                tail(&err_path, 30)
            )
        })
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// One line per sample, for the test output and failure messages.
fn trace(samples: &[Value]) -> String {
    let t0 = samples.first().and_then(|s| f(&s["t"])).unwrap_or(0.0);
    let n = |v: &Value, scale: f64| f(v).map_or("-".to_string(), |x| format!("{:.2}", x * scale));
    samples
        .iter()
        .map(|s| {
            format!(
                "  t={:>5.1}s currentTime={:>6} hls.latency={:>5}s g2g={:>5}s decoded={} state={}",
                (f(&s["t"]).unwrap_or(0.0) - t0) / 1000.0,
                n(&s["currentTime"], 1.0),
                n(&s["hlsLatency"], 1.0),
                n(&s["g2g"], 0.001),
                s["decoded"],
                s["state"].as_str().unwrap_or("?"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_plays_the_stream_at_low_latency() {
    check_prerequisites();
    // The origin serves web/ relative to the working directory, which cargo sets to the crate
    // root; make sure of it when the test binary is started by hand.
    std::env::set_current_dir(root()).expect("cd to the crate root");

    // Same config as the other end-to-end tests (2 s segments, 200 ms parts, a 6-segment
    // window, passthrough), with this test's stream and the default 10 s grace.
    let srv = TestServer::start(ServerOpts {
        window: 6,
        grace: "10s",
        streams: vec![(STREAM, KEY)],
        ..Default::default()
    })
    .await;
    let http = srv.http;
    let scratch = srv.dir.path().to_path_buf();

    let mut publisher =
        Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), PUBLISH_CAP_SECS, &scratch);
    srv.wait_live(STREAM, &mut publisher, Duration::from_secs(30))
        .await;

    // 1. The stream list links the stream and describes it.
    let idx = play_js(
        vec![
            "--index".into(),
            format!("http://{http}/"),
            STREAM.into(),
            "15".into(),
        ],
        scratch.clone(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(idx["status"], 200, "GET / : {idx}");
    assert_eq!(
        idx["found"], true,
        "the index page shows no link to /watch/{STREAM}: {idx}"
    );
    let card = idx["card"].as_str().unwrap_or("");
    assert!(
        card.contains("1280×720"),
        "the stream card does not show the resolution: {card:?}"
    );
    println!("index: link /watch/{STREAM} found, card {card:?}");

    // 2. The player plays it at the live edge.
    let url = format!("http://{http}/watch/{STREAM}");
    let out = play_js(
        vec![url.clone(), PLAY_SECS.to_string()],
        scratch.clone(),
        Duration::from_secs(PLAY_SECS + 60),
    )
    .await;
    if let Some(status) = publisher.try_wait() {
        panic!(
            "ffmpeg exited during playback ({status}):\n{}",
            tail(&publisher.log, 20)
        );
    }
    drop(publisher);

    let samples = out["samples"].as_array().cloned().unwrap_or_default();
    let summary = format!(
        "{}\n{}",
        serde_json::json!({
            "summary": out["summary"], "errors": out["errors"], "state": out["state"],
            "mode": out["mode"], "restarts": out["restarts"], "consoleErrors": out["consoleErrors"],
            "error": out["error"], "status": out["status"],
        }),
        trace(&samples)
    );
    assert!(out["error"].is_null(), "player page: {summary}");
    assert_eq!(
        out["hlsSupported"], true,
        "hls.js reports no MSE support in Chromium: {summary}"
    );
    assert!(
        samples.len() as u64 >= PLAY_SECS - 1,
        "too few samples: {summary}"
    );

    // Playback window: from the first sample that is playing (never the very first one, which
    // may be mid-startup) to the last.
    let first_playing = samples
        .iter()
        .position(|s| f(&s["currentTime"]).unwrap_or(0.0) > 0.0);
    let Some(first_playing) = first_playing else {
        panic!("video never started playing: {summary}");
    };
    let s0 = &samples[first_playing.max(1)];
    let s1 = samples.last().unwrap();
    let wall = (f(&s1["t"]).unwrap() - f(&s0["t"]).unwrap()) / 1000.0;
    let advance = f(&s1["currentTime"]).unwrap() - f(&s0["currentTime"]).unwrap();
    let decoded = f(&s1["decoded"]).unwrap_or(0.0);
    let dropped = f(&s1["dropped"]).unwrap_or(0.0);
    let window = &samples[first_playing.max(1)..];
    let mut g2g: Vec<f64> = window.iter().filter_map(|s| f(&s["g2g"])).collect();
    g2g.sort_by(|a, b| a.total_cmp(b));
    let mut lat: Vec<f64> = window
        .iter()
        .filter_map(|s| f(&s["hlsLatency"]))
        .filter(|v| *v > 0.0)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let med = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[v.len() / 2]
        }
    };

    println!(
        "browser: Chromium {} hls.js {}; playing after {} s; currentTime +{advance:.2} s in {wall:.2} s wall; \
         decoded {decoded} dropped {dropped}; hls.latency median {:.2} s (min {:.2}, max {:.2}); \
         glass-to-glass median {:.0} ms (min {:.0}, max {:.0}); hls.js errors {}",
        out["browserVersion"].as_str().unwrap_or("?"),
        out["hlsVersion"].as_str().unwrap_or("?"),
        first_playing + 1,
        med(&lat),
        lat.first().copied().unwrap_or(f64::NAN),
        lat.last().copied().unwrap_or(f64::NAN),
        med(&g2g),
        g2g.first().copied().unwrap_or(f64::NAN),
        g2g.last().copied().unwrap_or(f64::NAN),
        out["errors"],
    );
    println!("{}", trace(&samples));

    assert!(
        s1["fatal"].is_null(),
        "fatal hls.js error {}: {summary}",
        s1["fatal"]
    );
    assert!(
        s1["videoError"].is_null(),
        "video element error {}: {summary}",
        s1["videoError"]
    );
    assert!(
        wall >= 8.5,
        "playback started too late ({} s after load), only {wall:.1} s to measure: {summary}",
        first_playing + 1
    );
    assert!(
        advance >= 8.0,
        "currentTime advanced only {advance:.2} s in {wall:.2} s of wall time: {summary}"
    );
    assert!(decoded > 200.0, "only {decoded} frames decoded: {summary}");
    assert!(
        !g2g.is_empty(),
        "no glass-to-glass samples (hls.playingDate is null: no PROGRAM-DATE-TIME?): {summary}"
    );
    assert!(
        med(&g2g) < G2G_LIMIT_MS,
        "glass-to-glass median {:.0} ms is not under {G2G_LIMIT_MS} ms: {summary}",
        med(&g2g)
    );
    drop(srv);
}

/// Seconds of forced level switching (a switch every 3 s).
const SWITCH_SECS: u64 = 18;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_switches_rungs_without_stalling() {
    check_prerequisites();
    std::env::set_current_dir(root()).expect("cd to the crate root");
    let srv = TestServer::start(ServerOpts {
        window: 6,
        grace: "10s",
        streams: vec![(STREAM, KEY)],
        pipeline: "default",
        ..Default::default()
    })
    .await;
    let scratch = srv.dir.path().to_path_buf();
    let mut publisher =
        Publisher::start(&srv.rtmp_url(STREAM, Some(KEY)), PUBLISH_CAP_SECS, &scratch);
    srv.wait_live(STREAM, &mut publisher, Duration::from_secs(30))
        .await;
    let out = play_js(
        vec![
            "--switch".into(),
            format!("http://{}/watch/{STREAM}", srv.http),
            SWITCH_SECS.to_string(),
        ],
        scratch.clone(),
        Duration::from_secs(SWITCH_SECS + 90),
    )
    .await;
    drop(publisher);
    let samples = out["samples"].as_array().cloned().unwrap_or_default();
    let summary = format!(
        "{}\n{}",
        serde_json::json!({
            "error": out["error"], "levels": out["levels"], "forced": out["forced"],
            "switched": out["switched"], "errors": out["errors"], "state": out["state"],
        }),
        samples
            .iter()
            .map(|s| format!(
                "  currentTime={:.2} level={} videoHeight={} state={} errors={}",
                f(&s["currentTime"]).unwrap_or(-1.0),
                s["level"],
                s["videoHeight"],
                s["state"].as_str().unwrap_or("?"),
                s["errors"]
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("switching: {summary}");
    assert!(out["error"].is_null(), "{summary}");
    let heights: std::collections::BTreeSet<u64> = out["levels"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v["height"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(
        heights,
        [360, 480, 720].into_iter().collect(),
        "levels: {summary}"
    );
    let switched: std::collections::BTreeSet<u64> = out["switched"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v["level"].as_u64()).collect())
        .unwrap_or_default();
    assert!(
        switched.len() >= 3,
        "hls.js did not switch through every level: {summary}"
    );
    let shown: std::collections::BTreeSet<u64> = samples
        .iter()
        .filter_map(|s| s["videoHeight"].as_u64())
        .collect();
    assert!(
        shown.len() >= 2,
        "the picture size never changed: {summary}"
    );
    // No stall: the picture keeps moving in every one-second sample.
    for w in samples.windows(2) {
        let dt = f(&w[1]["currentTime"]).unwrap_or(0.0) - f(&w[0]["currentTime"]).unwrap_or(0.0);
        assert!(
            dt > 0.5,
            "playback stalled ({dt:.2} s in one second) around a switch: {summary}"
        );
        assert!(w[1]["fatal"].is_null(), "fatal error: {summary}");
    }
    drop(srv);
}
