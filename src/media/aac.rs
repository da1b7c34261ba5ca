//! AAC: AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) parsing and building.
//!
//! Sans-IO and total: malformed input yields an [`AacError`], never a panic.

use super::bits::{BitError, BitReader, BitWriter};
use super::AudioConfig;
use bytes::Bytes;

/// Sampling rates by samplingFrequencyIndex (ASC and ADTS headers alike);
/// 13 and 14 are reserved, 15 = explicit.
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];
/// samplingFrequencyIndex meaning "a 24-bit frequency follows".
const EXPLICIT_RATE_INDEX: u8 = 15;
/// Object types for SBR (HE-AAC v1) and PS (HE-AAC v2).
const AOT_SBR: u8 = 5;
const AOT_PS: u8 = 29;
/// Sync words of backward-compatible (implicit-core) SBR/PS signalling.
const SYNC_SBR: u32 = 0x2b7;
const SYNC_PS: u32 = 0x548;

/// Why an AudioSpecificConfig was rejected or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    #[error("AudioSpecificConfig truncated while reading {0}")]
    Truncated(&'static str),
    #[error("AudioSpecificConfig uses reserved sampling frequency index {0}")]
    ReservedSamplingFrequencyIndex(u8),
    #[error("invalid AAC sample rate {0} Hz")]
    InvalidSampleRate(u32),
    #[error(
        "unsupported audio object type {0} ({name}); publish AAC-LC or HE-AAC",
        name = object_type_name(*.0)
    )]
    UnsupportedObjectType(u8),
    #[error(
        "unsupported AAC channel configuration {0} (0 means a program config element, 8–10 and 15 are reserved)"
    )]
    UnsupportedChannelConfig(u8),
    #[error("cannot signal {0} AAC channels with a channel configuration (supported: 1–6, 8)")]
    UnsupportedChannelCount(u8),
}

impl From<BitError> for AacError {
    fn from(e: BitError) -> Self {
        match e {
            // AAC configs hold no Exp-Golomb codes; an overflow can only be a cut.
            BitError::Truncated(field) | BitError::ExpGolombOverflow(field) => {
                AacError::Truncated(field)
            }
        }
    }
}

/// Every field of an AudioSpecificConfig that ingest or packaging uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// AAC core object type (1 Main, 2 LC, 3 SSR, 4 LTP): what ADTS signals.
    pub core_object_type: u8,
    /// samplingFrequencyIndex of the core; 15 when the rate is explicit.
    pub sampling_frequency_index: u8,
    pub core_sample_rate: u32,
    pub channel_configuration: u8,
    /// Samples per core frame: 1024, or 960 when frameLengthFlag is set.
    pub frame_length: u32,
    /// Spectral band replication (HE-AAC), explicitly signalled.
    pub sbr: bool,
    /// Parametric stereo (HE-AAC v2), explicitly signalled.
    pub ps: bool,
    /// Output rate of the SBR tool, when SBR is signalled.
    pub extension_sample_rate: Option<u32>,
}

impl AudioSpecificConfig {
    /// Object type to advertise (RFC 6381 `mp4a.40.N`): 29 for PS, 5 for SBR.
    pub fn object_type(&self) -> u8 {
        match (self.ps, self.sbr) {
            (true, _) => AOT_PS,
            (false, true) => AOT_SBR,
            _ => self.core_object_type,
        }
    }

    /// Rate of the decoded PCM: the SBR rate when SBR is on.
    pub fn output_sample_rate(&self) -> u32 {
        self.extension_sample_rate
            .filter(|_| self.sbr)
            .unwrap_or(self.core_sample_rate)
    }

    /// Decoded PCM samples per frame; dual-rate SBR doubles the core frame.
    pub fn samples_per_frame(&self) -> u32 {
        if self.output_sample_rate() > self.core_sample_rate {
            self.frame_length * 2
        } else {
            self.frame_length
        }
    }

    /// Decoded channel count; PS turns a mono core into stereo.
    pub fn output_channels(&self) -> u8 {
        if self.ps {
            2
        } else {
            channel_count(self.channel_configuration).unwrap_or(0)
        }
    }
}

