//! OpenID Connect against a real, independent provider: panva's certified
//! `oidc-provider` (tests/oidc-peer), driven through its own login and
//! consent pages. Two providers point at it at once: a Google-kind one
//! (issuer override) and a generic `kind = "oidc"` one.

use reqwest::StatusCode;

use crate::common::{json, location, upstream_header, urlencode};
use crate::support::harness::{self, Browser, Portcullis};
use crate::support::oidc_peer::{self, OidcPeer, PeerAccount, PeerClient};
use crate::support::upstream::{self, Upstream};

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-peer-secret";

struct PeerWorld {
    peer: OidcPeer,
    upstream: Upstream,
    proxy: Portcullis,
}

fn config(port: u16, upstream: &str, issuer: &str, secret: &str, client_secret: &str) -> String {
    format!(
        r#"{base}
[providers.google]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{client_secret}"

[providers.acme]
kind = "oidc"
display_name = "Acme SSO"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{client_secret}"
"#,
        base = harness::base_config(port, upstream, secret),
    )
}

fn callbacks(port: u16) -> Vec<String> {
    ["google", "acme"]
        .iter()
        .map(|p| format!("http://127.0.0.1:{port}/oauth2/callback/{p}"))
        .collect()
}

async fn start_peer(port: u16) -> OidcPeer {
    let uris = callbacks(port);
    let uris: Vec<&str> = uris.iter().map(String::as_str).collect();
    oidc_peer::start(
        vec![PeerClient::confidential(CLIENT_ID, CLIENT_SECRET, &uris)],
        vec![PeerAccount::alice(), PeerAccount::bob()],
    )
    .await
}

impl PeerWorld {
    async fn start() -> PeerWorld {
        Self::start_with_secret(CLIENT_SECRET).await
    }

    /// Portcullis configured with `client_secret` (the peer knows CLIENT_SECRET).
    async fn start_with_secret(client_secret: &str) -> PeerWorld {
        let port = harness::free_port();
        let peer = start_peer(port).await;
        let upstream = upstream::start().await;
        let secret = harness::session_secret();
        let proxy = harness::start_at(port, |port| {
            config(
                port,
                &upstream.base_url,
                &peer.issuer,
                &secret,
                client_secret,
            )
        })
        .await;
        PeerWorld {
            peer,
            upstream,
            proxy,
        }
    }

    /// The authorize URL Portcullis sends the browser to for `provider`.
    async fn start_login(&self, b: &mut Browser, provider: &str, rd: &str) -> String {
        let resp = b
            .get(
                &self
                    .proxy
                    .url(&format!("/oauth2/start/{provider}?rd={}", urlencode(rd))),
            )
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "start {provider}: {}",
            self.proxy.logs()
        );
        location(&resp)
    }

    /// A whole sign-in through the peer's pages; returns the upstream echo.
    async fn sign_in(&self, b: &mut Browser, provider: &str, login: &str) -> serde_json::Value {
        let authorize = self.start_login(b, provider, "/hello").await;
        assert!(authorize.starts_with(&self.peer.issuer), "{authorize}");
        // The peer advertises S256, so PKCE is used.
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        let callback = oidc_peer::sign_in(b, &authorize, login).await;
        let resp = b.get(&callback).await;
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "callback: {}\npeer:\n{}",
            self.proxy.logs(),
            self.peer.logs()
        );
        assert_eq!(location(&resp), "/hello");
        let resp = b.get(&self.proxy.url("/hello")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        json(resp).await
    }
}

#[tokio::test]
async fn google_kind_and_oidc_kind_both_sign_in_against_the_real_peer() {
    oidc_peer::require!();
    let w = PeerWorld::start().await;

    // The picker shows both providers.
    let html = harness::client()
        .get(w.proxy.url("/oauth2/sign_in"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Continue with Google"), "{html}");
    assert!(html.contains("Continue with Acme SSO"), "{html}");

    // The generic provider: X-User is acme:{sub}; email (verified) and
    // profile claims come from the peer's userinfo endpoint.
    let mut b = Browser::new();
    let echo = w.sign_in(&mut b, "acme", "alice").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("acme:248289761001")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-provider").as_deref(),
        Some("acme")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("Alice Adams")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-login").as_deref(),
        Some("alice")
    );
    assert_eq!(
        upstream_header(&echo, "x-user-picture").as_deref(),
        Some("https://pictures.example.com/alice.png")
    );

    // The Google-kind provider against the same peer, in a fresh browser,
    // with an unverified email: no X-User-Email.
    let mut b = Browser::new();
    let echo = w.sign_in(&mut b, "google", "bob").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("google:248289761002")
    );
    assert_eq!(upstream_header(&echo, "x-user-email"), None);
    assert_eq!(
        upstream_header(&echo, "x-user-name").as_deref(),
        Some("Bob Brown")
    );
    assert_eq!(
        w.upstream.hits(),
        2,
        "only the two signed-in requests reached the app"
    );
}

