//! What cluster chat puts into NATS, sans-IO: subjects, payloads, message ids, key names.
//!
//! - Stream [`STREAM`] holds every room's log: `ferrocast.chat.<room>.msg` carries messages
//!   ([`Stored`]; the stream sequence is the message id), `ferrocast.chat.<room>.mod` carries
//!   deletions, timeouts and bans ([`Event`]), so they are ordered with the messages.
//! - Key-value bucket [`MODERATION_BUCKET`]: the room's live bans and timeouts
//!   (`<room>.ban.<hex name>`, `<room>.timeout.<hex name>`), for nodes that start later.
//! - Core subject [`VIEWERS_SUBJECT`]: each node's chat connections per room ([`Census`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chat::protocol::{ChatMessage, Draft};
use crate::chat::room::Sanction;

/// The JetStream stream of the chat log.
pub const STREAM: &str = "FERROCAST_CHAT";
/// Its subjects.
pub const SUBJECTS: &str = "ferrocast.chat.>";
/// Within this window JetStream drops a publish whose `Nats-Msg-Id` it has seen.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The bucket of bans and timeouts.
pub const MODERATION_BUCKET: &str = "ferrocast-chat-moderation";
/// Viewer counts (core NATS, not stored; outside [`SUBJECTS`] on purpose).
pub const VIEWERS_SUBJECT: &str = "ferrocast.chatviewers";

const PREFIX: &str = "ferrocast.chat.";

/// The subject of `room`'s messages.
pub fn message_subject(room: &str) -> String {
    format!("{PREFIX}{room}.msg")
}

/// The subject of `room`'s deletions and sanctions.
pub fn event_subject(room: &str) -> String {
    format!("{PREFIX}{room}.mod")
}

/// What a subject of the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Event,
}

/// The room and kind of a stream subject; None for anything else.
pub fn parse_subject(subject: &str) -> Option<(&str, Kind)> {
    let rest = subject.strip_prefix(PREFIX)?;
    let (room, kind) = rest.rsplit_once('.')?;
    let kind = match kind {
        "msg" => Kind::Message,
        "mod" => Kind::Event,
        _ => return None,
    };
    (!room.is_empty() && !room.contains('.')).then_some((room, kind))
}

/// A message as stored in the stream (its id is the stream sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The node it was sent through.
    pub node: String,
    pub name: String,
    pub text: String,
    pub ts: u64,
    pub pdt: u64,
}

impl Stored {
    pub fn new(node: &str, d: Draft) -> Stored {
        Stored {
            node: node.to_string(),
            name: d.name,
            text: d.text,
            ts: d.ts,
            pdt: d.pdt,
        }
    }

    pub fn into_message(self, id: u64) -> ChatMessage {
        ChatMessage {
            id,
            name: self.name,
            text: self.text,
            ts: self.ts,
            pdt: self.pdt,
        }
    }
}

/// A deletion or sanction as stored in the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Deleted {
        id: u64,
    },
    Timeout {
        name: String,
        seconds: u64,
        until_ms: u64,
    },
    Ban {
        name: String,
    },
}

impl From<Sanction> for Event {
    fn from(s: Sanction) -> Event {
        match s {
            Sanction::Timeout {
                name,
                seconds,
                until_ms,
            } => Event::Timeout {
                name,
                seconds,
                until_ms,
            },
            Sanction::Ban { name } => Event::Ban { name },
        }
    }
}

/// `Nats-Msg-Id` of a send: node, process start (so a restarted node never repeats an id
/// within the duplicate window), connection, and the node's action counter.
pub fn send_id(node: &str, boot: &str, conn: u64, n: u64) -> String {
    format!("{node}.{boot}.{conn}.{n}")
}

/// `Nats-Msg-Id` of a deletion: one per message, so deleting twice is stored once.
pub fn delete_id(room: &str, id: u64) -> String {
    format!("del.{room}.{id}")
}

/// `Nats-Msg-Id` of a sanction.
pub fn sanction_id(node: &str, boot: &str, n: u64) -> String {
    format!("mod.{node}.{boot}.{n}")
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The key of a sanction in [`MODERATION_BUCKET`]. Names are hex-encoded: a name may hold
/// `.` (a key separator) at either end. `key` is the case-folded name.
pub fn sanction_key(room: &str, ban: bool, key: &str) -> String {
    let kind = if ban { "ban" } else { "timeout" };
    format!("{room}.{kind}.{}", hex(key))
}

/// The key prefix of every sanction of `room`.
pub fn room_prefix(room: &str) -> String {
    format!("{room}.")
}

/// The room and case-folded name of a sanction key.
pub fn parse_sanction_key(k: &str) -> Option<(&str, String)> {
    let mut it = k.splitn(3, '.');
    let (room, kind, name) = (it.next()?, it.next()?, it.next()?);
    matches!(kind, "ban" | "timeout")
        .then_some(())
        .and(unhex(name))
        .map(|n| (room, n))
}

/// One node's chat connections per room, published every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    pub node: String,
    /// Only rooms with connections.
    pub rooms: BTreeMap<String, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_and_strangers_are_refused() {
        assert_eq!(message_subject("demo"), "ferrocast.chat.demo.msg");
        assert_eq!(
            parse_subject(&message_subject("a-b_c")),
            Some(("a-b_c", Kind::Message))
        );
        assert_eq!(
            parse_subject(&event_subject("demo")),
            Some(("demo", Kind::Event))
        );
        assert_eq!(parse_subject("ferrocast.chat.demo.x"), None);
        assert_eq!(parse_subject("ferrocast.chat.a.b.msg"), None);
        assert_eq!(parse_subject("ferrocast.chat..msg"), None);
        assert_eq!(parse_subject("other.demo.msg"), None);
        assert!(!VIEWERS_SUBJECT.starts_with(PREFIX), "never stored");
    }

    #[test]
    fn payloads_are_json_with_a_type_tag() {
        let d = Draft {
            name: "ann".into(),
            text: "hi".into(),
            ts: 2,
            pdt: 1,
        };
        let s = Stored::new("n1", d);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"node":"n1","name":"ann","text":"hi","ts":2,"pdt":1}"#
        );
        let back: Stored = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_message(9).id, 9);
        let e: Event = Sanction::Timeout {
            name: "t".into(),
            seconds: 5,
            until_ms: 7,
        }
        .into();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"timeout","name":"t","seconds":5,"until_ms":7}"#
        );
        assert_eq!(
            serde_json::from_str::<Event>(r#"{"type":"deleted","id":3}"#).unwrap(),
            Event::Deleted { id: 3 }
        );
    }

    #[test]
    fn sanction_keys_survive_dots_in_names() {
        let k = sanction_key("demo", true, ".odd.");
        assert_eq!(k, "demo.ban.2e6f64642e");
        assert_eq!(parse_sanction_key(&k), Some(("demo", ".odd.".to_string())));
        assert!(k.starts_with(&room_prefix("demo")));
        assert_eq!(parse_sanction_key("demo.other.00"), None);
        assert_eq!(parse_sanction_key("demo.ban.zz"), None);
        assert_eq!(parse_sanction_key("demo.ban.abc"), None);
    }

    #[test]
    fn message_ids_differ_across_restarts_and_actions() {
        assert_ne!(send_id("a", "b1", 1, 1), send_id("a", "b2", 1, 1));
        assert_ne!(send_id("a", "b1", 1, 1), send_id("a", "b1", 1, 2));
        assert_eq!(delete_id("demo", 5), delete_id("demo", 5));
        assert_ne!(sanction_id("a", "b", 1), send_id("a", "b", 0, 1));
    }
}
