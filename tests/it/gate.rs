//! The request the gate judges is the request the upstream gets (SPEC.md,
//! additions of 2026-11-29; SECURITY.md rows 18-22): request-targets,
//! upgrades, override and framing headers, WebSocket tunnels, and what the
//! logs say about it all. The upstream here records raw bytes.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

use portcullis::identity::Identity;
use portcullis::session::unix_now;

use crate::support::harness::{self, Portcullis};
use crate::support::mock_google::{self, MockGoogle};
use crate::support::raw_upstream::{self, RawUpstream};
use crate::support::upstream;

const RULES: &str = "[access]\nskip_auth = [\"^/public/\", \"GET ^/$\"]\n";

struct Gate {
    _google: MockGoogle,
    up: RawUpstream,
    proxy: Portcullis,
    secret: String,
}

impl Gate {
    async fn start() -> Gate {
        let google = mock_google::start("gate-client", "gate-secret").await;
        let up = raw_upstream::start().await;
        let secret = harness::session_secret();
        let proxy = harness::start(|port| {
            harness::google_config(port, &up.base_url, &google, &secret, RULES)
        })
        .await;
        Gate {
            _google: google,
            up,
            proxy,
            secret,
        }
    }

    fn authority(&self) -> String {
        self.proxy.url("").trim_start_matches("http://").to_owned()
    }

    /// A session cookie (`name=value`) for alice, valid until `expires_at`.
    fn session_until(&self, expires_at: u64) -> String {
        mint(&self.secret, expires_at)
    }

    fn session(&self) -> String {
        self.session_until(unix_now() + 3600)
    }

    /// Sends `head` (request line and headers, no final empty line) plus
    /// `body`, one request on its own connection; returns the answer.
    async fn raw(&self, head: &str, body: &[u8]) -> Answer {
        raw_exchange(&self.authority(), head, body).await
    }

    async fn get(&self, target: &str, headers: &str) -> Answer {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{headers}",
            self.authority()
        );
        self.raw(&head, b"").await
    }
}

/// Alice's session cookie, valid until `expires_at`.
fn mint(secret: &str, expires_at: u64) -> String {
    let id = Identity {
        provider: "google".into(),
        subject: "1001".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice".into()),
        login: None,
        picture: None,
        groups: Vec::new(),
    };
    harness::session_cookie(secret, &id, expires_at)
}

#[derive(Debug)]
struct Answer {
    status: u16,
    text: String,
}

async fn raw_exchange(authority: &str, head: &str, body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    let mut req = head.to_owned();
    if !req.ends_with("\r\n") {
        req.push_str("\r\n");
    }
    if !req.to_ascii_lowercase().contains("\r\nconnection:") {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let read = tokio::time::timeout(Duration::from_secs(20), read_response(&mut stream)).await;
    let text = read.unwrap_or_else(|_| panic!("no complete answer to {head:?} within 20 s"));
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer { status, text }
}

/// One response: the head, then `Content-Length` bytes (or up to EOF when
/// there is none), so that a kept-alive connection does not make it wait.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| buf.len() >= end + 4 + len) {
                return text;
            }
        }
        if n == 0 {
            return text;
        }
    }
}

