//! SRT ingest: tokio glue around srt-tokio's listener, MPEG-TS demuxed by [`super::mpegts`].
//!
//! srt-tokio is young (its README says so), so nothing outside this module names it: the rest
//! of the server sees the same hub messages as from RTMP. Admission (streamid, key,
//! passphrase policy) is decided by the pure [`auth::admit`] before the SRT handshake is answered,
//! so a refused caller gets an SRT reject code and creates nothing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use srt_protocol::options::{ByteCount, KeySize, Passphrase, SocketOptions};
use srt_protocol::packet::ServerRejectReason;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::RejectReason;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};
use tracing::Instrument;

use super::auth::{self, Refusal};
use super::interleave::Interleaver;
use super::mpegts::{TsDemuxer, TsEvent, TsWarning};
use super::session::PublishSession;
use super::Ingest;
use crate::hub::PublishHandle;
use crate::media::Frame;
use crate::metrics::Metrics;
use crate::util::time::now_ms;

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
pub async fn serve(mut listener: Listener, ingest: Arc<Ingest>) {
    while let Some(request) = listener.incoming.incoming().next().await {
        let ingest = ingest.clone();
        let span = caller_span(request.remote());
        tokio::spawn(session(request, ingest).instrument(span));
    }
    tracing::error!("SRT listener stopped");
    // Keep the listener alive for the loop's lifetime; dropping it closes the UDP socket.
    drop(listener.inner);
}

/// The span every line of a caller is logged in: its address, and the stream once it is
/// admitted ([`name_stream`]).
fn caller_span(peer: SocketAddr) -> tracing::Span {
    tracing::info_span!("srt", peer = %peer, stream = tracing::field::Empty)
}

/// Records the admitted stream's name on the current (caller) span.
fn name_stream(name: &str) {
    tracing::Span::current().record("stream", tracing::field::display(name));
}

/// The SRT access-control reject code (`SRT_REJX_*`) a caller sees for a refusal.
pub fn reject_code(r: &Refusal) -> ServerRejectReason {
    match r {
        Refusal::MissingName | Refusal::NoStreamId => ServerRejectReason::BadRequest,
        Refusal::UnknownStream(_) | Refusal::UnknownApp(_) => ServerRejectReason::Notfound,
        Refusal::MissingKey(_) | Refusal::WrongKey(_) => ServerRejectReason::Unauthorized,
        Refusal::AlreadyLive(_) | Refusal::PublishedElsewhere(..) => ServerRejectReason::Conflict,
        Refusal::ShuttingDown => ServerRejectReason::Down,
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

async fn session(request: ConnectionRequest, ctx: Arc<Ingest>) {
    let raw_id = request.stream_id().map(|s| s.to_string());
    let shown = raw_id
        .as_deref()
        .map(auth::redact_stream_id)
        .unwrap_or_else(|| "(none)".to_string());
    let key_size = request.key_size();
    let encrypts = key_size != KeySize::Unspecified;
    let admitted = auth::admit(&ctx.config, raw_id.as_deref(), encrypts).and_then(|a| {
        ctx.hub
            .check_claim(&a.name)
            .map(|()| a)
            .map_err(Refusal::from)
    });
    let admission = match admitted {
        Ok(a) => a,
        Err(refusal) => {
            ctx.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(streamid = %shown, error = %refusal, "srt publish refused");
            let code = RejectReason::Server(reject_code(&refusal));
            if let Err(e) = request.reject(code).await {
                tracing::debug!(error = %e, "srt reject not delivered");
            }
            return;
        }
    };
    let name = admission.name.clone();
    // Admitted: a configured name, so from here on the span names the stream.
    name_stream(&name);
    let keys = match admission.passphrase {
        Some(p) => match Passphrase::try_from(p) {
            Ok(passphrase) => Some(KeySettings {
                key_size,
                passphrase,
            }),
            Err(e) => {
                // The config checks the length; this only guards srt-protocol's own rules.
                tracing::error!(error = %e, "srt passphrase unusable");
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
            ctx.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            // srt-tokio reports a failed key exchange only as a cancelled channel.
            let why = if encrypted {
                "wrong passphrase (the caller's key material did not decrypt)"
            } else {
                "handshake did not complete"
            };
            tracing::warn!(error = %e, "srt publish refused: {why}");
            return;
        }
        Err(_) => {
            ctx.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("srt publish refused: handshake timed out");
            return;
        }
    };
    let handle = match ctx.hub.claim(&name).map_err(Refusal::from) {
        Ok(h) => h,
        Err(refusal) => {
            ctx.metrics.srt_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %refusal, "srt publish refused");
            return; // dropping the socket closes it
        }
    };
    ctx.metrics.srt_connections.fetch_add(1, Ordering::Relaxed);
    tracing::info!(streamid = %shown, encrypted, "srt publish accepted");
    let mut caller = Caller::new(handle);
    match caller.run(socket, &ctx.metrics).await {
        Ok(()) => tracing::info!("srt publisher finished"),
        Err(e) => {
            ctx.metrics.srt_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "srt session ended");
        }
    }
}

/// One accepted caller: payloads → demuxer → hub.
struct Caller {
    publish: PublishSession,
    demux: TsDemuxer,
    interleave: Interleaver,
    /// Frames the interleaver released, reused between calls.
    due: Vec<Frame>,
    last_warn: Option<Instant>,
    muted_warnings: u64,
}

impl Caller {
    fn new(publish: PublishHandle) -> Self {
        Caller {
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
        metrics: &Metrics,
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
                self.dispatch(&mut events, metrics);
                self.release_held(metrics);
                return Ok(());
            };
            let (_, payload) = item?;
            metrics
                .ingest_bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            let pushed = self.demux.push(&payload, now_ms(), &mut events);
            // Deliver what was complete before the error, then end the session.
            self.dispatch(&mut events, metrics);
            pushed?;
        }
    }

    fn dispatch(&mut self, events: &mut Vec<TsEvent>, metrics: &Metrics) {
        for ev in events.drain(..) {
            match ev {
                TsEvent::Config { video, audio } => {
                    // Held frames belong to the previous configuration.
                    self.release_held(metrics);
                    self.interleave.set_audio(audio.is_some());
                    if let Some(v) = &video {
                        tracing::info!(codec = %v.codec_string(), width = v.width, height = v.height, "video config");
                    }
                    if let Some(a) = &audio {
                        tracing::info!(codec = %a.codec_string(), rate = a.sample_rate, channels = a.channels, "audio config");
                    }
                    self.publish.set_config(video, audio);
                }
                TsEvent::Frame(frame) => {
                    self.interleave.push(frame, &mut self.due);
                    self.emit_due(metrics);
                }
                TsEvent::Warning(w) => self.warn(&w),
            }
        }
    }

    fn release_held(&mut self, metrics: &Metrics) {
        self.interleave.flush(&mut self.due);
        self.emit_due(metrics);
    }

    fn emit_due(&mut self, metrics: &Metrics) {
        for f in self.due.drain(..) {
            self.publish.emit(f, metrics);
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
        tracing::warn!(muted, warning = %what, "srt stream problem");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_lines_name_the_peer_and_the_admitted_stream() {
        let logs = super::super::rtmp::tests::logged(|| {
            let _in = caller_span("192.0.2.7:40000".parse().unwrap()).entered();
            name_stream("victim");
            tracing::warn!(error = %SessionError::Replaced, "srt session ended");
        });
        // tests/srt_ingest.rs looks for the unquoted name on the session's last line.
        assert!(
            logs.contains("srt{peer=192.0.2.7:40000 stream=victim}")
                && logs.contains("srt session ended"),
            "{logs}"
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
