//! The WebSocket edge of chat: upgrades `GET /live/NAME/chat` on the origin's hyper server
//! and runs one task per connection around tokio-tungstenite.
//!
//! Memory per connection is kept small for rooms of tens of thousands: tungstenite's read
//! buffer is [`READ_BUFFER`] bytes (not its 128 KiB default) and writes go straight to the
//! socket; the only other per-connection state is the bounded queue of shared frames.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::protocol::{self, ServerFrame};
use super::queue::Next;
use super::{ChatRooms, Joined, RoomHandle};
use crate::util::body::Body;
use crate::util::percent;

/// tungstenite's read buffer per connection (chat frames are small).
pub const READ_BUFFER: usize = 512;
/// A ping goes out when a connection has been quiet this long…
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// …and a connection that has sent nothing (not even a pong) for this long is closed.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// A write that cannot complete in this time means a dead or stalled peer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Resp = Response<Body>;

fn plain(code: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Body::from(bytes::Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `?name=` and `?token=` of the upgrade request (decoded; empty values count as absent).
fn query_params(q: Option<&str>) -> (Option<String>, Option<String>) {
    let (mut name, mut token) = (None, None);
    for (k, v) in percent::query_pairs(q) {
        match &*k {
            "name" if !v.is_empty() => name = Some(v.into_owned()),
            "token" if !v.is_empty() => token = Some(v.into_owned()),
            _ => {}
        }
    }
    (name, token)
}

/// Answers a chat request: 404 unless the room admits connections, 426 unless it is a
/// WebSocket upgrade, else 101 and a task that runs the connection.
pub fn upgrade(rooms: &Arc<ChatRooms>, name: &str, mut req: Request<Incoming>) -> Resp {
    let Some(room) = rooms.admit(name).cloned() else {
        return plain(
            StatusCode::NOT_FOUND,
            "no chat room: unknown stream, or not live\n",
        );
    };
    let h = req.headers();
    let is_upgrade = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = h
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_upgrade && version_ok)
    else {
        let mut r = plain(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint (RFC 6455, version 13)\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    };
    let accept = derive_accept_key(key.as_bytes());
    let (nick, token) = query_params(req.uri().query());
    let moderator = token.as_deref().map(|t| rooms.is_moderator_token(t));
    let rooms = rooms.clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Rare paths (refusals) are boxed where they are awaited, so the task every connection
    // keeps is small (about 1.4 KiB here).
    let task = async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "chat upgrade failed");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(rooms.max_frame))
            .max_frame_size(Some(rooms.max_frame));
        // Take the TCP stream back from hyper: no boxed IO and rewind layer per read and write.
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let tcp = parts.io.into_inner();
                let ws = if parts.read_buf.is_empty() {
                    WebSocketStream::from_raw_socket(tcp, Role::Server, Some(config)).await
                } else {
                    let early = parts.read_buf.to_vec();
                    WebSocketStream::from_partially_read(tcp, early, Role::Server, Some(config))
                        .await
                };
                run(ws, &rooms, &room, nick, moderator).await;
            }
            Err(upgraded) => {
                let io = TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                run(ws, &rooms, &room, nick, moderator).await;
            }
        }
    };
    // Its lines are debug ones: at debug level the span is free by default (rooms hold tens of
    // thousands of connections). Made here, inside the HTTP connection's span, so it names the
    // peer too.
    tokio::spawn(task.instrument(tracing::debug_span!("chat", stream = %name)));
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// Header of an unmasked, final text frame of `len` bytes (RFC 6455 5.2; servers never mask).
fn text_frame_header(len: usize) -> Vec<u8> {
    let mut h = vec![0x81];
    if len < 126 {
        h.push(len as u8);
    } else if len <= 0xFFFF {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

/// Sends an error frame and closes; failures are ignored (the peer may be gone).
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: ServerFrame,
    code: CloseCode,
) {
    let reason = match &frame {
        ServerFrame::Error { code, .. } => *code,
        _ => "",
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = ws.send(Message::Text(frame.encode())).await;
        let _ = ws
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        // Read (and discard) whatever the peer still sends, until it closes or briefly: closing
        // with unread input would reset the connection and could lose the error frame.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            // On the heap: an array here would sit in every connection task's future.
            let mut buf = vec![0u8; 4096];
            let mut left = 4usize << 20;
            while left > 0 {
                match ws.get_mut().read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    })
    .await;
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    rooms: &ChatRooms,
    room: &Arc<RoomHandle>,
    nick: Option<String>,
    moderator: Option<bool>,
) {
    if moderator == Some(false) {
        let f = ServerFrame::error("bad_token", "the moderator token is not valid");
        return Box::pin(refuse(&mut ws, f, CloseCode::Policy)).await;
    }
    let conn = rooms.next_conn_id();
    let Joined { conn, queue } = match room.join(conn, nick.as_deref(), moderator == Some(true)) {
        Ok(j) => j,
        Err(f) => return Box::pin(refuse(&mut ws, f, CloseCode::Policy)).await,
    };
    // The welcome (with history, up to tens of KiB) is written around tungstenite: its write
    // buffer keeps the capacity of the largest frame it ever wrote, for the connection's life.
    if let Some(welcome) = queue.try_pop() {
        let io = ws.get_mut();
        let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
            io.write_all(&text_frame_header(welcome.len())).await?;
            io.write_all(welcome.as_bytes()).await?;
            io.flush().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            room.leave(conn);
            return;
        }
    }
    let mut last_seen = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            next = queue.next() => match next {
                Next::Frame(text) => {
                    // Everything already queued goes out with one flush.
                    let write = async {
                        ws.feed(Message::Text(text)).await?;
                        while let Some(more) = queue.try_pop() {
                            ws.feed(Message::Text(more)).await?;
                        }
                        ws.flush().await
                    };
                    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                Next::Closed(frame) => {
                    // The room let go of us: say why, then close.
                    room.leave(conn);
                    return Box::pin(refuse(&mut ws, frame, CloseCode::Policy)).await;
                }
            },
            msg = ws.next() => {
                last_seen = Instant::now();
                match msg {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => match protocol::parse(t.as_str()) {
                        Ok(frame) => room.client_frame(conn, frame),
                        Err(e) => room.to(conn, ServerFrame::error(e.code(), e.reason())),
                    },
                    Some(Ok(Message::Binary(_))) => room.to(
                        conn,
                        ServerFrame::error("binary_unsupported", "chat frames are JSON text frames"),
                    ),
                    Some(Ok(_)) => {} // ping (answered by tungstenite), pong
                    Some(Err(WsError::Capacity(_))) => {
                        room.leave(conn);
                        let f = ServerFrame::error(
                            "too_large",
                            format!("frames are at most {} bytes", rooms.max_frame),
                        );
                        return Box::pin(refuse(&mut ws, f, CloseCode::Size)).await;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(conn, error = %e, "chat connection error");
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= IDLE_LIMIT {
                    room.leave(conn);
                    let f = ServerFrame::error("idle", "no answer to pings");
                    return Box::pin(refuse(&mut ws, f, CloseCode::Away)).await;
                }
                if tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::Ping(Default::default()))).await.is_err() {
                    break;
                }
            }
        }
    }
    room.leave(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        assert_eq!(text_frame_header(5), [0x81, 5]);
        assert_eq!(text_frame_header(126), [0x81, 126, 0, 126]);
        assert_eq!(
            text_frame_header(70_000),
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
    }

    #[test]
    fn query_names_and_tokens_are_decoded() {
        assert_eq!(
            query_params(Some("name=al%69ce&token=a%2Bb&x=1")),
            (Some("alice".into()), Some("a+b".into()))
        );
        assert_eq!(query_params(None), (None, None));
        assert_eq!(query_params(Some("name=")), (None, None));
    }
}
