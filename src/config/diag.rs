//! The toolkit the config and pipeline parsers share: a file's problems collected as
//! `file:line:col: message` diagnostics, typed getters that report a wrong value where it is
//! written, "did you mean" on misspelt keys, and the duration syntax of the files.
//!
//! Every getter reports into a [`Source`] and returns `None` instead of stopping, so one run
//! finds every problem in a file.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ImDocument, Item, Key, TableLike, Value};

/// Longest stream or pipeline name; names appear in URLs and file names.
pub const MAX_NAME_LEN: usize = 64;

/// One problem in one file, displayed as `file:line:col: message` (1-based; col counts chars).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", file.display())]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// One file's text and the problems found in it so far.
pub(super) struct Source<'a> {
    file: &'a Path,
    pub(super) text: &'a str,
    diags: Vec<(usize, String)>,
}

impl<'a> Source<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Source {
            file,
            text,
            diags: Vec::new(),
        }
    }

    /// Parse keeping spans; a syntax error is reported (toml_edit stops at the first one).
    pub(super) fn parse(&mut self) -> Option<ImDocument<&'a str>> {
        match ImDocument::parse(self.text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                let msg = e.message().trim().replace('\n', "; ");
                self.report(e.span(), format!("TOML syntax error: {msg}"));
                None
            }
        }
    }

    pub(super) fn report(&mut self, span: Option<Range<usize>>, message: String) {
        self.diags
            .push((span.map(|s| s.start).unwrap_or(0), message));
    }

    /// The problems as diagnostics, in file order.
    pub(super) fn finish(self) -> Vec<Diagnostic> {
        let mut diags: Vec<Diagnostic> = self
            .diags
            .into_iter()
            .map(|(offset, message)| {
                let (line, col) = line_col(self.text, offset);
                Diagnostic {
                    file: self.file.to_path_buf(),
                    line,
                    col,
                    message,
                }
            })
            .collect();
        diags.sort_by_key(|d| (d.line, d.col));
        diags
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Where a key's value is; falls back to the key, then the start of the file.
pub(super) fn item_span(key: Option<&Key>, item: &Item) -> Option<Range<usize>> {
    item.span().or_else(|| key.and_then(Key::span))
}

pub(super) fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "table",
        Item::ArrayOfTables(_) => "array of tables",
        Item::Value(v) => match v {
            Value::String(_) => "string",
            Value::Integer(_) => "integer",
            Value::Float(_) => "float",
            Value::Boolean(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::Array(_) => "array",
            Value::InlineTable(_) => "inline table",
        },
    }
}

/// Report every key of `table` not in `allowed`; `hint` may add a reason for a given key.
pub(super) fn check_keys(
    src: &mut Source,
    table: &dyn TableLike,
    ctx: &str,
    allowed: &[&str],
    hint: fn(&str) -> Option<&'static str>,
) {
    for (name, item) in table.iter() {
        if allowed.contains(&name) {
            continue;
        }
        let key = table.key(name);
        let kind = if item.is_table_like() || item.is_array_of_tables() {
            "table"
        } else {
            "key"
        };
        let mut msg = format!(
            "unknown {kind} `{name}` {ctx}; expected one of: {}",
            allowed.join(", ")
        );
        if let Some(h) = hint(name) {
            let _ = write!(msg, " ({h})");
        } else if let Some(close) = allowed.iter().find(|a| edit_distance(a, name) <= 2) {
            let _ = write!(msg, " (did you mean `{close}`?)");
        }
        let span = key.and_then(Key::span).or_else(|| item.span());
        src.report(span, msg);
    }
}

pub(super) fn no_hint(_: &str) -> Option<&'static str> {
    None
}

/// Levenshtein distance, for "did you mean" on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The sub-table `name` of `root`, or None (with a diagnostic if it is not a table).
pub(super) fn section<'t>(
    src: &mut Source,
    root: &'t dyn TableLike,
    name: &str,
) -> Option<&'t dyn TableLike> {
    let (key, item) = root.get_key_value(name)?;
    match item.as_table_like() {
        Some(t) => Some(t),
        None => {
            src.report(
                item_span(Some(key), item),
                format!(
                    "`{name}` must be a table ([{name}]), found {}",
                    type_name(item)
                ),
            );
            None
        }
    }
}

