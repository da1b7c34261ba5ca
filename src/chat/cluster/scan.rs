//! Reading a room out of the shared log, sans-IO: where a read starts and when it may stop.
//!
//! The stream is ordered by sequence, and the time JetStream stored a message grows with it;
//! a message's `pdt` (the stream's live edge when it was sent) is within [`PDT_MARGIN`] of
//! that stored time. So a time-range read starts at the first message stored at
//! `from - PDT_MARGIN` ([`LowerBound`], a binary search by sequence) and stops once stored
//! times pass what could still fall in range ([`RangeScan`]).

use crate::chat::protocol::ChatMessage;

/// How far a message's `pdt` may be from the time JetStream stored it: the live edge's lag
/// behind real time, an encoder ahead of it, and clock differences between nodes and NATS.
pub const PDT_MARGIN_MS: u64 = 60_000;

/// Binary search for the first sequence whose next message (of one subject) was stored at or
/// after a target time. Feed it what the probe at [`LowerBound::probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowerBound {
    lo: u64,
    hi: u64,
}

impl LowerBound {
    /// Searches `[first, end)`; `end` is one past the subject's last message.
    pub fn new(first: u64, end: u64) -> LowerBound {
        LowerBound {
            lo: first,
            hi: end.max(first),
        }
    }

    /// The sequence to look at next (the first subject message at or after it), or None when
    /// the search is done.
    pub fn probe(&self) -> Option<u64> {
        (self.lo < self.hi).then(|| self.lo + (self.hi - self.lo) / 2)
    }

    /// What the probe at `at` found: the message's sequence and whether it was stored at or
    /// after the target; None when no message of the subject is at or after `at`.
    pub fn feed(&mut self, at: u64, found: Option<(u64, bool)>) {
        match found {
            Some((seq, false)) => self.lo = seq.max(at) + 1,
            _ => self.hi = at,
        }
    }

    /// Where to start reading.
    pub fn start(&self) -> u64 {
        self.lo
    }
}

/// Collects a time-range read: messages with `from <= pdt < to`, the `limit` first in
/// timeline order (`pdt`, then `id`).
#[derive(Debug)]
pub struct RangeScan {
    from: u64,
    to: u64,
    limit: usize,
    kept: Vec<ChatMessage>,
}

impl RangeScan {
    pub fn new(from: u64, to: u64, limit: usize) -> RangeScan {
        RangeScan {
            from,
            to,
            limit: limit.max(1),
            kept: Vec::new(),
        }
    }

    /// Where reading starts: stored at or after this time (UNIX ms).
    pub fn start_time(&self) -> u64 {
        self.from.saturating_sub(PDT_MARGIN_MS)
    }

    /// Takes the next message in sequence order, stored at `stored_ms`; false when no later
    /// message can be in the answer (stop reading).
    pub fn offer(&mut self, m: ChatMessage, stored_ms: u64) -> bool {
        if stored_ms >= self.to.saturating_add(PDT_MARGIN_MS) {
            return false;
        }
        if self.kept.len() >= self.limit {
            // Later messages have pdt >= their stored time - margin, and larger ids.
            let last = self.kept[self.limit - 1].pdt;
            if stored_ms >= last.saturating_add(PDT_MARGIN_MS) {
                return false;
            }
        }
        if (self.from..self.to).contains(&m.pdt) {
            self.kept.push(m);
            if self.kept.len() >= self.limit {
                self.kept.sort_by_key(|m| (m.pdt, m.id));
                self.kept.truncate(self.limit);
            }
        }
        true
    }

    /// The answer, in timeline order.
    pub fn finish(mut self) -> Vec<ChatMessage> {
        self.kept.sort_by_key(|m| (m.pdt, m.id));
        self.kept.truncate(self.limit);
        self.kept
    }
}

