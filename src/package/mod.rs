//! Packaging: CMAF fMP4 boxes, the part/segment cutter and LL-HLS playlists. All sans-IO.
//!
//! - [`boxes`], [`cmaf`]: box writing, init segments and fragments.
//! - [`segmenter`]: cuts frames into parts and segments (time passed in).
//! - [`follow`]: where the source rendition cut, so transcoded rungs cut alike.
//! - [`playlist`]: LL-HLS media and multivariant playlist text.
//! - [`emsg`]: timed metadata (ID3 in `emsg`) carried in parts.

pub mod boxes;
pub mod cmaf;
pub mod emsg;
pub mod follow;
pub mod playlist;
pub mod segmenter;
