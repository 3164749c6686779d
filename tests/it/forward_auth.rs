//! Portcullis as a forward-auth service behind a real nginx, configured with the shipped
//! example `examples/nginx/portcullis.conf` (see `support/nginx.rs`): nginx proxies `/` to the
//! echo upstream after `auth_request /oauth2/auth`, and `/oauth2/` to Portcullis, whose
//! `public_url` is nginx's origin, so the whole sign-in runs through nginx.
//!
//! Portcullis's own `[upstream]` is a second echo upstream that must never be used: every
//! request the app sees came through nginx.

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::common::{
    json, location, picker_link, upstream_header, World, CLIENT_ID, CLIENT_SECRET,
};
use crate::support::harness::{self, Browser, Portcullis};
use crate::support::mock_google::{self, MockGoogle, TestUser};
use crate::support::nginx::{self, Nginx};
use crate::support::upstream::{self, Upstream};

const ALICE: &str = "google:110169484474386276334";

/// nginx in front of Portcullis (forward-auth) and the app.
struct Front {
    google: MockGoogle,
    /// The app behind nginx.
    app: Upstream,
    /// Portcullis's own `[upstream]`: must stay untouched.
    unused: Upstream,
    /// `None` once stopped.
    portcullis: Option<Portcullis>,
    nginx: Nginx,
}

impl Front {
    /// Google auto-approves Alice; `extra` is appended to Portcullis's config.
    async fn start(extra: &str) -> Front {
        Self::start_with(extra, &harness::session_secret(), TestUser::alice()).await
    }

    async fn start_with(extra: &str, secret: &str, user: TestUser) -> Front {
        Self::start_full("", extra, secret, user).await
    }

    /// As [`Front::start`], with `server_extra` added to Portcullis's `[server]` table.
    async fn start_full(server_extra: &str, extra: &str, secret: &str, user: TestUser) -> Front {
        let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
        google.set_auto_approve(Some(user));
        let app = upstream::start().await;
        let unused = upstream::start().await;
        let mut last_logs = String::new();
        for _ in 0..3 {
            // nginx's port first: Portcullis's public_url (and so its callback URL) is nginx.
            let port = harness::free_port();
            let public_url = format!("http://127.0.0.1:{port}");
            // Only callbacks to nginx's origin are accepted by the mock from now on.
            google.register_redirect_uri(&format!("{public_url}/oauth2/callback/google"));
            let portcullis = harness::start(|p| {
                let config = harness::google_config(p, &unused.base_url, &google, secret, extra);
                let own = format!("public_url = \"http://127.0.0.1:{p}\"");
                assert!(config.contains(&own), "unexpected config:\n{config}");
                config.replace(
                    &own,
                    &format!("public_url = \"{public_url}\"\n{server_extra}"),
                )
            })
            .await;
            if portcullis.port == port {
                // Portcullis was given the port reserved for nginx: start over.
                continue;
            }
            let portcullis_addr = format!("127.0.0.1:{}", portcullis.port);
            match nginx::start_at(port, &portcullis_addr, &app.addr.to_string()).await {
                Ok(nginx) => {
                    return Front {
                        google,
                        app,
                        unused,
                        portcullis: Some(portcullis),
                        nginx,
                    }
                }
                Err(logs) => last_logs = logs,
            }
        }
        panic!("nginx could not bind a port in 3 attempts; last logs:\n{last_logs}");
    }

    /// nginx's URL for `path`.
    fn url(&self, path: &str) -> String {
        self.nginx.url(path)
    }

    fn portcullis(&self) -> &Portcullis {
        self.portcullis.as_ref().expect("portcullis was stopped")
    }

    /// The sign-in as a person does it, all through nginx: protected path -> nginx's redirect
    /// -> picker -> button -> provider -> callback (at nginx) -> back at `path`.
    async fn sign_in(&self, b: &mut Browser, path: &str) -> reqwest::Response {
        let picker = b.follow(&self.url(path), 3).await;
        assert_eq!(picker.status(), StatusCode::OK, "{:#?}", b.hops());
        assert_eq!(picker.url().path(), "/oauth2/sign_in");
        assert_eq!(picker.url().port(), Some(self.nginx.port));
        let html = picker.text().await.expect("picker body");
        let link = picker_link(&html, "google");
        b.follow(&self.url(&link), 6).await
    }