/// The tables of `[[name]]` (or `name = [{ .. }, ..]`, which means the same in TOML), each
/// with its span; anything else under `name` is reported. Empty when `name` is absent.
pub(super) fn array_of_tables<'t>(
    src: &mut Source,
    root: &'t dyn TableLike,
    name: &str,
) -> Vec<(&'t dyn TableLike, Option<Range<usize>>)> {
    let Some((key, item)) = root.get_key_value(name) else {
        return Vec::new();
    };
    match item {
        Item::ArrayOfTables(a) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
        Item::Value(Value::Array(a)) if a.iter().all(Value::is_inline_table) => a
            .iter()
            .filter_map(|v| v.as_inline_table())
            .map(|t| (t as &dyn TableLike, t.span()))
            .collect(),
        _ => {
            src.report(
                item_span(Some(key), item),
                format!(
                    "`{name}` must be an array of tables (write [[{name}]]), found {}",
                    type_name(item)
                ),
            );
            Vec::new()
        }
    }
}

/// A string value; None when missing, or when of another type (reported).
pub(super) fn get_str<'t>(
    src: &mut Source,
    table: &'t dyn TableLike,
    name: &str,
    ctx: &str,
) -> Option<(&'t str, Option<Range<usize>>)> {
    let (key, item) = table.get_key_value(name)?;
    let span = item_span(Some(key), item);
    match item.as_str() {
        Some(s) => Some((s, span)),
        None => {
            src.report(
                span,
                format!("`{name}` {ctx} must be a string, found {}", type_name(item)),
            );
            None
        }
    }
}

/// An integer value within `range`; None when missing or invalid (reported). `unit` follows
/// the bounds in the message (" kbit/s"), `why` (if not empty) is added in parentheses.
pub(super) fn get_int(
    src: &mut Source,
    table: &dyn TableLike,
    name: &str,
    ctx: &str,
    range: (i64, i64),
    unit: &str,
    why: &str,
) -> Option<(i64, Option<Range<usize>>)> {
    let (key, item) = table.get_key_value(name)?;
    let span = item_span(Some(key), item);
    match item.as_integer() {
        Some(n) if (range.0..=range.1).contains(&n) => Some((n, span)),
        Some(n) => {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            src.report(
                span,
                format!(
                    "`{name}` {ctx} must be between {} and {}{unit}, found {n}{why}",
                    range.0, range.1
                ),
            );
            None
        }
        None => {
            src.report(
                span,
                format!(
                    "`{name}` {ctx} must be an integer, found {}",
                    type_name(item)
                ),
            );
            None
        }
    }
}

/// A socket address; `default` when missing or invalid (reported). Host names are refused:
/// a listener binds an address, and resolving a name at load time would hide which one.
pub(super) fn get_addr(
    src: &mut Source,
    table: &dyn TableLike,
    name: &str,
    ctx: &str,
    default: SocketAddr,
) -> SocketAddr {
    let Some((s, span)) = get_str(src, table, name, ctx) else {
        return default;
    };
    match s.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            src.report(
                span,
                format!(
                    "`{name}` {ctx}: invalid socket address `{s}`; expected IP:PORT such as \"{default}\" (host names are not accepted)"
                ),
            );
            default
        }
    }
}

