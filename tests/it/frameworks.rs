//! SECURITY.md row 18: the request the gate judges is the request the upstream gets.
//!
//! Every target of `tests/data/request-targets.txt` (over 400: dot segments plain and
//! encoded, `..;`, `//`, backslashes, encoded slashes, controls, double encoding, overlong
//! UTF-8, non-origin and absolute forms, ...) is sent without a session, as a raw HTTP/1.1
//! request, through Portcullis (`skip_auth = ["^/public/", "GET ^/$"]`) into four real web
//! frameworks, each with a `home`, `public`, `admin` and catch-all `private` route (see
//! `support::frameworks`). The invariant: whatever Portcullis forwards without a session,
//! the framework routes to `home` or `public`, never to `admin` or `private`. A framework's
//! own refusal or redirect (no `X-Route`) is fine: nothing was routed.
//!
//! A relay between Portcullis and the framework ([`tap`]) records what Portcullis forwarded,
//! so the report can tell Portcullis's refusals from the framework's. The per-framework
//! summary goes to stderr and to `target/framework-differential.txt`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use portcullis::identity::Identity;
use portcullis::session::{Sealer, SessionCodec, SessionKey};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::frameworks::{self, Framework};
use crate::support::harness::{self, Portcullis};
use crate::support::{mock_google, tap};

const CORPUS: &str = include_str!("../data/request-targets.txt");

/// How long one request may take through Portcullis and the framework.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Requests in flight at once.
const IN_FLIGHT: usize = 8;

/// Portcullis's public routes in this test.
const SKIP_AUTH: &str = r#"skip_auth = ["^/public/", "GET ^/$"]"#;

/// Methods other than GET, each sent with each of [`METHOD_TARGETS`].
const OTHER_METHODS: [&str; 6] = ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];
const METHOD_TARGETS: [&str; 8] = [
    "/",
    "/public/x",
    "/admin",
    "/private",
    "/public/..;/admin",
    "/admin/../public/x",
    "x:/admin",
    "*",
];

/// Requests that must reach the framework's public routes without a session, so that the
/// test cannot pass by refusing everything: (method, target, route).
const KNOWN_GOOD: [(&str, &str, &str); 11] = [
    ("GET", "/", "home"),
    ("GET", "/?x=1", "home"),
    ("GET", "/public/", "public"),
    ("GET", "/public/a", "public"),
    ("GET", "/public/a/b/c.png", "public"),
    ("GET", "/public/a%20b", "public"),
    ("GET", "/public/%C3%A9", "public"),
    ("GET", "/public/a?x=/admin", "public"),
    ("GET", "/public/a-b_c.d~e", "public"),
    ("POST", "/public/a", "public"),
    ("GET", "http://127.0.0.1:{PORT}/public/x", "public"),
];

/// With a session, the protected routes are reached: the app and the proxy work.
const WITH_SESSION: [(&str, &str); 4] = [
    ("/admin", "admin"),
    ("/admin/x", "admin"),
    ("/private", "private"),
    ("/public/a", "public"),
];

#[tokio::test]
async fn security_18_werkzeug_routes_nothing_protected_without_a_session() {
    differential(Framework::Werkzeug).await;
}

#[tokio::test]
async fn security_18_express_routes_nothing_protected_without_a_session() {
    differential(Framework::Express).await;
}

#[tokio::test]
async fn security_18_go_routes_nothing_protected_without_a_session() {
    differential(Framework::Go).await;
}

#[tokio::test]
async fn security_18_tomcat_routes_nothing_protected_without_a_session() {
    differential(Framework::Tomcat).await;
}

