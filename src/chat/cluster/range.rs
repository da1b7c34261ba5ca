//! Reading one room out of the shared log: the history API's time ranges and the tail a node
//! loads at start. Each read is a short-lived consumer filtered on the room's message subject,
//! bounded by the stream's last sequence when the read began.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use futures_util::StreamExt;

use super::scan::{self, LowerBound, RangeScan};
use super::wire::{self, Stored};
use super::ClusterChat;
use crate::chat::protocol::ChatMessage;

/// Longest a history API read may take.
pub const RANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// A read consumer the server has not heard from for this long is removed by the server.
const READ_INACTIVE: Duration = Duration::from_secs(30);
/// Longest wait for the next message of a read (they are all stored already).
const READ_IDLE: Duration = Duration::from_secs(5);

fn stored_ms(t: &async_nats::jetstream::message::Info<'_>) -> u64 {
    (t.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

/// The first message of `subject` at or after `seq`: its sequence and stored time (UNIX ms).
async fn first_at(stream: &Stream, subject: &str, seq: u64) -> Result<Option<(u64, u64)>, String> {
    match stream.get_first_raw_message_by_subject(subject, seq).await {
        Ok(m) => Ok(Some((
            m.sequence,
            (m.time.unix_timestamp_nanos() / 1_000_000).max(0) as u64,
        ))),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads the messages of `subject` with sequences in `[start, end]`, in order, handing each
/// with its stored time to `visit` until it returns false.
pub(super) async fn read(
    stream: &Stream,
    subject: &str,
    start: u64,
    end: u64,
    mut visit: impl FnMut(ChatMessage, u64) -> bool,
) -> Result<(), String> {
    let Some((first, _)) = first_at(stream, subject, start.max(1)).await? else {
        return Ok(());
    };
    if first > end {
        return Ok(());
    }
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ack_policy: AckPolicy::None,
            filter_subject: subject.to_string(),
            inactive_threshold: READ_INACTIVE,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let name = consumer.cached_info().name.clone();
    let result = async {
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        loop {
            let next = tokio::time::timeout(READ_IDLE, messages.next())
                .await
                .map_err(|_| "the chat log stopped answering".to_string())?;
            let Some(m) = next else { return Ok(()) };
            let m = m.map_err(|e| e.to_string())?;
            let info = m.info().map_err(|e| e.to_string())?;
            let (seq, at, pending) = (info.stream_sequence, stored_ms(&info), info.pending);
            if seq > end {
                return Ok(());
            }
            match serde_json::from_slice::<Stored>(&m.payload) {
                Ok(s) => {
                    if !visit(s.into_message(seq), at) {
                        return Ok(());
                    }
                }
                Err(e) => tracing::warn!(seq, error = %e, "unreadable chat message in the log"),
            }
            if seq >= end || pending == 0 {
                return Ok(());
            }
        }
    }
    .await;
    // The server removes it after READ_INACTIVE anyway; this is only tidier.
    let _ = stream.delete_consumer(&name).await;
    result
}

impl ClusterChat {
    /// Undeleted messages of `room` with `from <= pdt < to`, in timeline order, at most
    /// `limit`; the same on every node (it reads the shared stream).
    pub async fn range(
        &self,
        room: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, String> {
        let stream = self
            .stream()
            .filter(|_| self.cluster.connected())
            .ok_or("not connected to NATS")?;
        let subject = wire::message_subject(room);
        let last = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => m.sequence,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut scan = RangeScan::new(from, to, limit);
        let target = scan.start_time();
        let mut bound = LowerBound::new(1, if target > 0 { last + 1 } else { 1 });
        while let Some(at) = bound.probe() {
            let found = first_at(&stream, &subject, at).await?;
            bound.feed(at, found.map(|(seq, t)| (seq, t >= target)));
        }
        read(&stream, &subject, bound.start(), last, |m, at| {
            scan.offer(m, at)
        })
        .await?;
        Ok(scan.finish())
    }

    /// The newest messages of `room` up to sequence `last` (at most the history this node
    /// keeps), oldest first: read from a span before `last`, widened until it holds enough.
    pub(super) async fn tail(
        &self,
        stream: &Stream,
        room: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<ChatMessage>, String> {
        if self.keep == 0 || last == 0 {
            return Ok(Vec::new());
        }
        let subject = wire::message_subject(room);
        let mut span = self.keep as u64 * 8;
        loop {
            let start = scan::tail_start(first, last, span);
            let mut found = Vec::new();
            read(stream, &subject, start, last, |m, _| {
                found.push(m);
                true
            })
            .await?;
            if found.len() >= self.keep || start <= first {
                let skip = found.len().saturating_sub(self.keep);
                return Ok(found.split_off(skip));
            }
            span = scan::wider(span);
        }
    }
}
