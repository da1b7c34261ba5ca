//! The pipeline file model (`pipelines/NAME.toml`): the source rung and the transcoded
//! `[[rung]]` tables, their validation, and which rungs a given source gets (sans-IO).
//!
//! Whether an encoder element exists in the installed GStreamer is checked separately
//! (`crate::transcode::check_elements`), because that needs GStreamer loaded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml_edit::{TableLike, Value};

use super::diag::{
    array_of_tables, check_keys, get_int, get_str, item_span, line_col, name_rule, type_name,
    valid_name, Source,
};

/// Name of the rendition that carries the publisher's source untouched; a rung may not take it.
pub const SOURCE_RENDITION: &str = "source";

/// Encoder used by a rung without `[rung.encoder]` (or with no `element` in it).
pub const DEFAULT_ENCODER: &str = "x264enc";
/// Settings merged under an `x264enc` rung's own properties: low latency, no scene-cut
/// keyframes (keyframes are forced where the source has them, so every rung cuts alike), and a
/// long automatic GOP so x264 never inserts keyframes of its own between the forced ones.
pub const X264_LIVE_DEFAULTS: &[(&str, &str)] = &[
    ("tune", "zerolatency"),
    ("speed-preset", "veryfast"),
    ("key-int-max", "600"),
    ("option-string", "scenecut=0"),
];
/// H.264 profile of a rung that does not name one: plays on every HLS client.
pub const DEFAULT_PROFILE: &str = "main";
/// Profiles a rung may ask for (passed to the encoder through its output caps).
pub const PROFILES: &[&str] = &["baseline", "constrained-baseline", "main", "high"];
/// Rung sizes: x264 and every HLS player handle these; 4:2:0 needs even dimensions.
pub const MIN_DIMENSION: u32 = 64;
pub const MAX_WIDTH: u32 = 7680;
pub const MAX_HEIGHT: u32 = 4320;
/// Frame rate cap range (frames per second).
pub const MAX_FPS: u32 = 120;
/// Video bitrate range in kbit/s; below 50 H.264 is a slideshow, above 100 Mb/s is not HLS.
pub const MIN_BITRATE_KBPS: u32 = 50;
pub const MAX_BITRATE_KBPS: u32 = 100_000;
/// AAC re-encode bitrate range in kbit/s (`audio_bitrate`).
pub const MIN_AUDIO_KBPS: u32 = 16;
pub const MAX_AUDIO_KBPS: u32 = 320;
/// Element that re-encodes a rung's audio to AAC-LC (gstreamer1.0-libav).
pub const AUDIO_ENCODER: &str = "avenc_aac";
/// Rungs per pipeline: each costs an encoder; beyond this the ladder is a mistake.
pub const MAX_RUNGS: usize = 8;

/// A 1-based line and column in a pipeline file, for diagnostics found after parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub name: String,
    pub path: PathBuf,
    pub description: Option<String>,
    /// Pass the source through as a rung (`[source] passthrough`).
    pub source: bool,
    /// Transcoded rungs, in file order.
    pub rungs: Vec<Rung>,
}

/// One transcoded rung (`[[rung]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// Rendition name; appears in URLs (`/live/STREAM/NAME/index.m3u8`).
    pub name: String,
    /// Output width; None keeps the source's aspect ratio.
    pub width: Option<u32>,
    pub height: u32,
    /// Frame rate cap; None keeps the source's rate.
    pub fps: Option<u32>,
    /// Video bitrate in kbit/s (the encoder's `bitrate` property).
    pub bitrate_kbps: u32,
    /// Re-encode the audio to AAC-LC at this many kbit/s; None passes the source audio through.
    pub audio_kbps: Option<u32>,
    pub profile: String,
    pub encoder: Encoder,
    pub pos: Pos,
    pub bitrate_pos: Pos,
}

/// The GStreamer encoder element of a rung and the properties set on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoder {
    pub element: String,
    pub pos: Pos,
    /// (property, value as GStreamer parses it from a string, where it is written).
    pub properties: Vec<(String, String, Pos)>,
}

