//! Live chat, one room per configured stream, on the origin's port (`/live/NAME/chat`).
//!
//! - [`protocol`]: JSON frames on the wire (sans-IO).
//! - [`room`]: one room's state machine: joins, sends, limits, moderation, history (sans-IO).
//! - [`ratelimit`], [`names`]: token bucket and slow mode; name rules (sans-IO).
//! - [`store`]: the durable chat log of a node on its own (SQLite, group commit).
//! - [`cluster`]: the chat log of a cluster (a NATS JetStream stream every node follows).
//! - [`log`]: the seam between the glue and those two logs ([`log::ChatLog`]).
//! - [`timed`]: each stored event also goes into the stream's media as ID3-in-emsg.
//! - [`ws`]: the WebSocket edge: hyper upgrade, tokio-tungstenite, one task per connection.
//! - this module: the registry of rooms ([`ChatRooms`]) and the glue that runs a
//!   [`room::Room`]'s outputs: per-connection bounded queues, store round trips, events.
//!
//! # Room life
//! A room exists for every `[[stream]]` from startup but admits connections only while
//! its stream is live (publishing or within `[hls] grace`) and for `[chat] keep_after_end`
//! after the stream ends; it is read-only (sends refused with `room_closed`) once ended.
//! Bans and timeouts last until the room closes. Stored chat stays readable through
//! `/api/v1/streams/NAME/chat?from=&to=` forever.
//!
//! In a cluster a room is open on every node while its stream is live on any node (the
//! cluster's directory says which), and messages, deletions and sanctions reach it through
//! the shared log in one order ([`cluster`]).
//!
//! # Events for other modules (timed metadata)
//! [`ChatRooms::subscribe`] gives a `tokio::sync::broadcast::Receiver<ChatEvent>` of one
//! room's accepted events, in commit order: [`ChatEvent::Message`] (id, name, text, ts, pdt,
//! sent after the message is durably stored, at the moment it is broadcast to viewers) and
//! [`ChatEvent::Deleted`] (id). A subscriber that falls more than [`EVENTS_CAPACITY`] events
//! behind gets `RecvError::Lagged` and loses the oldest; chat never waits for it.
//!
//! # Fan-out
//! A broadcast frame is serialised once; every connection's bounded queue gets a clone of
//! the same buffer (a refcount). A queue that is full means a reader that does not keep up:
//! it is dropped with a `slow_reader` error instead of slowing the room.

pub mod cluster;
pub mod log;
pub mod names;
pub mod protocol;
pub mod queue;
pub mod ratelimit;
pub mod room;
pub mod store;
pub mod timed;
pub mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::hub::Lifecycle;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::util::time::now_ms;
use cluster::ClusterChat;
use log::ChatLog;
use protocol::{ChatMessage, ServerFrame};
use room::{ConnId, Limits, Output, Room, Sanction};
use store::ChatStore;

/// Events a subscriber may fall behind before it loses the oldest.
pub const EVENTS_CAPACITY: usize = 1024;
/// How often viewer counts are pushed at most (and ended rooms checked for closing).
pub const VIEWERS_EVERY: Duration = Duration::from_secs(2);

/// An accepted chat event of one room, for other modules (e.g. timed metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// Stored and broadcast; `pdt` places it on the stream's timeline.
    Message(ChatMessage),
    /// A moderator deleted message `id`; it is gone from history and the store's reads.
    Deleted { id: u64 },
}

use queue::FrameQueue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Not live since startup, or closed after `keep_after_end`.
    Closed,
    Live,
    Ended(Instant),
}

struct Inner {
    room: Room,
    conns: HashMap<ConnId, Arc<FrameQueue>>,
    life: Life,
    /// The stream is live on this node (a cluster room may be live on another).
    local_live: bool,
    /// Cluster: ticks the stream has been absent from the directory.
    absent_ticks: u32,
}

