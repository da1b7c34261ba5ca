//! A ferrocast cluster over NATS (`[cluster]`; docs/cluster.md). Absent: one node, no NATS.
//!
//! - this module: the connection (automatic reconnection, JetStream context) and the node's
//!   identity.
//! - [`directory`]: the stream directory — which node owns which live stream, kept in a
//!   JetStream key-value bucket with expiry, heartbeated by the owner and mirrored in memory
//!   on every node, so the claim gate and the origin's routing read it without a round trip.
//!
//! Chat over NATS lives in `chat::cluster`; the origin proxies streams owned by other nodes.

pub mod directory;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use crate::config::ClusterConfig;
pub use directory::{Directory, Owner};

/// How long to wait for the first connection at start before starting without NATS (the
/// client keeps reconnecting in the background; video never waits for it).
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// This node's membership: NATS connection, JetStream, the directory.
pub struct Cluster {
    pub node: String,
    /// This node's origin as other nodes reach it.
    pub advertise: String,
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub directory: Arc<Directory>,
}

/// Why joining the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot connect to NATS ({servers}): {source}")]
    Connect {
        servers: String,
        source: async_nats::ConnectError,
    },
    #[error("NATS JetStream is not usable (is the server started with -js?): {0}")]
    JetStream(String),
}

impl Cluster {
    /// Connects to NATS (retrying in the background until `CONNECT_WAIT`), sets up the
    /// directory bucket and starts mirroring it.
    pub async fn join(config: &ClusterConfig, grace: Duration) -> Result<Arc<Cluster>, JoinError> {
        let servers = config.nats.join(", ");
        let addrs: Vec<async_nats::ServerAddr> =
            config.nats.iter().filter_map(|u| u.parse().ok()).collect();
        let node = config.node.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("ferrocast-{node}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let node = node.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(node = %node, "connected to NATS")
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(node = %node, "disconnected from NATS; reconnecting")
                        }
                        other => tracing::info!(node = %node, event = %other, "NATS"),
                    }
                }
            });
        let client = tokio::time::timeout(CONNECT_WAIT, options.connect(addrs))
            .await
            .map_err(|_| {
                JoinError::JetStream(format!(
                    "no NATS server answered within {CONNECT_WAIT:?} at {servers}"
                ))
            })?
            .map_err(|source| JoinError::Connect {
                servers: servers.clone(),
                source,
            })?;
        let jetstream = jetstream::new(client.clone());
        let directory = Directory::open(&jetstream, &config.node, &config.advertise, grace)
            .await
            .map_err(JoinError::JetStream)?;
        tracing::info!(node = %config.node, advertise = %config.advertise, nats = %servers, "joined the cluster");
        Ok(Arc::new(Cluster {
            node: config.node.clone(),
            advertise: config.advertise.clone(),
            client,
            jetstream,
            directory,
        }))
    }

    /// Whether the NATS connection is up right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
