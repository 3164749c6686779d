//! The sign-in flow end to end through the real binary, against the mock Google.

use reqwest::StatusCode;

use crate::common::{json, location, upstream_header, World};
use crate::support::harness::Browser;
use crate::support::mock_google::{IssuerStyle, Tamper, TestUser};
use portcullis::session::login_state::{MAX_PENDING_LOGINS, MAX_RETURN_TO_LEN};

const ALICE_SUB: &str = "110169484474386276334";

#[tokio::test]
async fn full_login_reaches_the_upstream_with_identity_headers() {
    let w = World::start("").await;
    let mut b = Browser::new();

    // An unauthenticated navigation is sent to the picker, keeping the path.
    let first = b.get(&w.url("/dashboard?tab=2")).await;
    assert_eq!(first.status(), StatusCode::FOUND);
    assert_eq!(location(&first), "/oauth2/sign_in?rd=/dashboard%3Ftab%3D2");
    assert_eq!(
        w.upstream.hits(),
        0,
        "nothing reaches the upstream unauthenticated"
    );

    let resp = w.sign_in(&mut b, "/dashboard?tab=2").await;
    assert_eq!(resp.status(), StatusCode::OK, "{:#?}", b.hops());
    let echo = json(resp).await;
    assert_eq!(echo["path"], "/dashboard");
    assert_eq!(echo["query"], "tab=2");
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some(&*format!("google:{ALICE_SUB}"))
    );
    assert_eq!(
        upstream_header(&echo, "x-user-provider").as_deref(),
        Some("google")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("Alice Example")
    );
    assert!(upstream_header(&echo, "x-user-picture").is_some_and(|p| p.starts_with("https://")));
    assert_eq!(
        upstream_header(&echo, "x-user-login"),
        None,
        "absent, not empty"
    );

    // The flow used state, nonce and PKCE S256 with the right scopes.
    let auth = w.google.last_authorize().expect("authorize request");
    assert_eq!(auth.param("code_challenge_method"), Some("S256"));
    assert!(auth.param("nonce").is_some_and(|n| n.len() >= 32));
    assert!(auth.param("state").is_some_and(|s| s.len() >= 32));
    assert_eq!(auth.param("scope"), Some("openid email profile"));

    // The session cookie: HttpOnly, SameSite=Lax, Path=/, not Secure on http.
    let session = b.cookie("_portcullis").expect("session cookie");
    let raw = session.raw.to_ascii_lowercase();
    assert!(
        raw.contains("httponly") && raw.contains("samesite=lax") && raw.contains("path=/"),
        "{raw}"
    );
    assert!(!raw.contains("secure"), "{raw}");
    // The login-state cookie is gone.
    assert!(
        b.cookies()
            .iter()
            .all(|c| !c.name.starts_with("_portcullis_login_") || b.cookie(&c.name).is_none()),
        "login-state cookie not cleared: {:#?}",
        b.cookies()
    );

    // /oauth2/userinfo returns the same identity.
    let info = json(b.get(&w.url("/oauth2/userinfo")).await).await;
    assert_eq!(info["user"], format!("google:{ALICE_SUB}"));
    assert_eq!(info["provider"], "google");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["name"], "Alice Example");

    // The picker knows who is signed in and offers a sign-out button.
    let picker = b.get(&w.url("/oauth2/sign_in")).await.text().await.unwrap();
    assert!(
        picker.contains("signed in as <strong>alice@example.com</strong>"),
        "{picker}"
    );
    assert!(picker.contains("action=\"/oauth2/sign_out?rd="), "{picker}");

    // Sign-out clears it: the next visit goes back to the picker.
    let out = b.get(&w.url("/oauth2/sign_out")).await;
    assert_eq!(out.status(), StatusCode::FOUND);
    assert_eq!(location(&out), "/oauth2/sign_in");
    assert!(
        b.cookie("_portcullis").is_none(),
        "session cookie still set"
    );
    let again = b.get(&w.url("/dashboard")).await;
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(
        b.get(&w.url("/oauth2/userinfo")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn unverified_email_is_not_forwarded() {
    let w = World::start("").await;
    w.google.set_auto_approve(Some(TestUser::bob()));
    let (_, echo) = w.signed_in("/").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("google:104735893746372625501")
    );
    assert_eq!(upstream_header(&echo, "x-user-email"), None);
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("Bob Unverified")
    );
}

#[tokio::test]
async fn google_issuer_without_scheme_is_accepted() {
    let w = World::start("").await;
    w.google.set_issuer_style(IssuerStyle::HostOnly);
    let (_, echo) = w.signed_in("/").await;
    assert!(upstream_header(&echo, "x-user").is_some());
}

