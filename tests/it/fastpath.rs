//! The fast HTTP/1 loop (src/fast): the defences pingora-proxy gave the old
//! path, each seen from outside — hop-by-hop headers stop at Portcullis in
//! both directions, broken upstream framing is a 502, an answer of our own
//! to a request with an unread body closes the connection, slow-header
//! clients are closed, and idle keep-alive connections hold little memory.
//! (Request smuggling, pipelining and the upstream pool: smuggling.rs and
//! proxying.rs.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::harness::{self, Portcullis};

/// An upstream that answers every request with `response` (as bytes) and
/// records every byte it received.
struct FixedUpstream {
    url: String,
    received: Arc<Mutex<Vec<u8>>>,
}

async fn fixed_upstream(response: &'static [u8]) -> FixedUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            head.extend_from_slice(&buf[..n]);
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                    }
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        head.clear();
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    FixedUpstream { url, received }
}

/// Portcullis with everything public (no sign-in needed) in front of `upstream`.
async fn public_proxy(upstream: &str, server_extra: &str) -> Portcullis {
    let secret = harness::session_secret();
    harness::start(|port| {
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
{server_extra}
[upstream]
url = "{upstream}"
[session]
secret = "{secret}"
[providers.google]
client_id = "c"
client_secret = "s"
issuer = "http://127.0.0.1:9"
[access]
skip_auth = ["^/"]
"#
        )
    })
    .await
}

/// Writes `bytes`, reads until the proxy closes the connection (bounded).
async fn until_closed(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("the proxy closed the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn authority(proxy: &Portcullis) -> String {
    proxy
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test]
async fn hop_by_hop_headers_stop_at_portcullis_in_both_directions() {
    let up = fixed_upstream(
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let proxy = public_proxy(&up.url, "").await;
    let addr = authority(&proxy);
    let answer = until_closed(
        &addr,
        format!(
            "GET /a HTTP/1.1\r\nHost: {addr}\r\nConnection: X-Named, close\r\nX-Named: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nX-Client-Kept: yes\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(lower.contains("x-kept: yes"), "{answer}");
    for gone in ["x-secret-hop", "keep-alive:", "proxy-connection"] {
        assert!(
            !lower.contains(gone),
            "{gone} reached the client:\n{answer}"
        );
    }
    let sent = String::from_utf8_lossy(&up.received.lock().unwrap()).to_ascii_lowercase();
    assert!(sent.contains("x-client-kept: yes"), "{sent}");
    for gone in [
        "x-named",
        "keep-alive",
        "\r\nte:",
        "proxy-connection",
        "trailer:",
        "connection:",
    ] {
        assert!(
            !sent.contains(gone),
            "{gone:?} reached the upstream:\n{sent}"
        );
    }
    // A Connection header that is not a list of tokens, and CONNECT.
    let answer = until_closed(
        &addr,
        format!("GET /b HTTP/1.1\r\nHost: {addr}\r\nConnection: close x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = until_closed(
        &addr,
        format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let sent = String::from_utf8_lossy(&up.received.lock().unwrap()).to_string();
    assert!(!sent.contains("/b ") && !sent.contains("CONNECT"), "{sent}");
}

#[tokio::test]
async fn an_upstream_response_with_conflicting_lengths_is_a_502() {
    let up =
        fixed_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nok")
            .await;
    let proxy = public_proxy(&up.url, "").await;
    let addr = authority(&proxy);
    let answer = until_closed(
        &addr,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}

/// A request Portcullis answers itself (here: a sign-in redirect) whose body
/// was not read: the connection closes after the answer, so the body is
/// never taken for a second request.
#[tokio::test]
async fn an_unread_body_is_never_read_as_the_next_request() {
    let up = fixed_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let secret = harness::session_secret();
    let proxy = harness::start(|port| {
        format!(
            "{}\n[providers.google]\nclient_id = \"c\"\nclient_secret = \"s\"\nissuer = \"http://127.0.0.1:9\"\n[access]\nskip_auth = [\"^/public/\"]\n",
            harness::base_config(port, &up.url, &secret)
        )
    })
    .await;
    let addr = authority(&proxy);
    let inner = format!("GET /public/smuggled HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let answer = until_closed(
        &addr,
        format!(
            "POST /private HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(
        up.received.lock().unwrap().is_empty(),
        "the body reached the upstream"
    );
}

#[tokio::test]
async fn a_client_that_stops_mid_header_is_closed_after_the_header_timeout() {
    let up = fixed_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let proxy = public_proxy(&up.url, "header_timeout = \"1s\"\nidle_timeout = \"2s\"\n").await;
    let addr = authority(&proxy);
    // Half a head, then silence: 408 and the connection closes.
    let answer = until_closed(
        &addr,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    // Nothing at all: closed without an answer.
    assert_eq!(until_closed(&addr, b"").await, "");
    // An idle keep-alive connection is closed after idle_timeout.
    let answer = until_closed(
        &addr,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer:?}"
    );
    assert!(up
        .received
        .lock()
        .unwrap()
        .starts_with(b"GET / HTTP/1.1\r\n"));
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Raises this process's open-file limit (the proxy inherits it).
fn more_files(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// 1,000 idle keep-alive connections (each after one proxied request) add
/// less than 6 MB to the proxy: an idle connection holds a small future
/// and no request buffers. (The bench reports the figure for 10,000.)
#[tokio::test]
async fn idle_keep_alive_connections_hold_little_memory() {
    const N: usize = 1000;
    more_files(8192);
    let up = fixed_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let proxy = public_proxy(&up.url, "threads = 1\n").await;
    let addr = authority(&proxy);
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // Warm up: one connection, so that lazily built state is there before measuring.
    let mut warm = TcpStream::connect(&addr).await.expect("connect");
    warm.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 1024];
    let _ = warm.read(&mut buf).await.expect("read");
    let before = rss_kb(proxy.pid());
    let mut open = Vec::with_capacity(N);
    for _ in 0..N {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).ends_with("ok") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        open.push(s);
    }
    let after = rss_kb(proxy.pid());
    let per_conn = (after.saturating_sub(before)) * 1024 / N as u64;
    eprintln!(
        "RSS {before} kB -> {after} kB with {N} idle keep-alive connections: {per_conn} bytes each"
    );
    assert!(
        after.saturating_sub(before) < 6 * 1024,
        "{N} idle connections took {} kB",
        after - before
    );
    drop(open);
}

/// Graceful stop (SIGTERM): no new connections, but a request in flight is
/// finished and answered before the process exits.
#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish() {
    let w = crate::common::World::start("").await;
    let mut p = harness::start(|port| {
        harness::google_config(
            port,
            &w.upstream.base_url,
            &w.google,
            &w.secret,
            "[access]\nskip_auth = [\"^/delay/\"]",
        )
        .replacen("[server]\n", "[server]\nshutdown_grace = \"1s\"\n", 1)
    })
    .await;
    let before = w.upstream.hits();
    let slow = tokio::spawn(harness::client().get(p.url("/delay/1500")).send());
    // The upstream has the request: it is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.upstream.hits() == before {
        assert!(tokio::time::Instant::now() < deadline, "never forwarded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(p.stop_with(libc::SIGTERM).await, "{}", p.logs());
    let resp = slow.await.unwrap().expect("answered, not cut off");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    // And nothing listens any more.
    assert!(harness::client().get(p.url("/")).send().await.is_err());
}
