//! The live supervisor: turns a hub stream into renditions in the origin store.
//!
//! It subscribes to the hub's [`Lifecycle`] events. For each stream that goes live it reads
//! the stream's pipeline file and checks its GStreamer elements (off the runtime threads,
//! see [`PipelineSource`]), creates the store entry, and starts one [`rendition`] task per
//! rendition plus the transcoder. When the stream ends it lets them flush and ends the
//! playlists. Every stream is wired by its own task, so a slow pipeline check for one stream
//! never delays another.
//!
//! - [`rendition`]: the task that runs one rendition's segmenter into the store.

pub mod rendition;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::cluster::Directory;
use crate::config::{Config, Pipeline};
use crate::hub::{Feed, Hub, Lifecycle};
use crate::metrics::Metrics;
use crate::package::follow::CutLog;
use crate::package::segmenter::{CutConfig, Segmenter};
use crate::store::{Store, StreamEntry, ENDED_KEEP};
use crate::transcode;

/// How long a stream's tasks get to flush their last parts when it ends.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Where the supervisor gets a stream's pipeline: a blocking call (file reads, GStreamer
/// element checks) that is always run on the blocking pool.
pub type PipelineSource = Arc<dyn Fn(&str) -> Option<Pipeline> + Send + Sync>;

/// The live supervisor; see the module docs.
pub struct Supervisor {
    config: Arc<Config>,
    hub: Arc<Hub>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    pipelines: PipelineSource,
    /// The cluster's stream directory (None on a node on its own).
    directory: Option<Arc<Directory>>,
    /// Each live stream's task, fed the stream's later lifecycle events.
    streams: Mutex<HashMap<String, StreamTask>>,
    /// Tasks of ended streams still flushing (awaited at shutdown).
    finishing: Mutex<Vec<JoinHandle<()>>>,
}

struct StreamTask {
    events: mpsc::UnboundedSender<Lifecycle>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// A supervisor whose pipelines come from the files (see [`PipelineFiles`]), registering
    /// its streams in the cluster's `directory` when there is one.
    pub fn new(
        config: Arc<Config>,
        hub: Arc<Hub>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        directory: Option<Arc<Directory>>,
    ) -> Arc<Supervisor> {
        let files = Arc::new(PipelineFiles::new(&config));
        let pipelines: PipelineSource = Arc::new(move |name| files.current(name));
        let mut s = Self::build(config, hub, store, metrics, pipelines);
        s.directory = directory;
        Arc::new(s)
    }

    /// A supervisor with its own pipeline source (tests use a slow one).
    pub fn with_pipelines(
        config: Arc<Config>,
        hub: Arc<Hub>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        pipelines: PipelineSource,
    ) -> Arc<Supervisor> {
        Arc::new(Self::build(config, hub, store, metrics, pipelines))
    }

