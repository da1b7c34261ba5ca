//! Viewer counts summed over the nodes: every node publishes its chat connections per room on
//! [`VIEWERS_SUBJECT`] every [`crate::chat::VIEWERS_EVERY`] (core NATS, nothing stored), and
//! keeps the latest count each other node sent ([`Tally`]). A node not heard from for
//! [`STALE_AFTER`] intervals is dropped, so a dead node's viewers stop counting.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::wire::{Census, VIEWERS_SUBJECT};
use super::ClusterChat;
use crate::chat::{ChatRooms, VIEWERS_EVERY};

/// Intervals without a census after which a node's counts no longer count.
pub const STALE_AFTER: u32 = 3;

/// The latest census of every other node (sans-IO: time is passed in).
#[derive(Debug, Default)]
pub struct Tally {
    nodes: HashMap<String, (Instant, BTreeMap<String, usize>)>,
}

impl Tally {
    /// Records `census`, received at `now`.
    pub fn record(&mut self, census: Census, now: Instant) {
        self.nodes.insert(census.node, (now, census.rooms));
    }

    /// Forgets nodes not heard from within `max_age` of `now`.
    pub fn prune(&mut self, now: Instant, max_age: Duration) {
        self.nodes
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < max_age);
    }

    /// Chat connections in `room` on the nodes heard from, except `me`.
    pub fn remote(&self, room: &str, me: &str) -> usize {
        self.nodes
            .iter()
            .filter(|(node, _)| node.as_str() != me)
            .filter_map(|(_, (_, rooms))| rooms.get(room))
            .sum()
    }
}

impl ClusterChat {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chat connections in `room` on the other nodes (latest counts, stale nodes dropped).
    pub fn remote_viewers(&self, room: &str) -> usize {
        let mut t = self.tally();
        t.prune(Instant::now(), VIEWERS_EVERY * STALE_AFTER);
        t.remote(room, &self.cluster.node)
    }

    /// Publishes this node's census; skipped while NATS is away (nothing queues up).
    pub(crate) async fn publish_census(&self, rooms: &ChatRooms) {
        if !self.cluster.connected() {
            return;
        }
        let census = Census {
            node: self.cluster.node.clone(),
            rooms: rooms
                .rooms
                .iter()
                .map(|(name, r)| (name.clone(), r.connections()))
                .filter(|(_, n)| *n > 0)
                .collect(),
        };
        let Ok(json) = serde_json::to_vec(&census) else {
            return;
        };
        if let Err(e) = self
            .cluster
            .client
            .publish(VIEWERS_SUBJECT, Bytes::from(json))
            .await
        {
            tracing::debug!(error = %e, "chat viewer count not published");
        }
    }

    /// Receives the other nodes' censuses (the client resubscribes after a reconnection).
    pub(super) async fn follow_censuses(self: Arc<Self>) {
        loop {
            match self.cluster.client.subscribe(VIEWERS_SUBJECT).await {
                Ok(mut sub) => {
                    while let Some(msg) = sub.next().await {
                        match serde_json::from_slice::<Census>(&msg.payload) {
                            Ok(c) => self.tally().record(c, Instant::now()),
                            Err(e) => tracing::debug!(error = %e, "unreadable chat viewer count"),
                        }
                    }
                    tracing::warn!("chat viewer counts subscription ended; resubscribing");
                }
                Err(e) => tracing::warn!(error = %e, "chat viewer counts not subscribed; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(node: &str, rooms: &[(&str, usize)]) -> Census {
        Census {
            node: node.into(),
            rooms: rooms.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn counts_are_summed_over_other_nodes_and_stale_ones_drop_out() {
        let t0 = Instant::now();
        let mut t = Tally::default();
        t.record(census("a", &[("demo", 3), ("other", 1)]), t0);
        t.record(census("b", &[("demo", 4)]), t0 + Duration::from_secs(4));
        t.record(census("me", &[("demo", 100)]), t0);
        assert_eq!(
            t.remote("demo", "me"),
            7,
            "our own census does not count twice"
        );
        assert_eq!(t.remote("nobody", "me"), 0);
        // A newer census replaces the older one.
        t.record(census("a", &[("demo", 1)]), t0 + Duration::from_secs(2));
        assert_eq!(t.remote("demo", "me"), 5);
        t.prune(t0 + Duration::from_secs(8), Duration::from_secs(6));
        assert_eq!(t.remote("demo", "me"), 4, "a not heard from for 6 s");
    }
}
