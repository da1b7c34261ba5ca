//! SRT ingest: tokio glue around srt-tokio's listener, MPEG-TS demuxed by [`super::mpegts`].
//!
//! srt-tokio is young (its README says so), so nothing outside this module names it: the rest
//! of the server sees the same hub messages as from RTMP. Admission (streamid, key,
//! passphrase policy) is decided by the pure [`admit`] before the SRT handshake is answered,
//! so a refused caller gets an SRT reject code and creates nothing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use srt_protocol::options::{ByteCount, KeySize, Passphrase, SocketOptions};
use srt_protocol::packet::ServerRejectReason;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::RejectReason;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};

use super::auth::{self, Refusal, StreamKey};
use super::interleave::Interleaver;
use super::mpegts::{TsDemuxer, TsEvent, TsWarning};
use super::session::PublishSession;
use crate::config::Config;
use crate::hub::{Hub, PublishHandle};
use crate::media::Frame;
use crate::origin::store::unix_ms;

/// Time allowed for an accepted caller to finish the SRT handshake (key exchange included).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A publisher that sends nothing this long is gone (SRT keepalives arrive every second).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one demuxer warning per this interval per session; the rest are counted.
const WARN_INTERVAL: Duration = Duration::from_secs(2);
/// UDP receive buffer: 20 ms bursts of a 50 Mb/s stream fit.
const UDP_RECV_BUFFER: u64 = 4 << 20;

/// A bound SRT listener, ready for [`serve`].
pub struct Listener {
    pub local: SocketAddr,
    inner: SrtListener,
    incoming: SrtIncoming,
}

/// Binds the SRT listener (UDP) on `addr` with the configured receive latency.
pub async fn bind(addr: SocketAddr, latency: Duration) -> std::io::Result<Listener> {
    let mut options = SocketOptions::default();
    options.connect.local = addr;
    options.connect.udp_recv_buffer_size = ByteCount(UDP_RECV_BUFFER);
    let socket = srt_tokio::bind_socket(&options).await?;
    let local = socket.local_addr()?;
    let (inner, incoming) = SrtListener::builder()
        .latency(latency)
        .socket(socket)
        .bind(local)
        .await?;
    Ok(Listener {
        local,
        inner,
        incoming,
    })
}

/// Accepts callers until the process ends; one task per caller.
pub async fn serve(mut listener: Listener, hub: Arc<Hub>) {
    while let Some(request) = listener.incoming.incoming().next().await {
        let hub = hub.clone();
        tokio::spawn(async move { session(request, hub).await });
    }
    tracing::error!("SRT listener stopped");
    // Keep the listener alive for the loop's lifetime; dropping it closes the UDP socket.
    drop(listener.inner);
}

/// Who an admitted caller publishes as, and the passphrase its encryption must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub name: String,
    pub passphrase: Option<String>,
}

/// Decides whether a caller may publish (sans-IO): the streamid's key, or the `[srt]
/// default_stream` for callers without one; then the stream's passphrase policy.
pub fn admit(
    config: &Config,
    stream_id: Option<&str>,
    caller_encrypts: bool,
) -> Result<Admission, Refusal> {
    let name = match stream_id.filter(|s| !s.trim().is_empty()) {
        Some(raw) => {
            let sid = auth::parse_srt_stream_id(raw)?;
            let key = StreamKey {
                name: &sid.name,
                key: sid.key.as_deref(),
            };
            auth::authorize(config, &key)?.to_string()
        }
        None => match &config.srt.default_stream {
            Some(name) => name.clone(),
            None => return Err(Refusal::NoStreamId),
        },
    };
    let stream = config
        .stream(&name)
        .ok_or_else(|| Refusal::UnknownStream(name.clone()))?;
    match (&stream.passphrase, caller_encrypts) {
        (Some(p), true) => Ok(Admission {
            name,
            passphrase: Some(p.clone()),
        }),
        (Some(_), false) => Err(Refusal::PassphraseRequired(name)),
        (None, true) => Err(Refusal::NotEncrypted(name)),
        (None, false) => Ok(Admission {
            name,
            passphrase: None,
        }),
    }
}

