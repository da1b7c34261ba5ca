//! Server configuration (`config/ferrocast.toml`) and pipeline files (`pipelines/NAME.toml`).
//!
//! The files are walked by hand over a span-keeping `toml_edit` document instead of being
//! deserialized with serde, because serde stops at the first problem while `ferrocast check`
//! must report every problem at once, each as `file:line:col: message`.
//!
//! Limits are chosen so that a config that loads can actually be served: each one is a `const`
//! below with the reason next to it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ImDocument, Item, Key, TableLike, Value};

/// Config file used when `--config` is not given (relative to the working directory).
pub const DEFAULT_CONFIG_PATH: &str = "config/ferrocast.toml";
/// Folder holding pipeline files: `pipeline = "NAME"` means `pipelines/NAME.toml`.
pub const PIPELINES_DIR: &str = "pipelines";

/// HTTP origin (playlists, media, chat, API, metrics), TCP.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
/// RTMP ingest, TCP; 1935 is the port OBS assumes.
pub const DEFAULT_RTMP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1935));
/// SRT ingest, UDP, so it may share a port number with a TCP listener.
pub const DEFAULT_SRT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9000));

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

/// Pipeline used by a `[[stream]]` without `pipeline = `.
pub const DEFAULT_PIPELINE: &str = "default";
/// Longest stream or pipeline name; names appear in URLs and file names.
pub const MAX_NAME_LEN: usize = 64;
/// Longest stream key; bounds what an RTMP/SRT handshake has to carry.
pub const MAX_KEY_LEN: usize = 256;
/// Characters that would break `NAME?key=SECRET` (RTMP) or `#!::r=..,s=SECRET` (SRT) parsing.
pub const KEY_FORBIDDEN: &[char] = &['?', '&', ','];
/// Key of the shipped example config; `warnings` flags it so it is not left in production.
pub const EXAMPLE_KEY: &str = "demo-key";

/// SRT receive latency (TSBPD buffer) when `[srt] latency` is not set; libsrt's own default.
pub const DEFAULT_SRT_LATENCY: Duration = Duration::from_millis(120);
/// SRT latencies accepted: below 20 ms nothing can be retransmitted, above 8 s is not live.
pub const SRT_LATENCY_RANGE: (Duration, Duration) =
    (Duration::from_millis(20), Duration::from_secs(8));
/// SRT passphrase length limits in bytes (the SRT specification's `SRTO_PASSPHRASE`).
pub const SRT_PASSPHRASE_LEN: (usize, usize) = (10, 79);

/// Whether `[source] passthrough` is on when a pipeline file does not say.
pub const DEFAULT_PASSTHROUGH: bool = true;

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

/// One problem in one file, displayed as `file:line:col: message` (1-based; col counts chars).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", file.display())]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A loaded and validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file it was loaded from.
    pub path: PathBuf,
    pub server: ServerConfig,
    pub hls: HlsConfig,
    pub srt: SrtConfig,
    pub chat: ChatConfig,
    /// Who may publish; a name with no entry cannot publish.
    pub streams: Vec<StreamConfig>,
    /// Every pipeline used by a stream, loaded, by name.
    pub pipelines: BTreeMap<String, Pipeline>,
}

/// Listen addresses (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    pub srt: SocketAddr,
}

/// LL-HLS packaging (`[hls]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    pub segment_target: Duration,
    pub part_target: Duration,
    pub window: usize,
    pub grace: Duration,
}

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

pub use crate::pipeline::ladder::{Encoder, Pipeline, Pos, Rung};

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
            streams: Vec::new(),
            pipelines: BTreeMap::new(),
        }
    }

    /// The `[[stream]]` entry for `name`, if that name may publish.
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|s| s.name == name)
    }
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

