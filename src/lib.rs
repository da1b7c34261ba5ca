//! ferrocast: a live-streaming media server. RTMP/SRT in, Low-Latency HLS out, chat beside.
//!
//! # Layout
//! The flow: ingest → hub → live supervisor → package / transcode → store → origin, with chat
//! beside. Layers, each importing only from the layers below it (docs/architecture.md):
//!
//! 1. Bottom: [`util`] (time, percent-decoding, HTTP body), [`media`] (frames, H.264/AAC).
//! 2. Pure cores: [`config`] (server config, pipeline files and ladders, diagnostics),
//!    [`package`] (CMAF boxes, segmenter, follower cuts, LL-HLS playlists, emsg).
//! 3. Services: [`hub`] (live names, publish arbitration, grace, fan-out, lifecycle events),
//!    [`store`] (the origin store: every rendition's live window), [`metrics`], [`cluster`]
//!    (NATS: the stream directory; absent without `[cluster]`).
//! 4. Adapters: [`ingest`] (RTMP, SRT; their parsers and auth are pure), [`live`] (the
//!    supervisor that wires renditions), [`transcode`] (the GStreamer transcoder), [`chat`]
//!    (rooms, log, WebSocket), [`origin`] (HTTP routes, API, cache rules).
//! 5. Composition root: [`server`] (and `main.rs`) wire everything together.

pub mod chat;
pub mod cluster;
pub mod config;
pub mod hub;
pub mod ingest;
pub mod live;
pub mod media;
pub mod metrics;
pub mod origin;
pub mod package;
pub mod server;
pub mod store;
pub mod transcode;
pub mod util;
