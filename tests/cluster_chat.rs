//! Chat across a cluster: one nats-server with JetStream, ferrocast nodes as processes of the
//! release binary, the stream published to node `a` by ffmpeg, and WebSocket clients on every
//! node. Waits are bounded and on facts (a frame, an answer), never fixed sleeps for results.

#[path = "common/chat_client.rs"]
mod chat_client;
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chat_client::{history_ids, ChatClient, Refused};
use common::cluster::{NatsServer, Node};
use common::{Publisher, ServerOpts, KEY, RENDITION, STREAM};
use serde_json::{json, Value};

const MOD_TOKEN: &str = "mod-token-123";
/// A room opens on every node once the stream is live on one (directory heartbeat + tick).
const OPEN_WAIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(20);

fn opts(chat: &str) -> ServerOpts {
    let extra: &'static str = Box::leak(
        format!("\n[chat]\nmoderator_tokens = [\"{MOD_TOKEN}\"]\n{chat}").into_boxed_str(),
    );
    ServerOpts {
        extra,
        ..Default::default()
    }
}

/// nats-server, the named nodes, and ffmpeg publishing to the first node.
fn start(names: &[&str], chat: &str) -> (NatsServer, Vec<Node>, Publisher) {
    let nats = NatsServer::start();
    let o = opts(chat);
    let nodes: Vec<Node> = names.iter().map(|n| Node::start(n, &nats, &o)).collect();
    let publisher = Publisher::start(&nodes[0].rtmp_url(STREAM, KEY), 900.0, nodes[0].dir.path());
    (nats, nodes, publisher)
}

fn chat_url(node: &Node, query: &str) -> String {
    node.ws_url(&format!("/live/{STREAM}/chat{query}"))
}

async fn join(node: &Node, query: &str) -> ChatClient {
    ChatClient::connect_when_open(&chat_url(node, query), OPEN_WAIT).await
}

/// The history API's whole answer for the stream, from `node`.
async fn range(node: &Node) -> Value {
    let r = node
        .client
        .get(&node.url(&format!("/api/v1/streams/{STREAM}/chat")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_str(&r.text()).unwrap()
}

fn texts(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// Sends `text` and returns its echo (the acknowledgement) or the error frame that refused
/// it; None when the connection died first. Other messages are skipped.
async fn send_answer(c: &mut ChatClient, text: &str) -> Option<Value> {
    if !c.say(text).await {
        return None;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = c.next(left).await?;
        match v["type"].as_str() {
            Some("message") if v["text"] == text => return Some(v),
            Some("error") => return Some(v),
            _ => {}
        }
    }
}

/// [`send_answer`]: Some(true) when the echo came back, Some(false) when refused.
async fn send_acked(c: &mut ChatClient, text: &str) -> Option<bool> {
    send_answer(c, text).await.map(|v| v["type"] == "message")
}

/// The next `n` messages a client receives: (id, text).
async fn collect(c: &mut ChatClient, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = c.expect("message", WAIT).await;
        got.push((
            m["id"].as_u64().unwrap(),
            m["text"].as_str().unwrap().into(),
        ));
    }
    got
}

/// Resident memory of a node's process (found by its config path in /proc), KiB.
fn rss_kib(node: &Node) -> u64 {
    let dir = node.dir.path().to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&dir) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            return kib;
        }
    }
    panic!("no process of node {}", node.name)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What `node` serves of the stream's source rendition now: its segments and the open