impl Encoder {
    /// Whether the file sets `name` itself.
    pub fn sets(&self, name: &str) -> bool {
        self.properties.iter().any(|(k, _, _)| k == name)
    }
}

fn pos_of(src: &Source, span: Option<std::ops::Range<usize>>) -> Pos {
    let (line, col) = line_col(src.text, span.map_or(0, |s| s.start));
    Pos { line, col }
}

/// A `[[rung]]` integer within `range` and where it is written; None when missing or wrong
/// (reported).
fn get_u32(
    src: &mut Source,
    t: &dyn TableLike,
    name: &str,
    range: (u32, u32),
    unit: &str,
) -> Option<(u32, Pos)> {
    let range = (i64::from(range.0), i64::from(range.1));
    let (n, span) = get_int(src, t, name, "in [[rung]]", range, unit, "")?;
    // In range, so it fits.
    Some((n as u32, pos_of(src, span)))
}

fn rung_hint(key: &str) -> Option<&'static str> {
    match key {
        "audio" | "aac" | "audio_kbps" => Some(
            "to re-encode this rung's audio, write `audio_bitrate` in kbit/s (AAC-LC); without it the source audio is passed through",
        ),
        "video_bitrate" | "kbps" | "bitrate_kbps" => Some("write the video bitrate as `bitrate` in kbit/s"),
        "framerate" | "rate" => Some("did you mean `fps`?"),
        _ => None,
    }
}

/// Parses every `[[rung]]` of a pipeline file, reporting problems into `src`.
pub(super) fn parse_rungs(src: &mut Source, root: &dyn TableLike) -> Vec<Rung> {
    let tables = array_of_tables(src, root, "rung");
    if tables.len() > MAX_RUNGS {
        src.report(
            tables[MAX_RUNGS].1.clone(),
            format!("too many rungs: at most {MAX_RUNGS} (each one is a live encoder)"),
        );
    }
    let mut rungs = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (t, header) in tables.into_iter().take(MAX_RUNGS) {
        if let Some(r) = parse_rung(src, t, header, &mut seen) {
            rungs.push(r);
        }
    }
    rungs
}

