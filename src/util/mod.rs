//! The bottom layer beside [`crate::media`]: small helpers every other module may use and
//! that import nothing from the crate.
//!
//! - [`time`]: the wall clock as UNIX milliseconds (program date-time, chat stamps, lag).
//! - [`percent`]: the one percent-decoder and query-string reader.
//! - [`body`]: the HTTP response body type shared by the origin routes and the chat upgrade.

pub mod body;
pub mod percent;
pub mod time;
