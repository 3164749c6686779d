//! The access log: one line per request, written without going through
//! `tracing`'s event formatting.
//!
//! Formatting an event with nine fields through `tracing-subscriber` cost
//! about 7 µs of CPU per request, a quarter of all the proxy's CPU time
//! (`scripts/bench`, c = 64). Here a line is put together in a recycled
//! buffer, the timestamp's date and time are reformatted only
//! when the second changes, and the line is queued for the `access-log`
//! thread. That thread is not woken per line: every [`BATCH_EVERY`] it takes
//! what has queued and hands it, as one write, to the background writer of
//! every other log line (so lines are never interleaved mid-line). Waking a
//! writer thread for each line had cost ~20 µs of CPU per request at low
//! concurrency (a futex wake, a context switch and a write(2) each).
//!
//! The format is the one `tracing` printed (or its JSON form with
//! `PORTCULLIS_LOG_FORMAT=json`), and `RUST_LOG` still decides: the line is
//! written when `portcullis::access` is enabled at `info`.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tracing_appender::non_blocking::NonBlocking;

/// One request, as logged. Never holds a query string: queries carry codes
/// and states on `/oauth2/callback`.
pub struct Entry<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// 0 when no response was sent.
    pub status: u16,
    pub outcome: &'a str,
    /// `provider` and `subject` of the signed-in user, if any.
    pub user: Option<(&'a str, &'a str)>,
    pub client: Option<IpAddr>,
    pub micros: u64,
    /// pingora's error type, if the request failed.
    pub error: Option<&'a str>,
    /// The request's `X-Request-Id` (empty when none was assigned).
    pub request_id: &'a str,
}

/// How long a line may wait before it is written.
pub const BATCH_EVERY: Duration = Duration::from_millis(50);

/// Lines queued at most (~160k lines/s at one batch per 50 ms). When the
/// queue is full the writer is woken at once, and a request waits for room
/// rather than lose its line.
const QUEUE_LINES: usize = 8 * 1024;

/// Line buffers handed back by the writer for reuse, so a request takes a
/// spare one instead of allocating.
const SPARE_LINES: usize = 4 * 1024;

const BATCH_BYTES: usize = 32 * 1024;

struct Sink {
    queue: Sender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    writer: std::thread::Thread,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Stops the `access-log` thread after writing what is queued.
pub struct Guard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Sends access lines, in batches, to `out` (the process's log writer).
/// The first call wins (`None` after); without one, lines go through
/// `tracing` (library users, unit tests).
pub(crate) fn install(out: NonBlocking, json: bool) -> Option<Guard> {
    if SINK.get().is_some() {
        return None;
    }
    let (queue, lines) = bounded(QUEUE_LINES);
    let (give_back, spare) = bounded(SPARE_LINES);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn({
            let stop = stop.clone();
            move || batch_writer(lines, give_back, out, &stop)
        })
        .ok()?;
    let writer = thread.thread().clone();
    let guard = Guard {
        stop,
        thread: Some(thread),
    };
    // Losing a race with another install drops (and so stops) this thread.
    SINK.set(Sink {
        queue,
        spare,
        writer,
        json,
    })
    .ok()?;
    Some(guard)
}

fn batch_writer(
    lines: Receiver<Vec<u8>>,
    give_back: Sender<Vec<u8>>,
    mut out: NonBlocking,
    stop: &AtomicBool,
) {
    // Handed over in pieces of ~32 KiB: the writer copies each one, and with
    // 256 KiB pieces (freed on its thread) the allocator held ~14 MB more
    // at full load.
    let mut batch = Vec::with_capacity(BATCH_BYTES + 1024);
    loop {
        // Not woken by senders: a sleeping thread is not a blocked receiver.
        std::thread::park_timeout(BATCH_EVERY);
        let stopping = stop.load(Ordering::Acquire);
        while let Ok(mut line) = lines.try_recv() {
            batch.extend_from_slice(&line);
            if line.capacity() <= 1024 {
                line.clear();
                let _ = give_back.try_send(line);
            }
            if batch.len() >= BATCH_BYTES {
                let _ = out.write_all(&batch);
                batch.clear();
            }
        }
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            batch.clear();
            batch.shrink_to(BATCH_BYTES + 1024);
        }
        if stopping {
            return;
        }
    }
}

struct Local {
    /// The second the cached date-time text is for.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS`
    date_time: [u8; 19],
}

thread_local! {
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local { second: u64::MAX, date_time: [0; 19] })
    };
}

