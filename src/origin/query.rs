//! LL-HLS delivery directives in a playlist query string (sans-IO).

use crate::package::playlist::Skip;
use crate::util::percent;

/// `_HLS_msn`, `_HLS_part`, `_HLS_skip` as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: Skip,
}

/// Parses the directives; an error message for a malformed one (answered 400).
pub fn parse(query: Option<&str>) -> Result<Directives, String> {
    let mut d = Directives {
        msn: None,
        part: None,
        skip: Skip::No,
    };
    for (k, v) in percent::query_pairs(query) {
        match &*k {
            "_HLS_msn" => d.msn = Some(v.parse().map_err(|_| format!("bad _HLS_msn `{v}`"))?),
            "_HLS_part" => d.part = Some(v.parse().map_err(|_| format!("bad _HLS_part `{v}`"))?),
            "_HLS_skip" => {
                d.skip = match &*v {
                    "YES" => Skip::Yes,
                    "v2" => Skip::V2,
                    _ => return Err(format!("bad _HLS_skip `{v}` (YES or v2)")),
                }
            }
            _ => {} // cache busters and player tokens are none of our business
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return Err("_HLS_part requires _HLS_msn".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_directives() {
        let d = parse(Some("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES")).unwrap();
        assert_eq!(
            d,
            Directives {
                msn: Some(12),
                part: Some(3),
                skip: Skip::Yes
            }
        );
        assert_eq!(parse(Some("_HLS_skip=v2")).unwrap().skip, Skip::V2);
        assert_eq!(
            parse(None).unwrap(),
            Directives {
                msn: None,
                part: None,
                skip: Skip::No
            }
        );
    }

    #[test]
    fn rejects_malformed_directives() {
        assert!(parse(Some("_HLS_part=1")).is_err());
        assert!(parse(Some("_HLS_msn=x")).is_err());
        assert!(parse(Some("_HLS_msn=-1")).is_err());
        assert!(parse(Some("_HLS_skip=yes")).is_err());
    }
}
