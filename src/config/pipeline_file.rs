//! Pipeline files (`pipelines/NAME.toml`): finding the ones the streams use, and the top
//! level of one file (`description`, `[source]`); the `[[rung]]` tables are [`super::ladder`]'s.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml_edit::TableLike;

use super::diag::{
    check_keys, get_str, item_span, no_hint, section, type_name, Diagnostic, Source,
};
use super::ladder::{self, Pipeline};

/// Folder holding pipeline files: `pipeline = "NAME"` means `pipelines/NAME.toml`.
pub const PIPELINES_DIR: &str = "pipelines";

/// Whether `[source] passthrough` is on when a pipeline file does not say.
pub const DEFAULT_PASSTHROUGH: bool = true;

/// A use of a pipeline by a stream, remembered so a missing file is reported at the use.
pub(super) struct PipelineRef {
    pub(super) name: String,
    pub(super) span: Option<Range<usize>>,
    pub(super) defaulted: bool,
}

/// Load one pipeline file on its own (e.g. for `ferrocast check` of a single file).
pub fn load_pipeline(name: &str, path: &Path) -> Result<Pipeline, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read pipeline file: {e}"),
        }]
    })?;
    parse_pipeline(name, path, &text)
}

/// Every pipeline in `refs`, each loaded once from `base_dir/pipelines/`, and the problems
/// found: a missing file is reported in the config file (`config_path` with `config_text`) at
/// every stream that names it, a broken one in the pipeline file itself.
pub(super) fn load_used(
    config_path: &Path,
    config_text: &str,
    refs: &[PipelineRef],
    base_dir: &Path,
) -> (BTreeMap<String, Pipeline>, Vec<Diagnostic>) {
    let mut pipelines = BTreeMap::new();
    let mut diags = Vec::new();
    let mut failed = Vec::new();
    for r in refs {
        if pipelines.contains_key(&r.name) || failed.contains(&r.name) {
            continue;
        }
        let rel = Path::new(PIPELINES_DIR).join(format!("{}.toml", r.name));
        let file = base_dir.join(&rel);
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse_pipeline(&r.name, &file, &text) {
                Ok(p) => {
                    pipelines.insert(r.name.clone(), p);
                }
                Err(mut d) => {
                    failed.push(r.name.clone());
                    diags.append(&mut d);
                }
            },
            Err(e) => {
                failed.push(r.name.clone());
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "not found".to_string()
                } else {
                    format!("cannot be read: {e}")
                };
                // Point at every stream that names the missing file, not only the first.
                let mut src = Source::new(config_path, config_text);
                for r2 in refs.iter().filter(|r2| r2.name == r.name) {
                    let dflt = if r2.defaulted { " (the default)" } else { "" };
                    src.report(
                        r2.span.clone(),
                        format!("pipeline `{}`{dflt}: {} {why}", r.name, rel.display()),
                    );
                }
                let mut d = src.finish();
                diags.append(&mut d);
            }
        }
    }
    (pipelines, diags)
}

fn pipeline_hint(key: &str) -> Option<&'static str> {
    matches!(
        key,
        "rungs" | "ladder" | "rendition" | "renditions" | "variant" | "variants"
    )
    .then_some("transcoded rungs are written as [[rung]] tables")
}

fn parse_pipeline(name: &str, path: &Path, text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut src = Source::new(path, text);
    let mut pipeline = Pipeline {
        name: name.to_string(),
        path: path.to_path_buf(),
        description: None,
        source: DEFAULT_PASSTHROUGH,
        rungs: Vec::new(),
    };
    if let Some(doc) = src.parse() {
        let root: &dyn TableLike = doc.as_table();
        check_keys(
            &mut src,
            root,
            "at top level of the pipeline",
            &["description", "source", "rung"],
            pipeline_hint,
        );
        if let Some((d, _)) = get_str(&mut src, root, "description", "in the pipeline") {
            pipeline.description = Some(d.to_string());
        }
        let mut passthrough_span = None;
        if let Some(t) = section(&mut src, root, "source") {
            check_keys(&mut src, t, "in [source]", &["passthrough"], no_hint);
            if let Some((key, item)) = t.get_key_value("passthrough") {
                let span = item_span(Some(key), item);
                match item.as_bool() {
                    Some(b) => {
                        pipeline.source = b;
                        passthrough_span = span;
                    }
                    None => src.report(
                        span,
                        format!(
                            "`passthrough` in [source] must be a boolean, found {}",
                            type_name(item)
                        ),
                    ),
                }
            }
        }
        let had_rungs = root.contains_key("rung");
        pipeline.rungs = ladder::parse_rungs(&mut src, root);
        if !pipeline.source && !had_rungs {
            src.report(
                passthrough_span,
                "pipeline has no rungs: enable [source] passthrough or add a [[rung]]".to_string(),
            );
        }
    }
    let diags = src.finish();
    if diags.is_empty() {
        Ok(pipeline)
    } else {
        Err(diags)
    }
}
