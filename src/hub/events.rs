//! What the hub tells the rest of the server: lifecycle events on one broadcast channel, and
//! each live stream's [`Feed`] of media messages.
//!
//! Services that react to streams (the live supervisor, chat rooms; later recording, the
//! cluster directory, webhooks) subscribe with [`crate::hub::Hub::events`]; the hub knows
//! none of them.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::media::{AudioConfig, Frame, VideoConfig};
use crate::package::emsg::TimedMetadata;

/// Lifecycle events a subscriber may fall behind before it loses the oldest. Events are rare
/// (a few per stream session), so losing one means a subscriber stalled for a long time.
pub const EVENTS_CAPACITY: usize = 4096;

/// Media messages of one stream, in publish order.
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
    /// Timed metadata (a chat event) for every rendition, from the part that reaches its PDT.
    Metadata(Arc<TimedMetadata>),
    /// The publisher left; the stream may resume within the grace period.
    Stop,
    /// The stream is over: end the playlists.
    End,
}

/// A change in a stream's life. `session` numbers publisher sessions (unique per process).
#[derive(Debug, Clone)]
pub enum Lifecycle {
    /// The stream's first publisher session started (its first decodable frame).
    Live {
        name: String,
        session: u64,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
        feed: Feed,
    },
    /// A publisher came back within the grace period: the same stream continues.
    Reconnected {
        name: String,
        session: u64,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    },
    /// The publisher left; the stream ends after the grace period unless one returns.
    Left { name: String, session: u64 },
    /// The codecs changed within a session.
    CodecChanged {
        name: String,
        session: u64,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    },
    /// The publisher left and did not return within the grace period, or the server stops.
    /// Every [`HubMsg::End`] has been sent before this.
    Ended { name: String },
}

impl Lifecycle {
    pub fn name(&self) -> &str {
        match self {
            Lifecycle::Live { name, .. }
            | Lifecycle::Reconnected { name, .. }
            | Lifecycle::CodecChanged { name, .. }
            | Lifecycle::Left { name, .. }
            | Lifecycle::Ended { name } => name,
        }
    }
}

/// One live stream's media messages: a bounded broadcast ring (a slow consumer loses the
/// oldest and resyncs; ingest never waits).
#[derive(Clone)]
pub struct Feed(Arc<FeedInner>);

struct FeedInner {
    tx: broadcast::Sender<HubMsg>,
    /// Subscribed at the claim and kept until taken, so the consumer that writes the live
    /// window sees every message from the stream's first one even though it is wired after
    /// the `Live` event (which may take a while: pipeline files, GStreamer checks).
    from_claim: Mutex<Option<broadcast::Receiver<HubMsg>>>,
    /// The codecs of the last `Start`/`Config`, for consumers that join a running stream.
    codecs: Mutex<Codecs>,
}

type Codecs = Option<(Option<VideoConfig>, Option<AudioConfig>)>;

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("receivers", &self.0.tx.receiver_count())
            .finish()
    }
}

impl Feed {
    pub(super) fn new(capacity: usize) -> Feed {
        let (tx, rx) = broadcast::channel(capacity);
        Feed(Arc::new(FeedInner {
            tx,
            from_claim: Mutex::new(Some(rx)),
            codecs: Mutex::new(None),
        }))
    }

    /// The receiver held since the stream was claimed (every message from the first); `None`
    /// once taken. Meant for the one consumer that must not miss the start (the live window).
    pub fn take_from_claim(&self) -> Option<broadcast::Receiver<HubMsg>> {
        self.0
            .from_claim
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A receiver from now on, with a `Start` carrying the current codecs first when a
    /// session is running (so the consumer can configure itself before the next keyframe).
    pub fn join(&self) -> (Option<HubMsg>, broadcast::Receiver<HubMsg>) {
        let codecs = self.0.codecs.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.0.tx.subscribe();
        let start = codecs
            .clone()
            .map(|(video, audio)| HubMsg::Start { video, audio });
        (start, rx)
    }

    /// Sends to every consumer; never waits. Codec messages are sent under the codec lock so
    /// that [`Feed::join`] sees each exactly once: in its snapshot or on its receiver.
    pub(super) fn send(&self, msg: HubMsg) {
        match &msg {
            HubMsg::Start { video, audio } | HubMsg::Config { video, audio } => {
                let mut codecs = self.0.codecs.lock().unwrap_or_else(|e| e.into_inner());
                *codecs = Some((video.clone(), audio.clone()));
                let _ = self.0.tx.send(msg);
            }
            HubMsg::Stop | HubMsg::End => {
                let mut codecs = self.0.codecs.lock().unwrap_or_else(|e| e.into_inner());
                *codecs = None;
                let _ = self.0.tx.send(msg);
            }
            _ => {
                let _ = self.0.tx.send(msg);
            }
        }
    }
}
