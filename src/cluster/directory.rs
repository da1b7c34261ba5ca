//! The stream directory: who owns each live stream, cluster-wide.
//!
//! One JetStream key-value bucket ([`BUCKET`]), one key per live stream name, whose value is
//! the owner's [`Owner`] record (JSON). The bucket's `max_age` ([`TTL`]) makes a record vanish
//! when its owner stops refreshing it: the owner re-puts its records every [`HEARTBEAT`], so a
//! node that dies loses its streams within `TTL`. Every node mirrors the bucket in memory
//! through a watch, and judges freshness by when *it* last saw a record (no clock comparison
//! between nodes). Reads (the claim gate, the origin's routing) never wait on NATS.
//!
//! One publisher per name: a claim is refused while another node's record is fresh and says
//! it has a publisher. A publisher that left (its node in the grace period) or a node that
//! died (record expired) lets another node take the name over; the new owner continues the
//! playlist from the last record ([`Directory::take_over`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::hub::{ClaimError, ClaimGate};
use crate::util::time::now_ms;

/// The key-value bucket of the directory.
pub const BUCKET: &str = "ferrocast-streams";
/// How long a claim waits for the bucket's answer before trusting the mirror.
pub const CONFIRM_WAIT: Duration = Duration::from_secs(1);
/// How often an owner refreshes its records.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A record not refreshed for this long is gone (the bucket's `max_age`); it bounds how long a
/// dead node's streams block a new publisher elsewhere.
pub const TTL: Duration = Duration::from_secs(5);

/// A live stream's owner, as stored in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub node: String,
    /// The owner's origin (`[cluster] advertise`).
    pub origin: String,
    /// The playlist's epoch on the owner (its object URIs).
    pub epoch: String,
    /// When the owner took the stream (UNIX ms).
    pub since: u64,
    /// Whether a publisher is connected now (false during the grace period).
    pub publishing: bool,
    /// The newest media sequence number the owner has published, if any.
    pub last_msn: Option<u64>,
    /// The discontinuity number of that segment (EXT-X-DISCONTINUITY-SEQUENCE plus the
    /// discontinuity tags before it in the playlist).
    pub discontinuity: u64,
    /// When the owner wrote this record (UNIX ms, the owner's clock).
    #[serde(default)]
    pub updated: u64,
}

/// Where a new owner continues a stream taken over from another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuation {
    /// The first media sequence number the new owner uses.
    pub next_msn: u64,
    /// The discontinuity number of the previous owner's newest segment.
    pub discontinuity: u64,
}

struct Seen {
    owner: Owner,
    at: Instant,
}

/// This node's view of the directory; see the module docs.
pub struct Directory {
    node: String,
    origin: String,
    /// How long after a record expired it still serves as a continuation point (the grace).
    grace: Duration,
    kv: OnceCell<kv::Store>,
    mirror: Mutex<HashMap<String, Seen>>,
    /// Records this node owns, refreshed every heartbeat.
    owned: Mutex<HashMap<String, Owner>>,
}

impl Directory {
    /// A directory for this node; [`Directory::run`] connects it to the bucket.
    pub fn new(node: &str, origin: &str, grace: Duration) -> Arc<Directory> {
        Arc::new(Directory {
            node: node.to_string(),
            origin: origin.to_string(),
            grace,
            kv: OnceCell::new(),
            mirror: Mutex::new(HashMap::new()),
            owned: Mutex::new(HashMap::new()),
        })
    }

