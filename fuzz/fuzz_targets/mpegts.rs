//! Feeds arbitrary bytes to the MPEG-TS demuxer in input-chosen chunkings:
//! errors are fine, a panic is a bug, and every frame must be well formed.
#![no_main]

use ferrocast::ingest::mpegts::{TsDemuxer, TsEvent};
use ferrocast::media::h264::check_avcc_framing;
use ferrocast::media::Track;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so split points get explored too.
    let (chunk, data) = match data.split_first() {
        Some((&c, rest)) => (usize::from(c) * 7 + 1, rest),
        None => return,
    };
    let mut demuxer = TsDemuxer::new();
    let mut out = Vec::new();
    let mut failed = false;
    for c in data.chunks(chunk) {
        if demuxer.push(c, 0, &mut out).is_err() {
            failed = true;
            break;
        }
    }
    if !failed {
        demuxer.finish(0, &mut out);
    }
    for event in &out {
        if let TsEvent::Frame(f) = event {
            assert!(!f.data.is_empty());
            if f.track == Track::Video {
                assert!(check_avcc_framing(&f.data).is_ok());
            }
        }
    }
});