/// SECURITY.md row 19: non-origin request-targets are answered 400 and
/// never forwarded; absolute-form for this very host is forwarded as the
/// origin-form path it names.
#[tokio::test]
async fn security_19_non_origin_targets_are_refused() {
    let g = Gate::start().await;
    let own = format!("http://{}", g.authority());
    for target in [
        "x:/admin",
        "admin",
        "admin/x",
        "*",
        "http://evil.example/admin",
        "http://evil.example/public/x",
        "https://other.example:443/",
        "http://user@127.0.0.1/public/x",
    ] {
        let a = g.get(target, "").await;
        assert_eq!(a.status, 400, "{target}: {}", a.text);
    }
    // The rule "GET ^/$" must not let `x:/admin` through as `/` either
    // with a session-less HEAD or an OPTIONS.
    let a = g
        .raw(
            &format!("OPTIONS x:/admin HTTP/1.1\r\nHost: {}", g.authority()),
            b"",
        )
        .await;
    assert_eq!(a.status, 400);
    let a = g
        .raw(
            &format!("CONNECT {0} HTTP/1.1\r\nHost: {0}", g.authority()),
            b"",
        )
        .await;
    assert!(a.status == 400 || a.status == 405, "CONNECT: {}", a.text);
    assert!(g.up.requests().is_empty(), "{:#?}", g.up.requests());

    // Absolute-form naming this host: judged and forwarded as its path.
    let a = g.get(&format!("{own}/public/x?q=1"), "").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(g.up.requests().last().unwrap().target(), "/public/x?q=1");
    // ... and judged as that path: this one needs a session.
    let a = g.get(&format!("{own}/admin"), "").await;
    assert_eq!(a.status, 401);
    // `OPTIONS *` is no path: no skip rule opens it.
    let a = g
        .raw(
            &format!("OPTIONS * HTTP/1.1\r\nHost: {}", g.authority()),
            b"",
        )
        .await;
    assert_eq!(a.status, 401, "{}", a.text);
    assert_eq!(g.up.requests().len(), 1);
}

/// SECURITY.md row 18: what the rules judged is byte for byte what the
/// upstream receives; forms that frameworks read differently are refused.
#[tokio::test]
async fn security_18_the_upstream_gets_exactly_the_judged_target() {
    let g = Gate::start().await;
    for (sent, forwarded) in [
        ("/public/a?x=/admin", "/public/a?x=/admin"),
        ("//public//a", "/public/a"),
        ("/%70ublic/a%20b", "/public/a%20b"),
        ("/public/%c3%a9", "/public/%C3%A9"),
        ("/", "/"),
    ] {
        let a = g.get(sent, "").await;
        assert_eq!(a.status, 200, "{sent}: {}", a.text);
        assert_eq!(
            g.up.requests().last().unwrap().target(),
            forwarded,
            "{sent}"
        );
    }
    let before = g.up.requests().len();
    for (target, status) in [
        ("/admin/../public/x", 400),
        ("/public/..;/admin", 400),
        ("/public/x;.png", 400),
        ("/public/%2e%2e/admin", 400),
        ("/public/.%2E/admin", 400),
        ("/public%2f..%2fadmin", 400),
        ("/public/..%5cadmin", 400),
        ("/public\\..\\admin", 400),
        ("/public/%252e%252e/admin", 400),
        ("/public/%c0%ae%c0%ae/admin", 400),
        ("/public/%00", 400),
        ("/admin?/public/", 401),
        ("/admin", 401),
        ("/PUBLIC/x", 401),
    ] {
        let a = g.get(target, "").await;
        assert_eq!(a.status, status, "{target}: {}", a.text);
    }
    let long = format!("/public/{}", "a".repeat(20_000));
    let a = g.get(&long, "").await;
    assert!(
        a.status == 414 || a.status == 400 || a.status == 431,
        "{}",
        a.status
    );
    assert_eq!(g.up.requests().len(), before, "{:#?}", g.up.requests());

    // The access log names the judged (canonical) path.
    g.get("//public//logged", "").await;
    g.proxy.wait_for_log("/public/logged").await;
    assert!(!g.proxy.logs().contains("//public//logged"));
}

