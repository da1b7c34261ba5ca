//! Packaging: CMAF fMP4 boxes, the part/segment cutter and LL-HLS playlists. All sans-IO.

pub mod boxes;
pub mod cmaf;
pub mod emsg;
pub mod playlist;
pub mod segmenter;
