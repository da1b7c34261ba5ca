//! Any node serves any stream: a request for `/live/NAME/...` on a node that does not own NAME
//! (the cluster directory names a fresh owner elsewhere) is answered from the owner through
//! this node.
//!
//! - Collapsing: identical requests (same URL, query included) in flight share one upstream
//!   request, so a blocking reload or a preload-hinted part is held once at the owner however
//!   many viewers wait here. The upstream request runs in its own task: a viewer that hangs up
//!   does not cancel it for the others.
//! - Caching: what the owner's `Cache-Control` allows (immutable objects for their `max-age`,
//!   blocking-reload answers and the multivariant playlist for their few seconds), in a
//!   byte-bounded LRU ([`lru`]); `no-cache`/`no-store` answers are only shared while in flight.
//! - Relaying: status, `Content-Type`, `Cache-Control`, `ETag`, `Last-Modified` and the body
//!   exactly as the owner sent them ([`upstream`]), so any node gives the same bytes for a URL.
//! - Bounds: a deadline per upstream request, a cap on requests in flight per owner, a body
//!   size limit; no lock is held across an await, so a slow owner delays only its streams.
//!
//! Streams this node owns, and every request without a cluster, never come here.

pub mod lru;
pub mod upstream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::cluster::{Directory, Owner};
use crate::config::HlsConfig;
use crate::metrics::Metrics;
use crate::origin::cache;
use crate::origin::http::Resp;
use crate::util::time::now_ms;
use lru::Lru;
pub use upstream::{Fetched, Upstream, VIA};

/// Default byte bound of the cache.
pub const CACHE_BYTES: usize = 256 << 20;
/// Upstream requests in flight to one owner at most (after collapsing); beyond, 502 at once.
pub const MAX_IN_FLIGHT_PER_OWNER: usize = 256;
/// How long an owner's stream list is reused for `/api/v1/streams`.
pub const LISTING_TTL: Duration = Duration::from_secs(1);
/// Deadline for fetching an owner's stream list (the API answers without it after that).
pub const LISTING_DEADLINE: Duration = Duration::from_secs(2);
/// At most one warning per this interval about failing owners (each failure is counted).
const WARN_EVERY_MS: u64 = 10_000;

/// An upstream answer shared by every request that waited for it, or why there is none.
type Outcome = Result<Arc<Fetched>, Arc<str>>;

/// How long an answer is kept after it arrives.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// As its `Cache-Control` allows.
    AsTold,
    /// This long if it is a 200 (the stream lists, which are `no-cache` for viewers).
    For(Duration),
}

/// The proxy of one node; see the module docs.
pub struct Proxy {
    directory: Arc<Directory>,
    metrics: Arc<Metrics>,
    upstream: Upstream,
    /// Whole-request deadline for `/live/` requests, above the longest hold at the owner.
    deadline: Duration,
    /// URL -> the answer of the request in flight for it.
    flights: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
    cache: Mutex<Lru<Fetched>>,
    /// Owner origin -> its in-flight budget.
    budgets: Mutex<HashMap<String, Arc<Semaphore>>>,
    last_warn_ms: AtomicU64,
}

impl Proxy {
    pub fn new(directory: Arc<Directory>, metrics: Arc<Metrics>, hls: &HlsConfig) -> Arc<Proxy> {
        let upstream = Upstream::new(directory.node());
        Arc::new(Proxy {
            directory,
            metrics,
            upstream,
            deadline: deadline(hls),
            flights: Mutex::new(HashMap::new()),
            cache: Mutex::new(Lru::new(CACHE_BYTES)),
            budgets: Mutex::new(HashMap::new()),
            last_warn_ms: AtomicU64::new(0),
        })
    }

    fn flights(&self) -> MutexGuard<'_, HashMap<String, watch::Receiver<Option<Outcome>>>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cache(&self) -> MutexGuard<'_, Lru<Fetched>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owner of `name` when it is another node (a fresh directory record).
    pub fn owner_elsewhere(&self, name: &str) -> Option<Owner> {
        self.directory
            .owner(name)
            .filter(|o| o.node != self.directory.node())
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        self.directory.node()
    }