/// SECURITY.md row 20 (h2c smuggling): only `GET` + `Upgrade: websocket`
/// is tunnelled; an h2c-capable upstream is never asked to upgrade.
#[tokio::test]
async fn security_20_h2c_is_never_tunnelled() {
    let g = Gate::start().await;
    let cookie = g.session();
    let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    for (target, extra) in [
        ("/app", format!("Cookie: {cookie}\r\n{h2c}")),
        ("/public/x", h2c.to_owned()),
        (
            "/app",
            format!("Cookie: {cookie}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c, websocket\r\n"),
        ),
        (
            "/app",
            format!("Cookie: {cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n"),
        ),
    ] {
        let a = g.get(target, &extra).await;
        assert_eq!(a.status, 200, "{target} {extra:?}: {}", a.text);
        assert!(a.text.ends_with("raw-upstream"), "{}", a.text);
    }
    assert_eq!(g.up.upgrades(), 0, "the upstream was asked to upgrade");
    for r in g.up.requests() {
        assert!(r.header("upgrade").is_empty(), "{}", r.head);
        assert!(r.header("http2-settings").is_empty(), "{}", r.head);
        for c in r.header("connection") {
            assert!(!c.to_ascii_lowercase().contains("upgrade"), "{}", r.head);
            assert!(!c.to_ascii_lowercase().contains("http2"), "{}", r.head);
        }
    }
    assert_eq!(g.up.requests()[0].header("x-user"), ["google:1001"]);

    // A POST asking for a WebSocket is a plain POST: its body arrives and
    // it gets an answer (it is not left hanging in a tunnel).
    let head = format!(
        "POST /app HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5",
        g.authority()
    );
    let a = g.raw(&head, b"hello").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let last = g.up.requests().last().cloned().unwrap();
    assert_eq!(last.body, b"hello");
    assert!(last.header("upgrade").is_empty(), "{}", last.head);
}

