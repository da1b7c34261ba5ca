//! LL-HLS delivery directives come straight from viewers' URLs.
#![no_main]

use ferrocast::origin::query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = query::parse(Some(s)) {
            assert!(d.part.is_none() || d.msn.is_some());
        }
    }
});
