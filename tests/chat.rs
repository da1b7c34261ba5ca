//! Chat end to end: real WebSocket clients (tokio-tungstenite) against an in-process server
//! whose stream is live from an ffmpeg publisher, as a viewer's browser would see it.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::ws::{self, Connect, WsClient, WAIT};
use common::{Publisher, ServerOpts, TestServer, KEY, STREAM};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const MOD_TOKEN: &str = "mod-token-123";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The room of the test stream.
async fn try_connect(server: &TestServer, query: &str) -> Connect {
    ws::try_connect(server.http, STREAM, query).await
}

async fn connect(server: &TestServer, query: &str) -> (WsClient, Value) {
    ws::connect(server.http, STREAM, query).await
}

async fn refused(server: &TestServer, query: &str) -> String {
    ws::refused(server.http, STREAM, query).await
}

/// A server with `[chat]` settings `chat` and a live stream.
async fn live(chat: &str) -> (TestServer, Publisher) {
    let extra: &'static str = Box::leak(
        format!("\n[chat]\nmoderator_tokens = [\"{MOD_TOKEN}\"]\n{chat}").into_boxed_str(),
    );
    let server = TestServer::start(ServerOpts {
        extra,
        ..Default::default()
    })
    .await;
    let mut publisher = Publisher::start(
        &server.rtmp_url(STREAM, Some(KEY)),
        120.0,
        server.dir.path(),
    );
    server.wait_live(STREAM, &mut publisher, WAIT).await;
    (server, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_everyone_stamped_with_server_time_and_stream_pdt() {
    let (server, _p) = live("").await;
    let (mut a, wa) = connect(&server, "?name=alice").await;
    let (mut b, wb) = connect(&server, "").await;
    assert_eq!(wa["name"], "alice");
    assert!(wb["name"].as_str().unwrap().starts_with("guest-"), "{wb}");
    assert_eq!(wa["open"], true);
    assert!(wa["history"].as_array().unwrap().is_empty());

    let before = now_ms();
    a.say("hello <b>world</b>").await;
    let ma = a.expect("message").await;
    let mb = b.expect("message").await;
    let after = now_ms();
    assert_eq!(ma, mb, "the same frame for everyone, the echo is the ack");
    assert_eq!(ma["name"], "alice");
    assert_eq!(
        ma["text"], "hello <b>world</b>",
        "text is data, passed verbatim"
    );
    assert!(ma["id"].as_u64().is_some());
    let ts = ma["ts"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "ts {ts} in [{before}, {after}]"
    );

    // pdt lies on the playlist's EXT-X-PROGRAM-DATE-TIME timeline, at its live edge.
    let pl = server.playlist(STREAM, "").await;
    let first = pl.segments[0].pdt.expect("PDT") * 1000.0;
    let mut end = pl.segments.last().unwrap().pdt.unwrap() * 1000.0
        + pl.segments.last().unwrap().duration * 1000.0;
    if let Some(open) = &pl.open {
        end += open.parts.iter().map(|p| p.duration).sum::<f64>() * 1000.0;
    }
    let pdt = ma["pdt"].as_u64().unwrap() as f64;
    assert!(
        first <= pdt && pdt <= end + 1.0,
        "pdt {pdt} within the playlist's PDT range [{first}, {end}]"
    );
    // Near the server clock (an encoder sending ahead of real time can put the edge a
    // little in the future).
    assert!(
        (ts as f64 - pdt).abs() < 5000.0,
        "the live edge is recent: ts {ts}, pdt {pdt}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_valid_and_not_reserved() {
    let (server, _p) = live("").await;
    let (_a, _) = connect(&server, "?name=Alice").await;
    assert_eq!(refused(&server, "?name=alice").await, "name_taken");
    assert_eq!(refused(&server, "?name=admin").await, "name_reserved");
    assert_eq!(
        refused(&server, "?name=guest-00000001").await,
        "name_reserved"
    );
    assert_eq!(refused(&server, "?name=has%20space").await, "name_invalid");
    assert_eq!(refused(&server, "?token=wrong-token").await, "bad_token");
    let (_g1, w1) = connect(&server, "").await;
    let (_g2, w2) = connect(&server, "").await;
    assert_ne!(w1["name"], w2["name"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_rate_and_connection_limits_answer_with_error_frames() {
    let (server, _p) =
        live("max_message_len = 10\nburst = 3\nrefill = \"30s\"\nmax_connections = 3\n").await;
    let (mut a, w) = connect(&server, "?name=a").await;
    assert_eq!(w["limits"]["max_message_len"], 10);
    a.say(&"x".repeat(11)).await;
    assert_eq!(a.error_code().await, "too_long");
    a.say("   ").await;
    assert_eq!(a.error_code().await, "empty_message");
    for i in 0..3 {
        a.say(&format!("m{i}")).await;
        a.expect("message").await;
    }
    a.say("overflow").await;
    let e = a.expect("error").await;
    assert_eq!(e["code"], "rate_limited");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 0);

    let (_b, _) = connect(&server, "?name=b").await;
    let (_c, _) = connect(&server, "?name=c").await;
    assert_eq!(refused(&server, "?name=d").await, "room_full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_mode_spaces_a_viewers_messages_but_not_a_moderators() {
    let (server, _p) = live("slow_mode = \"30s\"\n").await;
    let (mut a, w) = connect(&server, "?name=a").await;
    assert_eq!(w["limits"]["slow_mode_ms"], 30_000);
    a.say("first").await;
    a.expect("message").await;
    a.say("second").await;
    let e = a.expect("error").await;
    assert_eq!(e["code"], "slow_mode");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 20_000);
    let (mut m, _) = connect(&server, &format!("?name=boss&token={MOD_TOKEN}")).await;
    m.say("one").await;
    m.expect("message").await;
    m.say("two").await;
    assert_eq!(m.expect("message").await["text"], "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderators_delete_time_out_and_ban() {
    let (server, _p) = live("").await;
    let (mut m, w) = connect(&server, &format!("?name=boss&token={MOD_TOKEN}")).await;
    assert_eq!(w["moderator"], true);
    let (mut t, w) = connect(&server, "?name=troll").await;
    assert_eq!(w["moderator"], false);
    let (mut v, _) = connect(&server, "?name=viewer").await;

    // Viewers cannot moderate.
    t.send_json(json!({"type": "ban", "name": "viewer"})).await;
    assert_eq!(t.error_code().await, "not_moderator");

    // Delete: everyone is told, history and the API forget it.
    t.say("spam").await;
    let spam = t.expect("message").await;
    let id = spam["id"].as_u64().unwrap();
    v.expect("message").await;
    m.expect("message").await;
    t.say("fine").await;
    v.expect("message").await;
    m.send_json(json!({"type": "delete", "id": id})).await;
    for c in [&mut m, &mut t, &mut v] {
        assert_eq!(c.expect("deleted").await["id"].as_u64(), Some(id));
    }
    m.send_json(json!({"type": "delete", "id": 999_999})).await;
    assert_eq!(m.error_code().await, "unknown_message");
    let (_late, w) = connect(&server, "?name=late").await;
    let texts: Vec<&str> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["fine"], "history without the deleted message");
    let api: Value = serde_json::from_str(
        &server
            .get(&format!("/api/v1/streams/{STREAM}/chat"))
            .await
            .text(),
    )
    .unwrap();
    assert_eq!(api["messages"].as_array().unwrap().len(), 1);

    // Timeout: the name cannot send for N seconds.
    m.send_json(json!({"type": "timeout", "name": "troll", "seconds": 60}))
        .await;
    assert_eq!(t.error_code().await, "timed_out");
    t.say("still here").await;
    assert_eq!(t.error_code().await, "timed_out");
    m.send_json(json!({"type": "timeout", "name": "boss", "seconds": 60}))
        .await;
    assert_eq!(m.error_code().await, "forbidden");

    // Ban: closed now, and the name cannot come back.
    m.send_json(json!({"type": "ban", "name": "troll"})).await;
    assert_eq!(t.error_code().await, "banned");
    t.expect_close().await;
    assert_eq!(refused(&server, "?name=troll").await, "banned");
    assert_eq!(refused(&server, "?name=TROLL").await, "banned");
    // The room carries on.
    v.say("after the ban").await;
    assert_eq!(m.expect("message").await["text"], "after the ban");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_join_reconnect_and_time_range_api() {
    let (server, _p) = live("history = 3\n").await;
    let (mut a, _) = connect(&server, "?name=a").await;
    let part_target = server.playlist(STREAM, "").await.part_target();
    let mut msgs = Vec::new();
    for i in 0..5 {
        a.say(&format!("m{i}")).await;
        let m = a.expect("message").await;
        // The next message goes out once the live edge (which stamps `pdt`) is two parts on,
        // so each message has its own place on the timeline.
        let pdt = m["pdt"].as_u64().unwrap() as f64 / 1000.0;
        server.wait_edge_past(STREAM, pdt, 1.5 * part_target).await;
        msgs.push(m);
    }
    drop(a);
    // Reconnecting under the same name works once the old connection is gone.
    let deadline = Instant::now() + WAIT;
    let w = loop {
        match try_connect(&server, "?name=a").await {
            Connect::Ok(_, w) => break w,
            Connect::Refused(e) => {
                assert_eq!(e["code"], "name_taken");
                assert!(Instant::now() < deadline, "name never freed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let texts: Vec<&str> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m2", "m3", "m4"], "the newest N, oldest first");
    assert_eq!(w["history"][0]["type"], "message");

    let pdt = |i: usize| msgs[i]["pdt"].as_u64().unwrap();
    let get = |q: String| {
        let server = &server;
        async move {
            let r = server
                .get(&format!("/api/v1/streams/{STREAM}/chat{q}"))
                .await;
            (r.status, r.text())
        }
    };
    assert!(pdt(1) < pdt(4), "{msgs:?}");
    let (status, body) = get(format!("?from={}&to={}", pdt(1), pdt(4))).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let got: Vec<&Value> = v["messages"].as_array().unwrap().iter().collect();
    assert!(!got.is_empty());
    for m in &got {
        let p = m["pdt"].as_u64().unwrap();
        assert!(pdt(1) <= p && p < pdt(4), "{m} in range");
    }
    let texts: Vec<&str> = got.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"m1") && !texts.contains(&"m4"), "{texts:?}");
    let (status, body) = get("?limit=2".into()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, v["truncated"].as_bool()), (200, Some(true)));
    assert_eq!(get("?from=abc".into()).await.0, 400);
    assert_eq!(get("?from=5&to=1".into()).await.0, 400);
    let r = server.get("/api/v1/streams/nope/chat").await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_acknowledged_history_minus_deleted() {
    let dir = common::TempDir::new("chat-restart");
    let db = dir.path().join("chat.db");
    let chat = format!("store = \"{}\"\n", db.display());
    {
        let (server, mut p) = live(&chat).await;
        let (mut m, _) = connect(&server, &format!("?name=boss&token={MOD_TOKEN}")).await;
        let mut ids = Vec::new();
        for t in ["keep-1", "drop-me", "keep-2"] {
            m.say(t).await;
            ids.push(m.expect("message").await["id"].as_u64().unwrap());
        }
        m.send_json(json!({"type": "delete", "id": ids[1]})).await;
        m.expect("deleted").await;
        p.kill();
        server.server.shutdown().await;
    }
    let (server, _p) = live(&chat).await;
    let (_c, w) = connect(&server, "").await;
    let texts: Vec<&str> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["keep-1", "keep-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_for_that_client_only() {
    let (server, _p) = live("max_message_len = 100\n").await;
    let (mut a, _) = connect(&server, "?name=a").await;
    let (mut bad, _) = connect(&server, "?name=bad").await;

    bad.ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(bad.error_code().await, "bad_json");
    bad.ws
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(bad.error_code().await, "binary_unsupported");
    bad.send_json(json!({"type": "dance"})).await;
    assert_eq!(bad.error_code().await, "unknown_type");
    bad.send_json(json!({"type": "send"})).await;
    assert_eq!(bad.error_code().await, "bad_frame");
    bad.send_json(json!([1, 2])).await;
    assert_eq!(bad.error_code().await, "bad_frame");
    // Still usable after all that.
    bad.say("ok").await;
    assert_eq!(bad.expect("message").await["text"], "ok");
    assert_eq!(a.expect("message").await["text"], "ok");

    // A frame beyond the limit closes that connection with 1009 after an error frame.
    let _ = bad
        .ws
        .send(Message::Text("x".repeat(64 << 10).into()))
        .await;
    assert_eq!(bad.error_code().await, "too_large");
    assert_eq!(bad.expect_close().await, Some(CloseCode::Size));

    // Nobody else noticed.
    a.say("still fine").await;
    assert_eq!(a.expect("message").await["text"], "still fine");

    // Not WebSocket, unknown stream: plain HTTP answers before any upgrade.
    assert_eq!(
        server.get(&format!("/live/{STREAM}/chat")).await.status,
        426
    );
    assert_eq!(server.get("/live/nope/chat").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connects_and_disconnects_leave_the_room_working() {
    let (server, _p) = live("").await;
    let (mut a, _) = connect(&server, "?name=a").await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..20 {
        let addr = server.http;
        tasks.spawn(async move {
            for i in 0..50 {
                // Admitted: its welcome frame arrived.
                let (mut c, _) = ws::connect(addr, STREAM, "").await;
                // Half close politely, half just vanish.
                if (worker + i) % 2 == 0 {
                    let _ = c.ws.close(None).await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    eprintln!("1000 connect/disconnect cycles in {:?}", started.elapsed());
    a.say("still here").await;
    assert_eq!(a.expect("message").await["text"], "still here");
    // Every one of them left the room: the API's connection count settles back to 1.
    let deadline = Instant::now() + WAIT;
    loop {
        let v: Value = serde_json::from_str(&server.get("/api/v1/streams").await.text()).unwrap();
        if v[0]["chat_connections"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "connections never settled: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_dropped_with_a_reason_and_others_keep_pace() {
    let (server, _p) =
        live("max_message_len = 8000\nburst = 1000\nrefill = \"0s\"\nsend_queue = 128\n").await;
    let (sender, _) = connect(&server, "?name=sender").await;
    // The sender drains its own echoes so that it is not the slow one; it and the fast reader
    // report how many frames they have read.
    let (mut sender, mut echoes) = sender.ws.split();
    let (echoed_tx, mut echoed) = tokio::sync::watch::channel(0usize);
    tokio::spawn(async move {
        while let Some(Ok(_)) = echoes.next().await {
            echoed_tx.send_modify(|n| *n += 1);
        }
    });
    let (mut fast, _) = connect(&server, "?name=fast").await;
    // The slow reader's socket takes little before TCP pushes back.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(server.http).await.unwrap();
    let Connect::Ok(mut slow, _) = ws::try_connect_on(tcp, server.http, STREAM, "?name=slow").await
    else {
        panic!("slow reader refused")
    };

    let text = "y".repeat(7000);
    // More than the slow reader's socket buffers and queue can absorb.
    let n = 2000;
    // Readers that keep reading are never this many frames behind the sender, well inside
    // the server's send queue of 128: "fast" means reading, however busy the machine is.
    let window = 64;
    let started = Instant::now();
    let (got_tx, mut got_rx) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            if fast.next().await["type"] == "message" {
                got += 1;
                let _ = got_tx.send(got);
            }
        }
        got
    });
    let frame = json!({"type": "send", "text": text}).to_string();
    for sent in 0..n {
        for (who, rx) in [("fast reader", &mut got_rx), ("sender", &mut echoed)] {
            tokio::time::timeout(WAIT, rx.wait_for(|&got| got + window >= sent))
                .await
                .unwrap_or_else(|_| panic!("the {who} stopped reading at {sent} sent"))
                .unwrap_or_else(|_| panic!("the {who} is gone at {sent} sent"));
        }
        sender
            .send(Message::Text(frame.clone().into()))
            .await
            .unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(40), reader)
        .await
        .expect("the fast reader got everything in time")
        .unwrap();
    assert_eq!(got, n);
    eprintln!("{n} x 7 kB to the fast reader in {:?}", started.elapsed());

    // Now read the slow one: what it had, then the reason, then the close.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    loop {
        assert!(Instant::now() < deadline, "no slow_reader error");
        let v = slow.next().await;
        if v["type"] == "error" {
            assert_eq!(v["code"], "slow_reader", "{v}");
            break;
        }
        seen += 1;
    }
    assert!(seen < n, "dropped before the end ({seen} of {n})");
    slow.expect_close().await;
    // This test's own server (the log is per test) opened the room when the stream went live.
    let logs = common::server_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("chat room open") && l.contains(&format!("stream={STREAM}"))),
        "the room opening is not logged:\n{logs}"
    );
    let m = server.get("/metrics").await.text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("ferrocast_chat_slow_readers_total ") && !l.ends_with(" 0")),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_pushed_and_rooms_of_streams_not_live_are_closed() {
    let server = TestServer::start(ServerOpts::default()).await;
    // Configured but never live: no room yet.
    let r = server.get(&format!("/live/{STREAM}/chat")).await;
    assert_eq!(r.status, 404);
    let mut p = Publisher::start(
        &server.rtmp_url(STREAM, Some(KEY)),
        120.0,
        server.dir.path(),
    );
    server.wait_live(STREAM, &mut p, WAIT).await;
    let (mut a, _) = connect(&server, "").await;
    let (_b, _) = connect(&server, "").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let v = a.next().await;
        if v["type"] == "viewers" && v["count"].as_u64() == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "no viewers frame: {v}");
    }
}

/// The chat events found in a part: (emsg presentation time, in the emsg's timescale, and the
/// JSON of its ID3 `TXXX` "ferrocast-chat" frame), read with the tests' box reader.
fn chat_events_in(part: &[u8]) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    for e in common::mp4::emsgs(part) {
        assert_eq!(e.version, 1, "emsg version 1");
        assert_eq!(e.timescale, 90_000);
        assert_eq!(e.scheme_id_uri, "https://aomedia.org/emsg/ID3");
        assert_eq!(e.value, "");
        out.push((e.presentation_time.unwrap(), id3_chat_json(&e.message_data)));
    }
    out
}

/// The JSON in an ID3v2.4 tag holding one `TXXX` frame described "ferrocast-chat".
fn id3_chat_json(id3: &[u8]) -> Value {
    assert_eq!(&id3[..4], b"ID3\x04");
    assert_eq!(&id3[10..14], b"TXXX");
    let frame = &id3[20..];
    assert_eq!(frame[0], 3, "UTF-8");
    let desc_end = frame.iter().position(|&c| c == 0).unwrap();
    assert_eq!(&frame[1..desc_end], b"ferrocast-chat");
    serde_json::from_slice(&frame[desc_end + 1..]).unwrap()
}

/// Every chat event of `rendition`'s parts so far, each with the PDT its presentation time
/// maps to (segment PDT + offset from the segment's first video tfdt), in seconds.
async fn chat_in_rendition(server: &TestServer, rendition: &str) -> Vec<(u64, f64, Value)> {
    let base = format!("http://{}/live/{STREAM}/{rendition}/", server.http);
    let text = server.client.get(&format!("{base}index.m3u8")).await.text();
    let p = common::hls::MediaPlaylist::parse(&text);
    let mut out = Vec::new();
    let mut inits = std::collections::HashMap::new();
    for s in p.segments.iter().chain(p.open.iter()) {
        let (Some(seg_pdt), Some(map)) = (s.pdt, s.map.clone()) else {
            continue;
        };
        if !inits.contains_key(&map) {
            let body = server.client.get(&format!("{base}{map}")).await.body;
            inits.insert(map.clone(), common::mp4::parse_init(&body));
        }
        let init = &inits[&map];
        let video = init.video();
        // Seconds on the media timeline where the segment (its first part) starts.
        let mut seg_start = None;
        for part in &s.parts {
            let body = server.client.get(&format!("{base}{}", part.uri)).await.body;
            if seg_start.is_none() {
                let frags = common::mp4::parse_fragments(&body, init);
                let run = frags
                    .iter()
                    .flat_map(|f| &f.runs)
                    .find(|r| r.track_id == video.id)
                    .expect("the first part of a segment has video");
                seg_start = Some(run.base_decode_time as f64 / f64::from(video.timescale));
            }
            for (pt, json) in chat_events_in(&body) {
                let start = seg_start.unwrap();
                let pdt = seg_pdt + (pt as f64 / 90_000.0 - start);
                out.push((pt, pdt, json));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rides_in_every_rendition_at_its_pdt() {
    // Source plus one small transcoded rung: the event must be in both, at the same time.
    let rung =
        "[source]\npassthrough = true\n\n[[rung]]\nname = \"240p\"\nheight = 240\nbitrate = 300\n";
    let extra: &'static str =
        Box::leak(format!("\n[chat]\nmoderator_tokens = [\"{MOD_TOKEN}\"]\n").into_boxed_str());
    let server = TestServer::start(ServerOpts {
        extra,
        pipeline: "chatrung",
        pipelines: vec![("chatrung", rung.to_string())],
        ..Default::default()
    })
    .await;
    let mut publisher =
        Publisher::start(&server.rtmp_url(STREAM, Some(KEY)), 60.0, server.dir.path());
    server.wait_live(STREAM, &mut publisher, WAIT).await;
    common::poll(WAIT, "the 240p rung to have parts", || async {
        let r = server
            .client
            .get(&format!(
                "http://{}/live/{STREAM}/240p/index.m3u8",
                server.http
            ))
            .await;
        (r.status == 200 && r.text().contains("#EXT-X-PART:")).then_some(())
    })
    .await;

    let (mut m, _) = connect(&server, &format!("?name=referee&token={MOD_TOKEN}")).await;
    m.say("<b>goal</b> & more").await;
    let msg = m.expect("message").await;
    let id = msg["id"].as_u64().unwrap();
    let pdt = msg["pdt"].as_u64().unwrap() as f64 / 1000.0;
    let part_target = server.playlist(STREAM, "").await.part_target();
    m.send_json(json!({"type": "delete", "id": id})).await;
    m.expect("deleted").await;

    // Both events reach both renditions' parts, once each, at the same media time.
    let found = common::poll(WAIT, "the chat events in both renditions", || async {
        let src = chat_in_rendition(&server, "source").await;
        let rung = chat_in_rendition(&server, "240p").await;
        let complete = |v: &Vec<(u64, f64, Value)>| v.len() >= 2;
        (complete(&src) && complete(&rung)).then_some((src, rung))
    })
    .await;
    let (src, rung) = found;
    for evs in [&src, &rung] {
        assert_eq!(evs.len(), 2, "one message and one deletion: {evs:?}");
        let (_, at, json) = &evs[0];
        assert_eq!(json["type"], "message");
        assert_eq!(json["id"], id);
        assert_eq!(json["text"], "<b>goal</b> & more");
        // Placed at its pdt, or at the start of the part it rides in when that is later
        // (the message arrived while the previous part was the live edge): within a part.
        assert!(
            *at >= pdt - 0.001 && *at <= pdt + part_target + 0.05,
            "event at PDT {at}, message pdt {pdt}, PART-TARGET {part_target}"
        );
        assert_eq!(evs[1].2, json!({"type": "deleted", "id": id}));
        assert!(evs[1].1 >= *at, "the deletion comes after the message");
    }
    // The hub promises each rendition places an event at the same media time.
    assert_eq!(
        (src[0].0, src[1].0),
        (rung[0].0, rung[1].0),
        "same presentation times (90 kHz) in every rendition; message pdt {pdt}\n\
         source (pt, PDT, event): {src:?}\n240p: {rung:?}"
    );
}
