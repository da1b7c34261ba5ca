//! The stream hub: the registry of live stream names and their media fan-out.
//!
//! Its one job: who may publish a name (one publisher per name, a silent one replaced),
//! grace periods (a publisher that returns in time continues the same stream), and the
//! per-stream [`Feed`] that ingest publishes into. What a stream *becomes* (renditions,
//! playlists, chat rooms, recordings) is decided by services that subscribe to the hub's
//! [`Lifecycle`] events; the hub imports none of them and does no I/O under its locks.

pub mod events;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};

pub use events::{Feed, HubMsg, Lifecycle, EVENTS_CAPACITY};

use crate::package::emsg::TimedMetadata;

/// Messages (≈ 13 s of 30 fps video plus AAC) a consumer may fall behind before it drops.
pub const HUB_CAPACITY: usize = 1024;

/// A publisher silent this long no longer blocks a new publisher of its name
/// (an encoder reconnecting before its old TCP connection has timed out).
pub const STALE_PUBLISHER: Duration = Duration::from_secs(5);

/// Why the hub refused a claim; ingest maps it to its protocol's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("stream `{0}` is already being published")]
    AlreadyPublished(String),
    #[error("stream `{name}` is already being published on node `{node}`")]
    PublishedElsewhere { name: String, node: String },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// A second opinion on claims, from outside this process (the cluster's stream directory):
/// asked, without waiting on anything, before a name that is not live here is claimed.
pub trait ClaimGate: Send + Sync {
    fn check(&self, name: &str) -> Result<(), ClaimError>;
}

struct Publisher {
    id: u64,
    last_data: Instant,
    kick: Arc<Notify>,
}

/// One live stream name.
struct Live {
    name: String,
    feed: Feed,
    publisher: Mutex<Option<Publisher>>,
    /// Bumped on every claim, so a stale grace timer knows it lost.
    generation: AtomicU64,
    /// Whether `Lifecycle::Live` went out (the first session started).
    announced: AtomicBool,
}

/// All live streams; the one place that decides who may publish.
pub struct Hub {
    grace: Duration,
    events: broadcast::Sender<Lifecycle>,
    lives: Mutex<HashMap<String, Arc<Live>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    gate: std::sync::OnceLock<Arc<dyn ClaimGate>>,
}

/// The right to publish one stream; released (grace period starts) on drop.
pub struct PublishHandle {
    hub: Arc<Hub>,
    live: Arc<Live>,
    id: u64,
    /// Notified when a newer publisher takes over from a stalled one.
    pub kicked: Arc<Notify>,
}

impl Hub {
    /// A hub whose streams end `grace` after their publisher leaves.
    pub fn new(grace: Duration) -> Arc<Hub> {
        Arc::new(Hub {
            grace,
            events: broadcast::channel(EVENTS_CAPACITY).0,
            lives: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            gate: std::sync::OnceLock::new(),
        })
    }

    /// Sets the claim gate (once, at startup).
    pub fn set_gate(&self, gate: Arc<dyn ClaimGate>) {
        let _ = self.gate.set(gate);
    }

    fn gate_check(&self, name: &str) -> Result<(), ClaimError> {
        match self.gate.get() {
            Some(g) => g.check(name),
            None => Ok(()),
        }
    }

    /// Lifecycle events from now on.
    pub fn events(&self) -> broadcast::Receiver<Lifecycle> {
        self.events.subscribe()
    }

    fn emit(&self, event: Lifecycle) {
        let _ = self.events.send(event);
    }

