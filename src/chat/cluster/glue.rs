//! The room glue's cluster side: what a [`RoomHandle`] does with the shared log's events,
//! how its store work goes to NATS, and how a room's life follows the cluster's directory.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{ClusterChat, Unavailable};
use crate::chat::protocol::{ChatMessage, ServerFrame};
use crate::chat::room::Sanction;
use crate::chat::{ChatEvent, Life, Pending, RoomHandle};
use crate::util::time::now_ms;

/// Viewer-count ticks a stream must be absent from the directory (while NATS is up and the
/// directory has settled) before a room that is not live on this node turns read-only.
pub const END_AFTER_TICKS: u32 = 3;

/// What `unavailable` tells the client after `what` failed.
fn unavailable(what: &str) -> ServerFrame {
    ServerFrame::Error {
        code: "unavailable",
        reason: format!(
            "chat is unavailable right now (the cluster's log cannot be reached); {what}"
        ),
        retry_after_ms: Some(2000),
    }
}

impl RoomHandle {
    /// A message from the shared log, in stream order (sent through this node or another).
    pub(in crate::chat) fn stream_message(&self, m: ChatMessage, from_elsewhere: bool) {
        let mut g = self.lock();
        if from_elsewhere {
            g.room.note_sent(&m.name, now_ms());
        }
        self.metrics.chat_messages.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(ChatEvent::Message(m.clone()));
        let out = g.room.committed(m);
        self.dispatch(&mut g, out);
    }

    /// A deletion from the shared log.
    pub(in crate::chat) fn stream_deleted(&self, id: u64) {
        let mut g = self.lock();
        let _ = self.events.send(ChatEvent::Deleted { id });
        let out = g.room.apply_deleted(id);
        self.dispatch(&mut g, out);
    }

    /// A timeout or ban from the shared log (or the bucket, at start).
    pub(in crate::chat) fn stream_sanction(&self, s: Sanction) {
        let mut g = self.lock();
        let out = g.room.apply(&s, now_ms());
        self.dispatch(&mut g, out);
    }

    /// The room's newest messages from the shared log, at start.
    pub(in crate::chat) fn seed_tail(&self, history: Vec<ChatMessage>) {
        self.lock().room.seed_history(history);
    }

    /// Carries out store work in the shared log, off the room lock. Success needs no answer:
    /// the result comes back through the stream to every node. Failure tells the client.
    pub(in crate::chat) fn run_in_cluster(self: &Arc<Self>, chat: &Arc<ClusterChat>, p: Pending) {
        let (me, chat) = (self.clone(), chat.clone());
        tokio::spawn(async move {
            let room = me.name.as_str();
            match p {
                Pending::Insert(conn, draft) => {
                    if let Err(Unavailable(e)) = chat.send(room, conn, draft).await {
                        tracing::debug!(stream = room, error = %e, "chat message refused: unavailable");
                        me.to(conn, unavailable("the message was not stored"));
                    }
                }
                Pending::Delete(conn, id) => {
                    let known = me.lock().room.has_message(id);
                    match chat.delete(room, id, known).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let mut g = me.lock();
                            let out = g.room.delete_committed(conn, id, false);
                            me.dispatch(&mut g, out);
                        }
                        Err(_) => me.to(conn, unavailable("the message was not deleted")),
                    }
                }
                Pending::Sanction(conn, s) => {
                    if chat.sanction(room, s).await.is_err() {
                        me.to(conn, unavailable("the action was not carried out"));
                    }
                }
            }
        });
    }

    /// A room's life in a cluster, checked every viewer-count tick: open while its stream is
    /// live on any node (the directory), read-only once it is live nowhere. `settled`: NATS
    /// has been up long enough for the directory to be trusted about an absence
    /// ([`ClusterChat::directory_settled`]).
    pub(in crate::chat) fn follow_directory(&self, chat: &ClusterChat, settled: bool) {
        let elsewhere = self.live_elsewhere(chat);
        let mut g = self.lock();
        if elsewhere {
            g.absent_ticks = 0;
            if g.life != Life::Live {
                g.life = Life::Live;
                g.room.set_open(true);
                tracing::info!(stream = %self.name, "chat room open (the stream is live on another node)");
            }
            return;
        }
        if !settled || g.local_live || g.life != Life::Live {
            // NATS away or just back: the directory's silence means nothing yet.
            g.absent_ticks = 0;
            return;
        }
        g.absent_ticks += 1;
        if g.absent_ticks >= END_AFTER_TICKS {
            g.absent_ticks = 0;
            g.life = Life::Ended(Instant::now());
            g.room.set_open(false);
            tracing::info!(stream = %self.name, "chat room read-only (the stream is live on no node); closes in {:?}", self.keep_after_end);
        }
    }

    /// Whether another node publishes this room's stream now (it stays open here).
    pub(in crate::chat) fn live_elsewhere(&self, chat: &ClusterChat) -> bool {
        let cluster = chat.cluster();
        cluster
            .directory
            .owner(&self.name)
            .is_some_and(|o| o.node != cluster.node)
    }
}
