//! Feeds arbitrary bytes to every ingest parser: any result is fine, a panic is a bug.
#![no_main]

use bytes::Bytes;
use ferrocast::ingest::flv::{parse_audio_tag, parse_video_tag};
use ferrocast::media::aac::parse_audio_specific_config;
use ferrocast::media::h264::{avcc_has_idr, avcc_nal_units, parse_avc_decoder_config, parse_sps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let _ = parse_video_tag(&body);
    let _ = parse_audio_tag(&body);
    let _ = parse_avc_decoder_config(data);
    let _ = parse_audio_specific_config(data);
    let _ = parse_sps(data);
    let _ = avcc_has_idr(data);
    let _ = avcc_nal_units(data).count();
});
