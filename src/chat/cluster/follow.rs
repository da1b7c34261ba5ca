//! Start-up and the stream follower: creates the stream and the bucket if needed, loads each
//! room's tail and the live sanctions once, then follows the stream from the sequence after
//! that tail and hands every event to its room in stream order. Any failure (NATS away or
//! restarted, a gap) ends the follower; it starts again from the next undelivered sequence,
//! so nothing is skipped or delivered twice, and nothing waits in memory meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{kv, stream};
use futures_util::StreamExt;

use super::wire::{self, Event, Kind, Stored};
use super::ClusterChat;
use crate::chat::room::Sanction;
use crate::chat::ChatRooms;
use crate::util::time::now_ms;

/// The follower expects a heartbeat this often while the stream is quiet; two missed mean
/// the consumer or the connection is gone, and it is created again.
pub const FOLLOW_HEARTBEAT: Duration = Duration::from_secs(2);
/// Pause before following again after a failure.
pub const RETRY: Duration = Duration::from_millis(500);
/// How often the follower looks at the NATS connection.
const RECONNECT_CHECK: Duration = Duration::from_millis(250);
/// Longest wait for the moderation bucket's keys.
const READ_WAIT: Duration = Duration::from_secs(10);

fn stream_config() -> stream::Config {
    stream::Config {
        name: wire::STREAM.to_string(),
        subjects: vec![wire::SUBJECTS.to_string()],
        storage: stream::StorageType::File,
        duplicate_window: wire::DUPLICATE_WINDOW,
        ..Default::default()
    }
}

