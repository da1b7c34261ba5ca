//! Any node serves any stream: one publisher on node A, a viewer on node B. Everything B
//! answers for the stream comes from A through B's proxy (docs/http.md, "Clusters"): the same
//! bytes as A for the same URL, every LL-HLS rule (blocking reload, preload hints, delta
//! updates), one upstream request however many viewers wait, the stream in B's API with its
//! owner, and a 502 (never a stale answer) when the owner dies.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{NatsServer, Node};
use common::hls::{self, MediaPlaylist};
use common::*;

fn opts() -> ServerOpts {
    // A 20-segment window so delta updates have segments to skip; a long grace.
    ServerOpts {
        window: 20,
        grace: "30s",
        ..Default::default()
    }
}

fn playlist_path(query: &str) -> String {
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("/live/{STREAM}/{RENDITION}/index.m3u8{q}")
}

fn object_path(uri: &str) -> String {
    format!("/live/{STREAM}/{RENDITION}/{uri}")
}

async fn get(node: &Node, path: &str) -> Resp {
    node.client.get(&node.url(path)).await
}

async fn playlist(node: &Node, query: &str) -> MediaPlaylist {
    let r = get(node, &playlist_path(query)).await;
    assert_eq!(
        r.status,
        200,
        "node {} {}: {}",
        node.name,
        playlist_path(query),
        r.text()
    );
    MediaPlaylist::parse(&r.text())
}

async fn metrics(node: &Node) -> Metrics {
    let r = get(node, "/metrics").await;
    assert_eq!(r.status, 200);
    Metrics::parse(&r.text())
}

/// Waits until the node's playlist holds a complete segment (fails early if ffmpeg exits).
async fn wait_live(node: &Node, publisher: &mut Publisher, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = publisher.try_wait() {
            panic!("ffmpeg exited early ({status}):\n{}", publisher.stderr());
        }
        let r = get(node, &playlist_path("")).await;
        if r.status == 200 && r.text().contains("#EXTINF") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} not live within {timeout:?} (last: HTTP {} {})\nffmpeg:\n{}",
            node.name,
            r.status,
            r.text(),
            publisher.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `_HLS_msn`/`_HLS_part` of the part after the newest one listed in `p`.
fn next_part(p: &MediaPlaylist) -> (u64, u64) {
    match &p.open {
        Some(o) => (o.msn, o.parts.len() as u64),
        None => (p.edge_msn(), 0),
    }
}

/// The same blocking-reload URL asked of both nodes at once, until both answers describe
/// the same state (a part can land between two requests); returns (A's, B's).
async fn same_request(a: &Node, b: &Node, extra: &str) -> (Resp, Resp) {
    let mut last = None;
    for _ in 0..6 {
        let (msn, part) = next_part(&playlist(a, "").await);
        let q = format!("_HLS_msn={msn}&_HLS_part={part}{extra}");
        let path = playlist_path(&q);
        let (ra, rb) = tokio::join!(get(a, &path), get(b, &path));
        assert_eq!(ra.status, 200, "A ?{q}: {}", ra.text());
        assert_eq!(rb.status, 200, "B ?{q}: {}", rb.text());
        if ra.body == rb.body {
            return (ra, rb);
        }
        last = Some((ra.text(), rb.text()));
    }
    let (ta, tb) = last.unwrap();
    panic!("B never answered A's bytes for the same request\nA:\n{ta}\nB:\n{tb}");
}

