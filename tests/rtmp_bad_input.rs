//! Malformed RTMP on the ingest port ends only the offending session: a healthy publisher
//! beside it keeps its playlist advancing and the server stays up.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use common::hls;
use common::*;

const HEALTHY: (&str, &str) = ("healthy", "healthy-key");
const VICTIM: (&str, &str) = ("victim", "victim-key");

/// The server's handshake/setup timeout is 10 s; allow generous slack on a busy machine.
const SERVER_GIVES_UP: Duration = Duration::from_secs(20);

/// Deterministic junk.
struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 24) as u8
            })
            .collect()
    }
}

/// Reads (and discards) until the server closes the connection; false on timeout.
async fn server_closes(sock: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Writes, tolerating the server having already hung up (that is the expected outcome).
async fn send(sock: &mut TcpStream, bytes: &[u8]) {
    let _ = sock.write_all(bytes).await;
}

/// The client side of the RTMP handshake; returns bytes that followed it.
async fn client_handshake(sock: &mut TcpStream) -> Vec<u8> {
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
    sock.write_all(&c0c1).await.unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed during a valid handshake");
        match hs.process_bytes(&buf[..n]).expect("valid handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await.unwrap()
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await.unwrap();
                return remaining_bytes;
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let sock = TcpStream::connect(addr)
        .await
        .expect("connect to the RTMP port");
    sock.set_nodelay(true).unwrap();
    sock
}

/// One RTMP chunk with a full (type 0) header on chunk stream `csid` (2..=63).
fn chunk0(csid: u8, type_id: u8, stream_id: u32, declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut c = vec![csid & 0x3f, 0, 0, 0];
    c.extend_from_slice(&declared_len.to_be_bytes()[1..]);
    c.push(type_id);
    c.extend_from_slice(&stream_id.to_le_bytes());
    c.extend_from_slice(payload);
    c
}

fn set_chunk_size(size: u32) -> Vec<u8> {
    chunk0(2, 1, 0, 4, &size.to_be_bytes())
}

// --- The attacks. Each returns once the server has hung up on it, or panics.

async fn random_bytes(addr: SocketAddr, first: u8, seed: u64) -> &'static str {
    let mut sock = connect(addr).await;
    let mut junk = Rng(seed).bytes(64 * 1024);
    junk[0] = first;
    send(&mut sock, &junk).await;
    assert!(
        server_closes(&mut sock, SERVER_GIVES_UP).await,
        "server kept a connection sending random bytes (first byte {first:#x})"
    );
    "random bytes"
}

async fn c0_only_then_close(addr: SocketAddr) -> &'static str {
    let mut sock = connect(addr).await;
    send(&mut sock, &[3]).await;
    drop(sock);
    "C0 then close"
}

async fn half_c1_then_hang(addr: SocketAddr) -> &'static str {
    let mut sock = connect(addr).await;
    let mut c = vec![3u8];
    c.extend(Rng(7).bytes(768));
    send(&mut sock, &c).await;
    let start = Instant::now();
    assert!(
        server_closes(&mut sock, SERVER_GIVES_UP).await,
        "server never timed out a half-done handshake"
    );
    assert!(
        start.elapsed() > Duration::from_secs(2),
        "a slow handshake was dropped suspiciously fast"
    );
    "C0 + half C1 then silence"
}

async fn handshake_then_garbage(addr: SocketAddr) -> &'static str {
    let mut sock = connect(addr).await;
    client_handshake(&mut sock).await;
    send(&mut sock, &Rng(11).bytes(16 * 1024)).await;
    assert!(
        server_closes(&mut sock, SERVER_GIVES_UP).await,
        "server kept a connection sending garbage chunks"
    );
    "garbage chunks"
}

async fn absurd_chunk_size(addr: SocketAddr, size: u32) -> &'static str {
    let mut sock = connect(addr).await;
    client_handshake(&mut sock).await;
    send(&mut sock, &set_chunk_size(size)).await;
    // A message declaring the largest possible length, then a flood of its "payload".
    send(&mut sock, &chunk0(3, 20, 0, 0xff_ffff, &[])).await;
    let junk = Rng(u64::from(size) | 1).bytes(64 * 1024);
    for _ in 0..8 {
        send(&mut sock, &junk).await;
    }
    assert!(
        server_closes(&mut sock, SERVER_GIVES_UP).await,
        "server kept a connection after SetChunkSize({size:#x}) and 512 KiB"
    );
    "absurd chunk size"
}