    /// Creates the directory and starts mirroring and heartbeating in the background (both
    /// retry while NATS is away).
    pub async fn open(
        js: &jetstream::Context,
        node: &str,
        origin: &str,
        grace: Duration,
    ) -> Result<Arc<Directory>, String> {
        let dir = Directory::new(node, origin, grace);
        tokio::spawn(dir.clone().run(js.clone()));
        tokio::spawn(dir.clone().heartbeat());
        Ok(dir)
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.mirror.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owner>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The fresh owner record of `name`, if any node owns it.
    pub fn owner(&self, name: &str) -> Option<Owner> {
        let mirror = self.mirror();
        mirror
            .get(name)
            .filter(|s| s.at.elapsed() < TTL)
            .map(|s| s.owner.clone())
    }

    /// Streams owned by other nodes right now (fresh records), by name.
    pub fn remote(&self) -> Vec<(String, Owner)> {
        let mut v: Vec<_> = self
            .mirror()
            .iter()
            .filter(|(_, s)| s.at.elapsed() < TTL && s.owner.node != self.node)
            .map(|(n, s)| (n.clone(), s.owner.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Records this node as the owner of `name` and says where to continue its playlist when
    /// it comes from another node (its publisher moved here, or its node died within the
    /// grace period).
    pub fn take_over(&self, name: &str, epoch: &str) -> Option<Continuation> {
        let previous = {
            let mirror = self.mirror();
            mirror
                .get(name)
                .filter(|s| s.owner.node != self.node && s.at.elapsed() < TTL + self.grace)
                .map(|s| s.owner.clone())
        };
        let record = Owner {
            node: self.node.clone(),
            origin: self.origin.clone(),
            epoch: epoch.to_string(),
            since: now_ms(),
            publishing: true,
            last_msn: None,
            discontinuity: previous.as_ref().map_or(0, |p| p.discontinuity + 1),
            updated: now_ms(),
        };
        self.owned().insert(name.to_string(), record.clone());
        self.mirror().insert(
            name.to_string(),
            Seen {
                owner: record.clone(),
                at: Instant::now(),
            },
        );
        self.publish(name, record);
        let previous = previous?;
        tracing::info!(stream = name, from = %previous.node, last_msn = ?previous.last_msn, "stream taken over from another node");
        Some(Continuation {
            // The previous owner may have cut one more segment after its last record.
            next_msn: previous.last_msn.map_or(0, |m| m + 2),
            discontinuity: previous.discontinuity,
        })
    }

    /// Updates this node's record of `name` (publisher state, newest segment) and publishes
    /// it at once.
    pub fn update(&self, name: &str, publishing: bool, last: Option<(u64, u64)>) {
        let record = {
            let mut owned = self.owned();
            let Some(r) = owned.get_mut(name) else {
                return;
            };
            r.publishing = publishing;
            if let Some((msn, disc)) = last {
                r.last_msn = Some(msn);
                r.discontinuity = disc;
            }
            r.clone()
        };
        self.publish(name, record);
    }

    /// Updates this node's record of `name` for the next heartbeat, without publishing now.
    pub fn refresh(&self, name: &str, publishing: bool, last: Option<(u64, u64)>) {
        if let Some(r) = self.owned().get_mut(name) {
            r.publishing = publishing;
            if let Some((msn, disc)) = last {
                r.last_msn = Some(msn);
                r.discontinuity = disc;
            }
        }
    }

    /// This node no longer owns `name` (the stream of playlist `epoch` ended): its record is
    /// deleted if it is still this node's and that stream's (a newer stream of the same name
    /// may have been wired here meanwhile).
    pub fn release(&self, name: &str, epoch: &str) {
        {
            let mut owned = self.owned();
            if owned.get(name).is_none_or(|r| r.epoch != epoch) {
                return;
            }
            owned.remove(name);
        }
        let ours = self
            .mirror()
            .get(name)
            .is_some_and(|s| s.owner.node == self.node && s.owner.epoch == epoch);
        if !ours {
            return;
        }
        self.mirror().remove(name);
        if let Some(kv) = self.kv.get().cloned() {
            let name = name.to_string();
            tokio::spawn(async move {
                if let Err(e) = kv.delete(&name).await {
                    tracing::warn!(stream = %name, error = %e, "directory record not deleted (it expires on its own)");
                }
            });
        }
    }

    /// Whether this node owned `name` and another node has taken it since.
    pub fn moved_away(&self, name: &str) -> bool {
        let since = match self.owned().get(name) {
            Some(r) => r.since,
            None => return false,
        };
        self.owner(name)
            .is_some_and(|o| o.node != self.node && o.since > since)
    }

    /// Whether a record of another node for `name` supersedes ours: the later take-over wins,
    /// so a stale heartbeat of the previous owner cannot take the name back.
    fn superseded(&self, name: &str, other: &Owner) -> bool {
        match self.owned().get(name) {
            Some(ours) => other.node != self.node && other.since > ours.since,
            None => true,
        }
    }

    /// Asks the bucket itself (not the mirror) whether another node has a publisher for
    /// `name` right now. For a claim made while the mirror may be stale (NATS just came back);
    /// None when NATS does not answer within a second (video goes on without NATS).
    pub async fn confirm_elsewhere(&self, name: &str) -> Option<Owner> {
        let kv = self.kv.get()?.clone();
        let value = tokio::time::timeout(CONFIRM_WAIT, kv.get(name))
            .await
            .ok()?
            .ok()??;
        let owner: Owner = serde_json::from_slice(&value).ok()?;
        let age = now_ms().saturating_sub(owner.updated);
        (owner.node != self.node && owner.publishing && age < TTL.as_millis() as u64)
            .then_some(owner)
    }

    fn publish(&self, name: &str, mut record: Owner) {
        let Some(kv) = self.kv.get().cloned() else {
            return; // not connected yet: the heartbeat publishes it once the bucket is there
        };
        record.updated = now_ms();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Ok(json) = serde_json::to_vec(&record) {
                if let Err(e) = kv.put(&name, Bytes::from(json)).await {
                    tracing::warn!(stream = %name, error = %e, "directory record not published");
                }
            }
        });
    }

    /// Refreshes this node's records every [`HEARTBEAT`]; a record whose key another node has
    /// taken meanwhile is left to it.
    async fn heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let records: Vec<(String, Owner)> = {
                let owned = self.owned();
                owned.iter().map(|(n, o)| (n.clone(), o.clone())).collect()
            };
            for (name, record) in records {
                if self
                    .owner(&name)
                    .is_some_and(|o| o.node != self.node && o.since > record.since)
                {
                    continue; // taken over by a later owner
                }
                self.publish(&name, record);
            }
        }
    }

