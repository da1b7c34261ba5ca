//! The stream hub: one per live stream name. Ingest publishes into it; consumers
//! (the packager today, transcoders and chat tomorrow) subscribe. The channel is a
//! bounded broadcast ring: a slow consumer loses frames and resyncs, ingest never waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;

use crate::chat::ChatRooms;
use crate::config::{Config, Pipeline};
use crate::ingest::auth::Refusal;
use crate::media::{AudioConfig, Frame, VideoConfig};
use crate::metrics::Metrics;
use crate::origin::store::{Store, StreamEntry};
use crate::package::emsg::TimedMetadata;
use crate::packager;
use crate::pipeline::follow::CutLog;
use crate::pipeline::transcoder;

/// Messages (≈ 13 s of 30 fps video plus AAC) a consumer may fall behind before it drops.
pub const HUB_CAPACITY: usize = 1024;

/// A publisher silent this long no longer blocks a new publisher of its name
/// (an encoder reconnecting before its old TCP connection has timed out).
pub const STALE_PUBLISHER: Duration = Duration::from_secs(5);

/// Ended playlists stay readable this long after their stream ends.
pub const ENDED_KEEP: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub enum HubMsg {
    /// A publisher session begins with these codecs.
    Start {
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    },
    /// Codec parameters changed mid-session.
    Config {
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    },
    Frame(Frame),
    /// Timed metadata (a chat event) for the next part of every rendition.
    Metadata(Arc<TimedMetadata>),
    /// The publisher left; the stream may resume within the grace period.
    Stop,
    /// The stream is over: end the playlists.
    End,
}

struct Publisher {
    id: u64,
    last_data: Instant,
    kick: Arc<Notify>,
}