    fn lives(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.lives.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `name` for a new publisher (its credentials were already checked). Cheap and
    /// non-blocking: the services wire the stream when its `Live` event arrives.
    pub fn claim(self: &Arc<Self>, name: &str) -> Result<PublishHandle, ClaimError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ClaimError::ShuttingDown);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(Notify::new());
        let mut lives = self.lives();
        if let Some(live) = lives.get(name).cloned() {
            let mut publisher = live.publisher.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = publisher.as_ref() {
                if p.last_data.elapsed() < STALE_PUBLISHER {
                    return Err(ClaimError::AlreadyPublished(name.to_string()));
                }
                tracing::warn!(
                    stream = name,
                    silent_for = ?p.last_data.elapsed(),
                    "previous publisher silent; replacing it"
                );
                p.kick.notify_one();
            }
            *publisher = Some(Publisher {
                id,
                last_data: Instant::now(),
                kick: kick.clone(),
            });
            live.generation.fetch_add(1, Ordering::Relaxed);
            drop(publisher);
            return Ok(PublishHandle {
                hub: self.clone(),
                live,
                id,
                kicked: kick,
            });
        }
        self.gate_check(name)?;
        let live = Arc::new(Live {
            name: name.to_string(),
            feed: Feed::new(HUB_CAPACITY),
            publisher: Mutex::new(Some(Publisher {
                id,
                last_data: Instant::now(),
                kick: kick.clone(),
            })),
            generation: AtomicU64::new(1),
            announced: AtomicBool::new(false),
        });
        lives.insert(name.to_string(), live.clone());
        tracing::info!(stream = name, "stream claimed");
        Ok(PublishHandle {
            hub: self.clone(),
            live,
            id,
            kicked: kick,
        })
    }

    /// Names of streams that currently have a publisher or are in their grace period.
    pub fn live_names(&self) -> Vec<String> {
        self.lives().keys().cloned().collect()
    }

    /// Whether [`Hub::claim`] would refuse `name` as already published right now; lets SRT
    /// refuse in its handshake instead of accepting and then closing.
    pub fn check_claim(&self, name: &str) -> Result<(), ClaimError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ClaimError::ShuttingDown);
        }
        let lives = self.lives();
        let healthy = lives.get(name).is_some_and(|l| {
            l.publisher
                .lock()
                .map(|p| {
                    p.as_ref()
                        .is_some_and(|p| p.last_data.elapsed() < STALE_PUBLISHER)
                })
                .unwrap_or(false)
        });
        if healthy {
            Err(ClaimError::AlreadyPublished(name.to_string()))
        } else if lives.contains_key(name) {
            Ok(())
        } else {
            drop(lives);
            self.gate_check(name)
        }
    }

    /// Puts a timed metadata event into every rendition of `name`'s stream (from the next
    /// part on). False when the stream is not live (nothing to carry it).
    pub fn send_metadata(&self, name: &str, event: Arc<TimedMetadata>) -> bool {
        let feed = self.lives().get(name).map(|l| l.feed.clone());
        match feed {
            Some(feed) => {
                feed.send(HubMsg::Metadata(event));
                true
            }
            None => false,
        }
    }

    pub fn is_publishing(&self, name: &str) -> bool {
        self.lives()
            .get(name)
            .is_some_and(|l| l.publisher.lock().map(|p| p.is_some()).unwrap_or(false))
    }

    fn release(self: &Arc<Self>, live: &Arc<Live>, id: u64) {
        {
            let mut p = live.publisher.lock().unwrap_or_else(|e| e.into_inner());
            if p.as_ref().map(|p| p.id) != Some(id) {
                return; // already replaced by a newer publisher
            }
            *p = None;
        }
        live.feed.send(HubMsg::Stop);
        if live.announced.load(Ordering::Relaxed) {
            self.emit(Lifecycle::Left {
                name: live.name.clone(),
                session: id,
            });
        }
        let generation = live.generation.load(Ordering::Relaxed);
        let grace = self.grace;
        let hub = self.clone();
        let live = live.clone();
        tracing::info!(stream = %live.name, ?grace, "publisher gone; the stream ends after the grace period unless it returns");
        // Dropped while the runtime shuts down: shutdown() ends the streams itself.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(grace).await;
            hub.end_if_idle(&live, generation);
        });
    }

    fn end_if_idle(&self, live: &Arc<Live>, generation: u64) {
        {
            let mut lives = self.lives();
            let idle = live.publisher.lock().map(|p| p.is_none()).unwrap_or(false);
            if !idle || live.generation.load(Ordering::Relaxed) != generation {
                return;
            }
            if lives.get(&live.name).is_some_and(|l| Arc::ptr_eq(l, live)) {
                lives.remove(&live.name);
            } else {
                return; // ended by shutdown already
            }
        }
        tracing::info!(stream = %live.name, "stream ended");
        self.end(live);
    }

    fn end(&self, live: &Live) {
        live.feed.send(HubMsg::End);
        // A stream that never started a session was never announced: nothing to end.
        if live.announced.load(Ordering::Relaxed) {
            self.emit(Lifecycle::Ended {
                name: live.name.clone(),
            });
        }
    }

    /// Ends `name` now, whatever its state (its ownership moved to another node): a publisher
    /// still attached is kicked, and a later claim starts a new stream.
    pub fn end_now(&self, name: &str) {
        let Some(live) = self.lives().remove(name) else {
            return;
        };
        if let Some(p) = live
            .publisher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            p.kick.notify_one();
        }
        tracing::info!(stream = name, "stream ended here");
        self.end(&live);
    }

    /// Server shutdown: refuses new claims and ends every stream (`HubMsg::End`, then
    /// `Lifecycle::Ended`). Subscribers finish their own work (see the live supervisor).
    pub fn shutdown(&self) -> Vec<String> {
        self.closed.store(true, Ordering::Relaxed);
        let lives: Vec<Arc<Live>> = self.lives().drain().map(|(_, l)| l).collect();
        for live in &lives {
            self.end(live);
        }
        lives.iter().map(|l| l.name.clone()).collect()
    }
}

impl PublishHandle {
    pub fn name(&self) -> &str {
        &self.live.name
    }