async fn differential(framework: Framework) {
    let test = std::thread::current()
        .name()
        .unwrap_or("frameworks")
        .to_owned();
    let Some(app) = frameworks::require(framework, &test) else {
        return;
    };
    let started = Instant::now();
    let tap = tap::start(app.port).await;
    let google = mock_google::start("frameworks-client", "frameworks-secret").await;
    let secret = harness::session_secret();
    // No access log: the summary says more, and a failure prints Portcullis's stderr.
    let proxy = harness::start_with_env(
        |port| {
            harness::google_config(
                port,
                &tap.url,
                &google,
                &secret,
                &format!("[access]\n{SKIP_AUTH}\n"),
            )
        },
        &[("RUST_LOG", "info,portcullis::access=off")],
    )
    .await;
    let targets = parse_corpus(CORPUS, proxy.port).unwrap_or_else(|e| panic!("{e}"));

    let mut requests: Vec<(&str, Vec<u8>)> = targets.into_iter().map(|t| ("GET", t)).collect();
    for method in OTHER_METHODS {
        for target in METHOD_TARGETS {
            requests.push((method, target.as_bytes().to_vec()));
        }
    }
    let mut report = Report::default();
    let mut exchanges = futures_util::stream::iter(requests)
        .map(|(method, target)| {
            let (proxy, tap) = (&proxy, &tap);
            async move { exchange(proxy, tap, method, &target, None).await }
        })
        .buffered(IN_FLIGHT);
    while let Some(exchange) = exchanges.next().await {
        report.add(exchange);
    }
    drop(exchanges);

    let mut known_good_failures = Vec::new();
    for (method, target, route) in KNOWN_GOOD {
        let target = parse_line(target, proxy.port).expect("a known-good target");
        let exchange = exchange(&proxy, &tap, method, &target, None).await;
        if exchange.route() != Some(route) {
            known_good_failures.push(format!("{} (expected route {route})", exchange.describe()));
        }
    }
    let cookie = session_cookie(&secret);
    let mut session_failures = Vec::new();
    for (target, route) in WITH_SESSION {
        let exchange = exchange(&proxy, &tap, "GET", target.as_bytes(), Some(&cookie)).await;
        if exchange.route() != Some(route) {
            session_failures.push(format!("{} (expected route {route})", exchange.describe()));
        }
    }

    // The offending requests are listed in the failure message and the file, not twice on
    // stderr.
    let took = started.elapsed();
    eprintln!("{}", report.summary(app, took, false));
    write_summary(framework, &report.summary(app, took, true));

    let mut problems = String::new();
    if !report.offending.is_empty() {
        let _ = writeln!(
            problems,
            "{} request(s) reached a protected route of {} without a session:",
            report.offending.len(),
            framework.name()
        );
        for line in &report.offending {
            let _ = writeln!(problems, "  {line}");
        }
    }
    if !known_good_failures.is_empty() {
        let _ = writeln!(problems, "public requests that did not reach their route:");
        for line in &known_good_failures {
            let _ = writeln!(problems, "  {line}");
        }
    }
    if !session_failures.is_empty() {
        let _ = writeln!(
            problems,
            "requests with a session that did not reach their route:"
        );
        for line in &session_failures {
            let _ = writeln!(problems, "  {line}");
        }
    }
    assert!(
        problems.is_empty(),
        "{problems}(the summary above has the rest; target/framework-differential.txt has all)"
    );
}

// ---------------------------------------------------------------------------------------------
// One request and what became of it

struct Exchange {
    method: String,
    target: Vec<u8>,
    /// The request lines Portcullis sent upstream for it.
    forwarded: Vec<Vec<u8>>,
    answer: Result<Answer, String>,
}

struct Answer {
    status: u16,
    /// `X-Route`, set by the framework's route handlers only.
    route: Option<String>,
    /// The handler's JSON body, when there is one.
    body: Option<Value>,
}

impl Exchange {
    fn route(&self) -> Option<&str> {
        self.answer.as_ref().ok()?.route.as_deref()
    }

