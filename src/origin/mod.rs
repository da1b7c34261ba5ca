//! The HTTP origin: the in-memory store, routes, and cache rules.

pub mod body;
pub mod cache;
pub mod http;
pub mod query;
pub mod store;
