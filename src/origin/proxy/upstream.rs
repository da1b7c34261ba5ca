//! Requests to the owner node: one HTTP/1.1 client with a bounded idle pool, a connect
//! timeout and a whole-request deadline, and the answer as it is relayed ([`Fetched`]).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::origin::cache;
use crate::util::body::Body;

/// Request header naming the node that forwarded a request. The owner answers such a request
/// from its own store and never forwards it again, so two nodes that disagree for a moment
/// about who owns a stream cannot bounce a request between them.
pub const VIA: &str = "x-ferrocast-via";

/// The response headers relayed from the owner; everything else is set by this node's routes
/// as for its own answers (CORS), or by hyper (`Content-Length`, `Date`).
pub const RELAYED: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
];

/// Largest body taken from an owner (a segment is a few MB even at high bitrates).
pub const MAX_BODY: usize = 64 << 20;
/// Connections kept open per owner between requests.
pub const IDLE_PER_OWNER: usize = 64;
/// How long an idle connection to an owner is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a TCP connection to an owner.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An owner's answer, as this node relays it.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    /// The [`RELAYED`] headers the owner sent, in that order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Fetched {
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// How long this answer may be kept: a 200 with a positive `max-age` and neither
    /// `no-store`, `no-cache` nor `private`.
    pub fn freshness(&self) -> Option<Duration> {
        if self.status != StatusCode::OK {
            return None;
        }
        freshness(self.header(&header::CACHE_CONTROL)?.to_str().ok()?)
    }

    /// The answer for a viewer; `304` (with the validators and `Cache-Control`, as the
    /// owner's own 304) when the request's `If-None-Match`, or without it
    /// `If-Modified-Since`, says the viewer holds this object already.
    pub fn respond(&self, request: &hyper::HeaderMap) -> Response<Body> {
        if self.not_modified(request) {
            let mut r = Response::new(Body::default());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            for (n, v) in &self.headers {
                if *n != header::CONTENT_TYPE {
                    r.headers_mut().insert(n.clone(), v.clone());
                }
            }
            return r;
        }
        let mut r = Response::new(Body::from(self.body.clone()));
        *r.status_mut() = self.status;
        for (n, v) in &self.headers {
            r.headers_mut().insert(n.clone(), v.clone());
        }
        r
    }

    /// `Last-Modified` as a time.
    pub fn last_modified(&self) -> Option<SystemTime> {
        httpdate::parse_http_date(self.header(&header::LAST_MODIFIED)?.to_str().ok()?).ok()
    }

    /// The origin's rule (RFC 9110 13.2.2), for objects that carry an `ETag`: playlists have
    /// none and are never answered 304.
    fn not_modified(&self, request: &hyper::HeaderMap) -> bool {
        if self.status != StatusCode::OK {
            return false;
        }
        let Some(etag) = self.header(&header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let inm = request.get_all(header::IF_NONE_MATCH);
        if inm.iter().next().is_some() {
            return inm.iter().any(|v| cache::if_none_match(v.as_bytes(), etag));
        }
        match (request.get(header::IF_MODIFIED_SINCE), self.last_modified()) {
            (Some(ims), Some(created)) => cache::not_modified_since(ims.as_bytes(), created),
            _ => false,
        }
    }
}

/// Seconds of `max-age` in a `Cache-Control` value, unless it forbids shared caching.
pub fn freshness(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for d in cache_control.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" || d == "private" {
            return None;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    age.filter(|a| *a > 0).map(Duration::from_secs)
}

/// The HTTP client to owner nodes.
pub struct Upstream {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// This node's name, sent in [`VIA`].
    via: HeaderValue,
}

impl Upstream {
    pub fn new(node: &str) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_OWNER)
            .build(connector);
        let via = HeaderValue::from_str(node).unwrap_or(HeaderValue::from_static("node"));
        Upstream { client, via }
    }

    /// `GET url`, the whole answer within `deadline`; an error says what failed, briefly.
    pub async fn get(&self, url: &str, deadline: Duration) -> Result<Fetched, String> {
        match tokio::time::timeout(deadline, self.fetch(url)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}s", deadline.as_secs())),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Fetched, String> {
        let req = Request::get(url)
            .header(VIA, self.via.clone())
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad upstream URL: {e}"))?;
        let resp = self.client.request(req).await.map_err(|e| {
            // The chain's innermost cause says what happened (refused, reset, timed out).
            let mut cause: &dyn std::error::Error = &e;
            while let Some(c) = cause.source() {
                cause = c;
            }
            format!("{e}: {cause}")
        })?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let headers = RELAYED
            .iter()
            .filter_map(|n| parts.headers.get(n).map(|v| (n.clone(), v.clone())))
            .collect();
        Ok(Fetched {
            status: parts.status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(status: u16, headers: &[(HeaderName, &str)], body: &'static str) -> Fetched {
        Fetched {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.clone(), HeaderValue::from_str(v).unwrap()))
                .collect(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn freshness_follows_cache_control() {
        assert_eq!(
            freshness(cache::IMMUTABLE),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            freshness(&cache::blocking_playlist(2)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(freshness(cache::MULTIVARIANT), Some(Duration::from_secs(2)));
        for never in [
            cache::LIVE_PLAYLIST,
            cache::NO_STORE,
            "private, max-age=60",
            "max-age=0",
            "public",
        ] {
            assert_eq!(freshness(never), None, "{never}");
        }
        let err = fetched(503, &[(header::CACHE_CONTROL, "max-age=60")], "x");
        assert_eq!(err.freshness(), None, "only a 200 is kept");
    }

    #[test]
    fn conditional_requests_answer_304_like_the_owner() {
        let obj = fetched(
            200,
            &[
                (header::CONTENT_TYPE, "video/mp4"),
                (header::CACHE_CONTROL, cache::IMMUTABLE),
                (header::ETAG, "\"part-k-7.m4s\""),
                (header::LAST_MODIFIED, "Mon, 24 Nov 2025 16:00:00 GMT"),
            ],
            "moofmdat",
        );
        let mut h = hyper::HeaderMap::new();
        assert_eq!(obj.respond(&h).status(), StatusCode::OK);
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"part-k-7.m4s\""),
        );
        let r = obj.respond(&h);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], "\"part-k-7.m4s\"");
        assert_eq!(r.headers()[header::CACHE_CONTROL], cache::IMMUTABLE);
        assert!(!r.headers().contains_key(header::CONTENT_TYPE));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Mon, 24 Nov 2025 16:00:05 GMT"),
        );
        assert_eq!(
            obj.respond(&h).status(),
            StatusCode::OK,
            "If-None-Match wins"
        );
        h.remove(header::IF_NONE_MATCH);
        assert_eq!(obj.respond(&h).status(), StatusCode::NOT_MODIFIED);
        assert!(obj.last_modified().is_some());
        // A playlist has no validators: always the full answer.
        let pl = fetched(200, &[(header::CACHE_CONTROL, "no-cache")], "#EXTM3U\n");
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        let r = pl.respond(&h);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(hyper::body::Body::size_hint(r.body()).exact(), Some(8));
    }
}
