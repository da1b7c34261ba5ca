//! One chat WebSocket client for the tests (tokio-tungstenite), as a viewer's browser talks to
//! `/live/NAME/chat`: connect (welcome or a refusal), send JSON frames, read JSON frames.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};

/// How long any one frame may take to arrive.
pub const WAIT: Duration = Duration::from_secs(15);

/// Frames the room broadcasts to everyone; skipped while waiting for something else.
const BROADCASTS: [&str; 4] = ["message", "deleted", "viewers", "moderation"];

/// One chat connection.
pub struct WsClient {
    pub ws: WebSocketStream<TcpStream>,
}

/// How a connection attempt ended.
#[allow(clippy::large_enum_variant)] // one per connection attempt in tests
pub enum Connect {
    /// Admitted: the client and its welcome frame.
    Ok(WsClient, Value),
    /// Refused after the upgrade: the error frame (the server then closed).
    Refused(Value),
}

/// Connects to `stream`'s room on the server at `http`, with `query` (`?name=...` or "").
pub async fn try_connect(http: SocketAddr, stream: &str, query: &str) -> Connect {
    let tcp = TcpStream::connect(http)
        .await
        .unwrap_or_else(|e| panic!("connect to {http}: {e}"));
    try_connect_on(tcp, http, stream, query).await
}

/// [`try_connect`] over a socket the caller set up (e.g. with a small receive buffer).
pub async fn try_connect_on(
    tcp: TcpStream,
    http: SocketAddr,
    stream: &str,
    query: &str,
) -> Connect {
    let url = format!("ws://{http}/live/{stream}/chat{query}");
    let (ws, resp) = client_async(url.as_str(), tcp)
        .await
        .unwrap_or_else(|e| panic!("WebSocket upgrade of {url}: {e}"));
    assert_eq!(resp.status(), 101, "{url}");
    let mut c = WsClient { ws };
    let first = c.next().await;
    match first["type"].as_str() {
        Some("welcome") => Connect::Ok(c, first),
        Some("error") => {
            c.expect_close().await;
            Connect::Refused(first)
        }
        _ => panic!("unexpected first frame from {url}: {first}"),
    }
}

/// Connects and expects to be admitted; returns the client and its welcome frame.
pub async fn connect(http: SocketAddr, stream: &str, query: &str) -> (WsClient, Value) {
    match try_connect(http, stream, query).await {
        Connect::Ok(c, w) => (c, w),
        Connect::Refused(e) => panic!("connect {query} refused: {e}"),
    }
}

/// Connects and expects a refusal; returns its error code.
pub async fn refused(http: SocketAddr, stream: &str, query: &str) -> String {
    match try_connect(http, stream, query).await {
        Connect::Ok(_, w) => panic!("connect {query} admitted: {w}"),
        Connect::Refused(e) => e["code"].as_str().unwrap_or_default().to_string(),
    }
}

impl WsClient {
    /// The next JSON frame (pings and pongs skipped; anything else but text fails the test).
    pub async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a chat frame in time")
                .expect("chat connection open")
                .expect("no WebSocket error");
            match m {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("chat frame is not JSON ({e}): {t}"))
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The next frame of type `kind` that `pred` accepts. Room broadcasts (messages,
    /// deletions, viewer counts, moderation notices) in between are skipped; anything else
    /// (an error frame, unless that is what is expected) fails the test.
    pub async fn expect_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next().await;
            let t = v["type"].as_str().unwrap_or("");
            if t == kind && pred(&v) {
                return v;
            }
            assert!(
                BROADCASTS.contains(&t) || t == kind,
                "expected {kind}, got {v}"
            );
        }
    }

    /// The next frame of type `kind` (see [`WsClient::expect_where`]).
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.expect_where(kind, |_| true).await
    }

    /// The code of the next error frame.
    pub async fn error_code(&mut self) -> String {
        self.expect("error").await["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn send_json(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send a chat frame");
    }

    /// Sends a chat message (without waiting for its echo).
    pub async fn say(&mut self, text: &str) {
        self.send_json(json!({"type": "send", "text": text})).await;
    }

    /// Sends a chat message and returns the server's `message` frame for it (id, ts, pdt).
    pub async fn say_and_echo(&mut self, text: &str) -> Value {
        self.say(text).await;
        self.expect_where("message", |v| v["text"] == text).await
    }

    /// Waits for the server's close (after an error frame); its code, if it sent one.
    pub async fn expect_close(&mut self) -> Option<CloseCode> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| f.code),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("no close within {WAIT:?}"),
            }
        }
    }
}
