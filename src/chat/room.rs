//! One chat room as a sans-IO state machine: joins, leaves, sends and moderator actions go
//! in with the time; what to send to whom (and what to store) comes out as [`Output`]s.
//! The room never touches a socket, a clock or the store; `chat::ws` and `chat::rooms` do.
//!
//! A message is not broadcast when it is accepted: the room asks for it to be stored
//! ([`Output::Persist`]) and broadcasts it once [`Room::committed`] reports the store has it,
//! so every message anyone has seen survives a restart.
//!
//! In a cluster ([`Room::set_replicated`]) the same room runs on every node: a moderator's
//! timeout or ban is checked here and then handed out as [`Output::Replicate`]; every node
//! (this one included) applies it with [`Room::apply`] when it comes back through the shared
//! log, and messages and deletions from any node arrive through [`Room::committed`] and
//! [`Room::apply_deleted`] in the log's order.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::names;
use super::protocol::{ChatMessage, Draft, LimitsInfo, ServerFrame};
use super::ratelimit::{SlowMode, TokenBucket};

/// Identifies one connection within the process.
pub type ConnId = u64;

/// Longest timeout a moderator may give (a ban is for longer).
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// The room's limits (from `[chat]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest message, in characters.
    pub max_message_len: usize,
    /// Token bucket per connection: this many at once…
    pub burst: u32,
    /// …then one more every this many ms (0: no rate limit).
    pub refill_ms: u64,
    /// Slow mode: one message per name per this many ms (0: off); moderators are exempt.
    pub slow_mode_ms: u64,
    /// Connections per room.
    pub max_connections: usize,
    /// Messages sent on join.
    pub history: usize,
}

/// What the glue must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send to one connection.
    To(ConnId, ServerFrame),
    /// Send to every connection of the room.
    Broadcast(ServerFrame),
    /// Store the message, then call [`Room::committed`] (or [`Room::commit_failed`]).
    Persist(ConnId, Draft),
    /// Mark message `id` deleted in the store, then call [`Room::delete_committed`].
    PersistDelete(ConnId, u64),
    /// Send this error frame, then close the connection (it is no longer a member).
    Close(ConnId, ServerFrame),
    /// Replicated rooms only: a checked moderator action from `ConnId` for the shared log;
    /// every node applies it with [`Room::apply`] when the log delivers it.
    Replicate(ConnId, Sanction),
}

/// A moderator's sanction against a name, as every node of a cluster applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Sanction {
    /// `seconds` 0 lifts a timeout; `until_ms` is the end on the issuing node's clock.
    Timeout {
        name: String,
        seconds: u64,
        until_ms: u64,
    },
    Ban {
        name: String,
    },
}

impl Sanction {
    /// The sanctioned name as given by the moderator.
    pub fn name(&self) -> &str {
        match self {
            Sanction::Timeout { name, .. } | Sanction::Ban { name } => name,
        }
    }
}

struct Member {
    name: String,
    key: String,
    moderator: bool,
    bucket: TokenBucket,
}

/// Refusal of a join: the error frame to send before closing.
pub type JoinRefused = ServerFrame;

/// The state of one stream's chat.
pub struct Room {
    limits: Limits,
    open: bool,
    members: HashMap<ConnId, Member>,
    names: HashMap<String, ConnId>,
    /// Slow mode is per name, so reconnecting does not reset it.
    slow: HashMap<String, SlowMode>,
    bans: HashSet<String>,
    /// Name key → end of timeout (ms).
    timeouts: HashMap<String, u64>,
    /// The newest stored messages, oldest first: `limits.history` plus `spare`.
    history: VecDeque<ChatMessage>,
    /// Messages kept beyond `limits.history`, so that deletions do not shorten the history a
    /// replicated room shows (every node shows the same newest `limits.history`).
    spare: usize,
    /// Moderation goes through the shared log of a cluster ([`Output::Replicate`]).
    replicated: bool,
    guests: u64,
    last_viewers: Option<usize>,
}

