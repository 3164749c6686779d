//! The advisories of other auth proxies (`../shared/SECURITY.md`), one test
//! each, named after the row.

use reqwest::StatusCode;

use crate::common::{json, location, upstream_header, urlencode, World};
use crate::support::harness::{self, Browser};

const CORPUS: &str = include_str!("../data/openredirects.txt");

/// A Location the browser resolves against the proxy must stay on its origin.
fn same_origin(base: &str, location: &str) -> bool {
    let base = url::Url::parse(base).unwrap();
    match base.join(location) {
        Ok(u) => u.origin() == base.origin(),
        Err(_) => false,
    }
}

/// SECURITY.md row 2: every open-redirect payload, at sign_in, sign_out and
/// start (through a whole login), ends on a same-origin path.
#[tokio::test]
async fn security_02_open_redirect_corpus_stays_on_origin() {
    let w = World::start("").await;
    let client = harness::client();
    let base = w.url("/");
    let mut checked = 0;
    for payload in CORPUS.lines().filter(|l| !l.is_empty()) {
        let rd = urlencode(payload);

        // sign_out: the Location itself.
        let resp = client
            .get(w.url(&format!("/oauth2/sign_out?rd={rd}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{payload}");
        let loc = location(&resp);
        assert!(
            loc.starts_with('/') && !loc.starts_with("//") && same_origin(&base, &loc),
            "sign_out {payload:?} -> {loc:?}"
        );

        // sign_in: the rd carried by the buttons.
        let html = client
            .get(w.url(&format!("/oauth2/sign_in?rd={rd}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let link = crate::common::picker_link(&html, "google");
        let carried = url::Url::parse(&w.url(&link))
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert!(
            same_origin(&base, &carried) && carried.starts_with('/') && !carried.starts_with("//"),
            "sign_in {payload:?} -> {carried:?}"
        );
        checked += 1;
    }
    // The corpus (559 lines, one of them empty) was all read.
    assert_eq!(checked, 558);

    // start: the return path at the end of a real login, for every payload.
    let mut b = Browser::new();
    for payload in CORPUS.lines().filter(|l| !l.is_empty()) {
        let authorize = w.start_login(&mut b, payload).await;
        let callback = w.provider_answer(&mut b, &authorize).await;
        let resp = b.get(&callback).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{payload}");
        let loc = location(&resp);
        assert!(
            loc.starts_with('/') && !loc.starts_with("//") && same_origin(&base, &loc),
            "start {payload:?} -> {loc:?}"
        );
    }
}

/// SECURITY.md row 6: forged identity headers never reach the upstream.
#[tokio::test]
async fn security_06_forged_identity_headers_are_removed() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    let cookies = b
        .cookie_header(&url::Url::parse(&w.url("/")).unwrap())
        .unwrap();
    let forged = [
        ("X-User", "google:attacker"),
        ("x_user", "google:attacker"),
        ("X-USER", "google:attacker"),
        ("X-USER-EMAIL", "ceo@example.com"),
        ("x_user_email", "ceo@example.com"),
        ("X-User-Name", "Mallory"),
        ("X-User-Login", "root"),
        ("X_User_Picture", "javascript:x"),
        ("X-User-Provider", "admin"),
    ];
    let send = |with_session: bool| {
        let mut req = harness::client()
            .get(w.url("/api/me"))
            .header("accept", "application/json");
        for (k, v) in forged {
            req = req.header(k, v);
        }
        if with_session {
            req = req.header("cookie", cookies.clone());
        }
        req.send()
    };

    // With a session: only the real identity arrives.
    let echo = json(send(true).await.unwrap()).await;
    let names: Vec<String> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains('_')),
        "an underscore spelling got through: {names:?}"
    );
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("google:110169484474386276334")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(upstream_header(&echo, "x-user-login"), None);
    assert_eq!(
        upstream_header(&echo, "x-user-provider").as_deref(),
        Some("google")
    );

    // Without a session nothing reaches the upstream at all.
    let before = w.upstream.hits();
    assert_eq!(
        send(false).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(w.upstream.hits(), before);
}

/// SECURITY.md row 8: no header value opens a protected path.
#[tokio::test]
async fn security_08_no_header_opens_a_protected_path() {
    let w = World::start("").await;
    for (k, v) in [
        ("user-agent", "kube-probe/1.29"),
        ("user-agent", "GoogleHC/1.0"),
        ("user-agent", "ELB-HealthChecker/2.0"),
        ("x-forwarded-uri", "/oauth2/sign_in"),
        ("x-original-uri", "/oauth2/sign_in"),
        ("x-forwarded-host", "localhost"),
        ("x-user", "google:1"),
        ("authorization", "Bearer anything"),
    ] {
        let resp = harness::client()
            .get(w.url("/private"))
            .header(k, v)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{k}: {v}");
    }
    assert_eq!(w.upstream.hits(), 0);
}

/// SECURITY.md rows 10 and 15: tampered, truncated, foreign, oversized or
/// many-part cookies are all simply "no session", never an error.
#[tokio::test]
async fn security_10_15_bad_cookies_are_no_session() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    let good = b.cookie("_portcullis").unwrap().value.clone();
    let mut tampered = good.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let many_parts: String = (0..200)
        .map(|i| format!("_portcullis_{i}={good}; "))
        .collect();
    let huge = "A".repeat(60_000);
    let cases = vec![
        format!("_portcullis={tampered}"),
        format!("_portcullis={}", &good[..good.len() / 2]),
        format!("_portcullis={}", &good[..good.len() - 1]),
        "_portcullis=".to_owned(),
        "_portcullis=!!!not-base64!!!".to_owned(),
        format!("_portcullis={huge}"),
        many_parts,
        format!("_portcullis_0={good}; _portcullis_2={good}"),
        format!("_portcullis_login_AAAAAAAAAAAAAAAA={good}"),
    ];
    for cookie in cases {
        let resp = harness::client()
            .get(w.url("/private"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let shown: String = cookie.chars().take(60).collect();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{shown}");
    }
    // A cookie sealed under another secret (another deployment) is foreign.
    let other = World::start("").await;
    let resp = harness::client()
        .get(other.url("/private"))
        .header("cookie", format!("_portcullis={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The good one still works.
    let resp = harness::client()
        .get(w.url("/private"))
        .header("cookie", format!("_portcullis={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// SECURITY.md rows 7 and 11 (and the forward-auth endpoint): 202 with identity
/// headers for a session, 401 for none or anything unparseable.
#[tokio::test]
async fn security_07_11_forward_auth_answers_401_on_anything_it_cannot_parse() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;
    let cookies = b
        .cookie_header(&url::Url::parse(&w.url("/")).unwrap())
        .unwrap();
    let resp = harness::client()
        .get(w.url("/oauth2/auth"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["x-user"], "google:110169484474386276334");
    assert_eq!(resp.headers()["x-user-email"], "alice@example.com");
    for cookie in [
        "",
        "_portcullis=%%%",
        "_portcullis",
        "=;=;=",
        "_portcullis=\"quoted\"",
    ] {
        let mut req = harness::client().get(w.url("/oauth2/auth"));
        if !cookie.is_empty() {
            req = req.header("cookie", cookie);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{cookie:?}"
        );
    }
}

/// SECURITY.md row 14: no metrics or debug endpoint on the public listener.
#[tokio::test]
async fn security_14_no_metrics_on_the_public_listener() {
    let w = World::start("").await;
    for path in [
        "/metrics",
        "/oauth2/metrics",
        "/debug/pprof",
        "/oauth2/debug",
    ] {
        let resp = harness::client().get(w.url(path)).send().await.unwrap();
        assert!(
            resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::NOT_FOUND,
            "{path}: {}",
            resp.status()
        );
    }
    assert_eq!(w.upstream.hits(), 0);
}

/// SECURITY.md row 5: public routes see the path only; forged identity
/// headers are removed on them too (row 6).
#[tokio::test]
async fn security_05_public_routes_cannot_be_widened() {
    let w = World::start(
        "[access]\nskip_auth = [\"^/public/\", \"GET ^/healthz$\"]\nskip_auth_preflight = true\n",
    )
    .await;
    let client = harness::client();
    let resp = client
        .get(w.url("/public/logo.png?v=1"))
        .header("X-User", "google:attacker")
        .header("x_user_email", "ceo@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = json(resp).await;
    assert_eq!(echo["path"], "/public/logo.png");
    assert_eq!(upstream_header(&echo, "x-user"), None);
    assert_eq!(upstream_header(&echo, "x-user-email"), None);
    assert_eq!(upstream_header(&echo, "x_user_email"), None);
    assert_eq!(
        client.get(w.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );

    let before = w.upstream.hits();
    // Protected paths behind a public-looking query: 401. Targets that a
    // framework could read as another path: refused outright (400, rows
    // 18-19; tests/it/gate.rs and tests/it/frameworks.rs go further).
    for (path, want) in [
        ("/private?x=/public/", 401),
        ("/private?/public/", 401),
        ("/private%23/public/", 400),
        ("/public/../private", 400),
        ("/public/%2e%2e/private", 400),
        ("/public%2F..%2Fprivate", 400),
        ("//public/../private", 400),
        ("/public/..%2fprivate", 400),
        ("/public\\..\\private", 400),
    ] {
        // Raw: reqwest would normalise these before sending.
        let status = crate::common::raw_status(&w.url(""), "GET", path, &[]).await;
        assert_eq!(status, want, "{path}");
    }
    let post = client.post(w.url("/healthz")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED, "method-bound rule");
    assert_eq!(
        w.upstream.hits(),
        before,
        "a protected path reached the upstream"
    );

    // CORS preflight passes with the switch on; a plain OPTIONS does not.
    let preflight = client
        .request(reqwest::Method::OPTIONS, w.url("/api/items"))
        .header("origin", "https://other.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    let plain = client
        .request(reqwest::Method::OPTIONS, w.url("/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
}

/// SECURITY.md row 14: health, readiness and metrics live on the admin
/// listener only; the public listener never serves them.
#[tokio::test]
async fn security_14_metrics_only_on_the_admin_listener() {
    let admin = format!("127.0.0.1:{}", harness::free_port());
    let w = World::start_prepared(&format!("[admin]\nlisten = \"{admin}\"\n"), |g| {
        g.fail_discovery(true)
    })
    .await;
    let client = harness::client();
    let get = |path: &str| client.get(format!("http://{admin}{path}")).send();

    // The admin service starts alongside the public one: wait until it answers.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let health = loop {
        match get("/healthz").await {
            Ok(resp) => break resp,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("admin listener: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    assert_eq!(health.status(), StatusCode::OK);
    // The provider is down: not ready, and /readyz says which.
    let resp = get("/readyz").await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.text().await.unwrap().contains("google"));
    w.google.fail_discovery(false);
    w.proxy.wait_for_log("discovered OpenID provider").await;
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);

    let _ = w.signed_in("/").await;
    // Requests are counted when pingora logs them, just after the answer
    // went out: poll until the last one shows (5 s at most).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let metrics = get("/metrics").await.unwrap();
        assert_eq!(metrics.status(), StatusCode::OK);
        let text = metrics.text().await.unwrap();
        if text.contains("outcome=\"proxied\"} 1\n") || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        text.contains("portcullis_requests_total{outcome=\"signed_in\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_requests_total{outcome=\"proxied\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_provider_ready{provider=\"google\"} 1\n"),
        "{text}"
    );

    // The public listener serves none of it.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let resp = client.get(w.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}
