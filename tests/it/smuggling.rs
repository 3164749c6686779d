//! Request smuggling: a corpus of ambiguous framings (CL.TE, TE.CL, TE.TE
//! obfuscations, duplicate and signed Content-Length, bare LF, chunk-size
//! overflow, pipelining after a body, HTTP/1.0 keep-alive, ...) sent
//! through Portcullis to an upstream that records the raw bytes it got.
//!
//! For every case: either Portcullis refused it, or the upstream's bytes
//! parse, strictly, into exactly the requests Portcullis forwarded — never
//! a second request hidden in a body, never a body glued to the next
//! request. Each case hides `GET /admin-smuggled` (a path that needs a
//! session, which no case has): the upstream must never see it as a
//! request.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use portcullis::identity::Identity;
use portcullis::session::unix_now;

use crate::support::harness::{self, Portcullis};
use crate::support::mock_google::{self, MockGoogle};
use crate::support::raw_upstream::{self, Mode, RawUpstream};

const SMUGGLED: &str = "GET /admin-smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
}

fn case(name: &'static str, head: &str, body: &str) -> Case {
    let mut bytes = head.replace("{SMUGGLED}", SMUGGLED).into_bytes();
    bytes.extend_from_slice(body.replace("{SMUGGLED}", SMUGGLED).as_bytes());
    Case { name, bytes }
}