/// SECURITY.md row 12: every bad ID token is refused; no session results.
#[tokio::test]
async fn security_12_bad_id_tokens_are_rejected() {
    let w = World::start("").await;
    let cases = [
        (Tamper::BadSignature, 401),
        (Tamper::UnknownKid, 401),
        (Tamper::AlgNone, 401),
        (Tamper::WrongIssuer, 401),
        (Tamper::WrongAudience, 401),
        (Tamper::Expired, 401),
        (Tamper::WrongNonce, 401),
        (Tamper::NoNonce, 401),
        (Tamper::NoIdToken, 502),
    ];
    for (tamper, status) in cases {
        w.google.set_tamper(tamper);
        let mut b = Browser::new();
        let authorize = w.start_login(&mut b, "/secret").await;
        let callback = w.provider_answer(&mut b, &authorize).await;
        let code = url::Url::parse(&callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let resp = b.get(&callback).await;
        assert_eq!(resp.status().as_u16(), status, "{tamper:?}");
        assert!(
            b.cookie("_portcullis").is_none(),
            "{tamper:?} gave a session"
        );
        let page = resp.text().await.unwrap();
        assert!(page.contains("Try again"), "{tamper:?}: {page}");
        assert!(!page.contains(&code), "{tamper:?}: the code is on the page");
    }
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test]
async fn security_17_denial_at_the_provider_ends_on_a_clean_error_page() {
    let w = World::start("").await;
    w.google.set_deny(true);
    let mut b = Browser::new();
    let authorize = w.start_login(&mut b, "/x").await;
    let callback = w.provider_answer(&mut b, &authorize).await;
    assert!(callback.contains("error=access_denied"));
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let page = resp.text().await.unwrap();
    assert!(page.contains("cancelled"), "{page}");
    assert!(
        page.contains("/oauth2/start/google?rd=/x"),
        "retry link keeps rd: {page}"
    );
    // The provider's code is logged.
    w.proxy.wait_for_log("access_denied").await;
}

/// SECURITY.md row 1: the callback's state must belong to this browser.
#[tokio::test]
async fn security_01_callback_state_is_bound_to_the_browser() {
    let w = World::start("").await;

    // No login-state cookie at all.
    let mut victim = Browser::new();
    let mut attacker = Browser::new();
    let authorize = w.start_login(&mut attacker, "/").await;
    let attacker_callback = w.provider_answer(&mut attacker, &authorize).await;
    let resp = victim.get(&attacker_callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(victim.cookie("_portcullis").is_none());

    // The victim has a login of its own in progress: another flow's state still fails.
    let _ = w.start_login(&mut victim, "/").await;
    let resp = victim.get(&attacker_callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(victim.cookie("_portcullis").is_none());

    // The state parameter removed or swapped for garbage.
    let mut stripped = url::Url::parse(&attacker_callback).unwrap();
    let kept: Vec<(String, String)> = stripped
        .query_pairs()
        .filter(|(k, _)| k != "state")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    stripped.query_pairs_mut().clear().extend_pairs(kept);
    let stripped = stripped.to_string();
    assert_eq!(
        attacker.get(&stripped).await.status(),
        StatusCode::BAD_REQUEST
    );

    // The attacker's own callback still works for the attacker, once.
    let ok = attacker.get(&attacker_callback).await;
    assert_eq!(ok.status(), StatusCode::FOUND, "{}", w.proxy.logs());
    assert!(attacker.cookie("_portcullis").is_some());
    // ... and a replay is refused (the login state was consumed).
    assert_eq!(
        attacker.get(&attacker_callback).await.status(),
        StatusCode::BAD_REQUEST
    );
}

/// SECURITY.md row 16: logins started in several tabs at once all succeed.
#[tokio::test]
async fn security_16_parallel_logins_in_one_browser_all_succeed() {
    let w = World::start("").await;
    let mut b = Browser::new();
    let mut callbacks = Vec::new();
    for tab in ["/one", "/two", "/three"] {
        let authorize = w.start_login(&mut b, tab).await;
        callbacks.push((tab, w.provider_answer(&mut b, &authorize).await));
    }
    // Finish them in another order than they started.
    for (tab, callback) in callbacks.into_iter().rev() {
        let resp = b.get(&callback).await;
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "tab {tab}: {}",
            w.proxy.logs()
        );
        assert_eq!(location(&resp), tab);
    }
    let echo = json(b.get(&w.url("/two")).await).await;
    assert!(upstream_header(&echo, "x-user").is_some());
}

/// Every start adds a login-state cookie for ten minutes. Twenty starts in
/// one browser (a user clicking "Sign in" again and again, with the longest
/// return path kept) used to push the newest cookie past the 32 KB that the
/// callback scans: the last sign-in then failed as "no longer valid". Each
/// start now clears the oldest, so the browser holds at most four.
#[tokio::test]
async fn twenty_starts_in_one_browser_leave_four_login_states_and_the_last_signs_in() {
    let w = World::start("").await;
    let mut b = Browser::new();
    let rd = format!(
        "/report/{}",
        "r".repeat(MAX_RETURN_TO_LEN - "/report/".len())
    );
    let mut authorize = String::new();
    for _ in 0..20 {
        authorize = w.start_login(&mut b, &rd).await;
    }
    let pending: Vec<_> = b
        .cookies()
        .iter()
        .filter(|c| c.name.starts_with("_portcullis_login_"))
        .collect();
    assert_eq!(pending.len(), MAX_PENDING_LOGINS, "{pending:#?}");
    assert!(pending.iter().all(|c| c.path == "/oauth2/"), "{pending:#?}");
    let jar_bytes: usize = pending
        .iter()
        .map(|c| c.name.len() + c.value.len() + 3)
        .sum();
    assert!(jar_bytes < 8 * 1024, "{jar_bytes} bytes of login state");

    let callback = w.provider_answer(&mut b, &authorize).await;
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "{}", w.proxy.logs());
    assert_eq!(location(&resp), rd);
    assert!(b.cookie("_portcullis").is_some());
    // The callback cleared its own login state; the other three stay.
    let left = b
        .cookies()
        .iter()
        .filter(|c| c.name.starts_with("_portcullis_login_"))
        .count();
    assert_eq!(left, MAX_PENDING_LOGINS - 1);

    // A longer return path is not kept at all: the sign-in returns to `/`.
    let too_long = format!("{rd}x");
    let authorize = w.start_login(&mut b, &too_long).await;
    let callback = w.provider_answer(&mut b, &authorize).await;
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "{}", w.proxy.logs());
    assert_eq!(location(&resp), "/");
}

