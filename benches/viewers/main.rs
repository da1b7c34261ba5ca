//! ferrocast-viewers: N simulated LL-HLS viewers that follow the live edge the way hls.js does
//! in low-latency mode (blocking playlist reload for the next part, then that part, now and
//! then a whole segment and the init), against the origin or through a CDN edge; or, with
//! `--mode plain`, classic HLS viewers (reload the playlist every target duration, fetch new
//! segments) for servers without LL-HLS. Prints one JSON summary on stdout.
//!
//! Delivery latency of a part = when a viewer has the whole part minus when the part became
//! available at the origin. "Available" comes from one reference watcher (own thread) that
//! does not trust the viewers: it follows `--watch-url` (the origin itself, not the edge) with
//! blocking reloads and records when each part is first listed (plain mode: polls the
//! playlist every 20 ms and records when each segment is first listed). Only parts that
//! became available inside the measuring window count: from `--ramp` + `--settle` after the
//! start to `--tail` before the end, so every viewer was there and had time to get them.

mod client;
mod playlist;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::time::Instant;

use client::Conn;
use playlist::Playlist;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// LL-HLS: blocking reloads and parts.
    Ll,
    /// Classic HLS: playlist polling and segments.
    Plain,
}

#[derive(Parser, Debug)]
#[command(
    name = "ferrocast-viewers",
    about = "Simulated LL-HLS viewers on the live edge"
)]
struct Args {
    /// Media playlist the viewers follow, e.g. http://127.0.0.1:8081/live/demo/source/index.m3u8
    /// (or a multivariant playlist together with --rendition).
    #[arg(long)]
    url: String,
    /// Rendition to follow when --url is a multivariant playlist (NAME/index.m3u8 beside it).
    #[arg(long)]
    rendition: Option<String>,
    /// Media playlist the reference watcher follows: the origin (default: the viewers' URL).
    #[arg(long)]
    watch_url: Option<String>,
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Seconds from the start to the end of the run.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Source addresses for the viewers' connections: 127.0.0.2-127.0.0.9 or a comma list.
    #[arg(long)]
    sources: Option<String>,
    #[arg(long, value_enum, default_value_t = Mode::Ll)]
    mode: Mode,
    /// Seconds over which the viewers join (default: 1 s per 2,000 viewers, at most 8 s).
    #[arg(long)]
    ramp: Option<f64>,
    /// Seconds after the ramp before the measuring window opens.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Parts that appear less than this many seconds before the end are not expected.
    #[arg(long, default_value_t = 2.5)]
    tail: f64,
    /// Every Nth completed segment is also fetched whole (0: never).
    #[arg(long, default_value_t = 3)]
    segment_every: u64,
    /// The init section is fetched again every Nth completed segment (0: only at start).
    #[arg(long, default_value_t = 5)]
    init_every: u64,
    /// Ask for delta playlists (_HLS_skip=YES) when the server offers them, like hls.js.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    skip: bool,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Per-request timeout, seconds (a blocking request may be held ~3 target durations).
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
    /// Also write the summary here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Request counters, in this order: playlist, blocking, part, segment, init.
const KINDS: [&str; 5] = ["playlist", "playlist_blocking", "part", "segment", "init"];

#[derive(Default)]
struct Stats {
    requests: [AtomicU64; 5],
    bytes: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn req(&self, kind: usize, bytes: u64) {
        self.requests[kind].fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn err(&self, what: &str) {
        let mut m = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(what.to_string()).or_default() += 1;
    }
}

struct Target {
    dst: SocketAddr,
    host: String,
    /// Path of the media playlist.
    path: String,
    /// Directory the playlist's relative URIs resolve against.
    base: String,
}

impl Target {
    async fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('?').next().unwrap_or("/").to_string();
        let with_port = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let dst = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let base = path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)].to_string();
        Ok(Target {
            dst,
            host: host.to_string(),
            path,
            base,
        })
    }

    fn resolve(&self, uri: &str) -> String {
        if uri.starts_with('/') {
            uri.to_string()
        } else if let Some(r) = uri.strip_prefix("http://") {
            r.find('/').map(|i| r[i..].to_string()).unwrap_or_default()
        } else {
            format!("{}{uri}", self.base)
        }
    }
}

struct Ctx {
    args: Args,
    target: Target,
    stats: Stats,
    deadline: Instant,
}

fn parse_sources(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        if let Some((a, b)) = item.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| format!("bad address {a}"))?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| format!("bad address {b}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1024 {
                return Err(format!("bad range {item}"));
            }
            out.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
        } else {
            out.push(item.parse().map_err(|_| format!("bad address {item}"))?);
        }
    }
    Ok(out)
}