    /// `GET "/admin/../public/x" -> forwarded "GET /admin/../public/x HTTP/1.1" -> 200 admin
    /// (routed on "/admin/x", received "/admin/../public/x")`
    fn describe(&self) -> String {
        let mut out = format!("{} {}", self.method, show(&self.target));
        for line in &self.forwarded {
            let _ = write!(out, " -> forwarded {}", show(line));
        }
        match &self.answer {
            Err(e) => {
                let _ = write!(out, " -> {e}");
            }
            Ok(answer) => {
                let _ = write!(out, " -> {}", answer.status);
                if let Some(route) = &answer.route {
                    let _ = write!(out, " route {route}");
                }
                if let Some(body) = &answer.body {
                    let _ = write!(
                        out,
                        " (routed on {}, received {})",
                        body["path"], body["raw"]
                    );
                }
            }
        }
        out
    }
}

async fn exchange(
    proxy: &Portcullis,
    tap: &tap::Tap,
    method: &str,
    target: &[u8],
    cookie: Option<&str>,
) -> Exchange {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let probe = PROBES.fetch_add(1, Ordering::Relaxed).to_string();
    let answer = send(proxy.port, method, target, cookie, &probe).await;
    Exchange {
        method: method.to_owned(),
        target: target.to_vec(),
        forwarded: tap.forwarded(&probe),
        answer,
    }
}

/// `METHOD target HTTP/1.1` over a fresh connection, as a client would send it (reqwest would
/// normalise the target), with the tap's probe header; the whole response, read until
/// Portcullis closes the connection.
async fn send(
    port: u16,
    method: &str,
    target: &[u8],
    cookie: Option<&str>,
    probe: &str,
) -> Result<Answer, String> {
    let mut request = Vec::with_capacity(target.len() + 200);
    request.extend_from_slice(method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\n");
    let _ = write!(
        Bytes(&mut request),
        "Host: 127.0.0.1:{port}\r\nAccept: application/json\r\n{}: {probe}\r\n",
        tap::PROBE_HEADER
    );
    if let Some(cookie) = cookie {
        let _ = write!(Bytes(&mut request), "Cookie: {cookie}\r\n");
    }
    if !matches!(method, "GET" | "HEAD" | "OPTIONS") {
        request.extend_from_slice(b"Content-Length: 0\r\n");
    }
    request.extend_from_slice(b"Connection: close\r\n\r\n");

    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(&request)
            .await
            .map_err(|e| format!("closed while sending ({e})"))?;
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response).await;
        if response.is_empty() {
            return Err(match read {
                Ok(_) => "closed without an answer".to_owned(),
                Err(e) => format!("closed without an answer ({e})"),
            });
        }
        Ok(parse_response(&response))
    };
    tokio::time::timeout(REQUEST_DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_DEADLINE:?}")))
}

/// `std::fmt::Write` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn parse_response(response: &[u8]) -> Answer {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]);
    let body = response.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let route = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-route"))
        .map(|(_, value)| value.trim().to_owned());
    // The framework's body, when it is the handler's JSON; chunked bodies are not decoded,
    // the JSON object is found inside them.
    let body = route.as_ref().and_then(|_| {
        let text = String::from_utf8_lossy(body);
        let start = text.find('{')?;
        let end = text.rfind('}')?;
        serde_json::from_str(&text[start..=end]).ok()
    });
    Answer {
        status,
        route,
        body,
    }
}

/// A session cookie for a signed-in user, sealed with the proxy's secret.
fn session_cookie(secret: &str) -> String {
    let key = SessionKey::from_base64(secret).expect("the test's session secret");
    let codec = SessionCodec::new(Sealer::new(&key, &[]));
    let id = Identity {
        provider: "google".into(),
        subject: "110169484474386276334".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice".into()),
        login: None,
        picture: None,
        groups: Vec::new(),
    };
    format!(
        "_portcullis={}",
        codec.seal_identity("_portcullis", &id, Duration::from_secs(600))
    )
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Default)]
struct Report {
    sent: usize,
    /// Answered without forwarding anything: by status (0 = no answer).
    refused: BTreeMap<u16, usize>,
    no_answer: BTreeMap<String, usize>,
    /// Forwarded and routed: by route.
    routed: BTreeMap<String, usize>,
    /// Forwarded, and the framework answered without routing (its own 400, 404, redirect).
    not_routed: BTreeMap<u16, usize>,
    forwarded: usize,
    /// Reached `admin` or `private` without a session.
    offending: Vec<String>,
}

