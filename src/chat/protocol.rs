//! Chat frames on the wire (JSON text frames), sans-IO. Server frames are serialised once
//! and the resulting buffer is shared by every receiver; client frames are parsed into
//! [`ClientFrame`] or a [`ParseError`] whose code goes back in an `error` frame.

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One stored chat message, as sent in `message` frames and in `welcome` history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: u64,
    pub name: String,
    pub text: String,
    /// Server wall clock when the message arrived, UNIX ms.
    pub ts: u64,
    /// The stream's program date-time at the live edge when the message arrived, UNIX ms
    /// (the clock of `EXT-X-PROGRAM-DATE-TIME`).
    pub pdt: u64,
}

/// A message before the store has given it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub name: String,
    pub text: String,
    pub ts: u64,
    pub pdt: u64,
}

impl Draft {
    pub fn with_id(self, id: u64) -> ChatMessage {
        ChatMessage {
            id,
            name: self.name,
            text: self.text,
            ts: self.ts,
            pdt: self.pdt,
        }
    }
}

/// A `message` with its `type` tag, for the history array.
#[derive(Serialize)]
struct Tagged<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    message: &'a ChatMessage,
}

fn tagged<S: serde::Serializer>(history: &[ChatMessage], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(history.iter().map(|m| Tagged {
        kind: "message",
        message: m,
    }))
}

/// Limits a client may want to show (sent in `welcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitsInfo {
    pub max_message_len: usize,
    pub slow_mode_ms: u64,
    pub burst: u32,
    pub refill_ms: u64,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    Welcome {
        name: String,
        #[serde(serialize_with = "tagged")]
        history: Vec<ChatMessage>,
        moderator: bool,
        /// Whether sending is possible (the stream is live).
        open: bool,
        limits: LimitsInfo,
    },
    Message(ChatMessage),
    Deleted {
        id: u64,
    },
    Viewers {
        count: usize,
        /// Of which chat connections.
        chat: usize,
    },
    /// A moderator action everyone may see (`timeout`, `ban`).
    Moderation {
        action: &'static str,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seconds: Option<u64>,
    },
    Error {
        code: &'static str,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerFrame {
    pub fn error(code: &'static str, reason: impl Into<String>) -> ServerFrame {
        ServerFrame::Error {
            code,
            reason: reason.into(),
            retry_after_ms: None,
        }
    }

    /// The JSON text, ready to share among every receiver (cloning it is a refcount).
    pub fn encode(&self) -> Utf8Bytes {
        // Serialising these types cannot fail (string keys, no maps with other keys).
        Utf8Bytes::from(serde_json::to_string(self).unwrap_or_default())
    }
}

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    Send { text: String },
    Delete { id: u64 },
    Timeout { name: String, seconds: u64 },
    Ban { name: String },
}

/// Why a client frame was refused; `code()` goes into the `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all.
    BadJson(String),
    /// JSON, but not an object with a string `type`.
    NotAFrame,
    UnknownType(String),
    /// A known type with missing or wrongly typed fields.
    BadFields(String),
}

impl ParseError {
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::BadJson(_) => "bad_json",
            ParseError::NotAFrame => "bad_frame",
            ParseError::UnknownType(_) => "unknown_type",
            ParseError::BadFields(_) => "bad_frame",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            ParseError::BadJson(e) => format!("frame is not JSON: {e}"),
            ParseError::NotAFrame => "frame must be a JSON object with a string `type`".into(),
            ParseError::UnknownType(t) => format!(
                "unknown frame type `{}`; expected send, delete, timeout or ban",
                t.chars().take(32).collect::<String>()
            ),
            ParseError::BadFields(e) => format!("malformed frame: {e}"),
        }
    }
}

/// Parses one text frame from a client.
pub fn parse(text: &str) -> Result<ClientFrame, ParseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ParseError::BadJson(e.to_string()))?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or(ParseError::NotAFrame)?;
    if !matches!(kind, "send" | "delete" | "timeout" | "ban") {
        return Err(ParseError::UnknownType(kind.to_string()));
    }
    serde_json::from_value(value).map_err(|e| ParseError::BadFields(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> ChatMessage {
        ChatMessage {
            id: 7,
            name: "alice".into(),
            text: "<b>hi</b> \"there\"".into(),
            ts: 1_700_000_000_123,
            pdt: 1_700_000_000_000,
        }
    }

    #[test]
    fn message_frame_matches_the_contract() {
        let text = ServerFrame::Message(msg()).encode();
        assert_eq!(
            text.as_str(),
            r#"{"type":"message","id":7,"name":"alice","text":"<b>hi</b> \"there\"","ts":1700000000123,"pdt":1700000000000}"#
        );
    }

    #[test]
    fn welcome_history_items_are_tagged_messages() {
        let w = ServerFrame::Welcome {
            name: "bob".into(),
            history: vec![msg()],
            moderator: false,
            open: true,
            limits: LimitsInfo {
                max_message_len: 500,
                slow_mode_ms: 0,
                burst: 5,
                refill_ms: 1000,
            },
        };
        let v: serde_json::Value = serde_json::from_str(w.encode().as_str()).unwrap();
        assert_eq!(v["type"], "welcome");
        assert_eq!(v["name"], "bob");
        assert_eq!(v["history"][0]["type"], "message");
        assert_eq!(v["history"][0]["id"], 7);
    }

    #[test]
    fn other_server_frames() {
        assert_eq!(
            ServerFrame::Deleted { id: 3 }.encode().as_str(),
            r#"{"type":"deleted","id":3}"#
        );
        assert_eq!(
            ServerFrame::Viewers { count: 5, chat: 2 }.encode().as_str(),
            r#"{"type":"viewers","count":5,"chat":2}"#
        );
        assert_eq!(
            ServerFrame::error("too_long", "x").encode().as_str(),
            r#"{"type":"error","code":"too_long","reason":"x"}"#
        );
    }

    #[test]
    fn client_frames_parse() {
        assert_eq!(
            parse(r#"{"type":"send","text":"hi"}"#),
            Ok(ClientFrame::Send { text: "hi".into() })
        );
        assert_eq!(
            parse(r#"{"type":"delete","id":9}"#),
            Ok(ClientFrame::Delete { id: 9 })
        );
        assert_eq!(
            parse(r#"{"type":"timeout","name":"x","seconds":30}"#),
            Ok(ClientFrame::Timeout {
                name: "x".into(),
                seconds: 30
            })
        );
        assert_eq!(
            parse(r#"{"type":"ban","name":"x"}"#),
            Ok(ClientFrame::Ban { name: "x".into() })
        );
    }

    #[test]
    fn bad_client_frames_get_codes() {
        assert_eq!(parse("hello").unwrap_err().code(), "bad_json");
        assert_eq!(parse("[1,2]").unwrap_err().code(), "bad_frame");
        assert_eq!(parse(r#"{"text":"x"}"#).unwrap_err().code(), "bad_frame");
        assert_eq!(
            parse(r#"{"type":"dance"}"#).unwrap_err().code(),
            "unknown_type"
        );
        assert_eq!(parse(r#"{"type":"send"}"#).unwrap_err().code(), "bad_frame");
        assert_eq!(
            parse(r#"{"type":"delete","id":"x"}"#).unwrap_err().code(),
            "bad_frame"
        );
        assert_eq!(
            parse(r#"{"type":"timeout","name":"x","seconds":-1}"#)
                .unwrap_err()
                .code(),
            "bad_frame"
        );
    }
}
