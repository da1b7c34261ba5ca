//! The bottom layer beside [`crate::media`]: small helpers every other module may use and
//! that import nothing from the crate.
//!
//! - [`time`]: the wall clock as UNIX milliseconds (program date-time, chat stamps, lag).
//! - [`percent`]: the one percent-decoder and query-string reader.
//! - [`body`]: the HTTP response body type shared by the origin routes and the chat upgrade.

pub mod body;
pub mod percent;
pub mod time;

/// `n` in base 36 (`0-9a-z`): short, URL-safe stamps (playlist epochs, message-id prefixes).
pub fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base36_digits() {
        assert_eq!(super::base36(0), "0");
        assert_eq!(super::base36(35), "z");
        assert_eq!(super::base36(36), "10");
        assert_eq!(super::base36(1_764_643_200_000), "minyzzeo");
        assert!(super::base36(u64::MAX).len() <= 13);
    }
}