/// A duration value, range-checked; None when missing or invalid (reported).
pub(super) fn get_duration(
    src: &mut Source,
    table: &dyn TableLike,
    name: &str,
    ctx: &str,
    range: (Duration, Duration),
    why: &str,
) -> Option<(Duration, Option<Range<usize>>)> {
    let (key, item) = table.get_key_value(name)?;
    let span = item_span(Some(key), item);
    let Some(s) = item.as_str() else {
        src.report(
            span,
            format!(
                "`{name}` {ctx} must be a duration string such as \"2s\" or \"200ms\", found {}",
                type_name(item)
            ),
        );
        return None;
    };
    match parse_duration(s) {
        Ok(d) if d >= range.0 && d <= range.1 => Some((d, span)),
        Ok(d) => {
            let bounds = if range.0.is_zero() {
                format!("at most {}", fmt_duration(range.1))
            } else {
                format!(
                    "between {} and {}",
                    fmt_duration(range.0),
                    fmt_duration(range.1)
                )
            };
            src.report(
                span,
                format!(
                    "`{name}` {ctx} must be {bounds}, found {} ({why})",
                    fmt_duration(d)
                ),
            );
            None
        }
        Err(e) => {
            src.report(span, format!("`{name}` {ctx}: {e}"));
            None
        }
    }
}

/// Parse a duration such as `"200ms"`, `"2s"`, `"1.5s"` or `"1m"` (units: ms, s, m).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let nanos_per_unit: u128 = match unit {
        _ if num.is_empty() => {
            return Err(format!(
                "invalid duration `{s}`: expected a number and a unit (ms, s or m), e.g. \"2s\" or \"200ms\""
            ))
        }
        "" => {
            return Err(format!(
                "invalid duration `{s}`: missing unit; write e.g. \"{s}s\" or \"{s}ms\""
            ))
        }
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ => {
            return Err(format!(
                "invalid duration `{s}`: unknown unit `{unit}`; use ms, s or m"
            ))
        }
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let malformed = int.is_empty()
        || (num.contains('.') && frac.is_empty())
        || frac.contains('.')
        || int.len() > 20
        || frac.len() > 18;
    if malformed {
        return Err(format!("invalid duration `{s}`: malformed number `{num}`"));
    }
    let digits = |d: &str| d.parse::<u128>().unwrap_or(0);
    let frac_nanos = if frac.is_empty() {
        0
    } else {
        digits(frac) * nanos_per_unit / 10u128.pow(frac.len() as u32)
    };
    let total = digits(int)
        .checked_mul(nanos_per_unit)
        .and_then(|n| n.checked_add(frac_nanos))
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("invalid duration `{s}`: too large"))?;
    Ok(Duration::from_nanos(total))
}

/// A duration the way the config file writes it ("1m", "2s", "200ms"; "1.5s" otherwise).
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) || d.is_zero() {
        format!("{d:?}")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{d:?}")
    }
}

/// Whether `s` is a valid stream or pipeline name: 1–64 of `[A-Za-z0-9_-]` (used in URLs/paths).
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn name_rule() -> String {
    format!("1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, `_` and `-`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("500us").unwrap_err(),
            "invalid duration `500us`: unknown unit `us`; use ms, s or m"
        );
        assert_eq!(
            parse_duration("2").unwrap_err(),
            "invalid duration `2`: missing unit; write e.g. \"2s\" or \"2ms\""
        );
        for bad in [
            "", "s", "-1s", ".5s", "1.s", "1..2s", "1.2.3s", " 2s", "2 s", "1h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("99999999999999999999999m").is_err());
    }

    #[test]
    fn durations_print_as_written() {
        let ms = Duration::from_millis;
        assert_eq!(fmt_duration(Duration::from_secs(120)), "2m");
        assert_eq!(fmt_duration(ms(2000)), "2s");
        assert_eq!(fmt_duration(ms(200)), "200ms");
        assert_eq!(fmt_duration(ms(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::ZERO), "0ns");
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(line_col("ab\ncé\nx", 0), (1, 1));
        assert_eq!(line_col("ab\ncé\nx", 3), (2, 1));
        assert_eq!(line_col("ab\ncéd", 6), (2, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn edit_distance_counts_single_char_edits() {
        assert_eq!(edit_distance("http", "htp"), 1);
        assert_eq!(edit_distance("latency", "latncy"), 1);
        assert_eq!(edit_distance("width", "widht"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