    /// Answers `req` from the owner when it is for a stream another node owns; `None` when
    /// this node answers it itself (its own stream, no owner known, not a stream URL, or a
    /// request another node forwarded).
    pub async fn route(self: &Arc<Self>, req: &Request<Incoming>) -> Option<Resp> {
        let name = stream_of(req.uri().path())?;
        if req.headers().contains_key(VIA) {
            return None;
        }
        let owner = self.owner_elsewhere(name)?;
        self.metrics.proxy_requests.fetch_add(1, Ordering::Relaxed);
        let target = req
            .uri()
            .path_and_query()
            .map_or(req.uri().path(), |p| p.as_str());
        let url = format!("{}{target}", owner.origin.trim_end_matches('/'));
        Some(
            match self
                .get(&owner.origin, url, Keep::AsTold, self.deadline)
                .await
            {
                Ok(f) => f.respond(req.headers()),
                Err(e) => bad_gateway(&owner.node, &e),
            },
        )
    }

    /// `/api/v1/streams` entries for the streams other nodes own, by name: the owner's own
    /// entry (its list fetched at most once per [`LISTING_TTL`]), or one made from the
    /// directory record when the owner does not answer; each with `node`.
    pub async fn remote_streams(self: &Arc<Self>) -> Vec<Value> {
        let remote = self.directory.remote();
        let mut origins: Vec<&str> = remote.iter().map(|(_, o)| o.origin.as_str()).collect();
        origins.sort_unstable();
        origins.dedup();
        let lists = futures_util::future::join_all(origins.iter().map(|o| self.listing(o))).await;
        let lists: HashMap<&str, Vec<Value>> = origins.into_iter().zip(lists).collect();
        remote
            .iter()
            .map(|(name, owner)| {
                let mut e = lists
                    .get(owner.origin.as_str())
                    .and_then(|l| l.iter().find(|e| e["name"] == name.as_str()))
                    .cloned()
                    .unwrap_or_else(|| from_record(name, owner));
                e["node"] = Value::from(owner.node.clone());
                e
            })
            .collect()
    }