async fn garbage_command(addr: SocketAddr) -> &'static str {
    let mut sock = connect(addr).await;
    client_handshake(&mut sock).await;
    let junk = Rng(23).bytes(100);
    send(&mut sock, &chunk0(3, 20, 0, junk.len() as u32, &junk)).await;
    assert!(
        server_closes(&mut sock, SERVER_GIVES_UP).await,
        "server kept a connection after an undecodable AMF0 command"
    );
    "garbage AMF0 command"
}

async fn interleaved_partial_messages(addr: SocketAddr) -> &'static str {
    let mut sock = connect(addr).await;
    client_handshake(&mut sock).await;
    // A 1000-byte message cut after its first 128-byte chunk, then another message on another
    // chunk stream that is shorter than what is already buffered.
    send(&mut sock, &chunk0(3, 20, 0, 1000, &[5u8; 128])).await;
    send(&mut sock, &chunk0(4, 20, 0, 10, &[5u8; 10])).await;
    send(&mut sock, &Rng(31).bytes(4096)).await;
    assert!(
        server_closes(&mut sock, SERVER_GIVES_UP).await,
        "server kept a connection with interleaved partial messages"
    );
    "interleaved partial messages"
}

async fn publish_then_garbage_video(addr: SocketAddr) -> &'static str {
    let key = format!("{}?key={}", VICTIM.0, VICTIM.1);
    let mut sock = connect(addr).await;
    let leftover = client_handshake(&mut sock).await;
    let (mut session, mut out) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    out.push(session.request_connection("live".into()).unwrap());
    let mut input = leftover;
    let mut buf = vec![0u8; 8192];
    let mut published = false;
    while !published {
        for r in std::mem::take(&mut out) {
            match r {
                ClientSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).await.unwrap(),
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    let r = session
                        .request_publishing(key.clone(), PublishRequestType::Live)
                        .unwrap();
                    if let ClientSessionResult::OutboundResponse(p) = r {
                        sock.write_all(&p.bytes).await.unwrap();
                    }
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    published = true
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => {
                    panic!("victim connect rejected: {description}")
                }
                _ => {}
            }
        }
        if published {
            break;
        }
        if input.is_empty() {
            let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
                .await
                .expect("server answers the publish")
                .unwrap();
            assert!(n > 0, "server closed before accepting the victim's publish");
            input.extend_from_slice(&buf[..n]);
        }
        out = session.handle_input(&input).unwrap();
        input.clear();
    }
    // Garbage where FLV video tags belong: a bad AVC sequence header, bogus codecs, noise.
    let mut rng = Rng(43);
    let mut tags: Vec<Vec<u8>> = vec![
        [vec![0x17, 0x00, 0, 0, 0], rng.bytes(40)].concat(),
        [
            vec![0x17, 0x01, 0, 0, 0],
            vec![0xff, 0xff, 0xff, 0xff, 0x65],
        ]
        .concat(),
        vec![0x1f, 1, 2, 3],
        vec![0x87],
    ];
    tags.extend((0..50).map(|_| rng.bytes(300)));
    for (i, tag) in tags.into_iter().enumerate() {
        let Ok(ClientSessionResult::OutboundResponse(p)) =
            session.publish_video_data(Bytes::from(tag), RtmpTimestamp::new(i as u32 * 33), false)
        else {
            panic!("client session refused to frame video data");
        };
        if sock.write_all(&p.bytes).await.is_err() {
            break; // already hung up on
        }
    }
    assert!(
        server_closes(&mut sock, SERVER_GIVES_UP).await,
        "server kept a publisher sending garbage video tags"
    );
    "publish + garbage video tags"
}

