//! Chat across the nodes of a cluster (`[cluster]`; docs/cluster.md, "Chat"): the chat log
//! is one JetStream stream shared by every node, and each room runs on every node as a copy
//! of the same sans-IO [`crate::chat::room::Room`], fed in the stream's order.
//!
//! - A send is checked by the room here (limits), published with a `Nats-Msg-Id` and
//!   acknowledged by JetStream; its stream sequence is the message id. Nothing is broadcast
//!   on the ack: every node ([`follow`]) reads the stream and broadcasts to its own
//!   connections in stream order, so every viewer on every node sees one order, and the
//!   sender sees its message when it comes back through the stream.
//! - Deletions, timeouts and bans are events on the same stream, so they are ordered with the
//!   messages; a deleted message is also removed from the stream, and bans and timeouts are
//!   kept in a key-value bucket for nodes that start later.
//! - NATS away: sends and moderation are refused with `unavailable` (never queued); what is
//!   on screen stays; the stream is followed again from where it stopped once NATS is back.
//!
//! Files: [`wire`] (subjects, payloads, ids; pure), [`scan`] (range and tail reads; pure),
//! [`follow`] (start-up and the stream follower), [`range`] (reads by time),
//! [`viewers`] (counts over nodes), [`glue`] (the room glue's cluster side).

pub mod follow;
pub mod glue;
pub mod range;
pub mod scan;
pub mod viewers;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, message::PublishMessage};
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::protocol::Draft;
use super::room::{ConnId, Sanction};
use crate::cluster::Cluster;
use crate::util::time::now_ms;
use viewers::Tally;
use wire::{Event, Stored};

/// How long one publish waits for JetStream's acknowledgement.
pub const ACK_WAIT: Duration = Duration::from_secs(2);
/// Publishes of one action (same `Nats-Msg-Id`, so a retry is stored at most once).
pub const PUBLISH_ATTEMPTS: u32 = 3;
/// Actions waiting for JetStream at once; beyond, `unavailable` (no queue grows).
pub const MAX_IN_FLIGHT: usize = 1024;
/// Messages a node keeps per room beyond `[chat] history`, so deletions do not make its
/// history differ from a node that loaded the tail later.
pub const HISTORY_SPARE: usize = 32;
/// How long NATS must have been up before the stream directory's silence about a stream is
/// believed (after a NATS restart its records take a moment to come back).
pub const DIRECTORY_SETTLE: Duration = Duration::from_secs(10);

/// Why an action could not be stored in the cluster's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// This node's side of cluster chat; see the module docs.
pub struct ClusterChat {
    cluster: Arc<Cluster>,
    /// This process's start (UNIX ms, base 36): message ids never repeat after a restart.
    boot: String,
    actions: AtomicU64,
    stream: Mutex<Option<jetstream::stream::Stream>>,
    kv: Mutex<Option<kv::Store>>,
    /// The next stream sequence to deliver to the rooms.
    next_seq: AtomicU64,
    /// Whether the rooms hold the stream's tail (done once per process).
    seeded: AtomicBool,
    in_flight: Arc<Semaphore>,
    tally: Mutex<Tally>,
    /// Since when NATS has been up, as seen by [`ClusterChat::directory_settled`].
    up_since: Mutex<Option<Instant>>,
    /// Messages to keep per room (`[chat] history` plus [`HISTORY_SPARE`]).
    keep: usize,
    runtime: tokio::runtime::Handle,
}