/// Parses an AudioSpecificConfig into the shared [`AudioConfig`].
///
/// With SBR/PS the reported rate, frame size and channel count are those of
/// the decoded output, which is what timestamps and HLS attributes describe.
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AudioConfig, AacError> {
    let parsed = parse_asc(asc)?;
    Ok(AudioConfig {
        asc: Bytes::copy_from_slice(asc),
        object_type: parsed.object_type(),
        sample_rate: parsed.output_sample_rate(),
        channels: parsed.output_channels(),
        samples_per_frame: parsed.samples_per_frame(),
    })
}

/// Parses every field of an AudioSpecificConfig (explicit hierarchical and
/// backward-compatible SBR/PS signalling included).
pub fn parse_asc(asc: &[u8]) -> Result<AudioSpecificConfig, AacError> {
    let mut r = BitReader::new(asc);
    let object_type = read_object_type(&mut r)?;
    let (sampling_frequency_index, core_sample_rate) = read_sample_rate(&mut r)?;
    let channel_configuration = r.bits(4, "channelConfiguration")? as u8;
    let hierarchical_sbr = object_type == AOT_SBR || object_type == AOT_PS;
    let (core_object_type, extension_sample_rate) = if hierarchical_sbr {
        let (_, extension_rate) = read_sample_rate(&mut r)?;
        (read_object_type(&mut r)?, Some(extension_rate))
    } else {
        (object_type, None)
    };
    if !matches!(core_object_type, 1..=4) {
        return Err(AacError::UnsupportedObjectType(core_object_type));
    }
    channel_count(channel_configuration)?;
    let frame_length = read_ga_specific_config(&mut r)?;
    let mut asc = AudioSpecificConfig {
        core_object_type,
        sampling_frequency_index,
        core_sample_rate,
        channel_configuration,
        frame_length,
        sbr: hierarchical_sbr,
        ps: object_type == AOT_PS,
        extension_sample_rate,
    };
    if !hierarchical_sbr {
        read_sync_extension(&mut r, &mut asc);
    }
    Ok(asc)
}

/// audioObjectType with the 31 + 6-bit escape (types 32..=95).
fn read_object_type(r: &mut BitReader) -> Result<u8, AacError> {
    let aot = r.bits(5, "audioObjectType")? as u8;
    if aot == 31 {
        return Ok(32 + r.bits(6, "audioObjectTypeExt")? as u8);
    }
    Ok(aot)
}

/// samplingFrequencyIndex, or index 15 plus an explicit 24-bit frequency.
fn read_sample_rate(r: &mut BitReader) -> Result<(u8, u32), AacError> {
    let index = r.bits(4, "samplingFrequencyIndex")? as u8;
    if index == EXPLICIT_RATE_INDEX {
        let rate = r.bits(24, "samplingFrequency")?;
        if rate == 0 {
            return Err(AacError::InvalidSampleRate(rate));
        }
        return Ok((index, rate));
    }
    SAMPLE_RATES
        .get(usize::from(index))
        .map(|&rate| (index, rate))
        .ok_or(AacError::ReservedSamplingFrequencyIndex(index))
}

/// GASpecificConfig for object types 1–4 (channelConfiguration != 0); returns the frame length.
fn read_ga_specific_config(r: &mut BitReader) -> Result<u32, AacError> {
    let frame_length = if r.bits(1, "frameLengthFlag")? == 1 {
        960
    } else {
        1024
    };
    if r.bits(1, "dependsOnCoreCoder")? == 1 {
        r.bits(14, "coreCoderDelay")?;
    }
    if r.bits(1, "extensionFlag")? == 1 {
        r.bits(1, "extensionFlag3")?;
    }
    Ok(frame_length)
}