/// Parse a duration such as `"200ms"`, `"2s"`, `"1.5s"` or `"1m"` (units: ms, s, m).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let nanos_per_unit: u128 = match unit {
        _ if num.is_empty() => {
            return Err(format!(
                "invalid duration `{s}`: expected a number and a unit (ms, s or m), e.g. \"2s\" or \"200ms\""
            ))
        }
        "" => {
            return Err(format!(
                "invalid duration `{s}`: missing unit; write e.g. \"{s}s\" or \"{s}ms\""
            ))
        }
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ => {
            return Err(format!(
                "invalid duration `{s}`: unknown unit `{unit}`; use ms, s or m"
            ))
        }
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let malformed = int.is_empty()
        || (num.contains('.') && frac.is_empty())
        || frac.contains('.')
        || int.len() > 20
        || frac.len() > 18;
    if malformed {
        return Err(format!("invalid duration `{s}`: malformed number `{num}`"));
    }
    let digits = |d: &str| d.parse::<u128>().unwrap_or(0);
    let frac_nanos = if frac.is_empty() {
        0
    } else {
        digits(frac) * nanos_per_unit / 10u128.pow(frac.len() as u32)
    };
    let total = digits(int)
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(frac_nanos))
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("invalid duration `{s}`: too large"))?;
    Ok(Duration::from_nanos(total))
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
    let parsed = src.parse().map(|doc| parse_config(&mut src, &doc));
    let mut diags = src.finish();
    let Some((server, hls, srt, chat, streams, refs)) = parsed else {
        return Err(diags);
    };

    let mut pipelines = BTreeMap::new();
    let mut failed = Vec::new();
    for r in &refs {
        if pipelines.contains_key(&r.name) || failed.contains(&r.name) {
            continue;
        }
        let rel = Path::new(PIPELINES_DIR).join(format!("{}.toml", r.name));
        let file = base_dir.join(&rel);
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse_pipeline(&r.name, &file, &text) {
                Ok(p) => {
                    pipelines.insert(r.name.clone(), p);
                }
                Err(mut d) => {
                    failed.push(r.name.clone());
                    diags.append(&mut d);
                }
            },
            Err(e) => {
                failed.push(r.name.clone());
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "not found".to_string()
                } else {
                    format!("cannot be read: {e}")
                };
                // Point at every stream that names the missing file, not only the first.
                let mut src = Source::new(path, &text);
                for r2 in refs.iter().filter(|r2| r2.name == r.name) {
                    let dflt = if r2.defaulted { " (the default)" } else { "" };
                    src.report(
                        r2.span.clone(),
                        format!("pipeline `{}`{dflt}: {} {why}", r.name, rel.display()),
                    );
                }
                let mut d = src.finish();
                diags.append(&mut d);
            }
        }
    }
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
        streams,
        pipelines,
    })
}

/// Load one pipeline file on its own (e.g. for `ferrocast check` of a single file).
pub fn load_pipeline(name: &str, path: &Path) -> Result<Pipeline, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read pipeline file: {e}"),
        }]
    })?;
    parse_pipeline(name, path, &text)
}

/// A use of a pipeline by a stream, remembered so a missing file is reported at the use.
struct PipelineRef {
    name: String,
    span: Option<Range<usize>>,
    defaulted: bool,
}

/// One file's text and the problems found in it so far.
pub(crate) struct Source<'a> {
    file: &'a Path,
    pub(crate) text: &'a str,
    diags: Vec<(usize, String)>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Source {
            file,
            text,
            diags: Vec::new(),
        }
    }

    /// Parse keeping spans; a syntax error is reported (toml_edit stops at the first one).
    fn parse(&mut self) -> Option<ImDocument<&'a str>> {
        match ImDocument::parse(self.text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                let msg = e.message().trim().replace('\n', "; ");
                self.report(e.span(), format!("TOML syntax error: {msg}"));
                None
            }
        }
    }

    pub(crate) fn report(&mut self, span: Option<Range<usize>>, message: String) {
        self.diags
            .push((span.map(|s| s.start).unwrap_or(0), message));
    }

    fn finish(self) -> Vec<Diagnostic> {
        let mut diags: Vec<Diagnostic> = self
            .diags
            .into_iter()
            .map(|(offset, message)| {
                let (line, col) = line_col(self.text, offset);
                Diagnostic {
                    file: self.file.to_path_buf(),
                    line,
                    col,
                    message,
                }
            })
            .collect();
        diags.sort_by_key(|d| (d.line, d.col));
        diags
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Where a key's value is; falls back to the key, then the start of the file.
pub(crate) fn item_span(key: Option<&Key>, item: &Item) -> Option<Range<usize>> {
    item.span().or_else(|| key.and_then(Key::span))
}

pub(crate) fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "table",
        Item::ArrayOfTables(_) => "array of tables",
        Item::Value(v) => match v {
            Value::String(_) => "string",
            Value::Integer(_) => "integer",
            Value::Float(_) => "float",
            Value::Boolean(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::Array(_) => "array",
            Value::InlineTable(_) => "inline table",
        },
    }
}

