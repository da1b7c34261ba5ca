//! Tests of the whole demuxer, fed with ffmpeg-made fixtures (rewritten
//! where a case needs damage or unusual tables).

use bytes::Bytes;

use super::packets::{MAX_GARBAGE, PACKET};
use super::pes::{read_timestamp, WRAP};
use super::psi::crc32_mpeg2;
use super::*;
use crate::media::h264::{self, NAL_AUD, NAL_FILLER, NAL_PPS, NAL_SPS};

const AV: &[u8] = include_bytes!("../../../fixtures/ts_h264_aac.ts");

fn demux(data: &[u8], chunk: usize) -> (Vec<TsEvent>, Result<(), TsError>) {
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        if let Err(e) = d.push(c, 7, &mut out) {
            return (out, Err(e));
        }
    }
    d.finish(7, &mut out);
    (out, Ok(()))
}

const BFRAMES: &[u8] = include_bytes!("../../../fixtures/ts_h264_bframes.ts");
const WRAPPING: &[u8] = include_bytes!("../../../fixtures/ts_wrap.ts");
const AAC_ONLY: &[u8] = include_bytes!("../../../fixtures/ts_aac_only.ts");
/// The same encode as `AV`, muxed to FLV (what the RTMP path would receive).
const AV_FLV: &[u8] = include_bytes!("../../../fixtures/ts_h264_aac.flv");

fn frames(events: &[TsEvent], track: Track) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Frame(f) if f.track == track => Some(f),
            _ => None,
        })
        .collect()
}

fn warnings(events: &[TsEvent]) -> Vec<&TsWarning> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Warning(w) => Some(w),
            _ => None,
        })
        .collect()
}

fn configs(events: &[TsEvent]) -> Vec<(Option<VideoConfig>, Option<AudioConfig>)> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Config { video, audio } => Some((video.clone(), audio.clone())),
            _ => None,
        })
        .collect()
}

fn pid(packet: &[u8]) -> u16 {
    u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2])
}

