//! Sign-out at the provider (`sign_out_at_provider`, OpenID Connect
//! RP-Initiated Logout) against the real peer: after Portcullis's sign-out
//! and the peer's confirmation, the peer's own session is gone, so the next
//! sign-in asks for the login again (before, it was silent).

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use url::Url;

use crate::support::harness::{self, Browser, Portcullis};
use crate::support::oidc_peer::{self, OidcPeer, PeerAccount, PeerClient};
use crate::support::upstream::{self, Upstream};

const CLIENT_ID: &str = "web";
const CLIENT_SECRET: &str = "web-secret-0123456789";

struct World {
    peer: OidcPeer,
    _up: Upstream,
    proxy: Portcullis,
}

async fn world(sign_out_at_provider: bool) -> World {
    let port = harness::free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let mut client = PeerClient::confidential(
        CLIENT_ID,
        CLIENT_SECRET,
        &[&format!("{origin}/oauth2/callback/acme")],
    );
    client.post_logout_redirect_uris = vec![format!("{origin}/bye")];
    let peer = oidc_peer::start(vec![client], vec![PeerAccount::alice()]).await;
    let up = upstream::start().await;
    let secret = harness::session_secret();
    let proxy = harness::start_at(port, |port| {
        format!(
            r#"{base}
[providers.acme]
kind = "oidc"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
sign_out_at_provider = {sign_out_at_provider}

[access]
skip_auth = ["^/bye$"]
"#,
            base = harness::base_config(port, &up.base_url, &secret),
            issuer = peer.issuer,
        )
    })
    .await;
    World {
        peer,
        _up: up,
        proxy,
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()[LOCATION].to_str().unwrap().to_owned()
}

impl World {
    async fn authorize_url(&self, b: &mut Browser) -> String {
        let resp = b.get(&self.proxy.url("/oauth2/start/acme?rd=/hello")).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{}", self.proxy.logs());
        location(&resp)
    }

    /// Follows the peer's redirects from `authorize`: `Ok(callback URL)` when
    /// the peer sends the browser back without showing a page (a silent
    /// sign-in), `Err(page)` when it shows one (its login form).
    async fn silently(&self, b: &mut Browser, authorize: &str) -> Result<String, String> {
        let peer = Url::parse(&self.peer.issuer).unwrap().origin();
        let mut url = Url::parse(authorize).unwrap();
        for _ in 0..10 {
            let resp = b.get(url.as_str()).await;
            if resp.status().is_redirection() {
                let next = url.join(&location(&resp)).unwrap();
                if next.origin() != peer {
                    return Ok(next.to_string());
                }
                url = next;
                continue;
            }
            return Err(resp.text().await.unwrap_or_default());
        }
        panic!("the peer kept redirecting");
    }

    async fn finish(&self, b: &mut Browser, callback: &str) {
        let resp = b.get(callback).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{}", self.proxy.logs());
        assert_eq!(location(&resp), "/hello");
        let resp = b.get(&self.proxy.url("/hello")).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    /// A first sign-in (the peer's login page), then a second one that the
    /// peer's session makes silent.
    async fn signed_in_twice(&self, b: &mut Browser) {
        let authorize = self.authorize_url(b).await;
        let callback = oidc_peer::sign_in(b, &authorize, "alice").await;
        self.finish(b, &callback).await;
        let authorize = self.authorize_url(b).await;
        let callback = self
            .silently(b, &authorize)
            .await
            .expect("with the peer's session, a second sign-in shows no page");
        self.finish(b, &callback).await;
    }
}

fn xsrf(page: &str) -> String {
    let at = page.find("name=\"xsrf\" value=\"").expect("xsrf field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn sign_out_ends_the_provider_session_too() {
    oidc_peer::require!();
    let w = world(true).await;
    let mut b = Browser::new();
    w.signed_in_twice(&mut b).await;
    assert!(
        b.cookie("_portcullis-idt").is_some(),
        "the ID token is kept"
    );

    // Sign-out: the local session ends, the browser goes to the peer.
    let resp = b.get(&w.proxy.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let end = Url::parse(&location(&resp)).unwrap();
    assert!(
        end.as_str()
            .starts_with(&format!("{}/session/end?", w.peer.issuer)),
        "{end}"
    );
    let params: Vec<(String, String)> = end.query_pairs().into_owned().collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        param("post_logout_redirect_uri").as_deref(),
        Some(w.proxy.url("/bye").as_str())
    );
    assert_eq!(param("client_id").as_deref(), Some(CLIENT_ID));
    assert!(param("id_token_hint").is_some_and(|t| t.split('.').count() == 3));
    assert!(
        b.cookie("_portcullis-idt").is_none(),
        "cleared with the session"
    );
    let resp = b
        .request(reqwest::Method::GET, &w.proxy.url("/hello"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // The peer asks; the user confirms; back to rd on our site.
    let resp = b.get(end.as_str()).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", w.peer.logs());
    let page = resp.text().await.unwrap();
    let confirm = w.peer.url("/session/end/confirm");
    let resp = b
        .post_form(&confirm, &[("xsrf", &xsrf(&page)), ("logout", "yes")])
        .await;
    assert!(resp.status().is_redirection(), "{}", w.peer.logs());
    assert_eq!(location(&resp), w.proxy.url("/bye"));

    // The peer's session is gone: signing in again asks for the login.
    let authorize = w.authorize_url(&mut b).await;
    let page = w
        .silently(&mut b, &authorize)
        .await
        .expect_err("after sign-out the peer must ask for the login again");
    assert!(page.contains("name=\"prompt\" value=\"login\""), "{page}");
}

#[tokio::test]
async fn without_sign_out_at_provider_the_provider_session_stays() {
    oidc_peer::require!();
    let w = world(false).await;
    let mut b = Browser::new();
    w.signed_in_twice(&mut b).await;
    assert!(b.cookie("_portcullis-idt").is_none(), "no ID token kept");
    let resp = b.get(&w.proxy.url("/oauth2/sign_out?rd=/bye")).await;
    assert_eq!(location(&resp), "/bye");
    // Signing in again is silent: the peer still knows the browser.
    let authorize = w.authorize_url(&mut b).await;
    let callback = w.silently(&mut b, &authorize).await.expect("silent");
    w.finish(&mut b, &callback).await;
}

#[tokio::test]
async fn without_an_end_session_endpoint_one_warning_and_local_sign_out() {
    // The mock Google's discovery names no end_session_endpoint (like Google's).
    let google = crate::support::mock_google::start("so-client", "so-secret").await;
    let up = upstream::start().await;
    let secret = harness::session_secret();
    let proxy = harness::start(|port| {
        harness::google_config(port, &up.base_url, &google, &secret, "").replace(
            "[providers.google]\n",
            "[providers.google]\nsign_out_at_provider = true\n",
        )
    })
    .await;
    let logs = proxy.wait_for_log("names no end_session_endpoint").await;
    assert_eq!(logs.matches("names no end_session_endpoint").count(), 1);
    let resp = harness::client()
        .get(proxy.url("/oauth2/sign_out?rd=/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&resp), "/x");
}