/// Report every key of `table` not in `allowed`; `hint` may add a reason for a given key.
pub(crate) fn check_keys(
    src: &mut Source,
    table: &dyn TableLike,
    ctx: &str,
    allowed: &[&str],
    hint: fn(&str) -> Option<&'static str>,
) {
    for (name, item) in table.iter() {
        if allowed.contains(&name) {
            continue;
        }
        let key = table.key(name);
        let kind = if item.is_table_like() || item.is_array_of_tables() {
            "table"
        } else {
            "key"
        };
        let mut msg = format!(
            "unknown {kind} `{name}` {ctx}; expected one of: {}",
            allowed.join(", ")
        );
        if let Some(h) = hint(name) {
            let _ = write!(msg, " ({h})");
        } else if let Some(close) = allowed.iter().find(|a| edit_distance(a, name) <= 2) {
            let _ = write!(msg, " (did you mean `{close}`?)");
        }
        let span = key.and_then(Key::span).or_else(|| item.span());
        src.report(span, msg);
    }
}

pub(crate) fn no_hint(_: &str) -> Option<&'static str> {
    None
}

/// Levenshtein distance, for "did you mean" on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The sub-table `name` of `root`, or None (with a diagnostic if it is not a table).
pub(crate) fn section<'t>(
    src: &mut Source,
    root: &'t dyn TableLike,
    name: &str,
) -> Option<&'t dyn TableLike> {
    let (key, item) = root.get_key_value(name)?;
    match item.as_table_like() {
        Some(t) => Some(t),
        None => {
            src.report(
                item_span(Some(key), item),
                format!(
                    "`{name}` must be a table ([{name}]), found {}",
                    type_name(item)
                ),
            );
            None
        }
    }
}

/// A string value; None when missing, or when of another type (reported).
pub(crate) fn get_str<'t>(
    src: &mut Source,
    table: &'t dyn TableLike,
    name: &str,
    ctx: &str,
) -> Option<(&'t str, Option<Range<usize>>)> {
    let (key, item) = table.get_key_value(name)?;
    let span = item_span(Some(key), item);
    match item.as_str() {
        Some(s) => Some((s, span)),
        None => {
            src.report(
                span,
                format!("`{name}` {ctx} must be a string, found {}", type_name(item)),
            );
            None
        }
    }
}

fn get_addr(
    src: &mut Source,
    table: &dyn TableLike,
    name: &str,
    default: SocketAddr,
) -> SocketAddr {
    let Some((s, span)) = get_str(src, table, name, "in [server]") else {
        return default;
    };
    match s.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            src.report(
                span,
                format!(
                    "`{name}` in [server]: invalid socket address `{s}`; expected IP:PORT such as \"{default}\" (host names are not accepted)"
                ),
            );
            default
        }
    }
}

/// A duration value, range-checked; None when missing or invalid (reported).
fn get_duration(
    src: &mut Source,
    table: &dyn TableLike,
    name: &str,
    ctx: &str,
    range: (Duration, Duration),
    why: &str,
) -> Option<(Duration, Option<Range<usize>>)> {
    let (key, item) = table.get_key_value(name)?;
    let span = item_span(Some(key), item);
    let Some(s) = item.as_str() else {
        src.report(
            span,
            format!(
                "`{name}` {ctx} must be a duration string such as \"2s\" or \"200ms\", found {}",
                type_name(item)
            ),
        );
        return None;
    };
    match parse_duration(s) {
        Ok(d) if d >= range.0 && d <= range.1 => Some((d, span)),
        Ok(d) => {
            let bounds = if range.0.is_zero() {
                format!("at most {}", fmt_duration(range.1))
            } else {
                format!(
                    "between {} and {}",
                    fmt_duration(range.0),
                    fmt_duration(range.1)
                )
            };
            src.report(
                span,
                format!(
                    "`{name}` {ctx} must be {bounds}, found {} ({why})",
                    fmt_duration(d)
                ),
            );
            None
        }
        Err(e) => {
            src.report(span, format!("`{name}` {ctx}: {e}"));
            None
        }
    }
}

/// A duration the way the config file writes it ("1m", "2s", "200ms"; "1.5s" otherwise).
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) || d.is_zero() {
        format!("{d:?}")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{d:?}")
    }
}

