//! HTTP routes of the origin (hyper 1, HTTP/1.1 keep-alive).
//!
//! Long-held requests (blocking playlist reload, preload-hinted parts) wait on the
//! stream's version counter; nothing here polls.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::chat::ChatRooms;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::origin::cache;
use crate::origin::proxy::{self, Proxy};
use crate::origin::query;
use crate::store::{Rendition, Store, StreamEntry};
use crate::util::body::Body;

pub type Resp = Response<Body>;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// Answers a `/live/NAME/chat` request (the WebSocket upgrade); wired in by the server so
/// the routes need not know the chat's transport.
pub type ChatUpgrade = Arc<dyn Fn(&str, Request<Incoming>) -> Resp + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub chat: Arc<ChatRooms>,
    pub chat_upgrade: ChatUpgrade,
    /// Player pages and static assets (`web/`).
    pub web_dir: PathBuf,
    /// Streams other nodes own, answered through this node (`[cluster]`; None on its own).
    pub proxy: Option<Arc<Proxy>>,
}

/// Serves HTTP until the listener fails.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let app = app.clone();
        // One span per connection (none per request): whatever a request logs names the peer.
        let span = tracing::info_span!("http", peer = %peer);
        let conn = async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            // The timer arms hyper's header-read timeout (30 s): a client that never
            // finishes its request headers cannot hold a connection forever.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(sock), svc)
                .with_upgrades()
                .await;
        };
        tokio::spawn(conn.instrument(span));
    }
}

async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    let head = req.method() == Method::HEAD;
    app.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    let kind = cache::Kind::of(req.uri().path(), req.uri().query());
    if let Some(i) = cache::Kind::ALL.iter().position(|k| *k == kind) {
        app.metrics.http_requests_by_kind[i].fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = match chat_room(&req) {
        Some(name) if req.method() == Method::GET => {
            let name = name.to_string();
            (app.chat_upgrade)(&name, req)
        }
        Some(_) => not_found(),
        None => route(app, &req).await,
    };
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        app.metrics
            .http_blocking_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache::NO_STORE),
        );
    }
    if head {
        let (parts, body) = resp.into_parts();
        let n = hyper::body::Body::size_hint(&body).exact().unwrap_or(0);
        let mut r = Response::from_parts(parts, Body::default());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        return r;
    }
    if let Some(n) = hyper::body::Body::size_hint(resp.body()).exact() {
        app.metrics.http_bytes.fetch_add(n, Ordering::Relaxed);
    }
    resp
}