    /// A browser signed in through nginx, with the app's echo of `path`.
    async fn signed_in(&self, path: &str) -> (Browser, Value) {
        let mut b = Browser::new();
        let resp = self.sign_in(&mut b, path).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "hops: {:#?}\nnginx:\n{}\nportcullis:\n{}",
            b.hops(),
            self.nginx.logs(),
            self.portcullis().logs()
        );
        (b, json(resp).await)
    }

    /// The `Cookie` header `b` sends to nginx.
    fn cookies(&self, b: &Browser) -> String {
        b.cookie_header(&Url::parse(&self.url("/")).unwrap())
            .expect("session cookie")
    }

    /// Portcullis never proxied anything to its own upstream.
    fn assert_portcullis_proxied_nothing(&self) {
        assert_eq!(
            self.unused.hits(),
            0,
            "Portcullis proxied app traffic: {:#?}",
            self.unused.requests()
        );
    }
}

/// The `rd` of a picker (or start) link, decoded.
fn rd_of(link: &str) -> String {
    let url = Url::parse("http://x.invalid").unwrap().join(link).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no rd in {link}"))
}

/// Sends `METHOD raw_path` with `headers` exactly as given (no normalisation of the path or
/// of header names, unlike reqwest) and returns the status, the head and the body.
async fn raw_request(
    base_url: &str,
    method: &str,
    raw_path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let authority = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    let mut req =
        format!("{method} {raw_path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut buf),
    )
    .await
    .expect("no answer within 20 s")
    .expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, head, buf[split + 4..].to_vec())
}

