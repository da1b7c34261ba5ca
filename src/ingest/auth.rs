//! Publish authorisation: stream-key syntax and the key check (sans-IO).

use crate::config::Config;
use crate::hub::ClaimError;
use crate::util::percent;

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
    #[error("stream `{0}` is already being published on node `{1}`")]
    PublishedElsewhere(String, String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl From<ClaimError> for Refusal {
    fn from(e: ClaimError) -> Refusal {
        match e {
            ClaimError::AlreadyPublished(name) => Refusal::AlreadyLive(name),
            ClaimError::PublishedElsewhere { name, node } => {
                Refusal::PublishedElsewhere(name, node)
            }
            ClaimError::ShuttingDown => Refusal::ShuttingDown,
        }
    }
}

/// A parsed stream key: `NAME?key=SECRET` (other query parameters ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey<'a> {
    pub name: &'a str,
    /// Percent-decoded; a `+` stays a plus (encoders send keys verbatim).
    pub key: Option<std::borrow::Cow<'a, str>>,
}

pub fn parse_stream_key(raw: &str) -> StreamKey<'_> {
    let raw = raw.trim();
    let (name, query) = match raw.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (raw, None),
    };
    let key = query.and_then(|q| {
        percent::credential_pairs(q)
            .find(|(k, _)| k == "key")
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
    let decoded = percent::decode(raw.trim());
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
        key: key.key.map(|k| k.into_owned()),
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

/// The streamid with its secret masked, for logs.
pub fn redact_stream_id(raw: &str) -> String {
    let decoded = percent::decode(raw.trim());
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
        None => decoded.into_owned(),
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
    match key.key.as_deref() {
        None | Some("") => Err(Refusal::MissingKey(stream.name.clone())),
        Some(k) if same_secret(k, &stream.key) => Ok(&stream.name),
        Some(_) => Err(Refusal::WrongKey(stream.name.clone())),
    }
}

/// Who an admitted caller publishes as, and the passphrase its encryption must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub name: String,
    pub passphrase: Option<String>,
}

/// Decides whether a caller may publish (sans-IO): the streamid's key, or the `[srt]
/// default_stream` for callers without one; then the stream's passphrase policy.
pub fn admit(
    config: &Config,
    stream_id: Option<&str>,
    caller_encrypts: bool,
) -> Result<Admission, Refusal> {
    let name = match stream_id.filter(|s| !s.trim().is_empty()) {
        Some(raw) => {
            let sid = parse_srt_stream_id(raw)?;
            let key = StreamKey {
                name: &sid.name,
                key: sid.key.as_deref().map(Into::into),
            };
            authorize(config, &key)?.to_string()
        }
        None => match &config.srt.default_stream {
            Some(name) => name.clone(),
            None => return Err(Refusal::NoStreamId),
        },
    };
    let stream = config
        .stream(&name)
        .ok_or_else(|| Refusal::UnknownStream(name.clone()))?;
    match (&stream.passphrase, caller_encrypts) {
        (Some(p), true) => Ok(Admission {
            name,
            passphrase: Some(p.clone()),
        }),
        (Some(_), false) => Err(Refusal::PassphraseRequired(name)),
        (None, true) => Err(Refusal::NotEncrypted(name)),
        (None, false) => Ok(Admission {
            name,
            passphrase: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SrtConfig, StreamConfig};

    fn config(default_stream: Option<&str>) -> Config {
        let mut c = crate::config::Config::for_tests();
        c.streams = vec![
            StreamConfig {
                name: "open".into(),
                key: "k1".into(),
                pipeline: "passthrough".into(),
                passphrase: None,
            },
            StreamConfig {
                name: "locked".into(),
                key: "k2".into(),
                pipeline: "passthrough".into(),
                passphrase: Some("0123456789ab".into()),
            },
        ];
        c.srt = SrtConfig {
            default_stream: default_stream.map(str::to_string),
            ..SrtConfig::default()
        };
        c
    }

    #[test]
    fn both_streamid_forms_admit() {
        let c = config(None);
        for id in [
            "#!::r=live/open,m=publish,s=k1",
            "#!::m=publish,s=k1,r=live/open",
            "#!::r=open,s=k1",
            "#!::u=open,s=k1",
            "live/open?key=k1",
            "open?key=k1",
            "%23%21%3A%3Ar%3Dlive%2Fopen%2Cm%3Dpublish%2Cs%3Dk1",
            "live%2Fopen%3Fkey%3Dk1",
        ] {
            assert_eq!(
                admit(&c, Some(id), false),
                Ok(Admission {
                    name: "open".into(),
                    passphrase: None
                }),
                "{id}"
            );
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        let c = config(None);
        let cases: [(Option<&str>, bool, Refusal); 9] = [
            (None, false, Refusal::NoStreamId),
            (Some("  "), false, Refusal::NoStreamId),
            (
                Some("#!::r=live/open,s=nope"),
                false,
                Refusal::WrongKey("open".into()),
            ),
            (
                Some("#!::r=live/open"),
                false,
                Refusal::MissingKey("open".into()),
            ),
            (
                Some("#!::r=live/other,s=k1"),
                false,
                Refusal::UnknownStream("other".into()),
            ),
            (
                Some("#!::r=vod/open,s=k1"),
                false,
                Refusal::UnknownApp("vod".into()),
            ),
            (
                Some("#!::r=live/open,m=request,s=k1"),
                false,
                Refusal::UnsupportedMode("request".into()),
            ),
            (
                Some("#!::r=live/locked,s=k2"),
                false,
                Refusal::PassphraseRequired("locked".into()),
            ),
            (
                Some("#!::r=live/open,s=k1"),
                true,
                Refusal::NotEncrypted("open".into()),
            ),
        ];
        for (id, enc, want) in cases {
            assert_eq!(admit(&c, id, enc), Err(want), "{id:?}");
        }
    }

    #[test]
    fn passphrase_stream_admits_encrypted_callers() {
        let c = config(None);
        assert_eq!(
            admit(&c, Some("#!::r=live/locked,m=publish,s=k2"), true),
            Ok(Admission {
                name: "locked".into(),
                passphrase: Some("0123456789ab".into())
            })
        );
    }

    #[test]
    fn default_stream_takes_callers_without_streamid() {
        let c = config(Some("locked"));
        assert_eq!(
            admit(&c, None, true),
            Ok(Admission {
                name: "locked".into(),
                passphrase: Some("0123456789ab".into())
            })
        );
        // Without encryption the caller has no credential at all.
        assert_eq!(
            admit(&c, None, false),
            Err(Refusal::PassphraseRequired("locked".into()))
        );
        // A streamid still wins over the default.
        assert_eq!(
            admit(&c, Some("open?key=k1"), false).map(|a| a.name),
            Ok("open".to_string())
        );
    }

    #[test]
    fn secrets_never_reach_the_log() {
        assert_eq!(
            redact_stream_id("#!::r=live/a,m=publish,s=topsecret"),
            "#!::r=live/a,m=publish,s=***"
        );
        assert_eq!(redact_stream_id("live/a?key=topsecret"), "live/a?***");
        assert_eq!(
            redact_stream_id("%23%21%3A%3Ar%3Dlive%2Fa%2Cs%3Dtopsecret"),
            "#!::r=live/a,s=***"
        );
    }

    #[test]
    fn stream_key_with_secret() {
        assert_eq!(
            parse_stream_key("demo?key=s3cret"),
            StreamKey {
                name: "demo",
                key: Some("s3cret".into())
            }
        );
        assert_eq!(
            parse_stream_key("demo?foo=1&key=abc&x=y"),
            StreamKey {
                name: "demo",
                key: Some("abc".into())
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
                key: Some("x".into())
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