/// GET a playlist and parse it; errors are counted under `what`.
/// FNV-1a: viewers remember what they fetched by a hash of its URI, not a copy of it.
fn key(uri: &str) -> u64 {
    uri.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// GET a playlist and parse it; the error string is the kind to count.
async fn get_playlist(
    ctx: &Ctx,
    conn: &mut Conn,
    path: &str,
    kind: usize,
) -> Result<Playlist, String> {
    let r = tokio::time::timeout_at(ctx.deadline, conn.get(path, true))
        .await
        .map_err(|_| "deadline".to_string())?;
    let r = r.map_err(|e| e.label().to_string())?;
    ctx.stats.req(kind, r.len);
    if r.status != 200 {
        return Err(format!("{}_{}", KINDS[kind], r.status));
    }
    let text = String::from_utf8(r.body).map_err(|_| "playlist_utf8".to_string())?;
    Playlist::parse(text).ok_or_else(|| "playlist_parse".to_string())
}

/// GET a media object, counting its bytes: Some(true) when it arrived whole with 200,
/// None at the deadline.
async fn get_object(ctx: &Ctx, conn: &mut Conn, uri: &str, kind: usize) -> Option<bool> {
    let path = ctx.target.resolve(uri);
    let r = tokio::time::timeout_at(ctx.deadline, conn.get(&path, false))
        .await
        .ok()?;
    match r {
        Ok(r) => {
            ctx.stats.req(kind, r.len);
            if r.status != 200 {
                ctx.stats.err(&format!("{}_{}", KINDS[kind], r.status));
            }
            Some(r.status == 200)
        }
        Err(e) => {
            ctx.stats.err(&format!("{}_{}", KINDS[kind], e.label()));
            Some(false)
        }
    }
}

/// What one viewer did: when its first playlist arrived (it joined), and (URI key, when it had
/// the whole object) for every part (LL) or segment (plain) it fetched.
#[derive(Default)]
struct Viewed {
    joined: Option<Instant>,
    got: Vec<(u64, Instant)>,
}

/// One LL-HLS viewer.
async fn ll_viewer(ctx: Arc<Ctx>, id: u64, mut conn: Conn) -> Viewed {
    let mut v = Viewed::default();
    let a = &ctx.args;
    let mut pl: Option<Playlist> = None;
    let mut last: Option<(u64, u64)> = None;
    let mut last_seg: Option<u64> = None;
    let mut init: Option<String> = None;
    let mut segs_done = 0u64;
    while Instant::now() < ctx.deadline {
        // (Re)join: the plain playlist, then start at its newest part, as a player joining live.
        let Some(cur) = pl.as_ref() else {
            match get_playlist(&ctx, &mut conn, &ctx.target.path, 0).await {
                Ok(p) => {
                    v.joined.get_or_insert_with(Instant::now);
                    if last.is_none() {
                        last = p.last_part();
                        last_seg = p.segments.last().map(|s| s.msn);
                    }
                    pl = Some(p);
                }
                Err(e) if e == "deadline" => break,
                Err(e) => {
                    ctx.stats.err(&e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            continue;
        };
        if cur.init != init {
            if let Some(u) = cur.init.clone() {
                get_object(&ctx, &mut conn, &u, 4).await;
            }
            init = cur.init.clone();
        }
        if cur.ended {
            break;
        }
        let (m, p) = cur.next_part();
        let skip = if a.skip && cur.can_skip {
            "&_HLS_skip=YES"
        } else {
            ""
        };
        let path = format!("{}?_HLS_msn={m}&_HLS_part={p}{skip}", ctx.target.path);
        let next = match get_playlist(&ctx, &mut conn, &path, 1).await {
            Ok(n) => n,
            Err(e) if e == "deadline" => break,
            Err(e) => {
                ctx.stats.err(&e);
                if !e.ends_with("_503") {
                    // 400/404/broken answer: start over from the plain playlist
                    pl = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let since = last;
        for part in next.parts.iter().filter(|x| Some((x.msn, x.index)) > since) {
            let uri = next.uri(part.uri);
            match get_object(&ctx, &mut conn, uri, 2).await {
                Some(true) => v.got.push((key(uri), Instant::now())),
                Some(false) => {}
                None => return v,
            }
            last = Some((part.msn, part.index));
        }
        let since = last_seg;
        for seg in next.segments.iter().filter(|s| Some(s.msn) > since) {
            last_seg = Some(seg.msn);
            segs_done += 1;
            if a.segment_every > 0 && (segs_done + id).is_multiple_of(a.segment_every) {
                get_object(&ctx, &mut conn, next.uri(seg.uri), 3).await;
            }
            if a.init_every > 0 && (segs_done + id).is_multiple_of(a.init_every) {
                if let Some(u) = init.as_deref() {
                    get_object(&ctx, &mut conn, u, 4).await;
                }
            }
        }
        pl = Some(next);
    }
    v
}

/// One classic HLS viewer.
async fn plain_viewer(ctx: Arc<Ctx>, mut conn: Conn) -> Viewed {
    let mut v = Viewed::default();
    let mut last: Option<u64> = None;
    let mut init: Option<String> = None;
    while Instant::now() < ctx.deadline {
        let t0 = Instant::now();
        let mut changed = false;
        let mut td = 2.0;
        match get_playlist(&ctx, &mut conn, &ctx.target.path, 0).await {
            Ok(p) => {
                v.joined.get_or_insert_with(Instant::now);
                if p.target_duration > 0.0 {
                    td = p.target_duration;
                }
                if p.init != init {
                    if let Some(u) = p.init.as_deref() {
                        get_object(&ctx, &mut conn, u, 4).await;
                    }
                    init = p.init.clone();
                }
                if last.is_none() {
                    last = p.segments.last().map(|s| s.msn);
                    changed = true;
                } else {
                    let since = last;
                    for s in p.segments.iter().filter(|s| Some(s.msn) > since) {
                        let uri = p.uri(s.uri);
                        match get_object(&ctx, &mut conn, uri, 3).await {
                            Some(true) => v.got.push((key(uri), Instant::now())),
                            Some(false) => {}
                            None => return v,
                        }
                        last = Some(s.msn);
                        changed = true;
                    }
                }
                if p.ended {
                    break;
                }
            }
            Err(e) if e == "deadline" => break,
            Err(e) => ctx.stats.err(&e),
        }
        // hls.js: reload after a target duration when the playlist moved, half when it did not.
        let wait = if changed { td } else { td / 2.0 };
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(wait)).await;
    }
    v
}

/// When each part and each segment was first listed at `watch` (the origin).
#[derive(Default)]
struct Seen {
    parts: HashMap<u64, Instant>,
    segments: HashMap<u64, Instant>,
}

/// The reference watcher. LL: blocking reloads for the next part, so a part is seen within
/// about a millisecond of being published; plain: the playlist every 20 ms. It runs on a
/// thread and runtime of its own, so that thousands of viewer tasks do not delay it.
async fn watcher(ctx: Arc<Ctx>, watch: Target) -> Seen {
    let mut seen = Seen::default();
    let mut conn = Conn::new(
        None,
        watch.dst,
        watch.host.clone(),
        Duration::from_secs_f64(ctx.args.timeout),
    );
    let mut pl: Option<Playlist> = None;
    let end = ctx.deadline;
    while Instant::now() < end {
        let path = match (&pl, ctx.args.mode) {
            (Some(p), Mode::Ll) if p.can_block => {
                let (m, n) = p.next_part();
                format!("{}?_HLS_msn={m}&_HLS_part={n}", watch.path)
            }
            _ => watch.path.clone(),
        };
        let Ok(r) = tokio::time::timeout_at(end, conn.get(&path, true)).await else {
            break;
        };
        let now = Instant::now();
        let parsed = match r {
            Ok(r) if r.status == 200 => String::from_utf8(r.body).ok().and_then(Playlist::parse),
            Ok(_) | Err(_) => None,
        };
        match parsed {
            Some(p) => {
                for part in &p.parts {
                    seen.parts.entry(key(p.uri(part.uri))).or_insert(now);
                }
                for s in &p.segments {
                    seen.segments.entry(key(p.uri(s.uri))).or_insert(now);
                }
                let ended = p.ended;
                pl = Some(p);
                if ended {
                    break;
                }
            }
            None => {
                pl = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if ctx.args.mode == Mode::Plain || pl.as_ref().is_some_and(|p| !p.can_block) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    seen
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocast-viewers: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrocast-viewers: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(mut args: Args) -> Result<String, String> {
    if let Some(r) = &args.rendition {
        let dir = &args.url[..args.url.rfind('/').map(|i| i + 1).unwrap_or(0)];
        args.url = format!("{dir}{r}/index.m3u8");
    }
    let target = Target::parse(&args.url).await?;
    let watch = Target::parse(args.watch_url.as_deref().unwrap_or(&args.url)).await?;
    let sources = match &args.sources {
        Some(s) => parse_sources(s)?,
        None => Vec::new(),
    };
    let n = args.viewers;
    let ramp = args
        .ramp
        .unwrap_or_else(|| (n as f64 / 2000.0).min(8.0))
        .max(0.0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let win_start = start + Duration::from_secs_f64(ramp + args.settle);
    let win_end = deadline
        .checked_sub(Duration::from_secs_f64(args.tail))
        .unwrap_or(deadline);
    if win_end <= win_start {
        return Err("duration too short for ramp + settle + tail".into());
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let mode = args.mode;
    let ctx = Arc::new(Ctx {
        args,
        target,
        stats: Stats::default(),
        deadline,
    });
    let wctx = ctx.clone();
    let w = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(watcher(wctx, watch)))
            .unwrap_or_default()
    });
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let ctx = ctx.clone();
        let src = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let at = start + Duration::from_secs_f64(ramp * i as f64 / n.max(1) as f64);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let conn = Conn::new(src, ctx.target.dst, ctx.target.host.clone(), timeout);
            match mode {
                Mode::Ll => ll_viewer(ctx, i as u64, conn).await,
                Mode::Plain => plain_viewer(ctx, conn).await,
            }
        }));
    }
    let mut results = Vec::with_capacity(n);
    for h in handles {
        results.push(h.await.unwrap_or_default());
    }
    let seen = tokio::task::spawn_blocking(move || w.join().unwrap_or_default())
        .await
        .unwrap_or_default();
    let elapsed = start.elapsed().as_secs_f64();

    // What every viewer should have had: the parts (LL) or segments (plain) that appeared at
    // the origin inside the window.
    let avail = match mode {
        Mode::Ll => &seen.parts,
        Mode::Plain => &seen.segments,
    };
    let expected: Vec<(u64, Instant)> = avail
        .iter()
        .filter(|(_, t)| **t >= win_start && **t <= win_end)
        .map(|(k, t)| (*k, *t))
        .collect();
    let mut lat: Vec<f64> = Vec::new();
    let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
    let mut negative = 0u64;
    let mut complete = 0u64;
    let mut missing_total = 0u64;
    let mut min_received = u64::MAX;
    let (mut joined_late, mut never_joined, mut last_join) = (0u64, 0u64, 0f64);
    for v in &results {
        let mine: HashMap<u64, Instant> = v.got.iter().copied().collect();
        // A viewer cannot be expected to have what appeared before it joined (its first
        // playlist arrived); joins after the window opened are counted separately.
        let joined = match v.joined {
            Some(j) => j,
            None => {
                never_joined += 1;
                deadline
            }
        };
        last_join = last_join.max(joined.saturating_duration_since(start).as_secs_f64());
        if joined > win_start {
            joined_late += 1;
        }
        let mut missing = 0u64;
        let mut received = 0u64;
        for (k, at) in expected.iter().filter(|(_, at)| *at >= joined) {
            match mine.get(k) {
                Some(t) => {
                    received += 1;
                    let ms = if *t >= *at {
                        t.duration_since(*at).as_secs_f64() * 1000.0
                    } else {
                        negative += 1;
                        -(at.duration_since(*t).as_secs_f64() * 1000.0)
                    };
                    lat.push(ms);
                    *hist.entry(ms.max(0.0).ceil() as u64).or_default() += 1;
                }
                None => missing += 1,
            }
        }
        if missing == 0 {
            complete += 1;
        }
        missing_total += missing;
        min_received = min_received.min(received);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let stats = &ctx.stats;
    let requests: serde_json::Map<String, serde_json::Value> = KINDS
        .iter()
        .zip(&stats.requests)
        .map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed).into()))
        .collect();
    let errors = stats
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let bytes = stats.bytes.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "mode": match mode { Mode::Ll => "ll", Mode::Plain => "plain" },
        "url": ctx.args.url,
        "viewers": n,
        "duration_s": elapsed,
        "window_s": (win_end - win_start).as_secs_f64(),
        "expected_per_viewer": expected.len(),
        "viewers_complete": complete,
        "missing_total": missing_total,
        "min_received": if results.is_empty() { 0 } else { min_received },
        "joined_late": joined_late,
        "never_joined": never_joined,
        "last_join_s": last_join,
        "latency_ms": {
            "count": lat.len(),
            "p50": percentile(&lat, 0.5),
            "p90": percentile(&lat, 0.9),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().copied().unwrap_or(0.0),
            "mean": if lat.is_empty() { 0.0 } else { lat.iter().sum::<f64>() / lat.len() as f64 },
            "negative": negative,
        },
        "latency_hist_ms": hist.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        "requests": requests,
        "errors": errors,
        "bytes": bytes,
        "bytes_per_s": bytes as f64 / elapsed.max(0.001),
    });
    let text = summary.to_string();
    if let Some(p) = &ctx.args.json {
        std::fs::write(p, &text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(text)
}
