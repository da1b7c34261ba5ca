//! `[cluster]`: the NATS servers a node joins, its name, and where the other nodes reach its
//! origin. Absent: one node on its own, no NATS (docs/cluster.md).

use toml_edit::TableLike;

use super::diag::{check_keys, item_span, no_hint, section, type_name, valid_name, Source};

/// A node's place in a cluster (`[cluster]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`), tried in turn; one is enough.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster (names the stream directory's owners).
    pub node: String,
    /// This node's origin as the other nodes reach it (`http://10.0.0.5:8080`), no path.
    pub advertise: String,
}

pub(super) fn parse_cluster(src: &mut Source, root: &dyn TableLike) -> Option<ClusterConfig> {
    let t = section(src, root, "cluster")?;
    let ctx = "in [cluster]";
    check_keys(src, t, ctx, &["nats", "node", "advertise"], no_hint);
    let table_span = root
        .get_key_value("cluster")
        .and_then(|(k, i)| item_span(Some(k), i));
    let mut ok = true;
    let mut nats = Vec::new();
    match t.get_key_value("nats") {
        None => {
            src.report(
                table_span.clone(),
                format!("`nats` {ctx} is required: the NATS servers, e.g. nats = [\"nats://127.0.0.1:4222\"]"),
            );
            ok = false;
        }
        Some((key, item)) => {
            let span = item_span(Some(key), item);
            match item.as_array() {
                Some(a) if !a.is_empty() => {
                    for v in a.iter() {
                        match v.as_str() {
                            Some(url) if nats_url_ok(url) => nats.push(url.to_string()),
                            Some(url) => {
                                src.report(
                                    span.clone(),
                                    format!("`nats` {ctx}: `{url}` is not a NATS URL (nats://HOST:PORT or tls://HOST:PORT)"),
                                );
                                ok = false;
                            }
                            None => {
                                src.report(
                                    span.clone(),
                                    format!("`nats` {ctx} must be an array of strings"),
                                );
                                ok = false;
                            }
                        }
                    }
                }
                Some(_) => {
                    src.report(span, format!("`nats` {ctx} must name at least one server"));
                    ok = false;
                }
                None => {
                    src.report(
                        span,
                        format!(
                            "`nats` {ctx} must be an array of URLs, found {}",
                            type_name(item)
                        ),
                    );
                    ok = false;
                }
            }
        }
    }
    let required = |src: &mut Source, name: &str, example: &str| -> Option<(String, _)> {
        match t.get_key_value(name) {
            None => {
                src.report(
                    table_span.clone(),
                    format!("`{name}` {ctx} is required, e.g. {name} = \"{example}\""),
                );
                None
            }
            Some((key, item)) => {
                let span = item_span(Some(key), item);
                match item.as_str() {
                    Some(s) => Some((s.to_string(), span)),
                    None => {
                        src.report(
                            span,
                            format!("`{name}` {ctx} must be a string, found {}", type_name(item)),
                        );
                        None
                    }
                }
            }
        }
    };
    let node = required(src, "node", "a");
    let advertise = required(src, "advertise", "http://10.0.0.5:8080");
    let node = match node {
        Some((n, _)) if valid_name(&n) => Some(n),
        Some((n, span)) => {
            src.report(
                span,
                format!(
                    "`node` {ctx}: `{n}` is not a valid node name ({})",
                    super::diag::name_rule()
                ),
            );
            None
        }
        None => None,
    };
    let advertise = match advertise {
        Some((a, span)) => match advertise_problem(&a) {
            None => Some(a.trim_end_matches('/').to_string()),
            Some(why) => {
                src.report(span, format!("`advertise` {ctx}: {why}"));
                None
            }
        },
        None => None,
    };
    match (ok, node, advertise) {
        (true, Some(node), Some(advertise)) => Some(ClusterConfig {
            nats,
            node,
            advertise,
        }),
        _ => None,
    }
}

fn nats_url_ok(url: &str) -> bool {
    let rest = ["nats://", "tls://"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
        .unwrap_or(url);
    // HOST:PORT, optionally with user:pass@ before it.
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// Why `advertise` cannot be used, if it cannot.
fn advertise_problem(a: &str) -> Option<String> {
    let Some(rest) = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
    else {
        return Some(format!(
            "`{a}` must be an http:// or https:// URL of this node's origin, e.g. http://10.0.0.5:8080"
        ));
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') || hostport.contains('?') {
        return Some(format!(
            "`{a}` must be the origin's address only (scheme, host and port), without a path"
        ));
    }
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    if host == "0.0.0.0" || host == "[::]" {
        return Some(format!(
            "`{a}`: {host} is a listen address; other nodes need an address they can reach"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_need_a_host_and_port() {
        for ok in [
            "nats://127.0.0.1:4222",
            "tls://nats.internal:4222",
            "nats://u:p@h:4222",
            "h:4222",
        ] {
            assert!(nats_url_ok(ok), "{ok}");
        }
        for bad in [
            "nats://",
            "nats://host",
            "http://h:x",
            ":4222",
            "nats://h:0",
        ] {
            assert!(!nats_url_ok(bad), "{bad}");
        }
    }

    #[test]
    fn advertise_is_a_reachable_origin() {
        assert_eq!(advertise_problem("http://10.0.0.5:8080"), None);
        assert_eq!(advertise_problem("https://a.example/"), None);
        assert!(advertise_problem("10.0.0.5:8080").is_some());
        assert!(advertise_problem("http://10.0.0.5:8080/live").is_some());
        assert!(advertise_problem("http://0.0.0.0:8080").is_some());
    }
}
