//! RTMP ingest: tokio glue around rml_rtmp's sans-IO handshake and server session.
//! One task per TCP connection; anything malformed ends that connection only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use super::session::PublishSession;
use super::Ingest;
use crate::ingest::auth::{self, Refusal};
use crate::ingest::flv::{self, AudioTag, VideoTag};
use crate::media::{AudioConfig, Frame, Track, VideoConfig};
use crate::util::time::now_ms;

/// The RTMP application publishers use.
pub use super::auth::APP;
/// Time allowed for the handshake and the connect/publish exchange.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A publishing connection silent this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a client may send before it is publishing: commands are tiny, so more is abuse.
const MAX_SETUP_BYTES: usize = 256 * 1024;

/// Accepts RTMP connections until the listener fails.
pub async fn serve(listener: TcpListener, ingest: Arc<Ingest>) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        ingest
            .metrics
            .rtmp_connections
            .fetch_add(1, Ordering::Relaxed);
        let ingest = ingest.clone();
        let task = async move {
            let mut conn = Connection::new(ingest.clone());
            match conn.run(sock).await {
                Ok(()) => tracing::debug!("rtmp connection closed"),
                Err(e) => {
                    ingest.metrics.rtmp_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "rtmp session ended");
                }
            }
        };
        tokio::spawn(task.instrument(connection_span(peer)));
    }
}

/// The span every line of a connection is logged in: the peer, and the stream once a publish
/// is accepted ([`name_stream`]).
fn connection_span(peer: SocketAddr) -> tracing::Span {
    tracing::info_span!("rtmp", peer = %peer, stream = tracing::field::Empty)
}

/// Records the accepted stream's name on the current (connection) span.
fn name_stream(name: &str) {
    tracing::Span::current().record("stream", name);
}

/// Why an RTMP session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Media(#[from] flv::FlvError),
    #[error("sent {0} bytes without publishing")]
    SetupFlood(usize),
    #[error("publish refused: {0}")]
    Refused(Refusal),
    #[error("replaced by a newer publisher")]
    Replaced,
}

/// Extends RTMP's wrapping 32-bit millisecond clock to a monotonic-ish i64.
#[derive(Default)]
struct Clock {
    last: Option<u32>,
    ext: i64,
}

impl Clock {
    fn extend(&mut self, raw: u32) -> i64 {
        if let Some(last) = self.last {
            self.ext += raw.wrapping_sub(last) as i32 as i64;
        } else {
            self.ext = raw as i64;
        }
        self.last = Some(raw);
        self.ext
    }
}

struct Connection {
    ctx: Arc<Ingest>,
    publish: Option<PublishSession>,
    /// The stream name last recorded on the connection's span (a span field only appends).
    named: Option<String>,
    /// Codecs of the last publish on this connection, for a republish without new headers.
    last_configs: (Option<VideoConfig>, Option<AudioConfig>),
    video_clock: Clock,
    audio_clock: Clock,
    received: usize,
    /// Set when a request was refused: send the status, then close.
    refused: Option<Refusal>,
}

impl Connection {
    fn new(ctx: Arc<Ingest>) -> Self {
        Connection {
            ctx,
            publish: None,
            named: None,
            last_configs: (None, None),
            video_clock: Clock::default(),
            audio_clock: Clock::default(),
            received: 0,
            refused: None,
        }
    }