/// The value of header `name` in a raw response head.
fn head_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every identity header (any spelling) in an echo, as `name: value`.
fn identity_headers(echo: &Value) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|pair| {
            let name = pair[0].as_str()?;
            let value = pair[1].as_str()?;
            let normal = name.to_ascii_lowercase().replace('_', "-");
            normal
                .starts_with("x-user")
                .then(|| format!("{name}: {value}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (a) no session

#[tokio::test]
async fn without_a_session_nginx_redirects_to_the_sign_in_page_and_the_app_sees_nothing() {
    nginx::require!();
    let f = Front::start("").await;
    let mut b = Browser::new();

    let resp = b.get(&f.url("/dashboard?x=1")).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "{}", f.nginx.logs());
    // nginx's own redirect (`return 302 /oauth2/sign_in?rd=$request_uri`), relative
    // (absolute_redirect off), with the original path and query unescaped.
    assert_eq!(location(&resp), "/oauth2/sign_in?rd=/dashboard?x=1");

    // The picker, served by Portcullis through nginx, keeps the return path.
    let picker = b.follow_redirects(resp, 1).await;
    assert_eq!(picker.status(), StatusCode::OK);
    assert_eq!(picker.url().port(), Some(f.nginx.port));
    let link = picker_link(&picker.text().await.unwrap(), "google");
    assert_eq!(rd_of(&link), "/dashboard?x=1");

    // Other methods and API-style requests get the same redirect (see the example's notes on
    // API paths), and none of them reaches the app.
    for (method, accept) in [
        (Method::POST, "text/html"),
        (Method::GET, "application/json"),
        (Method::DELETE, "*/*"),
        (Method::HEAD, "text/html"),
    ] {
        let mut req = harness::client()
            .request(method.clone(), f.url("/api/things?id=7"))
            .header("accept", accept);
        if method == Method::POST {
            req = req.body("payload");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{method} {accept}");
        assert_eq!(location(&resp), "/oauth2/sign_in?rd=/api/things?id=7");
    }
    assert_eq!(f.app.hits(), 0, "the app was reached without a session");
    f.assert_portcullis_proxied_nothing();
    // Portcullis answered the checks with 401.
    f.portcullis().wait_for_log("auth_unauthenticated").await;
}

/// nginx does not escape `$request_uri`; Portcullis makes the return path safe.
#[tokio::test]
async fn the_unescaped_return_path_cannot_leave_the_site() {
    nginx::require!();
    let f = Front::start("").await;
    let origin = Url::parse(&f.url("/")).unwrap();
    for raw in [
        "//evil.example/",
        "//evil.example/%2e%2e",
        "/\\evil.example/",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%09/evil.example",
        "/x?rd=https://evil.example/",
        "/x?a=1&rd=//evil.example",
    ] {
        let (status, head, _) = raw_request(
            &f.nginx.base_url,
            "GET",
            raw,
            &[("Accept", "text/html")],
            b"",
        )
        .await;
        assert_eq!(status, 302, "{raw}: {head}");
        let loc = head_value(&head, "location").expect("Location");
        assert_eq!(loc, format!("/oauth2/sign_in?rd={raw}"), "{raw}");
        // The Location itself is a local path whatever follows it.
        assert_eq!(
            origin.join(&loc).unwrap().origin(),
            origin.origin(),
            "{raw}"
        );

        // Portcullis reduces the rd it is given to a path on this site.
        let picker = harness::client()
            .get(origin.join(&loc).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(picker.status(), StatusCode::OK, "{raw}");
        let link = picker_link(&picker.text().await.unwrap(), "google");
        let rd = rd_of(&link);
        let target = origin.join(&rd).unwrap();
        assert_eq!(
            target.origin(),
            origin.origin(),
            "{raw}: rd {rd:?} leaves the site"
        );
        assert!(
            rd.starts_with('/') && !rd.starts_with("//") && !rd.starts_with("/\\"),
            "{raw}: {rd:?}"
        );
    }
    // Several query parameters: only the first survives the round trip (documented).
    let (_, head, _) = raw_request(&f.nginx.base_url, "GET", "/a?x=1&y=2", &[], b"").await;
    let loc = head_value(&head, "location").unwrap();
    let picker = harness::client()
        .get(origin.join(&loc).unwrap())
        .send()
        .await
        .unwrap();
    let link = picker_link(&picker.text().await.unwrap(), "google");
    assert_eq!(rd_of(&link), "/a?x=1");

    // A whole sign-in from an attacker's link ends on this site.
    let mut b = Browser::new();
    let resp = b
        .follow(&f.url("/oauth2/sign_in?rd=//evil.example/"), 0)
        .await;
    let link = picker_link(&resp.text().await.unwrap(), "google");
    let resp = b.follow(&f.url(&link), 6).await;
    assert_eq!(resp.status(), StatusCode::OK, "{:#?}", b.hops());
    assert_eq!(resp.url().origin(), origin.origin(), "{:#?}", b.hops());
    assert_eq!(f.app.last_request().unwrap()["path"], "/");
    assert_eq!(f.app.hits(), 1);
    f.assert_portcullis_proxied_nothing();
}

// ---------------------------------------------------------------------------------------------
// (b) signing in through nginx

#[tokio::test]
async fn a_sign_in_through_nginx_reaches_the_app_with_the_identity() {
    nginx::require!();
    let f = Front::start("").await;
    let mut b = Browser::new();
    let resp = f.sign_in(&mut b, "/dashboard?x=1").await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{:#?}\n{}",
        b.hops(),
        f.portcullis().logs()
    );
    // Every hop was nginx's origin or the provider; the callback came back through nginx.
    let hops: Vec<Url> = b
        .hops()
        .iter()
        .map(|h| Url::parse(&h.url).unwrap())
        .collect();
    assert!(
        hops.iter()
            .all(|u| u.port() == Some(f.nginx.port) || u.as_str().starts_with(f.google.issuer())),
        "{hops:#?}"
    );
    assert!(
        hops.iter()
            .any(|u| u.path() == "/oauth2/callback/google" && u.port() == Some(f.nginx.port)),
        "{hops:#?}"
    );
    assert_eq!(resp.url().port(), Some(f.nginx.port));

    let echo = json(resp).await;
    assert_eq!(echo["path"], "/dashboard");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(upstream_header(&echo, "x-user").as_deref(), Some(ALICE));
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-provider").as_deref(),
        Some("google")
    );
    assert!(upstream_header(&echo, "x-user-picture").is_some_and(|p| p.starts_with("https://")));
    // Alice has no login: absent, not empty (nginx drops a header set to "").
    assert_eq!(upstream_header(&echo, "x-user-login"), None);
    // nginx's forwarding headers, not the client's.
    assert_eq!(
        upstream_header(&echo, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        upstream_header(&echo, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    // `Host $host`: the host name without the port.
    assert_eq!(upstream_header(&echo, "host").as_deref(), Some("127.0.0.1"));

    // The session cookie was set through nginx, for nginx's origin.
    let session = b.cookie("_portcullis").expect("session cookie");
    assert!(session.raw.to_ascii_lowercase().contains("httponly"));

    // Later requests go straight through.
    for path in ["/dashboard", "/reports/2024?format=csv", "/"] {
        let resp = b.get(&f.url(path)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let echo = json(resp).await;
        assert_eq!(upstream_header(&echo, "x-user").as_deref(), Some(ALICE));
    }
    assert_eq!(f.app.hits(), 4);
    f.assert_portcullis_proxied_nothing();
    f.portcullis().wait_for_log("auth_ok").await;

    // Portcullis's other pages work through nginx too.
    let info = json(b.get(&f.url("/oauth2/userinfo")).await).await;
    assert_eq!(info["user"], ALICE);
    // Sign-out clears the session: the next visit is sent to sign in again.
    let resp = b.get(&f.url("/oauth2/sign_out?rd=/dashboard")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(location(&resp), "/dashboard");
    let resp = b.get(&f.url("/dashboard")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(location(&resp), "/oauth2/sign_in?rd=/dashboard");
    assert_eq!(f.app.hits(), 4);
}

/// Bodies, uploads and WebSockets pass through the auth check: the check itself gets no body
/// (`proxy_pass_request_body off; proxy_set_header Content-Length "";`), the app all of it.
#[tokio::test]
async fn bodies_and_websockets_pass_the_auth_check_intact() {
    nginx::require!();
    let f = Front::start("").await;
    let (b, _) = f.signed_in("/").await;
    let cookies = f.cookies(&b);

    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let started = std::time::Instant::now();
    let resp = harness::client()
        .put(f.url("/upload?name=big.bin"))
        .header("cookie", &cookies)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", f.nginx.logs());
    let echo = json(resp).await;
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_sha256"], hex(&Sha256::digest(&body)));
    assert_eq!(upstream_header(&echo, "x-user").as_deref(), Some(ALICE));

    // A chunked upload (no Content-Length at all).
    let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let (status, head, reply) = raw_request(
        &f.nginx.base_url,
        "POST",
        "/form",
        &[("Cookie", &cookies), ("Transfer-Encoding", "chunked")],
        chunked,
    )
    .await;
    assert_eq!(status, 200, "{head}");
    let echo: Value = serde_json::from_slice(&reply).expect("echo JSON");
    assert_eq!(echo["body_len"], 11);
    assert_eq!(echo["body_sha256"], hex(&Sha256::digest(b"hello world")));
    // Neither waited for a body the check would never get.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // WebSocket: the upgrade passes the check and carries the identity.
    let ws_url = f.url("/ws").replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookies.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade through nginx");
    assert_eq!(resp.status().as_u16(), 101);
    ws.send(Message::Text("hello through nginx".into()))
        .await
        .unwrap();
    let reply = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(reply.into_text().unwrap().as_str(), "hello through nginx");
    ws.close(None).await.ok();
    let upgrade = f
        .app
        .requests()
        .into_iter()
        .find(|r| r["path"] == "/ws")
        .expect("the app saw the upgrade");
    assert_eq!(upstream_header(&upgrade, "x-user").as_deref(), Some(ALICE));

    // Without a session the upgrade is refused before it reaches the app.
    let before = f.app.hits();
    assert!(tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .is_err());
    assert_eq!(f.app.hits(), before);
    f.assert_portcullis_proxied_nothing();
}

/// A large identity (values near Portcullis's caps: 512 bytes for a name, 254 for an email,
/// 2048 for a picture URL) passes nginx whole: the callback's Set-Cookie, the Cookie header,
/// the check's response headers, the app's headers.
#[tokio::test]
async fn a_large_identity_passes_nginx_whole() {
    nginx::require!();
    let name = format!("Alice {}", "Example".repeat(70));
    let email = format!("{}@example.com", "a".repeat(254 - "@example.com".len()));
    let mut user = TestUser::new("110169484474386276334", &email, &name);
    user.picture = format!(
        "https://lh3.googleusercontent.com/a/{}=s96-c",
        "x".repeat(1900)
    );
    let f = Front::start_with("", &harness::session_secret(), user.clone()).await;
    let (b, echo) = f.signed_in("/big").await;
    let session = b.cookie("_portcullis").expect("session cookie");
    assert!(session.value.len() > 2000, "{}", session.value.len());
    assert_eq!(upstream_header(&echo, "x-user").as_deref(), Some(ALICE));
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some(&*name)
    );
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some(&*email)
    );
    assert_eq!(
        upstream_header(&echo, "x-user-picture").as_deref(),
        Some(&*user.picture)
    );
}

// ---------------------------------------------------------------------------------------------
// (c) forged identity headers

const FORGED: &[(&str, &str)] = &[
    ("X-User", "google:forged"),
    ("X-User", "google:forged-twice"),
    ("x_user", "forged-underscore"),
    ("X-USER-EMAIL", "forged@evil.example"),
    ("X_USER_EMAIL", "forged-underscore@evil.example"),
    ("x-user-name", "Forged Name"),
    ("X-User_Name", "Forged Mixed"),
    ("X-User-Login", "forged-login"),
    ("x-user-picture", "https://evil.example/forged.png"),
    ("X-User-Provider", "forged"),
];

fn assert_nothing_forged(echo: &Value) {
    for header in identity_headers(echo) {
        assert!(
            !header.to_ascii_lowercase().contains("forged"),
            "a forged header reached the app: {header}\nall: {:#?}",
            identity_headers(echo)
        );
        let name = header.split(':').next().unwrap();
        assert!(!name.contains('_'), "{header}");
    }
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_app() {
    nginx::require!();
    let f = Front::start("").await;

    // Without a session: the redirect, and nothing reaches the app.
    let mut headers = FORGED.to_vec();
    headers.push(("Accept", "text/html"));
    let (status, head, _) = raw_request(&f.nginx.base_url, "GET", "/admin", &headers, b"").await;
    assert_eq!(status, 302, "{head}");
    assert_eq!(
        head_value(&head, "location").as_deref(),
        Some("/oauth2/sign_in?rd=/admin")
    );
    assert_eq!(f.app.hits(), 0);

    // With a session: exactly Portcullis's values, in the canonical spelling only.
    let (b, _) = f.signed_in("/").await;
    let cookies = f.cookies(&b);
    let mut headers = FORGED.to_vec();
    headers.push(("Cookie", &cookies));
    let (status, head, body) = raw_request(&f.nginx.base_url, "GET", "/admin", &headers, b"").await;
    assert_eq!(status, 200, "{head}");
    let echo: Value = serde_json::from_slice(&body).expect("echo JSON");
    assert_nothing_forged(&echo);
    assert_eq!(upstream_header(&echo, "x-user").as_deref(), Some(ALICE));
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-provider").as_deref(),
        Some("google")
    );
    // Alice has no login: the forged one is removed and none is sent.
    assert_eq!(upstream_header(&echo, "x-user-login"), None);
    // nginx itself drops names with "_" (underscores_in_headers off).
    for name in ["x_user", "x_user_email", "x-user_name"] {
        assert!(
            upstream::header(&echo, name).is_empty(),
            "{name}: {:#?}",
            identity_headers(&echo)
        );
    }
    assert_eq!(
        identity_headers(&echo).len(),
        5,
        "{:#?}",
        identity_headers(&echo)
    );

    // The same through reqwest (lower-case names on the wire), on another path.
    let mut req = harness::client()
        .get(f.url("/settings"))
        .header("cookie", &cookies);
    for (k, v) in FORGED {
        req = req.header(*k, *v);
    }
    let echo = json(req.send().await.unwrap()).await;
    assert_nothing_forged(&echo);
    assert_eq!(upstream_header(&echo, "x-user").as_deref(), Some(ALICE));
    assert_eq!(f.app.hits(), 3);
    f.assert_portcullis_proxied_nothing();
}

// ---------------------------------------------------------------------------------------------
// (d) the check itself

#[tokio::test]
async fn the_auth_endpoint_answers_401_to_bad_cookies_through_nginx_and_directly() {
    nginx::require!();
    let f = Front::start("").await;
    let (b, _) = f.signed_in("/").await;
    let good = b
        .cookie("_portcullis")
        .expect("session cookie")
        .value
        .clone();
    let mut tampered = good.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let hits = f.app.hits();

    for cookie in [
        None,
        Some("_portcullis=garbage".to_owned()),
        Some("_portcullis=".to_owned()),
        Some(format!("_portcullis={tampered}")),
        Some(format!("_portcullis={}", &good[..good.len() / 2])),
        Some(format!("_portcullis_login_AAAAAAAAAAAAAAAA={good}")),
    ] {
        let shown = cookie
            .as_deref()
            .map(|c| c.chars().take(40).collect::<String>());
        for base in [&f.nginx.base_url, &f.portcullis().base_url] {
            let mut req = harness::client().get(format!("{base}/oauth2/auth"));
            if let Some(cookie) = &cookie {
                req = req.header("cookie", cookie);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{base}: {shown:?}");
            assert!(resp.headers().get("x-user").is_none());
            let body = json(resp).await;
            assert_eq!(body["error"], "unauthenticated", "{base}: {shown:?}");
        }
        // The same cookie on an app path: the sign-in redirect, not the app.
        let mut req = harness::client().get(f.url("/private"));
        if let Some(cookie) = &cookie {
            req = req.header("cookie", cookie);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{shown:?}");
        assert_eq!(location(&resp), "/oauth2/sign_in?rd=/private");
    }
    assert_eq!(f.app.hits(), hits);

    // The good cookie: 202 with the identity, through nginx as directly.
    for base in [&f.nginx.base_url, &f.portcullis().base_url] {
        let resp = harness::client()
            .get(format!("{base}/oauth2/auth"))
            .header("cookie", format!("_portcullis={good}"))
            .header("x-user", "google:forged")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{base}");
        assert_eq!(resp.headers()["x-user"], ALICE);
        assert_eq!(resp.headers()["x-user-email"], "alice@example.com");
        assert!(resp.headers().get("x-user-login").is_none());
    }
    f.assert_portcullis_proxied_nothing();
}

// ---------------------------------------------------------------------------------------------
// (e) signed in, not allowed

#[tokio::test]
async fn a_user_who_is_not_allowed_gets_403_and_the_app_sees_nothing() {
    nginx::require!();
    // A session for Alice from another Portcullis with the same secret and no allow-list (as
    // after the allow-list was narrowed), then nginx in front of a Portcullis that allows only
    // someone else.
    let open = World::start("").await;
    let (mut b, _) = open.signed_in("/").await;
    let f = Front::start_with(
        "[access]\nallowed_emails = [\"someone@else.com\"]\n",
        &open.secret,
        TestUser::alice(),
    )
    .await;

    let resp = b.get(&f.url("/dashboard?x=1")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{}", f.nginx.logs());
    // Portcullis's 403 page (through `error_page 403 = @forbidden`): who is signed in, and a
    // sign-out form that returns to the sign-in page.
    let html = resp.text().await.unwrap();
    assert!(html.contains("alice@example.com"), "{html}");
    assert!(html.contains("/oauth2/sign_out"), "{html}");

    // Other methods too, and the check itself answers 403.
    let cookies = f.cookies(&b);
    let resp = harness::client()
        .post(f.url("/api/things"))
        .header("cookie", &cookies)
        .header("accept", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = harness::client()
        .get(f.url("/oauth2/auth"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("x-user").is_none());
    assert_eq!(f.app.hits(), 0, "the app was reached by a user not allowed");
    f.assert_portcullis_proxied_nothing();
    f.portcullis().wait_for_log("auth_forbidden").await;

    // Signing in through nginx as a user who is not allowed ends on the 403 page at the
    // callback, with no session.
    let mut fresh = Browser::new();
    let resp = f.sign_in(&mut fresh, "/dashboard").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{:#?}", fresh.hops());
    assert!(fresh.cookie("_portcullis").is_none());
    let resp = fresh.get(&f.url("/dashboard")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(f.app.hits(), 0);
    f.assert_portcullis_proxied_nothing();
}

// ---------------------------------------------------------------------------------------------
// (f) routes, judged on the original request nginx describes

/// Routes for the forward-auth tests: an admin area for someone else, POST-only rules on
/// reports, a public status page; `skip_auth` for /public/.
const ROUTES: &str = r#"
[access]
skip_auth = ["^/public/"]

[[routes]]
path = "^/admin/"
allowed_emails = ["root@example.com"]

[[routes]]
path = "^/reports/"
methods = ["POST"]
allowed_emails = ["root@example.com"]

[[routes]]
path = "^/status$"
public = true
"#;

/// nginx (at 127.0.0.1) is Portcullis's trusted proxy.
const TRUST_NGINX: &str = "trusted_proxies = [\"127.0.0.1/32\"]";

/// With nginx in `trusted_proxies`, the check judges the request nginx serves: its path (made
/// canonical, refused when the canonicaliser refuses it), its method and host, against
/// `[[routes]]` and `skip_auth`. What a client sends in those headers changes nothing.
#[tokio::test]
async fn routes_apply_to_the_request_nginx_serves() {
    nginx::require!();
    let f = Front::start_full(
        TRUST_NGINX,
        ROUTES,
        &harness::session_secret(),
        TestUser::alice(),
    )
    .await;
    let (mut b, echo) = f.signed_in("/").await;
    assert_eq!(upstream_header(&echo, "x-user").as_deref(), Some(ALICE));
    let hits = f.app.hits();

    // Alice may not see the admin area, whatever its spelling; the 403 page is Portcullis's.
    for path in [
        "/admin/x",
        "/%61dmin/x",
        "//admin//x",
        "/admin/x?next=/public/",
    ] {
        let resp = b.get(&f.url(path)).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "{path}: {}",
            f.nginx.logs()
        );
        let html = resp.text().await.unwrap();
        assert!(html.contains("alice@example.com"), "{path}: {html}");
    }
    // Reports: GET for every signed-in user, POST for root only.
    let resp = b.get(&f.url("/reports/q1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = b
        .send(b.request(Method::POST, &f.url("/reports/q1")).body("x"))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(f.app.hits(), hits + 1, "only the GET reached the app");

    // A forwarded target the canonicaliser refuses is refused (400), never passed: nginx
    // fails closed with 500, although Alice's session alone would pass [access].
    for path in [
        "/x/%2e%2e/admin/x",
        "/x/..;/admin/x",
        "/public/%2E%2E/admin/x",
    ] {
        let resp = b.get(&f.url(path)).await;
        assert!(
            !resp.status().is_success(),
            "{path}: {} reached the app",
            resp.status()
        );
    }
    assert_eq!(f.app.hits(), hits + 1, "a refused target reached the app");
    f.portcullis().wait_for_log("bad_request").await;

    // Without a session: public routes and skip_auth pass without identity...
    for path in ["/status", "/public/logo.png"] {
        let resp = harness::client()
            .get(f.url(path))
            .header("x-user", "google:forged")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let echo = json(resp).await;
        assert!(identity_headers(&echo).is_empty(), "{path}: {echo}");
    }
    // ...and nothing else does, whatever the client claims the request is: nginx sets the
    // forwarded headers itself.
    for (path, header, value) in [
        ("/admin/x", "x-forwarded-uri", "/status"),
        ("/admin/x", "x-original-uri", "/public/x"),
        ("/status/x", "x-forwarded-uri", "/status"),
    ] {
        let resp = harness::client()
            .get(f.url(path))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{path} with {header}");
        assert!(location(&resp).starts_with("/oauth2/sign_in?rd="));
    }
    let resp = b
        .send(
            b.request(Method::POST, &f.url("/reports/q2"))
                .header("x-forwarded-method", "GET")
                .body("x"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "a forged method");
    assert_eq!(f.app.hits(), hits + 3);
    f.assert_portcullis_proxied_nothing();
}

/// The forwarded headers are believed from `trusted_proxies` only: sent straight to
/// Portcullis from another address, they are ignored and `[access]` decides (a 401 where the
/// route would have said public, a 202 where it would have said 403).
#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    nginx::require!();
    let f = Front::start_full(
        TRUST_NGINX,
        ROUTES,
        &harness::session_secret(),
        TestUser::alice(),
    )
    .await;
    let (b, _) = f.signed_in("/").await;
    let cookies = f.cookies(&b);
    let auth = f.portcullis().url("/oauth2/auth");
    // 127.0.0.2 is a loopback address too, but not in trusted_proxies.
    let stranger = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let trusted = harness::client();
    let check = |client: &reqwest::Client, uri: &str, cookie: Option<&str>| {
        let mut req = client.get(&auth).header("x-forwarded-uri", uri);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    for (uri, cookie, from_stranger, from_nginx) in [
        ("/status", None, 401, 202),
        ("/public/x", None, 401, 202),
        ("/admin/x", Some(cookies.as_str()), 202, 403),
        ("/x/%2e%2e/admin/x", Some(cookies.as_str()), 202, 400),
        ("/x", Some(cookies.as_str()), 202, 202),
    ] {
        let resp = check(&stranger, uri, cookie).await.unwrap();
        assert_eq!(resp.status().as_u16(), from_stranger, "stranger: {uri}");
        let resp = check(&trusted, uri, cookie).await.unwrap();
        assert_eq!(resp.status().as_u16(), from_nginx, "127.0.0.1: {uri}");
        if from_nginx == 202 && cookie.is_none() {
            assert!(
                resp.headers().get("x-user").is_none(),
                "public: no identity"
            );
        }
    }
    // The operator learns why (once): the headers came from an address not trusted.
    let logs = f
        .portcullis()
        .wait_for_log("not in server.trusted_proxies is ignored")
        .await;
    assert_eq!(
        logs.matches("not in server.trusted_proxies").count(),
        1,
        "{logs}"
    );
}

/// The groups of a session reach the app through nginx as `X-User-Groups` (the example
/// copies the header from the check's answer); a client's own copy never does.
#[tokio::test]
async fn groups_reach_the_app_through_nginx() {
    use portcullis::identity::Identity;
    use portcullis::session::{unix_now, Sealer, SessionCodec, SessionKey};
    nginx::require!();
    let secret = harness::session_secret();
    let f = Front::start_full(TRUST_NGINX, ROUTES, &secret, TestUser::alice()).await;
    let codec = SessionCodec::new(Sealer::new(&SessionKey::from_base64(&secret).unwrap(), &[]));
    let mut id = Identity {
        provider: "google".into(),
        subject: "110169484474386276334".into(),
        email: Some("alice@example.com".into()),
        name: None,
        login: None,
        picture: None,
        groups: vec!["admins".into(), "R&D, Zürich".into()],
    };
    let cookie = |id: &Identity| {
        format!(
            "_portcullis={}",
            codec.seal_identity_at("_portcullis", id, unix_now() + 600)
        )
    };
    let resp = harness::client()
        .get(f.url("/x"))
        .header("cookie", cookie(&id))
        .header("x-user-groups", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", f.nginx.logs());
    let echo = json(resp).await;
    assert_eq!(
        upstream_header(&echo, "x-user-groups").as_deref(),
        Some("admins,R%26D%2C%20Z%C3%BCrich")
    );
    id.groups.clear();
    let resp = harness::client()
        .get(f.url("/x"))
        .header("cookie", cookie(&id))
        .header("x-user-groups", "forged")
        .send()
        .await
        .unwrap();
    let echo = json(resp).await;
    assert_eq!(upstream_header(&echo, "x-user-groups"), None, "{echo}");
}

// ---------------------------------------------------------------------------------------------
// Portcullis down

/// When the check cannot be made, nginx fails closed: 500, and the app sees nothing.
#[tokio::test]
async fn with_portcullis_down_nginx_fails_closed() {
    nginx::require!();
    let mut f = Front::start("").await;
    let (mut b, _) = f.signed_in("/").await;
    let hits = f.app.hits();

    // Stopping it kills (SIGKILL) and reaps the process.
    drop(f.portcullis.take());

    let resp = b.get(&f.url("/dashboard")).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let resp = harness::client()
        .get(f.url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // Its own pages are simply unavailable.
    let resp = b.get(&f.url("/oauth2/sign_in")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(f.app.hits(), hits, "the app was reached without a check");
    assert!(
        f.nginx
            .logs()
            .contains("auth request unexpected status: 502"),
        "{}",
        f.nginx.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// The example file itself

#[test]
fn the_example_keeps_the_lines_the_tests_replace() {
    // Panics naming the placeholder if the example lost one or has it twice.
    let rendered = nginx::render_example(8000, "127.0.0.1:1", "127.0.0.1:2");
    assert!(rendered.contains("listen 127.0.0.1:8000;"));
    assert!(rendered.contains("server 127.0.0.1:1;"));
    assert!(rendered.contains("server 127.0.0.1:2;"));
    // The directives the security of this set-up rests on.
    let example = std::fs::read_to_string(nginx::EXAMPLE).unwrap();
    for directive in [
        "auth_request /oauth2/auth;",
        "proxy_pass_request_body off;",
        "proxy_set_header Content-Length \"\";",
        "error_page 401 = @sign_in;",
        "error_page 403 = @forbidden;",
        "return 302 /oauth2/sign_in?rd=$request_uri;",
        "underscores_in_headers off;",
        "proxy_set_header X-User          $portcullis_user;",
        "proxy_set_header X-User-Email    $portcullis_email;",
        "proxy_set_header X-User-Login    $portcullis_login;",
        "proxy_set_header X-User-Groups   $portcullis_groups;",
        "proxy_set_header X-Forwarded-Uri $request_uri;",
        "proxy_set_header X-Original-URI $request_uri;",
        "proxy_set_header X-Forwarded-Method $request_method;",
    ] {
        assert!(example.contains(directive), "missing: {directive}");
    }
}