#[tokio::test]
async fn each_callback_accepts_only_its_own_providers_state() {
    oidc_peer::require!();
    let w = PeerWorld::start().await;
    let mut b = Browser::new();
    let authorize = w.start_login(&mut b, "acme", "/").await;
    let callback = oidc_peer::sign_in(&mut b, &authorize, "alice").await;
    assert!(callback.contains("/oauth2/callback/acme"), "{callback}");
    // Deliver acme's answer to google's callback: refused, no session.
    let wrong = callback.replace("/oauth2/callback/acme", "/oauth2/callback/google");
    let resp = b.get(&wrong).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(b.cookie("_portcullis").is_none());
    // The right callback still works.
    assert_eq!(b.get(&callback).await.status(), StatusCode::FOUND);
    assert!(b.cookie("_portcullis").is_some());
}

#[tokio::test]
async fn wrong_client_secret_ends_on_a_clean_error_page() {
    oidc_peer::require!();
    let w = PeerWorld::start_with_secret("not-the-right-secret").await;
    let mut b = Browser::new();
    let authorize = w.start_login(&mut b, "acme", "/").await;
    let callback = oidc_peer::sign_in(&mut b, &authorize, "alice").await;
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let page = resp.text().await.unwrap();
    assert!(page.contains("credentials"), "{page}");
    assert!(!page.contains("not-the-right-secret"));
    let logs = w.proxy.wait_for_log("path=/oauth2/callback/acme").await;
    assert!(logs.contains("invalid_client"), "{logs}");
    assert!(!logs.contains("not-the-right-secret"));
    assert!(b.cookie("_portcullis").is_none());
}

#[tokio::test]
async fn denying_consent_ends_on_access_denied() {
    oidc_peer::require!();
    let w = PeerWorld::start().await;
    let mut b = Browser::new();
    let authorize = w.start_login(&mut b, "acme", "/after").await;
    let callback = oidc_peer::deny(&mut b, &authorize, "alice").await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let page = resp.text().await.unwrap();
    assert!(page.contains("/oauth2/start/acme?rd=/after"), "{page}");
    w.proxy.wait_for_log("access_denied").await;
}

/// A captured callback replayed with its login-state cookie: the peer
/// refuses the used code (invalid_grant) and no session results.
#[tokio::test]
async fn a_replayed_code_is_refused_by_the_peer() {
    oidc_peer::require!();
    let w = PeerWorld::start().await;
    let mut b = Browser::new();
    let authorize = w.start_login(&mut b, "acme", "/").await;
    let callback = oidc_peer::sign_in(&mut b, &authorize, "alice").await;
    let login_cookie = b
        .cookies()
        .iter()
        .find(|c| c.name.starts_with("_portcullis_login_"))
        .cloned()
        .expect("login-state cookie");
    assert_eq!(b.get(&callback).await.status(), StatusCode::FOUND);

    let mut attacker = Browser::new();
    attacker.set_cookie(
        "127.0.0.1",
        &login_cookie.name,
        &login_cookie.value,
        "/oauth2/callback",
    );
    let resp = attacker.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(attacker.cookie("_portcullis").is_none());
    let logs = w.proxy.wait_for_log("invalid_grant").await;
    assert!(logs.contains("sign-in failed"), "{logs}");
}

/// The peer restarts with a new signing key: the next login works without
/// restarting Portcullis (unknown kid -> JWKS refetch).
#[tokio::test]
async fn rotated_peer_keys_are_picked_up_without_a_restart() {
    oidc_peer::require!();
    let mut w = PeerWorld::start().await;
    let echo = w.sign_in(&mut Browser::new(), "acme", "alice").await;
    assert!(upstream_header(&echo, "x-user").is_some());

    w.peer.restart(true).await;
    let echo = w.sign_in(&mut Browser::new(), "acme", "alice").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("acme:248289761001")
    );
    w.proxy
        .wait_for_log("refetched signing keys for an unknown key id")
        .await;
}

/// The peer is down when Portcullis starts: the proxy serves, the button
/// gives a "provider unavailable" page, and once the peer is up sign-in
/// works without a restart.
#[tokio::test]
async fn peer_down_at_start_up_then_up() {
    oidc_peer::require!();
    let port = harness::free_port();
    let mut peer = start_peer(port).await;
    let issuer = peer.issuer.clone();
    let peer_port = peer.port;
    peer.stop();
    let upstream = upstream::start().await;
    let secret = harness::session_secret();
    let proxy = harness::start_at(port, |port| {
        config(port, &upstream.base_url, &issuer, &secret, CLIENT_SECRET)
    })
    .await;
    proxy.wait_for_log("provider not ready").await;
    let mut b = Browser::new();
    let resp = b.get(&proxy.url("/oauth2/start/acme?rd=/")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(resp.text().await.unwrap().contains("not reachable"));

    // Up again on the same port: the background retry discovers it.
    let uris = callbacks(port);
    let uris: Vec<&str> = uris.iter().map(String::as_str).collect();
    let peer = oidc_peer::start_on(
        peer_port,
        vec![PeerClient::confidential(CLIENT_ID, CLIENT_SECRET, &uris)],
        vec![PeerAccount::alice()],
    )
    .await;
    assert_eq!(peer.issuer, issuer);
    let w = PeerWorld {
        peer,
        upstream,
        proxy,
    };
    let echo = w.sign_in(&mut b, "acme", "alice").await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("acme:248289761001")
    );
}
