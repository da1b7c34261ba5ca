//! Server configuration (`config/ferrocast.toml`) and pipeline files (`pipelines/NAME.toml`).
//!
//! The files are walked by hand over a span-keeping `toml_edit` document instead of being
//! deserialized with serde, because serde stops at the first problem while `ferrocast check`
//! must report every problem at once, each as `file:line:col: message`.
//!
//! Limits are chosen so that a config that loads can actually be served: each one is a `const`
//! beside its setting, with the reason next to it.
//!
//! - this file: the model ([`Config`] and its sections), defaults and limits, [`load`].
//! - `diag`: diagnostics and the typed getters every parser below uses.
//! - `sections`: the config file's top level, `[server]`, `[hls]`, `[srt]`, `[chat]`.
//! - `streams`: the `[[stream]]` entries.
//! - `pipeline_file`: finding and reading pipeline files ([`load_pipeline`]).
//! - [`ladder`]: the pipeline file model, its `[[rung]]` tables and rung selection.
//!
//! Nothing here depends on the rest of the crate: the server's modules read the config, not
//! the other way round.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cluster;
mod diag;
pub mod ladder;
mod pipeline_file;
mod sections;
mod streams;

use diag::Source;

pub use cluster::ClusterConfig;
pub use diag::{parse_duration, Diagnostic, MAX_NAME_LEN};
pub use ladder::{Encoder, Pipeline, Pos, Rung};
pub use pipeline_file::{load_pipeline, DEFAULT_PASSTHROUGH, PIPELINES_DIR};

/// Config file used when `--config` is not given (relative to the working directory).
pub const DEFAULT_CONFIG_PATH: &str = "config/ferrocast.toml";

/// A loaded and validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file it was loaded from.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub hls: HlsConfig,
    pub srt: SrtConfig,
    pub chat: ChatConfig,
    /// `[cluster]`: None for a node on its own (no NATS).
    pub cluster: Option<ClusterConfig>,
    /// Who may publish; a name with no entry cannot publish.
    pub streams: Vec<StreamConfig>,
    /// Every pipeline used by a stream, loaded, by name.
    pub pipelines: BTreeMap<String, Pipeline>,
}

impl Config {
    /// A config with every default and no streams, for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Config {
        Config {
            path: PathBuf::from("test.toml"),
            server: ServerConfig::default(),
            hls: HlsConfig::default(),
            srt: SrtConfig::default(),
            chat: ChatConfig::default(),
            cluster: None,
            streams: Vec::new(),
            pipelines: BTreeMap::new(),
        }
    }

    /// The `[[stream]]` entry for `name`, if that name may publish.
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.name == name)
    }
}

/// HTTP origin (playlists, media, chat, API, metrics), TCP.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
/// RTMP ingest, TCP; 1935 is the port OBS assumes.
pub const DEFAULT_RTMP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1935));
/// SRT ingest, UDP, so it may share a port number with a TCP listener.
pub const DEFAULT_SRT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9000));

/// Listen addresses (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    pub srt: SocketAddr,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: DEFAULT_HTTP,
            rtmp: DEFAULT_RTMP,
            srt: DEFAULT_SRT,
        }
    }
}

impl ServerConfig {
    /// Listeners that cannot all bind. HTTP and RTMP are TCP and must not overlap; SRT is UDP
    /// and shares no port space with them. Public so `serve` can re-check after `--http` etc.
    pub fn conflicts(&self) -> Vec<String> {
        if tcp_overlap(self.http, self.rtmp) {
            vec![format!(
                "rtmp address {} conflicts with http address {} (both TCP)",
                self.rtmp, self.http
            )]
        } else {
            Vec::new()
        }
    }
}

/// Whether two TCP listeners would fight for the same port (port 0 means "any free port").
fn tcp_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    // An unspecified address takes the port on every address of its family; on Linux `[::]`
    // is dual-stack by default and takes IPv4 too.
    let covers =
        |x: IpAddr, y: IpAddr| x.is_unspecified() && (x.is_ipv4() == y.is_ipv4() || x.is_ipv6());
    a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip())
}

