//! The cluster's stream directory over a real nats-server with ferrocast nodes as processes:
//! one publisher per name cluster-wide, a dead node's streams freed, and a publisher that
//! moves to another node within the grace period continuing the same playlist.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{NatsServer, Node};
use common::edge::Edge;
use common::hls::MediaPlaylist;
use common::{Publisher, ServerOpts, TempDir, KEY, STREAM};

fn opts() -> ServerOpts {
    ServerOpts {
        grace: "20s",
        ..ServerOpts::default()
    }
}

/// Polls `node`'s source media playlist of STREAM until `pred` holds.
async fn wait_playlist(
    node: &Node,
    within: Duration,
    what: &str,
    pred: impl Fn(&MediaPlaylist) -> bool,
) -> MediaPlaylist {
    let url = node.url(&format!("/live/{STREAM}/source/index.m3u8"));
    let t0 = Instant::now();
    loop {
        let r = node.client.get(&url).await;
        let last = if r.status == 200 {
            let p = MediaPlaylist::parse(&r.text());
            if pred(&p) {
                return p;
            }
            r.text()
        } else {
            format!("HTTP {}", r.status)
        };
        assert!(
            t0.elapsed() < within,
            "node {}: timed out after {within:?} waiting for {what}; last:\n{last}\nnode log:\n{}",
            node.name,
            common::tail(&node.log_path(), 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `node`'s log contains `needle`.
async fn wait_log(node: &Node, needle: &str, within: Duration) {
    let t0 = Instant::now();
    while !node.log().contains(needle) {
        assert!(
            t0.elapsed() < within,
            "node {} never logged {needle:?}; log:\n{}",
            node.name,
            common::tail(&node.log_path(), 30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a publisher on `node` again and again until one is still running 2 s later (the
/// node accepted it), within `within`.
async fn publish_until_accepted(
    node: &Node,
    logs: &std::path::Path,
    within: Duration,
) -> Publisher {
    let t0 = Instant::now();
    loop {
        let mut p = Publisher::start(&node.rtmp_url(STREAM, KEY), 600.0, logs);
        tokio::time::sleep(Duration::from_secs(2)).await;
        if p.try_wait().is_none() {
            return p;
        }
        assert!(
            t0.elapsed() < within,
            "node {} kept refusing the publisher:\n{}",
            node.name,
            common::tail(&node.log_path(), 20)
        );
    }
}

async fn publishing_on(node: &Node) -> Option<bool> {
    let r = node.client.get(&node.url("/api/v1/streams")).await;
    let v: serde_json::Value = serde_json::from_str(&r.text()).ok()?;
    v.as_array()?
        .iter()
        .find(|s| s["name"] == STREAM && s.get("node").is_none_or(|n| n == node.name.as_str()))
        .and_then(|s| s["publishing"].as_bool())
}

#[tokio::test]
async fn one_publisher_per_name_across_nodes_and_failover_continues_the_playlist() {
    let nats = NatsServer::start();
    let a = Node::start("a", &nats, &opts());
    let b = Node::start("b", &nats, &opts());
    let logs = TempDir::new("cluster-publishers");
    // Viewers come through the nginx edge, which has both nodes as upstreams.
    let edge_dir = TempDir::new("cluster-edge");
    let edge = Edge::start(&format!("{},{}", a.http, b.http), edge_dir.path());

    let mut on_a = Publisher::start(&a.rtmp_url(STREAM, KEY), 600.0, logs.path());
    let before = wait_playlist(
        &a,
        Duration::from_secs(40),
        "a complete segment on a",
        |p| p.segments.len() >= 2,
    )
    .await;
    assert!(before.segments.iter().all(|s| !s.discontinuity));

    // A second publisher of the same name on b is refused while a's publisher is healthy.
    let mut second = Publisher::start(&b.rtmp_url(STREAM, KEY), 600.0, logs.path());
    let status = second.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "the second publisher must be refused");
    wait_log(
        &b,
        "already being published on node `a`",
        Duration::from_secs(10),
    )
    .await;
    assert!(on_a.try_wait().is_none(), "the first publisher carries on");
    wait_playlist(&a, Duration::from_secs(20), "a keeps advancing", |p| {
        p.segments.last().map(|s| s.msn) > before.segments.last().map(|s| s.msn)
    })
    .await;

    // The publisher moves: it leaves a (a keeps the stream in its grace period) and comes
    // back on b, which continues the same playlist after a discontinuity.
    on_a.kill();
    let t0 = Instant::now();
    while publishing_on(&a).await != Some(false) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "a never saw its publisher leave"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_on_a = wait_playlist(&a, Duration::from_secs(10), "a's final parts", |_| true).await;
    let last_msn_a = last_on_a
        .open
        .as_ref()
        .or(last_on_a.segments.last())
        .map(|s| s.msn)
        .expect("a had segments");
    // The directory learns of the departure within a heartbeat; retry until b accepts.
    let mut on_b = publish_until_accepted(&b, logs.path(), Duration::from_secs(20)).await;
    let after = wait_playlist(
        &b,
        Duration::from_secs(40),
        "b continues the playlist",
        |p| p.segments.iter().any(|s| s.msn > last_msn_a),
    )
    .await;
    assert!(
        after.media_sequence > last_msn_a,
        "media sequence moves only forward: a ended at {last_msn_a}, b starts at {}",
        after.media_sequence
    );
    let first = &after.segments[0];
    assert!(
        first.discontinuity,
        "b's first segment follows a discontinuity:\n{}",
        after.text
    );
    assert!(
        after.discontinuity_sequence >= last_on_a.discontinuity_sequence,
        "discontinuity sequence never goes back"
    );
    wait_log(&a, "stream moved to another node", Duration::from_secs(10)).await;
    // Through the edge (either node answers; a proxies b now) the same playlist continues.
    let url = edge.url(&format!("/live/{STREAM}/source/index.m3u8"));
    for _ in 0..6 {
        let r = b.client.get(&url).await;
        assert_eq!(r.status, 200, "through the edge: {}", r.text());
        let p = MediaPlaylist::parse(&r.text());
        assert!(
            p.media_sequence > last_msn_a && !p.endlist,
            "through the edge the playlist continues after a's last segment {last_msn_a}:\n{}",
            p.text
        );
        assert!(
            p.segments.first().is_some_and(|s| s.discontinuity)
                || p.media_sequence > after.media_sequence,
            "the edge serves b's continued playlist (discontinuity first):\n{}",
            p.text
        );
    }
    on_b.kill();
}

#[tokio::test]
async fn a_dead_nodes_stream_can_be_published_elsewhere_after_expiry() {
    let nats = NatsServer::start();
    let mut a = Node::start("a", &nats, &opts());
    let b = Node::start("b", &nats, &opts());
    let logs = TempDir::new("cluster-dead");
    let mut on_a = Publisher::start(&a.rtmp_url(STREAM, KEY), 600.0, logs.path());
    wait_playlist(&a, Duration::from_secs(40), "a live on a", |p| {
        !p.segments.is_empty()
    })
    .await;
    let before = wait_playlist(&a, Duration::from_secs(5), "a's playlist", |_| true).await;
    a.kill9();
    on_a.kill();
    // Within the record's expiry b refuses (a may still be alive as far as anyone knows);
    // afterwards it takes the name over and continues after a's last segment.
    let mut on_b = publish_until_accepted(&b, logs.path(), Duration::from_secs(30)).await;
    let after = wait_playlist(&b, Duration::from_secs(40), "b live", |p| {
        !p.segments.is_empty()
    })
    .await;
    let last_a = before
        .open
        .as_ref()
        .or(before.segments.last())
        .map_or(0, |s| s.msn);
    assert!(
        after.segments[0].msn > last_a,
        "b continues after a's last known segment ({last_a}):\n{}",
        after.text
    );
    on_b.kill();
}

#[tokio::test]
async fn video_goes_on_while_nats_is_away_and_the_directory_recovers() {
    let mut nats = NatsServer::start();
    let a = Node::start("a", &nats, &opts());
    let b = Node::start("b", &nats, &opts());
    let logs = TempDir::new("cluster-nats-away");
    nats.stop();
    // Ingest and playback do not need NATS.
    let mut on_a = Publisher::start(&a.rtmp_url(STREAM, KEY), 600.0, logs.path());
    let live = wait_playlist(&a, Duration::from_secs(40), "live without NATS", |p| {
        p.segments.len() >= 2
    })
    .await;
    nats.restart();
    // Once NATS is back, a's record reaches b again (b lists the stream as a's) ...
    let t0 = Instant::now();
    loop {
        let r = b.client.get(&b.url("/api/v1/streams")).await;
        let listed = serde_json::from_str::<serde_json::Value>(&r.text())
            .ok()
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|s| s["name"] == STREAM)
                    .map(|s| s["node"] == "a")
            })
            .unwrap_or(false);
        if listed {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "b never learned of a's stream after NATS came back:\n{}",
            common::tail(&b.log_path(), 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... and b refuses a second publisher of it.
    let mut second = Publisher::start(&b.rtmp_url(STREAM, KEY), 600.0, logs.path());
    let status = second.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "b must refuse a second publisher");
    wait_playlist(&a, Duration::from_secs(20), "a still advancing", |p| {
        p.segments.last().map(|s| s.msn) > live.segments.last().map(|s| s.msn)
    })
    .await;
    assert!(
        on_a.try_wait().is_none(),
        "a's publisher was never disturbed"
    );
    on_a.kill();
}
