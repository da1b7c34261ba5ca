//! Transcoding pipelines: the operator's ladder (`pipelines/NAME.toml`) and the GStreamer
//! transcoder that turns one live source into the ladder's rungs.
//!
//! - [`ladder`]: pipeline file model, validation, rung selection for a source (sans-IO).
//! - [`transcoder`]: GStreamer glue: decode once, one encoder pipeline per rung.

pub mod ladder;
pub mod transcoder;
