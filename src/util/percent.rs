//! The one percent-decoder and the one query-string reader of the crate.
//!
//! HTTP query strings (`_HLS_msn`, chat `?name=`, API ranges) follow the form encoding that
//! browsers write (`URLSearchParams` sends a space as `+`), so they go through
//! `form_urlencoded`. Publishing credentials (stream keys, SRT streamids) are decoded with
//! [`decode`], where `+` stays a plus: encoders send keys verbatim and a key may contain one.

use std::borrow::Cow;

/// Decodes `%XX` escapes; malformed escapes stay literal, invalid UTF-8 is replaced,
/// `+` stays `+`.
pub fn decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

/// The `key=value` pairs of an HTTP query string, decoded (`+` is a space); a pair without
/// `=` has an empty value.
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
}

/// The `key=value` pairs of a credential's query (`NAME?key=SECRET&...`), decoded with
/// [`decode`] so that a `+` in a secret stays a plus.
pub fn credential_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_keeps_malformed_escapes_and_plus() {
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("a+b"), "a+b");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn query_pairs_follow_form_encoding() {
        let pairs: Vec<_> = query_pairs(Some("name=J%C3%BCrgen+K&token=&flag"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("name".into(), "Jürgen K".into()),
                ("token".into(), String::new()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(query_pairs(None).count(), 0);
    }

    #[test]
    fn credential_pairs_keep_plus_signs() {
        let pairs: Vec<_> = credential_pairs("key=a+b%21&x=1")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(pairs[0], ("key".into(), "a+b!".into()));
        assert_eq!(pairs[1], ("x".into(), "1".into()));
    }
}