/// The SRT access-control reject code (`SRT_REJX_*`) a caller sees for a refusal.
pub fn reject_code(r: &Refusal) -> ServerRejectReason {
    match r {
        Refusal::MissingName | Refusal::NoStreamId => ServerRejectReason::BadRequest,
        Refusal::UnknownStream(_) | Refusal::UnknownApp(_) => ServerRejectReason::Notfound,
        Refusal::MissingKey(_) | Refusal::WrongKey(_) => ServerRejectReason::Unauthorized,
        Refusal::AlreadyLive(_) => ServerRejectReason::Conflict,
        Refusal::UnsupportedMode(_) => ServerRejectReason::BadMode,
        Refusal::PassphraseRequired(_) | Refusal::NotEncrypted(_) => ServerRejectReason::Forbidden,
    }
}

/// Why an SRT session ended early.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error("{0}")]
    Media(#[from] super::mpegts::TsError),
    #[error("replaced by a newer publisher")]
    Replaced,
}

async fn session(request: ConnectionRequest, hub: Arc<Hub>) {
    let peer = request.remote();
    let raw_id = request.stream_id().map(|s| s.to_string());
    let shown = raw_id
        .as_deref()
        .map(auth::redact_stream_id)
        .unwrap_or_else(|| "(none)".to_string());
    let key_size = request.key_size();
    let encrypts = key_size != KeySize::Unspecified;
    let admitted = admit(&hub.config, raw_id.as_deref(), encrypts)
        .and_then(|a| hub.check_claim(&a.name).map(|()| a));
    let admission = match admitted {
        Ok(a) => a,
        Err(refusal) => {
            hub.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, streamid = %shown, "srt publish refused: {refusal}");
            let code = RejectReason::Server(reject_code(&refusal));
            if let Err(e) = request.reject(code).await {
                tracing::debug!(%peer, "srt reject not delivered: {e}");
            }
            return;
        }
    };
    let name = admission.name.clone();
    let keys = match admission.passphrase {
        Some(p) => match Passphrase::try_from(p) {
            Ok(passphrase) => Some(KeySettings {
                key_size,
                passphrase,
            }),
            Err(e) => {
                // The config checks the length; this only guards srt-protocol's own rules.
                tracing::error!(stream = %name, "srt passphrase unusable: {e}");
                let _ = request
                    .reject(RejectReason::Server(
                        ServerRejectReason::InternalServerError,
                    ))
                    .await;
                return;
            }
        },
        None => None,
    };
    let encrypted = keys.is_some();
    let socket = match tokio::time::timeout(HANDSHAKE_TIMEOUT, request.accept(keys)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            hub.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            // srt-tokio reports a failed key exchange only as a cancelled channel.
            let why = if encrypted {
                "wrong passphrase (the caller's key material did not decrypt)"
            } else {
                "handshake did not complete"
            };
            tracing::warn!(%peer, stream = %name, "srt publish refused: {why} [{e}]");
            return;
        }
        Err(_) => {
            hub.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, stream = %name, "srt publish refused: handshake timed out");
            return;
        }
    };
    let handle = match hub.claim(&name) {
        Ok(h) => h,
        Err(refusal) => {
            hub.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, stream = %name, "srt publish refused: {refusal}");
            return; // dropping the socket closes it
        }
    };
    hub.metrics.srt_connections.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, stream = %name, streamid = %shown, encrypted, "srt publish accepted");
    let mut ingest = Ingest::new(handle);
    match ingest.run(socket, &hub).await {
        Ok(()) => tracing::info!(%peer, stream = %name, "srt publisher finished"),
        Err(e) => {
            hub.metrics.srt_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, stream = %name, "srt session ended: {e}");
        }
    }
}

