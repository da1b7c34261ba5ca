//! The HTTP origin: routes (playlists with LL-HLS blocking semantics, media objects, the
//! player pages), the JSON API, cache rules and LL-HLS query directives. It reads the origin
//! store ([`crate::store`]) and answers; it never writes media. In a cluster, streams other
//! nodes own are answered from their owner through [`proxy`].

pub mod api;
pub mod cache;
pub mod http;
pub mod proxy;
pub mod query;
