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
    #[error(
        "no streamid (set streamid=#!::r=live/NAME,m=publish,s=SECRET or live/NAME?key=SECRET)"
    )]
    NoStreamId,
    #[error("mode `{0}` is not supported: SRT is for publishing (m=publish); watch over HLS")]
    UnsupportedMode(String),
    #[error("stream `{0}` requires SRT encryption: set its passphrase in the encoder")]
    PassphraseRequired(String),
    #[error("stream `{0}` has no SRT passphrase configured, but the caller encrypts")]
    NotEncrypted(String),
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

/// An SRT streamid in either accepted form, decoded. `user` is informational (logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtStreamId {
    pub name: String,
    pub key: Option<String>,
    pub user: Option<String>,
}

/// The RTMP application, also the resource prefix of SRT streamids.
pub const APP: &str = "live";

/// Parses an SRT streamid: the SRT access-control form `#!::r=live/NAME,m=publish,s=SECRET`
/// (keys in any order; `u=` names the stream when `r=` is absent; `r=NAME` without the app
/// works) or `live/NAME?key=SECRET` / `NAME?key=SECRET`. Percent-encoding is decoded first,
/// since some encoders escape the whole streamid.
pub fn parse_srt_stream_id(raw: &str) -> Result<SrtStreamId, Refusal> {
    let decoded = percent_decode(raw.trim());
    let text = decoded.trim();
    if text.is_empty() {
        return Err(Refusal::NoStreamId);
    }
    if let Some(acl) = text.strip_prefix("#!::") {
        let (mut resource, mut user, mut secret, mut mode) = (None, None, None, None);
        for pair in acl.split(',') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k.trim() {
                "r" => resource = Some(v.trim()),
                "u" => user = Some(v.trim()),
                "s" => secret = Some(v.trim()),
                "m" => mode = Some(v.trim()),
                _ => {} // h=, t= and custom keys carry nothing we use
            }
        }
        if let Some(m) = mode {
            if !m.eq_ignore_ascii_case("publish") {
                return Err(Refusal::UnsupportedMode(m.to_string()));
            }
        }
        let name = match resource.or(user) {
            Some(r) => strip_app(r)?,
            None => return Err(Refusal::MissingName),
        };
        return Ok(SrtStreamId {
            name: name.to_string(),
            key: secret.map(str::to_string),
            user: user.map(str::to_string),
        });
    }
    let key = parse_stream_key(text);
    Ok(SrtStreamId {
        name: strip_app(key.name)?.to_string(),
        key: key.key.map(str::to_string),
        user: None,
    })
}

/// `live/NAME` → `NAME`; `NAME` stays; another application is refused.
fn strip_app(resource: &str) -> Result<&str, Refusal> {
    let resource = resource.trim_matches('/');
    match resource.split_once('/') {
        Some((app, name)) if app == APP => Ok(name.trim_matches('/')),
        Some((app, _)) => Err(Refusal::UnknownApp(app.to_string())),
        None if resource.is_empty() => Err(Refusal::MissingName),
        None => Ok(resource),
    }
}

/// Decodes `%XX` escapes; malformed escapes stay literal, invalid UTF-8 is replaced.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The streamid with its secret masked, for logs.
pub fn redact_stream_id(raw: &str) -> String {
    let decoded = percent_decode(raw.trim());
    if let Some(acl) = decoded.strip_prefix("#!::") {
        let parts: Vec<String> = acl
            .split(',')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.trim() == "s" => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        return format!("#!::{}", parts.join(","));
    }
    match decoded.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => decoded,
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