/// Logs one request.
pub fn log(e: &Entry<'_>) {
    if !tracing::enabled!(target: "portcullis::access", tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        let mut line = Vec::new();
        write_fields_text(&mut line, e);
        tracing::info!(target: "portcullis::access", "{}", String::from_utf8_lossy(&line));
        return;
    };
    // Formatted straight into the buffer that is queued.
    let mut line = sink
        .spare
        .try_recv()
        .unwrap_or_else(|_| Vec::with_capacity(256));
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if now.as_secs() != local.second {
            local.second = now.as_secs();
            local.date_time = date_time(now.as_secs());
        }
        if sink.json {
            line.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(&mut line, &local.date_time, now.subsec_micros());
            line.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"portcullis::access\"");
            write_fields_json(&mut line, e);
            line.extend_from_slice(b"}\n");
        } else {
            timestamp(&mut line, &local.date_time, now.subsec_micros());
            line.extend_from_slice(b"  INFO portcullis::access: ");
            write_fields_text(&mut line, e);
            line.push(b'\n');
        }
    });
    if let Err(TrySendError::Full(line)) = sink.queue.try_send(line) {
        sink.writer.unpark();
        let _ = sink.queue.send(line);
    }
}

fn timestamp(line: &mut Vec<u8>, date_time: &[u8; 19], micros: u32) {
    line.extend_from_slice(date_time);
    line.push(b'.');
    crate::digits::push_six(line, micros);
    line.push(b'Z');
}

/// `key=value` pairs; a value with anything but plain visible ASCII is
/// quoted and escaped, so a line cannot be split or forged by a path.
pub fn write_fields_text(line: &mut Vec<u8>, e: &Entry<'_>) {
    line.extend_from_slice(b"method=");
    text_value(line, e.method);
    line.extend_from_slice(b" path=");
    text_value(line, e.path);
    line.extend_from_slice(b" status=");
    crate::digits::push_u64(line, u64::from(e.status));
    line.extend_from_slice(b" outcome=");
    text_value(line, e.outcome);
    line.extend_from_slice(b" user=");
    match e.user {
        Some((provider, subject)) => {
            text_value(line, provider);
            line.push(b':');
            text_value(line, subject);
        }
        None => line.push(b'-'),
    }
    line.extend_from_slice(b" client=");
    match e.client {
        Some(ip) => crate::digits::push_ip(line, ip),
        None => line.push(b'-'),
    }
    line.extend_from_slice(b" micros=");
    crate::digits::push_u64(line, e.micros);
    if let Some(error) = e.error {
        line.extend_from_slice(b" error=");
        text_value(line, error);
    }
    line.extend_from_slice(b" request_id=");
    if e.request_id.is_empty() {
        line.push(b'-');
    } else {
        text_value(line, e.request_id);
    }
}

/// Bytes that stay as they are in a text value: visible ASCII but `"`
/// and `\\` (a table: one lookup per byte of every value on every line).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_graphic() && c != b'"' && c != b'\\';
        b += 1;
    }
    t
};

fn text_value(line: &mut Vec<u8>, v: &str) {
    let plain = !v.is_empty() && v.bytes().all(|b| PLAIN[usize::from(b)]);
    if plain {
        line.extend_from_slice(v.as_bytes());
    } else {
        let _ = write!(line, "{v:?}");
    }
}

