//! Per-connection send limits, sans-IO: a token bucket and slow mode. Time is passed in as
//! milliseconds (any monotonic-ish clock; a clock that steps back only delays refills).

/// A token bucket: up to `burst` messages at once, then one more every `refill_ms`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: u32,
    refill_ms: u64,
    /// Tokens scaled by `refill_ms`, so refills need no floating point.
    level: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`. `burst` 0 is treated as 1; `refill_ms` 0 means unlimited.
    pub fn new(burst: u32, refill_ms: u64, now_ms: u64) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            burst,
            refill_ms,
            level: u64::from(burst) * refill_ms.max(1),
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let cap = u64::from(self.burst) * self.refill_ms.max(1);
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.level = self.level.saturating_add(elapsed).min(cap);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Takes one token; on refusal, the milliseconds until one is available.
    pub fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        if self.refill_ms == 0 {
            return Ok(());
        }
        self.refill(now_ms);
        if self.level >= self.refill_ms {
            self.level -= self.refill_ms;
            Ok(())
        } else {
            Err(self.refill_ms - self.level)
        }
    }
}

/// Slow mode: at most one message per `interval_ms` per sender (0 = off).
#[derive(Debug, Clone, Copy, Default)]
pub struct SlowMode {
    last_ms: Option<u64>,
}

impl SlowMode {
    /// Milliseconds left before the next message is allowed, or None when it is allowed now.
    /// Looking does not count as sending: call [`SlowMode::record`] once the message is taken.
    pub fn wait(&self, interval_ms: u64, now_ms: u64) -> Option<u64> {
        let next = self.last_ms?.saturating_add(interval_ms);
        (interval_ms > 0 && now_ms < next).then(|| next - now_ms)
    }

    pub fn record(&mut self, now_ms: u64) {
        self.last_ms = Some(now_ms);
    }

    /// [`SlowMode::wait`] and, when allowed, [`SlowMode::record`].
    pub fn check(&mut self, interval_ms: u64, now_ms: u64) -> Result<(), u64> {
        match self.wait(interval_ms, now_ms) {
            Some(left) => Err(left),
            None => {
                self.record(now_ms);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_one_per_refill() {
        let mut b = TokenBucket::new(3, 1000, 0);
        assert!(b.take(0).is_ok());
        assert!(b.take(0).is_ok());
        assert!(b.take(0).is_ok());
        assert_eq!(b.take(0), Err(1000));
        assert_eq!(b.take(400), Err(600));
        assert!(b.take(1000).is_ok());
        assert_eq!(b.take(1000), Err(1000));
    }

    #[test]
    fn bucket_never_holds_more_than_the_burst_after_hours_idle() {
        let mut b = TokenBucket::new(2, 500, 0);
        let hours = 5 * 3600 * 1000;
        assert!(b.take(hours).is_ok());
        assert!(b.take(hours).is_ok());
        assert!(b.take(hours).is_err());
    }

    #[test]
    fn bucket_sustains_exactly_its_rate_over_an_hour() {
        let mut b = TokenBucket::new(5, 1000, 0);
        let mut sent = 0;
        // A client hammering every 10 ms for an hour of simulated time.
        for now in (0..3_600_000u64).step_by(10) {
            if b.take(now).is_ok() {
                sent += 1;
            }
        }
        assert_eq!(sent, 5 + 3599, "burst plus one per second");
    }

    #[test]
    fn bucket_tolerates_a_clock_stepping_back() {
        let mut b = TokenBucket::new(1, 1000, 10_000);
        assert!(b.take(10_000).is_ok());
        assert!(b.take(5_000).is_err());
        assert!(b.take(11_000).is_ok());
    }

    #[test]
    fn zero_refill_means_unlimited() {
        let mut b = TokenBucket::new(1, 0, 0);
        for _ in 0..1000 {
            assert!(b.take(0).is_ok());
        }
    }

    #[test]
    fn slow_mode_spaces_messages() {
        let mut s = SlowMode::default();
        assert!(s.check(5000, 100).is_ok());
        assert_eq!(s.check(5000, 2100), Err(3000));
        assert!(s.check(5000, 5100).is_ok());
        assert_eq!(s.check(5000, 5101), Err(4999));
    }

    #[test]
    fn slow_mode_off_allows_everything() {
        let mut s = SlowMode::default();
        for t in 0..100 {
            assert!(s.check(0, t).is_ok());
        }
    }

    #[test]
    fn refused_slow_mode_attempt_does_not_restart_the_wait() {
        let mut s = SlowMode::default();
        assert!(s.check(1000, 0).is_ok());
        assert!(s.check(1000, 900).is_err());
        assert!(s.check(1000, 1000).is_ok());
    }
}
