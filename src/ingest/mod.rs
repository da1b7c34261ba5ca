//! Ingest: publishers in, [`crate::media::Frame`]s out to the stream hub.

pub mod auth;
pub mod flv;
pub mod interleave;
pub mod mpegts;
pub mod rtmp;
pub mod session;
pub mod srt;