impl Report {
    fn add(&mut self, exchange: Exchange) {
        self.sent += 1;
        let forwarded = !exchange.forwarded.is_empty();
        if forwarded {
            self.forwarded += 1;
        }
        match &exchange.answer {
            Err(e) => *self.no_answer.entry(e.clone()).or_default() += 1,
            Ok(answer) => match &answer.route {
                Some(route) => {
                    *self.routed.entry(route.clone()).or_default() += 1;
                    if route != "home" && route != "public" {
                        self.offending.push(exchange.describe());
                    }
                }
                None if forwarded => *self.not_routed.entry(answer.status).or_default() += 1,
                None => *self.refused.entry(answer.status).or_default() += 1,
            },
        }
    }

    /// What was sent and what became of it; with `offenders`, each offending request too.
    fn summary(&self, app: &frameworks::App, took: Duration, offenders: bool) -> String {
        fn counts<K: std::fmt::Display>(map: &BTreeMap<K, usize>) -> String {
            if map.is_empty() {
                return "none".to_owned();
            }
            map.iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== {} ({}) behind Portcullis, {SKIP_AUTH}, no session \
             ({:.1} s; the app started in {:.1} s)",
            app.framework.name(),
            app.versions,
            took.as_secs_f64(),
            app.startup.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  sent: {} ({} corpus targets with GET, {} with other methods)",
            self.sent,
            self.sent - OTHER_METHODS.len() * METHOD_TARGETS.len(),
            OTHER_METHODS.len() * METHOD_TARGETS.len()
        );
        let _ = writeln!(
            out,
            "  refused by Portcullis (nothing forwarded), by status: {} (total {})",
            counts(&self.refused),
            self.refused.values().sum::<usize>()
        );
        if !self.no_answer.is_empty() {
            let _ = writeln!(out, "  no answer: {}", counts(&self.no_answer));
        }
        let _ = writeln!(out, "  forwarded: {}", self.forwarded);
        let _ = writeln!(out, "    routed by the framework: {}", counts(&self.routed));
        let _ = writeln!(
            out,
            "    answered by the framework without routing, by status: {}",
            counts(&self.not_routed)
        );
        let _ = writeln!(
            out,
            "  reached admin or private without a session: {}",
            self.offending.len()
        );
        if offenders {
            for line in &self.offending {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }
}

/// Writes every framework's summary so far to `target/framework-differential.txt`.
fn write_summary(framework: Framework, summary: &str) {
    static SUMMARIES: Mutex<BTreeMap<Framework, String>> = Mutex::new(BTreeMap::new());
    let mut all = SUMMARIES.lock().unwrap_or_else(|e| e.into_inner());
    all.insert(framework, summary.to_owned());
    let text: String = all
        .values()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(target) = Path::new(env!("CARGO_TARGET_TMPDIR")).parent() {
        let _ = std::fs::write(target.join("framework-differential.txt"), text);
    }
}

/// A target or request line for a report: printable characters and spaces as they are,
/// other bytes as `\xNN`, a backslash as `\\` (the corpus syntax); long ones shortened.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 160;
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        let _ = write!(out, "...\" ({} bytes)", bytes.len());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The corpus format (tests/data/README.md)

/// The targets of the corpus `text`, with `{PORT}` = `port`; an error names the bad line.
fn parse_corpus(text: &str, port: u16) -> Result<Vec<Vec<u8>>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            parse_line(line, port)
                .map_err(|e| format!("tests/data/request-targets.txt line {}: {e}", i + 1))
        })
        .collect()
}