/// Backward-compatible SBR/PS signalling appended after the core config.
///
/// Best effort: a missing or cut extension just means "no SBR", which is
/// still a playable (if lower-rate) reading of the stream.
fn read_sync_extension(r: &mut BitReader, asc: &mut AudioSpecificConfig) {
    let mut ext = *r;
    let parsed = (|| -> Result<(), AacError> {
        if ext.remaining() < 16 || ext.bits(11, "syncExtensionType")? != SYNC_SBR {
            return Ok(());
        }
        if read_object_type(&mut ext)? != AOT_SBR || ext.bits(1, "sbrPresentFlag")? == 0 {
            return Ok(());
        }
        let (_, rate) = read_sample_rate(&mut ext)?;
        let ps = ext.remaining() >= 12
            && ext.bits(11, "syncExtensionType")? == SYNC_PS
            && ext.bits(1, "psPresentFlag")? == 1;
        asc.sbr = true;
        asc.extension_sample_rate = Some(rate);
        asc.ps = ps;
        Ok(())
    })();
    if parsed.is_ok() {
        *r = ext;
    }
}

/// Channel count for a channelConfiguration (ISO/IEC 14496-3 Table 1.19, incl. 11–14).
fn channel_count(channel_configuration: u8) -> Result<u8, AacError> {
    match channel_configuration {
        1..=6 => Ok(channel_configuration),
        7 | 12 | 14 => Ok(8),
        11 => Ok(7),
        13 => Ok(24),
        other => Err(AacError::UnsupportedChannelConfig(other)),
    }
}

/// Human name of an audio object type, for error messages.
fn object_type_name(object_type: u8) -> &'static str {
    match object_type {
        0 => "null",
        1 => "AAC Main",
        2 => "AAC-LC",
        3 => "AAC SSR",
        4 => "AAC LTP",
        5 => "SBR",
        6 => "AAC Scalable",
        7 => "TwinVQ",
        8 => "CELP",
        9 => "HVXC",
        17 => "ER AAC-LC",
        19 => "ER AAC LTP",
        20 => "ER AAC Scalable",
        22 => "ER BSAC",
        23 => "ER AAC-LD",
        29 => "PS",
        32 => "MP1",
        33 => "MP2",
        34 => "MP3",
        36 => "ALS",
        39 => "ER AAC-ELD",
        42 => "USAC (xHE-AAC)",
        _ => "other",
    }
}

