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

/// A repeated failure worth one log line a second, not one per event:
/// [`EverySecond::count`] counts an event and says when to write the line
/// and for how many events.
#[derive(Default)]
pub struct EverySecond {
    /// Events not yet reported.
    pending: std::sync::atomic::AtomicU64,
    /// The unix second of the last report.
    last_report: std::sync::atomic::AtomicU64,
}

impl EverySecond {
    /// Counts one event; `Some(n)` when a line is due now, for the `n`
    /// events since the last one (the first event of each new second).
    pub fn count(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.pending.fetch_add(1, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_report.load(Relaxed);
        (now != last
            && self
                .last_report
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok())
        .then(|| self.pending.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_second_reports_once_with_the_count() {
        let log = EverySecond::default();
        assert_eq!(log.count(), Some(1), "the first event is reported");
        // Within the same second the next events are only counted (a test
        // that straddles a second boundary sees one more report: allow it).
        let reported: u64 = (0..1000).filter_map(|_| log.count()).sum();
        assert!(reported <= 1000);
        let lines = (0..1000).filter(|_| log.count().is_some()).count();
        assert!(lines <= 2, "{lines} reports for 1000 events");
    }
}