/// One target line: `\xNN`, `\\`, `\{`, `{PORT}` and `{TEXT*N}` replaced.
fn parse_line(line: &str, port: u16) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                let mut escape = rest.chars();
                match escape.next() {
                    Some('\\') => {
                        out.push(b'\\');
                        rest = &rest[1..];
                    }
                    Some('{') => {
                        out.push(b'{');
                        rest = &rest[1..];
                    }
                    Some('x') => {
                        let hex = rest
                            .get(1..3)
                            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                            .ok_or_else(|| "`\\x` needs two hex digits".to_owned())?;
                        out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                        rest = &rest[3..];
                    }
                    _ => return Err("a lone backslash (write `\\\\`)".to_owned()),
                }
            }
            '{' => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| "a `{` without `}` (write `\\{`)".to_owned())?;
                let inner = &rest[..end];
                rest = &rest[end + 1..];
                if inner == "PORT" {
                    out.extend_from_slice(port.to_string().as_bytes());
                    continue;
                }
                let (text, count) = inner
                    .rsplit_once('*')
                    .ok_or_else(|| format!("unknown placeholder {{{inner}}}"))?;
                let count: usize = count
                    .parse()
                    .ok()
                    .filter(|n| *n <= 100_000)
                    .ok_or_else(|| format!("bad repetition count in {{{inner}}}"))?;
                if text.is_empty() || text.contains(['*', '{', '\\']) {
                    return Err(format!("bad repetition text in {{{inner}}}"));
                }
                out.extend_from_slice(text.repeat(count).as_bytes());
            }
            c if c.is_whitespace() || c.is_control() => {
                return Err(format!(
                    "a raw whitespace or control character U+{:04X} (write it as \\xNN)",
                    c as u32
                ));
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if out.is_empty() {
        return Err("an empty target".to_owned());
    }
    Ok(out)
}

#[test]
fn the_corpus_is_well_formed_and_large_enough() {
    let targets = parse_corpus(CORPUS, 4180).unwrap_or_else(|e| panic!("{e}"));
    assert!(targets.len() >= 250, "only {} targets", targets.len());
    let has = |t: &[u8]| targets.iter().any(|x| x == t);
    assert!(has(b"/public/..;/admin"));
    assert!(has(b"/public\\..\\admin"), "`\\\\` is one backslash");
    assert!(has(b"/public/x\x00"), "`\\x00` is a NUL byte");
    assert!(has(b"/public/\xff"), "raw invalid UTF-8");
    assert!(has(b"http://127.0.0.1:4180/public/x"), "{{PORT}}");
    assert!(has(b"#/public/"), "`\\x23` starts a target with `#`");
    assert!(
        targets
            .iter()
            .any(|t| t.len() == 9008 && t.starts_with(b"/public/aaaa")),
        "{{a*9000}}"
    );
    for (method, target, _) in KNOWN_GOOD {
        assert!(
            method != "GET" || has(&parse_line(target, 4180).unwrap()),
            "known-good {target} is not in the corpus"
        );
    }
}

#[test]
fn corpus_lines_parse_as_documented() {
    assert_eq!(parse_line("/a\\x41\\\\\\{b", 1).unwrap(), b"/aA\\{b");
    assert_eq!(parse_line("/{ab*3}/{PORT}", 8080).unwrap(), b"/ababab/8080");
    assert_eq!(parse_line("/é", 1).unwrap(), "/é".as_bytes());
    for bad in [
        "/a b",
        "/a\tb",
        "/a\\b",
        "/a\\x4",
        "/a\\xzz",
        "/{x}",
        "/{a*}",
        "/{*3}",
        "/{a*100001}",
        "/{a",
        "",
    ] {
        assert!(parse_line(bad, 1).is_err(), "{bad:?} parsed");
    }
}