/// The stream name of a `/live/NAME/chat` request.
fn chat_room(req: &Request<Incoming>) -> Option<&str> {
    let rest = req.uri().path().strip_prefix("/live/")?;
    let name = rest.strip_suffix("/chat")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

async fn route(app: &App, req: &Request<Incoming>) -> Resp {
    match *req.method() {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => {
            let mut r = status(StatusCode::NO_CONTENT, "");
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("*"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
            return r;
        }
        _ => return status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
    if let Some(p) = &app.proxy {
        if let Some(resp) = p.route(req).await {
            return resp;
        }
    }
    let path = req.uri().path();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => static_file(&app.web_dir, "index.html"),
        ["healthz"] => text(StatusCode::OK, "ok\n"),
        ["metrics"] => {
            let live = app.hub.live_names().len();
            let mut r = text(StatusCode::OK, &app.metrics.render(live));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        ["api", "v1", "streams"] => {
            // A node asking for this node's list gets only this node's streams.
            let cluster_wide = !req.headers().contains_key(proxy::VIA);
            super::api::streams(app, cluster_wide).await
        }
        ["api", "v1", "streams", name, "chat"] => {
            super::api::chat_range(app, name, req.uri().query()).await
        }
        ["watch", name] if app.config.stream(name).is_some() => {
            static_file(&app.web_dir, "watch.html")
        }
        ["static", rest @ ..] => static_file(&app.web_dir, &rest.join("/")),
        ["live", name, "index.m3u8"] => match app.store.get(name) {
            Some(entry) => multivariant(&entry).await,
            None => not_found(),
        },
        ["live", name, rendition, file] => {
            let Some(entry) = app.store.get(name) else {
                return not_found();
            };
            let Some(idx) = entry.renditions.iter().position(|r| r.name == *rendition) else {
                return not_found();
            };
            if *file == "index.m3u8" {
                media_playlist(&entry, idx, req.uri().query()).await
            } else {
                media_object(&entry, &entry.renditions[idx], file, req).await
            }
        }
        _ => not_found(),
    }
}

/// Waits until `ready()` holds or `timeout` passes; false on timeout.
async fn wait_until(entry: &StreamEntry, timeout: Duration, ready: impl Fn() -> bool) -> bool {
    let mut rx = entry.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return ready(),
            Err(_) => return false,
        }
    }
}

fn hold_limit(entry: &StreamEntry) -> Duration {
    Duration::from_secs(3 * entry.target_duration())
}

async fn multivariant(entry: &StreamEntry) -> Resp {
    // A player may ask the moment the stream goes live: give the codecs a moment to arrive.
    let ready = || entry.renditions.iter().any(|r| r.has_media());
    if !wait_until(entry, hold_limit(entry), ready).await {
        return status(StatusCode::SERVICE_UNAVAILABLE, "stream has no media yet\n");
    }
    match entry.multivariant() {
        Some(text) => playlist_response(text.into(), cache::MULTIVARIANT.to_string()),
        None => status(StatusCode::SERVICE_UNAVAILABLE, "stream has no media yet\n"),
    }
}

async fn media_playlist(entry: &StreamEntry, idx: usize, q: Option<&str>) -> Resp {
    let d = match query::parse(q) {
        Ok(d) => d,
        Err(msg) => return status(StatusCode::BAD_REQUEST, &format!("{msg}\n")),
    };
    let r = &entry.renditions[idx];
    let limit = hold_limit(entry);
    if let Some(msn) = d.msn {
        let last = r.last_position().map(|(m, _)| m).unwrap_or(0);
        if msn > last + 2 {
            return status(
                StatusCode::BAD_REQUEST,
                "_HLS_msn is more than two segments ahead\n",
            );
        }
        if !wait_until(entry, limit, || r.ended() || r.has(msn, d.part)).await {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "requested part did not appear in time\n",
            );
        }
    } else if !wait_until(entry, limit, || r.ended() || r.last_position().is_some()).await {
        return status(StatusCode::SERVICE_UNAVAILABLE, "stream has no media yet\n");
    }
    let Some(text) = entry.media_playlist(idx, d.skip) else {
        return not_found();
    };
    let cc = if r.ended() {
        cache::ENDED_PLAYLIST.to_string()
    } else if d.msn.is_some() {
        cache::blocking_playlist(entry.target_duration())
    } else {
        cache::LIVE_PLAYLIST.to_string()
    };
    playlist_response(text, cc)
}

async fn media_object(
    entry: &StreamEntry,
    r: &Rendition,
    file: &str,
    req: &Request<Incoming>,
) -> Resp {
    let mut obj = r.object(file);
    if obj.is_none() && r.is_hinted(file) {
        // The preload hint promised this part: hold the request until it exists.
        let limit = hold_limit(entry);
        if !wait_until(entry, limit, || r.ended() || r.object(file).is_some()).await {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "hinted part did not appear in time\n",
            );
        }
        obj = r.object(file);
    }
    let Some(obj) = obj else {
        return not_found();
    };
    let etag = HeaderValue::from_str(&obj.etag).unwrap_or(HeaderValue::from_static("\"x\""));
    // RFC 9110 13.2.2: If-None-Match wins; If-Modified-Since counts only without it.
    let inm = req.headers().get_all(header::IF_NONE_MATCH);
    let not_modified = if inm.iter().next().is_some() {
        inm.iter()
            .any(|v| cache::if_none_match(v.as_bytes(), &obj.etag))
    } else {
        req.headers()
            .get(header::IF_MODIFIED_SINCE)
            .is_some_and(|v| cache::not_modified_since(v.as_bytes(), obj.created))
    };
    let mut resp = if not_modified {
        status(StatusCode::NOT_MODIFIED, "")
    } else {
        let mut r = Response::new(Body::from_chunks(obj.chunks.iter()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(obj.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    if let Ok(v) = HeaderValue::from_str(&cache::last_modified(obj.created)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache::IMMUTABLE),
    );
    resp
}

fn playlist_response(body: Bytes, cache_control: String) -> Resp {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PLAYLIST_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&cache_control) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

/// Serves a file under `web/`; refuses any path that could leave it.
fn static_file(dir: &Path, rel: &str) -> Resp {
    let rel = Path::new(rel);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return not_found();
    }
    let path = dir.join(rel);
    let Ok(bytes) = std::fs::read(&path) else {
        return not_found();
    };
    let ctype = match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let mut r = Response::new(Body::from(Bytes::from(bytes)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    r
}

pub fn json(body: String) -> Resp {
    let mut r = Response::new(Body::from(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn text(code: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Body::from(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn status(code: StatusCode, body: &str) -> Resp {
    let mut r = text(code, body);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache::NO_STORE),
    );
    r
}

fn not_found() -> Resp {
    status(StatusCode::NOT_FOUND, "not found\n")
}