fn parse_rung(
    src: &mut Source,
    t: &dyn TableLike,
    header: Option<std::ops::Range<usize>>,
    seen: &mut BTreeMap<String, usize>,
) -> Option<Rung> {
    let ctx = "in [[rung]]";
    check_keys(
        src,
        t,
        ctx,
        &[
            "name",
            "width",
            "height",
            "fps",
            "bitrate",
            "audio_bitrate",
            "profile",
            "encoder",
        ],
        rung_hint,
    );
    let pos = pos_of(src, header.clone());
    let mut ok = true;
    let name = match get_str(src, t, "name", ctx) {
        Some((n, span)) if valid_name(n) && n != SOURCE_RENDITION => {
            let line = pos_of(src, span.clone()).line;
            if let Some(first) = seen.get(n) {
                src.report(
                    span,
                    format!("duplicate rung name `{n}` (first defined on line {first})"),
                );
                ok = false;
            } else {
                seen.insert(n.to_string(), line);
            }
            Some(n.to_string())
        }
        Some((n, span)) if n == SOURCE_RENDITION => {
            src.report(
                span,
                format!("rung name `{n}` is reserved for the passed-through source"),
            );
            None
        }
        Some((n, span)) => {
            src.report(
                span,
                format!(
                    "invalid rung name `{n}`: must be {} (it appears in URLs)",
                    name_rule()
                ),
            );
            None
        }
        None => {
            if !t.contains_key("name") {
                src.report(header.clone(), "[[rung]] is missing `name`".to_string());
            }
            None
        }
    };
    let label = name
        .as_deref()
        .map(|n| format!("[[rung]] `{n}`"))
        .unwrap_or_else(|| "[[rung]]".to_string());

    let even = |src: &mut Source, v: Option<(u32, Pos)>, what: &str| -> Option<u32> {
        let (n, p) = v?;
        if n % 2 == 1 {
            let offset = offset_of(src.text, p);
            src.report(
                Some(offset..offset),
                format!("`{what}` in {label} must be even (H.264 4:2:0 video), found {n}"),
            );
            return None;
        }
        Some(n)
    };
    let width = get_u32(src, t, "width", (MIN_DIMENSION, MAX_WIDTH), " pixels");
    let width = even(src, width, "width");
    let height = get_u32(src, t, "height", (MIN_DIMENSION, MAX_HEIGHT), " pixels");
    let height = even(src, height, "height");
    if !t.contains_key("height") {
        src.report(
            header.clone(),
            format!("{label} is missing `height` (e.g. height = 480; width follows the source's aspect ratio)"),
        );
    }
    let fps = get_u32(src, t, "fps", (1, MAX_FPS), " frames per second").map(|(n, _)| n);
    let bitrate = get_u32(
        src,
        t,
        "bitrate",
        (MIN_BITRATE_KBPS, MAX_BITRATE_KBPS),
        " kbit/s",
    );
    if !t.contains_key("bitrate") {
        src.report(
            header.clone(),
            format!("{label} is missing `bitrate` (video kbit/s, e.g. bitrate = 1200)"),
        );
    }
    let audio_kbps = get_u32(
        src,
        t,
        "audio_bitrate",
        (MIN_AUDIO_KBPS, MAX_AUDIO_KBPS),
        " kbit/s",
    );
    let audio_ok = audio_kbps.is_some() || !t.contains_key("audio_bitrate");
    let audio_kbps = audio_kbps.map(|(n, _)| n);
    let profile = match get_str(src, t, "profile", ctx) {
        Some((p, _)) if PROFILES.contains(&p) => Some(p.to_string()),
        Some((p, span)) => {
            src.report(
                span,
                format!(
                    "`profile` in {label}: unknown H.264 profile `{p}`; expected one of: {}",
                    PROFILES.join(", ")
                ),
            );
            None
        }
        None if t.contains_key("profile") => None,
        None => Some(DEFAULT_PROFILE.to_string()),
    };
    let encoder = parse_encoder(src, t, &label);

    match (ok, name, height, bitrate, profile, encoder) {
        (
            true,
            Some(name),
            Some(height),
            Some((bitrate_kbps, bitrate_pos)),
            Some(profile),
            Some(encoder),
        ) if (width.is_some() || !t.contains_key("width")) && audio_ok => Some(Rung {
            name,
            width,
            height,
            fps,
            bitrate_kbps,
            audio_kbps,
            profile,
            encoder,
            pos,
            bitrate_pos,
        }),
        _ => None,
    }
}

/// Byte offset of a line/column pair (inverse of `line_col`), to report at a remembered spot.
fn offset_of(text: &str, p: Pos) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(p.line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start
        + rest
            .char_indices()
            .nth(p.col.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

fn parse_encoder(src: &mut Source, t: &dyn TableLike, label: &str) -> Option<Encoder> {
    let Some((key, item)) = t.get_key_value("encoder") else {
        let mut e = Encoder {
            element: DEFAULT_ENCODER.to_string(),
            pos: Pos::default(),
            properties: Vec::new(),
        };
        add_x264_defaults(&mut e);
        return Some(e);
    };
    let Some(et) = item.as_table_like() else {
        src.report(
            item_span(Some(key), item),
            format!(
                "`encoder` in {label} must be a table ([rung.encoder] with `element` and properties), found {}",
                type_name(item)
            ),
        );
        return None;
    };
    let table_pos = pos_of(src, item_span(Some(key), item));
    let mut e = Encoder {
        element: DEFAULT_ENCODER.to_string(),
        pos: table_pos,
        properties: Vec::new(),
    };
    let mut ok = true;
    for (k, v) in et.iter() {
        let span = item_span(et.key(k), v).or_else(|| et.key(k).and_then(|k| k.span()));
        let p = pos_of(src, span.clone());
        if k == "element" {
            match v.as_str() {
                Some(s)
                    if !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    e.element = s.to_string();
                    e.pos = p;
                }
                _ => {
                    src.report(
                        span,
                        format!("`element` in the encoder of {label} must be a GStreamer element name such as \"x264enc\""),
                    );
                    ok = false;
                }
            }
            continue;
        }
        let text = match v.as_value() {
            Some(Value::String(s)) => s.value().to_string(),
            Some(Value::Integer(i)) => i.value().to_string(),
            Some(Value::Float(f)) => f.value().to_string(),
            Some(Value::Boolean(b)) => b.value().to_string(),
            _ => {
                src.report(
                    span,
                    format!(
                        "encoder property `{k}` in {label} must be a string, number or boolean, found {}",
                        type_name(v)
                    ),
                );
                ok = false;
                continue;
            }
        };
        e.properties.push((k.to_string(), text, p));
    }
    if e.element == DEFAULT_ENCODER {
        add_x264_defaults(&mut e);
    }
    ok.then_some(e)
}

fn add_x264_defaults(e: &mut Encoder) {
    for (k, v) in X264_LIVE_DEFAULTS {
        if !e.sets(k) {
            e.properties.push((k.to_string(), v.to_string(), e.pos));
        }
    }
}

/// A rung as it runs for one particular source.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// Index into [`Pipeline::rungs`].
    pub index: usize,
    pub width: u32,
    pub height: u32,
    /// Frame rate cap to apply (None: keep every source frame).
    pub fps_cap: Option<u32>,
}

