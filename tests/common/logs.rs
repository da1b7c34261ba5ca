//! Log capture: the in-process servers' logs go to a buffer the tests search (and that a
//! failing test prints).
//!
//! The tests of one binary run in parallel, each with its own tokio runtime and server(s), and
//! share one tracing subscriber. Every line is tagged with the runtime of the thread that logged
//! it, so a test searches only what its own servers logged. Lines from threads outside any
//! runtime (a transcoder's control thread, the chat store's writer) carry no tag: a test that
//! needs them must match something only it produces (its own stream name).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Which runtime logged a line (tokio runtime ids are never reused: a 64-bit counter).
type LineTag = Option<tokio::runtime::Id>;

#[derive(Default)]
struct LogLines {
    lines: std::collections::VecDeque<(LineTag, String)>,
    bytes: usize,
}

fn log_lines() -> &'static Mutex<LogLines> {
    static LINES: OnceLock<Mutex<LogLines>> = OnceLock::new();
    LINES.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                ferrocast::server::DEFAULT_LOG_FILTER,
            ))
            .with_ansi(false)
            .with_writer(LogSink)
            .try_init();
        Mutex::new(LogLines::default())
    })
}

fn current_runtime() -> LineTag {
    tokio::runtime::Handle::try_current().ok().map(|h| h.id())
}

/// Makes one [`LineWriter`] per event, on the thread that logs it.
struct LogSink;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            tag: current_runtime(),
            buf: Vec::new(),
        }
    }
}

/// Collects one formatted event and files it, tagged, when dropped.
struct LineWriter {
    tag: LineTag,
    buf: Vec<u8>,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let mut logs = log_lines().lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a long run keeps the newest 16-32 MiB.
        if logs.bytes > 32 << 20 {
            while logs.bytes > 16 << 20 {
                let Some((_, l)) = logs.lines.pop_front() else {
                    break;
                };
                logs.bytes -= l.len();
            }
        }
        logs.bytes += text.len();
        logs.lines.push_back((self.tag, text));
    }
}

fn collect_logs(keep: impl Fn(LineTag) -> bool) -> String {
    let logs = log_lines().lock().unwrap_or_else(|e| e.into_inner());
    logs.lines
        .iter()
        .filter(|(tag, _)| keep(*tag))
        .map(|(_, l)| l.as_str())
        .collect()
}

/// What the servers of the calling test logged so far: lines logged on its runtime's threads
/// (call it from the test's async code).
pub fn server_logs() -> String {
    let me = current_runtime();
    assert!(
        me.is_some(),
        "server_logs() outside the test's runtime cannot tell whose lines are whose"
    );
    collect_logs(|tag| tag == me)
}

/// [`server_logs`] plus the lines of threads outside every runtime, which may belong to any
/// test of this binary: match only what the calling test alone produces (its stream name).
pub fn server_and_thread_logs() -> String {
    let me = current_runtime();
    assert!(
        me.is_some(),
        "server_and_thread_logs() outside the test's runtime"
    );
    collect_logs(|tag| tag == me || tag.is_none())
}

/// Polls [`server_logs`] (with `threads`, [`server_and_thread_logs`]) until a line satisfies
/// `pred`; returns it. Panics at the deadline with the calling test's log.
pub async fn wait_log_line(
    timeout: Duration,
    what: &str,
    threads: bool,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let logs = if threads {
            server_and_thread_logs()
        } else {
            server_logs()
        };
        if let Some(l) = logs.lines().find(|l| pred(l)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what} within {timeout:?}; this test's log:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Installs the capture (once per test binary).
pub(super) fn install() {
    log_lines();
}

/// The calling test's lines plus runtime-less threads' lines, for a failure report: never
/// panics (a second panic while unwinding would abort).
pub(super) fn for_failure_report() -> String {
    let me = current_runtime();
    collect_logs(|tag| tag == me || tag.is_none())
}