    /// Sends to every consumer; never waits (full consumers lose their oldest messages).
    /// A `Start` announces the stream (`Live`, or `Reconnected` within the grace period),
    /// a `Config` announces `CodecChanged`.
    pub fn send(&self, msg: HubMsg) {
        let event = match &msg {
            HubMsg::Frame(_) => {
                if let Ok(mut p) = self.live.publisher.lock() {
                    if let Some(p) = p.as_mut().filter(|p| p.id == self.id) {
                        p.last_data = Instant::now();
                    }
                }
                None
            }
            HubMsg::Start { video, audio } => {
                let (name, session) = (self.live.name.clone(), self.id);
                let (video, audio) = (video.clone(), audio.clone());
                Some(if self.live.announced.swap(true, Ordering::Relaxed) {
                    Lifecycle::Reconnected {
                        name,
                        session,
                        video,
                        audio,
                    }
                } else {
                    tracing::info!(stream = %name, session, "stream live");
                    Lifecycle::Live {
                        name,
                        session,
                        video,
                        audio,
                        feed: self.live.feed.clone(),
                    }
                })
            }
            HubMsg::Config { video, audio } => Some(Lifecycle::CodecChanged {
                name: self.live.name.clone(),
                session: self.id,
                video: video.clone(),
                audio: audio.clone(),
            }),
            _ => None,
        };
        self.live.feed.send(msg);
        if let Some(event) = event {
            self.hub.emit(event);
        }
    }
}

impl Drop for PublishHandle {
    fn drop(&mut self) {
        self.hub.release(&self.live, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Frame, Track};
    use bytes::Bytes;

    fn frame(dts: i64) -> HubMsg {
        HubMsg::Frame(Frame {
            track: Track::Video,
            dts,
            cts: 0,
            keyframe: true,
            data: Bytes::from_static(b"x"),
            arrival_ms: 0,
        })
    }

    fn start() -> HubMsg {
        HubMsg::Start {
            video: None,
            audio: None,
        }
    }

    #[tokio::test]
    async fn one_publisher_per_name_and_lifecycle_in_order() {
        let hub = Hub::new(Duration::from_millis(50));
        let mut events = hub.events();
        let first = hub.claim("a").unwrap();
        assert_eq!(
            hub.claim("a").err(),
            Some(ClaimError::AlreadyPublished("a".into()))
        );
        assert!(hub.check_claim("a").is_err());
        let other = hub.claim("b").expect("other names are independent");
        first.send(start());
        first.send(frame(0));
        let Ok(Lifecycle::Live { name, feed, .. }) = events.recv().await else {
            panic!("expected Live");
        };
        assert_eq!(name, "a");
        // The receiver kept since the claim saw everything from the first message.
        let mut rx = feed.take_from_claim().unwrap();
        assert!(matches!(rx.recv().await, Ok(HubMsg::Start { .. })));
        assert!(matches!(rx.recv().await, Ok(HubMsg::Frame(_))));
        assert!(feed.take_from_claim().is_none(), "taken once");
        // A consumer joining later gets the running session's codecs first.
        let (snapshot, _rx) = feed.join();
        assert!(matches!(snapshot, Some(HubMsg::Start { .. })));

        drop(first);
        assert!(matches!(rx.recv().await, Ok(HubMsg::Stop)));
        assert!(matches!(events.recv().await, Ok(Lifecycle::Left { .. })));
        let again = hub.claim("a").expect("free after the publisher left");
        again.send(start());
        assert!(matches!(
            events.recv().await,
            Ok(Lifecycle::Reconnected { .. })
        ));
        drop(again);
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Lifecycle::Ended { name }) = events.recv().await {
                    return name;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(ended, "a");
        assert_eq!(hub.live_names(), vec!["b".to_string()]);
        drop(other);
    }

    #[tokio::test]
    async fn a_silent_publisher_is_replaced_and_kicked() {
        let hub = Hub::new(Duration::from_secs(10));
        let first = hub.claim("a").unwrap();
        // Make the first publisher look silent.
        first
            .live
            .publisher
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .last_data = Instant::now() - STALE_PUBLISHER - Duration::from_secs(1);
        let kicked = first.kicked.clone();
        let second = hub.claim("a").expect("a silent publisher is replaced");
        tokio::time::timeout(Duration::from_secs(1), kicked.notified())
            .await
            .expect("the old publisher is told");
        drop(first); // its release must not end the new session
        assert!(hub.is_publishing("a"));
        drop(second);
    }

    #[tokio::test]
    async fn shutdown_ends_every_stream_and_refuses_new_claims() {
        let hub = Hub::new(Duration::from_secs(10));
        let mut events = hub.events();
        let h = hub.claim("a").unwrap();
        let feed_rx = h.live.feed.take_from_claim().unwrap();
        h.send(start());
        assert!(matches!(events.recv().await, Ok(Lifecycle::Live { .. })));
        assert_eq!(hub.shutdown(), vec!["a".to_string()]);
        assert!(matches!(events.recv().await, Ok(Lifecycle::Ended { .. })));
        assert_eq!(hub.claim("b").err(), Some(ClaimError::ShuttingDown));
        drop(feed_rx);
    }
}