/// Whether `s` is a valid stream or pipeline name: 1–64 of `[A-Za-z0-9_-]` (used in URLs/paths).
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(crate) fn name_rule() -> String {
    format!("1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, `_` and `-`")
}

type Parsed = (
    ServerConfig,
    HlsConfig,
    SrtConfig,
    ChatConfig,
    Vec<StreamConfig>,
    Vec<PipelineRef>,
);

fn parse_config(src: &mut Source, doc: &ImDocument<&str>) -> Parsed {
    let root: &dyn TableLike = doc.as_table();
    check_keys(
        src,
        root,
        "at top level",
        &["server", "hls", "srt", "chat", "stream"],
        no_hint,
    );

    let mut server = ServerConfig::default();
    if let Some(t) = section(src, root, "server") {
        check_keys(src, t, "in [server]", &["http", "rtmp", "srt"], no_hint);
        server.http = get_addr(src, t, "http", DEFAULT_HTTP);
        server.rtmp = get_addr(src, t, "rtmp", DEFAULT_RTMP);
        server.srt = get_addr(src, t, "srt", DEFAULT_SRT);
        if let Some(msg) = server.conflicts().into_iter().next() {
            let span = t
                .get_key_value("rtmp")
                .and_then(|(k, i)| item_span(Some(k), i));
            let span = span.or_else(|| {
                t.get_key_value("http")
                    .and_then(|(k, i)| item_span(Some(k), i))
            });
            src.report(span, msg);
        }
    }

    let mut hls = HlsConfig::default();
    if let Some(t) = section(src, root, "hls") {
        check_keys(
            src,
            t,
            "in [hls]",
            &["segment_target", "part_target", "window", "grace"],
            no_hint,
        );
        let seg = get_duration(
            src,
            t,
            "segment_target",
            "in [hls]",
            (MIN_SEGMENT_TARGET, MAX_SEGMENT_TARGET),
            "segments are cut on keyframes; shorter is not achievable, longer is not live",
        );
        if let Some((d, _)) = seg {
            hls.segment_target = d;
        }
        // The default part target fits every allowed segment target (see the const assert), so
        // only an explicit part_target can be too long.
        let part_max = hls.segment_target / 2;
        let part = get_duration(
            src,
            t,
            "part_target",
            "in [hls]",
            (MIN_PART_TARGET, part_max.max(MIN_PART_TARGET)),
            "at most half of segment_target: LL-HLS needs several parts per segment",
        );
        if let Some((d, _)) = part {
            hls.part_target = d;
        }
        if let Some((key, item)) = t.get_key_value("window") {
            let span = item_span(Some(key), item);
            match item.as_integer() {
                Some(n) if (MIN_WINDOW as i64..=MAX_WINDOW as i64).contains(&n) => {
                    hls.window = n as usize;
                }
                Some(n) => src.report(
                    span,
                    format!(
                        "`window` in [hls] must be between {MIN_WINDOW} and {MAX_WINDOW} segments, found {n} (RFC 8216: a live playlist spans at least 3 target durations)"
                    ),
                ),
                None => src.report(
                    span,
                    format!(
                        "`window` in [hls] must be an integer, found {}",
                        type_name(item)
                    ),
                ),
            }
        }
        if let Some((d, _)) = get_duration(
            src,
            t,
            "grace",
            "in [hls]",
            (Duration::ZERO, MAX_GRACE),
            "the stream is held this long after its publisher leaves",
        ) {
            hls.grace = d;
        }
    }

    let mut srt = SrtConfig::default();
    let mut default_span = None;
    if let Some(t) = section(src, root, "srt") {
        check_keys(src, t, "in [srt]", &["latency", "default_stream"], no_hint);
        if let Some((d, _)) = get_duration(
            src,
            t,
            "latency",
            "in [srt]",
            SRT_LATENCY_RANGE,
            "the time SRT may spend recovering lost packets; it adds to the stream's delay",
        ) {
            srt.latency = d;
        }
        if let Some((n, span)) = get_str(src, t, "default_stream", "in [srt]") {
            srt.default_stream = Some(n.to_string());
            default_span = Some(span);
        }
    }

    let chat = parse_chat(src, root);
    let (streams, refs) = parse_streams(src, root);
    if let (Some(name), Some(span)) = (&srt.default_stream, default_span) {
        match streams.iter().find(|s| &s.name == name) {
            None => src.report(
                span,
                format!("`default_stream` in [srt]: no [[stream]] named `{name}`"),
            ),
            Some(s) if s.passphrase.is_none() => src.report(
                span,
                format!(
                    "`default_stream` in [srt]: stream `{name}` has no `passphrase`; callers without a streamid carry no key, so the passphrase must be their credential"
                ),
            ),
            Some(_) => {}
        }
    }
    (server, hls, srt, chat, streams, refs)
}