/// One live stream name.
pub struct Live {
    pub name: String,
    pub entry: Arc<StreamEntry>,
    tx: broadcast::Sender<HubMsg>,
    publisher: Mutex<Option<Publisher>>,
    /// Bumped on every claim, so a stale grace timer knows it lost.
    generation: AtomicU64,
    /// The source packager, each rung's packager and the transcoder.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// All live streams; the one place that decides who may publish.
pub struct Hub {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// Chat rooms, told when streams go live and end; set once at startup.
    pub chat: OnceLock<Arc<ChatRooms>>,
    lives: Mutex<HashMap<String, Arc<Live>>>,
    next_id: AtomicU64,
    /// Last good version of each pipeline file; re-read from disk when a stream starts.
    pipelines: Mutex<std::collections::BTreeMap<String, Pipeline>>,
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
    pub fn new(config: Arc<Config>, store: Arc<Store>, metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            metrics,
            chat: OnceLock::new(),
            lives: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            pipelines: Mutex::new(config.pipelines.clone()),
            config,
        })
    }

    /// The pipeline `name` as its file says now, or its last good version when the file was
    /// edited into something invalid (the problems are logged). Live streams keep theirs.
    pub fn current_pipeline(&self, name: &str) -> Option<Pipeline> {
        let mut known = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        let path = known.get(name).map(|p| p.path.clone()).unwrap_or_else(|| {
            std::path::Path::new(crate::config::PIPELINES_DIR).join(format!("{name}.toml"))
        });
        let fresh = crate::config::load_pipeline(name, &path).and_then(|p| {
            let problems = transcoder::check_elements(&p);
            if problems.is_empty() {
                Ok(p)
            } else {
                Err(problems)
            }
        });
        match fresh {
            Ok(p) => {
                if known.get(name).is_some_and(|old| *old != p) {
                    tracing::info!(
                        pipeline = name,
                        "pipeline file changed; new streams use the new version"
                    );
                }
                known.insert(name.to_string(), p.clone());
                Some(p)
            }
            Err(diags) => {
                for d in &diags {
                    tracing::warn!(pipeline = name, "{d}");
                }
                let old = known.get(name).cloned();
                if old.is_some() {
                    tracing::warn!(
                        pipeline = name,
                        "pipeline file has problems; using its last good version"
                    );
                }
                old
            }
        }
    }

    fn lives(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.lives.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `name` for a new publisher (the key was already checked).
    pub fn claim(self: &Arc<Self>, name: &str) -> Result<PublishHandle, Refusal> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(Notify::new());
        let mut lives = self.lives();
        if let Some(live) = lives.get(name).cloned() {
            let mut publisher = live.publisher.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = publisher.as_ref() {
                if p.last_data.elapsed() < STALE_PUBLISHER {
                    return Err(Refusal::AlreadyLive(name.to_string()));
                }
                tracing::warn!(
                    stream = name,
                    "previous publisher silent for {:?}; replacing it",
                    p.last_data.elapsed()
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
        let stream = self
            .config
            .stream(name)
            .ok_or_else(|| Refusal::UnknownStream(name.to_string()))?;
        let pipeline = self.current_pipeline(&stream.pipeline);
        let renditions = packager::renditions(pipeline.as_ref());
        let names: Vec<&str> = renditions.iter().map(|s| s.as_str()).collect();
        let hls = &self.config.hls;
        let cut = crate::package::segmenter::CutConfig::from_durations(
            hls.segment_target,
            hls.part_target,
        );
        let entry = self.store.create(
            name,
            &names,
            hls.segment_target,
            cut.part_target_secs(),
            hls.window,
        );
        let (tx, rx) = broadcast::channel(HUB_CAPACITY);
        let live = Arc::new(Live {
            name: name.to_string(),
            entry: entry.clone(),
            tx,
            publisher: Mutex::new(Some(Publisher {
                id,
                last_data: Instant::now(),
                kick: kick.clone(),
            })),
            generation: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
        });
        let leads = Arc::new(CutLog::default());
        let passthrough = pipeline.as_ref().is_none_or(|p| p.source);
        let mut tasks = vec![tokio::spawn(packager::run(
            entry.clone(),
            passthrough.then_some(0),
            cut,
            rx,
            self.metrics.clone(),
            leads.clone(),
        ))];
        if let Some(p) = pipeline.filter(|p| !p.rungs.is_empty()) {
            let first = usize::from(p.source);
            let mut outputs = Vec::new();
            for (i, rung) in p.rungs.iter().enumerate() {
                let (tx, rx) = tokio::sync::mpsc::channel(transcoder::RUNG_OUT_QUEUE);
                // Until measured, advertise the video bitrate plus a typical AAC track.
                let nominal =
                    (rung.bitrate_kbps as u64 + rung.audio_kbps.unwrap_or(128) as u64) * 1000;
                tasks.push(tokio::spawn(packager::run_rung(
                    entry.clone(),
                    first + i,
                    cut,
                    rx,
                    self.metrics.clone(),
                    leads.clone(),
                    nominal,
                )));
                outputs.push(transcoder::RungOutput {
                    rung: rung.clone(),
                    tx,
                });
            }
            match transcoder::spawn(
                name.to_string(),
                p,
                live.tx.subscribe(),
                outputs,
                self.metrics.clone(),
            ) {
                Ok(t) => tasks.push(t),
                Err(e) => tracing::error!(stream = name, "transcoded rungs are off: {e}"),
            }
        }
        *live.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        lives.insert(name.to_string(), live.clone());
        tracing::info!(stream = name, "stream live");
        if let Some(chat) = self.chat.get() {
            chat.stream_live(name);
        }
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

    /// Whether [`Hub::claim`] would refuse `name` as already live right now; lets SRT refuse
    /// in its handshake instead of accepting and then closing.
    pub fn check_claim(&self, name: &str) -> Result<(), Refusal> {
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
            Err(Refusal::AlreadyLive(name.to_string()))
        } else {
            Ok(())
        }
    }

    /// Puts a timed metadata event into every rendition of `name`'s stream (from the next
    /// part on). False when the stream is not live (nothing to carry it).
    pub fn send_metadata(&self, name: &str, event: Arc<TimedMetadata>) -> bool {
        let lives = self.lives();
        match lives.get(name) {
            Some(live) => live.tx.send(HubMsg::Metadata(event)).is_ok(),
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
        let _ = live.tx.send(HubMsg::Stop);
        let generation = live.generation.load(Ordering::Relaxed);
        let grace = self.config.hls.grace;
        let hub = self.clone();
        let live = live.clone();
        tracing::info!(stream = %live.name, "publisher gone; playlist ends in {:?} unless it returns", grace);
        // Dropped while the runtime shuts down: shutdown() ends the playlists itself.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(grace).await;
            hub.end_if_idle(&live, generation).await;
        });
    }

    async fn end_if_idle(&self, live: &Arc<Live>, generation: u64) {
        {
            let mut lives = self.lives();
            let idle = live.publisher.lock().map(|p| p.is_none()).unwrap_or(false);
            if !idle || live.generation.load(Ordering::Relaxed) != generation {
                return;
            }
            if lives.get(&live.name).is_some_and(|l| Arc::ptr_eq(l, live)) {
                lives.remove(&live.name);
            }
        }
        tracing::info!(stream = %live.name, "stream ended");
        if let Some(chat) = self.chat.get() {
            chat.stream_ended(&live.name);
        }
        Self::finish(live).await;
        self.store.sweep(ENDED_KEEP);
    }

    async fn finish(live: &Arc<Live>) {
        let _ = live.tx.send(HubMsg::End);
        let tasks = std::mem::take(&mut *live.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!(stream = %live.name, "packager or transcoder did not finish in time");
            }
        }
        // The packager normally ends the playlist; make sure even if it lagged out.
        live.entry.end();
    }

    /// Server shutdown: end every playlist and flush.
    pub async fn shutdown(&self) {
        let lives: Vec<Arc<Live>> = self.lives().drain().map(|(_, l)| l).collect();
        for live in &lives {
            if let Some(chat) = self.chat.get() {
                chat.stream_ended(&live.name);
            }
            Self::finish(live).await;
        }
    }
}