/// Rungs of `pipeline` that make sense for a `width`×`height` source, and one line for each
/// rung skipped. A rung taller than the source is skipped (upscaling only costs bits); so is a
/// rung as tall as the source when the source itself is passed through (it would duplicate it).
pub fn select(
    pipeline: &Pipeline,
    width: u32,
    height: u32,
    fps: Option<f64>,
) -> (Vec<Selected>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (index, r) in pipeline.rungs.iter().enumerate() {
        let too_tall = r.height > height || (pipeline.source && r.height == height);
        let too_wide = r.width.is_some_and(|w| w > width);
        if too_tall || too_wide || width == 0 || height == 0 {
            let why = if pipeline.source && r.height == height {
                "the source passed through already has that height"
            } else {
                "it is larger than the source"
            };
            skipped.push(format!(
                "rung `{}` ({}p) skipped for a {width}x{height} source: {why}",
                r.name, r.height
            ));
            continue;
        }
        // Keep the aspect ratio, rounded to the nearest even width.
        let w = r.width.unwrap_or_else(|| {
            let (sw, sh, rh) = (width as u64, height as u64, r.height as u64);
            (((sw * rh + sh) / (2 * sh)) * 2).max(2) as u32
        });
        let fps_cap = r
            .fps
            .filter(|cap| fps.is_none_or(|f| f > *cap as f64 + 0.01));
        out.push(Selected {
            index,
            width: w,
            height: r.height,
            fps_cap,
        });
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_pipeline;

    fn parse(text: &str) -> Result<Pipeline, Vec<String>> {
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-ladder-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::fs::write(&path, text).unwrap();
        let r = load_pipeline("p", &path);
        let _ = std::fs::remove_dir_all(&dir);
        r.map_err(|d| {
            d.iter()
                .map(|d| d.to_string().replace(&format!("{}/", dir.display()), ""))
                .collect()
        })
    }

    const LADDER: &str = "[source]\npassthrough = true\n\n[[rung]]\nname = \"720p\"\nheight = 720\nbitrate = 2800\n\n[[rung]]\nname = \"480p\"\nheight = 480\nbitrate = 1200\n\n[[rung]]\nname = \"360p\"\nheight = 360\nbitrate = 700\n";

    #[test]
    fn rungs_parse_with_defaults() {
        let p = parse(LADDER).unwrap();
        assert!(p.source);
        assert_eq!(p.rungs.len(), 3);
        let r = &p.rungs[1];
        assert_eq!(
            (r.name.as_str(), r.width, r.height, r.fps, r.bitrate_kbps),
            ("480p", None, 480, None, 1200)
        );
        assert_eq!(r.profile, "main");
        assert_eq!(r.encoder.element, "x264enc");
        assert!(r
            .encoder
            .properties
            .iter()
            .any(|(k, v, _)| k == "tune" && v == "zerolatency"));
        assert_eq!(r.pos, Pos { line: 9, col: 1 });
    }

    #[test]
    fn encoder_table_overrides_defaults_and_keeps_positions() {
        let p = parse(
            "[[rung]]\nname = \"lo\"\nheight = 360\nwidth = 640\nfps = 15\nbitrate = 500\nprofile = \"baseline\"\n[rung.encoder]\nelement = \"x264enc\"\nspeed-preset = \"ultrafast\"\nthreads = 2\n",
        )
        .unwrap();
        let e = &p.rungs[0].encoder;
        let get = |k: &str| {
            e.properties
                .iter()
                .find(|(n, _, _)| n == k)
                .map(|(_, v, p)| (v.as_str(), *p))
        };
        assert_eq!(
            get("speed-preset"),
            Some(("ultrafast", Pos { line: 10, col: 16 }))
        );
        assert_eq!(get("threads"), Some(("2", Pos { line: 11, col: 11 })));
        assert_eq!(
            get("tune").map(|t| t.0),
            Some("zerolatency"),
            "defaults fill the rest"
        );
        assert_eq!(e.pos, Pos { line: 9, col: 11 });
        assert_eq!(p.rungs[0].fps, Some(15));
        let p = parse("[[rung]]\nname = \"gpu\"\nheight = 720\nbitrate = 3000\nencoder = { element = \"nvh264enc\", preset = \"low-latency-hq\" }\n").unwrap();
        assert_eq!(p.rungs[0].encoder.element, "nvh264enc");
        assert_eq!(
            p.rungs[0].encoder.properties.len(),
            1,
            "no x264 defaults on other encoders"
        );
    }

    #[test]
    fn golden_rung_errors() {
        let text = "[source]\npassthrough = false\n\n[[rung]]\nname = \"source\"\nheight = 721\nbitrate = 10\nfps = 0\nprofile = \"extreme\"\naudio = \"aac\"\nwidht = 640\n\n[[rung]]\nheight = 480\n\n[[rung]]\nname = \"a b\"\nheight = \"480\"\nbitrate = 900\nencoder = \"x264enc\"\n\n[[rung]]\nname = \"x\"\nheight = 480\nbitrate = 900\n[rung.encoder]\nelement = \"x264enc !\"\nbitrate = [1]\n\n[[rung]]\nname = \"x\"\nheight = 240\nbitrate = 300\n";
        assert_eq!(
            parse(text).unwrap_err(),
            [
                "p.toml:5:8: rung name `source` is reserved for the passed-through source",
                "p.toml:6:10: `height` in [[rung]] must be even (H.264 4:2:0 video), found 721",
                "p.toml:7:11: `bitrate` in [[rung]] must be between 50 and 100000 kbit/s, found 10",
                "p.toml:8:7: `fps` in [[rung]] must be between 1 and 120 frames per second, found 0",
                "p.toml:9:11: `profile` in [[rung]]: unknown H.264 profile `extreme`; expected one of: baseline, constrained-baseline, main, high",
                "p.toml:10:1: unknown key `audio` in [[rung]]; expected one of: name, width, height, fps, bitrate, audio_bitrate, profile, encoder (to re-encode this rung's audio, write `audio_bitrate` in kbit/s (AAC-LC); without it the source audio is passed through)",
                "p.toml:11:1: unknown key `widht` in [[rung]]; expected one of: name, width, height, fps, bitrate, audio_bitrate, profile, encoder (did you mean `width`?)",
                "p.toml:13:1: [[rung]] is missing `name`",
                "p.toml:13:1: [[rung]] is missing `bitrate` (video kbit/s, e.g. bitrate = 1200)",
                "p.toml:17:8: invalid rung name `a b`: must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-` (it appears in URLs)",
                "p.toml:18:10: `height` in [[rung]] must be an integer, found string",
                "p.toml:20:11: `encoder` in [[rung]] must be a table ([rung.encoder] with `element` and properties), found string",
                "p.toml:27:11: `element` in the encoder of [[rung]] `x` must be a GStreamer element name such as \"x264enc\"",
                "p.toml:28:11: encoder property `bitrate` in [[rung]] `x` must be a string, number or boolean, found array",
                "p.toml:31:8: duplicate rung name `x` (first defined on line 23)",
            ]
        );
    }

    #[test]
    fn audio_bitrate_asks_for_an_aac_re_encode() {
        let p = parse("[[rung]]\nname = \"a\"\nheight = 360\nbitrate = 600\naudio_bitrate = 64\n")
            .unwrap();
        assert_eq!(p.rungs[0].audio_kbps, Some(64));
        assert_eq!(
            parse(LADDER).unwrap().rungs[0].audio_kbps,
            None,
            "default: passed through"
        );
        assert_eq!(
            parse("[[rung]]\nname = \"a\"\nheight = 360\nbitrate = 600\naudio_bitrate = 8\n").unwrap_err(),
            ["p.toml:5:17: `audio_bitrate` in [[rung]] must be between 16 and 320 kbit/s, found 8"]
        );
    }

    #[test]
    fn a_pipeline_needs_some_rung() {
        assert_eq!(
            parse("[source]\npassthrough = false\n").unwrap_err(),
            ["p.toml:2:15: pipeline has no rungs: enable [source] passthrough or add a [[rung]]"]
        );
        let p = parse(
            "[source]\npassthrough = false\n[[rung]]\nname = \"a\"\nheight = 360\nbitrate = 600\n",
        )
        .unwrap();
        assert!(!p.source && p.rungs.len() == 1);
    }

    fn sizes(p: &Pipeline, w: u32, h: u32) -> Vec<(String, u32, u32)> {
        select(p, w, h, Some(30.0))
            .0
            .iter()
            .map(|s| (p.rungs[s.index].name.clone(), s.width, s.height))
            .collect()
    }

    #[test]
    fn rung_selection_by_source_size() {
        let p = parse(LADDER).unwrap();
        let own = |v: &[(&str, u32, u32)]| -> Vec<(String, u32, u32)> {
            v.iter().map(|(n, w, h)| (n.to_string(), *w, *h)).collect()
        };
        assert_eq!(
            sizes(&p, 1920, 1080),
            own(&[("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)])
        );
        assert_eq!(
            sizes(&p, 1280, 720),
            own(&[("480p", 854, 480), ("360p", 640, 360)])
        );
        let (_, skipped) = select(&p, 1280, 720, None);
        assert_eq!(skipped, ["rung `720p` (720p) skipped for a 1280x720 source: the source passed through already has that height"]);
        assert_eq!(sizes(&p, 854, 480), own(&[("360p", 640, 360)]));
        assert_eq!(sizes(&p, 640, 360), own(&[]));
        let (_, skipped) = select(&p, 640, 360, None);
        assert_eq!(skipped.len(), 3);
        assert!(
            skipped[0].ends_with("it is larger than the source"),
            "{skipped:?}"
        );
        // Odd and unusual sizes still give even widths.
        assert_eq!(
            sizes(&p, 1366, 768),
            own(&[("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)])
        );
        assert_eq!(
            sizes(&p, 1001, 563),
            own(&[("480p", 854, 480), ("360p", 640, 360)])
        );
        assert_eq!(
            sizes(&p, 720, 1280),
            own(&[
                ("720p", 405 + 1, 720),
                ("480p", 270, 480),
                ("360p", 202, 360)
            ])
        );
        // Without passthrough, a rung as tall as the source is kept.
        let mut q = p.clone();
        q.source = false;
        assert_eq!(sizes(&q, 1280, 720)[0], ("720p".to_string(), 1280, 720));
    }

    #[test]
    fn fps_cap_applies_only_above_it() {
        let p = parse("[[rung]]\nname = \"a\"\nheight = 360\nbitrate = 600\nfps = 30\n").unwrap();
        assert_eq!(select(&p, 1280, 720, Some(60.0)).0[0].fps_cap, Some(30));
        assert_eq!(select(&p, 1280, 720, Some(29.97)).0[0].fps_cap, None);
        assert_eq!(select(&p, 1280, 720, None).0[0].fps_cap, Some(30));
    }
}