fn write_fields_json(line: &mut Vec<u8>, e: &Entry<'_>) {
    json_field(line, "method", e.method);
    json_field(line, "path", e.path);
    let _ = write!(line, ",\"status\":{}", e.status);
    json_field(line, "outcome", e.outcome);
    match e.user {
        Some((provider, subject)) => {
            line.extend_from_slice(b",\"user\":");
            let _ = serde_json::to_writer(&mut *line, &format!("{provider}:{subject}"));
        }
        None => line.extend_from_slice(b",\"user\":null"),
    }
    match e.client {
        Some(ip) => {
            let _ = write!(line, ",\"client\":\"{ip}\"");
        }
        None => line.extend_from_slice(b",\"client\":null"),
    }
    let _ = write!(line, ",\"micros\":{}", e.micros);
    if let Some(error) = e.error {
        json_field(line, "error", error);
    }
    if !e.request_id.is_empty() {
        json_field(line, "request_id", e.request_id);
    }
}

fn json_field(line: &mut Vec<u8>, key: &str, v: &str) {
    let _ = write!(line, ",\"{key}\":");
    let _ = serde_json::to_writer(&mut *line, v);
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch: the
/// days-to-civil-date conversion from Howard Hinnant's "chrono-compatible
/// low-level date algorithms".
fn date_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 19];
    let mut w = &mut out[..];
    let _ = write!(
        w,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>() -> Entry<'a> {
        Entry {
            method: "GET",
            path: "/app/page",
            status: 200,
            outcome: "proxied",
            user: Some(("google", "1101")),
            client: Some("192.0.2.7".parse().unwrap()),
            micros: 412,
            error: None,
            request_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        }
    }

    #[test]
    fn date_time_matches_known_instants() {
        assert_eq!(&date_time(0), b"1970-01-01T00:00:00");
        // 2000-02-29 (a leap day in a century year) and the day after.
        assert_eq!(&date_time(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&date_time(951_868_799), b"2000-02-29T23:59:59");
        assert_eq!(&date_time(951_868_800), b"2000-03-01T00:00:00");
        assert_eq!(&date_time(1_795_638_425), b"2026-11-25T20:27:05");
        assert_eq!(&date_time(4_102_444_800), b"2100-01-01T00:00:00");
    }

    #[test]
    fn text_fields() {
        let mut line = Vec::new();
        write_fields_text(&mut line, &entry());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "method=GET path=/app/page status=200 outcome=proxied user=google:1101 client=192.0.2.7 micros=412 request_id=0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        let mut line = Vec::new();
        write_fields_text(
            &mut line,
            &Entry {
                user: None,
                client: None,
                status: 0,
                error: Some("ConnectionClosed"),
                request_id: "",
                ..entry()
            },
        );
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "method=GET path=/app/page status=0 outcome=proxied user=- client=- micros=412 error=ConnectionClosed request_id=-"
        );
    }

    #[test]
    fn odd_values_are_quoted_so_a_line_cannot_be_forged() {
        let mut line = Vec::new();
        write_fields_text(
            &mut line,
            &Entry {
                path: "/a b\" status=200\nforged",
                user: Some(("x", "sub ject")),
                ..entry()
            },
        );
        let line = String::from_utf8(line).unwrap();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(r#"method=GET path="/a b\" status=200\nforged" status=200"#),
            "{line}"
        );
        assert!(line.contains(r#"user=x:"sub ject""#), "{line}");
    }

    #[test]
    fn json_fields_are_valid_json() {
        let mut line = b"{\"a\":1".to_vec();
        write_fields_json(
            &mut line,
            &Entry {
                path: "/\"quoted\"\n",
                error: Some("ReadError"),
                ..entry()
            },
        );
        line.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["path"], "/\"quoted\"\n");
        assert_eq!(v["user"], "google:1101");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["status"], 200);
        assert_eq!(v["micros"], 412);
        assert_eq!(v["error"], "ReadError");
        assert_eq!(v["request_id"], "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    }
}