/// segment's parts, concatenated (chat rides in them as ID3 in emsg boxes).
async fn media_bytes(node: &Node) -> Vec<u8> {
    let base = node.url(&format!("/live/{STREAM}/{RENDITION}/"));
    let text = node.client.get(&format!("{base}index.m3u8")).await.text();
    let p = common::hls::MediaPlaylist::parse(&text);
    let mut uris: Vec<&str> = p.segments.iter().map(|s| s.uri.as_str()).collect();
    if let Some(open) = &p.open {
        uris.extend(open.parts.iter().map(|part| part.uri.as_str()));
    }
    let mut out = Vec::new();
    for uri in uris.into_iter().filter(|u| !u.is_empty()) {
        out.extend_from_slice(&node.client.get(&format!("{base}{uri}")).await.body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_every_node_reach_every_client_once_in_one_order() {
    let (_nats, nodes, _p) = start(&["a", "b", "c"], "history = 100\nburst = 50\n");
    let mut clients = Vec::new();
    for n in &nodes {
        for k in 0..2 {
            clients.push(join(n, &format!("?name={}{k}", n.name)).await);
        }
    }
    // Each node's first client sends 10, interleaved with the others.
    let per = 10;
    for i in 0..per {
        for s in [0, 2, 4] {
            let name = clients[s].welcome["name"].as_str().unwrap().to_string();
            assert!(clients[s].say(&format!("{name}-{i}")).await);
        }
    }
    let total = 3 * per;
    let mut seen = Vec::new();
    for c in clients.iter_mut() {
        seen.push(collect(c, total).await);
    }
    let first = &seen[0];
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s, first, "client {i} saw another order");
    }
    let ids: Vec<u64> = first.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let distinct: HashSet<&String> = first.iter().map(|(_, t)| t).collect();
    assert_eq!(distinct.len(), total, "each message exactly once");

    // History on join and the range API: the same on every node.
    let mut histories = Vec::new();
    for n in &nodes {
        let c = join(n, &format!("?name=late-{}", n.name)).await;
        histories.push(history_ids(&c.welcome));
        clients.push(c);
    }
    assert_eq!(histories[0], ids);
    assert!(histories.iter().all(|h| h == &ids), "{histories:?}");
    let answers = [
        range(&nodes[0]).await,
        range(&nodes[1]).await,
        range(&nodes[2]).await,
    ];
    let api_ids: HashSet<u64> = answers[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(api_ids, ids.iter().copied().collect());
    for a in &answers[1..] {
        assert_eq!(
            a["messages"], answers[0]["messages"],
            "same answer on every node"
        );
    }

    // The publishing node's media carries the chat sent through every node (emsg/ID3).
    let sent: Vec<String> = first.iter().map(|(_, t)| t.clone()).collect();
    let a = &nodes[0];
    common::poll(WAIT, "every message in a's media", || async {
        let media = media_bytes(a).await;
        let missing = sent
            .iter()
            .filter(|t| !contains(&media, format!("\"text\":\"{t}\"").as_bytes()))
            .count();
        (missing == 0).then_some(())
    })
    .await;

    // Viewer counts are summed over the nodes: 9 chat connections in all.
    let deadline = Instant::now() + WAIT;
    let b = &mut clients[2];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = b
            .next(left)
            .await
            .expect("a viewers frame counting every node");
        if v["type"] == "viewers" && v["chat"] == 9 {
            assert_eq!(v["count"], 9);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_publish_is_stored_once_and_slow_mode_holds_across_nodes() {
    let (nats, nodes, _p) = start(&["a", "b"], "slow_mode = \"30s\"\n");
    let mut ann_a = join(&nodes[0], "?name=ann").await;
    // Names are unique per node: the same name may be connected to another node.
    let mut ann_b = join(&nodes[1], "?name=ann").await;
    let mut viewer = join(&nodes[1], "?name=viewer").await;

    // Slow mode is per name across nodes: ann's message through a holds ann back on b.
    assert_eq!(send_acked(&mut ann_a, "first").await, Some(true));
    assert_eq!(viewer.expect("message", WAIT).await["text"], "first");
    let v = send_answer(&mut ann_b, "second").await.unwrap();
    assert_eq!(v["code"], "slow_mode", "{v}");
    assert!(v["retry_after_ms"].as_u64().unwrap() > 20_000, "{v}");

    // A publish retried with the same Nats-Msg-Id (what a node does when an acknowledgement
    // is lost) is stored once: the stream's duplicate window.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let payload = json!({"node": "x", "name": "retry", "text": "once", "ts": 1, "pdt": 1});
    let mut acks = Vec::new();
    for _ in 0..2 {
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload.to_string().into())
            .message_id("x.test.1.1");
        let ack = js
            .send_publish(format!("ferrocast.chat.{STREAM}.msg"), publish)
            .await
            .unwrap()
            .await
            .unwrap();
        acks.push((ack.sequence, ack.duplicate));
    }
    assert_eq!(acks[0].0, acks[1].0, "{acks:?}");
    assert_eq!((acks[0].1, acks[1].1), (false, true));
    let m = viewer.expect("message", WAIT).await;
    assert_eq!(
        (m["text"].as_str(), m["id"].as_u64()),
        (Some("once"), Some(acks[0].0))
    );
    assert_eq!(send_acked(&mut viewer, "after").await, Some(true));
    let ids = history_ids(&join(&nodes[0], "").await.welcome);
    assert_eq!(ids.len(), 3, "first, once, after: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_on_one_node_acts_on_every_node_and_on_nodes_started_later() {
    let (nats, nodes, _p) = start(&["a", "b", "c"], "");
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut moderator = join(a, &format!("?name=boss&token={MOD_TOKEN}")).await;
    let mut watcher = join(b, "?name=watcher").await;
    let mut troll = join(b, "?name=troll").await;
    let mut spammer = join(c, "?name=spammer").await;

    assert_eq!(send_acked(&mut spammer, "spam").await, Some(true));
    let spam = watcher.expect("message", WAIT).await;
    assert_eq!(spam["text"], "spam");
    let id = spam["id"].as_u64().unwrap();
    assert_eq!(send_acked(&mut spammer, "fine").await, Some(true));

    // A moderator on a deletes a message sent on c; b is told, and so is c.
    moderator
        .send_json(json!({"type": "delete", "id": id}))
        .await;
    assert_eq!(watcher.expect("deleted", WAIT).await["id"], id);
    assert_eq!(spammer.expect("deleted", WAIT).await["id"], id);
    assert_eq!(moderator.expect("deleted", WAIT).await["id"], id);
    moderator
        .send_json(json!({"type": "delete", "id": 999_999}))
        .await;
    assert_eq!(
        moderator.expect("error", WAIT).await["code"],
        "unknown_message"
    );
    for n in &nodes {
        let late = join(n, "").await;
        let h: Vec<&str> = late.welcome["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            h,
            ["fine"],
            "history on {} without the deleted message",
            n.name
        );
        assert_eq!(texts(&range(n).await["messages"]), ["fine"]);
    }

    // A timeout from a silences a name on c.
    moderator
        .send_json(json!({"type": "timeout", "name": "spammer", "seconds": 600}))
        .await;
    assert_eq!(spammer.expect("error", WAIT).await["code"], "timed_out");
    assert_eq!(send_acked(&mut spammer, "again").await, Some(false));

    // A ban from a closes the name's connection on b and keeps it out of c.
    moderator
        .send_json(json!({"type": "ban", "name": "troll"}))
        .await;
    assert_eq!(troll.expect("error", WAIT).await["code"], "banned");
    assert!(troll.closed_within(WAIT).await);
    // c applies the ban when it reads it from the log, milliseconds after b: a connection
    // that slips in before is closed when it arrives.
    match ChatClient::connect(&chat_url(c, "?name=troll")).await {
        Err(Refused::Frame(f)) => assert_eq!(f["code"], "banned"),
        Ok(mut early) => {
            assert_eq!(early.expect("error", WAIT).await["code"], "banned");
            assert!(early.closed_within(WAIT).await);
        }
        Err(e) => panic!("troll on c: {e:?}"),
    }

    // A node that starts now knows the ban and the timeout (the moderation bucket).
    let d = Node::start("d", &nats, &opts(""));
    let deadline = Instant::now() + OPEN_WAIT;
    loop {
        match ChatClient::connect(&chat_url(&d, "?name=TROLL")).await {
            Err(Refused::Frame(f)) => {
                assert_eq!(f["code"], "banned");
                break;
            }
            Err(Refused::Http(404)) | Err(Refused::Down(_)) => {
                assert!(Instant::now() < deadline, "room never opened on d");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("troll on d: {:?}", other.map(|c| c.welcome)),
        }
    }
    drop(spammer);
    let mut spammer_d = ChatClient::connect_when_open(&chat_url(&d, "?name=spammer"), WAIT).await;
    spammer_d.say("from d").await;
    assert_eq!(spammer_d.expect("error", WAIT).await["code"], "timed_out");
    assert_eq!(
        history_ids(&spammer_d.welcome),
        history_ids(&watcher_rejoin(b).await.welcome),
        "d loaded the same history"
    );
}

async fn watcher_rejoin(n: &Node) -> ChatClient {
    join(n, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_flow_loses_no_acknowledged_message() {
    let (nats, mut nodes, _p) = start(
        &["a", "b", "c"],
        "history = 500\nburst = 1000\nrefill = \"0s\"\n",
    );
    let a_url = chat_url(&nodes[0], "?name=sender-c");
    let mut on_b = join(&nodes[1], "?name=sender-b").await;
    let mut on_c = join(&nodes[2], "?name=sender-c").await;
    let _watcher = join(&nodes[0], "?name=watcher").await;

    // Two senders, one message in flight each, until 120 are acknowledged in all; c dies
    // midway and its sender moves to a, as the watch page does.
    let b_task = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..60 {
            let t = format!("b-{i}");
            if send_acked(&mut on_b, &t).await == Some(true) {
                acked.push(t);
            }
        }
        acked
    });
    let c_task = tokio::spawn(async move {
        let (mut acked, mut lost, mut moved) = (Vec::new(), 0, false);
        let mut i = 0;
        while acked.len() < 60 {
            let t = format!("c-{i}");
            i += 1;
            match send_acked(&mut on_c, &t).await {
                Some(true) => acked.push(t),
                Some(false) => {}
                None => {
                    lost += 1;
                    assert!(!moved, "connection lost twice");
                    moved = true;
                    on_c = ChatClient::connect_when_open(&a_url, OPEN_WAIT).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        (acked, lost, moved)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nodes[2].kill9();
    let b_acked = b_task.await.unwrap();
    let (c_acked, lost, moved) = c_task.await.unwrap();
    assert!(moved, "the kill happened while c's sender was sending");
    eprintln!(
        "acknowledged: {} via b, {} via c then a; {lost} in flight at the kill",
        b_acked.len(),
        c_acked.len()
    );

    // Every acknowledged message is in the log, once, as every node (and a new one) reads it.
    let c2 = Node::start("c2", &nats, &opts("history = 500\n"));
    let mut answers = Vec::new();
    for n in [&nodes[0], &nodes[1], &c2] {
        let _ = join(n, "").await; // open on c2 too
        answers.push(range(n).await);
    }
    let stored = texts(&answers[0]["messages"]);
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "nothing stored twice");
    for t in b_acked.iter().chain(&c_acked) {
        assert!(
            unique.contains(t),
            "acknowledged `{t}` missing from the log"
        );
    }
    for a in &answers[1..] {
        assert_eq!(a["messages"], answers[0]["messages"]);
    }
    let h_a = history_ids(&join(&nodes[0], "").await.welcome);
    let h_c2 = history_ids(&join(&c2, "").await.welcome);
    assert_eq!(h_a, h_c2, "a node started later shows the same history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_away_refuses_sends_and_a_restart_recovers_without_restarting_ferrocast() {
    let (mut nats, nodes, _p) = start(&["a", "b", "c"], "burst = 100\nrefill = \"0s\"\n");
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(join(n, &format!("?name=u-{}", n.name)).await);
    }
    for (c, n) in clients.iter_mut().zip(&nodes) {
        assert_eq!(
            send_acked(c, &format!("before-{}", n.name)).await,
            Some(true)
        );
    }

    nats.stop();
    // Let every node notice the connection is gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (c, n) in clients.iter_mut().zip(&nodes) {
        let t0 = Instant::now();
        let v = send_answer(c, &format!("during-{}", n.name))
            .await
            .expect("connection open");
        assert_eq!(v["code"], "unavailable", "on {}: {v}", n.name);
        assert!(v["retry_after_ms"].as_u64().is_some());
        eprintln!("{}: unavailable after {:?}", n.name, t0.elapsed());
    }
    // Refused sends leave nothing behind: b's memory stays put through thousands of them.
    let rss_before = rss_kib(&nodes[1]);
    let b = &mut clients[1];
    // In batches the connection's queue holds (a reader that falls behind is dropped).
    for batch in 0..30 {
        for i in 0..100 {
            assert!(b.say(&format!("flood-{batch}-{i}")).await);
        }
        for _ in 0..100 {
            assert_eq!(b.expect("error", WAIT).await["code"], "unavailable");
        }
    }
    let rss_after = rss_kib(&nodes[1]);
    eprintln!("b's RSS: {rss_before} KiB before, {rss_after} KiB after 3000 refused sends");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew while NATS was away: {rss_before} -> {rss_after} KiB"
    );

    nats.restart();
    let t0 = Instant::now();
    for (c, n) in clients.iter_mut().zip(&nodes) {
        let mut k = 0;
        loop {
            let t = format!("after-{}-{k}", n.name);
            match send_acked(c, &t).await {
                Some(true) => break,
                Some(false) => {
                    assert!(
                        t0.elapsed() < OPEN_WAIT,
                        "sends on {} never recovered",
                        n.name
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    k += 1;
                }
                None => panic!("connection on {} lost", n.name),
            }
        }
    }
    eprintln!(
        "sends work again on every node {:?} after the restart",
        t0.elapsed()
    );

    // Every client sees every node's next message, in one order.
    for (c, n) in clients.iter_mut().zip(&nodes) {
        assert!(c.say(&format!("final-{}", n.name)).await);
    }
    let mut orders = Vec::new();
    for c in clients.iter_mut() {
        let mut got = Vec::new();
        while got.len() < 3 {
            let m = c.expect("message", WAIT).await;
            let t = m["text"].as_str().unwrap().to_string();
            if t.starts_with("final-") {
                got.push(t);
            }
        }
        orders.push(got);
    }
    assert!(orders.iter().all(|o| o == &orders[0]), "{orders:?}");

    let stored = texts(&range(&nodes[1]).await["messages"]);
    for n in &nodes {
        assert!(stored.contains(&format!("before-{}", n.name)));
        assert!(stored.contains(&format!("final-{}", n.name)));
        assert!(
            !stored.contains(&format!("during-{}", n.name)),
            "a refused message was stored: {stored:?}"
        );
    }
}
