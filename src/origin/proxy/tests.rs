//! The proxy against a fake owner on loopback: collapsing, caching by `Cache-Control`,
//! deadlines and errors.

use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::util::body::Body;

/// A fake owner: counts requests per path, holds some, answers with the `Cache-Control` the
/// path asks for. Returns its origin URL and the counters.
async fn owner() -> (String, Arc<Mutex<HashMap<String, usize>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let via = Arc::new(AtomicUsize::new(0));
    let (h, v) = (hits.clone(), via.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (h, v) = (h.clone(), v.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (h, v) = (h.clone(), v.clone());
                    async move {
                        let pq = req.uri().path_and_query().unwrap().to_string();
                        *h.lock().unwrap().entry(pq.clone()).or_default() += 1;
                        if req.headers().get(VIA).is_some_and(|x| x == "b") {
                            v.fetch_add(1, Ordering::Relaxed);
                        }
                        let (status, cc, hold) = match req.uri().path() {
                            "/held" => (200, "public, max-age=6", 300),
                            "/plain" => (200, "no-cache", 200),
                            "/error" => (503, "no-store", 0),
                            "/stuck" => (200, "no-cache", 5_000),
                            _ => (404, "no-store", 0),
                        };
                        tokio::time::sleep(Duration::from_millis(hold)).await;
                        let mut r = Response::new(Body::from(Bytes::from(format!("answer {pq}"))));
                        *r.status_mut() = StatusCode::from_u16(status).unwrap();
                        r.headers_mut().insert("cache-control", cc.parse().unwrap());
                        r.headers_mut()
                            .insert("x-not-relayed", "1".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), hits, via)
}

fn proxy() -> Arc<Proxy> {
    let dir = Directory::new("b", "http://b", Duration::from_secs(10));
    Proxy::new(dir, Arc::new(Metrics::default()), &HlsConfig::default())
}

fn hits(h: &Arc<Mutex<HashMap<String, usize>>>, pq: &str) -> usize {
    h.lock().unwrap().get(pq).copied().unwrap_or(0)
}

async fn many(p: &Arc<Proxy>, url: &str, n: usize, deadline: Duration) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (p, url) = (p.clone(), url.to_string());
            tokio::spawn(async move {
                let origin = url.split("/held").next().unwrap().to_string();
                p.get(&origin, url, Keep::AsTold, deadline).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_in_flight_share_one_upstream_request_and_the_answer_is_cached() {
    let (origin, h, via) = owner().await;
    let p = proxy();
    let url = format!("{origin}/held?_HLS_msn=3&_HLS_part=1");
    let out = many(&p, &url, 20, p.deadline).await;
    assert_eq!(
        hits(&h, "/held?_HLS_msn=3&_HLS_part=1"),
        1,
        "20 viewers, one request"
    );
    let first = out[0].as_ref().unwrap().clone();
    for o in &out {
        let f = o.as_ref().unwrap();
        assert!(Arc::ptr_eq(f, &first), "every waiter gets the one answer");
    }
    assert_eq!(first.body, format!("answer /held?_HLS_msn=3&_HLS_part=1"));
    assert_eq!(
        first.headers,
        vec![(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("public, max-age=6")
        )],
        "only the relayed headers"
    );
    assert_eq!(
        via.load(Ordering::Relaxed),
        1,
        "the owner sees who forwarded"
    );
    let m = &p.metrics;
    assert_eq!(m.proxy_upstream_requests.load(Ordering::Relaxed), 1);
    assert_eq!(m.proxy_collapsed.load(Ordering::Relaxed), 19);
    // max-age=6: the next viewer is answered from the cache.
    let again = many(&p, &url, 3, p.deadline).await;
    assert!(Arc::ptr_eq(again[0].as_ref().unwrap(), &first));
    assert_eq!(hits(&h, "/held?_HLS_msn=3&_HLS_part=1"), 1);
    assert_eq!(m.proxy_cache_hits.load(Ordering::Relaxed), 3);
    assert!(m.proxy_cache_bytes.load(Ordering::Relaxed) > 0);
    // Another query is another object.
    let other = format!("{origin}/held?_HLS_msn=3&_HLS_part=2");
    many(&p, &other, 2, p.deadline).await;
    assert_eq!(hits(&h, "/held?_HLS_msn=3&_HLS_part=2"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_answers_are_shared_only_while_in_flight() {
    let (origin, h, _) = owner().await;
    let p = proxy();
    let url = format!("{origin}/plain");
    let get = |p: Arc<Proxy>, url: String| {
        let origin = origin.clone();
        tokio::spawn(async move { p.get(&origin, url, Keep::AsTold, p.deadline).await })
    };
    let tasks: Vec<_> = (0..10).map(|_| get(p.clone(), url.clone())).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, StatusCode::OK);
    }
    assert_eq!(hits(&h, "/plain"), 1, "collapsed while in flight");
    get(p.clone(), url.clone()).await.unwrap().unwrap();
    assert_eq!(
        hits(&h, "/plain"),
        2,
        "no-cache: never answered from the cache"
    );
    // Errors are relayed, not cached.
    let url = format!("{origin}/error");
    for n in 1..=2 {
        let f = get(p.clone(), url.clone()).await.unwrap().unwrap();
        assert_eq!(f.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(hits(&h, "/error"), n);
    }
    // The stream list is kept for its fixed time whatever its Cache-Control says.
    let url = format!("{origin}/plain?list");
    for _ in 0..3 {
        p.get(
            &origin,
            url.clone(),
            Keep::For(LISTING_TTL),
            LISTING_DEADLINE,
        )
        .await
        .unwrap();
    }
    assert_eq!(hits(&h, "/plain?list"), 1);
    assert_eq!(p.metrics.proxy_upstream_errors.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_stuck_owner_gives_an_error_within_the_deadline() {
    let (origin, _, _) = owner().await;
    let p = proxy();
    let t0 = Instant::now();
    let out = p
        .get(
            &origin,
            format!("{origin}/stuck"),
            Keep::AsTold,
            Duration::from_millis(300),
        )
        .await;
    let err = out.unwrap_err();
    assert!(err.contains("no answer within"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Nothing listens on a just-released port.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = p
        .get(&dead, format!("{dead}/held"), Keep::AsTold, p.deadline)
        .await;
    assert!(out.is_err());
    assert_eq!(p.metrics.proxy_upstream_errors.load(Ordering::Relaxed), 2);
    assert!(p.flights().is_empty(), "failed flights are retired");
    let r = bad_gateway("a", &out.unwrap_err());
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(r.headers()["cache-control"], cache::NO_STORE);
}

#[test]
fn only_stream_urls_are_forwarded() {
    assert_eq!(stream_of("/live/demo/index.m3u8"), Some("demo"));
    assert_eq!(stream_of("/live/demo/source/index.m3u8"), Some("demo"));
    assert_eq!(stream_of("/live/demo/source/part-k-3.m4s"), Some("demo"));
    assert_eq!(stream_of("/live/demo/chat"), None);
    assert_eq!(stream_of("/live//index.m3u8"), None);
    assert_eq!(stream_of("/live/demo/source/x/y"), None);
    assert_eq!(stream_of("/live/demo/source/"), None);
    assert_eq!(stream_of("/api/v1/streams"), None);
    assert_eq!(stream_of("/watch/demo"), None);
}

#[test]
fn the_deadline_covers_the_longest_hold_at_the_owner() {
    let hls = HlsConfig::default();
    let d = deadline(&hls);
    // The owner holds up to 3 target durations; a GOP twice the target doubles that.
    assert!(d >= 6 * hls.segment_target);
    assert!(d <= 6 * hls.segment_target + Duration::from_secs(10));
}

#[test]
fn a_record_alone_makes_a_listing_entry() {
    let o = Owner {
        node: "a".into(),
        origin: "http://a:8080".into(),
        epoch: "k".into(),
        since: 1,
        publishing: true,
        last_msn: Some(4),
        discontinuity: 0,
        updated: 0,
    };
    let e = from_record("demo", &o);
    assert_eq!(e["playlist"], "/live/demo/index.m3u8");
    assert_eq!(e["publishing"], true);
    assert_eq!(e["ended"], false);
}