async fn connect_and_close(addr: SocketAddr, n: usize) -> &'static str {
    for _ in 0..n / 50 {
        let mut set = JoinSet::new();
        for _ in 0..50 {
            set.spawn(async move {
                let s = TcpStream::connect(addr).await.expect("connect");
                drop(s);
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    }
    "connect and close"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rtmp_input_ends_only_that_session() {
    let srv = TestServer::start(ServerOpts {
        window: 6,
        grace: "3s",
        streams: vec![HEALTHY, VICTIM],
        ..Default::default()
    })
    .await;
    let mut healthy = Publisher::start(
        &srv.rtmp_url(HEALTHY.0, Some(HEALTHY.1)),
        60.0,
        srv.dir.path(),
    );
    let p0 = srv
        .wait_playlist(
            HEALTHY.0,
            Duration::from_secs(30),
            "the healthy stream's first segment",
            |p| !p.segments.is_empty(),
        )
        .await;
    let m0 = srv.metrics().await;
    let edge0 = p0.edge_msn();

    let addr = srv.rtmp;
    let mut attacks: JoinSet<&'static str> = JoinSet::new();
    attacks.spawn(random_bytes(addr, 0x47, 1));
    attacks.spawn(random_bytes(addr, 0x03, 2));
    attacks.spawn(c0_only_then_close(addr));
    attacks.spawn(half_c1_then_hang(addr));
    attacks.spawn(handshake_then_garbage(addr));
    attacks.spawn(absurd_chunk_size(addr, 0x7fff_ffff));
    attacks.spawn(absurd_chunk_size(addr, 0xffff_ffff));
    attacks.spawn(absurd_chunk_size(addr, 0));
    attacks.spawn(absurd_chunk_size(addr, 1));
    attacks.spawn(garbage_command(addr));
    attacks.spawn(interleaved_partial_messages(addr));
    attacks.spawn(publish_then_garbage_video(addr));
    attacks.spawn(connect_and_close(addr, 200));
    let n_sessions = 12.0; // every attack above but the connect/close storm ends in an error

    // While under attack: the server answers and the healthy stream advances.
    let mut done = Vec::new();
    let mut edge = edge0;
    let attack_start = Instant::now();
    loop {
        tokio::select! {
            r = attacks.join_next() => match r {
                Some(r) => done.push(r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let h = srv.get("/healthz").await;
                assert_eq!(h.status, 200, "healthz during the attack");
                assert!(h.elapsed < Duration::from_secs(2), "healthz took {:?} during the attack", h.elapsed);
                edge = edge.max(srv.playlist(HEALTHY.0, "").await.edge_msn());
                assert!(attack_start.elapsed() < Duration::from_secs(60), "attacks did not finish: done {done:?}");
            }
        }
    }
    assert_eq!(done.len(), 13, "{done:?}");
    assert!(
        edge >= edge0 + 2,
        "healthy playlist stalled during the attack (edge msn {edge0} -> {edge})"
    );

    // And after it, until the window has slid past the first segment.
    let first_msn = p0.segments[0].msn;
    let p = srv
        .wait_playlist(
            HEALTHY.0,
            Duration::from_secs(30),
            "another healthy segment, and the first one out of the window",
            |p| p.last_segment_msn().is_some_and(|m| m > edge) && p.media_sequence > first_msn,
        )
        .await;
    assert!(
        healthy.try_wait().is_none(),
        "healthy publisher was cut off:\n{}",
        healthy.stderr()
    );
    hls::check_rules(&p);
    assert!(
        !p.segments.iter().any(|s| s.discontinuity),
        "the healthy publisher never dropped:\n{}",
        p.text
    );
    // The default window of 6 slid on: old segments are gone, from the playlist and the origin.
    assert!(
        p.segments.len() <= 6 && p.media_sequence > 0,
        "window of 6:\n{}",
        p.text
    );
    let gone = srv
        .client
        .get(&srv.media_url(HEALTHY.0, &p0.segments[0].uri))
        .await;
    assert_eq!(
        gone.status, 404,
        "evicted segment {} still served",
        p0.segments[0].uri
    );
    // What was produced during the attack decodes cleanly.
    let init = srv
        .client
        .get(&srv.media_url(HEALTHY.0, p.segments[0].map.as_ref().unwrap()))
        .await
        .body;
    let mut bytes = init.to_vec();
    for s in &p.segments {
        let r = srv.client.get(&srv.media_url(HEALTHY.0, &s.uri)).await;
        assert_eq!(r.status, 200);
        bytes.extend_from_slice(&r.body);
    }
    let dir = TempDir::new("attack");
    let path = write_file(dir.path(), "healthy.mp4", &[&bytes]);
    let errors = decode_errors(&path);
    assert!(
        errors.trim().is_empty(),
        "healthy stream does not decode cleanly after the attack:\n{errors}"
    );

    let m = srv.metrics().await;
    let errors = m.get("ferrocast_rtmp_errors_total") - m0.get("ferrocast_rtmp_errors_total");
    assert!(
        errors >= n_sessions,
        "only {errors} RTMP sessions counted as errors"
    );
    let conns =
        m.get("ferrocast_rtmp_connections_total") - m0.get("ferrocast_rtmp_connections_total");
    assert!(
        conns >= 200.0 + n_sessions,
        "only {conns} connections counted"
    );
    // Logged as the server drops the session (the attacker may see the close first).
    wait_log_line(
        Duration::from_secs(10),
        "for the victim's session end, with its stream name",
        false,
        |l| l.contains("rtmp session ended") && l.contains(&format!("stream=\"{}\"", VICTIM.0)),
    )
    .await;
    let h = srv.get("/healthz").await;
    assert_eq!(h.status, 200);
    let api: serde_json::Value =
        serde_json::from_slice(&srv.get("/api/v1/streams").await.body).unwrap();
    let healthy_entry = api
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == HEALTHY.0)
        .expect("healthy listed");
    assert_eq!(healthy_entry["publishing"], true);
}