/// An integer value within `range`; None when missing or invalid (reported).
fn get_int(
    src: &mut Source,
    table: &dyn TableLike,
    name: &str,
    ctx: &str,
    range: (i64, i64),
    why: &str,
) -> Option<i64> {
    let (key, item) = table.get_key_value(name)?;
    let span = item_span(Some(key), item);
    match item.as_integer() {
        Some(n) if (range.0..=range.1).contains(&n) => Some(n),
        Some(n) => {
            src.report(
                span,
                format!(
                    "`{name}` {ctx} must be between {} and {}, found {n} ({why})",
                    range.0, range.1
                ),
            );
            None
        }
        None => {
            src.report(
                span,
                format!(
                    "`{name}` {ctx} must be an integer, found {}",
                    type_name(item)
                ),
            );
            None
        }
    }
}

fn parse_chat(src: &mut Source, root: &dyn TableLike) -> ChatConfig {
    let mut chat = ChatConfig::default();
    let Some(t) = section(src, root, "chat") else {
        return chat;
    };
    let ctx = "in [chat]";
    check_keys(
        src,
        t,
        ctx,
        &[
            "store",
            "history",
            "max_message_len",
            "burst",
            "refill",
            "slow_mode",
            "max_connections",
            "keep_after_end",
            "send_queue",
            "moderator_tokens",
        ],
        no_hint,
    );
    if let Some((p, span)) = get_str(src, t, "store", ctx) {
        if p.is_empty() {
            src.report(span, "`store` in [chat] must be a file path".to_string());
        } else {
            chat.store = PathBuf::from(p);
        }
    }
    let int = |src: &mut Source, name: &str, range: (i64, i64), why: &str| {
        get_int(src, t, name, ctx, range, why)
    };
    if let Some(n) = int(
        src,
        "history",
        (0, MAX_CHAT_HISTORY as i64),
        "messages sent on join",
    ) {
        chat.history = n as usize;
    }
    if let Some(n) = int(
        src,
        "max_message_len",
        (1, MAX_CHAT_MESSAGE_LEN as i64),
        "characters per message",
    ) {
        chat.max_message_len = n as usize;
    }
    if let Some(n) = int(
        src,
        "burst",
        (1, 1000),
        "messages a connection may send at once",
    ) {
        chat.burst = n as u32;
    }
    if let Some(n) = int(
        src,
        "max_connections",
        (1, 1_000_000),
        "connections per room",
    ) {
        chat.max_connections = n as usize;
    }
    if let Some(n) = int(
        src,
        "send_queue",
        (128, 65_536),
        "frames queued for one viewer before it is dropped as too slow; at least one commit batch",
    ) {
        chat.send_queue = n as usize;
    }
    let hour = Duration::from_secs(3600);
    if let Some((d, _)) = get_duration(
        src,
        t,
        "refill",
        ctx,
        (Duration::ZERO, hour),
        "one more message is allowed per refill; \"0s\" turns the rate limit off",
    ) {
        chat.refill = d;
    }
    if let Some((d, _)) = get_duration(
        src,
        t,
        "slow_mode",
        ctx,
        (Duration::ZERO, hour),
        "one message per name per interval; \"0s\" is off",
    ) {
        chat.slow_mode = d;
    }
    if let Some((d, _)) = get_duration(
        src,
        t,
        "keep_after_end",
        ctx,
        (Duration::ZERO, 24 * hour),
        "the room stays readable this long after its stream ends",
    ) {
        chat.keep_after_end = d;
    }
    if let Some((key, item)) = t.get_key_value("moderator_tokens") {
        let span = item_span(Some(key), item);
        match item.as_array() {
            Some(a) => {
                for v in a.iter() {
                    match v.as_str() {
                        Some(tok) if tok.len() >= 8 && !tok.chars().any(char::is_whitespace) => {
                            chat.moderator_tokens.push(tok.to_string())
                        }
                        Some(_) => src.report(
                            v.span(),
                            "`moderator_tokens` in [chat]: a token must be at least 8 characters without whitespace (it is a password)".to_string(),
                        ),
                        None => src.report(
                            v.span(),
                            "`moderator_tokens` in [chat] must hold strings".to_string(),
                        ),
                    }
                }
            }
            None => src.report(
                span,
                format!(
                    "`moderator_tokens` in [chat] must be an array of strings, found {}",
                    type_name(item)
                ),
            ),
        }
    }
    chat
}

