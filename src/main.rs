//! The `ferrocast` command: `serve` and `check`.

use std::backtrace::BacktraceStatus;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrocast::config;

#[derive(Parser)]
#[command(
    name = "ferrocast",
    version,
    about = "Live streaming: RTMP in, Low-Latency HLS out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[arg(long, default_value = config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// HTTP listen address (overrides [server] http).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// RTMP listen address (overrides [server] rtmp).
        #[arg(long)]
        rtmp: Option<SocketAddr>,
        /// SRT listen address (overrides [server] srt).
        #[arg(long)]
        srt: Option<SocketAddr>,
    },
    /// Validate the configuration and every pipeline it uses.
    Check {
        #[arg(long, default_value = config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve {
            config,
            http,
            rtmp,
            srt,
        } => serve(config, http, rtmp, srt),
    }
}

fn load(path: &Path) -> Result<config::Config, ExitCode> {
    let fail = |diags: Vec<config::Diagnostic>| {
        for d in &diags {
            eprintln!("{d}");
        }
        eprintln!("{}: {} problem(s)", path.display(), diags.len());
        ExitCode::from(1)
    };
    let cfg = config::load(path).map_err(fail)?;
    // Encoder elements can only be checked against the installed GStreamer.
    let problems: Vec<config::Diagnostic> = cfg
        .pipelines
        .values()
        .flat_map(ferrocast::transcode::check_elements)
        .collect();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(fail(problems))
    }
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok(cfg) => {
            for w in config::warnings(&cfg) {
                eprintln!("{}: warning: {w}", path.display());
            }
            println!(
                "{}: ok ({} stream(s), {} pipeline(s))",
                path.display(),
                cfg.streams.len(),
                cfg.pipelines.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The panic hook: what the default hook prints (thread, location, message, and the backtrace
/// when RUST_BACKTRACE asks for one), as one log event in the current span. It only logs; the
/// unwinding goes on, so a panicking session task ends that session only.
///
/// The backtrace follows RUST_BACKTRACE rather than being forced: some panics are expected
/// (rml_rtmp's on hostile input, caught by the RTMP ingest), and resolving a backtrace for each
/// would let any client buy server CPU and log volume per connection.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = info.payload_as_str().unwrap_or("Box<dyn Any>");
    let location = info.location().map(|l| l.to_string()).unwrap_or_default();
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("<unnamed>");
    let backtrace = std::backtrace::Backtrace::capture();
    match backtrace.status() {
        BacktraceStatus::Captured => {
            tracing::error!(thread, location, %backtrace, "panic: {message}")
        }
        BacktraceStatus::Disabled => tracing::error!(
            thread,
            location,
            backtrace = "off (RUST_BACKTRACE=1 turns it on)",
            "panic: {message}"
        ),
        _ => tracing::error!(
            thread,
            location,
            backtrace = "unsupported",
            "panic: {message}"
        ),
    }
}

fn serve(
    path: PathBuf,
    http: Option<SocketAddr>,
    rtmp: Option<SocketAddr>,
    srt: Option<SocketAddr>,
) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(ferrocast::server::DEFAULT_LOG_FILTER)
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic in one session's task (e.g. a third-party parser on hostile input) is caught
    // and ends that session; log it as one structured event rather than raw stderr.
    std::panic::set_hook(Box::new(log_panic));
    let mut cfg = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    cfg.server.http = http.unwrap_or(cfg.server.http);
    cfg.server.rtmp = rtmp.unwrap_or(cfg.server.rtmp);
    cfg.server.srt = srt.unwrap_or(cfg.server.srt);
    let conflicts = cfg.server.conflicts();
    if !conflicts.is_empty() {
        for c in conflicts {
            eprintln!("error: {c}");
        }
        return ExitCode::from(1);
    }
    for w in config::warnings(&cfg) {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let server = match ferrocast::server::Server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        ferrocast::server::shutdown_signal().await;
        tracing::info!("shutting down: ending live playlists");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}