    /// Keeps the mirror in step with the bucket, reconnecting while NATS is away.
    async fn run(self: Arc<Self>, js: jetstream::Context) {
        loop {
            match self.watch(&js).await {
                Ok(()) => tracing::warn!("directory watch ended; restarting"),
                Err(e) => tracing::warn!(error = %e, "directory unavailable; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch(&self, js: &jetstream::Context) -> Result<(), String> {
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.to_string(),
                    history: 1,
                    max_age: TTL,
                    // On disk: a restarted NATS server still knows who owns what.
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?,
        };
        let _ = self.kv.set(kv.clone());
        let mut watch = kv.watch_all().await.map_err(|e| e.to_string())?;
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| e.to_string())?;
            match entry.operation {
                kv::Operation::Put => match serde_json::from_slice::<Owner>(&entry.value) {
                    Ok(owner)
                        if owner.node != self.node && !self.superseded(&entry.key, &owner) =>
                    {
                        // An older owner's late heartbeat: ours stands, and is put back.
                        if let Some(ours) = self.owned().get(&entry.key).cloned() {
                            self.publish(&entry.key, ours);
                        }
                    }
                    Ok(owner) => {
                        self.mirror().insert(
                            entry.key.clone(),
                            Seen {
                                owner,
                                at: Instant::now(),
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(key = %entry.key, error = %e, "unreadable directory record")
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => {
                    let mut mirror = self.mirror();
                    if mirror.get(&entry.key).is_some_and(|s| {
                        s.owner.node != self.node || !self.owned().contains_key(&entry.key)
                    }) {
                        mirror.remove(&entry.key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Judges a claim for `name` on this node (see the module docs).
    pub fn check(&self, name: &str) -> Result<(), ClaimError> {
        match self.owner(name) {
            Some(o) if o.node != self.node && o.publishing => Err(ClaimError::PublishedElsewhere {
                name: name.to_string(),
                node: o.node,
            }),
            _ => Ok(()),
        }
    }
}

impl ClaimGate for Directory {
    fn check(&self, name: &str) -> Result<(), ClaimError> {
        Directory::check(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, publishing: bool, last_msn: Option<u64>) -> Owner {
        Owner {
            node: node.into(),
            origin: format!("http://{node}:8080"),
            epoch: "e".into(),
            since: 0,
            publishing,
            last_msn,
            discontinuity: 3,
            updated: 0,
        }
    }

    fn seen(dir: &Directory, name: &str, owner: Owner, age: Duration) {
        dir.mirror().insert(
            name.into(),
            Seen {
                owner,
                at: Instant::now() - age,
            },
        );
    }

    #[tokio::test]
    async fn a_fresh_publishing_record_elsewhere_refuses_the_claim() {
        let dir = Directory::new("b", "http://b:8080", Duration::from_secs(10));
        assert!(dir.check("s").is_ok(), "no record: free");
        seen(&dir, "s", record("a", true, Some(7)), Duration::ZERO);
        assert_eq!(
            dir.check("s"),
            Err(ClaimError::PublishedElsewhere {
                name: "s".into(),
                node: "a".into()
            })
        );
        seen(&dir, "s", record("a", false, Some(7)), Duration::ZERO);
        assert!(
            dir.check("s").is_ok(),
            "the owner's publisher left: movable"
        );
        seen(
            &dir,
            "s",
            record("a", true, Some(7)),
            TTL + Duration::from_millis(1),
        );
        assert!(
            dir.check("s").is_ok(),
            "an expired record (dead node) does not block"
        );
        seen(&dir, "s", record("b", true, Some(7)), Duration::ZERO);
        assert!(
            dir.check("s").is_ok(),
            "our own record is the hub's business"
        );
    }

    #[tokio::test]
    async fn taking_over_continues_after_the_previous_owner() {
        let dir = Directory::new("b", "http://b:8080", Duration::from_secs(10));
        assert_eq!(
            dir.take_over("fresh", "x"),
            None,
            "a new stream starts afresh"
        );
        seen(
            &dir,
            "s",
            record("a", false, Some(41)),
            TTL + Duration::from_secs(2),
        );
        let c = dir.take_over("s", "y").expect("within the grace period");
        assert_eq!(c.next_msn, 43);
        assert_eq!(c.discontinuity, 3);
        let mine = dir.owner("s").unwrap();
        assert_eq!((mine.node.as_str(), mine.discontinuity), ("b", 4));
        seen(
            &dir,
            "old",
            record("a", false, Some(5)),
            TTL + Duration::from_secs(11),
        );
        assert_eq!(
            dir.take_over("old", "z"),
            None,
            "past the grace: a new stream"
        );
    }

    #[tokio::test]
    async fn ownership_moving_away_is_noticed() {
        let dir = Directory::new("a", "http://a:8080", Duration::from_secs(10));
        dir.take_over("s", "e");
        assert!(!dir.moved_away("s"));
        seen(&dir, "s", record("b", true, None), Duration::ZERO);
        assert!(
            !dir.moved_away("s"),
            "an older record of another node does not win"
        );
        let mut later = record("b", true, None);
        later.since = now_ms() + 1_000;
        seen(&dir, "s", later, Duration::ZERO);
        assert!(dir.moved_away("s"));
        assert_eq!(dir.remote().len(), 1);
    }
}