/// Rewrites every packet for which `f` returns Some.
fn map_packets(data: &[u8], mut f: impl FnMut(usize, &[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    data.chunks(PACKET)
        .enumerate()
        .flat_map(|(i, p)| f(i, p).unwrap_or_else(|| p.to_vec()))
        .collect()
}

/// Replaces the PMT (PID 0x1000 in ffmpeg output) with `streams`, CRC fixed or not.
fn with_pmt(data: &[u8], streams: &[(u8, u16)], good_crc: bool) -> Vec<u8> {
    let mut section = vec![0x02, 0xb0, 0, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0];
    for &(t, pid) in streams {
        section.extend_from_slice(&[t, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
    }
    let len = section.len() - 3 + 4;
    section[1] = 0xb0 | (len >> 8) as u8;
    section[2] = len as u8;
    let crc = crc32_mpeg2(&section) ^ u32::from(!good_crc);
    section.extend_from_slice(&crc.to_be_bytes());
    map_packets(data, |_, p| {
        (pid(p) == 0x1000).then(|| {
            let mut q = vec![0x47, 0x50, 0x00, p[3], 0];
            q.extend_from_slice(&section);
            q.resize(PACKET, 0xff);
            q
        })
    })
}

/// FLV tags (type, ms timestamp, body) of a file.
fn flv_tags(file: &[u8]) -> Vec<(u8, u32, Bytes)> {
    let file = Bytes::copy_from_slice(file);
    let mut off = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize + 4;
    let mut tags = Vec::new();
    while off + 11 <= file.len() {
        let h = &file[off..off + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        tags.push((h[0] & 0x1f, ts, file.slice(off + 11..off + 11 + size)));
        off += 11 + size + 4;
    }
    tags
}

#[test]
fn fixture_matches_ffprobe() {
    // `ffprobe -show_packets fixtures/ts_h264_aac.ts`: 60 video packets from
    // dts 127920 in steps of 3000 (30 fps, no B-frames), keyframes every 30;
    // 95 AAC frames from 126000 in steps of 1920 (1024 samples at 48 kHz).
    let (ev, r) = demux(AV, AV.len());
    r.unwrap();
    let video = frames(&ev, Track::Video);
    let audio = frames(&ev, Track::Audio);
    assert_eq!(video.len(), 60);
    assert_eq!(audio.len(), 95);
    for (i, f) in video.iter().enumerate() {
        assert_eq!(f.dts, 127_920 + 3000 * i as i64);
        assert_eq!(f.cts, 0);
        assert_eq!(f.keyframe, i % 30 == 0, "frame {i}");
        assert_eq!(f.arrival_ms, 7);
        assert!(h264::check_avcc_framing(&f.data).is_ok());
        for nal in h264::avcc_nal_units(&f.data) {
            let t = h264::nal_unit_type(nal).unwrap();
            assert!(![NAL_SPS, NAL_PPS, NAL_AUD, NAL_FILLER].contains(&t));
        }
    }
    for (i, f) in audio.iter().enumerate() {
        assert_eq!(f.dts, 126_000 + 1920 * i as i64);
        assert!(f.keyframe && f.cts == 0);
        assert_ne!(&f.data[..2], &[0xff, 0xf1], "ADTS header stripped");
    }
    assert!(warnings(&ev).is_empty(), "{:?}", warnings(&ev));
    // One Config, before any frame, with both codecs.
    let cfgs = configs(&ev);
    assert_eq!(cfgs.len(), 1);
    assert!(matches!(ev[0], TsEvent::Config { .. }));
    let (v, a) = &cfgs[0];
    let v = v.as_ref().unwrap();
    let a = a.as_ref().unwrap();
    assert_eq!(
        (v.width, v.height, v.profile_idc, v.level_idc),
        (320, 240, 100, 13)
    );
    assert_eq!(v.fps, Some(30.0));
    assert_eq!(v.codec_string(), "avc1.64000D");
    assert_eq!((a.sample_rate, a.channels, a.object_type), (48_000, 2, 2));
    assert_eq!(a.samples_per_frame, 1024);
}

#[test]
fn same_configs_and_frames_as_rtmp() {
    use crate::ingest::flv::{parse_audio_tag, parse_video_tag, AudioTag, VideoTag};
    let (ev, r) = demux(AV, 1316);
    r.unwrap();
    let (v, a) = configs(&ev)[0].clone();
    let (mut flv_video, mut flv_audio, mut vframes, mut aframes) = (None, None, vec![], vec![]);
    for (kind, ts, body) in flv_tags(AV_FLV) {
        match kind {
            9 => match parse_video_tag(&body).unwrap() {
                VideoTag::SequenceHeader(c) => flv_video = Some(c),
                VideoTag::Frame { data, keyframe, .. } => vframes.push((ts, data, keyframe)),
                VideoTag::EndOfSequence => {}
            },
            8 => match parse_audio_tag(&body).unwrap() {
                AudioTag::SequenceHeader(c) => flv_audio = Some(c),
                AudioTag::Frame(data) => aframes.push(data),
            },
            _ => {}
        }
    }
    // Identical avcC bytes: the SRT and RTMP sessions are indistinguishable.
    assert_eq!(v, flv_video);
    // ffmpeg's FLV ASC adds explicit "no SBR" signalling (11 90 56 e5 00);
    // ADTS cannot carry it, so only the decoded fields are compared.
    let (a, fa) = (a.unwrap(), flv_audio.unwrap());
    assert_eq!(&a.asc[..], &[0x11, 0x90]);
    assert_eq!(
        (
            a.object_type,
            a.sample_rate,
            a.channels,
            a.samples_per_frame
        ),
        (
            fa.object_type,
            fa.sample_rate,
            fa.channels,
            fa.samples_per_frame
        )
    );
    // Same access units: AUD and in-band SPS/PPS removed, everything else kept.
    let video = frames(&ev, Track::Video);
    assert_eq!(video.len(), vframes.len());
    for (f, (_, data, key)) in video.iter().zip(&vframes) {
        assert_eq!(&f.data, data);
        assert_eq!(f.keyframe, *key);
    }
    let audio = frames(&ev, Track::Audio);
    assert_eq!(audio.len(), aframes.len());
    for (f, data) in audio.iter().zip(&aframes) {
        assert_eq!(&f.data, data);
    }
}

#[test]
fn every_chunking_gives_the_same_events() {
    for file in [AV, BFRAMES, WRAPPING, AAC_ONLY] {
        let (whole, r) = demux(file, file.len());
        r.unwrap();
        for chunk in [1, 7, 100, 188, 1316, 4096] {
            assert_eq!(demux(file, chunk).0, whole, "chunk {chunk}");
        }
    }
}

#[test]
fn b_frames_carry_composition_offsets() {
    // ffprobe: first video packet pts 132000 dts 126000; 60 frames, 30 fps.
    let (ev, r) = demux(BFRAMES, 1316);
    r.unwrap();
    let video = frames(&ev, Track::Video);
    assert_eq!(video.len(), 60);
    assert_eq!((video[0].dts, video[0].cts), (126_000, 6000));
    assert!(video[0].keyframe);
    assert!(video.iter().filter(|f| f.cts > 0).count() > 30);
    for w in video.windows(2) {
        assert_eq!(w[1].dts - w[0].dts, 3000);
    }
    // Presentation times are a permutation of the 30 fps grid.
    let mut pts: Vec<i64> = video.iter().map(|f| f.dts + i64::from(f.cts)).collect();
    pts.sort();
    for w in pts.windows(2) {
        assert_eq!(w[1] - w[0], 3000);
    }
    assert_eq!(frames(&ev, Track::Audio).len(), 95);
}

#[test]
fn timestamps_unwrap_across_the_33_bit_wrap() {
    // ffprobe shows the first video dts as -91592: 2^33 - 91592 raw, wrapping ~1 s in.
    let (ev, r) = demux(WRAPPING, 1316);
    r.unwrap();
    let video = frames(&ev, Track::Video);
    let audio = frames(&ev, Track::Audio);
    assert_eq!((video.len(), audio.len()), (60, 95));
    assert_eq!(video[0].dts, WRAP - 91_592);
    assert!(video.last().unwrap().dts > WRAP);
    for w in video.windows(2) {
        assert_eq!(w[1].dts - w[0].dts, 3000);
    }
    for w in audio.windows(2) {
        assert_eq!(w[1].dts - w[0].dts, 1920);
    }
    // A/V offset is the same as in the unwrapped fixture.
    let (plain, _) = demux(AV, AV.len());
    let offset = |ev: &[TsEvent]| frames(ev, Track::Video)[0].dts - frames(ev, Track::Audio)[0].dts;
    assert_eq!(offset(&ev), offset(&plain));
}

#[test]
fn audio_only_stream() {
    // ffprobe: 45 AAC frames, 44.1 kHz mono, first dts 126000.
    let (ev, r) = demux(AAC_ONLY, 1316);
    r.unwrap();
    let (v, a) = configs(&ev)[0].clone();
    assert!(v.is_none());
    let a = a.unwrap();
    assert_eq!((a.sample_rate, a.channels), (44_100, 1));
    let audio = frames(&ev, Track::Audio);
    assert_eq!(audio.len(), 45);
    assert_eq!(audio[0].dts, 126_000);
    for (i, f) in audio.iter().enumerate() {
        // Each PES PTS is rounded to 90 kHz by the muxer: allow one tick.
        let exact = 126_000 + i as i64 * 1024 * 90_000 / 44_100;
        assert!((f.dts - exact).abs() <= 1, "{} vs {exact}", f.dts);
    }
    assert!(warnings(&ev).is_empty());
}

#[test]
fn lost_packets_drop_whole_frames_and_resume_at_a_keyframe() {
    let (clean, _) = demux(AV, AV.len());
    let clean_frames: Vec<&Frame> =
        [frames(&clean, Track::Video), frames(&clean, Track::Audio)].concat();
    // Remove a few packets from the middle of both elementary streams.
    let mut es_seen = 0;
    let damaged = map_packets(AV, |_, p| {
        if pid(p) == 0x100 || pid(p) == 0x101 {
            es_seen += 1;
            if [150, 151, 300, 420, 500].contains(&es_seen) {
                return Some(Vec::new());
            }
        }
        None
    });
    for chunk in [188, 1316] {
        let (ev, r) = demux(&damaged, chunk);
        r.unwrap();
        let gaps = warnings(&ev)
            .iter()
            .filter(|w| matches!(w, TsWarning::ContinuityGap { .. }))
            .count();
        assert!(gaps >= 3, "{:?}", warnings(&ev));
        let video = frames(&ev, Track::Video);
        assert!(video.len() < 60 && video.len() >= 10, "{}", video.len());
        // After lost video data, the next picture out is a keyframe (the ones between
        // could reference what was lost), and the skip is reported.
        let mut need_key = false;
        for e in &ev {
            match e {
                TsEvent::Warning(
                    TsWarning::ContinuityGap { pid: 0x100, .. }
                    | TsWarning::PesTruncated { pid: 0x100, .. },
                ) => need_key = true,
                TsEvent::Frame(f) if f.track == Track::Video => {
                    assert!(!need_key || f.keyframe, "picture at {} after a loss", f.dts);
                    need_key = false;
                }
                _ => {}
            }
        }
        assert!(warnings(&ev)
            .iter()
            .any(|w| matches!(w, TsWarning::SkippedToKeyframe { .. })));
        // Audio carries on to the end.
        assert_eq!(
            frames(&ev, Track::Audio).last().unwrap().dts,
            frames(&clean, Track::Audio).last().unwrap().dts,
            "stream continues"
        );
        // Every emitted frame is byte-identical to the clean one with that dts.
        for f in frames(&ev, Track::Video)
            .into_iter()
            .chain(frames(&ev, Track::Audio))
        {
            assert!(
                clean_frames.contains(&f),
                "corrupt {:?} frame at {}",
                f.track,
                f.dts
            );
        }
    }
}

#[test]
fn joining_mid_gop_drops_undecodable_pictures() {
    // Start 100 packets in: no SPS/PPS until the second keyframe (frame 30).
    let (ev, r) = demux(&AV[188 * 100..], 1316);
    r.unwrap();
    let w = warnings(&ev);
    assert!(
        w.contains(&&TsWarning::FramesBeforeConfig {
            track: Track::Video
        }),
        "{w:?}"
    );
    let video = frames(&ev, Track::Video);
    assert_eq!(video.len(), 30);
    assert!(video[0].keyframe);
    assert_eq!(video[0].dts, 127_920 + 30 * 3000);
    // Audio was held until video could start, then released in order.
    assert!(matches!(
        ev.iter().find(|e| !matches!(e, TsEvent::Warning(_))),
        Some(TsEvent::Config { .. })
    ));
    assert!(!frames(&ev, Track::Audio).is_empty());
}

#[test]
fn parameter_set_change_emits_config_before_the_frame() {
    // Two encodes back to back: the second has a different SPS (B-frames, refs).
    let input = [AV, BFRAMES].concat();
    let (ev, r) = demux(&input, 1316);
    r.unwrap();
    let cfgs = configs(&ev);
    assert_eq!(cfgs.len(), 2);
    assert_ne!(cfgs[0].0, cfgs[1].0);
    assert_eq!(cfgs[0].1, cfgs[1].1);
    // The second Config comes right before the first picture of the second encode.
    let i = ev
        .iter()
        .rposition(|e| matches!(e, TsEvent::Config { .. }))
        .unwrap();
    let next_video = ev[i..]
        .iter()
        .find_map(|e| match e {
            TsEvent::Frame(f) if f.track == Track::Video => Some(f),
            _ => None,
        })
        .unwrap();
    assert!(next_video.keyframe);
    // The splice breaks continuity: the last picture of the first encode,
    // still open (unbounded PES) when the gap shows, is dropped as unsafe.
    assert_eq!(frames(&ev, Track::Video).len(), 119);
    assert!(warnings(&ev)
        .iter()
        .all(|w| matches!(w, TsWarning::ContinuityGap { .. })));
}

#[test]
fn pmt_changes_mid_stream() {
    // First second: the PMT lists video only (audio packets are then
    // unknown PIDs); then a new PMT version adds the AAC stream.
    let half = 188 * (AV.len() / 188 / 2);
    let video_only = with_pmt(&AV[..half], &[(0x1b, 0x100)], true);
    let input = [video_only, AV[half..].to_vec()].concat();
    let (ev, r) = demux(&input, 1316);
    r.unwrap();
    let cfgs = configs(&ev);
    assert_eq!(cfgs.len(), 2, "{cfgs:?}");
    assert!(cfgs[0].0.is_some() && cfgs[0].1.is_none());
    assert!(cfgs[1].0 == cfgs[0].0 && cfgs[1].1.is_some());
    assert_eq!(frames(&ev, Track::Video).len(), 60);
    let audio = frames(&ev, Track::Audio);
    assert!(!audio.is_empty() && audio.len() < 95);
    assert!(warnings(&ev).is_empty(), "{:?}", warnings(&ev));
}

#[test]
fn duplicate_packets_are_ignored() {
    let dup = map_packets(AV, |i, p| (i == 40 || i == 41).then(|| [p, p].concat()));
    assert_eq!(demux(&dup, 1316).0, demux(AV, 1316).0);
}

#[test]
fn garbage_is_skipped() {
    let mut x = 0x1234_5678u32;
    let noise: Vec<u8> = (0..3000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let (clean, _) = demux(AV, AV.len());
    let mut input = noise.clone();
    input.extend_from_slice(AV);
    let (ev, r) = demux(&input, 1316);
    r.unwrap();
    assert!(matches!(warnings(&ev)[..], [TsWarning::Resync { .. }]));
    assert_eq!(frames(&ev, Track::Video), frames(&clean, Track::Video));
    // Garbage between packets too: resync, some loss, no corrupt frame.
    let mid = 188 * 300;
    let input = [&AV[..mid], &noise[..500], &AV[mid..]].concat();
    let (ev, r) = demux(&input, 1316);
    r.unwrap();
    assert!(warnings(&ev)
        .iter()
        .any(|w| matches!(w, TsWarning::Resync { .. })));
    let clean_video = frames(&clean, Track::Video);
    for f in frames(&ev, Track::Video) {
        assert!(clean_video.contains(&f));
    }
}

#[test]
fn non_ts_input_fails_fast() {
    let text = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".repeat(4000);
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let err = text
        .chunks(1316)
        .find_map(|c| {
            fed += c.len();
            d.push(c, 0, &mut out).err()
        })
        .expect("fatal error");
    assert!(matches!(err, TsError::NotTs { .. }), "{err}");
    assert!(fed <= MAX_GARBAGE + 1316);
    assert!(err.to_string().contains("not MPEG-TS"));
    // The session stays failed.
    assert_eq!(d.push(AV, 0, &mut out), Err(err));
    // All 0x47 bytes: "in sync" but never a PMT.
    let (_, r) = demux(&vec![0x47; 188 * 9000], 1316);
    assert!(matches!(r, Err(TsError::NoPmt { .. })), "{r:?}");
}

#[test]
fn pmt_with_bad_crc_is_ignored_then_fatal() {
    let bad = with_pmt(AV, &[(0x1b, 0x100), (0x0f, 0x101)], false);
    let input = bad.repeat(12);
    let (ev, r) = demux(&input, 1316);
    let err = r.unwrap_err();
    assert!(
        matches!(err, TsError::NoPmt { missing: "PMT", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("broken or missing PMT"));
    assert_eq!(warnings(&ev), vec![&TsWarning::BadCrc { table: "PMT" }]);
    assert!(frames(&ev, Track::Video).is_empty());
    // The same PMT with a good CRC works (the rewrite itself is sound).
    let good = with_pmt(AV, &[(0x1b, 0x100), (0x0f, 0x101)], true);
    assert_eq!(frames(&demux(&good, 1316).0, Track::Video).len(), 60);
}

#[test]
fn no_supported_stream_is_fatal_and_named() {
    let hevc = with_pmt(AV, &[(0x24, 0x100), (0x03, 0x101)], true);
    let (_, r) = demux(&hevc, 1316);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("0x24 HEVC on PID 0x100"), "{msg}");
    assert!(msg.contains("0x03 MPEG-1 audio (MP3)"), "{msg}");
}

#[test]
fn unsupported_streams_are_warned_once_and_skipped() {
    let input = with_pmt(AV, &[(0x1b, 0x100), (0x03, 0x101), (0x15, 0x102)], true);
    let (ev, r) = demux(&input, 1316);
    r.unwrap();
    let w = warnings(&ev);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(matches!(
        w[0],
        TsWarning::UnsupportedStream {
            stream_type: 0x03,
            ..
        }
    ));
    assert!(matches!(
        w[1],
        TsWarning::UnsupportedStream {
            stream_type: 0x15,
            ..
        }
    ));
    let (v, a) = configs(&ev)[0].clone();
    assert!(v.is_some() && a.is_none());
    assert_eq!(frames(&ev, Track::Video).len(), 60);
    assert!(frames(&ev, Track::Audio).is_empty());
}

#[test]
fn start_waits_for_both_codecs_but_not_forever() {
    // Audio listed in the PMT but never sent: start after 2 s of video at most.
    let no_audio = map_packets(AV, |_, p| (pid(p) == 0x101).then(Vec::new));
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    d.push(&no_audio, 0, &mut out).unwrap();
    // 60 frames span 1.97 s: still held before finish.
    assert!(out.is_empty(), "{out:?}");
    d.finish(0, &mut out);
    assert_eq!(
        warnings(&out),
        vec![&TsWarning::StartedWithout {
            track: Track::Audio
        }]
    );
    assert_eq!(frames(&out, Track::Video).len(), 60);
    // Held frames are bounded even when the media time does not advance
    // (the same 2 s replayed): the frame cap starts the session.
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    let mut started_at = None;
    for round in 0..12 {
        for c in no_audio.chunks(1316) {
            d.push(c, 0, &mut out).unwrap();
            if started_at.is_none() && !configs(&out).is_empty() {
                started_at = Some(round);
            }
            assert!(d.held.len() < MAX_HELD_FRAMES);
        }
    }
    // ~60 frames a round (continuity breaks at each replay cost one).
    assert!(matches!(started_at, Some(9..=10)), "{started_at:?}");
    // Media time past START_HOLD_TICKS starts it as well.
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    d.push(&no_audio, 0, &mut out).unwrap();
    assert!(out.is_empty());
    let later = map_packets(&no_audio, |_, p| {
        // Shift the video PTS by 1 s: PES header PTS at byte 13.. of PUSI packets.
        (pid(p) == 0x100 && p[1] & 0x40 != 0 && p[3] & 0x20 == 0).then(|| {
            let mut q = p.to_vec();
            let pts = read_timestamp(&q[13..18]).unwrap() + 90_000;
            q[13] = 0x21 | ((pts >> 29) & 0x0e) as u8;
            q[14] = (pts >> 22) as u8;
            q[15] = 0x01 | ((pts >> 14) as u8 & 0xfe);
            q[16] = (pts >> 7) as u8;
            q[17] = 0x01 | (pts << 1) as u8;
            q
        })
    });
    d.push(&later, 0, &mut out).unwrap();
    assert_eq!(configs(&out).len(), 1);
    // Audio starting late arrives as a config change.
    d.push(AV, 0, &mut out).unwrap();
    let cfgs = configs(&out);
    assert_eq!(cfgs.len(), 2);
    assert!(cfgs[0].1.is_none() && cfgs[1].1.is_some());
    assert_eq!(cfgs[0].0, cfgs[1].0);
}

/// Builds TS packets for one PES on `pid` starting at continuity counter `cc`.
fn pes_packets(pid: u16, cc: &mut u8, pes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, chunk) in pes.chunks(184).enumerate() {
        let pusi = if i == 0 { 0x40 } else { 0 };
        let mut p = vec![0x47, pusi | (pid >> 8) as u8, pid as u8];
        if chunk.len() == 184 {
            p.push(0x10 | *cc);
        } else {
            // Pad with an adaptation field.
            let af = 184 - chunk.len() - 1;
            p.push(0x30 | *cc);
            p.push(af as u8);
            if af > 0 {
                p.push(0);
                p.resize(p.len() + af - 1, 0xff);
            }
        }
        p.extend_from_slice(chunk);
        *cc = (*cc + 1) & 0x0f;
        out.extend_from_slice(&p);
    }
    out
}

fn pes(stream_id: u8, pts: u64, payload: &[u8], bounded: bool) -> Vec<u8> {
    let len = if bounded { payload.len() + 8 } else { 0 };
    let mut v = vec![
        0,
        0,
        1,
        stream_id,
        (len >> 8) as u8,
        len as u8,
        0x80,
        0x80,
        5,
    ];
    v.extend_from_slice(&[
        0x21 | ((pts >> 29) & 0x0e) as u8,
        (pts >> 22) as u8,
        0x01 | (pts >> 14) as u8 & 0xfe,
        (pts >> 7) as u8,
        0x01 | (pts << 1) as u8,
    ]);
    v.extend_from_slice(payload);
    v
}

#[test]
fn adts_frames_split_across_pes() {
    // Take the AAC frames of the audio-only fixture and re-mux them so each
    // PES ends in the middle of a frame.
    let (ev, _) = demux(AAC_ONLY, AAC_ONLY.len());
    let src = frames(&ev, Track::Audio);
    let adts: Vec<u8> = src
        .iter()
        .flat_map(|f| {
            let len = f.data.len() + 7;
            let mut h = vec![
                0xff,
                0xf1,
                0x50 | (4 << 2),
                0x40 | (len >> 11) as u8,
                (len >> 3) as u8,
                ((len & 7) << 5) as u8 | 0x1f,
                0xfc,
            ];
            h.extend_from_slice(&f.data);
            h
        })
        .collect();
    let mut stream: Vec<u8> = AAC_ONLY[..188 * 3]
        .iter()
        .copied()
        .filter(|_| true)
        .collect();
    // Keep only PAT/PMT packets from the original head.
    stream = map_packets(&stream, |_, p| {
        (pid(p) != 0 && pid(p) != 0x1000).then(Vec::new)
    });
    let mut cc = 0;
    let mut off = 0;
    let mut frames_before = 0usize;
    for (k, size) in [500usize, 333, 1000, 777].iter().cycle().enumerate() {
        if off >= adts.len() {
            break;
        }
        let end = (off + size).min(adts.len());
        // PTS of the first frame starting in this PES.
        let mut starts = 0usize;
        let mut pos = 0usize;
        let mut first_start = None;
        for f in &src {
            if pos >= off && pos < end && first_start.is_none() {
                first_start = Some(starts);
            }
            if pos < end {
                starts += 1;
            }
            pos += f.data.len() + 7;
        }
        let idx = first_start.unwrap_or(frames_before) as u64;
        frames_before = starts;
        let pts = 126_000 + idx * 1024 * 90_000 / 44_100;
        stream.extend(pes_packets(
            0x100,
            &mut cc,
            &pes(0xc0, pts, &adts[off..end], k % 2 == 0),
        ));
        off = end;
    }
    let (ev2, r) = demux(&stream, 1316);
    r.unwrap();
    assert!(warnings(&ev2).is_empty(), "{:?}", warnings(&ev2));
    let got = frames(&ev2, Track::Audio);
    assert_eq!(got.len(), src.len());
    for (a, b) in got.iter().zip(&src) {
        assert_eq!(a.data, b.data);
        assert!((a.dts - b.dts).abs() <= 2, "{} vs {}", a.dts, b.dts);
    }
}

/// Throughput probe: `cargo test --release --lib mpegts_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn mpegts_throughput() {
    let input = AV.repeat(200);
    let t = std::time::Instant::now();
    let (ev, _) = demux(&input, 1316);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} MiB in {secs:.3} s = {:.0} MiB/s, {} events",
        input.len() >> 20,
        input.len() as f64 / secs / 1048576.0,
        ev.len()
    );
}

#[test]
fn random_mutations_never_panic() {
    let base = &AV[..188 * 200];
    let mut x = 0x9e37_79b9u32;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for _ in 0..5000 {
        let mut data = base.to_vec();
        for _ in 0..(1 + next() % 16) {
            if data.is_empty() {
                break;
            }
            let i = next() as usize % data.len();
            match next() % 4 {
                0 => data[i] ^= 1 << (next() % 8),
                1 => data[i] = next() as u8,
                2 => data.truncate(i.max(1)),
                _ => {
                    let n = (next() % 400) as usize;
                    data.drain(i..(i + n).min(data.len()));
                }
            }
        }
        let chunk = 1 + next() as usize % 2000;
        let _ = demux(&data, chunk);
    }
}