/// One stream's room with its connections.
pub struct RoomHandle {
    pub name: String,
    inner: Mutex<Inner>,
    events: broadcast::Sender<ChatEvent>,
    log: ChatLog,
    origin: Arc<Store>,
    metrics: Arc<Metrics>,
    queue: usize,
    keep_after_end: Duration,
    history: usize,
}

/// A store round trip the glue starts after releasing the room lock.
enum Pending {
    Insert(ConnId, protocol::Draft),
    Delete(ConnId, u64),
    /// Cluster only: a moderator's sanction for the shared log.
    Sanction(ConnId, Sanction),
}

/// A connection admitted to a room: its outgoing queue (welcome already in it).
pub struct Joined {
    pub conn: ConnId,
    pub queue: Arc<FrameQueue>,
}

/// Every room, by stream name.
pub struct ChatRooms {
    rooms: HashMap<String, Arc<RoomHandle>>,
    tokens: Vec<String>,
    log: ChatLog,
    next_conn: AtomicU64,
    /// Largest incoming frame accepted (bytes).
    pub max_frame: usize,
}

impl ChatRooms {
    /// Opens the chat log and creates a (closed) room for every configured stream.
    pub fn new(
        config: &Config,
        origin: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<ChatRooms>, store::StoreError> {
        let store = ChatStore::open(&config.chat.store)?;
        Ok(Self::build(config, origin, metrics, ChatLog::Local(store)))
    }

    /// The rooms of a node in a cluster: the log is the cluster's stream (no SQLite), and
    /// following it starts now, in the background (docs/cluster.md, "Chat").
    pub fn clustered(
        config: &Config,
        origin: Arc<Store>,
        metrics: Arc<Metrics>,
        cluster: Arc<Cluster>,
    ) -> Arc<ChatRooms> {
        let chat = ClusterChat::new(cluster, config.chat.history);
        let rooms = Self::build(config, origin, metrics, ChatLog::Cluster(chat.clone()));
        chat.start(rooms.clone());
        rooms
    }

    fn build(
        config: &Config,
        origin: Arc<Store>,
        metrics: Arc<Metrics>,
        log: ChatLog,
    ) -> Arc<ChatRooms> {
        let c = &config.chat;
        let limits = Limits {
            max_message_len: c.max_message_len,
            burst: c.burst,
            refill_ms: c.refill.as_millis() as u64,
            slow_mode_ms: c.slow_mode.as_millis() as u64,
            max_connections: c.max_connections,
            history: c.history,
        };
        let rooms = config
            .streams
            .iter()
            .map(|s| {
                let mut room = Room::new(limits.clone(), Vec::new());
                if matches!(log, ChatLog::Cluster(_)) {
                    room.set_replicated(cluster::HISTORY_SPARE);
                }
                let handle = Arc::new(RoomHandle {
                    name: s.name.clone(),
                    inner: Mutex::new(Inner {
                        room,
                        conns: HashMap::new(),
                        life: Life::Closed,
                        local_live: false,
                        absent_ticks: 0,
                    }),
                    events: broadcast::channel(EVENTS_CAPACITY).0,
                    log: log.clone(),
                    origin: origin.clone(),
                    metrics: metrics.clone(),
                    queue: c.send_queue,
                    keep_after_end: c.keep_after_end,
                    history: c.history,
                });
                (s.name.clone(), handle)
            })
            .collect();
        Arc::new(ChatRooms {
            rooms,
            tokens: c.moderator_tokens.clone(),
            log,
            next_conn: AtomicU64::new(1),
            max_frame: 4 * c.max_message_len + 4096,
        })
    }

    /// Runs the viewer-count pushes and closes rooms past `keep_after_end`; spawn once. In a
    /// cluster it also publishes this node's counts and opens and ends rooms as their streams
    /// go live and end on other nodes.
    pub async fn run_timers(self: Arc<Self>) {
        let mut tick = tokio::time::interval(VIEWERS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let settled = match &self.log {
                ChatLog::Cluster(c) => c.directory_settled(),
                ChatLog::Local(_) => false,
            };
            for room in self.rooms.values() {
                let remote = match &self.log {
                    ChatLog::Cluster(c) => {
                        room.follow_directory(c, settled);
                        c.remote_viewers(&room.name)
                    }
                    ChatLog::Local(_) => 0,
                };
                room.tick(remote);
            }
            if let ChatLog::Cluster(c) = &self.log {
                c.publish_census(&self).await;
            }
        }
    }

    /// The room of a configured stream (whatever its state).
    pub fn room(&self, name: &str) -> Option<&Arc<RoomHandle>> {
        self.rooms.get(name)
    }

    /// The room, if it admits connections now (live, or ended less than `keep_after_end` ago).
    pub fn admit(&self, name: &str) -> Option<&Arc<RoomHandle>> {
        self.rooms.get(name).filter(|r| r.admits())
    }

    /// Subscribes to one room's accepted events (see the module docs); None for a name
    /// that is not a configured stream.
    pub fn subscribe(&self, name: &str) -> Option<broadcast::Receiver<ChatEvent>> {
        self.rooms.get(name).map(|r| r.events.subscribe())
    }

    /// Whether `token` is one of `[chat] moderator_tokens`.
    pub fn is_moderator_token(&self, token: &str) -> bool {
        // Compare every byte of every token so timing says nothing about a near miss.
        self.tokens.iter().fold(false, |acc, t| {
            let same = t.len() == token.len()
                && t.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0;
            acc | same
        })
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The chat log (its `range` serves the history API).
    pub fn store(&self) -> &ChatLog {
        &self.log
    }

    /// Opens and closes rooms as the hub's streams go live and end; spawn once. The room's
    /// history is read from the log on the blocking pool, not under any lock.
    pub async fn follow_streams(self: Arc<Self>, mut events: broadcast::Receiver<Lifecycle>) {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "chat fell behind the hub's events");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            match event {
                Lifecycle::Live { name, .. } => {
                    if let Some(room) = self.rooms.get(&name).cloned() {
                        tokio::spawn(room.open());
                    }
                }
                Lifecycle::Ended { name } => self.stream_ended(&name),
                _ => {}
            }
        }
    }