    async fn listing(self: &Arc<Self>, origin: &str) -> Vec<Value> {
        let url = format!("{}/api/v1/streams", origin.trim_end_matches('/'));
        match self
            .get(origin, url, Keep::For(LISTING_TTL), LISTING_DEADLINE)
            .await
        {
            Ok(f) if f.status == StatusCode::OK => {
                serde_json::from_slice(&f.body).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// The answer for `url`: from the cache, from the identical request in flight, or from a
    /// new upstream request.
    async fn get(
        self: &Arc<Self>,
        origin: &str,
        url: String,
        keep: Keep,
        deadline: Duration,
    ) -> Outcome {
        let mut rx = {
            // Lock order: flights, then cache. The leader stores the answer and retires the
            // flight under both, so no request can miss both and start a second fetch.
            let mut flights = self.flights();
            let hit = {
                let mut cache = self.cache();
                let hit = cache.get(&url, Instant::now());
                let bytes = cache.bytes() as u64;
                self.metrics
                    .proxy_cache_bytes
                    .store(bytes, Ordering::Relaxed);
                hit
            };
            if let Some(hit) = hit {
                self.metrics
                    .proxy_cache_hits
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
            match flights.get(&url) {
                // A flight whose task died (its sender is gone) is replaced.
                Some(rx) if rx.has_changed().is_ok() => {
                    self.metrics.proxy_collapsed.fetch_add(1, Ordering::Relaxed);
                    rx.clone()
                }
                _ => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(url.clone(), rx.clone());
                    let lead = self
                        .clone()
                        .lead(origin.to_string(), url, keep, deadline, tx);
                    tokio::spawn(lead);
                    rx
                }
            }
        };
        loop {
            if let Some(out) = rx.borrow_and_update().clone() {
                return out;
            }
            if rx.changed().await.is_err() {
                return rx
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| Err(Arc::from("the upstream request was abandoned")));
            }
        }
    }

    /// The one upstream request of a flight: fetch, cache what may be kept, retire the
    /// flight, hand the answer to every waiter.
    async fn lead(
        self: Arc<Self>,
        origin: String,
        url: String,
        keep: Keep,
        deadline: Duration,
        tx: watch::Sender<Option<Outcome>>,
    ) {
        let budget = self.budget(&origin);
        let out: Outcome = match budget.try_acquire_owned() {
            Ok(_permit) => {
                self.metrics
                    .proxy_upstream_requests
                    .fetch_add(1, Ordering::Relaxed);
                self.upstream
                    .get(&url, deadline)
                    .await
                    .map(Arc::new)
                    .map_err(Arc::from)
            }
            Err(_) => Err(Arc::from(format!(
                "more than {MAX_IN_FLIGHT_PER_OWNER} requests in flight to it"
            ))),
        };
        if let Err(e) = &out {
            self.upstream_failed(&url, e);
        }
        let now = Instant::now();
        {
            let mut flights = self.flights();
            if let Ok(f) = &out {
                let ttl = match keep {
                    Keep::AsTold => f.freshness(),
                    Keep::For(d) => (f.status == StatusCode::OK).then_some(d),
                };
                if let Some(ttl) = ttl {
                    let mut cache = self.cache();
                    cache.insert(url.clone(), f.clone(), f.body.len(), now + ttl, now);
                    let bytes = cache.bytes() as u64;
                    self.metrics
                        .proxy_cache_bytes
                        .store(bytes, Ordering::Relaxed);
                }
            }
            flights.remove(&url);
        }
        let _ = tx.send(Some(out));
    }

    fn budget(&self, origin: &str) -> Arc<Semaphore> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets
            .entry(origin.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_OWNER)))
            .clone()
    }

    fn upstream_failed(&self, url: &str, error: &str) {
        self.metrics
            .proxy_upstream_errors
            .fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%url, %error, "request to the owner node failed (further failures for 10 s only counted)");
        } else {
            tracing::debug!(%url, %error, "request to the owner node failed");
        }
    }
}

/// Deadline of a proxied `/live/` request: the owner holds a blocking request up to three
/// target durations, and a GOP longer than the segment target raises the target duration, so
/// allow twice the configured one, plus a margin for the transfer.
fn deadline(hls: &HlsConfig) -> Duration {
    let target = hls.segment_target.as_secs_f64().ceil().max(1.0);
    Duration::from_secs_f64(2.0 * 3.0 * target) + Duration::from_secs(5)
}

/// The stream name of a URL the origin answers from a stream's store entry (multivariant,
/// media playlists, media objects).
pub fn stream_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/live/")?;
    let mut segs = rest.split('/');
    let name = segs.next().filter(|n| !n.is_empty())?;
    match (segs.next(), segs.next(), segs.next()) {
        (Some("index.m3u8"), None, None) => Some(name),
        (Some(r), Some(f), None) if !r.is_empty() && !f.is_empty() => Some(name),
        _ => None,
    }
}

/// A stream list entry from a directory record alone (its owner did not answer).
fn from_record(name: &str, owner: &Owner) -> Value {
    json!({
        "name": name,
        "publishing": owner.publishing,
        "ended": false,
        "started_at_ms": owner.since,
        "uptime_s": now_ms().saturating_sub(owner.since) as f64 / 1000.0,
        "bitrate": 0,
        "playlist": format!("/live/{name}/index.m3u8"),
        "watch": format!("/watch/{name}"),
        "renditions": [],
        "chat_connections": null,
    })
}

fn bad_gateway(node: &str, error: &str) -> Resp {
    let mut r = hyper::Response::new(crate::util::body::Body::from(format!(
        "owner node {node} did not answer: {error}\n"
    )));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static(cache::NO_STORE),
    );
    r
}

#[cfg(test)]
mod tests;