/// Builds a minimal AudioSpecificConfig (no SBR/PS, 1024-sample frames),
/// e.g. from ADTS header fields.
///
/// `object_type` must be an AAC core type (1–4); rates outside the index
/// table are written as an explicit 24-bit frequency.
pub fn audio_specific_config(
    object_type: u8,
    sample_rate: u32,
    channels: u8,
) -> Result<Bytes, AacError> {
    if !matches!(object_type, 1..=4) {
        return Err(AacError::UnsupportedObjectType(object_type));
    }
    if sample_rate == 0 || sample_rate > 0x00ff_ffff {
        return Err(AacError::InvalidSampleRate(sample_rate));
    }
    let channel_configuration = match channels {
        1..=6 => channels,
        8 => 7,
        other => return Err(AacError::UnsupportedChannelCount(other)),
    };
    let mut w = BitWriter::default();
    w.bits(5, object_type.into());
    match SAMPLE_RATES.iter().position(|&r| r == sample_rate) {
        Some(index) => w.bits(4, index as u64),
        None => w
            .bits(4, EXPLICIT_RATE_INDEX.into())
            .bits(24, sample_rate.into()),
    };
    w.bits(4, channel_configuration.into());
    w.bits(3, 0); // frameLengthFlag, dependsOnCoreCoder, extensionFlag
    Ok(Bytes::from(w.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(asc: &[u8]) -> AudioConfig {
        parse_audio_specific_config(asc).unwrap()
    }

    /// Packs (value, bits) fields MSB-first, zero-padding the last byte.
    fn pack(fields: &[(u64, u32)]) -> Vec<u8> {
        let mut w = BitWriter::default();
        for &(v, n) in fields {
            w.bits(n, v);
        }
        w.into_bytes()
    }

    #[test]
    fn aac_lc_stereo_48k() {
        let c = cfg(&[0x11, 0x90]);
        assert_eq!(
            (
                c.object_type,
                c.sample_rate,
                c.channels,
                c.samples_per_frame
            ),
            (2, 48000, 2, 1024)
        );
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(&c.asc[..], &[0x11, 0x90]);
    }

    #[test]
    fn ffmpeg_lc_with_sync_extension_without_sbr() {
        // What ffmpeg's native encoder writes: LC + 0x2b7 / AOT 5 / sbrPresentFlag = 0.
        let c = cfg(&[0x11, 0x90, 0x56, 0xe5, 0x00]);
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 2));
        let c = cfg(&[0x12, 0x08, 0x56, 0xe5, 0x00]);
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 1));
    }

    #[test]
    fn backward_compatible_sbr_and_ps() {
        // LC 24 kHz mono core + 0x2b7 AOT 5 sbrPresent=1 48 kHz + 0x548 psPresent=1.
        let asc = pack(&[
            (2, 5),
            (6, 4),
            (1, 4),
            (0, 3),
            (0x2b7, 11),
            (5, 5),
            (1, 1),
            (3, 4),
            (0x548, 11),
            (1, 1),
        ]);
        let c = cfg(&asc);
        assert_eq!(
            (
                c.object_type,
                c.sample_rate,
                c.channels,
                c.samples_per_frame
            ),
            (29, 48000, 2, 2048)
        );
        let parsed = parse_asc(&asc).unwrap();
        assert_eq!(parsed.core_object_type, 2);
        assert_eq!(parsed.core_sample_rate, 24000);
        // Without the PS part it is plain HE-AAC v1.
        let c = cfg(&asc[..asc.len() - 2]);
        assert_eq!((c.object_type, c.channels), (5, 1));
    }

    #[test]
    fn explicit_hierarchical_he_aac() {
        // AOT 5, 24 kHz core, stereo, extension 48 kHz, core AOT 2, GA config.
        let asc = pack(&[(5, 5), (6, 4), (2, 4), (3, 4), (2, 5), (0, 3)]);
        let c = cfg(&asc);
        assert_eq!(
            (
                c.object_type,
                c.sample_rate,
                c.channels,
                c.samples_per_frame
            ),
            (5, 48000, 2, 2048)
        );
        assert_eq!(c.codec_string(), "mp4a.40.5");
        // HE-AAC v2: AOT 29, mono core decoded as stereo.
        let asc = pack(&[(29, 5), (6, 4), (1, 4), (3, 4), (2, 5), (0, 3)]);
        let c = cfg(&asc);
        assert_eq!((c.object_type, c.sample_rate, c.channels), (29, 48000, 2));
        // Downsampled SBR: same rate, no frame doubling.
        let asc = pack(&[(5, 5), (3, 4), (2, 4), (3, 4), (2, 5), (0, 3)]);
        assert_eq!(cfg(&asc).samples_per_frame, 1024);
    }

    #[test]
    fn explicit_frequency_and_frame_length_960() {
        let asc = pack(&[(2, 5), (15, 4), (50_000, 24), (2, 4), (1, 1), (0, 2)]);
        let c = cfg(&asc);
        assert_eq!((c.sample_rate, c.samples_per_frame), (50_000, 960));
        let parsed = parse_asc(&asc).unwrap();
        assert_eq!(parsed.sampling_frequency_index, 15);
        let zero = pack(&[(2, 5), (15, 4), (0, 24), (2, 4), (0, 3)]);
        assert_eq!(parse_asc(&zero), Err(AacError::InvalidSampleRate(0)));
    }

    #[test]
    fn core_coder_delay_and_extension_flag_are_consumed() {
        let asc = pack(&[
            (2, 5),
            (4, 4),
            (2, 4),
            (0, 1),
            (1, 1),
            (0x1234, 14),
            (1, 1),
            (0, 1),
        ]);
        assert_eq!(cfg(&asc).sample_rate, 44100);
    }

    #[test]
    fn escaped_object_type() {
        // 32 + 10 = 42 (USAC): parsed, then rejected by name.
        let asc = pack(&[(31, 5), (10, 6), (3, 4), (2, 4), (0, 5)]);
        let err = parse_audio_specific_config(&asc).unwrap_err();
        assert_eq!(err, AacError::UnsupportedObjectType(42));
        assert!(err.to_string().contains("USAC"), "{err}");
    }

    #[test]
    fn channel_configurations() {
        for (config, channels) in [(1, 1), (2, 2), (6, 6), (7, 8), (11, 7), (13, 24)] {
            let asc = pack(&[(2, 5), (3, 4), (config, 4), (0, 3)]);
            assert_eq!(cfg(&asc).channels, channels, "config {config}");
        }
        for config in [0u8, 8, 9, 10, 15] {
            let asc = pack(&[(2, 5), (3, 4), (config.into(), 4), (0, 3)]);
            assert_eq!(
                parse_asc(&asc),
                Err(AacError::UnsupportedChannelConfig(config))
            );
        }
    }

    #[test]
    fn rejected_inputs() {
        assert_eq!(
            parse_asc(&[0x16, 0x90]),
            Err(AacError::ReservedSamplingFrequencyIndex(13))
        );
        assert_eq!(
            parse_asc(&[0x01, 0x90]),
            Err(AacError::UnsupportedObjectType(0))
        );
        assert_eq!(parse_asc(&[]), Err(AacError::Truncated("audioObjectType")));
        // SBR whose core is not AAC.
        let asc = pack(&[(5, 5), (6, 4), (2, 4), (3, 4), (23, 5), (0, 3)]);
        assert_eq!(parse_asc(&asc), Err(AacError::UnsupportedObjectType(23)));
    }

    #[test]
    fn every_prefix_is_err_or_the_same_core() {
        let inputs = [
            vec![0x11, 0x90, 0x56, 0xe5, 0x00],
            pack(&[
                (5, 5),
                (15, 4),
                (22050, 24),
                (2, 4),
                (15, 4),
                (44100, 24),
                (2, 5),
                (0, 3),
            ]),
            pack(&[(31, 5), (11, 6), (3, 4), (2, 4), (0, 5)]),
        ];
        for input in inputs {
            let whole = parse_asc(&input);
            for n in 0..input.len() {
                if let Ok(p) = parse_asc(&input[..n]) {
                    let whole = whole.as_ref().unwrap();
                    assert_eq!(p.core_sample_rate, whole.core_sample_rate);
                    assert!(n >= 2, "prefix {n} of {input:02x?}");
                }
            }
        }
        assert!(parse_asc(&[0x11]).is_err());
    }

    #[test]
    fn build_round_trips_every_table_rate_and_layout() {
        for rate in SAMPLE_RATES {
            for channels in [1, 2, 3, 4, 5, 6, 8] {
                for object_type in 1..=4 {
                    let asc = audio_specific_config(object_type, rate, channels).unwrap();
                    assert_eq!(asc.len(), 2);
                    let c = cfg(&asc);
                    assert_eq!(
                        (
                            c.object_type,
                            c.sample_rate,
                            c.channels,
                            c.samples_per_frame
                        ),
                        (object_type, rate, channels, 1024)
                    );
                }
            }
        }
        assert_eq!(
            &audio_specific_config(2, 48000, 2).unwrap()[..],
            &[0x11, 0x90]
        );
        assert_eq!(
            &audio_specific_config(2, 44100, 1).unwrap()[..],
            &[0x12, 0x08]
        );
    }

    #[test]
    fn build_explicit_rate() {
        let asc = audio_specific_config(2, 50_000, 2).unwrap();
        assert_eq!(asc.len(), 5);
        assert_eq!(cfg(&asc).sample_rate, 50_000);
    }

    #[test]
    fn build_rejects_what_it_cannot_signal() {
        assert_eq!(
            audio_specific_config(5, 48000, 2),
            Err(AacError::UnsupportedObjectType(5))
        );
        assert_eq!(
            audio_specific_config(2, 0, 2),
            Err(AacError::InvalidSampleRate(0))
        );
        assert_eq!(
            audio_specific_config(2, 1 << 24, 2),
            Err(AacError::InvalidSampleRate(1 << 24))
        );
        for channels in [0, 7, 9] {
            assert_eq!(
                audio_specific_config(2, 48000, channels),
                Err(AacError::UnsupportedChannelCount(channels))
            );
        }
    }
}
