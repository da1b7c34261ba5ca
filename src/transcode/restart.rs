//! When a failed stage (a rung's pipelines, or the decoder all rungs share) starts again: after
//! 1, 2, 4, 8 and 16 s, then it stays off until the publisher reconnects, because the next
//! session starts over. A rung that has been dropping frames for [`BEHIND_LIMIT`] cannot keep
//! up with real time and counts as failed. Pure: the control loop passes `now` in and does
//! what the verdicts say.

use std::time::{Duration, Instant};

/// A rung dropping frames for this long is behind real time: it is restarted.
pub const BEHIND_LIMIT: Duration = Duration::from_secs(4);
/// Restart delays of a failing rung: doubling from the first to the last, then it is dropped.
pub const RESTART_BACKOFF: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// What to do with a stage that just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Start it again after this delay ([`Restarts::take_due`] says when).
    RetryIn(Duration),
    /// Leave it off until the publisher reconnects; `restarts` restarts did not help.
    GiveUp { restarts: usize },
}

/// The restart state of one stage within a publisher session.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    /// Failures since the session started.
    failures: usize,
    /// When the stage is to start again, if it is waiting to.
    due: Option<Instant>,
}

impl Restarts {
    /// A publisher (re)connected: a clean slate.
    pub fn new_session(&mut self) {
        *self = Restarts::default();
    }

    /// The stage failed at `now` (and was stopped).
    pub fn failed(&mut self, now: Instant) -> Verdict {
        let verdict = match RESTART_BACKOFF.get(self.failures) {
            Some(d) => {
                self.due = Some(now + *d);
                Verdict::RetryIn(*d)
            }
            None => {
                self.due = None;
                Verdict::GiveUp {
                    restarts: self.failures,
                }
            }
        };
        self.failures += 1;
        verdict
    }

    /// Whether the stage is to start again at `now`: true once per [`Verdict::RetryIn`].
    pub fn take_due(&mut self, now: Instant) -> bool {
        let due = self.due.is_some_and(|t| now >= t);
        if due {
            self.due = None;
        }
        due
    }
}

