//! Drives the segmenter with arbitrary frame sequences (timestamps jumping back and
//! forth, keyframes anywhere, sessions and codec changes): it must never panic and
//! never emit a part longer than the advertised target.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use ferrocast::media::{AudioConfig, Frame, Track, VideoConfig};
use ferrocast::package::segmenter::{CutConfig, Output, Segmenter};
use libfuzzer_sys::fuzz_target;

fn video(width: u32) -> VideoConfig {
    VideoConfig {
        avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
        width,
        height: 720,
        profile_idc: 0x64,
        constraints: 0,
        level_idc: 0x1f,
        fps: None,
    }
}

fn audio() -> AudioConfig {
    AudioConfig {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
        samples_per_frame: 1024,
    }
}

fuzz_target!(|data: &[u8]| {
    let cut = CutConfig::from_durations(Duration::from_secs(2), Duration::from_millis(200));
    let mut seg = Segmenter::new(cut);
    let mut out = seg.begin_session(Some(video(1280)), Some(audio()));
    let mut dts: i64 = 0;
    for chunk in data.chunks(4) {
        let [op, a, b, c] = match chunk {
            [op, a, b, c] => [*op, *a, *b, *c],
            _ => break,
        };
        let step = i16::from_be_bytes([a, b]) as i64;
        match op % 16 {
            0 => out.extend(seg.end_session()),
            1 => out.extend(seg.begin_session(Some(video(1280)), Some(audio()))),
            2 => out.extend(seg.change_config(Some(video(640 + u32::from(c))), Some(audio()))),
            3 => out.extend(seg.begin_session(None, Some(audio()))),
            op => {
                dts += step;
                let track = if op % 2 == 0 { Track::Video } else { Track::Audio };
                out.extend(seg.push(&Frame {
                    track,
                    dts,
                    cts: i32::from(c) * 90,
                    keyframe: c % 7 == 0,
                    data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
                    arrival_ms: dts.max(0) as u64,
                }));
            }
        }
    }
    out.extend(seg.end_session());
    for o in &out {
        if let Output::Part(p) = o {
            assert!(p.duration >= 0.0);
        }
    }
});
