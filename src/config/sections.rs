//! The config file's top level and its settings tables: `[server]`, `[hls]`, `[srt]` and
//! `[chat]` (the `[[stream]]` entries are [`super::streams`]'s).

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml_edit::{ImDocument, TableLike};

use super::diag::{
    check_keys, get_addr, get_duration, get_int, get_str, item_span, no_hint, section, type_name,
    Source,
};
use super::pipeline_file::PipelineRef;
use super::streams::parse_streams;
use super::{
    ChatConfig, HlsConfig, ServerConfig, SrtConfig, StreamConfig, DEFAULT_HTTP, DEFAULT_RTMP,
    DEFAULT_SRT, MAX_CHAT_HISTORY, MAX_CHAT_MESSAGE_LEN, MAX_GRACE, MAX_SEGMENT_TARGET, MAX_WINDOW,
    MIN_PART_TARGET, MIN_SEGMENT_TARGET, MIN_WINDOW, SRT_LATENCY_RANGE,
};

/// Everything a config file holds, and the pipelines its streams use (loaded afterwards).
pub(super) type Parsed = (
    Option<super::ClusterConfig>,
    ServerConfig,
    HlsConfig,
    SrtConfig,
    ChatConfig,
    Vec<StreamConfig>,
    Vec<PipelineRef>,
);

pub(super) fn parse_config(src: &mut Source, doc: &ImDocument<&str>) -> Parsed {
    let root: &dyn TableLike = doc.as_table();
    check_keys(
        src,
        root,
        "at top level",
        &["server", "hls", "srt", "chat", "stream", "cluster"],
        no_hint,
    );
    let server = parse_server(src, root);
    let hls = parse_hls(src, root);
    let (srt, default_span) = parse_srt(src, root);
    let chat = parse_chat(src, root);
    let (streams, refs) = parse_streams(src, root);
    let cluster = super::cluster::parse_cluster(src, root);
    if let (Some(name), Some(span)) = (&srt.default_stream, default_span) {
        match streams.iter().find(|s| &s.name == name) {
            None => src.report(
                span,
                format!("`default_stream` in [srt]: no [[stream]] named `{name}`"),
            ),
            Some(s) if s.passphrase.is_none() => src.report(
                span,
                format!(
                    "`default_stream` in [srt]: stream `{name}` has no `passphrase`; callers without a streamid carry no key, so the passphrase must be their credential"
                ),
            ),
            Some(_) => {}
        }
    }
    (cluster, server, hls, srt, chat, streams, refs)
}

fn parse_server(src: &mut Source, root: &dyn TableLike) -> ServerConfig {
    let mut server = ServerConfig::default();
    let Some(t) = section(src, root, "server") else {
        return server;
    };
    let ctx = "in [server]";
    check_keys(src, t, ctx, &["http", "rtmp", "srt"], no_hint);
    server.http = get_addr(src, t, "http", ctx, DEFAULT_HTTP);
    server.rtmp = get_addr(src, t, "rtmp", ctx, DEFAULT_RTMP);
    server.srt = get_addr(src, t, "srt", ctx, DEFAULT_SRT);
    if let Some(msg) = server.conflicts().into_iter().next() {
        let span = t
            .get_key_value("rtmp")
            .and_then(|(k, i)| item_span(Some(k), i));
        let span = span.or_else(|| {
            t.get_key_value("http")
                .and_then(|(k, i)| item_span(Some(k), i))
        });
        src.report(span, msg);
    }
    server
}

fn parse_hls(src: &mut Source, root: &dyn TableLike) -> HlsConfig {
    let mut hls = HlsConfig::default();
    let Some(t) = section(src, root, "hls") else {
        return hls;
    };
    let ctx = "in [hls]";
    check_keys(
        src,
        t,
        ctx,
        &["segment_target", "part_target", "window", "grace"],
        no_hint,
    );
    let seg = get_duration(
        src,
        t,
        "segment_target",
        ctx,
        (MIN_SEGMENT_TARGET, MAX_SEGMENT_TARGET),
        "segments are cut on keyframes; shorter is not achievable, longer is not live",
    );
    if let Some((d, _)) = seg {
        hls.segment_target = d;
    }
    // The default part target fits every allowed segment target (see the const assert), so
    // only an explicit part_target can be too long.
    let part_max = hls.segment_target / 2;
    let part = get_duration(
        src,
        t,
        "part_target",
        ctx,
        (MIN_PART_TARGET, part_max.max(MIN_PART_TARGET)),
        "at most half of segment_target: LL-HLS needs several parts per segment",
    );
    if let Some((d, _)) = part {
        hls.part_target = d;
    }
    if let Some((n, _)) = get_int(
        src,
        t,
        "window",
        ctx,
        (MIN_WINDOW as i64, MAX_WINDOW as i64),
        " segments",
        "RFC 8216: a live playlist spans at least 3 target durations",
    ) {
        hls.window = n as usize;
    }
    if let Some((d, _)) = get_duration(
        src,
        t,
        "grace",
        ctx,
        (Duration::ZERO, MAX_GRACE),
        "the stream is held this long after its publisher leaves",
    ) {
        hls.grace = d;
    }
    hls
}

