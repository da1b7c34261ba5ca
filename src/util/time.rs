//! Wall-clock time as UNIX milliseconds: the clock of program date-time, chat `ts`/`pdt`
//! and part lag. Pure conversions take the time as an argument; [`now_ms`] reads the clock
//! and belongs at the edges.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as milliseconds since the UNIX epoch (0 for times before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wall clock now, in UNIX milliseconds.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_ms_counts_from_the_epoch_and_clamps_earlier_times() {
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_234)), 1_234);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