    fn build(
        config: Arc<Config>,
        hub: Arc<Hub>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        pipelines: PipelineSource,
    ) -> Supervisor {
        Supervisor {
            config,
            hub,
            store,
            metrics,
            pipelines,
            directory: None,
            streams: Mutex::new(HashMap::new()),
            finishing: Mutex::new(Vec::new()),
        }
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, StreamTask>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles the hub's events until the hub is gone; spawn once.
    pub async fn run(self: Arc<Self>, mut events: broadcast::Receiver<Lifecycle>) {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "live supervisor fell behind the hub's events");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            self.handle(event);
        }
    }

    fn handle(self: &Arc<Self>, event: Lifecycle) {
        let name = event.name().to_string();
        if let Lifecycle::Live { feed, .. } = &event {
            let (tx, rx) = mpsc::unbounded_channel();
            // A root span: the stream's own lines, whatever spawned it.
            let span = tracing::info_span!(parent: None, "live", stream = %name);
            let task = tokio::spawn(
                self.clone()
                    .stream(name.clone(), feed.clone(), rx)
                    .instrument(span),
            );
            if let Some(old) = self.streams().insert(name, StreamTask { events: tx, task }) {
                self.finish_later(old.task);
            }
            return;
        }
        let ended = matches!(event, Lifecycle::Ended { .. });
        let mut streams = self.streams();
        if let Some(s) = streams.get(&name) {
            let _ = s.events.send(event);
        }
        if ended {
            if let Some(s) = streams.remove(&name) {
                drop(streams);
                self.finish_later(s.task);
            }
        }
    }

    fn finish_later(&self, task: JoinHandle<()>) {
        let mut finishing = self.finishing.lock().unwrap_or_else(|e| e.into_inner());
        finishing.retain(|t| !t.is_finished());
        finishing.push(task);
    }

    /// One stream's life: wire its renditions, then wait for its end and let them flush. Runs
    /// in the stream's span, as do [`Self::pipeline_for`] and [`Self::wire`].
    async fn stream(
        self: Arc<Self>,
        name: String,
        feed: Feed,
        mut events: mpsc::UnboundedReceiver<Lifecycle>,
    ) {
        let Some(rx) = feed.take_from_claim() else {
            tracing::error!("stream feed already taken; not served");
            return;
        };
        if let Some(dir) = &self.directory {
            // The claim was judged on the in-memory mirror, which may lag (NATS just came
            // back): ask the bucket before taking the name over.
            if let Some(owner) = dir.confirm_elsewhere(&name).await {
                tracing::warn!(node = %owner.node, "stream is being published on another node; this publisher is refused");
                self.hub.end_now(&name);
                return;
            }
        }
        let pipeline = self.pipeline_for(&name).await;
        let (entry, tasks) = self.wire(&name, pipeline, rx, &feed);
        let mut publishing = true;
        let mut served = true;
        let mut tick = tokio::time::interval(crate::cluster::directory::HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = tick.tick(), if self.directory.is_some() => {
                    if let Some(dir) = &self.directory {
                        if served && dir.moved_away(&name) {
                            // Its publisher went on elsewhere: that node's playlist is the
                            // stream now, and this origin proxies it.
                            tracing::info!("stream moved to another node; no longer served from here");
                            self.store.remove(&entry);
                            served = false;
                            // A publisher returning here later starts afresh and takes the
                            // stream back from the newer owner's record.
                            self.hub.end_now(&name);
                        } else if served {
                            dir.refresh(&name, publishing, newest(&entry));
                        }
                    }
                    continue;
                }
            };
            let Some(event) = event else { break };
            match event {
                Lifecycle::Ended { .. } => break,
                Lifecycle::Reconnected { session, .. } => {
                    tracing::info!(session, "publisher back; the playlist continues");
                    publishing = true;
                    if let Some(dir) = self.directory.as_ref().filter(|_| served) {
                        dir.update(&name, true, newest(&entry));
                    }
                }
                Lifecycle::Left { .. } => {
                    publishing = false;
                    if let Some(dir) = self.directory.as_ref().filter(|_| served) {
                        dir.update(&name, false, newest(&entry));
                    }
                }
                Lifecycle::CodecChanged { session, .. } => {
                    tracing::info!(session, "codecs changed");
                }
                Lifecycle::Live { .. } => {}
            }
        }
        if let Some(dir) = &self.directory {
            dir.release(&name, &entry.epoch);
        }
        for task in tasks {
            if tokio::time::timeout(FINISH_WAIT, task).await.is_err() {
                tracing::warn!("rendition or transcoder did not finish in time");
            }
        }
        // The rendition tasks normally end the playlist; make sure even if one lagged out.
        entry.end();
        self.store.sweep(ENDED_KEEP);
    }

    /// The stream's pipeline, from the blocking pool.
    async fn pipeline_for(&self, name: &str) -> Option<Pipeline> {
        let pipeline_name = self.config.stream(name)?.pipeline.clone();
        let source = self.pipelines.clone();
        match tokio::task::spawn_blocking(move || source(&pipeline_name)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "pipeline check failed; serving the source only");
                None
            }
        }
    }

    /// Creates the store entry and starts the rendition tasks and the transcoder.
    fn wire(
        &self,
        name: &str,
        pipeline: Option<Pipeline>,
        rx: broadcast::Receiver<crate::hub::HubMsg>,
        feed: &Feed,
    ) -> (Arc<StreamEntry>, Vec<JoinHandle<()>>) {
        let renditions = rendition::renditions(pipeline.as_ref());
        let names: Vec<&str> = renditions.iter().map(|s| s.as_str()).collect();
        let hls = &self.config.hls;
        let cut = CutConfig::from_durations(hls.segment_target, hls.part_target);
        let entry = self.store.create(
            name,
            &names,
            hls.segment_target,
            cut.part_target_secs(),
            hls.window,
        );
        let continuation = self
            .directory
            .as_ref()
            .and_then(|d| d.take_over(name, &entry.epoch));
        let segmenter = match continuation {
            Some(c) => {
                for r in &entry.renditions {
                    r.continue_discontinuities(c.discontinuity);
                }
                Segmenter::continuing(cut, c.next_msn)
            }
            None => Segmenter::new(cut),
        };
        let leads = Arc::new(CutLog::default());
        let passthrough = pipeline.as_ref().is_none_or(|p| p.source);
        let source = rendition::run(
            entry.clone(),
            passthrough.then_some(0),
            segmenter,
            rx,
            self.metrics.clone(),
            leads.clone(),
        );
        let span = rendition::span(name, rendition::SOURCE_RENDITION);
        let mut tasks = vec![tokio::spawn(source.instrument(span))];
        if let Some(p) = pipeline.filter(|p| !p.rungs.is_empty()) {
            let first = usize::from(p.source);
            let mut outputs = Vec::new();
            for (i, rung) in p.rungs.iter().enumerate() {
                let (tx, rx) = mpsc::channel(transcode::RUNG_OUT_QUEUE);
                // Until measured, advertise the video bitrate plus a typical AAC track.
                let nominal =
                    (rung.bitrate_kbps as u64 + rung.audio_kbps.unwrap_or(128) as u64) * 1000;
                let packager = rendition::run_rung(
                    entry.clone(),
                    first + i,
                    cut,
                    rx,
                    self.metrics.clone(),
                    leads.clone(),
                    nominal,
                );
                let span = rendition::span(name, &rung.name);
                tasks.push(tokio::spawn(packager.instrument(span)));
                outputs.push(transcode::RungOutput {
                    rung: rung.clone(),
                    tx,
                });
            }
            let (start, rx) = feed.join();
            match transcode::spawn(
                name.to_string(),
                p,
                start,
                rx,
                outputs,
                self.metrics.clone(),
            ) {
                Ok(t) => tasks.push(t),
                Err(e) => tracing::error!(error = %e, "transcoded rungs are off"),
            }
        }
        tracing::info!(renditions = ?renditions, "renditions wired");
        (entry, tasks)
    }

    /// Server shutdown, after [`crate::hub::Hub::shutdown`]: waits for every stream's tasks to
    /// flush and end their playlists.
    pub async fn shutdown(&self) {
        let live: Vec<(String, StreamTask)> = self.streams().drain().collect();
        let mut tasks =
            std::mem::take(&mut *self.finishing.lock().unwrap_or_else(|e| e.into_inner()));
        for (name, t) in live {
            let _ = t.events.send(Lifecycle::Ended { name });
            tasks.push(t.task);
        }
        for task in tasks {
            if tokio::time::timeout(FINISH_WAIT * 2, task).await.is_err() {
                tracing::warn!("a stream did not finish in time at shutdown");
            }
        }
    }
}

