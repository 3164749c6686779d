//! Sign in with X, both protocols, end to end through the proxy against the
//! local X (tests/it/support/mock_x.rs, written from X's docs).

use reqwest::StatusCode;

use crate::common::{json, location, upstream_header, urlencode};
use crate::support::harness::{self, Browser, Portcullis};
use crate::support::mock_x::{self, MockX, XUser};
use crate::support::upstream::{self, Upstream};

const CLIENT_ID: &str = "x-oauth2-client";
const CLIENT_SECRET: &str = "x-oauth2-secret";
const CONSUMER_KEY: &str = "x-consumer-key";
const CONSUMER_SECRET: &str = "x-consumer-secret";

struct XWorld {
    x: MockX,
    upstream: Upstream,
    proxy: Portcullis,
}

/// Two providers: `twitter` (OAuth 2.0) and `xlegacy` (OAuth 1.0a).
fn config(
    port: u16,
    upstream: &str,
    x: &MockX,
    secret: &str,
    extra_oauth2: &str,
    consumer_secret: &str,
) -> String {
    format!(
        r#"{base}
[providers.twitter]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
authorize_url = "{authorize}"
token_url = "{token}"
userinfo_url = "{me}"
{extra_oauth2}

[providers.xlegacy]
kind = "twitter"
display_name = "X (OAuth 1.0a)"
protocol = "oauth1"
client_id = "{CONSUMER_KEY}"
client_secret = "{consumer_secret}"
request_token_url = "{request_token}"
authorize_url = "{authenticate}"
access_token_url = "{access_token}"
userinfo_url = "{verify}"
"#,
        base = harness::base_config(port, upstream, secret),
        authorize = x.authorize_url(),
        token = x.token_url(),
        me = x.users_me_url(),
        request_token = x.request_token_url(),
        authenticate = x.authenticate_url(),
        access_token = x.access_token_url(),
        verify = x.verify_credentials_url(),
    )
}

impl XWorld {
    async fn start(extra_oauth2: &str) -> XWorld {
        Self::start_with(extra_oauth2, CONSUMER_SECRET).await
    }

    async fn start_with(extra_oauth2: &str, consumer_secret: &str) -> XWorld {
        let x = mock_x::start(CLIENT_ID, CLIENT_SECRET, CONSUMER_KEY, CONSUMER_SECRET).await;
        x.set_auto_approve(Some(XUser::jack()));
        let upstream = upstream::start().await;
        let secret = harness::session_secret();
        let proxy = harness::start(|port| {
            config(
                port,
                &upstream.base_url,
                &x,
                &secret,
                extra_oauth2,
                consumer_secret,
            )
        })
        .await;
        XWorld { x, upstream, proxy }
    }

    async fn start_login(&self, b: &mut Browser, provider: &str, rd: &str) -> reqwest::Response {
        b.get(
            &self
                .proxy
                .url(&format!("/oauth2/start/{provider}?rd={}", urlencode(rd))),
        )
        .await
    }

    /// start -> X (auto-approve) -> the callback URL X sends the browser to.
    async fn callback_for(&self, b: &mut Browser, provider: &str, rd: &str) -> String {
        let resp = self.start_login(b, provider, rd).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{}", self.proxy.logs());
        let at_x = b.get(&location(&resp)).await;
        assert_eq!(at_x.status(), StatusCode::FOUND, "X did not redirect back");
        location(&at_x)
    }

    async fn signed_in(&self, provider: &str) -> serde_json::Value {
        let mut b = Browser::new();
        let callback = self.callback_for(&mut b, provider, "/home").await;
        let resp = b.get(&callback).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{}", self.proxy.logs());
        assert_eq!(location(&resp), "/home");
        let resp = b.get(&self.proxy.url("/home")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        json(resp).await
    }
}

#[tokio::test]
async fn oauth2_with_pkce_signs_in_with_and_without_email() {
    // With the users.email scope configured: X-User-Email from confirmed_email.
    let w = XWorld::start("scopes = [\"users.read\", \"tweet.read\", \"users.email\"]").await;
    let echo = w.signed_in("twitter").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("twitter:12")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-provider").as_deref(),
        Some("twitter")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-login").as_deref(),
        Some("jack")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("jack")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("jack@example.com")
    );
    assert!(upstream_header(&echo, "x-user-picture").is_some());
    let auth = w.x.last_authorize().expect("authorize");
    assert_eq!(auth.param("code_challenge_method"), Some("S256"));
    assert_eq!(
        auth.param("scope"),
        Some("users.read tweet.read users.email")
    );
    let token = w.x.last_token_request().expect("token request");
    assert!(
        token.has_basic_auth(),
        "confidential client must use HTTP Basic"
    );
    assert!(token.param("code_verifier").is_some());

    // A user without an email.
    w.x.set_auto_approve(Some(XUser::noemail()));
    let echo = w.signed_in("twitter").await;
    assert_eq!(upstream_header(&echo, "x-user-email"), None);
    assert!(upstream_header(&echo, "x-user").is_some_and(|u| u.starts_with("twitter:")));
    assert_eq!(w.upstream.hits(), 2);
}

#[tokio::test]
async fn oauth2_without_the_email_scope_sends_no_email() {
    let w = XWorld::start("").await;
    let echo = w.signed_in("twitter").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("twitter:12")
    );
    assert_eq!(upstream_header(&echo, "x-user-email"), None);
    assert_eq!(
        w.x.last_authorize().unwrap().param("scope"),
        Some("users.read tweet.read")
    );
}