/// Segments are cut on the first keyframe at or after this; 2s is Apple's LL-HLS recommendation.
pub const DEFAULT_SEGMENT_TARGET: Duration = Duration::from_secs(2);
/// Shortest segment target: below this, keyframe spacing of real encoders makes it meaningless.
pub const MIN_SEGMENT_TARGET: Duration = Duration::from_millis(500);
/// Longest segment target: beyond this, neither "live" nor LL-HLS blocking reload makes sense.
pub const MAX_SEGMENT_TARGET: Duration = Duration::from_secs(30);

/// LL-HLS part target; 200ms gives sub-second glass-to-glass latency with ~10 parts a segment.
pub const DEFAULT_PART_TARGET: Duration = Duration::from_millis(200);
/// Shortest part target: below this, per-part HTTP and fMP4 overhead dominates.
pub const MIN_PART_TARGET: Duration = Duration::from_millis(50);
// The longest part target is segment_target / 2: LL-HLS only lowers latency when a segment is
// made of several parts; one part per segment would just be a slower plain HLS.
const _: () = assert!(DEFAULT_PART_TARGET.as_nanos() * 2 <= MIN_SEGMENT_TARGET.as_nanos());

/// Segments kept in the live playlist.
pub const DEFAULT_WINDOW: usize = 6;
/// RFC 8216 6.2.2: a live playlist must span at least three target durations.
pub const MIN_WINDOW: usize = 3;
/// Upper bound on the in-memory window, so one stream cannot hold unbounded memory.
pub const MAX_WINDOW: usize = 1000;

/// How long a publisher may be gone before the playlist ends with `EXT-X-ENDLIST`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Longest grace: a stream's buffers and name are held this long after the publisher leaves.
pub const MAX_GRACE: Duration = Duration::from_secs(3600);

/// LL-HLS packaging (`[hls]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    pub segment_target: Duration,
    pub part_target: Duration,
    pub window: usize,
    pub grace: Duration,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_target: DEFAULT_SEGMENT_TARGET,
            part_target: DEFAULT_PART_TARGET,
            window: DEFAULT_WINDOW,
            grace: DEFAULT_GRACE,
        }
    }
}

/// SRT receive latency (TSBPD buffer) when `[srt] latency` is not set; libsrt's own default.
pub const DEFAULT_SRT_LATENCY: Duration = Duration::from_millis(120);
/// SRT latencies accepted: below 20 ms nothing can be retransmitted, above 8 s is not live.
pub const SRT_LATENCY_RANGE: (Duration, Duration) =
    (Duration::from_millis(20), Duration::from_secs(8));

/// SRT ingest settings (`[srt]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtConfig {
    /// Receive latency offered to callers (SRT uses the larger of both sides').
    pub latency: Duration,
    /// Stream that callers without a streamid publish to (encoders that cannot set one);
    /// the stream must have a passphrase, which is then the only credential.
    pub default_stream: Option<String>,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            latency: DEFAULT_SRT_LATENCY,
            default_stream: None,
        }
    }
}

/// Chat log file (`[chat] store`), relative to the working directory like every path.
pub const DEFAULT_CHAT_STORE: &str = "data/chat.db";
/// Messages a viewer gets on join; enough to see the conversation, small enough for a frame.
pub const DEFAULT_CHAT_HISTORY: usize = 50;
/// Most history messages on join: the welcome frame stays well under the frame size limit.
pub const MAX_CHAT_HISTORY: usize = 500;
/// Longest message in characters (Twitch allows 500).
pub const DEFAULT_CHAT_MAX_MESSAGE_LEN: usize = 500;
/// Upper bound on `max_message_len`: a frame of four bytes per character stays below 64 KiB.
pub const MAX_CHAT_MESSAGE_LEN: usize = 10_000;
/// Token bucket per connection: this many messages at once…
pub const DEFAULT_CHAT_BURST: u32 = 5;
/// …then one more per this interval ("0s" turns the rate limit off).
pub const DEFAULT_CHAT_REFILL: Duration = Duration::from_secs(1);
/// Slow mode: one message per name per interval; "0s" (the default) is off.
pub const DEFAULT_CHAT_SLOW_MODE: Duration = Duration::ZERO;
/// Connections per room: one process here holds about 20,000 sockets (ulimit -n).
pub const DEFAULT_CHAT_MAX_CONNECTIONS: usize = 20_000;
/// An ended stream's room stays readable (and connected viewers stay) this long.
pub const DEFAULT_CHAT_KEEP_AFTER_END: Duration = Duration::from_secs(300);
/// Frames queued for one connection before it counts as a slow reader and is dropped; twice
/// the store's commit batch (a batch is broadcast at once).
pub const DEFAULT_CHAT_SEND_QUEUE: usize = 256;

