//! Whether a pipeline file's elements exist in the installed GStreamer (`ferrocast check`,
//! and the hub before it runs a pipeline), and setting element properties from their text.

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use super::init;
use crate::config::ladder;
use crate::config::{Diagnostic, Pipeline};

/// Checks that every encoder element of `p` exists in the installed GStreamer, that each
/// property exists on it and accepts its value, and that a `bitrate` can be set.
pub fn check_elements(p: &Pipeline) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let diag = |pos: ladder::Pos, message: String| Diagnostic {
        file: p.path.clone(),
        line: pos.line.max(1),
        col: pos.col.max(1),
        message,
    };
    if p.rungs.is_empty() {
        return out;
    }
    if let Err(e) = init() {
        out.push(diag(p.rungs[0].pos, e));
        return out;
    }
    for (what, hint) in [
        ("h264parse", "gstreamer1.0-plugins-bad"),
        ("avdec_h264", "gstreamer1.0-libav"),
        ("videoscale", "gstreamer1.0-plugins-base"),
        ("videoconvert", "gstreamer1.0-plugins-base"),
        ("appsrc", "gstreamer1.0-plugins-base"),
    ] {
        if gst::ElementFactory::find(what).is_none() {
            out.push(diag(
                p.rungs[0].pos,
                format!("GStreamer element `{what}` (needed by every transcoded rung) is not installed (Debian package {hint})"),
            ));
        }
    }
    if p.rungs.iter().any(|r| r.audio_kbps.is_some()) {
        for what in [
            "avdec_aac",
            ladder::AUDIO_ENCODER,
            "aacparse",
            "audioconvert",
            "audioresample",
        ] {
            if gst::ElementFactory::find(what).is_none() {
                out.push(diag(
                    p.rungs[0].pos,
                    format!("GStreamer element `{what}` (needed to re-encode audio, `audio_bitrate`) is not installed (Debian packages gstreamer1.0-libav, gstreamer1.0-plugins-good, gstreamer1.0-plugins-base)"),
                ));
            }
        }
    }
    for r in &p.rungs {
        let e = &r.encoder;
        let pos = if e.pos.line == 0 { r.pos } else { e.pos };
        let Some(factory) = gst::ElementFactory::find(&e.element) else {
            let hint = if e.element == ladder::DEFAULT_ENCODER {
                " (Debian package gstreamer1.0-plugins-ugly)"
            } else {
                ""
            };
            out.push(diag(
                pos,
                format!(
                    "rung `{}`: encoder element `{}` is not installed in this GStreamer{hint}; `gst-inspect-1.0 {}` shows whether it is",
                    r.name, e.element, e.element
                ),
            ));
            continue;
        };
        let element = match factory.create().build() {
            Ok(el) => el,
            Err(err) => {
                out.push(diag(
                    pos,
                    format!(
                        "rung `{}`: encoder element `{}` cannot be created: {err}",
                        r.name, e.element
                    ),
                ));
                continue;
            }
        };
        if !factory.has_type(gst::ElementFactoryType::VIDEO_ENCODER) {
            out.push(diag(
                pos,
                format!("rung `{}`: `{}` is not a video encoder", r.name, e.element),
            ));
        }
        for (k, v, at) in &e.properties {
            let at = if at.line == 0 { pos } else { *at };
            if let Err(msg) = set_property(&element, k, v) {
                out.push(diag(at, format!("rung `{}`: {msg}", r.name)));
            }
        }
        if !e.sets("bitrate") && element.find_property("bitrate").is_none() {
            out.push(diag(
                r.bitrate_pos,
                format!(
                    "rung `{}`: encoder `{}` has no `bitrate` property; set its rate control in [rung.encoder] instead",
                    r.name, e.element
                ),
            ));
        }
    }
    out
}

/// Sets a property from its string form, as `gst-launch-1.0` would.
pub(super) fn set_property(element: &gst::Element, name: &str, value: &str) -> Result<(), String> {
    let factory = element
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_default();
    let Some(pspec) = element.find_property(name) else {
        return Err(format!("encoder `{factory}` has no property `{name}`"));
    };
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        return Err(format!("property `{name}` of `{factory}` is read-only"));
    }
    use gst::prelude::GstValueExt;
    let v = glib::Value::deserialize_with_pspec(value, &pspec).map_err(|_| {
        format!(
            "`{value}` is not a valid value for property `{name}` of `{factory}` (type {})",
            pspec.value_type().name()
        )
    })?;
    element.set_property_from_value(name, &v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ladder::Rung;

    #[test]
    fn check_reports_missing_elements_and_bad_properties_by_name() {
        let mut rung = Rung {
            name: "r".into(),
            width: None,
            height: 360,
            fps: None,
            bitrate_kbps: 600,
            audio_kbps: None,
            profile: "main".into(),
            encoder: ladder::Encoder {
                element: "no-such-encoder-element".into(),
                pos: ladder::Pos { line: 3, col: 11 },
                properties: Vec::new(),
            },
            pos: ladder::Pos { line: 1, col: 1 },
            bitrate_pos: ladder::Pos { line: 2, col: 11 },
        };
        let mut p = Pipeline {
            name: "p".into(),
            path: "p.toml".into(),
            description: None,
            source: true,
            rungs: vec![rung.clone()],
        };
        let msgs: Vec<String> = check_elements(&p).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            ["p.toml:3:11: rung `r`: encoder element `no-such-encoder-element` is not installed in this GStreamer; `gst-inspect-1.0 no-such-encoder-element` shows whether it is"]
        );
        rung.encoder.element = "x264enc".into();
        rung.encoder.properties = vec![
            (
                "speed-preset".into(),
                "warp".into(),
                ladder::Pos { line: 4, col: 16 },
            ),
            (
                "colour".into(),
                "1".into(),
                ladder::Pos { line: 5, col: 10 },
            ),
            (
                "tune".into(),
                "zerolatency".into(),
                ladder::Pos { line: 6, col: 8 },
            ),
        ];
        p.rungs = vec![rung.clone()];
        let msgs: Vec<String> = check_elements(&p).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "p.toml:4:16: rung `r`: `warp` is not a valid value for property `speed-preset` of `x264enc` (type GstX264EncPreset)",
                "p.toml:5:10: rung `r`: encoder `x264enc` has no property `colour`",
            ]
        );
        rung.encoder.element = "videoscale".into();
        rung.encoder.properties.clear();
        p.rungs = vec![rung];
        let msgs: Vec<String> = check_elements(&p).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "p.toml:3:11: rung `r`: `videoscale` is not a video encoder",
                "p.toml:2:11: rung `r`: encoder `videoscale` has no `bitrate` property; set its rate control in [rung.encoder] instead",
            ]
        );
    }
}
