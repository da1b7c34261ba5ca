//! Chat frames and names come straight from viewers' WebSockets and URLs.
#![no_main]

use ferrocast::chat::{names, protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match protocol::parse(s) {
        Ok(_) => {}
        // Every refusal must produce a reason a client can be sent.
        Err(e) => assert!(!e.reason().is_empty()),
    }
    if names::check(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 64, "accepted name {s:?}");
    }
});