    async fn run(&mut self, mut sock: TcpStream) -> Result<(), SessionError> {
        let leftover = tokio::time::timeout(SETUP_TIMEOUT, handshake(&mut sock))
            .await
            .map_err(|_| SessionError::Timeout("during the handshake"))??;
        let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        self.handle_results(&mut sock, &mut session, initial)
            .await?;
        let results = feed(&mut session, &leftover)?;
        self.handle_results(&mut sock, &mut session, results)
            .await?;

        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let timeout = if self.publish.is_some() {
                IDLE_TIMEOUT
            } else {
                SETUP_TIMEOUT
            };
            let kicked = async {
                match &self.publish {
                    Some(p) => p.handle.kicked.clone().notified_owned().await,
                    None => std::future::pending().await,
                }
            };
            let n = tokio::select! {
                r = tokio::time::timeout(timeout, sock.read(&mut buf)) => {
                    r.map_err(|_| SessionError::Timeout("waiting for data"))??
                }
                _ = kicked => return Err(SessionError::Replaced),
            };
            if n == 0 {
                return Ok(());
            }
            self.ctx
                .metrics
                .ingest_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            if self.publish.is_none() {
                self.received += n;
                if self.received > MAX_SETUP_BYTES {
                    return Err(SessionError::SetupFlood(self.received));
                }
            }
            let results = feed(&mut session, &buf[..n])?;
            self.handle_results(&mut sock, &mut session, results)
                .await?;
        }
    }

    async fn handle_results(
        &mut self,
        sock: &mut TcpStream,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), SessionError> {
        let mut pending = std::collections::VecDeque::from(results);
        while let Some(r) = pending.pop_front() {
            match r {
                ServerSessionResult::OutboundResponse(packet) => {
                    sock.write_all(&packet.bytes).await?;
                }
                ServerSessionResult::RaisedEvent(event) => {
                    let more = self.handle_event(session, event)?;
                    pending.extend(more);
                    if let Some(refusal) = self.refused.take() {
                        // Deliver the error status before closing.
                        while let Some(ServerSessionResult::OutboundResponse(p)) =
                            pending.pop_front()
                        {
                            sock.write_all(&p.bytes).await?;
                        }
                        let _ = sock.flush().await;
                        return Err(SessionError::Refused(refusal));
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, SessionError> {
        let protocol =
            |e: rml_rtmp::sessions::ServerSessionError| SessionError::Protocol(e.to_string());
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name.trim_matches('/') == APP {
                    session.accept_request(request_id).map_err(protocol)
                } else {
                    self.refuse(
                        session,
                        request_id,
                        Refusal::UnknownApp(app_name),
                        "NetConnection.Connect.Rejected",
                    )
                }
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                let key = auth::parse_stream_key(&stream_key);
                let claim = auth::authorize(&self.ctx.config, &key)
                    .map(str::to_string)
                    .and_then(|name| self.ctx.hub.claim(&name).map_err(Refusal::from));
                match claim {
                    Ok(handle) => {
                        if self.named.as_deref() != Some(handle.name()) {
                            name_stream(handle.name());
                            self.named = Some(handle.name().to_string());
                        }
                        tracing::info!("rtmp publish accepted");
                        let (video, audio) = std::mem::take(&mut self.last_configs);
                        self.publish = Some(PublishSession::new(handle, video, audio));
                        session.accept_request(request_id).map_err(protocol)
                    }
                    Err(r) => {
                        let code = match r {
                            Refusal::AlreadyLive(_) | Refusal::PublishedElsewhere(..) => {
                                "NetStream.Publish.BadName"
                            }
                            _ => "NetStream.Publish.Unauthorized",
                        };
                        self.refuse(session, request_id, r, code)
                    }
                }
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                tracing::info!("rtmp publisher finished");
                if let Some(p) = self.publish.take() {
                    self.last_configs = p.into_configs();
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.on_video(&data, timestamp.value)?;
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.on_audio(&data, timestamp.value)?;
                Ok(Vec::new())
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                tracing::debug!(?metadata, "stream metadata");
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    fn refuse(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        refusal: Refusal,
        code: &str,
    ) -> Result<Vec<ServerSessionResult>, SessionError> {
        self.ctx
            .metrics
            .rtmp_rejected
            .fetch_add(1, Ordering::Relaxed);
        let out = session
            .reject_request(request_id, code, &refusal.to_string())
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        self.refused = Some(refusal);
        Ok(out)
    }

    fn on_video(&mut self, body: &Bytes, ts: u32) -> Result<(), SessionError> {
        let Some(publish) = self.publish.as_mut() else {
            return Ok(()); // media before publish: ignore, as other servers do
        };
        let tag = match flv::parse_video_tag(body) {
            Ok(t) => t,
            Err(e) if skippable(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match tag {
            VideoTag::SequenceHeader(cfg) => {
                tracing::info!(codec = %cfg.codec_string(), width = cfg.width, height = cfg.height, "video config");
                let audio = publish.audio().cloned();
                publish.set_config(Some(cfg), audio);
            }
            VideoTag::Frame {
                keyframe,
                cts_ms,
                data,
            } => {
                let dts = self.video_clock.extend(ts);
                let frame = Frame {
                    track: Track::Video,
                    dts: dts * 90,
                    cts: cts_ms.saturating_mul(90),
                    keyframe,
                    data,
                    arrival_ms: now_ms(),
                };
                publish.emit(frame, &self.ctx.metrics);
            }
            VideoTag::EndOfSequence => {}
        }
        Ok(())
    }

    fn on_audio(&mut self, body: &Bytes, ts: u32) -> Result<(), SessionError> {
        let Some(publish) = self.publish.as_mut() else {
            return Ok(());
        };
        let tag = match flv::parse_audio_tag(body) {
            Ok(t) => t,
            Err(e) if skippable(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match tag {
            AudioTag::SequenceHeader(cfg) => {
                tracing::info!(codec = %cfg.codec_string(), rate = cfg.sample_rate, channels = cfg.channels, "audio config");
                let video = publish.video().cloned();
                publish.set_config(video, Some(cfg));
            }
            AudioTag::Frame(data) => {
                let dts = self.audio_clock.extend(ts);
                let frame = Frame {
                    track: Track::Audio,
                    dts: dts * 90,
                    cts: 0,
                    keyframe: true,
                    data,
                    arrival_ms: now_ms(),
                };
                publish.emit(frame, &self.ctx.metrics);
            }
        }
        Ok(())
    }
}

/// Feeds received bytes to rml_rtmp's session. Its chunk parser panics on some malformed
/// input (a message on one chunk stream shorter than the partial message buffered from
/// another makes it reserve a wrapped-around length); that must end this session with a
/// clear error, counted and logged like any other bad input, not unwind the task.
fn feed(
    session: &mut ServerSession,
    bytes: &[u8],
) -> Result<Vec<ServerSessionResult>, SessionError> {
    let parsed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(bytes)));
    match parsed {
        Ok(r) => r.map_err(|e| SessionError::Protocol(e.to_string())),
        Err(_) => Err(SessionError::Protocol(
            "malformed RTMP chunk stream (the chunk parser panicked)".into(),
        )),
    }
}

/// Tags that carry no media but are legal in a healthy stream.
fn skippable(e: &flv::FlvError) -> bool {
    matches!(
        e,
        flv::FlvError::VideoCommandFrame
            | flv::FlvError::EmptyVideoFrame
            | flv::FlvError::EmptyAudioFrame
    )
}

/// Runs the server side of the RTMP handshake; returns bytes that followed it.
async fn handshake(sock: &mut TcpStream) -> Result<Vec<u8>, SessionError> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Err(SessionError::Handshake(
                "connection closed during the handshake".into(),
            ));
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| SessionError::Handshake(format!("{e:?}")))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Formats what `f` logs as the server's default subscriber does (without colours); the
    /// SRT tests use it too.
    pub(in crate::ingest) fn logged(f: impl FnOnce()) -> String {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = buf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn session_lines_name_the_peer_and_the_accepted_stream() {
        let logs = logged(|| {
            let _in = connection_span("192.0.2.7:40000".parse().unwrap()).entered();
            tracing::info!("before the publish");
            name_stream("victim");
            tracing::warn!(error = %SessionError::Replaced, "rtmp session ended");
        });
        let lines: Vec<&str> = logs.lines().collect();
        assert!(lines[0].contains("rtmp{peer=192.0.2.7:40000}"), "{logs}");
        // tests/rtmp_bad_input.rs looks for this line with the quoted name.
        assert!(
            lines[1].contains("stream=\"victim\"")
                && lines[1].contains("rtmp session ended")
                && lines[1].contains("error=replaced by a newer publisher"),
            "{logs}"
        );
    }

    #[test]
    fn clock_extends_across_wraparound() {
        let mut c = Clock::default();
        assert_eq!(c.extend(u32::MAX - 10), (u32::MAX - 10) as i64);
        assert_eq!(c.extend(5), u32::MAX as i64 + 6);
        assert_eq!(
            c.extend(3),
            u32::MAX as i64 + 4,
            "small steps back stay signed"
        );
    }

    /// One chunk with a full header: `[fmt 0 | csid] ts:3 len:3 type:1 stream:4 payload`.
    fn chunk0(csid: u8, type_id: u8, declared_len: u32, payload: &[u8]) -> Vec<u8> {
        let mut c = vec![csid, 0, 0, 0];
        c.extend_from_slice(&declared_len.to_be_bytes()[1..]);
        c.push(type_id);
        c.extend_from_slice(&0u32.to_le_bytes());
        c.extend_from_slice(payload);
        c
    }

    #[test]
    fn chunk_parser_panic_is_a_protocol_error() {
        let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        // A 1000-byte command cut after its first 128-byte chunk, then a 10-byte message on
        // another chunk stream: rml_rtmp 0.8 computes 10 - 128 and panics reserving it.
        let mut input = chunk0(3, 20, 1000, &[5; 128]);
        input.extend(chunk0(4, 20, 10, &[5; 10]));
        match feed(&mut session, &input) {
            Err(SessionError::Protocol(msg)) => assert!(msg.contains("malformed"), "{msg}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
}