/// `[srt]`, and where `default_stream` is written (checked once the streams are known).
fn parse_srt(src: &mut Source, root: &dyn TableLike) -> (SrtConfig, Option<Option<Range<usize>>>) {
    let mut srt = SrtConfig::default();
    let mut default_span = None;
    let Some(t) = section(src, root, "srt") else {
        return (srt, default_span);
    };
    check_keys(src, t, "in [srt]", &["latency", "default_stream"], no_hint);
    if let Some((d, _)) = get_duration(
        src,
        t,
        "latency",
        "in [srt]",
        SRT_LATENCY_RANGE,
        "the time SRT may spend recovering lost packets; it adds to the stream's delay",
    ) {
        srt.latency = d;
    }
    if let Some((n, span)) = get_str(src, t, "default_stream", "in [srt]") {
        srt.default_stream = Some(n.to_string());
        default_span = Some(span);
    }
    (srt, default_span)
}

fn parse_chat(src: &mut Source, root: &dyn TableLike) -> ChatConfig {
    let mut chat = ChatConfig::default();
    let Some(t) = section(src, root, "chat") else {
        return chat;
    };
    let ctx = "in [chat]";
    check_keys(
        src,
        t,
        ctx,
        &[
            "store",
            "history",
            "max_message_len",
            "burst",
            "refill",
            "slow_mode",
            "max_connections",
            "keep_after_end",
            "send_queue",
            "moderator_tokens",
        ],
        no_hint,
    );
    if let Some((p, span)) = get_str(src, t, "store", ctx) {
        if p.is_empty() {
            src.report(span, "`store` in [chat] must be a file path".to_string());
        } else {
            chat.store = PathBuf::from(p);
        }
    }
    let int = |src: &mut Source, name: &str, range: (i64, i64), why: &str| {
        get_int(src, t, name, ctx, range, "", why).map(|(n, _)| n)
    };
    if let Some(n) = int(
        src,
        "history",
        (0, MAX_CHAT_HISTORY as i64),
        "messages sent on join",
    ) {
        chat.history = n as usize;
    }
    if let Some(n) = int(
        src,
        "max_message_len",
        (1, MAX_CHAT_MESSAGE_LEN as i64),
        "characters per message",
    ) {
        chat.max_message_len = n as usize;
    }
    if let Some(n) = int(
        src,
        "burst",
        (1, 1000),
        "messages a connection may send at once",
    ) {
        chat.burst = n as u32;
    }
    if let Some(n) = int(
        src,
        "max_connections",
        (1, 1_000_000),
        "connections per room",
    ) {
        chat.max_connections = n as usize;
    }
    if let Some(n) = int(
        src,
        "send_queue",
        (128, 65_536),
        "frames queued for one viewer before it is dropped as too slow; at least one commit batch",
    ) {
        chat.send_queue = n as usize;
    }
    let hour = Duration::from_secs(3600);
    if let Some((d, _)) = get_duration(
        src,
        t,
        "refill",
        ctx,
        (Duration::ZERO, hour),
        "one more message is allowed per refill; \"0s\" turns the rate limit off",
    ) {
        chat.refill = d;
    }
    if let Some((d, _)) = get_duration(
        src,
        t,
        "slow_mode",
        ctx,
        (Duration::ZERO, hour),
        "one message per name per interval; \"0s\" is off",
    ) {
        chat.slow_mode = d;
    }
    if let Some((d, _)) = get_duration(
        src,
        t,
        "keep_after_end",
        ctx,
        (Duration::ZERO, 24 * hour),
        "the room stays readable this long after its stream ends",
    ) {
        chat.keep_after_end = d;
    }
    if let Some((key, item)) = t.get_key_value("moderator_tokens") {
        let span = item_span(Some(key), item);
        match item.as_array() {
            Some(a) => {
                for v in a.iter() {
                    match v.as_str() {
                        Some(tok) if tok.len() >= 8 && !tok.chars().any(char::is_whitespace) => {
                            chat.moderator_tokens.push(tok.to_string())
                        }
                        Some(_) => src.report(
                            v.span(),
                            "`moderator_tokens` in [chat]: a token must be at least 8 characters without whitespace (it is a password)".to_string(),
                        ),
                        None => src.report(
                            v.span(),
                            "`moderator_tokens` in [chat] must hold strings".to_string(),
                        ),
                    }
                }
            }
            None => src.report(
                span,
                format!(
                    "`moderator_tokens` in [chat] must be an array of strings, found {}",
                    type_name(item)
                ),
            ),
        }
    }
    chat
}
