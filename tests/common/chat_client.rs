//! A small chat WebSocket client for the cluster tests (tokio-tungstenite), like a viewer's
//! browser: connect with `?name=`/`?token=`, read JSON frames, send frames.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async, WebSocketStream};

/// How a connection attempt was turned down.
#[derive(Debug)]
pub enum Refused {
    /// Before the upgrade (404: no open room).
    Http(u16),
    /// After the upgrade: the error frame before the close.
    Frame(Value),
    /// No TCP connection (the node is down).
    Down(String),
}

pub struct ChatClient {
    ws: WebSocketStream<TcpStream>,
    pub welcome: Value,
}

impl ChatClient {
    /// Connects to `url` (`ws://host:port/live/NAME/chat?...`) and reads the first frame.
    pub async fn connect(url: &str) -> Result<ChatClient, Refused> {
        let host = url
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .expect("ws:// URL");
        let tcp = TcpStream::connect(host)
            .await
            .map_err(|e| Refused::Down(e.to_string()))?;
        let (ws, _) = match client_async(url, tcp).await {
            Ok(ok) => ok,
            Err(WsError::Http(resp)) => return Err(Refused::Http(resp.status().as_u16())),
            Err(e) => return Err(Refused::Down(e.to_string())),
        };
        let mut c = ChatClient {
            ws,
            welcome: Value::Null,
        };
        let first = c
            .next(Duration::from_secs(15))
            .await
            .ok_or_else(|| Refused::Down("no first frame".into()))?;
        match first["type"].as_str() {
            Some("welcome") => {
                c.welcome = first;
                Ok(c)
            }
            _ => Err(Refused::Frame(first)),
        }
    }

    /// Connects, retrying while the room is not open yet (404) or the node is not up.
    pub async fn connect_when_open(url: &str, within: Duration) -> ChatClient {
        let deadline = Instant::now() + within;
        loop {
            match ChatClient::connect(url).await {
                Ok(c) => return c,
                Err(Refused::Frame(f)) => panic!("{url} refused: {f}"),
                Err(e) => {
                    assert!(Instant::now() < deadline, "{url} never opened: {e:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The next JSON frame within `wait` (pings skipped); None on timeout or close.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match m.ok()? {
                Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame of type `kind` within `wait`, skipping others; panics otherwise.
    pub async fn expect(&mut self, kind: &str, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(v) if v["type"] == kind => return v,
                Some(_) => continue,
                None => panic!("no `{kind}` frame within {wait:?}"),
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends a message; false when the connection is gone.
    pub async fn say(&mut self, text: &str) -> bool {
        self.ws
            .send(Message::Text(
                json!({"type": "send", "text": text}).to_string().into(),
            ))
            .await
            .is_ok()
    }

    /// Whether the server closed the connection within `wait` (frames before it skipped).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// The ids of a `welcome`'s history.
pub fn history_ids(welcome: &Value) -> Vec<u64> {
    welcome["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default()
}