    /// The stream ended (after its grace period, or at shutdown): its room turns read-only.
    pub fn stream_ended(&self, name: &str) {
        if let Some(r) = self.rooms.get(name) {
            r.end();
        }
    }
}

impl RoomHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admits(&self) -> bool {
        match self.lock().life {
            Life::Live => true,
            Life::Ended(at) => at.elapsed() < self.keep_after_end,
            Life::Closed => false,
        }
    }

    /// Connections now.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    async fn open(self: Arc<Self>) {
        let store = match &self.log {
            ChatLog::Local(store) => store.clone(),
            ChatLog::Cluster(_) => {
                // The room already holds the shared log's tail and its sanctions.
                let mut g = self.lock();
                g.local_live = true;
                g.life = Life::Live;
                g.room.set_open(true);
                tracing::info!(stream = %self.name, "chat room open");
                return;
            }
        };
        let fresh = self.lock().life == Life::Closed;
        let history = if fresh {
            let (name, n) = (self.name.clone(), self.history);
            match tokio::task::spawn_blocking(move || store.recent(&name, n)).await {
                Ok(Ok(h)) => Some(h),
                Ok(Err(e)) => {
                    tracing::error!(stream = %self.name, error = %e, "chat history not loaded");
                    None
                }
                Err(e) => {
                    tracing::error!(stream = %self.name, error = %e, "chat history not loaded");
                    None
                }
            }
        } else {
            None
        };
        let mut g = self.lock();
        if g.life == Life::Closed {
            // A new room life: fresh moderation state, history from the log.
            let limits = g.room.limits().clone();
            g.room = Room::new(limits, history.unwrap_or_default());
        }
        g.life = Life::Live;
        g.room.set_open(true);
        tracing::info!(stream = %self.name, "chat room open");
    }

    fn end(&self) {
        if let ChatLog::Cluster(c) = &self.log {
            self.lock().local_live = false;
            if self.live_elsewhere(c) {
                return; // the publisher moved to another node: the room carries on
            }
        }
        let mut g = self.lock();
        if g.life == Life::Live {
            g.life = Life::Ended(Instant::now());
            g.room.set_open(false);
            tracing::info!(stream = %self.name, "chat room read-only; closes in {:?}", self.keep_after_end);
        }
    }

    /// `remote_chat`: chat connections on other nodes (cluster).
    fn tick(&self, remote_chat: usize) {
        let mut g = self.lock();
        if let Life::Ended(at) = g.life {
            if at.elapsed() >= self.keep_after_end {
                g.life = Life::Closed;
                if let ChatLog::Cluster(c) = &self.log {
                    // The room's life is over on this node: so are its sanctions.
                    g.room.reset_moderation();
                    c.forget_sanctions(&self.name);
                }
                let conns: Vec<ConnId> = g.conns.keys().copied().collect();
                for c in conns {
                    g.room.leave(c);
                    Self::close(
                        &mut g,
                        c,
                        ServerFrame::error("room_closed", "the stream ended and its chat closed"),
                    );
                }
                tracing::info!(stream = %self.name, "chat room closed");
                return;
            }
        }
        if g.life == Life::Closed {
            return;
        }
        // HLS viewers are not counted: behind a CDN the origin cannot see them (docs/chat-protocol.md).
        if let Some(out) = g.room.viewers_with(remote_chat, 0) {
            let pending = self.dispatch(&mut g, vec![out]);
            debug_assert!(pending.is_empty());
        }
    }

    /// Admits a connection: its welcome is already queued; or the refusal to send before closing.
    pub fn join(
        &self,
        conn: ConnId,
        name: Option<&str>,
        moderator: bool,
    ) -> Result<Joined, ServerFrame> {
        let mut g = self.lock();
        if g.life == Life::Closed {
            return Err(ServerFrame::error("room_closed", "the stream is not live"));
        }
        let out = g
            .room
            .join(conn, name, moderator, now_ms())
            .inspect_err(|_| {
                self.metrics.chat_refused.fetch_add(1, Ordering::Relaxed);
            })?;
        self.metrics
            .chat_connections
            .fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(FrameQueue::new(self.queue));
        g.conns.insert(conn, queue.clone());
        let pending = self.dispatch(&mut g, out);
        debug_assert!(pending.is_empty());
        Ok(Joined { conn, queue })
    }

    pub fn leave(&self, conn: ConnId) {
        let mut g = self.lock();
        g.room.leave(conn);
        g.conns.remove(&conn);
    }

    /// Sends `frame` to one connection (e.g. an error about its own input).
    pub fn to(&self, conn: ConnId, frame: ServerFrame) {
        let mut g = self.lock();
        let pending = self.dispatch(&mut g, vec![Output::To(conn, frame)]);
        debug_assert!(pending.is_empty());
    }

    /// A parsed client frame from `conn`.
    pub fn client_frame(self: &Arc<Self>, conn: ConnId, frame: protocol::ClientFrame) {
        let now = now_ms();
        let pending = {
            let mut g = self.lock();
            let out = match frame {
                protocol::ClientFrame::Send { text } => {
                    // No media yet: the server clock stands in (same clock family as PDT).
                    let pdt = self
                        .origin
                        .get(&self.name)
                        .and_then(|e| e.live_edge_pdt_ms())
                        .unwrap_or(now);
                    g.room.send(conn, &text, now, pdt)
                }
                protocol::ClientFrame::Delete { id } => g.room.delete(conn, id),
                protocol::ClientFrame::Timeout { name, seconds } => {
                    g.room.timeout(conn, &name, seconds, now)
                }
                protocol::ClientFrame::Ban { name } => g.room.ban(conn, &name),
            };
            self.dispatch(&mut g, out)
        };
        // Store calls run unlocked: a failing store answers inline, and that answer locks.
        for p in pending {
            let store = match &self.log {
                ChatLog::Local(store) => store,
                ChatLog::Cluster(c) => {
                    self.run_in_cluster(c, p);
                    continue;
                }
            };
            let me = self.clone();
            match p {
                Pending::Insert(conn, draft) => {
                    store.insert(&self.name, draft, Box::new(move |r| me.inserted(conn, r)))
                }
                Pending::Delete(conn, id) => {
                    store.delete(&self.name, id, Box::new(move |r| me.deleted(conn, id, r)))
                }
                Pending::Sanction(_, s) => {
                    // Local rooms apply sanctions themselves; kept for completeness.
                    let mut g = self.lock();
                    let out = g.room.apply(&s, now);
                    self.dispatch(&mut g, out);
                }
            }
        }
    }

    fn inserted(&self, conn: ConnId, r: Result<ChatMessage, String>) {
        let mut g = self.lock();
        let out = match r {
            Ok(m) => {
                self.metrics.chat_messages.fetch_add(1, Ordering::Relaxed);
                let _ = self.events.send(ChatEvent::Message(m.clone()));
                g.room.committed(m)
            }
            Err(e) => {
                tracing::error!(stream = %self.name, error = %e, "chat message not stored");
                g.room.commit_failed(conn)
            }
        };
        self.dispatch(&mut g, out);
    }

    fn deleted(&self, conn: ConnId, id: u64, r: Result<bool, String>) {
        let mut g = self.lock();
        let out = match r {
            Ok(found) => {
                if found {
                    let _ = self.events.send(ChatEvent::Deleted { id });
                }
                g.room.delete_committed(conn, id, found)
            }
            Err(e) => {
                tracing::error!(stream = %self.name, error = %e, "chat delete not stored");
                vec![Output::To(
                    conn,
                    ServerFrame::error("store_failed", "the delete could not be stored"),
                )]
            }
        };
        self.dispatch(&mut g, out);
    }

    /// Carries out the room's outputs; store work is returned to run without the lock.
    fn dispatch(&self, g: &mut Inner, outputs: Vec<Output>) -> Vec<Pending> {
        let mut pending = Vec::new();
        let mut slow = Vec::new();
        for o in outputs {
            match o {
                Output::To(c, f) => {
                    if matches!(f, ServerFrame::Error { .. }) {
                        self.metrics.chat_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(q) = g.conns.get(&c) {
                        if !q.push(f.encode()) {
                            slow.push(c);
                        }
                    }
                }
                Output::Broadcast(f) => {
                    let text = f.encode();
                    for (c, q) in &g.conns {
                        if !q.push(text.clone()) {
                            slow.push(*c);
                        }
                    }
                }
                Output::Persist(c, d) => pending.push(Pending::Insert(c, d)),
                Output::PersistDelete(c, id) => pending.push(Pending::Delete(c, id)),
                Output::Replicate(c, s) => pending.push(Pending::Sanction(c, s)),
                Output::Close(c, f) => Self::close(g, c, f),
            }
        }
        for c in slow {
            self.metrics
                .chat_slow_readers
                .fetch_add(1, Ordering::Relaxed);
            g.room.leave(c);
            tracing::debug!(stream = %self.name, conn = c, "chat reader too slow; dropped");
            Self::close(
                g,
                c,
                ServerFrame::error(
                    "slow_reader",
                    "you fell too far behind the room; reconnect to continue",
                ),
            );
        }
        pending
    }

    /// Lets go of a connection; its task sends what is queued, then `frame`, then closes.
    fn close(g: &mut Inner, conn: ConnId, frame: ServerFrame) {
        if let Some(q) = g.conns.remove(&conn) {
            q.close(frame);
        }
    }
}