/// SECURITY.md rows 20 and 6: a WebSocket handshake reaches the upstream
/// built from an allow-list, and the tunnel still works.
#[tokio::test]
async fn websocket_handshake_carries_only_allowed_headers() {
    let google = mock_google::start("ws-client", "ws-secret").await;
    let up = upstream::start().await;
    let secret = harness::session_secret();
    let proxy =
        harness::start(|port| harness::google_config(port, &up.base_url, &google, &secret, RULES))
            .await;
    let ws_url = proxy.url("/ws").replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert("cookie", mint(&secret, unix_now() + 3600).parse().unwrap());
    h.insert("origin", "http://app.example".parse().unwrap());
    h.insert("x-user", "google:attacker".parse().unwrap());
    h.insert("x_user_email", "ceo@example.com".parse().unwrap());
    h.insert(
        "http2-settings",
        "AAMAAABkAARAAAAAAAIAAAAA".parse().unwrap(),
    );
    h.insert("x-original-url", "/admin".parse().unwrap());
    h.insert("x-app-private", "1".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    ws.send(Message::Text("__headers__".into())).await.unwrap();
    let reply = ws.next().await.expect("a reply").expect("a message");
    let headers: serde_json::Value =
        serde_json::from_str(reply.into_text().unwrap().as_str()).unwrap();
    let text = headers.to_string().to_ascii_lowercase();
    for gone in [
        "http2-settings",
        "x-original-url",
        "x-app-private",
        "attacker",
        "ceo@example.com",
        "x_user",
    ] {
        assert!(!text.contains(gone), "{gone} reached the upstream: {text}");
    }
    for kept in [
        "google:1001",
        "alice@example.com",
        "sec-websocket-key",
        "http://app.example",
        "x-forwarded-for",
    ] {
        assert!(text.contains(kept), "{kept} missing upstream: {text}");
    }
    ws.send(Message::Text("ping".into())).await.unwrap();
    let echo = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(echo.into_text().unwrap().as_str(), "ping");
    ws.close(None).await.ok();
}

/// A tunnel outlives nothing it should not: it is closed when the session
/// that opened it expires.
#[tokio::test]
async fn a_websocket_tunnel_ends_with_its_session() {
    let google = mock_google::start("ws-client", "ws-secret").await;
    let up = upstream::start().await;
    let secret = harness::session_secret();
    let proxy =
        harness::start(|port| harness::google_config(port, &up.base_url, &google, &secret, ""))
            .await;
    let ws_url = proxy.url("/ws").replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", mint(&secret, unix_now() + 3).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    ws.send(Message::Text("still here".into())).await.unwrap();
    let echo = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(echo.into_text().unwrap().as_str(), "still here");
    // Nothing more is sent: the next event must be the end of the tunnel,
    // and it must come once the session is over (3 s), not never.
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
    let end = end.expect("the tunnel outlived its session by 30 s");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "unexpected message {end:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    proxy.wait_for_log("upgrade_session_expired").await;
}

/// SECURITY.md row 21: requests passed without a session lose the routing
/// and method override headers; row 6-like: framing headers spelled with
/// `_` never reach the upstream.
#[tokio::test]
async fn security_21_override_and_underscore_framing_headers_are_removed() {
    let g = Gate::start().await;
    let overrides = "X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\nX_Original_URL: /admin\r\n";
    let smuggled = "Transfer_Encoding: chunked\r\nContent_Length: 99\r\nX_Forwarded_For: 10.9.9.9\r\nProxy_Authorization: Basic eA==\r\nX_Custom: kept\r\n";
    let a = g.get("/public/x", &format!("{overrides}{smuggled}")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = g.get("/", overrides).await;
    assert_eq!(a.status, 200, "{}", a.text);
    for r in g.up.requests() {
        for name in r.header_names() {
            let n = name.to_ascii_lowercase().replace('_', "-");
            assert!(
                ![
                    "x-original-url",
                    "x-rewrite-url",
                    "x-http-method-override",
                    "x-http-method",
                    "x-method-override",
                    "transfer-encoding",
                    "content-length",
                    "proxy-authorization"
                ]
                .contains(&n.as_str()),
                "{name} reached the upstream:\n{}",
                r.head
            );
        }
        assert!(!r.head.contains("10.9.9.9"), "{}", r.head);
    }
    assert_eq!(g.up.requests()[0].header("x_custom"), ["kept"]);

    // With a session the app may use its own override headers.
    let cookie = g.session();
    let a = g
        .get("/app", &format!("Cookie: {cookie}\r\nX-HTTP-Method-Override: PATCH\r\nTransfer_Encoding: chunked\r\n"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let last = g.up.requests().last().cloned().unwrap();
    assert_eq!(last.header("x-http-method-override"), ["PATCH"]);
    assert!(last.header("transfer_encoding").is_empty(), "{}", last.head);
}

/// SECURITY.md row 22: no code, state, token or cookie in any log line,
/// and an upstream outage is a few aggregated lines, not one per request.
#[tokio::test]
async fn security_22_logs_carry_no_secrets_and_outages_are_aggregated() {
    let google = mock_google::start("log-client", "log-secret").await;
    // An upstream that is not there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let secret = harness::session_secret();
    let proxy = harness::start(|port| {
        harness::google_config(port, &format!("http://{dead}"), &google, &secret, RULES)
    })
    .await;
    let authority = proxy.url("").trim_start_matches("http://").to_owned();
    let cookie = mint(&secret, unix_now() + 3600);
    const N: usize = 60;
    for i in 0..N {
        let head = format!(
            "GET /public/x?code=SECRETCODE{i}&access_token=TOKENVALUE HTTP/1.1\r\nHost: {authority}\r\nCookie: {cookie}"
        );
        let a = raw_exchange(&authority, &head, b"").await;
        assert_eq!(a.status, 502, "{}", a.text);
    }
    // A callback with a code and a state that match nothing.
    let head = format!(
        "GET /oauth2/callback/google?code=SECRETCODE&state=STATEVALUE123 HTTP/1.1\r\nHost: {authority}"
    );
    assert_eq!(raw_exchange(&authority, &head, b"").await.status, 400);
    // Access lines are written in order: once the callback's is there, all are.
    let logs = proxy.wait_for_log("path=/oauth2/callback/google").await;
    let sealed = cookie.trim_start_matches("_portcullis=");
    for secret_text in ["SECRETCODE", "TOKENVALUE", "STATEVALUE", sealed, &secret] {
        assert!(
            !logs.contains(secret_text),
            "{secret_text} in the logs:\n{logs}"
        );
    }
    let access_lines = logs.lines().filter(|l| l.contains("/public/x")).count();
    assert!(access_lines >= N, "{access_lines} access lines:\n{logs}");
    let error_lines = logs
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("portcullis::access"))
        .count();
    assert!(
        error_lines <= 5,
        "{error_lines} error lines for {N} failed requests:\n{logs}"
    );
    assert!(logs.contains("upstream unreachable"), "{logs}");
}
