//! What every ingest does with an accepted publish, whatever the protocol: the hub session
//! starts with the first decodable frame and the codecs known by then; codec changes after
//! that are announced; frames of a codec not yet configured are dropped (undecodable).

use std::sync::atomic::Ordering;

use crate::hub::{HubMsg, PublishHandle};
use crate::media::{AudioConfig, Frame, Track, VideoConfig};
use crate::metrics::Metrics;

/// One publisher's session in the hub.
pub struct PublishSession {
    pub handle: PublishHandle,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    started: bool,
}

impl PublishSession {
    /// A session on `handle`, with the codecs already known (RTMP keeps them across a
    /// republish on the same connection).
    pub fn new(
        handle: PublishHandle,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
    ) -> Self {
        PublishSession {
            handle,
            video,
            audio,
            started: false,
        }
    }

    pub fn name(&self) -> &str {
        self.handle.name()
    }

    pub fn video(&self) -> Option<&VideoConfig> {
        self.video.as_ref()
    }

    pub fn audio(&self) -> Option<&AudioConfig> {
        self.audio.as_ref()
    }

    /// The codecs known when the session ends.
    pub fn into_configs(self) -> (Option<VideoConfig>, Option<AudioConfig>) {
        (self.video, self.audio)
    }

    /// Sets the codecs; once started, a change is announced to the consumers.
    pub fn set_config(&mut self, video: Option<VideoConfig>, audio: Option<AudioConfig>) {
        if video == self.video && audio == self.audio {
            return;
        }
        self.video = video;
        self.audio = audio;
        if self.started {
            self.handle.send(HubMsg::Config {
                video: self.video.clone(),
                audio: self.audio.clone(),
            });
        }
    }

    /// Sends a frame; the first one starts the session with the codecs seen so far.
    pub fn emit(&mut self, frame: Frame, metrics: &Metrics) {
        let known = match frame.track {
            Track::Video => self.video.is_some(),
            Track::Audio => self.audio.is_some(),
        };
        if !known {
            return; // no configuration yet: undecodable
        }
        if !self.started {
            self.started = true;
            self.handle.send(HubMsg::Start {
                video: self.video.clone(),
                audio: self.audio.clone(),
            });
        }
        metrics.ingest_frames.fetch_add(1, Ordering::Relaxed);
        self.handle.send(HubMsg::Frame(frame));
    }
}