impl ClusterChat {
    /// Cluster chat for this node; [`ClusterChat::start`] connects it. Call on the runtime.
    pub fn new(cluster: Arc<Cluster>, history: usize) -> Arc<ClusterChat> {
        Arc::new(ClusterChat {
            cluster,
            boot: crate::util::base36(now_ms()),
            actions: AtomicU64::new(1),
            stream: Mutex::new(None),
            kv: Mutex::new(None),
            next_seq: AtomicU64::new(0),
            seeded: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            tally: Mutex::new(Tally::default()),
            up_since: Mutex::new(None),
            keep: if history == 0 {
                0
            } else {
                history + HISTORY_SPARE
            },
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.cluster.node
    }

    /// The cluster (directory, connection).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Whether NATS has been up for [`DIRECTORY_SETTLE`]; call it on every timer tick (it
    /// samples the connection).
    pub fn directory_settled(&self) -> bool {
        let mut up = self.up_since.lock().unwrap_or_else(|e| e.into_inner());
        if !self.cluster.connected() {
            *up = None;
            return false;
        }
        up.get_or_insert_with(Instant::now).elapsed() >= DIRECTORY_SETTLE
    }

    fn stream(&self) -> Option<jetstream::stream::Stream> {
        self.stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn kv(&self) -> Option<kv::Store> {
        self.kv.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn next_action(&self) -> u64 {
        self.actions.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes to the chat stream and waits for JetStream's acknowledgement, retrying with
    /// the same `Nats-Msg-Id` (a publish stored but not acknowledged is not stored twice).
    /// Returns the stream sequence. Refused at once while NATS is away.
    async fn publish(
        &self,
        subject: String,
        payload: Bytes,
        msg_id: &str,
    ) -> Result<u64, Unavailable> {
        if self.stream().is_none() || !self.cluster.connected() {
            return Err(Unavailable("not connected to NATS".into()));
        }
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return Err(Unavailable("too many chat actions waiting for NATS".into()));
        };
        let js = &self.cluster.jetstream;
        let mut why = String::new();
        for attempt in 0..PUBLISH_ATTEMPTS {
            if attempt > 0 {
                if !self.cluster.connected() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .message_id(msg_id);
            let acked = tokio::time::timeout(ACK_WAIT, async {
                js.send_publish(subject.clone(), publish).await?.await
            })
            .await;
            match acked {
                Ok(Ok(ack)) => return Ok(ack.sequence),
                Ok(Err(e)) => why = e.to_string(),
                Err(_) => why = format!("no acknowledgement within {ACK_WAIT:?}"),
            }
        }
        tracing::warn!(msg_id, error = %why, "chat action not stored in NATS");
        Err(Unavailable(why))
    }

    /// Stores a message sent by `conn`; its id is the returned stream sequence. The message
    /// reaches the rooms (this node's too) through the stream.
    pub async fn send(&self, room: &str, conn: ConnId, draft: Draft) -> Result<u64, Unavailable> {
        let stored = Stored::new(&self.cluster.node, draft);
        let json = serde_json::to_vec(&stored).map_err(|e| Unavailable(e.to_string()))?;
        let id = wire::send_id(&self.cluster.node, &self.boot, conn, self.next_action());
        self.publish(wire::message_subject(room), Bytes::from(json), &id)
            .await
    }

    /// Deletes message `id` of `room`: removes it from the stream (history and range reads
    /// never return it again), then publishes the deletion for every node. False when it is
    /// not a message of this room. `known` says this node still shows it: a deletion whose
    /// announcement failed earlier is announced again.
    pub async fn delete(&self, room: &str, id: u64, known: bool) -> Result<bool, Unavailable> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
        let Some(stream) = self.stream().filter(|_| self.cluster.connected()) else {
            return Err(Unavailable("not connected to NATS".into()));
        };
        let found = match tokio::time::timeout(ACK_WAIT, stream.get_raw_message(id)).await {
            Ok(Ok(m)) => Some(m.subject.as_str() == wire::message_subject(room)),
            Ok(Err(e)) if e.kind() == K::NoMessageFound => None,
            Ok(Err(e)) => return Err(Unavailable(e.to_string())),
            Err(_) => return Err(Unavailable("NATS did not answer".into())),
        };
        match found {
            Some(false) => return Ok(false),
            None if !known => return Ok(false),
            None => {} // removed before, announcement lost: announce again
            Some(true) => match tokio::time::timeout(ACK_WAIT, stream.delete_message(id)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(Unavailable(e.to_string())),
                Err(_) => return Err(Unavailable("NATS did not answer".into())),
            },
        }
        let json =
            serde_json::to_vec(&Event::Deleted { id }).map_err(|e| Unavailable(e.to_string()))?;
        self.publish(
            wire::event_subject(room),
            Bytes::from(json),
            &wire::delete_id(room, id),
        )
        .await?;
        Ok(true)
    }

    /// Records a sanction in the bucket (for nodes that start later), then publishes it for
    /// every node.
    pub async fn sanction(&self, room: &str, s: Sanction) -> Result<(), Unavailable> {
        let Some(kv) = self.kv().filter(|_| self.cluster.connected()) else {
            return Err(Unavailable("not connected to NATS".into()));
        };
        let name_key = crate::chat::names::key(s.name());
        let stored = match &s {
            Sanction::Ban { .. } => {
                let key = wire::sanction_key(room, true, &name_key);
                let json = serde_json::to_vec(&s).map_err(|e| Unavailable(e.to_string()))?;
                tokio::time::timeout(ACK_WAIT, kv.put(key, Bytes::from(json)))
                    .await
                    .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
            }
            Sanction::Timeout { seconds: 0, .. } => {
                let key = wire::sanction_key(room, false, &name_key);
                tokio::time::timeout(ACK_WAIT, kv.delete(key))
                    .await
                    .map(|r| r.map_err(|e| e.to_string()))
            }
            Sanction::Timeout { .. } => {
                let key = wire::sanction_key(room, false, &name_key);
                let json = serde_json::to_vec(&s).map_err(|e| Unavailable(e.to_string()))?;
                tokio::time::timeout(ACK_WAIT, kv.put(key, Bytes::from(json)))
                    .await
                    .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
            }
        };
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Unavailable(e)),
            Err(_) => return Err(Unavailable("NATS did not answer".into())),
        }
        let json = serde_json::to_vec(&Event::from(s)).map_err(|e| Unavailable(e.to_string()))?;
        let id = wire::sanction_id(&self.cluster.node, &self.boot, self.next_action());
        self.publish(wire::event_subject(room), Bytes::from(json), &id)
            .await
            .map(|_| ())
    }

    /// Forgets `room`'s bans and timeouts in the bucket (its room closed); best effort.
    pub fn forget_sanctions(self: &Arc<Self>, room: &str) {
        let Some(kv) = self.kv() else { return };
        let prefix = wire::room_prefix(room);
        let room = room.to_string();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let keys = async {
                let keys = kv.keys().await.map_err(|e| e.to_string())?;
                Ok::<Vec<String>, String>(
                    keys.filter_map(|k| async move { k.ok() })
                        .filter(|k| std::future::ready(k.starts_with(&prefix)))
                        .collect()
                        .await,
                )
            };
            let keys = match tokio::time::timeout(Duration::from_secs(10), keys).await {
                Ok(Ok(k)) => k,
                Ok(Err(e)) => {
                    tracing::warn!(stream = %room, error = %e, "chat sanctions not cleared");
                    return;
                }
                Err(_) => {
                    tracing::warn!(stream = %room, "chat sanctions not cleared: no answer from NATS");
                    return;
                }
            };
            for k in keys {
                if let Err(e) = kv.delete(&k).await {
                    tracing::warn!(stream = %room, key = %k, error = %e, "chat sanction not cleared");
                }
            }
        });
    }

    /// The range read of the history API, from a blocking thread.
    pub fn range_blocking(
        &self,
        room: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<super::protocol::ChatMessage>, String> {
        self.runtime
            .block_on(tokio::time::timeout(
                range::RANGE_TIMEOUT,
                self.range(room, from, to, limit),
            ))
            .map_err(|_| format!("no answer from NATS within {:?}", range::RANGE_TIMEOUT))?
    }
}
