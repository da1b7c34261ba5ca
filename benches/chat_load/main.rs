//! ferrocast-chat-load: N WebSocket chat clients in one room, some of which send M messages a
//! second in total, measuring delivery. Several processes (each under the ~20,000-socket
//! limit, each on its own 127.0.0.x source addresses) make one larger run; see
//! `benches/chat_load.sh`, which merges their JSON and adds the server's memory.
//!
//! Every sent text is `lt SEQ SEND_UNIX_US`; a receiver's latency is its receive time minus
//! the send time (all processes share the machine's clock). Sending runs from `--start-at`
//! for `--duration` s; receivers count until `--tail` s after that, then one JSON line is
//! printed on stdout.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(
    name = "ferrocast-chat-load",
    about = "WebSocket chat clients in one room"
)]
struct Args {
    /// Chat URL, e.g. ws://127.0.0.1:28080/live/s1/chat
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// How many of the connections send (round robin).
    #[arg(long, default_value_t = 0)]
    senders: usize,
    /// Messages per second sent by this process in total.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// UNIX ms at which sending starts (default: when every connection is up).
    #[arg(long)]
    start_at: Option<u64>,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of receiving after the last send.
    #[arg(long, default_value_t = 3.0)]
    tail: f64,
    /// Source addresses, round robin: 127.0.0.2-127.0.0.5 or a comma list.
    #[arg(long)]
    sources: Option<String>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Name prefix of this process's connections (names must be unique in the room).
    #[arg(long, default_value = "load")]
    tag: String,
}

/// Latency histogram: 100 µs buckets up to 10 s, then one overflow bucket.
const BUCKET_US: u64 = 100;
const BUCKETS: usize = 100_000;

