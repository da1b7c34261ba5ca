//! Elementary streams: complete PES payloads become frames and configs.
//!
//! H.264: the Annex B access unit is rewritten as AVCC and its in-band
//! SPS/PPS become the avcC record (built the way ffmpeg writes it into FLV,
//! so SRT and RTMP publishes of one encode give the same config). After lost
//! video data, pictures are skipped up to the next IDR.
//!
//! AAC: ADTS frames become raw frames and the header fields a config. A PES
//! may end inside a frame; the tail is carried into the next PES and keeps
//! the timeline of the PES it started in.

use bytes::Bytes;

use super::{TsDemuxer, TsEvent, TsWarning};
use crate::media::adts::{self, AdtsHeader, AdtsItem};
use crate::media::{annexb, h264, AudioConfig, Frame, Track};

impl TsDemuxer {
    pub(super) fn on_video(
        &mut self,
        payload: &[u8],
        dts: i64,
        cts: i32,
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) {
        let Some(au) = annexb::to_avcc(payload) else {
            out.push(TsEvent::Warning(TsWarning::NoStartCode));
            return;
        };
        let mut params_changed = false;
        if let Some(sps) = au.sps.filter(|&s| self.sps.as_deref() != Some(s)) {
            self.sps = Some(sps.to_vec());
            params_changed = true;
        }
        if let Some(pps) = au.pps.filter(|&p| self.pps.as_deref() != Some(p)) {
            self.pps = Some(pps.to_vec());
            params_changed = true;
        }
        if params_changed {
            if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
                match h264::avc_decoder_config(sps, pps)
                    .and_then(|avcc| h264::parse_avc_decoder_config(&avcc))
                {
                    Ok(cfg) => {
                        if self.video_config.as_ref() != Some(&cfg) {
                            self.video_config = Some(cfg);
                            self.config_changed(out);
                        }
                    }
                    Err(e) => {
                        // Forget the bad set so it is retried (and reported) once more at most.
                        self.sps = None;
                        out.push(TsEvent::Warning(TsWarning::BadParameterSets(e)));
                    }
                }
            }
        }
        if au.data.is_empty() {
            return;
        }
        if self.video_config.is_none() {
            self.warn_before_config(Track::Video, out);
            return;
        }
        if self.video_needs_key {
            if !au.keyframe {
                self.skipped_for_key += 1;
                return;
            }
            self.video_needs_key = false;
            let frames = std::mem::take(&mut self.skipped_for_key);
            if frames > 0 {
                out.push(TsEvent::Warning(TsWarning::SkippedToKeyframe { frames }));
            }
        }
        self.emit(
            Frame {
                track: Track::Video,
                dts,
                cts,
                keyframe: au.keyframe,
                data: Bytes::from(au.data),
                arrival_ms,
            },
            out,
        );
    }

    pub(super) fn on_audio(
        &mut self,
        payload: &[u8],
        pes_dts: i64,
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) {
        let carried = self.adts_leftover.len();
        let mut data = std::mem::take(&mut self.adts_leftover);
        data.extend_from_slice(payload);
        let carried_dts = self.adts_leftover_dts.take();
        // Frames starting in the carried bytes continue the previous PES's timeline;
        // the PES PTS belongs to the first frame that starts in this PES.
        let (mut old_n, mut new_n) = (0i64, 0i64);
        let mut frames = adts::frames(&data);
        for item in frames.by_ref() {
            let (offset, header, raw) = match item {
                AdtsItem::Frame {
                    offset,
                    header,
                    raw,
                } => (offset, header, raw),
                AdtsItem::Resync { skipped } => {
                    out.push(TsEvent::Warning(TsWarning::AdtsResync { skipped }));
                    continue;
                }
                AdtsItem::Unsupported(why) => {
                    self.warn_adts(why, out);
                    continue;
                }
            };
            if !self.set_audio_config(&header, out) {
                continue;
            }
            let Some(cfg) = &self.audio_config else {
                continue;
            };
            let step = |n: i64| frames_to_ticks(cfg, n);
            let dts = match (offset < carried, carried_dts) {
                (true, Some(d)) => {
                    old_n += 1;
                    d + step(old_n - 1)
                }
                _ => {
                    new_n += 1;
                    pes_dts + step(new_n - 1)
                }
            };
            self.audio_next_dts = Some(dts + step(1));
            self.emit(
                Frame {
                    track: Track::Audio,
                    dts,
                    cts: 0,
                    keyframe: true,
                    data: Bytes::copy_from_slice(raw),
                    arrival_ms,
                },
                out,
            );
        }
        let pos = frames.consumed();
        let rest = frames.rest();
        if !rest.is_empty() && rest.len() <= adts::MAX_FRAME_LEN {
            self.adts_leftover = rest.to_vec();
            let step = |n| {
                self.audio_config
                    .as_ref()
                    .map_or(0, |c| frames_to_ticks(c, n))
            };
            self.adts_leftover_dts = Some(if pos < carried {
                carried_dts.unwrap_or(pes_dts) + step(old_n)
            } else {
                pes_dts + step(new_n)
            });
        }
    }

    /// Updates the audio config from an ADTS header; false when it is unusable.
    fn set_audio_config(&mut self, h: &AdtsHeader, out: &mut Vec<TsEvent>) -> bool {
        let fields = h.config_fields();
        if self.adts_fields == Some(fields) {
            return true;
        }
        match h.audio_config() {
            Ok(cfg) => {
                self.adts_fields = Some(fields);
                if self.audio_config.as_ref() != Some(&cfg) {
                    self.audio_config = Some(cfg);
                    self.config_changed(out);
                }
                true
            }
            Err(_) => {
                self.warn_adts("no AudioSpecificConfig for its header fields", out);
                false
            }
        }
    }

    /// Frames before their codec config cannot be decoded: one warning per track.
    fn warn_before_config(&mut self, track: Track, out: &mut Vec<TsEvent>) {
        let i = usize::from(track == Track::Audio);
        if !self.warned_before_config[i] {
            self.warned_before_config[i] = true;
            out.push(TsEvent::Warning(TsWarning::FramesBeforeConfig { track }));
        }
    }

    /// Unsupported ADTS frames repeat with every frame: one warning per reason.
    fn warn_adts(&mut self, why: &'static str, out: &mut Vec<TsEvent>) {
        if !self.warned_adts.contains(&why) {
            self.warned_adts.push(why);
            out.push(TsEvent::Warning(TsWarning::UnsupportedAdts(why)));
        }
    }
}

/// Duration of `n` AAC frames in 90 kHz ticks, rounded down from the exact
/// value (not accumulated per frame, so no drift within a PES).
fn frames_to_ticks(cfg: &AudioConfig, n: i64) -> i64 {
    n * i64::from(cfg.samples_per_frame) * 90_000 / i64::from(cfg.sample_rate.max(1))
}
