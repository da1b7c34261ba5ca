//! The composition root: creates the services (hub, origin store, chat, metrics), subscribes
//! the live supervisor and chat to the hub's lifecycle events, binds the listeners and runs the
//! adapters (RTMP, SRT, HTTP) until SIGINT/SIGTERM. The one place that knows every module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::chat::ChatRooms;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::hub::Hub;
use crate::ingest::Ingest;
use crate::live::Supervisor;
use crate::metrics::Metrics;
use crate::origin::http::{self, App, ChatUpgrade};
use crate::origin::proxy::Proxy;
use crate::store::{Store, ENDED_KEEP};

/// Log filter when `RUST_LOG` is unset. srt-protocol logs a warning per malformed datagram,
/// which lets anyone flood the log with junk UDP; our own SRT session logs say what matters.
pub const DEFAULT_LOG_FILTER: &str = "info,srt_protocol=error,srt_tokio=error";

/// Where the player pages live (relative to the working directory, like all paths).
pub const WEB_DIR: &str = "web";

/// The listeners a running server is bound to (ports resolved when 0 was asked).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    /// UDP.
    pub srt: SocketAddr,
}

/// A started server.
pub struct Server {
    pub bound: Bound,
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    supervisor: Arc<Supervisor>,
}

impl Server {
    /// Binds every listener and spawns the accept loops on the current runtime.
    pub async fn start(config: Config) -> std::io::Result<Server> {
        let config = Arc::new(config);
        let http_l = TcpListener::bind(config.server.http).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen for HTTP on {}: {e}", config.server.http),
            )
        })?;
        let rtmp_l = TcpListener::bind(config.server.rtmp).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen for RTMP on {}: {e}", config.server.rtmp),
            )
        })?;
        let srt_l = crate::ingest::srt::bind(config.server.srt, config.srt.latency)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen for SRT on udp {}: {e}", config.server.srt),
                )
            })?;
        let bound = Bound {
            http: http_l.local_addr()?,
            rtmp: rtmp_l.local_addr()?,
            srt: srt_l.local,
        };
        // Services.
        let metrics = Arc::new(Metrics::default());
        let store = Arc::new(Store::default());
        let hub = Hub::new(config.hls.grace);
        let cluster = match &config.cluster {
            Some(c) => Some(
                Cluster::join(c, config.hls.grace)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            ),
            None => None,
        };
        if let Some(c) = &cluster {
            hub.set_gate(c.directory.clone());
        }
        // In a cluster the chat log is the cluster's JetStream stream; on its own, SQLite.
        let chat = match &cluster {
            Some(c) => ChatRooms::clustered(&config, store.clone(), metrics.clone(), c.clone()),
            None => ChatRooms::new(&config, store.clone(), metrics.clone())
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        };
        // Subscribers of the hub's lifecycle events, subscribed before any listener accepts.
        let supervisor = Supervisor::new(
            config.clone(),
            hub.clone(),
            store.clone(),
            metrics.clone(),
            cluster.as_ref().map(|c| c.directory.clone()),
        );
        tokio::spawn(supervisor.clone().run(hub.events()));
        tokio::spawn(chat.clone().follow_streams(hub.events()));
        crate::chat::timed::spawn_carriers(&chat, &hub, &store, &config);
        tokio::spawn(chat.clone().run_timers());
        // Adapters.
        let rooms = chat.clone();
        let chat_upgrade: ChatUpgrade =
            Arc::new(move |name, req| crate::chat::ws::upgrade(&rooms, name, req));
        let app = Arc::new(App {
            config: config.clone(),
            hub: hub.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            chat,
            chat_upgrade,
            web_dir: PathBuf::from(WEB_DIR),
            proxy: cluster
                .as_ref()
                .map(|c| Proxy::new(c.directory.clone(), metrics.clone(), &config.hls)),
        });
        let ingest = Arc::new(Ingest {
            hub: hub.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
        });
        tokio::spawn(http::serve(http_l, app));
        tokio::spawn(crate::ingest::rtmp::serve(rtmp_l, ingest.clone()));
        tokio::spawn(crate::ingest::srt::serve(srt_l, ingest));
        let sweeper = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                sweeper.sweep(ENDED_KEEP);
            }
        });
        tracing::info!(http = %bound.http, rtmp = %bound.rtmp, srt = %bound.srt, "ferrocast listening");
        Ok(Server {
            bound,
            hub,
            store,
            supervisor,
        })
    }

    /// Ends every live playlist (EXT-X-ENDLIST) and flushes the last parts.
    pub async fn shutdown(&self) {
        self.hub.shutdown();
        self.supervisor.shutdown().await;
        // Let held requests see the final playlists before the process exits.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
