//! The HTTP origin: routes (playlists with LL-HLS blocking semantics, media objects, the
//! player pages), the JSON API, cache rules and LL-HLS query directives. It reads the origin
//! store ([`crate::store`]) and answers; it never writes media.

pub mod api;
pub mod cache;
pub mod http;
pub mod query;