/// Chat rooms (`[chat]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// SQLite file of the chat log.
    pub store: PathBuf,
    pub history: usize,
    pub max_message_len: usize,
    pub burst: u32,
    pub refill: Duration,
    pub slow_mode: Duration,
    pub max_connections: usize,
    pub keep_after_end: Duration,
    pub send_queue: usize,
    /// Secrets that make a connection a moderator (`?token=`).
    pub moderator_tokens: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            store: PathBuf::from(DEFAULT_CHAT_STORE),
            history: DEFAULT_CHAT_HISTORY,
            max_message_len: DEFAULT_CHAT_MAX_MESSAGE_LEN,
            burst: DEFAULT_CHAT_BURST,
            refill: DEFAULT_CHAT_REFILL,
            slow_mode: DEFAULT_CHAT_SLOW_MODE,
            max_connections: DEFAULT_CHAT_MAX_CONNECTIONS,
            keep_after_end: DEFAULT_CHAT_KEEP_AFTER_END,
            send_queue: DEFAULT_CHAT_SEND_QUEUE,
            moderator_tokens: Vec::new(),
        }
    }
}

/// Pipeline used by a `[[stream]]` without `pipeline = `.
pub const DEFAULT_PIPELINE: &str = "default";
/// Longest stream key; bounds what an RTMP/SRT handshake has to carry.
pub const MAX_KEY_LEN: usize = 256;
/// Characters that would break `NAME?key=SECRET` (RTMP) or `#!::r=..,s=SECRET` (SRT) parsing.
pub const KEY_FORBIDDEN: &[char] = &['?', '&', ','];
/// Key of the shipped example config; `warnings` flags it so it is not left in production.
pub const EXAMPLE_KEY: &str = "demo-key";
/// SRT passphrase length limits in bytes (the SRT specification's `SRTO_PASSPHRASE`).
pub const SRT_PASSPHRASE_LEN: (usize, usize) = (10, 79);

/// One `[[stream]]`: who may publish under `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub name: String,
    /// Publish secret; never appears in a playback URL.
    pub key: String,
    /// Name of the pipeline file (`pipelines/NAME.toml`).
    pub pipeline: String,
    /// SRT encryption passphrase: SRT callers must encrypt with it (RTMP is unaffected).
    pub passphrase: Option<String>,
}

/// Things that load but are probably not what the operator wants.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.streams.is_empty() {
        out.push(format!(
            "{}: no [[stream]] entries: nothing can publish",
            config.path.display()
        ));
    }
    for s in &config.streams {
        if s.key == EXAMPLE_KEY {
            out.push(format!(
                "{}: stream `{}` uses the example key `{EXAMPLE_KEY}`; change it before exposing the server",
                config.path.display(),
                s.name
            ));
        }
    }
    out
}

/// Load the config at `path` and every pipeline it uses, from `pipelines/` under the working
/// directory. Returns every problem found, in file order, config file first.
pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    load_with_base(path, Path::new(""))
}

