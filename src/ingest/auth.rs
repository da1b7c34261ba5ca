//! Publish authorisation: stream-key syntax and the key check (sans-IO).

use crate::config::Config;

/// Why a publish attempt was refused; the text goes to the log and to the publisher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no stream name in the stream key (expected NAME?key=SECRET)")]
    MissingName,
    #[error("stream `{0}` is not configured")]
    UnknownStream(String),
    #[error("stream `{0}`: no key given (expected NAME?key=SECRET)")]
    MissingKey(String),
    #[error("stream `{0}`: wrong key")]
    WrongKey(String),
    #[error("stream `{0}` is already being published")]
    AlreadyLive(String),
    #[error("application `{0}` does not exist (use `live`)")]
    UnknownApp(String),
}

/// A parsed stream key: `NAME?key=SECRET` (other query parameters ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey<'a> {
    pub name: &'a str,
    pub key: Option<&'a str>,
}

pub fn parse_stream_key(raw: &str) -> StreamKey<'_> {
    let raw = raw.trim();
    let (name, query) = match raw.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (raw, None),
    };
    let key = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "key")
            .map(|(_, v)| v)
    });
    StreamKey {
        name: name.trim_matches('/'),
        key,
    }
}

/// Compares secrets in time independent of where they first differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Checks a publish request against the configured streams; returns the stream name.
pub fn authorize<'c>(config: &'c Config, key: &StreamKey<'_>) -> Result<&'c str, Refusal> {
    if key.name.is_empty() {
        return Err(Refusal::MissingName);
    }
    let stream = config
        .stream(key.name)
        .ok_or_else(|| Refusal::UnknownStream(key.name.to_string()))?;
    match key.key {
        None | Some("") => Err(Refusal::MissingKey(stream.name.clone())),
        Some(k) if same_secret(k, &stream.key) => Ok(&stream.name),
        Some(_) => Err(Refusal::WrongKey(stream.name.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_key_with_secret() {
        assert_eq!(
            parse_stream_key("demo?key=s3cret"),
            StreamKey {
                name: "demo",
                key: Some("s3cret")
            }
        );
        assert_eq!(
            parse_stream_key("demo?foo=1&key=abc&x=y"),
            StreamKey {
                name: "demo",
                key: Some("abc")
            }
        );
        assert_eq!(
            parse_stream_key("demo"),
            StreamKey {
                name: "demo",
                key: None
            }
        );
        assert_eq!(
            parse_stream_key("?key=x"),
            StreamKey {
                name: "",
                key: Some("x")
            }
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
        assert!(same_secret("", ""));
    }
}
