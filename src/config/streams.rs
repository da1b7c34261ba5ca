//! The `[[stream]]` entries: who may publish under which name, with which key, through which
//! pipeline.

use std::collections::BTreeMap;

use toml_edit::TableLike;

use super::diag::{
    array_of_tables, check_keys, get_str, line_col, name_rule, no_hint, valid_name, Source,
};
use super::pipeline_file::PipelineRef;
use super::{StreamConfig, DEFAULT_PIPELINE, KEY_FORBIDDEN, MAX_KEY_LEN, SRT_PASSPHRASE_LEN};

/// The valid entries, and every pipeline they use (a stream without `pipeline` uses the
/// default one); an entry with a problem is reported and left out.
pub(super) fn parse_streams(
    src: &mut Source,
    root: &dyn TableLike,
) -> (Vec<StreamConfig>, Vec<PipelineRef>) {
    let mut streams = Vec::new();
    let mut refs = Vec::new();
    let entries = array_of_tables(src, root, "stream");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (t, header) in entries {
        let ctx = "in [[stream]]";
        check_keys(
            src,
            t,
            ctx,
            &["name", "key", "pipeline", "passphrase"],
            no_hint,
        );
        let mut ok = true;

        let name = match get_str(src, t, "name", ctx) {
            Some((n, span)) if valid_name(n) => {
                let line = line_col(src.text, span.as_ref().map_or(0, |s| s.start)).0;
                if let Some(first) = seen.get(n) {
                    src.report(
                        span,
                        format!("duplicate stream name `{n}` (first defined on line {first})"),
                    );
                    ok = false;
                } else {
                    seen.insert(n.to_string(), line);
                }
                Some(n)
            }
            Some((n, span)) => {
                src.report(
                    span,
                    format!(
                        "invalid stream name `{n}`: must be {} (it appears in URLs)",
                        name_rule()
                    ),
                );
                None
            }
            None => {
                if !t.contains_key("name") {
                    src.report(header.clone(), "[[stream]] is missing `name`".to_string());
                }
                None
            }
        };
        let label = name.map(|n| format!(" `{n}`")).unwrap_or_default();

        let key = match get_str(src, t, "key", ctx) {
            Some((k, span)) => match key_problem(k) {
                Some(why) => {
                    src.report(span, format!("stream{label}: invalid `key`: {why}"));
                    None
                }
                None => Some(k),
            },
            None => {
                if !t.contains_key("key") {
                    src.report(
                        header.clone(),
                        format!("[[stream]]{label} is missing `key` (the publish secret)"),
                    );
                }
                None
            }
        };

        let pipeline = match get_str(src, t, "pipeline", ctx) {
            Some((p, span)) if valid_name(p) => {
                refs.push(PipelineRef {
                    name: p.to_string(),
                    span,
                    defaulted: false,
                });
                Some(p)
            }
            Some((p, span)) => {
                src.report(
                    span,
                    format!("invalid pipeline name `{p}`: must be {}", name_rule()),
                );
                None
            }
            None if t.contains_key("pipeline") => None,
            None => {
                refs.push(PipelineRef {
                    name: DEFAULT_PIPELINE.to_string(),
                    span: header.clone(),
                    defaulted: true,
                });
                Some(DEFAULT_PIPELINE)
            }
        };

        let mut passphrase = None;
        if let Some((p, span)) = get_str(src, t, "passphrase", ctx) {
            let (lo, hi) = SRT_PASSPHRASE_LEN;
            // Kept even when invalid (loading fails anyway) so `default_stream` is judged on it.
            passphrase = Some(p.to_string());
            if !(lo..=hi).contains(&p.len()) {
                src.report(
                    span,
                    format!(
                        "stream{label}: `passphrase` must be {lo} to {hi} bytes long (SRT's limit), found {}",
                        p.len()
                    ),
                );
            }
        }

        if let (true, Some(name), Some(key), Some(pipeline)) = (ok, name, key, pipeline) {
            streams.push(StreamConfig {
                name: name.to_string(),
                key: key.to_string(),
                pipeline: pipeline.to_string(),
                passphrase,
            });
        }
    }
    (streams, refs)
}

/// Why `key` cannot be a publish key, if it cannot.
fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("must not be empty".to_string());
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Some(format!("longer than {MAX_KEY_LEN} characters"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain whitespace or control characters".to_string());
    }
    if let Some(c) = key.chars().find(|c| KEY_FORBIDDEN.contains(c)) {
        return Some(format!(
            "must not contain `{c}` (it would break the RTMP `NAME?key=SECRET` or SRT streamid syntax)"
        ));
    }
    None
}