impl Room {
    /// A room seeded with stored history (oldest first).
    pub fn new(limits: Limits, history: Vec<ChatMessage>) -> Room {
        let mut room = Room {
            limits,
            open: false,
            members: HashMap::new(),
            names: HashMap::new(),
            slow: HashMap::new(),
            bans: HashSet::new(),
            timeouts: HashMap::new(),
            history: VecDeque::new(),
            spare: 0,
            replicated: false,
            guests: 0,
            last_viewers: None,
        };
        for m in history {
            room.push_history(m);
        }
        room
    }

    /// Makes this room one node's copy of a cluster-wide room: moderation is replicated
    /// through the shared log, and `spare` more messages than shown are kept.
    pub fn set_replicated(&mut self, spare: usize) {
        self.replicated = true;
        self.spare = spare;
    }

    /// Replaces the history (oldest first), e.g. with the tail of the shared log.
    pub fn seed_history(&mut self, history: Vec<ChatMessage>) {
        self.history.clear();
        for m in history {
            self.push_history(m);
        }
    }

    /// Whether message `id` is among the messages this room keeps.
    pub fn has_message(&self, id: u64) -> bool {
        self.history.iter().any(|m| m.id == id)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether viewers may send (the stream is live).
    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn set_open(&mut self, open: bool) {
        self.open = open;
    }

    /// Forgets moderation state (bans and timeouts last for the room's life).
    pub fn reset_moderation(&mut self) {
        self.bans.clear();
        self.timeouts.clear();
        self.slow.clear();
    }

    pub fn connections(&self) -> usize {
        self.members.len()
    }

    /// The history viewers get on join: the newest `limits.history` messages, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &ChatMessage> {
        let skip = self.history.len().saturating_sub(self.limits.history);
        self.history.iter().skip(skip)
    }

    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        self.members.get(&conn).map(|m| m.name.as_str())
    }

    fn push_history(&mut self, m: ChatMessage) {
        if self.limits.history == 0 {
            return;
        }
        while self.history.len() >= self.limits.history + self.spare {
            self.history.pop_front();
        }
        self.history.push_back(m);
    }

    /// A new connection asks to join with an optional name; on success its `welcome`.
    pub fn join(
        &mut self,
        conn: ConnId,
        requested: Option<&str>,
        moderator: bool,
        now_ms: u64,
    ) -> Result<Vec<Output>, JoinRefused> {
        if self.members.len() >= self.limits.max_connections {
            return Err(ServerFrame::error(
                "room_full",
                format!(
                    "the room holds at most {} connections",
                    self.limits.max_connections
                ),
            ));
        }
        let name = match requested {
            Some(n) => {
                names::check(n).map_err(|e| ServerFrame::error(e.code(), e.reason()))?;
                let key = names::key(n);
                if self.bans.contains(&key) {
                    return Err(ServerFrame::error(
                        "banned",
                        "this name is banned from the room",
                    ));
                }
                if self.names.contains_key(&key) {
                    return Err(ServerFrame::error(
                        "name_taken",
                        format!("`{n}` is already in the room"),
                    ));
                }
                n.to_string()
            }
            None => loop {
                self.guests += 1;
                let n = names::generated(self.guests);
                let key = names::key(&n);
                if !self.names.contains_key(&key) && !self.bans.contains(&key) {
                    break n;
                }
            },
        };
        let key = names::key(&name);
        self.names.insert(key.clone(), conn);
        self.members.insert(
            conn,
            Member {
                name: name.clone(),
                key,
                moderator,
                bucket: TokenBucket::new(self.limits.burst, self.limits.refill_ms, now_ms),
            },
        );
        let welcome = ServerFrame::Welcome {
            name,
            history: self.history().cloned().collect(),
            moderator,
            open: self.open,
            limits: LimitsInfo {
                max_message_len: self.limits.max_message_len,
                slow_mode_ms: self.limits.slow_mode_ms,
                burst: self.limits.burst,
                refill_ms: self.limits.refill_ms,
            },
        };
        Ok(vec![Output::To(conn, welcome)])
    }

    /// A connection went away (closed, dropped, kicked).
    pub fn leave(&mut self, conn: ConnId) {
        if let Some(m) = self.members.remove(&conn) {
            if self.names.get(&m.key) == Some(&conn) {
                self.names.remove(&m.key);
            }
        }
    }

    fn refuse(conn: ConnId, code: &'static str, reason: String, retry: Option<u64>) -> Vec<Output> {
        vec![Output::To(
            conn,
            ServerFrame::Error {
                code,
                reason,
                retry_after_ms: retry,
            },
        )]
    }

    /// A `send` frame. `pdt_ms` is the stream's live-edge program date-time right now.
    pub fn send(&mut self, conn: ConnId, text: &str, now_ms: u64, pdt_ms: u64) -> Vec<Output> {
        let open = self.open;
        let limits = self.limits.clone();
        let Some(m) = self.members.get_mut(&conn) else {
            return Vec::new();
        };
        if !open {
            return Self::refuse(
                conn,
                "room_closed",
                "the stream is not live; the chat is read-only".into(),
                None,
            );
        }
        if let Some(&until) = self.timeouts.get(&m.key) {
            if until > now_ms {
                return Self::refuse(
                    conn,
                    "timed_out",
                    format!(
                        "a moderator timed you out for {} more s",
                        (until - now_ms).div_ceil(1000)
                    ),
                    Some(until - now_ms),
                );
            }
        }
        let text = text.trim();
        if text.is_empty() {
            return Self::refuse(conn, "empty_message", "the message is empty".into(), None);
        }
        let len = text.chars().count();
        if len > limits.max_message_len {
            return Self::refuse(
                conn,
                "too_long",
                format!(
                    "messages are at most {} characters; this one has {len}",
                    limits.max_message_len
                ),
                None,
            );
        }
        let slow = self.slow.entry(m.key.clone()).or_default();
        if !m.moderator {
            if let Some(left) = slow.wait(limits.slow_mode_ms, now_ms) {
                return Self::refuse(
                    conn,
                    "slow_mode",
                    format!(
                        "slow mode: one message every {} s",
                        limits.slow_mode_ms.div_ceil(1000)
                    ),
                    Some(left),
                );
            }
        }
        if let Err(left) = m.bucket.take(now_ms) {
            return Self::refuse(
                conn,
                "rate_limited",
                "too many messages; wait a moment".into(),
                Some(left),
            );
        }
        slow.record(now_ms);
        vec![Output::Persist(
            conn,
            Draft {
                name: m.name.clone(),
                text: text.to_string(),
                ts: now_ms,
                pdt: pdt_ms,
            },
        )]
    }

    /// The store has the message: it joins the history and goes to everyone.
    pub fn committed(&mut self, message: ChatMessage) -> Vec<Output> {
        self.push_history(message.clone());
        vec![Output::Broadcast(ServerFrame::Message(message))]
    }

    /// The store refused the message: tell its sender, nobody else saw it.
    pub fn commit_failed(&mut self, conn: ConnId) -> Vec<Output> {
        Self::refuse(
            conn,
            "store_failed",
            "the message could not be stored; try again".into(),
            None,
        )
    }

    fn moderator_check(&self, conn: ConnId) -> Result<(), Vec<Output>> {
        match self.members.get(&conn) {
            Some(m) if m.moderator => Ok(()),
            Some(_) => Err(Self::refuse(
                conn,
                "not_moderator",
                "only moderators may do that (connect with ?token=)".into(),
                None,
            )),
            None => Err(Vec::new()),
        }
    }

    /// Whether `key` belongs to a connected moderator (moderators cannot be sanctioned).
    fn is_moderator_name(&self, key: &str) -> bool {
        self.names
            .get(key)
            .and_then(|c| self.members.get(c))
            .is_some_and(|m| m.moderator)
    }

    /// A moderator's `delete`.
    pub fn delete(&mut self, conn: ConnId, id: u64) -> Vec<Output> {
        if let Err(out) = self.moderator_check(conn) {
            return out;
        }
        vec![Output::PersistDelete(conn, id)]
    }

    /// The store marked `id` deleted (`found` false: no such message in this room).
    pub fn delete_committed(&mut self, conn: ConnId, id: u64, found: bool) -> Vec<Output> {
        if !found {
            return Self::refuse(
                conn,
                "unknown_message",
                format!("no message {id} in this room"),
                None,
            );
        }
        self.apply_deleted(id)
    }

    /// Message `id` is deleted (here, or on another node of a cluster): it leaves the history
    /// and everyone is told.
    pub fn apply_deleted(&mut self, id: u64) -> Vec<Output> {
        self.history.retain(|m| m.id != id);
        vec![Output::Broadcast(ServerFrame::Deleted { id })]
    }

    /// `name` sent a message through another node of a cluster: slow mode holds for the name
    /// here too (stamped with this node's clock when the message arrived).
    pub fn note_sent(&mut self, name: &str, now_ms: u64) {
        if self.limits.slow_mode_ms > 0 {
            self.slow
                .entry(names::key(name))
                .or_default()
                .record(now_ms);
        }
    }

    /// A moderator's `timeout`: `name` may not send for `seconds` (0 lifts it).
    pub fn timeout(&mut self, conn: ConnId, name: &str, seconds: u64, now_ms: u64) -> Vec<Output> {
        if let Err(out) = self.moderator_check(conn) {
            return out;
        }
        if seconds > MAX_TIMEOUT_SECS {
            return Self::refuse(
                conn,
                "bad_frame",
                format!("timeouts are at most {MAX_TIMEOUT_SECS} s; use ban for longer"),
                None,
            );
        }
        let key = names::key(name);
        if self.is_moderator_name(&key) {
            return Self::refuse(
                conn,
                "forbidden",
                "moderators cannot be timed out".into(),
                None,
            );
        }
        let sanction = Sanction::Timeout {
            name: name.to_string(),
            seconds,
            until_ms: now_ms.saturating_add(seconds.saturating_mul(1000)),
        };
        if self.replicated {
            return vec![Output::Replicate(conn, sanction)];
        }
        self.apply(&sanction, now_ms)
    }

    /// A moderator's `ban`: `name` is closed out and cannot join again while the room lives.
    pub fn ban(&mut self, conn: ConnId, name: &str) -> Vec<Output> {
        if let Err(out) = self.moderator_check(conn) {
            return out;
        }
        let key = names::key(name);
        if self.is_moderator_name(&key) {
            return Self::refuse(
                conn,
                "forbidden",
                "moderators cannot be banned".into(),
                None,
            );
        }
        let sanction = Sanction::Ban {
            name: name.to_string(),
        };
        if self.replicated {
            return vec![Output::Replicate(conn, sanction)];
        }
        self.apply(&sanction, 0)
    }

    /// Carries out a sanction (checked where it was issued): records it, tells and (for a
    /// ban) closes the name's connection, and tells the room. In a cluster a moderator
    /// connected to this node is left alone: the issuing node could not see them.
    pub fn apply(&mut self, sanction: &Sanction, now_ms: u64) -> Vec<Output> {
        let key = names::key(sanction.name());
        if self.replicated && self.is_moderator_name(&key) {
            return Vec::new();
        }
        let target = self.names.get(&key).copied();
        let mut out = Vec::new();
        match sanction {
            Sanction::Timeout {
                name,
                seconds,
                until_ms,
            } => {
                // Keep the map small: expired entries go whenever one is added.
                self.timeouts.retain(|_, until| *until > now_ms);
                if *seconds == 0 {
                    self.timeouts.remove(&key);
                } else {
                    self.timeouts.insert(key, *until_ms);
                }
                if let (Some(target), true) = (target, *seconds > 0) {
                    out.push(Output::To(
                        target,
                        ServerFrame::Error {
                            code: "timed_out",
                            reason: format!("a moderator timed you out for {seconds} s"),
                            retry_after_ms: Some(seconds * 1000),
                        },
                    ));
                }
                out.push(Output::Broadcast(ServerFrame::Moderation {
                    action: "timeout",
                    name: name.clone(),
                    seconds: Some(*seconds),
                }));
            }
            Sanction::Ban { name } => {
                self.bans.insert(key);
                if let Some(target) = target {
                    self.leave(target);
                    out.push(Output::Close(
                        target,
                        ServerFrame::error("banned", "a moderator banned you from this room"),
                    ));
                }
                out.push(Output::Broadcast(ServerFrame::Moderation {
                    action: "ban",
                    name: name.clone(),
                    seconds: None,
                }));
            }
        }
        out
    }

    /// A `viewers` frame when the count (chat connections plus `other` viewers) changed since
    /// the last one; the glue calls this on a timer, which is the throttle.
    pub fn viewers(&mut self, other: usize) -> Option<Output> {
        self.viewers_with(0, other)
    }

    /// [`Room::viewers`] in a cluster: `remote_chat` chat connections on the other nodes.
    pub fn viewers_with(&mut self, remote_chat: usize, other: usize) -> Option<Output> {
        let chat = self.members.len() + remote_chat;
        let count = chat + other;
        if self.last_viewers == Some(count) {
            return None;
        }
        self.last_viewers = Some(count);
        Some(Output::Broadcast(ServerFrame::Viewers { count, chat }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_message_len: 20,
            burst: 3,
            refill_ms: 1000,
            slow_mode_ms: 0,
            max_connections: 10,
            history: 3,
        }
    }

    fn room(l: Limits) -> Room {
        let mut r = Room::new(l, Vec::new());
        r.set_open(true);
        r
    }

    fn code(out: &[Output]) -> Option<&'static str> {
        out.iter().find_map(|o| match o {
            Output::To(_, ServerFrame::Error { code, .. }) => Some(*code),
            Output::Close(_, ServerFrame::Error { code, .. }) => Some(*code),
            _ => None,
        })
    }

    fn refused(r: Result<Vec<Output>, JoinRefused>) -> &'static str {
        match r {
            Err(ServerFrame::Error { code, .. }) => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Sends and commits with an id, as the glue would.
    fn say(r: &mut Room, conn: ConnId, text: &str, now: u64, id: u64) -> Vec<Output> {
        let out = r.send(conn, text, now, now - 500);
        match out.as_slice() {
            [Output::Persist(c, d)] => {
                assert_eq!(*c, conn);
                r.committed(d.clone().with_id(id))
            }
            _ => out,
        }
    }

    #[test]
    fn welcome_carries_the_name_and_history() {
        let seed = vec![Draft {
            name: "a".into(),
            text: "old".into(),
            ts: 1,
            pdt: 1,
        }
        .with_id(1)];
        let mut r = Room::new(limits(), seed);
        let out = r.join(1, Some("bob"), false, 0).unwrap();
        match &out[0] {
            Output::To(1, ServerFrame::Welcome { name, history, .. }) => {
                assert_eq!(name, "bob");
                assert_eq!(history.len(), 1);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn names_are_unique_case_insensitively_and_free_again_after_leave() {
        let mut r = room(limits());
        r.join(1, Some("Alice"), false, 0).unwrap();
        assert_eq!(refused(r.join(2, Some("alice"), false, 0)), "name_taken");
        r.leave(1);
        assert!(r.join(2, Some("alice"), false, 0).is_ok());
    }

    #[test]
    fn reserved_and_invalid_names_are_refused() {
        let mut r = room(limits());
        assert_eq!(refused(r.join(1, Some("Admin"), false, 0)), "name_reserved");
        assert_eq!(refused(r.join(1, Some("a b"), false, 0)), "name_invalid");
        assert_eq!(r.connections(), 0);
    }

    #[test]
    fn anonymous_viewers_get_distinct_generated_names() {
        let mut r = room(limits());
        for c in 0..10 {
            r.join(c, None, false, 0).unwrap();
        }
        let names: HashSet<&str> = (0..10).filter_map(|c| r.name_of(c)).collect();
        assert_eq!(names.len(), 10);
        assert!(names.iter().all(|n| n.starts_with(names::GENERATED_PREFIX)));
    }

    #[test]
    fn room_full_refuses_the_next_connection() {
        let mut l = limits();
        l.max_connections = 2;
        let mut r = room(l);
        r.join(1, None, false, 0).unwrap();
        r.join(2, None, false, 0).unwrap();
        assert_eq!(refused(r.join(3, None, false, 0)), "room_full");
        r.leave(1);
        assert!(r.join(3, None, false, 0).is_ok());
    }

    #[test]
    fn a_send_is_stored_before_it_is_broadcast_with_ts_and_pdt() {
        let mut r = room(limits());
        r.join(1, Some("a"), false, 0).unwrap();
        let out = r.send(1, "  hello  ", 10_000, 9_000);
        let [Output::Persist(1, d)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(
            (d.text.as_str(), d.ts, d.pdt, d.name.as_str()),
            ("hello", 10_000, 9_000, "a")
        );
        let out = r.committed(d.clone().with_id(42));
        assert!(matches!(&out[0], Output::Broadcast(ServerFrame::Message(m)) if m.id == 42));
        assert_eq!(r.history().count(), 1);
    }

    #[test]
    fn length_and_emptiness_are_checked_in_characters() {
        let mut r = room(limits());
        r.join(1, Some("a"), false, 0).unwrap();
        assert_eq!(code(&r.send(1, "   ", 0, 0)), Some("empty_message"));
        assert_eq!(code(&r.send(1, &"x".repeat(21), 0, 0)), Some("too_long"));
        // 20 multi-byte characters are within a 20-character limit.
        assert!(matches!(
            r.send(1, &"é".repeat(20), 0, 0)[0],
            Output::Persist(..)
        ));
    }

    #[test]
    fn rate_limit_refuses_then_recovers_and_refusals_cost_nothing() {
        let mut r = room(limits());
        r.join(1, Some("a"), false, 0).unwrap();
        for i in 0..3 {
            assert_eq!(code(&say(&mut r, 1, "hi", 1000, i)), None);
        }
        let out = r.send(1, "hi", 1000, 0);
        assert_eq!(code(&out), Some("rate_limited"));
        assert!(matches!(
            &out[0],
            Output::To(
                _,
                ServerFrame::Error {
                    retry_after_ms: Some(1000),
                    ..
                }
            )
        ));
        assert_eq!(code(&say(&mut r, 1, "hi", 2000, 9)), None);
    }

    #[test]
    fn slow_mode_applies_per_name_across_reconnects_but_not_to_moderators() {
        let mut l = limits();
        l.slow_mode_ms = 30_000;
        let mut r = room(l);
        r.join(1, Some("a"), false, 0).unwrap();
        r.join(2, Some("m"), true, 0).unwrap();
        assert_eq!(code(&say(&mut r, 1, "one", 1000, 1)), None);
        assert_eq!(code(&r.send(1, "two", 2000, 0)), Some("slow_mode"));
        r.leave(1);
        r.join(3, Some("a"), false, 2000).unwrap();
        assert_eq!(code(&r.send(3, "two", 3000, 0)), Some("slow_mode"));
        assert_eq!(code(&say(&mut r, 3, "two", 31_000, 2)), None);
        assert_eq!(code(&say(&mut r, 2, "m1", 31_000, 3)), None);
        assert_eq!(code(&say(&mut r, 2, "m2", 31_001, 4)), None);
    }

    #[test]
    fn closed_room_is_read_only() {
        let mut r = Room::new(limits(), Vec::new());
        r.join(1, Some("a"), false, 0).unwrap();
        assert_eq!(code(&r.send(1, "hi", 0, 0)), Some("room_closed"));
    }

    #[test]
    fn history_keeps_the_newest_n_and_forgets_deleted() {
        let mut r = room(limits());
        r.join(1, Some("m"), true, 0).unwrap();
        for i in 1..=5u64 {
            say(&mut r, 1, "x", i * 10_000, i);
        }
        let ids: Vec<u64> = r.history().map(|m| m.id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        assert_eq!(r.delete(1, 4), vec![Output::PersistDelete(1, 4)]);
        assert_eq!(
            r.delete_committed(1, 4, true),
            vec![Output::Broadcast(ServerFrame::Deleted { id: 4 })]
        );
        let ids: Vec<u64> = r.history().map(|m| m.id).collect();
        assert_eq!(ids, vec![3, 5]);
        assert_eq!(
            code(&r.delete_committed(1, 99, false)),
            Some("unknown_message")
        );
    }

    #[test]
    fn only_moderators_moderate() {
        let mut r = room(limits());
        r.join(1, Some("a"), false, 0).unwrap();
        r.join(2, Some("b"), false, 0).unwrap();
        assert_eq!(code(&r.delete(1, 1)), Some("not_moderator"));
        assert_eq!(code(&r.timeout(1, "b", 10, 0)), Some("not_moderator"));
        assert_eq!(code(&r.ban(1, "b")), Some("not_moderator"));
    }

    #[test]
    fn timeout_silences_a_name_for_n_seconds_then_lifts() {
        let mut r = room(limits());
        r.join(1, Some("mod1"), true, 0).unwrap();
        r.join(2, Some("troll"), false, 0).unwrap();
        let out = r.timeout(1, "TROLL", 60, 1_000);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::To(
                2,
                ServerFrame::Error {
                    code: "timed_out",
                    ..
                }
            )
        )));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Broadcast(ServerFrame::Moderation {
                action: "timeout",
                ..
            })
        )));
        assert_eq!(code(&r.send(2, "hi", 30_000, 0)), Some("timed_out"));
        // Reconnecting under the same name does not escape it.
        r.leave(2);
        r.join(3, Some("troll"), false, 30_000).unwrap();
        assert_eq!(code(&r.send(3, "hi", 60_999, 0)), Some("timed_out"));
        assert_eq!(code(&say(&mut r, 3, "hi", 61_000, 1)), None);
        assert_eq!(code(&r.timeout(1, "mod1", 5, 0)), Some("forbidden"));
        assert_eq!(
            code(&r.timeout(1, "x", MAX_TIMEOUT_SECS + 1, 0)),
            Some("bad_frame")
        );
    }

    #[test]
    fn ban_closes_the_connection_and_the_name_stays_out_for_hours() {
        let mut r = room(limits());
        r.join(1, Some("mod1"), true, 0).unwrap();
        r.join(2, Some("troll"), false, 0).unwrap();
        let out = r.ban(1, "troll");
        assert!(matches!(
            &out[0],
            Output::Close(2, ServerFrame::Error { code: "banned", .. })
        ));
        assert_eq!(r.connections(), 1);
        assert_eq!(r.send(2, "hi", 0, 0), Vec::new(), "no longer a member");
        assert_eq!(
            refused(r.join(3, Some("Troll"), false, 10 * 3600 * 1000)),
            "banned"
        );
        assert_eq!(code(&r.ban(1, "mod1")), Some("forbidden"));
        r.reset_moderation();
        assert!(r.join(3, Some("troll"), false, 0).is_ok());
    }

    #[test]
    fn viewers_are_reported_only_on_change() {
        let mut r = room(limits());
        r.join(1, None, false, 0).unwrap();
        assert_eq!(
            r.viewers(4),
            Some(Output::Broadcast(ServerFrame::Viewers {
                count: 5,
                chat: 1
            }))
        );
        assert_eq!(r.viewers(4), None);
        r.join(2, None, false, 0).unwrap();
        assert!(r.viewers(4).is_some());
    }

    fn replicated(l: Limits, spare: usize) -> Room {
        let mut r = room(l);
        r.set_replicated(spare);
        r
    }

    #[test]
    fn replicated_moderation_is_checked_here_and_applied_from_the_log() {
        let mut r = replicated(limits(), 0);
        r.join(1, Some("mod1"), true, 0).unwrap();
        r.join(2, Some("troll"), false, 0).unwrap();
        // Checks still happen where the action is issued…
        assert_eq!(code(&r.timeout(2, "mod1", 5, 0)), Some("not_moderator"));
        assert_eq!(code(&r.ban(1, "mod1")), Some("forbidden"));
        // …and a checked action goes to the log, changing nothing yet.
        let out = r.timeout(1, "Troll", 60, 1_000);
        let [Output::Replicate(1, s)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(
            s,
            &Sanction::Timeout {
                name: "Troll".into(),
                seconds: 60,
                until_ms: 61_000
            }
        );
        assert_eq!(code(&say(&mut r, 2, "still free", 2_000, 1)), None);
        // Applied when the log delivers it (here or on any node).
        let out = r.apply(s, 2_000);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::To(
                2,
                ServerFrame::Error {
                    code: "timed_out",
                    ..
                }
            )
        )));
        assert_eq!(code(&r.send(2, "hi", 3_000, 0)), Some("timed_out"));
        let ban = r.ban(1, "troll");
        let [Output::Replicate(1, ban)] = ban.as_slice() else {
            panic!("{ban:?}")
        };
        let out = r.apply(ban, 4_000);
        assert!(matches!(&out[0], Output::Close(2, _)));
        assert_eq!(refused(r.join(3, Some("troll"), false, 5_000)), "banned");
    }

    #[test]
    fn a_sanction_from_another_node_spares_a_moderator_connected_here() {
        let mut r = replicated(limits(), 0);
        r.join(1, Some("boss"), true, 0).unwrap();
        let s = Sanction::Ban {
            name: "boss".into(),
        };
        assert_eq!(r.apply(&s, 0), Vec::new());
        assert_eq!(r.connections(), 1);
    }

    #[test]
    fn slow_mode_counts_messages_sent_through_other_nodes() {
        let mut l = limits();
        l.slow_mode_ms = 10_000;
        let mut r = replicated(l, 0);
        r.join(1, Some("ann"), false, 0).unwrap();
        r.note_sent("ANN", 5_000);
        let out = r.send(1, "hi", 6_000, 0);
        assert_eq!(code(&out), Some("slow_mode"));
        assert_eq!(code(&say(&mut r, 1, "hi", 15_000, 1)), None);
        // Off: nothing is recorded.
        let mut r = replicated(limits(), 0);
        r.note_sent("ann", 1);
        assert!(r.slow.is_empty());
    }

    #[test]
    fn spare_history_keeps_the_shown_history_full_after_deletions() {
        let mut r = replicated(limits(), 2);
        r.join(1, Some("m"), true, 0).unwrap();
        for i in 1..=6u64 {
            say(&mut r, 1, "x", i * 10_000, i);
        }
        let ids = |r: &Room| r.history().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(&r), [4, 5, 6]);
        assert!(
            r.has_message(2) && !r.has_message(1),
            "three shown, two spare"
        );
        r.apply_deleted(5);
        assert_eq!(ids(&r), [3, 4, 6], "a spare fills the gap");
        // A node that loads the log's tail later shows the same.
        let mut late = replicated(limits(), 2);
        late.seed_history(
            [3, 4, 6]
                .map(|i| {
                    Draft {
                        name: "m".into(),
                        text: "x".into(),
                        ts: i,
                        pdt: i,
                    }
                    .with_id(i)
                })
                .to_vec(),
        );
        assert_eq!(ids(&late), ids(&r));
        let out = late.join(9, None, false, 0).unwrap();
        let Output::To(_, ServerFrame::Welcome { history, .. }) = &out[0] else {
            panic!()
        };
        assert_eq!(history.len(), 3);
    }

    #[test]
    fn viewers_add_chat_connections_on_other_nodes() {
        let mut r = room(limits());
        r.join(1, None, false, 0).unwrap();
        assert_eq!(
            r.viewers_with(4, 0),
            Some(Output::Broadcast(ServerFrame::Viewers {
                count: 5,
                chat: 5
            }))
        );
        assert_eq!(r.viewers_with(4, 0), None);
    }
}
