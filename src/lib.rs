//! ferrocast: a live-streaming media server. RTMP in, Low-Latency HLS out.
//!
//! # Layout
//! - [`config`]: `config/ferrocast.toml` and `pipelines/*.toml`, with file:line:col diagnostics.
//! - [`ingest`]: publishers in. `rtmp` (tokio glue around rml_rtmp), `flv` (tag bodies →
//!   frames, sans-IO), `srt` (glue around srt-tokio), `mpegts` (TS → frames, sans-IO),
//!   `interleave` (orders bursty TS audio with its video), `auth` (stream keys, streamids).
//! - [`media`]: the codec-neutral [`media::Frame`] and H.264/AAC configuration parsing.
//! - [`hub`]: one broadcast hub per live stream; who may publish; grace periods.
//! - [`packager`]: hub → segmenter → origin store, one task per rendition (the source, and each
//!   transcoded rung following the source's cuts).
//! - [`pipeline`]: pipeline files (`ladder`, sans-IO), the GStreamer `transcoder` (decode once,
//!   one encoder pipeline per rung) and `follow` (the source's cut decisions rungs copy).
//! - [`package`]: sans-IO CMAF boxes, the part/segment cutter, LL-HLS playlist text, and
//!   `emsg` (ID3 timed metadata in parts).
//! - [`origin`]: the in-memory store and the HTTP routes with LL-HLS blocking semantics.
//! - [`chat`]: one chat room per stream over WebSocket, its sans-IO room, limits and
//!   moderation, the durable SQLite log, and `timed` (each event into the media as emsg/ID3).
//! - [`api`], [`metrics`]: JSON stream list and Prometheus text.
//! - [`server`]: binds the listeners and runs everything until a signal.

pub mod api;
pub mod chat;
pub mod config;
pub mod hub;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod origin;
pub mod package;
pub mod packager;
pub mod pipeline;
pub mod server;
