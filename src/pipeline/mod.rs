//! Transcoding pipelines: the operator's ladder (`pipelines/NAME.toml`) and the GStreamer
//! transcoder that turns one live source into the ladder's rungs.
//!
//! - [`ladder`]: the pipeline file model and rung selection, now in [`crate::config::ladder`].
//! - [`transcoder`]: GStreamer glue: decode once, one encoder pipeline per rung.
//! - [`follow`]: where the source rendition cut its segments, so every rung cuts alike.

pub mod follow;
/// Old path of [`crate::config::ladder`], kept until its users import it from there.
pub mod ladder {
    pub use crate::config::ladder::*;
}
pub mod transcoder;
