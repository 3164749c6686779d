//! What passes through: methods, bodies, status codes, chunked responses,
//! WebSocket upgrades, forwarding headers, and an upstream that is down.

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{json, upstream_header, World};
use crate::support::harness::{self, Browser};

fn cookie_header(b: &Browser, url: &str) -> String {
    b.cookie_header(&url::Url::parse(url).unwrap())
        .expect("session cookie")
}

#[tokio::test]
async fn bodies_statuses_and_chunked_responses_pass_through() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    let cookies = cookie_header(&b, &w.url("/"));
    let client = harness::client();

    // A body of several MB streams through unchanged.
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = hex(&Sha256::digest(&body));
    let resp = client
        .put(w.url("/upload?name=big.bin"))
        .header("cookie", &cookies)
        .header("accept", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = json(resp).await;
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["query"], "name=big.bin");
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_sha256"], digest);

    // Status codes are the upstream's.
    let resp = client
        .get(w.url("/status/418"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 418);

    // A chunked response arrives whole.
    let resp = client
        .get(w.url("/chunked"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(text.len() > 10, "{text}");
}

#[tokio::test]
async fn forwarding_headers_are_set() {
    let w = World::start("").await;
    let (_, echo) = w.signed_in("/fwd").await;
    assert_eq!(
        upstream_header(&echo, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        upstream_header(&echo, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    let host = w.url("").trim_start_matches("http://").to_owned();
    assert_eq!(
        upstream_header(&echo, "x-forwarded-host").as_deref(),
        Some(host.as_str())
    );
}

#[tokio::test]
async fn websocket_upgrade_passes_with_a_session_and_not_without() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    let ws_url = w.url("/ws").replacen("http://", "ws://", 1);

    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", cookie_header(&b, &w.url("/ws")).parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    ws.send(Message::Text("hello through portcullis".into()))
        .await
        .unwrap();
    let reply = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(
        reply.into_text().unwrap().as_str(),
        "hello through portcullis"
    );
    ws.close(None).await.ok();
    let upgrade = w
        .upstream
        .requests()
        .into_iter()
        .find(|r| r["path"] == "/ws")
        .expect("upstream saw the upgrade");
    assert!(upstream_header(&upgrade, "x-user").is_some());

    // Many at once (pingora#946 tore some of these down right after 101).
    let cookie = cookie_header(&b, &w.url("/ws"));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let mut req = ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        tasks.spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .expect("upgrade");
            let text = format!("message {i}");
            ws.send(Message::Text(text.clone().into())).await.unwrap();
            let reply = ws.next().await.expect("a reply").expect("a message");
            assert_eq!(reply.into_text().unwrap().as_str(), text);
            ws.close(None).await.ok();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a tunnel failed");
    }

    // Without a session the upgrade is refused before it reaches the upstream.
    let before = w.upstream.hits();
    let err = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    assert!(err.is_err(), "upgrade without a session succeeded");
    assert_eq!(w.upstream.hits(), before);
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    let cookies = cookie_header(&b, &w.url("/"));
    let before = w.upstream.connections();
    // Sequential requests, each on a new client connection: without
    // upstream keep-alive each would open its own upstream connection.
    for i in 0..20 {
        let resp = harness::client()
            .get(w.url(&format!("/keepalive/{i}")))
            .header("cookie", &cookies)
            .header(reqwest::header::CONNECTION, "close")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let used = w.upstream.connections() - before;
    assert!(
        used <= 2,
        "20 sequential requests used {used} upstream connections"
    );
}

#[tokio::test]
async fn tls_termination_serves_https_with_secure_cookies() {
    let w = World::start("").await;
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let p = harness::start(|port| {
        harness::google_config(port, &w.upstream.base_url, &w.google, &w.secret, "")
            .replace(
                &format!("public_url = \"http://127.0.0.1:{port}\""),
                &format!(
                    "public_url = \"https://127.0.0.1:{port}\"\ntls_cert = \"{data}/tls-test.crt\"\ntls_key = \"{data}/tls-test.key\""
                ),
            )
    })
    .await;
    let https = p.url("/").replacen("http://", "https://", 1);
    let cert = reqwest::Certificate::from_pem(include_bytes!("../data/tls-test.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(cert)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    // The picker over TLS, twice on one connection (keep-alive through rustls).
    for _ in 0..2 {
        let resp = client
            .get(format!("{https}oauth2/sign_in"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.text().await.unwrap().contains("/oauth2/start/google"));
    }
    // Starting a sign-in sets a Secure login-state cookie (https public_url).
    let resp = client
        .get(format!("{https}oauth2/start/google?rd=/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    // Plain HTTP on the TLS port is not served.
    assert!(harness::client().get(p.url("/")).send().await.is_err());
}

/// A client of the TLS listener that trusts `pem` only (a fresh
/// connection pool each time); `http1_only`: it offers no HTTP/2.
fn https_client(pem: &[u8], http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30));
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// The TLS listener as a front server (issue 17): HTTP/2 through ALPN for
/// the whole sign-in and the proxied request (the app still gets the
/// identity), HTTP/1.1 for clients that offer only it, and a renewed
/// certificate taken on SIGHUP by new connections, without a restart.
#[tokio::test]
async fn tls_listener_speaks_http2_and_takes_a_renewed_certificate_on_sighup() {
    const FIRST: &[u8] = include_bytes!("../data/tls-test.crt");
    const RENEWED: &[u8] = include_bytes!("../data/tls-test-2.crt");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    std::fs::copy(format!("{data}/tls-test.crt"), &cert).unwrap();
    std::fs::copy(format!("{data}/tls-test.key"), &key).unwrap();
    let w = World::start("").await;
    let p = harness::start(|port| {
        harness::google_config(port, &w.upstream.base_url, &w.google, &w.secret, "").replace(
            &format!("public_url = \"http://127.0.0.1:{port}\""),
            &format!(
                "public_url = \"https://127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
                cert.display(),
                key.display()
            ),
        )
    })
    .await;
    let https = |path: &str| p.url(path).replacen("http://", "https://", 1);

    // Registered like a real site's https callback (Google allows plain
    // http on loopback only by default).
    w.google
        .register_redirect_uri(&https("/oauth2/callback/google"));
    // The whole sign-in over HTTP/2.
    let mut b = Browser::with_client(https_client(FIRST, false));
    let resp = b.get(&https("/oauth2/sign_in")).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = b.get(&https("/oauth2/start/google?rd=%2Fh2%2Fpage")).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::FOUND);
    let resp = b.get(&crate::common::location(&resp)).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "the provider approves");
    let callback = crate::common::location(&resp);
    assert!(
        callback.starts_with(&https("/oauth2/callback/google")),
        "{callback}"
    );
    let resp = b.get(&callback).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::FOUND, "{}", p.logs());
    assert_eq!(crate::common::location(&resp), "/h2/page");
    let resp = b.get(&https("/h2/page")).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = json(resp).await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("google:110169484474386276334")
    );
    assert_eq!(
        upstream_header(&echo, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    // A client without HTTP/2 gets HTTP/1.1 on the same port.
    let resp = https_client(FIRST, true)
        .get(https("/oauth2/sign_in"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), StatusCode::OK);

    // The renewed pair is not served before SIGHUP...
    let renewed_only = || {
        https_client(RENEWED, true)
            .get(https("/oauth2/sign_in"))
            .send()
    };
    assert!(
        renewed_only().await.is_err(),
        "renewed certificate served early"
    );
    std::fs::copy(format!("{data}/tls-test-2.crt"), &cert).unwrap();
    std::fs::copy(format!("{data}/tls-test-2.key"), &key).unwrap();
    assert!(renewed_only().await.is_err(), "files alone change nothing");
    // ...and is, to every new connection, after it.
    crate::ops::sighup(&p);
    p.wait_for_log("TLS certificate reloaded").await;
    let resp = renewed_only().await.expect("the renewed certificate");
    assert_eq!(resp.status(), StatusCode::OK);
    let old = https_client(FIRST, true)
        .get(https("/oauth2/sign_in"))
        .send()
        .await;
    assert!(old.is_err(), "the old certificate is still served");
    // A broken renewal is refused; the running certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    crate::ops::sighup(&p);
    p.wait_for_log("TLS certificate reload refused").await;
    assert_eq!(renewed_only().await.unwrap().status(), StatusCode::OK);
    assert!(!p.logs().contains("BEGIN"), "key material in the log");
}

#[tokio::test]
async fn access_log_lines_name_the_user_in_text_and_in_json() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    let cookies = cookie_header(&b, &w.url("/"));
    let get = |url: String| {
        let cookies = cookies.clone();
        async move {
            let resp = harness::client()
                .get(url)
                .header("cookie", cookies)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    };
    get(w.url("/logged/text?token=hush")).await;
    let logs = w.proxy.wait_for_log("path=/logged/text").await;
    let line = logs
        .lines()
        .find(|l| l.contains("path=/logged/text"))
        .unwrap();
    assert!(line.contains(" INFO portcullis::access: method=GET path=/logged/text status=200 outcome=proxied user=google:"), "{line}");
    assert!(line.contains(" client=127.0.0.1 micros="), "{line}");
    assert!(!logs.contains("hush"), "a query string reached the logs");

    let json = harness::start_with_env(
        |port| harness::google_config(port, &w.upstream.base_url, &w.google, &w.secret, ""),
        &[("PORTCULLIS_LOG_FORMAT", "json")],
    )
    .await;
    get(json.url("/logged/json")).await;
    let logs = json.wait_for_log("\"path\":\"/logged/json\"").await;
    let line = logs.lines().find(|l| l.contains("/logged/json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["target"], "portcullis::access");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["status"], 200);
    assert_eq!(v["outcome"], "proxied");
    assert!(v["user"].as_str().unwrap().starts_with("google:"), "{line}");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
}

/// Access lines are batched (50 ms): the last ones must still be written
/// when the proxy is stopped right after answering.
#[tokio::test]
async fn the_last_access_lines_are_written_on_shutdown() {
    let w = World::start("").await;
    let mut p = harness::start(|port| {
        harness::google_config(port, &w.upstream.base_url, &w.google, &w.secret, "")
    })
    .await;
    for i in 0..3 {
        let resp = harness::client()
            .get(p.url(&format!("/oauth2/sign_in?last={i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert!(p.stop_with(libc::SIGINT).await, "{}", p.logs());
    let logs = p.logs();
    let lines = logs
        .lines()
        .filter(|l| l.contains("portcullis::access: method=GET path=/oauth2/sign_in"))
        .count();
    assert_eq!(lines, 3, "{logs}");
}

#[tokio::test]
async fn upstream_down_gives_a_502_page_and_the_proxy_keeps_serving() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    w.upstream.shutdown();
    // A port nobody listens on: point a second proxy at it.
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let p =
        harness::start(|port| harness::google_config(port, &dead, &w.google, &w.secret, "")).await;
    let cookies = cookie_header(&b, &w.url("/"));
    let resp = harness::client()
        .get(p.url("/page"))
        .header("cookie", &cookies)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    let page = resp.text().await.unwrap();
    assert!(page.contains("not responding"), "{page}");
    // Still serving its own pages.
    let picker = harness::client()
        .get(p.url("/oauth2/sign_in"))
        .send()
        .await
        .unwrap();
    assert_eq!(picker.status(), StatusCode::OK);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
