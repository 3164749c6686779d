//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`),
//! JSON when `PORTCULLIS_LOG_FORMAT=json`. pingora's `log` records are
//! bridged in.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Keeps the background log writers alive; dropping it writes what is
/// queued. (Fields drop in order: the access log hands its last batch to the
/// writer before the writer stops.)
pub struct LogGuard {
    _access: Option<crate::access_log::Guard>,
    _writer: tracing_appender::non_blocking::WorkerGuard,
}

/// Sets up logging. Lines are written by a background thread, so a slow
/// stderr never blocks a request; keep the guard for the life of the process.
pub fn init() -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // 32k lines (~1 s of access log at full load) instead of 128k: the
        // channel's slots are written at start-up, so its size is resident.
        .buffered_lines_limit(32 * 1024)
        .finish(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let access = crate::access_log::install(writer.clone(), json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    LogGuard {
        _access: access,
        _writer: guard,
    }
}