/// Whether a rung that has been dropping frames since `dropping_since` (none: it keeps up) is
/// behind real time at `now`.
pub(super) fn behind(dropping_since: Option<Instant>, now: Instant) -> bool {
    dropping_since.is_some_and(|t| now.saturating_duration_since(t) >= BEHIND_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn failures_back_off_1_2_4_8_16_s_then_stay_off_until_a_new_session() {
        let t0 = Instant::now();
        let mut r = Restarts::default();
        assert!(!r.take_due(t0), "nothing to restart before a failure");
        let mut failed_at = t0;
        for d in [1, 2, 4, 8, 16] {
            assert_eq!(r.failed(failed_at), Verdict::RetryIn(secs(d)));
            assert!(!r.take_due(failed_at + secs(d) - ms(1)), "{d} s: too early");
            assert!(r.take_due(failed_at + secs(d)), "{d} s: due");
            assert!(!r.take_due(failed_at + secs(d)), "{d} s: once");
            // Runs for a while, then fails again.
            failed_at += secs(d) + ms(700);
        }
        assert_eq!(r.failed(failed_at), Verdict::GiveUp { restarts: 5 });
        assert!(!r.take_due(failed_at + secs(3600)), "given up");
        // Failing again while off (cannot happen today) does not bring it back.
        assert_eq!(r.failed(failed_at), Verdict::GiveUp { restarts: 6 });
        assert!(!r.take_due(failed_at + secs(3600)));

        r.new_session();
        assert!(!r.take_due(failed_at + secs(3600)));
        assert_eq!(r.failed(failed_at), Verdict::RetryIn(secs(1)));
    }

    #[test]
    fn a_new_session_cancels_a_pending_restart() {
        let t0 = Instant::now();
        let mut r = Restarts::default();
        assert_eq!(r.failed(t0), Verdict::RetryIn(secs(1)));
        r.new_session();
        assert!(!r.take_due(t0 + secs(10)));
    }

    #[test]
    fn a_rung_is_behind_after_dropping_frames_for_4_s() {
        let t0 = Instant::now();
        assert!(!behind(None, t0 + secs(3600)), "keeps up");
        assert!(!behind(Some(t0), t0));
        assert!(!behind(Some(t0), t0 + secs(4) - ms(1)));
        assert!(behind(Some(t0), t0 + secs(4)));
        assert!(behind(Some(t0), t0 + secs(60)));
        // Drops noted by a streaming thread after the control loop read its clock.
        assert!(!behind(Some(t0 + ms(5)), t0));
    }

    /// What the control loop does with one rung, in simulated time: poll every 50 ms; a running
    /// rung that is behind fails; a stopped one starts when its restart is due.
    struct Sim {
        now: Instant,
        t0: Instant,
        restarts: Restarts,
        /// When the running rung started, if it runs.
        running_since: Option<Instant>,
        /// The rung starts dropping this long after it starts (none: it keeps up).
        drops_after: Option<Duration>,
        /// Until when the rung drops frames (it catches up then).
        drops_until: Option<Instant>,
        events: Vec<(String, u64)>,
    }

    impl Sim {
        fn new(drops_after: Option<Duration>) -> Sim {
            let t0 = Instant::now();
            let mut sim = Sim {
                now: t0,
                t0,
                restarts: Restarts::default(),
                running_since: None,
                drops_after,
                drops_until: None,
                events: Vec::new(),
            };
            sim.session();
            sim
        }

        fn log(&mut self, what: &str) {
            let ms = (self.now - self.t0).as_millis() as u64;
            self.events.push((what.to_string(), ms));
        }

        fn session(&mut self) {
            self.restarts.new_session();
            self.running_since = Some(self.now);
            self.log("start");
        }

        fn dropping_since(&self) -> Option<Instant> {
            let since = self.running_since? + self.drops_after?;
            let catching_up = self.drops_until.is_some_and(|u| self.now >= u);
            (self.now >= since && !catching_up).then_some(since)
        }

        fn poll(&mut self) {
            if self.running_since.is_some() {
                if behind(self.dropping_since(), self.now) {
                    self.running_since = None;
                    match self.restarts.failed(self.now) {
                        Verdict::RetryIn(d) => self.log(&format!("fail, retry in {d:?}")),
                        Verdict::GiveUp { restarts } => {
                            self.log(&format!("fail, give up after {restarts} restarts"))
                        }
                    }
                }
            } else if self.restarts.take_due(self.now) {
                self.running_since = Some(self.now);
                self.log("start");
            }
        }

        fn run_until(&mut self, s: u64) {
            while self.now < self.t0 + secs(s) {
                self.now += ms(50);
                self.poll();
            }
        }
    }

    #[test]
    fn a_rung_that_never_keeps_up_is_restarted_five_times_then_dropped_until_reconnect() {
        // Drops from 1 s after every start: behind 4 s later.
        let mut sim = Sim::new(Some(secs(1)));
        sim.run_until(200);
        let expected = [
            ("start", 0),
            ("fail, retry in 1s", 5_000),
            ("start", 6_000),
            ("fail, retry in 2s", 11_000),
            ("start", 13_000),
            ("fail, retry in 4s", 18_000),
            ("start", 22_000),
            ("fail, retry in 8s", 27_000),
            ("start", 35_000),
            ("fail, retry in 16s", 40_000),
            ("start", 56_000),
            ("fail, give up after 5 restarts", 61_000),
        ];
        let events: Vec<(&str, u64)> = sim.events.iter().map(|(w, t)| (w.as_str(), *t)).collect();
        assert_eq!(events, expected);

        // The publisher reconnects: the rung gets a whole new series of restarts.
        sim.session();
        sim.run_until(207);
        let events: Vec<(&str, u64)> = sim.events[expected.len()..]
            .iter()
            .map(|(w, t)| (w.as_str(), *t))
            .collect();
        assert_eq!(
            events,
            [
                ("start", 200_000),
                ("fail, retry in 1s", 205_000),
                ("start", 206_000)
            ]
        );
    }

    #[test]
    fn a_rung_that_catches_up_within_4_s_keeps_running() {
        let mut sim = Sim::new(Some(secs(1)));
        sim.drops_until = Some(sim.t0 + secs(1) + secs(4) - ms(50));
        sim.run_until(120);
        assert_eq!(sim.events, [("start".to_string(), 0)]);

        let mut sim = Sim::new(None);
        sim.run_until(120);
        assert_eq!(sim.events, [("start".to_string(), 0)]);
    }
}