/// One accepted caller: payloads → demuxer → hub.
struct Ingest {
    publish: PublishSession,
    demux: TsDemuxer,
    interleave: Interleaver,
    /// Frames the interleaver released, reused between calls.
    due: Vec<Frame>,
    last_warn: Option<Instant>,
    muted_warnings: u64,
}

impl Ingest {
    fn new(publish: PublishHandle) -> Self {
        Ingest {
            publish: PublishSession::new(publish, None, None),
            demux: TsDemuxer::new(),
            interleave: Interleaver::new(false),
            due: Vec::new(),
            last_warn: None,
            muted_warnings: 0,
        }
    }

    async fn run(
        &mut self,
        mut socket: srt_tokio::SrtSocket,
        hub: &Hub,
    ) -> Result<(), SessionError> {
        let kicked = self.publish.handle.kicked.clone();
        let mut events = Vec::new();
        loop {
            let next = tokio::select! {
                r = tokio::time::timeout(IDLE_TIMEOUT, socket.next()) => {
                    r.map_err(|_| SessionError::Idle(IDLE_TIMEOUT))?
                }
                _ = kicked.notified() => return Err(SessionError::Replaced),
            };
            let Some(item) = next else {
                self.demux.finish(now_ms(), &mut events);
                self.dispatch(&mut events, hub);
                self.release_held(hub);
                return Ok(());
            };
            let (_, payload) = item?;
            hub.metrics
                .ingest_bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            let pushed = self.demux.push(&payload, now_ms(), &mut events);
            // Deliver what was complete before the error, then end the session.
            self.dispatch(&mut events, hub);
            pushed?;
        }
    }

    fn dispatch(&mut self, events: &mut Vec<TsEvent>, hub: &Hub) {
        for ev in events.drain(..) {
            match ev {
                TsEvent::Config { video, audio } => {
                    // Held frames belong to the previous configuration.
                    self.release_held(hub);
                    self.interleave.set_audio(audio.is_some());
                    if let Some(v) = &video {
                        tracing::info!(stream = self.publish.name(), codec = %v.codec_string(), width = v.width, height = v.height, "video config");
                    }
                    if let Some(a) = &audio {
                        tracing::info!(stream = self.publish.name(), codec = %a.codec_string(), rate = a.sample_rate, channels = a.channels, "audio config");
                    }
                    self.publish.set_config(video, audio);
                }
                TsEvent::Frame(frame) => {
                    self.interleave.push(frame, &mut self.due);
                    self.emit_due(hub);
                }
                TsEvent::Warning(w) => self.warn(&w),
            }
        }
    }

    fn release_held(&mut self, hub: &Hub) {
        self.interleave.flush(&mut self.due);
        self.emit_due(hub);
    }

    fn emit_due(&mut self, hub: &Hub) {
        for f in self.due.drain(..) {
            self.publish.emit(f, &hub.metrics);
        }
    }