#[tokio::test]
async fn oauth2_denial_wrong_secret_and_pkce_mismatch_end_on_error_pages() {
    let w = XWorld::start("").await;

    // Denial.
    w.x.set_deny(true);
    let mut b = Browser::new();
    let callback = w.callback_for(&mut b, "twitter", "/").await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("cancelled"));
    w.x.set_deny(false);

    // A code used with another login's PKCE verifier: X refuses it.
    let mut b = Browser::new();
    let first = w.callback_for(&mut b, "twitter", "/a").await;
    let second = w.callback_for(&mut b, "twitter", "/b").await;
    let param = |u: &str, k: &str| {
        url::Url::parse(u)
            .unwrap()
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let mut swapped = url::Url::parse(&first).unwrap();
    swapped
        .query_pairs_mut()
        .clear()
        .append_pair("state", &param(&second, "state"))
        .append_pair("code", &param(&first, "code"));
    let resp = b.get(swapped.as_str()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(b.cookie("_portcullis").is_none());
    let logs = w.proxy.wait_for_log("invalid_request").await;
    assert!(logs.contains("sign-in failed"), "{logs}");

    // A wrong client secret: X's unauthorized_client, a 502 "credentials" page.
    let bad = harness::start(|port| {
        config(
            port,
            &w.upstream.base_url,
            &w.x,
            &harness::session_secret(),
            "",
            CONSUMER_SECRET,
        )
        .replace(CLIENT_SECRET, "wrong-secret")
    })
    .await;
    let mut b = Browser::new();
    let start = b.get(&bad.url("/oauth2/start/twitter?rd=/")).await;
    let at_x = b.get(&location(&start)).await;
    let resp = b.get(&location(&at_x)).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("credentials") && !page.contains("wrong-secret"),
        "{page}"
    );
}

#[tokio::test]
async fn oauth1a_signs_in_with_and_without_email() {
    let admin = format!("127.0.0.1:{}", harness::free_port());
    let w = XWorld::start(&format!("[admin]\nlisten = \"{admin}\"\n")).await;
    let echo = w.signed_in("xlegacy").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("xlegacy:12")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-login").as_deref(),
        Some("jack")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("jack@example.com")
    );
    // Every signed call was accepted by the mock's independent verifier.
    let rejected: Vec<_> =
        w.x.oauth1_requests()
            .into_iter()
            .filter(|r| r.rejected.is_some())
            .collect();
    assert!(rejected.is_empty(), "{rejected:#?}");
    assert_eq!(w.x.request_token_hits(), 1);
    assert_eq!(w.x.access_token_hits(), 1);
    assert_eq!(w.x.verify_credentials_hits(), 1);
    // The OAuth 1.0a calls are timed like the OAuth 2.0 steps: request and
    // access token under `token`, verify_credentials under `userinfo`.
    let metrics = crate::ops::admin_get(&admin, "/metrics").await;
    for (step, n) in [("token", 2), ("userinfo", 1)] {
        let line = format!(
            "portcullis_provider_request_duration_seconds_count{{provider=\"xlegacy\",step=\"{step}\"}} {n}\n"
        );
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }

    w.x.set_auto_approve(Some(XUser::noemail()));
    let echo = w.signed_in("xlegacy").await;
    assert_eq!(upstream_header(&echo, "x-user-email"), None);
}

#[tokio::test]
async fn security_17_oauth1a_denied_and_tampered_callback_are_refused() {
    let w = XWorld::start("").await;

    // denied= at X.
    w.x.set_deny(true);
    let mut b = Browser::new();
    let callback = w.callback_for(&mut b, "xlegacy", "/").await;
    assert!(callback.contains("denied="), "{callback}");
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    w.x.set_deny(false);

    // A callback whose oauth_token is not the request token issued to this browser.
    let mut b = Browser::new();
    let mine = w.callback_for(&mut b, "xlegacy", "/").await;
    let mut other_browser = Browser::new();
    let theirs = w.callback_for(&mut other_browser, "xlegacy", "/").await;
    let token = |u: &str| {
        url::Url::parse(u)
            .unwrap()
            .query_pairs()
            .find(|(n, _)| n == "oauth_token")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let tampered = mine.replace(&token(&mine), &token(&theirs));
    assert_ne!(tampered, mine);
    let before = w.x.access_token_hits();
    let resp = b.get(&tampered).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(b.cookie("_portcullis").is_none());
    assert_eq!(w.x.access_token_hits(), before, "refused before asking X");
    // The other browser's own callback works.
    assert_eq!(other_browser.get(&theirs).await.status(), StatusCode::FOUND);
    assert!(other_browser.cookie("_portcullis").is_some());
}

#[tokio::test]
async fn oauth1a_wrong_consumer_secret_is_a_clean_502() {
    let w = XWorld::start_with("", "not-the-consumer-secret").await;
    let mut b = Browser::new();
    let resp = w.start_login(&mut b, "xlegacy", "/").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("credentials") && !page.contains("not-the-consumer-secret"),
        "{page}"
    );
    let rejected: Vec<_> =
        w.x.oauth1_requests()
            .into_iter()
            .filter(|r| r.rejected.is_some())
            .collect();
    assert_eq!(rejected.len(), 1, "X's verifier rejected the signature");
}

#[tokio::test]
async fn picker_shows_both_x_buttons() {
    let w = XWorld::start("").await;
    let html = harness::client()
        .get(w.proxy.url("/oauth2/sign_in"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Continue with X<"), "{html}");
    assert!(html.contains("Continue with X (OAuth 1.0a)"), "{html}");
}