/// The newest segment of the stream's first rendition, for the directory.
fn newest(entry: &StreamEntry) -> Option<(u64, u64)> {
    entry.renditions.first().and_then(|r| r.newest_segment())
}

/// Pipeline files as they are on disk now, with the last good version of each kept for when
/// an edit breaks one. Blocking: reads files and loads GStreamer.
pub struct PipelineFiles {
    known: Mutex<BTreeMap<String, Pipeline>>,
}

impl PipelineFiles {
    pub fn new(config: &Config) -> PipelineFiles {
        PipelineFiles {
            known: Mutex::new(config.pipelines.clone()),
        }
    }

    /// The pipeline `name` as its file says now, or its last good version when the file was
    /// edited into something invalid (the problems are logged). Live streams keep theirs.
    pub fn current(&self, name: &str) -> Option<Pipeline> {
        let path = {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            known.get(name).map(|p| p.path.clone()).unwrap_or_else(|| {
                Path::new(crate::config::PIPELINES_DIR).join(format!("{name}.toml"))
            })
        };
        // No lock held while reading the file and loading GStreamer.
        let fresh = crate::config::load_pipeline(name, &path).and_then(|p| {
            let problems = transcode::check_elements(&p);
            if problems.is_empty() {
                Ok(p)
            } else {
                Err(problems)
            }
        });
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StreamConfig;
    use crate::hub::{Hub, HubMsg};
    use std::time::Instant;

    fn config() -> Config {
        let mut c = Config::for_tests();
        c.streams = ["slow", "fast"]
            .iter()
            .map(|n| StreamConfig {
                name: n.to_string(),
                key: "k".into(),
                pipeline: format!("{n}-pipeline"),
                passphrase: None,
            })
            .collect();
        c
    }

    async fn wait_for(store: &Store, name: &str, within: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if store.get(name).is_some() {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    // One runtime worker: if the slow pipeline check ran on it, nothing else could progress.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_slow_pipeline_check_does_not_delay_another_stream() {
        const SLOW: Duration = Duration::from_secs(3);
        let store = Arc::new(Store::default());
        let pipelines: PipelineSource = Arc::new(|name| {
            if name == "slow-pipeline" {
                std::thread::sleep(SLOW); // a GStreamer element check that takes seconds
            }
            None
        });
        let hub = Hub::new(Duration::from_secs(10));
        let supervisor = Supervisor::with_pipelines(
            Arc::new(config()),
            hub.clone(),
            store.clone(),
            Arc::default(),
            pipelines,
        );
        tokio::spawn(supervisor.clone().run(hub.events()));
        let start = || HubMsg::Start {
            video: None,
            audio: None,
        };
        let slow = hub.claim("slow").unwrap();
        slow.send(start());
        let fast = hub.claim("fast").unwrap();
        fast.send(start());
        let fast_after = wait_for(&store, "fast", SLOW).await;
        assert!(
            fast_after.is_some_and(|t| t < SLOW / 2),
            "the second stream waited for the first one's pipeline check: {fast_after:?}"
        );
        assert!(
            store.get("slow").is_none(),
            "the slow check is still running"
        );
        assert!(
            wait_for(&store, "slow", SLOW * 4).await.is_some(),
            "the slow stream is wired once its check returns"
        );
        drop((slow, fast));
        hub.shutdown();
        supervisor.shutdown().await;
        for name in ["slow", "fast"] {
            assert!(
                store.get(name).is_some_and(|e| e.is_ended()),
                "{name} ended"
            );
        }
    }
}