    /// Logs survivable stream damage, at most once per [`WARN_INTERVAL`] (loss comes in bursts).
    fn warn(&mut self, what: &TsWarning) {
        let now = Instant::now();
        if self
            .last_warn
            .is_some_and(|t| now.duration_since(t) < WARN_INTERVAL)
        {
            self.muted_warnings += 1;
            return;
        }
        let muted = std::mem::take(&mut self.muted_warnings);
        self.last_warn = Some(now);
        tracing::warn!(stream = self.publish.name(), muted, "srt stream: {what}");
    }
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SrtConfig, StreamConfig};

    fn config(default_stream: Option<&str>) -> Config {
        let mut c = crate::config::Config::for_tests();
        c.streams = vec![
            StreamConfig {
                name: "open".into(),
                key: "k1".into(),
                pipeline: "passthrough".into(),
                passphrase: None,
            },
            StreamConfig {
                name: "locked".into(),
                key: "k2".into(),
                pipeline: "passthrough".into(),
                passphrase: Some("0123456789ab".into()),
            },
        ];
        c.srt = SrtConfig {
            default_stream: default_stream.map(str::to_string),
            ..SrtConfig::default()
        };
        c
    }

    #[test]
    fn both_streamid_forms_admit() {
        let c = config(None);
        for id in [
            "#!::r=live/open,m=publish,s=k1",
            "#!::m=publish,s=k1,r=live/open",
            "#!::r=open,s=k1",
            "#!::u=open,s=k1",
            "live/open?key=k1",
            "open?key=k1",
            "%23%21%3A%3Ar%3Dlive%2Fopen%2Cm%3Dpublish%2Cs%3Dk1",
            "live%2Fopen%3Fkey%3Dk1",
        ] {
            assert_eq!(
                admit(&c, Some(id), false),
                Ok(Admission {
                    name: "open".into(),
                    passphrase: None
                }),
                "{id}"
            );
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        let c = config(None);
        let cases: [(Option<&str>, bool, Refusal); 9] = [
            (None, false, Refusal::NoStreamId),
            (Some("  "), false, Refusal::NoStreamId),
            (
                Some("#!::r=live/open,s=nope"),
                false,
                Refusal::WrongKey("open".into()),
            ),
            (
                Some("#!::r=live/open"),
                false,
                Refusal::MissingKey("open".into()),
            ),
            (
                Some("#!::r=live/other,s=k1"),
                false,
                Refusal::UnknownStream("other".into()),
            ),
            (
                Some("#!::r=vod/open,s=k1"),
                false,
                Refusal::UnknownApp("vod".into()),
            ),
            (
                Some("#!::r=live/open,m=request,s=k1"),
                false,
                Refusal::UnsupportedMode("request".into()),
            ),
            (
                Some("#!::r=live/locked,s=k2"),
                false,
                Refusal::PassphraseRequired("locked".into()),
            ),
            (
                Some("#!::r=live/open,s=k1"),
                true,
                Refusal::NotEncrypted("open".into()),
            ),
        ];
        for (id, enc, want) in cases {
            assert_eq!(admit(&c, id, enc), Err(want), "{id:?}");
        }
    }

    #[test]
    fn passphrase_stream_admits_encrypted_callers() {
        let c = config(None);
        assert_eq!(
            admit(&c, Some("#!::r=live/locked,m=publish,s=k2"), true),
            Ok(Admission {
                name: "locked".into(),
                passphrase: Some("0123456789ab".into())
            })
        );
    }

    #[test]
    fn default_stream_takes_callers_without_streamid() {
        let c = config(Some("locked"));
        assert_eq!(
            admit(&c, None, true),
            Ok(Admission {
                name: "locked".into(),
                passphrase: Some("0123456789ab".into())
            })
        );
        // Without encryption the caller has no credential at all.
        assert_eq!(
            admit(&c, None, false),
            Err(Refusal::PassphraseRequired("locked".into()))
        );
        // A streamid still wins over the default.
        assert_eq!(
            admit(&c, Some("open?key=k1"), false).map(|a| a.name),
            Ok("open".to_string())
        );
    }

    #[test]
    fn secrets_never_reach_the_log() {
        assert_eq!(
            auth::redact_stream_id("#!::r=live/a,m=publish,s=topsecret"),
            "#!::r=live/a,m=publish,s=***"
        );
        assert_eq!(auth::redact_stream_id("live/a?key=topsecret"), "live/a?***");
        assert_eq!(
            auth::redact_stream_id("%23%21%3A%3Ar%3Dlive%2Fa%2Cs%3Dtopsecret"),
            "#!::r=live/a,s=***"
        );
    }

    #[test]
    fn reject_codes_follow_srt_access_control() {
        assert_eq!(
            reject_code(&Refusal::WrongKey("a".into())) as i32,
            2401,
            "SRT_REJX_UNAUTHORIZED"
        );
        assert_eq!(reject_code(&Refusal::AlreadyLive("a".into())) as i32, 2409);
        assert_eq!(
            reject_code(&Refusal::UnknownStream("a".into())) as i32,
            2404
        );
    }
}
