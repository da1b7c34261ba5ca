//! Ingest: publishers in, [`crate::media::Frame`]s out to the stream hub.
//!
//! Pure: `flv` (tag bodies → frames), `mpegts` (TS → frames), `interleave` (bursty TS audio
//! ordered with its video), `auth` (stream keys, SRT streamids, admission). Adapters: `rtmp`
//! and `srt` (sockets and sessions), `session` (what every accepted publish does).

pub mod auth;
pub mod flv;
pub mod interleave;
pub mod mpegts;
pub mod rtmp;
pub mod session;
pub mod srt;

use std::sync::Arc;

use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// What the ingest adapters work with: the hub they publish into, the configuration that
/// says who may publish, and the counters.
pub struct Ingest {
    pub hub: Arc<Hub>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
}