fn assert_same_headers(ra: &Resp, rb: &Resp, what: &str) {
    for h in [
        "content-type",
        "cache-control",
        "etag",
        "last-modified",
        "content-length",
    ] {
        assert_eq!(ra.header(h), rb.header(h), "{what}: header {h} differs");
    }
    assert_eq!(
        rb.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_another_node_follows_the_stream() {
    let nats = NatsServer::start();
    let mut a = Node::start("a", &nats, &opts());
    let b = Node::start("b", &nats, &opts());

    // --- Nothing is live anywhere: B answers like a node on its own.
    for path in [
        format!("/live/{STREAM}/index.m3u8"),
        playlist_path(""),
        "/live/nope/source/seg-x-1.m4s".to_string(),
    ] {
        let r = get(&b, &path).await;
        assert_eq!(r.status, 404, "{path} before any publish: {}", r.text());
    }
    let api = get(&b, "/api/v1/streams").await;
    assert_eq!(api.text().trim(), "[]");

    let mut publisher = Publisher::start(&a.rtmp_url(STREAM, KEY), 120.0, a.dir.path());
    wait_live(&a, &mut publisher, Duration::from_secs(30)).await;
    // B follows as soon as the directory record reaches it.
    let mv_path = format!("/live/{STREAM}/index.m3u8");
    poll(Duration::from_secs(10), "B to serve the stream", || async {
        (get(&b, &mv_path).await.status == 200).then_some(())
    })
    .await;

    // --- Multivariant: the same bytes and headers (B may keep A's answer for its max-age=2).
    let mut same = false;
    for _ in 0..30 {
        let (ra, rb) = tokio::join!(get(&a, &mv_path), get(&b, &mv_path));
        assert_eq!((ra.status, rb.status), (200, 200));
        if ra.body == rb.body {
            assert_same_headers(&ra, &rb, "multivariant");
            let (variants, _) = hls::parse_multivariant(&rb.text());
            assert_eq!(variants[0].uri, format!("{RENDITION}/index.m3u8"));
            same = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(same, "B's multivariant never equalled A's");

    // --- Media playlists: blocking reload through B, the same bytes as A for the same query.
    let (ra, rb) = same_request(&a, &b, "").await;
    assert_same_headers(&ra, &rb, "blocking reload");
    let held = MediaPlaylist::parse(&rb.text());
    hls::check_rules(&held);
    let cc = rb.header("cache-control").unwrap_or_default();
    assert!(cc.contains("public") && rb.max_age().is_some(), "{cc}");
    // Held through B until the part exists, answered with it.
    let mut waits = Vec::new();
    let mut pl = held;
    for _ in 0..4 {
        let (msn, part) = next_part(&pl);
        let q = format!("_HLS_msn={msn}&_HLS_part={part}");
        let r = get(&b, &playlist_path(&q)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let np = MediaPlaylist::parse(&r.text());
        assert!(
            np.has_part(msn, part as usize) || np.has_part(msn + 1, 0),
            "B's answer lacks the part asked for:\n{}",
            np.text
        );
        hls::check_rules(&np);
        waits.push(r.elapsed);
        pl = np;
    }
    assert!(
        waits.iter().any(|w| *w > Duration::from_millis(100)),
        "blocking reloads through B were never held: {waits:?}"
    );
    // A refused directive is A's refusal, relayed at once and not cached.
    let far = pl.edge_msn() + 5;
    let r = get(&b, &playlist_path(&format!("_HLS_msn={far}"))).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r
        .header("cache-control")
        .unwrap_or_default()
        .contains("no-store"));

    // --- Preload hint through B: held until the part exists, then A's bytes.
    let mut hint_waits = Vec::new();
    for _ in 0..3 {
        let (msn, part) = next_part(&pl);
        pl = playlist(&b, &format!("_HLS_msn={msn}&_HLS_part={part}")).await;
        let hint = pl
            .preload_hint()
            .expect("a live playlist has a preload hint");
        let rb = get(&b, &object_path(&hint)).await;
        assert_eq!(
            rb.status,
            200,
            "hinted part {hint} through B: {}",
            rb.text()
        );
        hint_waits.push(rb.elapsed);
        let ra = get(&a, &object_path(&hint)).await;
        assert_eq!(
            ra.body, rb.body,
            "hinted part {hint}: B's bytes differ from A's"
        );
        assert_same_headers(&ra, &rb, &hint);
        let after = playlist(&b, "").await;
        assert!(
            after.all_parts().iter().any(|(_, _, p)| p.uri == hint),
            "{hint} not listed after it was served"
        );
        pl = after;
    }
    assert!(
        hint_waits.iter().any(|w| *w > Duration::from_millis(100)),
        "hinted-part requests through B were never held: {hint_waits:?}"
    );

    // --- Init, segments and parts: A's bytes and validators; conditional requests on B.
    let p = playlist(&b, "").await;
    hls::check_rules(&p);
    let mut objects = vec![p.segments[0].map.clone().unwrap()];
    objects.extend(p.segments.iter().map(|s| s.uri.clone()));
    objects.extend(
        p.all_parts()
            .iter()
            .rev()
            .take(5)
            .map(|(_, _, x)| x.uri.clone()),
    );
    for uri in &objects {
        let path = object_path(uri);
        let (ra, rb) = tokio::join!(get(&a, &path), get(&b, &path));
        assert_eq!((ra.status, rb.status), (200, 200), "{uri}");
        assert_eq!(ra.body, rb.body, "{uri}: B's bytes differ from A's");
        assert_same_headers(&ra, &rb, uri);
        assert!(rb.max_age().unwrap_or(0) >= 86_400, "{uri}");
        let etag = rb.header("etag").expect("an ETag");
        let url = b.url(&object_path(uri));
        let nm = b.client.get_with(&url, &[("if-none-match", &etag)]).await;
        assert_eq!(nm.status, 304, "{uri} with If-None-Match through B");
        assert!(nm.body.is_empty());
        assert_eq!(nm.header("etag").as_deref(), Some(etag.as_str()));
        let head = b.client.request(reqwest::Method::HEAD, &url, &[]).await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(rb.body.len().to_string())
        );
    }
    // The whole window fetched through B decodes cleanly.
    let dir = TempDir::new("through-b");
    let init = get(&b, &object_path(&objects[0])).await.body;
    let mut all: Vec<Vec<u8>> = vec![init.to_vec()];
    for s in &p.segments {
        all.push(get(&b, &object_path(&s.uri)).await.body.to_vec());
    }
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    let whole = write_file(dir.path(), "window.mp4", &refs);
    let errors = decode_errors(&whole);
    assert!(errors.trim().is_empty(), "decoding B's window:\n{errors}");

    // --- Delta updates through B.
    poll(
        Duration::from_secs(40),
        "a playlist longer than CAN-SKIP-UNTIL",
        || async {
            let p = playlist(&a, "").await;
            let csu: f64 = p.server_control("CAN-SKIP-UNTIL").unwrap().parse().unwrap();
            (p.segments.iter().map(|s| s.duration).sum::<f64>() > csu + 2.5).then_some(())
        },
    )
    .await;
    let (ra, rb) = same_request(&a, &b, "&_HLS_skip=YES").await;
    assert_same_headers(&ra, &rb, "delta update");
    let delta = MediaPlaylist::parse(&rb.text());
    hls::check_rules(&delta);
    assert!(delta.skipped() >= 1, "nothing skipped:\n{}", delta.text);

    // --- 20 viewers on B wait for the same next part: one request reaches A.
    // The part after the next one: certainly not there yet, so every request is held.
    let (msn, part) = next_part(&playlist(&b, "").await);
    let q = format!("_HLS_msn={msn}&_HLS_part={}", part + 1);
    let kind = "ferrocast_http_requests_by_kind_total{kind=\"playlist_blocking\"}";
    let (mb0, ma0) = (metrics(&b).await, metrics(&a).await);
    let viewers: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (b.client.clone(), b.url(&playlist_path(&q)));
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for v in viewers {
        let r = v.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        bodies.push(r.body);
    }
    assert!(
        bodies.iter().all(|x| *x == bodies[0]),
        "every viewer got the one answer"
    );
    let (mb1, ma1) = (metrics(&b).await, metrics(&a).await);
    let delta_b = |m: &str| mb1.get(m) - mb0.get(m);
    assert_eq!(
        delta_b("ferrocast_proxy_upstream_requests_total"),
        1.0,
        "20 identical blocking reloads on B: one upstream request"
    );
    assert_eq!(
        ma1.get(kind) - ma0.get(kind),
        1.0,
        "A saw one blocking reload"
    );
    assert_eq!(delta_b("ferrocast_proxy_requests_total"), 20.0);
    assert_eq!(
        delta_b("ferrocast_proxy_collapsed_total") + delta_b("ferrocast_proxy_cache_hits_total"),
        19.0
    );
    assert!(mb1.get("ferrocast_proxy_cache_bytes") > 0.0);
    assert_eq!(mb1.get("ferrocast_proxy_upstream_errors_total"), 0.0);

    // --- The API on either node lists the stream with its owner.
    for node in [&a, &b] {
        let r = get(node, "/api/v1/streams").await;
        assert_eq!(r.status, 200);
        let list: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1, "node {}: {list:?}", node.name);
        let s = &list[0];
        assert_eq!(s["name"], STREAM);
        assert_eq!(s["node"], "a", "node {}: {s}", node.name);
        assert_eq!(s["publishing"], true);
        assert_eq!(s["playlist"], format!("/live/{STREAM}/index.m3u8"));
        assert_eq!(
            s["renditions"][0]["name"], RENDITION,
            "node {}: {s}",
            node.name
        );
    }
    // A request another node forwarded is answered from B's own store: never forwarded again.
    let r = b
        .client
        .get_with(&b.url(&playlist_path("")), &[("x-ferrocast-via", "x")])
        .await;
    assert_eq!(r.status, 404);
    assert!(
        publisher.try_wait().is_none(),
        "ffmpeg exited:\n{}",
        publisher.stderr()
    );

    // --- The owner dies: B says so (502, not cached) while its record is fresh, then 404.
    a.kill9();
    let r = get(&b, &playlist_path("")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r
        .header("cache-control")
        .unwrap_or_default()
        .contains("no-store"));
    assert!(r.text().contains("owner node a"), "{}", r.text());
    poll(
        Duration::from_secs(15),
        "B to forget the dead owner",
        || async { (get(&b, &playlist_path("")).await.status == 404).then_some(()) },
    )
    .await;
    assert!(
        metrics(&b)
            .await
            .get("ferrocast_proxy_upstream_errors_total")
            >= 1.0
    );
}