#[tokio::test]
async fn provider_outages_end_on_error_pages_and_recover() {
    // Discovery down from the start: the button leads to a readable 502,
    // the proxy keeps serving.
    let w = World::start_prepared("", |g| g.fail_discovery(true)).await;
    let mut b = Browser::new();
    let resp = b.get(&w.url("/oauth2/start/google?rd=/a")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let page = resp.text().await.unwrap();
    assert!(page.contains("not reachable"), "{page}");
    assert_eq!(
        b.get(&w.url("/oauth2/sign_in")).await.status(),
        StatusCode::OK
    );

    // Back up: the next attempt works without a restart.
    w.google.fail_discovery(false);
    let authorize = w.start_login(&mut b, "/a").await;

    // Token endpoint failing: 502 page.
    w.google.fail_token(Some(500));
    let callback = w.provider_answer(&mut b, &authorize).await;
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    w.google.fail_token(None);

    // And a whole login still works afterwards.
    let (_, echo) = w.signed_in("/a").await;
    assert!(upstream_header(&echo, "x-user").is_some());
}

#[tokio::test]
async fn wrong_client_secret_ends_on_an_error_page() {
    let w = World::start("").await;
    let bad = crate::support::harness::start(|port| {
        crate::support::harness::google_config(port, &w.upstream.base_url, &w.google, &w.secret, "")
            .replace(crate::common::CLIENT_SECRET, "not-the-secret")
    })
    .await;
    let mut b = Browser::new();
    let first = b.get(&bad.url("/oauth2/start/google?rd=/")).await;
    let callback = w.provider_answer(&mut b, &location(&first)).await;
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let page = resp.text().await.unwrap();
    assert!(page.contains("credentials"), "{page}");
    assert!(!page.contains("not-the-secret"));
    let logs = bad.wait_for_log("path=/oauth2/callback/google").await;
    assert!(logs.contains("invalid_client"), "{logs}");
    assert!(!logs.contains("not-the-secret"), "secret in logs");
}

/// SECURITY.md row 13: no code, token, state, cookie or secret in any log line.
#[tokio::test]
async fn security_13_no_secrets_in_logs() {
    let w = World::start("").await;
    let mut b = Browser::new();
    let authorize = w.start_login(&mut b, "/").await;
    let callback = w.provider_answer(&mut b, &authorize).await;
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let session = b.cookie("_portcullis").unwrap().value.clone();
    let params: Vec<(String, String)> = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let logs = w.proxy.wait_for_log("path=/oauth2/callback/google").await;
    assert!(logs.contains("signed in"), "{logs}");
    for (k, v) in &params {
        if k == "code" || k == "state" {
            assert!(!logs.contains(v.as_str()), "{k} in logs");
        }
    }
    assert!(!logs.contains(&session), "session cookie in logs");
    assert!(!logs.contains(&w.secret), "session secret in logs");
    assert!(
        !logs.contains(crate::common::CLIENT_SECRET),
        "client secret in logs"
    );
}

#[tokio::test]
async fn picker_lists_the_provider_and_keeps_rd() {
    let w = World::start("").await;
    let mut b = Browser::new();
    let resp = b
        .get(&w.url("/oauth2/sign_in?rd=%2Freports%3Fy%3D2024"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = resp.text().await.unwrap();
    assert!(html.contains("Continue with Google"), "{html}");
    let link = crate::common::picker_link(&html, "google");
    assert_eq!(link, "/oauth2/start/google?rd=/reports%3Fy%3D2024");
    assert_eq!(
        b.get(&w.url("/oauth2/start/nope")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn rotated_signing_keys_are_picked_up_without_a_refetch_storm() {
    let w = World::start("").await;
    let _ = w.signed_in("/").await;
    let fetches = w.google.jwks_hits();

    // The provider rotates its key: the next login refetches the JWKS once.
    w.google.rotate_key(false).await;
    let _ = w.signed_in("/").await;
    assert_eq!(w.google.jwks_hits(), fetches + 1);

    // Tokens naming unknown keys within the minute do not refetch again.
    for _ in 0..3 {
        w.google.set_tamper(Tamper::UnknownKid);
        let mut b = Browser::new();
        let authorize = w.start_login(&mut b, "/").await;
        let callback = w.provider_answer(&mut b, &authorize).await;
        assert_eq!(b.get(&callback).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(w.google.jwks_hits(), fetches + 1, "refetch storm");
}

/// RFC 9207: Google has started to add `iss` to the authorization response.
#[tokio::test]
async fn callback_iss_parameter_is_accepted_when_right_and_refused_when_wrong() {
    let w = World::start("").await;
    w.google.set_authorization_iss(true);
    let (_, echo) = w.signed_in("/").await;
    assert!(upstream_header(&echo, "x-user").is_some());

    let mut b = Browser::new();
    let authorize = w.start_login(&mut b, "/").await;
    let callback = w.provider_answer(&mut b, &authorize).await;
    assert!(callback.contains("iss="), "{callback}");
    let mut forged = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let resp = b.get(forged.as_str()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(b.cookie("_portcullis").is_none());
}

#[tokio::test]
async fn a_user_outside_the_allow_list_gets_the_403_page_and_no_session() {
    let w = World::start("[access]\nallowed_email_domains = [\"example.com\"]\n").await;
    let (_, echo) = w.signed_in("/").await;
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("alice@example.com")
    );

    w.google.set_auto_approve(Some(TestUser::bob()));
    let mut b = Browser::new();
    let resp = w.sign_in(&mut b, "/").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        b.cookie("_portcullis").is_none(),
        "no session for a user who may not pass"
    );
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("Bob Unverified") || page.contains("google:"),
        "{page}"
    );
    assert!(page.contains("action=\"/oauth2/sign_out"), "{page}");
}

#[tokio::test]
async fn sign_out_by_post_and_rd() {
    let w = World::start("").await;
    let (mut b, _) = w.signed_in("/").await;
    let resp = b.post_form(&w.url("/oauth2/sign_out?rd=%2Fbye"), &[]).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(location(&resp), "/bye");
    assert!(b.cookie("_portcullis").is_none());
    // HEAD and other methods on our pages.
    let head = b
        .send(b.request(reqwest::Method::HEAD, &w.url("/oauth2/sign_in")))
        .await;
    assert_eq!(head.status(), StatusCode::OK);
    let put = b
        .send(b.request(reqwest::Method::PUT, &w.url("/oauth2/sign_in")))
        .await;
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn discovery_runs_at_start_up_and_is_retried_until_the_provider_is_up() {
    // Up at start: discovered before anyone signs in.
    let w = World::start("").await;
    w.proxy.wait_for_log("discovered OpenID provider").await;
    assert!(w.google.discovery_hits() >= 1);

    // Down at start: the proxy serves anyway and keeps retrying in the background.
    w.google.fail_discovery(true);
    let p = crate::support::harness::start(|port| {
        crate::support::harness::google_config(port, &w.upstream.base_url, &w.google, &w.secret, "")
    })
    .await;
    p.wait_for_log("provider not ready").await;
    let picker = crate::support::harness::client()
        .get(p.url("/oauth2/sign_in"))
        .send()
        .await
        .unwrap();
    assert_eq!(picker.status(), StatusCode::OK);
    w.google.fail_discovery(false);
    let logs = p.wait_for_log("discovered OpenID provider").await;
    assert!(logs.contains("retry_in"), "{logs}");
}