fn bucket_config() -> kv::Config {
    kv::Config {
        bucket: wire::MODERATION_BUCKET.to_string(),
        history: 1,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

impl ClusterChat {
    /// Starts following the log for `rooms` and exchanging viewer counts; call once.
    pub fn start(self: &Arc<Self>, rooms: Arc<ChatRooms>) {
        tokio::spawn(self.clone().run(rooms));
        tokio::spawn(self.clone().follow_censuses());
    }

    async fn run(self: Arc<Self>, rooms: Arc<ChatRooms>) {
        loop {
            // No requests while disconnected: they would only wait in the client's buffer.
            while !self.cluster.connected() {
                tokio::time::sleep(RECONNECT_CHECK).await;
            }
            if let Err(e) = self.connect_and_follow(&rooms).await {
                tracing::warn!(error = %e, next = self.next_seq.load(Ordering::Relaxed), "chat log follower stopped; following again");
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn connect_and_follow(&self, rooms: &ChatRooms) -> Result<(), String> {
        let js = &self.cluster.jetstream;
        let stream = js
            .get_or_create_stream(stream_config())
            .await
            .map_err(|e| format!("chat stream: {e}"))?;
        let kv = match js.get_key_value(wire::MODERATION_BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(bucket_config())
                .await
                .map_err(|e| format!("chat moderation bucket: {e}"))?,
        };
        *self.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream.clone());
        *self.kv.lock().unwrap_or_else(|e| e.into_inner()) = Some(kv.clone());
        let state = stream
            .get_info()
            .await
            .map_err(|e| format!("chat stream info: {e}"))?
            .state;
        let last = state.last_sequence;
        if !self.seeded.load(Ordering::Relaxed) {
            for (name, room) in &rooms.rooms {
                let tail = self.tail(&stream, name, state.first_sequence, last).await?;
                room.seed_tail(tail);
            }
            self.load_sanctions(&kv, rooms).await?;
            self.next_seq.store(last + 1, Ordering::Relaxed);
            self.seeded.store(true, Ordering::Relaxed);
            tracing::info!(
                from = last + 1,
                "chat: rooms hold the cluster log's tail; following it"
            );
        } else if last + 1 < self.next_seq.load(Ordering::Relaxed) {
            tracing::warn!(
                last,
                "the chat stream is behind what this node has seen (was it recreated?); following its new messages"
            );
            self.next_seq.store(last + 1, Ordering::Relaxed);
        }
        self.follow(&stream, rooms).await
    }

    /// Applies the live bans and timeouts of the bucket to the rooms.
    async fn load_sanctions(&self, kv: &kv::Store, rooms: &ChatRooms) -> Result<(), String> {
        let keys = async {
            match kv.keys().await {
                Ok(k) => Ok(k.filter_map(|k| async move { k.ok() }).collect().await),
                Err(e) => Err(format!("chat moderation bucket: {e}")),
            }
        };
        let keys: Vec<String> = tokio::time::timeout(READ_WAIT, keys)
            .await
            .map_err(|_| "chat moderation bucket: no answer".to_string())??;
        let now = now_ms();
        for key in keys {
            let Some((room, _)) = wire::parse_sanction_key(&key) else {
                continue;
            };
            let Some(handle) = rooms.rooms.get(room) else {
                continue;
            };
            let Ok(Some(value)) = kv.get(key.as_str()).await else {
                continue;
            };
            match serde_json::from_slice::<Sanction>(&value) {
                Ok(Sanction::Timeout { until_ms, .. }) if until_ms <= now => {}
                Ok(s) => handle.stream_sanction(s),
                Err(e) => tracing::warn!(key, error = %e, "unreadable chat sanction"),
            }
        }
        Ok(())
    }

    /// Follows the stream from `next_seq` until something fails.
    async fn follow(&self, stream: &stream::Stream, rooms: &ChatRooms) -> Result<(), String> {
        let start = self.next_seq.load(Ordering::Relaxed).max(1);
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ack_policy: AckPolicy::None,
                // A consumer left behind by a dead follower goes away on its own.
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                description: Some(format!("ferrocast chat follower on {}", self.cluster.node)),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("chat follower: {e}"))?;
        let mut messages = consumer
            .stream()
            .heartbeat(FOLLOW_HEARTBEAT)
            .expires(FOLLOW_HEARTBEAT * 10)
            .messages()
            .await
            .map_err(|e| format!("chat follower: {e}"))?;
        let mut consumer_seq = 0;
        let mut check = tokio::time::interval(RECONNECT_CHECK);
        let mut was_down = false;
        loop {
            let m = tokio::select! {
                m = messages.next() => m,
                _ = check.tick() => {
                    // Back after a disconnection: the consumer may be gone with a restarted
                    // server; start again now rather than after two missed heartbeats.
                    match (self.cluster.connected(), was_down) {
                        (false, _) => was_down = true,
                        (true, true) => return Err("reconnected to NATS".into()),
                        (true, false) => {}
                    }
                    continue;
                }
            };
            let Some(m) = m else { break };
            let m = m.map_err(|e| format!("chat follower: {e}"))?;
            let info = m.info().map_err(|e| format!("chat follower: {e}"))?;
            if info.consumer_sequence != consumer_seq + 1 {
                return Err(format!(
                    "chat follower: delivery {} after {consumer_seq}",
                    info.consumer_sequence
                ));
            }
            consumer_seq = info.consumer_sequence;
            let seq = info.stream_sequence;
            if seq < self.next_seq.load(Ordering::Relaxed) {
                continue;
            }
            self.next_seq.store(seq + 1, Ordering::Relaxed);
            self.deliver(rooms, m.subject.as_str(), &m.payload, seq);
        }
        Err("chat follower ended".into())
    }

    /// Hands one stream event to its room.
    fn deliver(&self, rooms: &ChatRooms, subject: &str, payload: &[u8], seq: u64) {
        let Some((room, kind)) = wire::parse_subject(subject) else {
            return;
        };
        let Some(handle) = rooms.rooms.get(room) else {
            return; // a stream another node has configured and this one has not
        };
        match kind {
            Kind::Message => match serde_json::from_slice::<Stored>(payload) {
                Ok(s) => {
                    let elsewhere = s.node != self.cluster.node;
                    handle.stream_message(s.into_message(seq), elsewhere);
                }
                Err(e) => tracing::warn!(seq, error = %e, "unreadable chat message in the log"),
            },
            Kind::Event => match serde_json::from_slice::<Event>(payload) {
                Ok(Event::Deleted { id }) => handle.stream_deleted(id),
                Ok(Event::Timeout {
                    name,
                    seconds,
                    until_ms,
                }) => handle.stream_sanction(Sanction::Timeout {
                    name,
                    seconds,
                    until_ms,
                }),
                Ok(Event::Ban { name }) => handle.stream_sanction(Sanction::Ban { name }),
                Err(e) => tracing::warn!(seq, error = %e, "unreadable chat event in the log"),
            },
        }
    }
}