/// The corpus. `{H}` in a head is the Host line.
fn corpus(host: &str) -> Vec<Case> {
    let s = SMUGGLED.len();
    let h = format!("Host: {host}\r\n");
    let post = |extra: &str| format!("POST /public/a HTTP/1.1\r\n{h}{extra}\r\n");
    let chunked_body = "0\r\n\r\n{SMUGGLED}";
    let mut v = vec![
        case(
            "CL.TE",
            &post(&format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                5 + s
            )),
            chunked_body,
        ),
        case(
            "TE.CL",
            &post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"),
            &format!("{:x}\r\n{{SMUGGLED}}\r\n0\r\n\r\n", s),
        ),
        case(
            "TE.TE xchunked",
            &post(&format!(
                "Transfer-Encoding: xchunked\r\nContent-Length: {}\r\n",
                5 + s
            )),
            chunked_body,
        ),
        case(
            "TE leading space",
            &post("Transfer-Encoding:  chunked\r\nContent-Length: 5\r\n"),
            chunked_body,
        ),
        case(
            "TE chunked, identity",
            &post("Transfer-Encoding: chunked, identity\r\n"),
            chunked_body,
        ),
        case(
            "TE identity, chunked",
            &post("Transfer-Encoding: identity, chunked\r\n"),
            chunked_body,
        ),
        case(
            "TE twice (chunked, identity)",
            &post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
            chunked_body,
        ),
        case(
            "TE with tab",
            &post("Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n"),
            chunked_body,
        ),
        case(
            "TE obs-fold",
            &post("Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n"),
            chunked_body,
        ),
        case(
            "TE space before colon",
            &post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n"),
            chunked_body,
        ),
        case(
            "TE upper case",
            &post("Transfer-Encoding: CHUNKED\r\n"),
            chunked_body,
        ),
        case(
            "TE with underscore",
            &post("Transfer_Encoding: chunked\r\nContent-Length: 5\r\n"),
            chunked_body,
        ),
        case(
            "duplicate CL, different",
            &post(&format!(
                "Content-Length: 5\r\nContent-Length: {}\r\n",
                5 + s
            )),
            "hello{SMUGGLED}",
        ),
        case(
            "CL list",
            &post(&format!("Content-Length: 5, {}\r\n", 5 + s)),
            "hello{SMUGGLED}",
        ),
        case(
            "CL signed +",
            &post("Content-Length: +5\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "CL negative",
            &post("Content-Length: -1\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "CL hex",
            &post("Content-Length: 0x5\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "CL overflow",
            &post("Content-Length: 99999999999999999999999\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "CL space before colon",
            &post("Content-Length : 5\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "bare LF line endings",
            &format!(
                "POST /public/a HTTP/1.1\n{}Content-Length: 5\n\n",
                h.replace("\r\n", "\n")
            ),
            "hello{SMUGGLED}",
        ),
        case(
            "chunk-size overflow",
            &post("Transfer-Encoding: chunked\r\n"),
            "ffffffffffffffff1\r\nhello\r\n0\r\n\r\n{SMUGGLED}",
        ),
        case(
            "chunk extension",
            &post("Transfer-Encoding: chunked\r\n"),
            "5;ext=\"x\"\r\nhello\r\n0\r\n\r\n{SMUGGLED}",
        ),
        case(
            "chunk size with 0x",
            &post("Transfer-Encoding: chunked\r\n"),
            "0x5\r\nhello\r\n0\r\n\r\n{SMUGGLED}",
        ),
        case(
            "chunk without CRLF after data",
            &post("Transfer-Encoding: chunked\r\n"),
            "5\r\nhelloXX0\r\n\r\n{SMUGGLED}",
        ),
        case(
            "Expect 100-continue",
            &post("Expect: 100-continue\r\nContent-Length: 5\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "HTTP/1.0 keep-alive then a pipelined request",
            &format!(
                "POST /public/a HTTP/1.0\r\n{h}Connection: keep-alive\r\nContent-Length: 5\r\n\r\n"
            ),
            "hello{SMUGGLED}",
        ),
        case(
            "TE on HTTP/1.0",
            &format!("POST /public/a HTTP/1.0\r\n{h}Transfer-Encoding: chunked\r\n\r\n"),
            chunked_body,
        ),
        case(
            "pipelined after a body",
            &post("Content-Length: 5\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "GET with a body",
            &format!("GET /public/a HTTP/1.1\r\n{h}Content-Length: {s}\r\n\r\n"),
            "{SMUGGLED}",
        ),
        case(
            "body longer than Content-Length",
            &post("Content-Length: 3\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "NUL in a header",
            &post("X-Note: a\0b\r\nContent-Length: 5\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "CR alone in a header",
            &post("X-Note: a\rb\r\nContent-Length: 5\r\n"),
            "hello{SMUGGLED}",
        ),
        case(
            "header without a colon",
            &post("Transfer-Encoding chunked\r\nContent-Length: 5\r\n"),
            "hello{SMUGGLED}",
        ),
    ];
    // Unframed body on HTTP/1.1: no length at all (a request without
    // framing has no body; the rest is the next request).
    v.push(case("no framing", &post(""), "{SMUGGLED}"));
    v
}

/// A strict HTTP/1.1 request parser: CRLF lines, one framing header,
/// decimal Content-Length, exactly `chunked`. The upstream's bytes on each
/// connection must parse with it into whole requests, except that the
/// last one may be cut short (the proxy aborted it and closed the
/// connection: nothing can follow it).
struct Parsed {
    heads: Vec<String>,
    aborted: bool,
}

enum Bad {
    /// The bytes ran out inside a request.
    Truncated,
    /// Bytes that are not a well-framed request.
    Malformed(String),
}

fn parse_strictly(bytes: &[u8]) -> Result<Parsed, String> {
    let mut heads = Vec::new();
    match parse_requests(bytes, &mut heads) {
        Ok(()) => Ok(Parsed {
            heads,
            aborted: false,
        }),
        Err(Bad::Truncated) => Ok(Parsed {
            heads,
            aborted: true,
        }),
        Err(Bad::Malformed(e)) => Err(e),
    }
}

fn malformed<T>(e: impl Into<String>) -> Result<T, Bad> {
    Err(Bad::Malformed(e.into()))
}

fn parse_requests(mut bytes: &[u8], heads: &mut Vec<String>) -> Result<(), Bad> {
    while !bytes.is_empty() {
        let end = find(bytes, b"\r\n\r\n").ok_or(Bad::Truncated)?;
        let Ok(head) = std::str::from_utf8(&bytes[..end]) else {
            return malformed("head not UTF-8");
        };
        if head
            .split("\r\n")
            .any(|l| l.contains('\n') || l.contains('\r'))
        {
            return malformed(format!("bare CR or LF in head {head:?}"));
        }
        bytes = &bytes[end + 4..];
        let mut lengths = Vec::new();
        let mut encodings = Vec::new();
        for line in head.split("\r\n").skip(1) {
            if line.starts_with([' ', '\t']) {
                return malformed(format!("obs-fold in {head:?}"));
            }
            let Some((name, value)) = line.split_once(':') else {
                return malformed(format!("header without colon: {line:?}"));
            };
            if name.bytes().any(|b| b == b' ' || b == b'\t') {
                return malformed(format!("space in header name {name:?}"));
            }
            if name.eq_ignore_ascii_case("content-length") {
                lengths.push(value.trim().to_owned());
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                encodings.push(value.trim().to_owned());
            }
        }
        match (lengths.as_slice(), encodings.as_slice()) {
            ([], []) => {}
            ([n], []) => {
                if n.is_empty() || n.len() > 15 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return malformed(format!("Content-Length {n:?}"));
                }
                let n: usize = n.parse().unwrap_or(usize::MAX);
                if bytes.len() < n {
                    return Err(Bad::Truncated);
                }
                bytes = &bytes[n..];
            }
            ([], [te]) if te.eq_ignore_ascii_case("chunked") => loop {
                let line_end = find(bytes, b"\r\n").ok_or(Bad::Truncated)?;
                let size = String::from_utf8_lossy(&bytes[..line_end]).into_owned();
                let size = size.split(';').next().unwrap_or_default();
                if size.is_empty()
                    || size.len() > 15
                    || !size.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return malformed(format!("chunk size {size:?}"));
                }
                let n = usize::from_str_radix(size, 16).unwrap_or(usize::MAX);
                bytes = &bytes[line_end + 2..];
                if n == 0 {
                    // No trailers are expected from Portcullis.
                    if bytes.len() < 2 {
                        return Err(Bad::Truncated);
                    }
                    if !bytes.starts_with(b"\r\n") {
                        return malformed("chunked body without its final CRLF");
                    }
                    bytes = &bytes[2..];
                    break;
                }
                if bytes.len() < n + 2 {
                    return Err(Bad::Truncated);
                }
                if &bytes[n..n + 2] != b"\r\n" {
                    return malformed("chunk data without CRLF");
                }
                bytes = &bytes[n + 2..];
            },
            _ => {
                return malformed(format!(
                    "ambiguous framing: {lengths:?} {encodings:?} in {head:?}"
                ))
            }
        }
        heads.push(head.to_owned());
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Setup {
    _google: MockGoogle,
    up: RawUpstream,
    proxy: Portcullis,
    secret: String,
}

async fn setup(mode: Mode) -> Setup {
    let google = mock_google::start("smuggle-client", "smuggle-secret").await;
    let up = raw_upstream::start_with(mode).await;
    let secret = harness::session_secret();
    let proxy = harness::start(|port| {
        harness::google_config(
            port,
            &up.base_url,
            &google,
            &secret,
            "[access]\nskip_auth = [\"^/public/\"]\n",
        )
    })
    .await;
    Setup {
        _google: google,
        up,
        proxy,
        secret,
    }
}

/// Writes `bytes` and reads what the proxy answers until it closes the
/// connection or has said nothing more for a second. (The assertions are
/// on what the upstream received, checked after every case has settled;
/// this wait only decides when a case has nothing more to say. Half-closing
/// instead would make the proxy abort: real clients do not do that.)
async fn exchange(authority: &str, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        assert!(tokio::time::Instant::now() < give_up, "endless answer");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.")
        .filter_map(|(i, _)| answer[i..].split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Sends the whole corpus to `authority`, all cases at once, each on its
/// own connection; returns one report line per case.
async fn send_corpus(authority: &str) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in corpus(authority) {
        let authority = authority.to_owned();
        tasks.spawn(async move {
            let answer = exchange(&authority, &c.bytes).await;
            format!("{:<45} answers {:?}", c.name, statuses(&answer))
        });
    }
    let mut report = Vec::new();
    while let Some(line) = tasks.join_next().await {
        report.push(line.expect("a case panicked"));
    }
    report.sort();
    report
}

/// The property: no request to `/admin-smuggled` reached the upstream, and
/// every connection's bytes parse strictly into whole requests (the last
/// may be cut short by an abort). Returns (whole, aborted).
fn check_upstream(up: &RawUpstream) -> Result<(usize, usize), String> {
    if let Some(r) = up
        .requests()
        .iter()
        .find(|r| r.target() == "/admin-smuggled")
    {
        return Err(format!(
            "a hidden request reached the upstream:\n{}",
            r.head
        ));
    }
    let (mut whole, mut aborted) = (0, 0);
    for stream in up.streams() {
        let p = parse_strictly(&stream).map_err(|e| {
            format!(
                "the upstream got bytes that do not parse strictly ({e}):\n{}",
                String::from_utf8_lossy(&stream)
            )
        })?;
        if let Some(head) = p.heads.iter().find(|h| h.contains("/admin-smuggled")) {
            return Err(format!("a hidden request reached the upstream:\n{head}"));
        }
        whole += p.heads.len();
        aborted += usize::from(p.aborted);
    }
    Ok((whole, aborted))
}

#[tokio::test]
async fn smuggling_corpus_never_hides_a_request_from_the_gate() {
    let s = setup(Mode::KeepAlive).await;
    let authority = s.proxy.url("").trim_start_matches("http://").to_owned();
    let report = send_corpus(&authority).await;
    eprintln!(
        "smuggling corpus through Portcullis:\n  {}",
        report.join("\n  ")
    );
    let (whole, aborted) =
        check_upstream(&s.up).unwrap_or_else(|e| panic!("{e}\n\nreport:\n{}", report.join("\n")));
    eprintln!("upstream: {whole} whole requests, {aborted} aborted ones");
    assert!(whole > 0, "nothing was forwarded at all: {report:#?}");
    // Every whole request the upstream parsed is one Portcullis answered
    // for (its own reading of the boundaries): none more.
    assert!(whole <= s.up.requests().len());
}

/// The check above can fail: the same corpus through a relay that copies
/// bytes without reading HTTP (what a proxy without framing checks
/// amounts to) is caught.
#[tokio::test]
async fn the_smuggling_check_catches_a_relay_that_does_not_parse() {
    let up = raw_upstream::start_with(Mode::KeepAlive).await;
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = relay.local_addr().unwrap().to_string();
    let target = up.addr;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = relay.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    send_corpus(&authority).await;
    assert!(
        check_upstream(&up).is_err(),
        "a naive relay passed the check"
    );
}

fn mint(secret: &str, subject: &str) -> String {
    let id = Identity {
        provider: "google".into(),
        subject: subject.into(),
        email: None,
        name: None,
        login: None,
        picture: None,
        groups: Vec::new(),
    };
    harness::session_cookie(secret, &id, unix_now() + 3600)
}

/// 100 requests written at once on one connection get 100 answers in
/// order, each proxied with its own identity.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_their_own_identity() {
    let s = setup(Mode::KeepAlive).await;
    let authority = s.proxy.url("").trim_start_matches("http://").to_owned();
    let mut bytes = Vec::new();
    for i in 0..100 {
        let cookie = mint(&s.secret, &format!("user{i}"));
        bytes.extend_from_slice(
            format!("GET /app/{i} HTTP/1.1\r\nHost: {authority}\r\nCookie: {cookie}\r\n\r\n")
                .as_bytes(),
        );
    }
    let answer = exchange(&authority, &bytes).await;
    let targets: Vec<&str> = answer
        .lines()
        .filter_map(|l| {
            l.strip_prefix("X-Target: ")
                .or_else(|| l.strip_prefix("x-target: "))
        })
        .map(str::trim)
        .collect();
    let users: Vec<&str> = answer
        .lines()
        .filter_map(|l| {
            l.strip_prefix("X-Seen-User: ")
                .or_else(|| l.strip_prefix("x-seen-user: "))
        })
        .map(str::trim)
        .collect();
    assert_eq!(targets.len(), 100, "{answer}");
    for i in 0..100 {
        assert_eq!(targets[i], format!("/app/{i}"));
        assert_eq!(users[i], format!("google:user{i}"));
    }
}

/// An upstream that closes idle connections (without saying so) never
/// makes a request fail.
#[tokio::test]
async fn an_upstream_closing_idle_connections_causes_no_failed_request() {
    let s = setup(Mode::CloseSilently).await;
    let cookie = mint(&s.secret, "pool");
    let client = harness::client();
    let mut failed = Vec::new();
    for i in 0..30 {
        let resp = client
            .get(s.proxy.url(&format!("/app/{i}")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            failed.push((i, resp.status()));
        }
    }
    assert!(failed.is_empty(), "failed requests: {failed:?}");
}