struct Stats {
    hist: Vec<AtomicU64>,
    delivered: AtomicU64,
    connected: AtomicU64,
    connect_failed: AtomicU64,
    closed_by_server: AtomicU64,
    errors: AtomicU64,
    sent: AtomicU64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn parse_sources(s: &str) -> Result<Vec<IpAddr>, String> {
    if let Some((a, b)) = s.split_once('-') {
        let a: std::net::Ipv4Addr = a.parse().map_err(|e| format!("{a}: {e}"))?;
        let b: std::net::Ipv4Addr = b.parse().map_err(|e| format!("{b}: {e}"))?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a > 250 {
            return Err(format!("bad range {s}"));
        }
        return Ok((a..=b).map(|x| IpAddr::V4(x.into())).collect());
    }
    s.split(',')
        .map(|x| x.trim().parse().map_err(|e| format!("{x}: {e}")))
        .collect()
}

/// `lt SEQ SEND_US` inside a message frame's text, without a JSON parse per frame.
fn send_time(frame: &str) -> Option<u64> {
    if !frame.starts_with("{\"type\":\"message\"") {
        return None;
    }
    let i = frame.find("\"text\":\"lt ")? + 11;
    let rest = &frame[i..];
    let rest = &rest[rest.find(' ')? + 1..];
    let end = rest.find('"')?;
    rest[..end].parse().ok()
}

fn percentile(hist: &[u64], total: u64, p: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let want = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, n) in hist.iter().enumerate() {
        acc += n;
        if acc >= want {
            return Some((i as u64 * BUCKET_US + BUCKET_US / 2) as f64 / 1000.0);
        }
    }
    None
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let url: hyper::Uri = args.url.parse().map_err(|e| format!("--url: {e}"))?;
    let host = url.host().ok_or("--url needs a host")?;
    let port = url.port_u16().unwrap_or(80);
    let server: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("--url must name an IP address: {e}"))?;
    let sources = match &args.sources {
        Some(s) => parse_sources(s)?,
        None => Vec::new(),
    };
    let stats = Arc::new(Stats {
        hist: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        connect_failed: AtomicU64::new(0),
        closed_by_server: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    });
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut senders = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let src = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let url = format!("{}?name={}-{i}", args.url, args.tag);
        let stats = stats.clone();
        let gate = gate.clone();
        let ready = ready_tx.clone();
        let sender = i < args.senders;
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<String>(64);
        if sender {
            senders.push(out_tx);
        }
        tasks.spawn(async move {
            let ws = {
                let _permit = gate.acquire().await;
                let sock = match TcpSocket::new_v4() {
                    Ok(s) => s,
                    Err(_) => return stats.connect_failed.fetch_add(1, Ordering::Relaxed),
                };
                if let Some(ip) = src {
                    if sock.bind(SocketAddr::new(ip, 0)).is_err() {
                        return stats.connect_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let Ok(tcp) = sock.connect(server).await else {
                    return stats.connect_failed.fetch_add(1, Ordering::Relaxed);
                };
                let _ = tcp.set_nodelay(true);
                match tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await {
                    Ok((ws, _)) => ws,
                    Err(_) => return stats.connect_failed.fetch_add(1, Ordering::Relaxed),
                }
            };
            let (mut sink, mut stream) = ws.split();
            let mut welcomed = false;
            loop {
                tokio::select! {
                    m = stream.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let t = t.as_str();
                            if !welcomed && t.starts_with("{\"type\":\"welcome\"") {
                                welcomed = true;
                                stats.connected.fetch_add(1, Ordering::Relaxed);
                                let _ = ready.send(());
                            } else if let Some(sent) = send_time(t) {
                                let lat = now_us().saturating_sub(sent) / BUCKET_US;
                                stats.hist[(lat as usize).min(BUCKETS)].fetch_add(1, Ordering::Relaxed);
                                stats.delivered.fetch_add(1, Ordering::Relaxed);
                            } else if t.starts_with("{\"type\":\"error\"") {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                                if stats.errors.load(Ordering::Relaxed) <= 5 {
                                    eprintln!("server error frame: {t}");
                                }
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            return stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(_)) => {}
                    },
                    Some(text) = out_rx.recv(), if sender => {
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return 0;
                        }
                    }
                }
            }
        });
    }
    drop(ready_tx);
    // Sending starts at --start-at, or once every connection has been welcomed.
    let mut up = 0;
    let start_at_us = match args.start_at {
        Some(ms) => ms * 1000,
        None => {
            while up < args.connections {
                match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
                    Ok(Some(())) => up += 1,
                    _ => break,
                }
            }
            now_us() + 1_000_000
        }
    };
    eprintln!("{}: {up} welcomed before the start", args.tag);
    let wait = start_at_us.saturating_sub(now_us());
    tokio::time::sleep(Duration::from_micros(wait)).await;
    let connected_at_start = stats.connected.load(Ordering::Relaxed);
    let end_us = start_at_us + (args.duration * 1e6) as u64;
    if args.rate > 0.0 && !senders.is_empty() {
        let every = Duration::from_secs_f64(1.0 / args.rate);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut seq = 0u64;
        while now_us() < end_us {
            tick.tick().await;
            let text = format!("{{\"type\":\"send\",\"text\":\"lt {seq} {}\"}}", now_us());
            if senders[(seq as usize) % senders.len()]
                .try_send(text)
                .is_ok()
            {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            seq += 1;
        }
    } else {
        tokio::time::sleep(Duration::from_micros(end_us.saturating_sub(now_us()))).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.tail)).await;
    let hist: Vec<u64> = stats
        .hist
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let sparse: Vec<(u64, u64)> = hist
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| (i as u64 * BUCKET_US, *n))
        .collect();
    let report = serde_json::json!({
        "tag": args.tag,
        "connections": args.connections,
        "connected_at_start": connected_at_start,
        "connect_failed": stats.connect_failed.load(Ordering::Relaxed),
        "closed_by_server": stats.closed_by_server.load(Ordering::Relaxed),
        "error_frames": stats.errors.load(Ordering::Relaxed),
        "sent": stats.sent.load(Ordering::Relaxed),
        "delivered": delivered,
        "delivered_per_s": delivered as f64 / args.duration,
        "p50_ms": percentile(&hist, delivered, 0.50),
        "p99_ms": percentile(&hist, delivered, 0.99),
        "max_ms": hist.iter().rposition(|n| *n > 0).map(|i| (i as u64 * BUCKET_US) as f64 / 1000.0),
        "hist_us": sparse,
    });
    println!("{report}");
    // Exit without closing 10k sockets politely; the kernel does it.
    std::process::exit(0);
}
