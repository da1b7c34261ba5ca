//! The real binary under SIGTERM: live playlists end with EXT-X-ENDLIST (even for a request
//! held across the signal) and the process exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hls::{self, MediaPlaylist};
use common::*;

/// The `ferrocast serve` process; killed on drop so a failing test leaves nothing behind.
struct ServerProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- ferrocast stderr ----\n{}", self.log());
        }
    }
}

/// Drops ANSI colour sequences, in case the log is coloured.
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn addr_after(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_playlists_and_exits_zero() {
    let dir = TempDir::new("sigterm");
    let config = dir.path().join("ferrocast.toml");
    std::fs::write(
        &config,
        config_toml(&ServerOpts::default(), "127.0.0.1:0", "127.0.0.1:0"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocast"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR")) // pipelines/ and web/ resolve from here
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrocast");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(strip_ansi(&line));
        }
    });
    let server = ServerProcess { child, log };
    let pid = server.child.id();

    // Ports were 0: read the bound ones from the log.
    let (http, rtmp) = poll(
        Duration::from_secs(20),
        "the `ferrocast listening` log line",
        || {
            let found = server.log.lock().unwrap().iter().find_map(|l| {
                if !l.contains("ferrocast listening") {
                    return None;
                }
                Some((addr_after(l, "http=")?, addr_after(l, "rtmp=")?))
            });
            async move { found }
        },
    )
    .await;

    let client = Http::new();
    let playlist_url = |q: &str| format!("http://{http}/live/{STREAM}/{RENDITION}/index.m3u8{q}");
    let _publisher = Publisher::start(
        &format!("rtmp://{rtmp}/live/{STREAM}?key={KEY}"),
        30.0,
        dir.path(),
    );
    let before = poll(Duration::from_secs(30), "a first segment", || {
        let client = client.clone();
        let url = playlist_url("");
        async move {
            let r = client.get(&url).await;
            let p = (r.status == 200).then(|| MediaPlaylist::parse(&r.text()))?;
            (!p.segments.is_empty()).then_some(p)
        }
    })
    .await;
    assert!(
        !before.endlist,
        "live playlist already ended:\n{}",
        before.text
    );
    assert!(before.preload_hint().is_some());

    // A blocking request for a segment that will never come, held across the signal.
    let far = before.last_part().expect("a published part").0 + 2;
    let held = tokio::spawn({
        let client = client.clone();
        let url = playlist_url(&format!("?_HLS_msn={far}&_HLS_part=0"));
        async move { client.get(&url).await }
    });
    // The server has it once its counter of blocking reloads does (the only one made).
    poll(
        Duration::from_secs(10),
        "the server to count the blocking request",
        || {
            let client = client.clone();
            let url = format!("http://{http}/metrics");
            async move {
                let m = Metrics::parse(&client.get(&url).await.text());
                let key = "ferrocast_http_requests_by_kind_total{kind=\"playlist_blocking\"}";
                (m.0.get(key).copied().unwrap_or(0.0) >= 1.0).then_some(())
            }
        },
    )
    .await;
    if held.is_finished() {
        let r = held.await.unwrap();
        panic!(
            "the blocking request for msn {far} was not held: {} {}",
            r.status,
            r.text()
        );
    }

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");

    let r = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("held request answered after SIGTERM")
        .expect("request task");
    assert_eq!(r.status, 200, "held request after SIGTERM: {}", r.text());
    let last = MediaPlaylist::parse(&r.text());
    assert!(
        last.endlist,
        "playlist after SIGTERM lacks EXT-X-ENDLIST:\n{}",
        last.text
    );
    hls::check_rules(&last);
    assert!(last.preload_hints.is_empty() && last.open.is_none());
    assert!(
        last.last_segment_msn() >= before.last_segment_msn(),
        "segments lost at shutdown:\nbefore:\n{}\nafter:\n{}",
        before.text,
        last.text
    );

    let mut server = server;
    let exit = poll(
        Duration::from_secs(15),
        "ferrocast to exit after SIGTERM",
        || {
            let s = server.child.try_wait().expect("try_wait");
            async move { s }
        },
    )
    .await;
    assert_eq!(
        exit.code(),
        Some(0),
        "ferrocast exit status after SIGTERM: {exit}\n{}",
        server.log()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        signalled.elapsed()
    );
    assert!(
        server.log().contains("shutting down"),
        "shutdown is logged:\n{}",
        server.log()
    );
}