/// The tables of `[[name]]` (or `name = [{ .. }, ..]`, which means the same in TOML), each
/// with its span; anything else under `name` is reported. Empty when `name` is absent.
pub(crate) fn array_of_tables<'t>(
    src: &mut Source,
    root: &'t dyn TableLike,
    name: &str,
) -> Vec<(&'t dyn TableLike, Option<Range<usize>>)> {
    let Some((key, item)) = root.get_key_value(name) else {
        return Vec::new();
    };
    match item {
        Item::ArrayOfTables(a) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
        Item::Value(Value::Array(a)) if a.iter().all(Value::is_inline_table) => a
            .iter()
            .filter_map(|v| v.as_inline_table())
            .map(|t| (t as &dyn TableLike, t.span()))
            .collect(),
        _ => {
            src.report(
                item_span(Some(key), item),
                format!(
                    "`{name}` must be an array of tables (write [[{name}]]), found {}",
                    type_name(item)
                ),
            );
            Vec::new()
        }
    }
}

fn parse_streams(src: &mut Source, root: &dyn TableLike) -> (Vec<StreamConfig>, Vec<PipelineRef>) {
    let mut streams = Vec::new();
    let mut refs = Vec::new();
    let entries = array_of_tables(src, root, "stream");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (t, header) in entries {
        let ctx = "in [[stream]]";
        check_keys(
            src,
            t,
            ctx,
            &["name", "key", "pipeline", "passphrase"],
            no_hint,
        );
        let mut ok = true;

        let name = match get_str(src, t, "name", ctx) {
            Some((n, span)) if valid_name(n) => {
                let line = line_col(src.text, span.as_ref().map_or(0, |s| s.start)).0;
                if let Some(first) = seen.get(n) {
                    src.report(
                        span,
                        format!("duplicate stream name `{n}` (first defined on line {first})"),
                    );
                    ok = false;
                } else {
                    seen.insert(n.to_string(), line);
                }
                Some(n)
            }
            Some((n, span)) => {
                src.report(
                    span,
                    format!(
                        "invalid stream name `{n}`: must be {} (it appears in URLs)",
                        name_rule()
                    ),
                );
                None
            }
            None => {
                if !t.contains_key("name") {
                    src.report(header.clone(), "[[stream]] is missing `name`".to_string());
                }
                None
            }
        };
        let label = name.map(|n| format!(" `{n}`")).unwrap_or_default();

        let key = match get_str(src, t, "key", ctx) {
            Some((k, span)) => match key_problem(k) {
                Some(why) => {
                    src.report(span, format!("stream{label}: invalid `key`: {why}"));
                    None
                }
                None => Some(k),
            },
            None => {
                if !t.contains_key("key") {
                    src.report(
                        header.clone(),
                        format!("[[stream]]{label} is missing `key` (the publish secret)"),
                    );
                }
                None
            }
        };

        let pipeline = match get_str(src, t, "pipeline", ctx) {
            Some((p, span)) if valid_name(p) => {
                refs.push(PipelineRef {
                    name: p.to_string(),
                    span,
                    defaulted: false,
                });
                Some(p)
            }
            Some((p, span)) => {
                src.report(
                    span,
                    format!("invalid pipeline name `{p}`: must be {}", name_rule()),
                );
                None
            }
            None if t.contains_key("pipeline") => None,
            None => {
                refs.push(PipelineRef {
                    name: DEFAULT_PIPELINE.to_string(),
                    span: header.clone(),
                    defaulted: true,
                });
                Some(DEFAULT_PIPELINE)
            }
        };

        let mut passphrase = None;
        if let Some((p, span)) = get_str(src, t, "passphrase", ctx) {
            let (lo, hi) = SRT_PASSPHRASE_LEN;
            // Kept even when invalid (loading fails anyway) so `default_stream` is judged on it.
            passphrase = Some(p.to_string());
            if !(lo..=hi).contains(&p.len()) {
                src.report(
                    span,
                    format!(
                        "stream{label}: `passphrase` must be {lo} to {hi} bytes long (SRT's limit), found {}",
                        p.len()
                    ),
                );
            }
        }

        if let (true, Some(name), Some(key), Some(pipeline)) = (ok, name, key, pipeline) {
            streams.push(StreamConfig {
                name: name.to_string(),
                key: key.to_string(),
                pipeline: pipeline.to_string(),
                passphrase,
            });
        }
    }
    (streams, refs)
}