/// [`load`] with pipeline files looked up under `base_dir/pipelines/` (tests use a temp dir).
pub fn load_with_base(path: &Path, base_dir: &Path) -> Result<Config, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read config file: {e}"),
        }]
    })?;
    let mut src = Source::new(path, &text);
    let parsed = src
        .parse()
        .map(|doc| sections::parse_config(&mut src, &doc));
    let mut diags = src.finish();
    let Some((cluster, server, hls, srt, chat, streams, refs)) = parsed else {
        return Err(diags);
    };
    let (pipelines, mut more) = pipeline_file::load_used(path, &text, &refs, base_dir);
    diags.append(&mut more);
    // Keep config-file problems first and in file order, then each pipeline's in turn.
    diags.sort_by_key(|d| (d.file != path, d.file.clone(), d.line, d.col));
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Config {
        path: path.to_path_buf(),
        server,
        hls,
        srt,
        chat,
        cluster,
        streams,
        pipelines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh temp dir holding `files` (relative path, contents).
    fn setup(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-config-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (rel, text) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const PASSTHROUGH: &str = "[source]\npassthrough = true\n";

    /// Load `config` (with a valid default pipeline unless `files` replaces it) and return the
    /// diagnostics rendered with the temp dir stripped.
    fn errors(config: &str, files: &[(&str, &str)]) -> Vec<String> {
        let mut all = vec![
            ("config/ferrocast.toml", config),
            ("pipelines/default.toml", PASSTHROUGH),
        ];
        all.extend_from_slice(files);
        let dir = setup(&all);
        let result = load_with_base(&dir.join("config/ferrocast.toml"), &dir);
        let prefix = format!("{}/", dir.display());
        let out = match result {
            Ok(c) => panic!("expected errors, loaded {c:?}"),
            Err(d) => d
                .iter()
                .map(|d| d.to_string().replace(&prefix, ""))
                .collect(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    fn ok(config: &str, files: &[(&str, &str)]) -> Config {
        let mut all = vec![
            ("config/ferrocast.toml", config),
            ("pipelines/default.toml", PASSTHROUGH),
        ];
        all.extend_from_slice(files);
        let dir = setup(&all);
        let c = load_with_base(&dir.join("config/ferrocast.toml"), &dir);
        let _ = std::fs::remove_dir_all(&dir);
        c.unwrap_or_else(|d| panic!("{d:#?}"))
    }

    const STREAM: &str = "[[stream]]\nname = \"demo\"\nkey = \"k\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = ok(STREAM, &[]);
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.hls, HlsConfig::default());
        assert_eq!(
            c.stream("demo").map(|s| s.pipeline.as_str()),
            Some("default")
        );
        assert!(c.stream("other").is_none());
        assert!(c.pipelines["default"].source);
        assert!(warnings(&c).is_empty());
    }

    #[test]
    fn inline_forms_are_accepted() {
        let c = ok(
            "hls.window = 5\nserver = { http = \"127.0.0.1:8081\" }\n\
             stream = [{ name = \"a\", key = \"k\", pipeline = \"passthrough\" }]\n",
            &[("pipelines/passthrough.toml", "description = \"x\"\n")],
        );
        assert_eq!(c.hls.window, 5);
        assert_eq!(c.server.http, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.streams[0].pipeline, "passthrough");
        assert_eq!(c.pipelines["passthrough"].description.as_deref(), Some("x"));
        assert!(
            c.pipelines["passthrough"].source,
            "passthrough defaults to on"
        );
        assert!(
            !c.pipelines.contains_key("default"),
            "only used pipelines are loaded"
        );
    }

    #[test]
    fn empty_config_is_valid_with_a_warning() {
        let c = ok("", &[]);
        assert!(c.streams.is_empty() && c.pipelines.is_empty());
        let w = warnings(&c);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].ends_with("no [[stream]] entries: nothing can publish"),
            "{w:?}"
        );
    }

    #[test]
    fn syntax_error() {
        assert_eq!(
            errors("[hls]\nwindow = = 3\n", &[]),
            ["config/ferrocast.toml:2:10: TOML syntax error: invalid string; expected `\"`, `'`"]
        );
    }

    #[test]
    fn unknown_keys_everywhere() {
        let cfg = "foo = 1\n[server]\nhtp = \"0.0.0.0:1\"\n[hls]\nsegment_targt = \"2s\"\n[hls.extra]\n[[stream]]\nname = \"a\"\nkey = \"k\"\npipe = \"x\"\n[bar]\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:1:1: unknown key `foo` at top level; expected one of: server, hls, srt, chat, stream, cluster",
                "config/ferrocast.toml:3:1: unknown key `htp` in [server]; expected one of: http, rtmp, srt (did you mean `http`?)",
                "config/ferrocast.toml:5:1: unknown key `segment_targt` in [hls]; expected one of: segment_target, part_target, window, grace (did you mean `segment_target`?)",
                "config/ferrocast.toml:6:6: unknown table `extra` in [hls]; expected one of: segment_target, part_target, window, grace",
                "config/ferrocast.toml:10:1: unknown key `pipe` in [[stream]]; expected one of: name, key, pipeline, passphrase",
                "config/ferrocast.toml:11:2: unknown table `bar` at top level; expected one of: server, hls, srt, chat, stream, cluster",
            ]
        );
    }

    #[test]
    fn wrong_types() {
        let cfg =
            "server = 3\n[hls]\nwindow = \"6\"\ngrace = 10\n[[stream]]\nname = 7\nkey = \"k\"\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:1:10: `server` must be a table ([server]), found integer",
                "config/ferrocast.toml:3:10: `window` in [hls] must be an integer, found string",
                "config/ferrocast.toml:4:9: `grace` in [hls] must be a duration string such as \"2s\" or \"200ms\", found integer",
                "config/ferrocast.toml:6:8: `name` in [[stream]] must be a string, found integer",
            ]
        );
    }

    #[test]
    fn bad_durations_and_ranges() {
        let cfg =
            "[hls]\nsegment_target = \"2h\"\npart_target = \"1.5s\"\nwindow = 2\ngrace = \"61m\"\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:2:18: `segment_target` in [hls]: invalid duration `2h`: unknown unit `h`; use ms, s or m",
                "config/ferrocast.toml:3:15: `part_target` in [hls] must be between 50ms and 1s, found 1.5s (at most half of segment_target: LL-HLS needs several parts per segment)",
                "config/ferrocast.toml:4:10: `window` in [hls] must be between 3 and 1000 segments, found 2 (RFC 8216: a live playlist spans at least 3 target durations)",
                "config/ferrocast.toml:5:9: `grace` in [hls] must be at most 60m, found 61m (the stream is held this long after its publisher leaves)",
            ]
        );
        assert_eq!(
            errors("[hls]\nsegment_target = \"100ms\"\n", &[]),
            ["config/ferrocast.toml:2:18: `segment_target` in [hls] must be between 500ms and 30s, found 100ms (segments are cut on keyframes; shorter is not achievable, longer is not live)"]
        );
        let c = ok(
            "[hls]\nsegment_target = \"1s\"\npart_target = \"0.5s\"\n",
            &[],
        );
        assert_eq!(c.hls.part_target, Duration::from_millis(500));
    }

    #[test]
    fn bad_addresses_and_conflicts() {
        let cfg = "[server]\nhttp = \"localhost:8080\"\nsrt = \"0.0.0.0:99999\"\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:2:8: `http` in [server]: invalid socket address `localhost:8080`; expected IP:PORT such as \"0.0.0.0:8080\" (host names are not accepted)",
                "config/ferrocast.toml:3:7: `srt` in [server]: invalid socket address `0.0.0.0:99999`; expected IP:PORT such as \"0.0.0.0:9000\" (host names are not accepted)",
            ]
        );
        assert_eq!(
            errors("[server]\nhttp = \"0.0.0.0:8080\"\nrtmp = \"127.0.0.1:8080\"\n", &[]),
            ["config/ferrocast.toml:3:8: rtmp address 127.0.0.1:8080 conflicts with http address 0.0.0.0:8080 (both TCP)"]
        );
        // SRT is UDP: sharing the HTTP port number is fine; so are distinct IPs or port 0.
        ok("[server]\nsrt = \"0.0.0.0:8080\"\n", &[]);
        ok(
            "[server]\nhttp = \"127.0.0.1:80\"\nrtmp = \"127.0.0.2:80\"\n",
            &[],
        );
        ok(
            "[server]\nhttp = \"127.0.0.1:0\"\nrtmp = \"127.0.0.1:0\"\n",
            &[],
        );
        assert!(tcp_overlap(
            "[::]:1".parse().unwrap(),
            "127.0.0.1:1".parse().unwrap()
        ));
        assert!(!tcp_overlap(
            "0.0.0.0:1".parse().unwrap(),
            "[::1]:1".parse().unwrap()
        ));
    }

    #[test]
    fn stream_problems() {
        let long = "x".repeat(65);
        let cfg = format!(
            "[[stream]]\nname = \"demo\"\nkey = \"k\"\n\
             [[stream]]\nname = \"demo\"\nkey = \"k2\"\n\
             [[stream]]\nname = \"bad name\"\nkey = \"k\"\n\
             [[stream]]\nname = \"{long}\"\nkey = \"k\"\n\
             [[stream]]\nname = \"nokey\"\n\
             [[stream]]\nname = \"q\"\nkey = \"a?b\"\n\
             [[stream]]\nname = \"e\"\nkey = \"\"\n\
             [[stream]]\nname = \"w\"\nkey = \"a b\"\npipeline = \"../etc\"\n\
             [[stream]]\nkey = \"k\"\n"
        );
        assert_eq!(
            errors(&cfg, &[]),
            [
                "config/ferrocast.toml:5:8: duplicate stream name `demo` (first defined on line 2)",
                "config/ferrocast.toml:8:8: invalid stream name `bad name`: must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-` (it appears in URLs)",
                &format!("config/ferrocast.toml:11:8: invalid stream name `{long}`: must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-` (it appears in URLs)"),
                "config/ferrocast.toml:13:1: [[stream]] `nokey` is missing `key` (the publish secret)",
                "config/ferrocast.toml:17:7: stream `q`: invalid `key`: must not contain `?` (it would break the RTMP `NAME?key=SECRET` or SRT streamid syntax)",
                "config/ferrocast.toml:20:7: stream `e`: invalid `key`: must not be empty",
                "config/ferrocast.toml:23:7: stream `w`: invalid `key`: must not contain whitespace or control characters",
                "config/ferrocast.toml:24:12: invalid pipeline name `../etc`: must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`",
                "config/ferrocast.toml:25:1: [[stream]] is missing `name`",
            ]
        );
    }

    #[test]
    fn stream_as_plain_table_is_an_error() {
        assert_eq!(
            errors("[stream]\nname = \"a\"\n", &[]),
            ["config/ferrocast.toml:1:1: `stream` must be an array of tables (write [[stream]]), found table"]
        );
    }

    #[test]
    fn missing_pipeline_file() {
        let cfg = "[[stream]]\nname = \"a\"\nkey = \"k\"\npipeline = \"hd\"\n[[stream]]\nname = \"b\"\nkey = \"k\"\npipeline = \"hd\"\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:4:12: pipeline `hd`: pipelines/hd.toml not found",
                "config/ferrocast.toml:8:12: pipeline `hd`: pipelines/hd.toml not found",
            ]
        );
        let dir = setup(&[("c.toml", STREAM)]);
        let out: Vec<String> = load_with_base(&dir.join("c.toml"), &dir)
            .unwrap_err()
            .iter()
            .map(|d| d.to_string().replace(&format!("{}/", dir.display()), ""))
            .collect();
        assert_eq!(
            out,
            ["c.toml:1:1: pipeline `default` (the default): pipelines/default.toml not found"]
        );
    }

    #[test]
    fn broken_pipeline_files() {
        let cfg = "[[stream]]\nname = \"a\"\nkey = \"k\"\npipeline = \"p1\"\n[[stream]]\nname = \"b\"\nkey = \"k\"\npipeline = \"p2\"\n[[stream]]\nname = \"c\"\nkey = \"k\"\npipeline = \"p3\"\n";
        let p1 = "description = 5\n[source]\npassthrough = false\nbitrate = 1\n\n[[rung]]\nheight = 720\n";
        let p2 = "[source\n";
        let p3 = "source = \"yes\"\n";
        assert_eq!(
            errors(cfg, &[("pipelines/p1.toml", p1), ("pipelines/p2.toml", p2), ("pipelines/p3.toml", p3)]),
            [
                "pipelines/p1.toml:1:15: `description` in the pipeline must be a string, found integer",
                "pipelines/p1.toml:4:1: unknown key `bitrate` in [source]; expected one of: passthrough",
                "pipelines/p1.toml:6:1: [[rung]] is missing `name`",
                "pipelines/p1.toml:6:1: [[rung]] is missing `bitrate` (video kbit/s, e.g. bitrate = 1200)",
                "pipelines/p2.toml:1:8: TOML syntax error: invalid table header; expected `.`, `]`",
                "pipelines/p3.toml:1:10: `source` must be a table ([source]), found string",
            ]
        );
    }

    #[test]
    fn all_problems_reported_at_once() {
        let cfg = "[server]\nhttp = \"nope\"\nrtmp = 1935\n[hls]\nwindow = 0\ncolour = \"red\"\n[[stream]]\nname = \"ok\"\nkey = \"k\"\npipeline = \"gone\"\n[[stream]]\nname = \"/x\"\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:2:8: `http` in [server]: invalid socket address `nope`; expected IP:PORT such as \"0.0.0.0:8080\" (host names are not accepted)",
                "config/ferrocast.toml:3:8: `rtmp` in [server] must be a string, found integer",
                "config/ferrocast.toml:5:10: `window` in [hls] must be between 3 and 1000 segments, found 0 (RFC 8216: a live playlist spans at least 3 target durations)",
                "config/ferrocast.toml:6:1: unknown key `colour` in [hls]; expected one of: segment_target, part_target, window, grace",
                "config/ferrocast.toml:10:12: pipeline `gone`: pipelines/gone.toml not found",
                "config/ferrocast.toml:11:1: [[stream]] is missing `key` (the publish secret)",
                "config/ferrocast.toml:12:8: invalid stream name `/x`: must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-` (it appears in URLs)",
            ]
        );
    }

    #[test]
    fn unreadable_config() {
        let d = load(Path::new("/nonexistent/ferrocast.toml")).unwrap_err();
        assert_eq!(d.len(), 1);
        assert!(d[0]
            .to_string()
            .starts_with("/nonexistent/ferrocast.toml:1:1: cannot read config file:"));
    }

    /// Root of the repository holding the shipped files (FERROCAST_ROOT when built elsewhere).
    fn repo_root() -> PathBuf {
        PathBuf::from(option_env!("FERROCAST_ROOT").unwrap_or(env!("CARGO_MANIFEST_DIR")))
    }

    #[test]
    fn srt_settings_and_passphrases() {
        let c = ok(
            "[srt]\nlatency = \"250ms\"\ndefault_stream = \"demo\"\n\n[[stream]]\nname = \"demo\"\nkey = \"k\"\npassphrase = \"0123456789\"\n",
            &[("default", PASSTHROUGH)],
        );
        assert_eq!(c.srt.latency, Duration::from_millis(250));
        assert_eq!(c.srt.default_stream.as_deref(), Some("demo"));
        assert_eq!(c.streams[0].passphrase.as_deref(), Some("0123456789"));
        let c = ok(STREAM, &[("default", PASSTHROUGH)]);
        assert_eq!(c.srt, SrtConfig::default());
        assert_eq!(c.streams[0].passphrase, None);
    }

    #[test]
    fn srt_problems_are_reported_where_they_are() {
        let files = [("default", PASSTHROUGH)];
        assert_eq!(
            errors(
                "[srt]\nlatency = \"5ms\"\nlatncy = 1\ndefault_stream = \"demo\"\n\n[[stream]]\nname = \"demo\"\nkey = \"k\"\npassphrase = \"short\"\n",
                &files
            ),
            [
                "config/ferrocast.toml:2:11: `latency` in [srt] must be between 20ms and 8s, found 5ms (the time SRT may spend recovering lost packets; it adds to the stream's delay)",
                "config/ferrocast.toml:3:1: unknown key `latncy` in [srt]; expected one of: latency, default_stream (did you mean `latency`?)",
                "config/ferrocast.toml:9:14: stream `demo`: `passphrase` must be 10 to 79 bytes long (SRT's limit), found 5",
            ]
        );
        assert_eq!(
            errors(
                "[srt]\ndefault_stream = \"demo\"\n\n[[stream]]\nname = \"demo\"\nkey = \"k\"\n",
                &files
            ),
            ["config/ferrocast.toml:2:18: `default_stream` in [srt]: stream `demo` has no `passphrase`; callers without a streamid carry no key, so the passphrase must be their credential"]
        );
        assert_eq!(
            errors(
                "[srt]\ndefault_stream = \"nope\"\n\n[[stream]]\nname = \"demo\"\nkey = \"k\"\n",
                &files
            ),
            ["config/ferrocast.toml:2:18: `default_stream` in [srt]: no [[stream]] named `nope`"]
        );
    }

    #[test]
    fn shipped_files_load() {
        let root = repo_root();
        let c = load_with_base(&root.join(DEFAULT_CONFIG_PATH), &root)
            .unwrap_or_else(|d| panic!("{d:#?}"));
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.hls, HlsConfig::default());
        assert_eq!(
            c.streams,
            [StreamConfig {
                name: "demo".into(),
                key: "demo-key".into(),
                pipeline: "default".into(),
                passphrase: None,
            }]
        );
        assert_eq!(c.srt, SrtConfig::default());
        assert!(c.pipelines["default"].source);
        assert_eq!(warnings(&c).len(), 1, "the example key is flagged");
        let p = load_pipeline("passthrough", &root.join("pipelines/passthrough.toml"))
            .unwrap_or_else(|d| panic!("{d:#?}"));
        assert!(p.source && p.description.is_some());
    }

    #[test]
    fn chat_defaults_and_values() {
        let c = ok(STREAM, &[]);
        assert_eq!(c.chat, ChatConfig::default());
        let c = ok(
            "[chat]\nstore = \"/tmp/x.db\"\nhistory = 10\nmax_message_len = 200\nburst = 3\nrefill = \"2s\"\nslow_mode = \"10s\"\nmax_connections = 100\nkeep_after_end = \"1m\"\nsend_queue = 160\nmoderator_tokens = [\"mod-secret-1\"]\n",
            &[],
        );
        assert_eq!(c.chat.store, PathBuf::from("/tmp/x.db"));
        assert_eq!(
            (c.chat.history, c.chat.max_message_len, c.chat.burst),
            (10, 200, 3)
        );
        assert_eq!(c.chat.refill, Duration::from_secs(2));
        assert_eq!(c.chat.slow_mode, Duration::from_secs(10));
        assert_eq!(c.chat.max_connections, 100);
        assert_eq!(c.chat.keep_after_end, Duration::from_secs(60));
        assert_eq!(c.chat.send_queue, 160);
        assert_eq!(c.chat.moderator_tokens, ["mod-secret-1"]);
    }

    #[test]
    fn chat_errors() {
        let cfg = "[chat]\nhistroy = 5\nmax_message_len = 0\nslow_mode = 5\nmoderator_tokens = [\"short\", 3]\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:2:1: unknown key `histroy` in [chat]; expected one of: store, history, max_message_len, burst, refill, slow_mode, max_connections, keep_after_end, send_queue, moderator_tokens (did you mean `history`?)",
                "config/ferrocast.toml:3:19: `max_message_len` in [chat] must be between 1 and 10000, found 0 (characters per message)",
                "config/ferrocast.toml:4:13: `slow_mode` in [chat] must be a duration string such as \"2s\" or \"200ms\", found integer",
                "config/ferrocast.toml:5:21: `moderator_tokens` in [chat]: a token must be at least 8 characters without whitespace (it is a password)",
                "config/ferrocast.toml:5:30: `moderator_tokens` in [chat] must hold strings",
            ]
        );
    }

    #[test]
    fn cluster_section_loads_and_is_optional() {
        assert_eq!(ok("", &[]).cluster, None, "no [cluster]: one node");
        let c = ok(
            "[cluster]\nnats = [\"nats://10.0.0.2:4222\", \"nats://10.0.0.3:4222\"]\nnode = \"edge-1\"\nadvertise = \"http://10.0.0.5:8080/\"\n",
            &[],
        );
        let cluster = c.cluster.expect("[cluster] loaded");
        assert_eq!(cluster.nats.len(), 2);
        assert_eq!(cluster.node, "edge-1");
        assert_eq!(
            cluster.advertise, "http://10.0.0.5:8080",
            "trailing slash dropped"
        );
    }

    #[test]
    fn cluster_errors() {
        let cfg = "[cluster]\nnats = [\"localhost\"]\nnode = \"a b\"\nadvertise = \"http://0.0.0.0:8080\"\nnodes = 3\n";
        assert_eq!(
            errors(cfg, &[]),
            [
                "config/ferrocast.toml:2:8: `nats` in [cluster]: `localhost` is not a NATS URL (nats://HOST:PORT or tls://HOST:PORT)",
                "config/ferrocast.toml:3:8: `node` in [cluster]: `a b` is not a valid node name (1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`)",
                "config/ferrocast.toml:4:13: `advertise` in [cluster]: `http://0.0.0.0:8080`: 0.0.0.0 is a listen address; other nodes need an address they can reach",
                "config/ferrocast.toml:5:1: unknown key `nodes` in [cluster]; expected one of: nats, node, advertise (did you mean `node`?)",
            ]
        );
        assert_eq!(
            errors("[cluster]\nnode = \"a\"\n", &[]),
            [
                "config/ferrocast.toml:1:1: `nats` in [cluster] is required: the NATS servers, e.g. nats = [\"nats://127.0.0.1:4222\"]",
                "config/ferrocast.toml:1:1: `advertise` in [cluster] is required, e.g. advertise = \"http://10.0.0.5:8080\"",
            ]
        );
    }
}
