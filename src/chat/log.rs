//! The chat log behind the rooms: one of two, chosen by `[cluster]`.
//!
//! - [`ChatLog::Local`]: the node's own SQLite log ([`super::store`]); a node on its own.
//! - [`ChatLog::Cluster`]: the cluster's JetStream stream ([`super::cluster`]), shared by
//!   every node.
//!
//! The room glue asks the log to store, delete and read; what differs between the two (who
//! broadcasts a stored message, where moderation lives) is handled where the glue matches on
//! this enum.

use std::sync::Arc;

use super::cluster::ClusterChat;
use super::protocol::ChatMessage;
use super::store::{ChatStore, StoreError};

/// The chat log of this node: its own, or the cluster's.
#[derive(Clone)]
pub enum ChatLog {
    Local(ChatStore),
    Cluster(Arc<ClusterChat>),
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Local(#[from] StoreError),
    #[error("chat log (NATS JetStream): {0}")]
    Cluster(String),
}

impl ChatLog {
    /// Undeleted messages of `stream` with `from <= pdt < to` (UNIX ms), in timeline order
    /// (`pdt`, then `id`), at most `limit`. Blocking: call it on the blocking pool.
    pub fn range(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, LogError> {
        match self {
            ChatLog::Local(store) => Ok(store.range(stream, from, to, limit)?),
            ChatLog::Cluster(c) => c
                .range_blocking(stream, from, to, limit)
                .map_err(LogError::Cluster),
        }
    }
}