/// Why `key` cannot be a publish key, if it cannot.
fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("must not be empty".to_string());
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Some(format!("longer than {MAX_KEY_LEN} characters"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain whitespace or control characters".to_string());
    }
    if let Some(c) = key.chars().find(|c| KEY_FORBIDDEN.contains(c)) {
        return Some(format!(
            "must not contain `{c}` (it would break the RTMP `NAME?key=SECRET` or SRT streamid syntax)"
        ));
    }
    None
}

fn pipeline_hint(key: &str) -> Option<&'static str> {
    matches!(
        key,
        "rungs" | "ladder" | "rendition" | "renditions" | "variant" | "variants"
    )
    .then_some("transcoded rungs are written as [[rung]] tables")
}

fn parse_pipeline(name: &str, path: &Path, text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut src = Source::new(path, text);
    let mut pipeline = Pipeline {
        name: name.to_string(),
        path: path.to_path_buf(),
        description: None,
        source: DEFAULT_PASSTHROUGH,
        rungs: Vec::new(),
    };
    if let Some(doc) = src.parse() {
        let root: &dyn TableLike = doc.as_table();
        check_keys(
            &mut src,
            root,
            "at top level of the pipeline",
            &["description", "source", "rung"],
            pipeline_hint,
        );
        if let Some((d, _)) = get_str(&mut src, root, "description", "in the pipeline") {
            pipeline.description = Some(d.to_string());
        }
        let mut passthrough_span = None;
        if let Some(t) = section(&mut src, root, "source") {
            check_keys(&mut src, t, "in [source]", &["passthrough"], no_hint);
            if let Some((key, item)) = t.get_key_value("passthrough") {
                let span = item_span(Some(key), item);
                match item.as_bool() {
                    Some(b) => {
                        pipeline.source = b;
                        passthrough_span = span;
                    }
                    None => src.report(
                        span,
                        format!(
                            "`passthrough` in [source] must be a boolean, found {}",
                            type_name(item)
                        ),
                    ),
                }
            }
        }
        let had_rungs = root.contains_key("rung");
        pipeline.rungs = crate::pipeline::ladder::parse_rungs(&mut src, root);
        if !pipeline.source && !had_rungs {
            src.report(
                passthrough_span,
                "pipeline has no rungs: enable [source] passthrough or add a [[rung]]".to_string(),
            );
        }
    }
    let diags = src.finish();
    if diags.is_empty() {
        Ok(pipeline)
    } else {
        Err(diags)
    }
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
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("500us").unwrap_err(),
            "invalid duration `500us`: unknown unit `us`; use ms, s or m"
        );
        assert_eq!(
            parse_duration("2").unwrap_err(),
            "invalid duration `2`: missing unit; write e.g. \"2s\" or \"2ms\""
        );
        for bad in [
            "", "s", "-1s", ".5s", "1.s", "1..2s", "1.2.3s", " 2s", "2 s", "1h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("99999999999999999999999m").is_err());
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(line_col("ab\ncé\nx", 0), (1, 1));
        assert_eq!(line_col("ab\ncé\nx", 3), (2, 1));
        assert_eq!(line_col("ab\ncéd", 6), (2, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

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
                "config/ferrocast.toml:1:1: unknown key `foo` at top level; expected one of: server, hls, srt, chat, stream",
                "config/ferrocast.toml:3:1: unknown key `htp` in [server]; expected one of: http, rtmp, srt (did you mean `http`?)",
                "config/ferrocast.toml:5:1: unknown key `segment_targt` in [hls]; expected one of: segment_target, part_target, window, grace (did you mean `segment_target`?)",
                "config/ferrocast.toml:6:6: unknown table `extra` in [hls]; expected one of: segment_target, part_target, window, grace",
                "config/ferrocast.toml:10:1: unknown key `pipe` in [[stream]]; expected one of: name, key, pipeline, passphrase",
                "config/ferrocast.toml:11:2: unknown table `bar` at top level; expected one of: server, hls, srt, chat, stream",
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
}
