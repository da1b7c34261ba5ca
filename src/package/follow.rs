//! How transcoded rungs cut exactly where the source rendition cut.
//!
//! Every rung has keyframes where the source has them (they are forced), but a rung that
//! (re)starts late, or a source whose keyframes come more often than `segment_target`, would
//! still make its own choice of which keyframe opens a segment, number segments from its own
//! start and compute its own program date-time. Instead, the source packager records its
//! decision for every source keyframe here, and each rung's segmenter follows it: same
//! keyframe, same media sequence number, same PDT, same output timeline.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Keyframe decisions kept: at one keyframe a second this covers four minutes, far beyond any
/// transcoding delay.
const KEEP: usize = 256;

/// Identifies one source picture across the pipeline: its presentation time (90 kHz, as
/// ingest stamped it) and its arrival at ingest (UNIX ms); the pair does not repeat when a
/// reconnecting publisher restarts its clock.
pub type Key = (i64, u64);

/// The source's segment that starts at a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lead {
    pub msn: u64,
    pub pdt_ms: u64,
    pub discontinuity: bool,
    /// Output decode time (90 kHz) of the segment's first picture.
    pub start: u64,
}

/// Keyframe decisions of one stream's source rendition.
pub struct CutLog {
    decisions: Mutex<VecDeque<(Key, Option<Lead>)>>,
    changed: watch::Sender<u64>,
}

impl Default for CutLog {
    fn default() -> Self {
        CutLog {
            decisions: Mutex::new(VecDeque::with_capacity(KEEP)),
            changed: watch::channel(0).0,
        }
    }
}

impl CutLog {
    /// The source packager saw keyframe `key` and did (Some) or did not (None) open a segment.
    pub fn record(&self, key: Key, lead: Option<Lead>) {
        {
            let mut d = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
            if d.len() == KEEP {
                d.pop_front();
            }
            d.push_back((key, lead));
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// The decision for `key`, if the source has seen that keyframe.
    pub fn get(&self, key: Key) -> Option<Option<Lead>> {
        let d = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        d.iter().rev().find(|(k, _)| *k == key).map(|(_, l)| *l)
    }

    /// Waits up to `timeout` for the source's decision on `key` (the source packager is
    /// normally far ahead of any encoder; this covers it being briefly busy).
    pub async fn wait(&self, key: Key, timeout: Duration) -> Option<Option<Lead>> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.get(key) {
                return Some(l);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.get(key),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_found_by_key_and_bounded() {
        let log = CutLog::default();
        let lead = Lead {
            msn: 3,
            pdt_ms: 1000,
            discontinuity: false,
            start: 540_000,
        };
        log.record((100, 5), Some(lead));
        log.record((200, 6), None);
        assert_eq!(log.get((100, 5)), Some(Some(lead)));
        assert_eq!(log.get((200, 6)), Some(None));
        assert_eq!(log.get((100, 6)), None, "same time, other session");
        for i in 0..KEEP as i64 {
            log.record((1000 + i, 0), None);
        }
        assert_eq!(log.get((100, 5)), None, "oldest forgotten");
    }

    #[tokio::test]
    async fn wait_sees_a_later_decision() {
        let log = std::sync::Arc::new(CutLog::default());
        let l2 = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            l2.record((1, 1), None);
        });
        assert_eq!(log.wait((1, 1), Duration::from_secs(2)).await, Some(None));
        assert_eq!(log.wait((2, 2), Duration::from_millis(10)).await, None);
    }
}