impl PublishHandle {
    pub fn name(&self) -> &str {
        &self.live.name
    }

    /// Sends to every consumer; never waits (full consumers lose their oldest messages).
    pub fn send(&self, msg: HubMsg) {
        if matches!(msg, HubMsg::Frame(_)) {
            if let Ok(mut p) = self.live.publisher.lock() {
                if let Some(p) = p.as_mut().filter(|p| p.id == self.id) {
                    p.last_data = Instant::now();
                }
            }
        }
        let _ = self.live.tx.send(msg);
    }

    /// A second receiver, for consumers other than the packager.
    pub fn subscribe(&self) -> broadcast::Receiver<HubMsg> {
        self.live.tx.subscribe()
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

    #[test]
    fn an_edited_pipeline_applies_to_new_streams_and_a_broken_edit_falls_back() {
        let dir = std::env::temp_dir().join(format!("ferrocast-hub-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pipelines")).unwrap();
        let file = dir.join("pipelines/p.toml");
        std::fs::write(
            dir.join("c.toml"),
            "[[stream]]\nname = \"a\"\nkey = \"k\"\npipeline = \"p\"\n",
        )
        .unwrap();
        std::fs::write(&file, "description = \"one\"\n").unwrap();
        let config = crate::config::load_with_base(&dir.join("c.toml"), &dir).unwrap();
        let hub = Hub::new(Arc::new(config), Arc::new(Store::default()), Arc::default());
        let desc = |hub: &Hub| hub.current_pipeline("p").and_then(|p| p.description);
        assert_eq!(desc(&hub).as_deref(), Some("one"));
        std::fs::write(&file, "description = \"two\"\n").unwrap();
        assert_eq!(
            desc(&hub).as_deref(),
            Some("two"),
            "edits apply at the next start"
        );
        std::fs::write(&file, "description = \"three\"\nbogus = 1\n").unwrap();
        assert_eq!(
            desc(&hub).as_deref(),
            Some("two"),
            "a broken edit keeps the last good version"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(desc(&hub).as_deref(), Some("two"), "so does a deleted file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