/// Where to start reading a room's newest messages: `span` sequences before the end, not
/// before the stream's first. A read that finds too few widens `span` ([`wider`]).
pub fn tail_start(first: u64, last: u64, span: u64) -> u64 {
    last.saturating_sub(span).saturating_add(1).max(first)
}

/// The next span after one that found too few of a room's messages.
pub fn wider(span: u64) -> u64 {
    span.saturating_mul(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, pdt: u64) -> ChatMessage {
        ChatMessage {
            id,
            name: "a".into(),
            text: "x".into(),
            ts: pdt,
            pdt,
        }
    }

    /// Runs the search over a log of (sequence, stored time) of one subject.
    fn search(log: &[(u64, u64)], first: u64, end: u64, target: u64) -> (u64, usize) {
        let mut b = LowerBound::new(first, end);
        let mut probes = 0;
        while let Some(at) = b.probe() {
            probes += 1;
            let found = log
                .iter()
                .find(|(s, _)| *s >= at)
                .map(|&(s, t)| (s, t >= target));
            b.feed(at, found);
        }
        (b.start(), probes)
    }

    #[test]
    fn the_search_finds_the_first_message_stored_at_the_target() {
        // Sequences with gaps (other rooms, deletions).
        let log: Vec<(u64, u64)> = (0..1000u64).map(|i| (10 + i * 3, 1000 + i * 10)).collect();
        let (start, probes) = search(&log, 1, 3100, 1000 + 500 * 10);
        assert_eq!(
            start,
            10 + 499 * 3 + 1,
            "just past the last earlier message"
        );
        assert!(probes <= 13, "{probes} probes");
        assert_eq!(search(&log, 1, 3100, 0).0, 1, "everything");
        assert_eq!(
            search(&log, 1, 3100, u64::MAX).0,
            10 + 999 * 3 + 1,
            "nothing"
        );
        assert_eq!(search(&[], 5, 5, 0).0, 5);
    }

    #[test]
    fn a_range_keeps_pdt_in_bounds_in_timeline_order() {
        let mut s = RangeScan::new(10_000, 20_000, 100);
        // pdt not quite in sequence order (two senders).
        for (id, pdt) in [
            (1, 9_000),
            (2, 12_000),
            (3, 11_000),
            (4, 19_999),
            (5, 20_000),
        ] {
            assert!(s.offer(msg(id, pdt), pdt + 300));
        }
        let ids: Vec<u64> = s.finish().iter().map(|m| m.id).collect();
        assert_eq!(ids, [3, 2, 4]);
    }

    #[test]
    fn a_range_stops_once_nothing_later_can_qualify() {
        let mut s = RangeScan::new(0, 50_000, 100);
        assert!(s.offer(msg(1, 49_000), 49_500));
        assert!(s.offer(msg(2, 60_000), 50_000 + PDT_MARGIN_MS - 1));
        assert!(!s.offer(msg(3, 200_000), 50_000 + PDT_MARGIN_MS));
        assert_eq!(s.finish().len(), 1);
    }

    #[test]
    fn a_limited_range_stops_when_the_first_n_are_certain() {
        let mut s = RangeScan::new(0, u64::MAX, 3);
        for i in 1..=5u64 {
            assert!(s.offer(msg(i, i * 1000), i * 1000));
        }
        // A late message with a small pdt still counts while within the margin…
        assert!(s.offer(msg(6, 500), 30_000));
        // …but once stored times pass the third pdt by the margin, nothing can change.
        assert!(!s.offer(msg(7, 100), 2_000 + PDT_MARGIN_MS));
        let ids: Vec<u64> = s.finish().iter().map(|m| m.id).collect();
        assert_eq!(ids, [6, 1, 2]);
    }

    #[test]
    fn tails_widen_until_the_stream_start() {
        assert_eq!(tail_start(1, 1000, 100), 901);
        assert_eq!(tail_start(950, 1000, 100), 950);
        assert_eq!(tail_start(1, 10, 100), 1);
        assert_eq!(wider(100), 400);
    }
}
