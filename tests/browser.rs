//! End to end with a real browser: ffmpeg publishes over RTMP to an in-process server, headless
//! Chromium (playwright-core, `tests/browser/play.js`) opens the stream list and the player page,
//! and the page's hls.js plays the LL-HLS stream.
//!
//! Asserts that the index page links the stream, that playback advances in real time without
//! fatal errors, that frames are decoded, and that glass-to-glass latency (now − the program
//! date-time of the frame on screen, i.e. from ingest to display) is under 5 s.
//!
//! Needs node, Debian's chromium, `node_modules/playwright-core` and `web/vendor/hls.min.js`
//! (all installed by `scripts/setup.sh test`), and ffmpeg. Fails, not skips, when they are missing.
//! See the measured numbers with `cargo test --release --test browser -- --nocapture`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const STREAM: &str = "browsertest";
const KEY: &str = "browser-test-key";
/// Seconds the player page is sampled (once a second).
const PLAY_SECS: u64 = 12;
/// Upper bound on publishing; the publisher is killed as soon as the browser is done (~25 s).
const PUBLISH_CAP_SECS: u64 = 60;
const G2G_LIMIT_MS: f64 = 5000.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Fails with one clear message naming everything that is missing.
fn check_prerequisites() {
    let r = root();
    let mut missing = Vec::new();
    if !runs("node", "--version") {
        missing.push("`node` on PATH".to_string());
    }
    if !chromium().exists() {
        missing.push(format!(
            "{} (Debian package chromium)",
            chromium().display()
        ));
    }
    if !r.join("node_modules/playwright-core/package.json").exists() {
        missing.push("node_modules/playwright-core".to_string());
    }
    if !r.join("web/vendor/hls.min.js").exists() {
        missing.push("web/vendor/hls.min.js (copied from node_modules/hls.js)".to_string());
    }
    if !runs("ffmpeg", "-version") {
        missing.push("`ffmpeg` on PATH".to_string());
    }
    assert!(
        missing.is_empty(),
        "browser test prerequisites missing: {}.\nRun `scripts/setup.sh test` from the repository root \
         (installs chromium, node, ffmpeg and the npm packages, and copies hls.js to web/vendor/).",
        missing.join(", ")
    );
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("ferrocast-browser-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop, so no failure path leaks it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// OBS-like publisher: 720p30 H.264 High, 2 s GOP (= segment target), CBR 3 Mb/s, AAC 48 kHz.
fn publish(rtmp: std::net::SocketAddr, log: &Path) -> KillOnDrop {
    let url = format!("rtmp://{rtmp}/live/{STREAM}?key={KEY}");
    let encode = "-c:v libx264 -preset veryfast -tune zerolatency -profile:v high \
                  -pix_fmt yuv420p -g 60 -keyint_min 60 -sc_threshold 0 \
                  -b:v 3000k -maxrate 3000k -bufsize 3000k -c:a aac -b:a 128k -ar 48000 -ac 2 -f flv";
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &PUBLISH_CAP_SECS.to_string()])
        .args(encode.split_whitespace())
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).expect("ffmpeg log file"))
        .spawn()
        .expect("start ffmpeg");
    KillOnDrop(child)
}

/// Waits until the multivariant playlist answers and its first media playlist holds a complete
/// segment, so the player starts on a stream that is really flowing.
async fn wait_for_playlist(
    http: std::net::SocketAddr,
    publisher: &mut KillOnDrop,
    ffmpeg_log: &Path,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("http://{http}/live/{STREAM}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        if let Ok(Some(status)) = publisher.0.try_wait() {
            panic!("ffmpeg exited early ({status}):\n{}", tail(ffmpeg_log, 20));
        }
        assert!(
            Instant::now() < deadline,
            "the playlist did not appear within 30 s (last: {last})\nffmpeg:\n{}",
            tail(ffmpeg_log, 20)
        );
        match client.get(format!("{base}index.m3u8")).send().await {
            Ok(r) if r.status().is_success() => {
                let text = r.text().await.unwrap_or_default();
                if let Some(uri) = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    match client.get(format!("{base}{uri}")).send().await {
                        Ok(m) if m.status().is_success() => {
                            let media = m.text().await.unwrap_or_default();
                            if media.contains("#EXTINF") {
                                return;
                            }
                            last = "media playlist has no complete segment yet".into();
                        }
                        Ok(m) => last = format!("media playlist: HTTP {}", m.status()),
                        Err(e) => last = format!("media playlist: {e}"),
                    }
                }
            }
            Ok(r) => last = format!("multivariant: HTTP {}", r.status()),
            Err(e) => last = format!("multivariant: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

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

    let scratch = TempDir::new();
    let cfg_path = scratch.0.join("ferrocast.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\nsrt = \"127.0.0.1:0\"\n\n\
             [hls]\nsegment_target = \"2s\"\npart_target = \"200ms\"\nwindow = 6\n\n\
             [[stream]]\nname = \"{STREAM}\"\nkey = \"{KEY}\"\npipeline = \"passthrough\"\n"
        ),
    )
    .unwrap();
    let cfg = ferrocast::config::load_with_base(&cfg_path, Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|d| panic!("test config does not load: {d:?}"));
    let server = ferrocast::server::Server::start(cfg)
        .await
        .expect("server starts");
    let http = server.bound.http;

    let ffmpeg_log = scratch.0.join("ffmpeg.log");
    let mut publisher = publish(server.bound.rtmp, &ffmpeg_log);
    wait_for_playlist(http, &mut publisher, &ffmpeg_log).await;

    // 1. The stream list links the stream and describes it.
    let idx = play_js(
        vec![
            "--index".into(),
            format!("http://{http}/"),
            STREAM.into(),
            "15".into(),
        ],
        scratch.0.clone(),
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
        scratch.0.clone(),
        Duration::from_secs(PLAY_SECS + 60),
    )
    .await;
    if let Ok(Some(status)) = publisher.0.try_wait() {
        panic!(
            "ffmpeg exited during playback ({status}):\n{}",
            tail(&ffmpeg_log, 20)
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
    drop(server);
}
