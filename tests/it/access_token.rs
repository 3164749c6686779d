//! `pass_access_token` against the real peer (refresh tokens on, access
//! tokens living a few seconds): the upstream gets the user's access token
//! as `X-Forwarded-Access-Token` (a client's copy never passes); shortly
//! before it expires ten parallel requests cause one refresh, and all ten
//! carry the new token; a revoked refresh token ends the session.

use reqwest::StatusCode;
use url::Url;

use portcullis::access_token::AccessTokens;
use portcullis::session::{unix_now, Sealer, SessionKey};

use crate::support::harness::{self, Browser, Portcullis, BROWSER_ACCEPT};
use crate::support::oidc_peer::{self, OidcPeer, PeerAccount, PeerClient, PeerOptions};
use crate::support::upstream::{self, Upstream};

const CLIENT_ID: &str = "web";
const CLIENT_SECRET: &str = "web-secret-0123456789";
/// The peer's access-token lifetime: refreshed in its last quarter (1 s).
const TTL: u64 = 4;

struct World {
    peer: OidcPeer,
    up: Upstream,
    proxy: Portcullis,
    secret: String,
}

async fn world() -> World {
    let port = harness::free_port();
    let mut client = PeerClient::confidential(
        CLIENT_ID,
        CLIENT_SECRET,
        &[&format!("http://127.0.0.1:{port}/oauth2/callback/acme")],
    );
    client.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
    let peer = oidc_peer::start_with(PeerOptions {
        clients: vec![client],
        accounts: vec![PeerAccount::alice()],
        refresh_tokens: true,
        access_token_ttl: Some(TTL),
        ..PeerOptions::default()
    })
    .await;
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
pass_access_token = true
"#,
            base = harness::base_config(port, &up.base_url, &secret),
            issuer = peer.issuer,
        )
    })
    .await;
    World {
        peer,
        up,
        proxy,
        secret,
    }
}

impl World {
    /// The tokens sealed in the browser's `_portcullis-at` cookie.
    fn tokens(&self, b: &Browser) -> AccessTokens {
        let value = &b.cookie("_portcullis-at").expect("the token cookie").value;
        let sealer = Sealer::new(&SessionKey::from_base64(&self.secret).unwrap(), &[]);
        let bytes = sealer.open("_portcullis-at", value).expect("sealed by us");
        let user = format!("acme:{}", PeerAccount::alice().sub);
        AccessTokens::decode(&bytes, &user).expect("the token payload")
    }

    fn token_requests(&self) -> usize {
        self.peer.logs().matches("POST /token -> 200").count()
    }

    async fn until_refresh_is_due(&self, t: &AccessTokens) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(TTL + 10);
        while !t.needs_refresh(unix_now()) {
            assert!(std::time::Instant::now() < deadline, "never due: {t:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn access_token_upstream_refreshed_once_and_revocation_ends_the_session() {
    oidc_peer::require!();
    let w = world().await;
    let mut b = Browser::new();
    let resp = b.get(&w.proxy.url("/oauth2/start/acme?rd=/hello")).await;
    let authorize = resp.headers()["location"].to_str().unwrap().to_owned();
    let callback = oidc_peer::sign_in(&mut b, &authorize, "alice").await;
    let resp = b.get(&callback).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "{}", w.proxy.logs());
    let first = w.tokens(&b);
    assert!(first.refresh_token.is_some(), "{first:?}");

    // The upstream sees the token; a client's own copy never passes.
    let resp = b
        .send(
            b.request(reqwest::Method::GET, &w.proxy.url("/hello"))
                .header("x-forwarded-access-token", "forged")
                .header("x_forwarded_access_token", "forged2"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = w.up.last_request().unwrap();
    assert_eq!(
        upstream::header(&seen, "x-forwarded-access-token"),
        [first.access_token.as_str()]
    );
    assert!(!seen.to_string().contains("forged"), "{seen}");
    // Forward-auth (nginx auth_request) gets the same token on its 202.
    let resp = b.get(&w.proxy.url("/oauth2/auth")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        resp.headers()["x-forwarded-access-token"],
        first.access_token.as_str()
    );

    // Shortly before it expires: ten parallel requests, one refresh.
    w.until_refresh_is_due(&first).await;
    let cookie = b
        .cookie_header(&Url::parse(&w.proxy.url("/hello")).unwrap())
        .unwrap();
    let before = w.token_requests();
    let hits = w.up.hits();
    let client = harness::client();
    let answers = futures_util::future::join_all((0..10).map(|_| {
        client
            .get(w.proxy.url("/hello"))
            .header("cookie", cookie.as_str())
            .send()
    }))
    .await;
    for a in &answers {
        let a = a.as_ref().expect("answer");
        assert_eq!(a.status(), StatusCode::OK);
        assert!(
            a.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("_portcullis-at=")),
            "the refreshed token is re-sealed in the cookie"
        );
    }
    assert_eq!(w.token_requests(), before + 1, "{}", w.peer.logs());
    let seen: Vec<String> = w.up.requests()[hits..]
        .iter()
        .map(|r| upstream::header(r, "x-forwarded-access-token").concat())
        .collect();
    assert_eq!(seen.len(), 10);
    assert!(
        seen.iter()
            .all(|t| *t == seen[0] && *t != first.access_token),
        "{seen:?}"
    );

    // The browser picks the new cookie up (the old one still gets the same
    // refresh result: no second refresh).
    assert_eq!(b.get(&w.proxy.url("/hello")).await.status(), StatusCode::OK);
    assert_eq!(w.token_requests(), before + 1);
    let second = w.tokens(&b);
    assert_eq!(second.access_token, seen[0]);

    // The provider revokes the refresh token: at the next refresh the
    // session ends (cookies cleared), and a navigation goes to sign-in.
    let revoked = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(w.peer.url("/token/revocation"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("token", second.refresh_token.as_deref().unwrap()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK, "{}", w.peer.logs());
    w.until_refresh_is_due(&second).await;
    let hits = w.up.hits();
    let resp = b
        .send(
            b.request(reqwest::Method::GET, &w.proxy.url("/hello"))
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        w.proxy.logs()
    );
    assert!(
        b.cookie("_portcullis").is_none(),
        "the session cookie is cleared"
    );
    assert!(b.cookie("_portcullis-at").is_none());
    let resp = b
        .send(
            b.request(reqwest::Method::GET, &w.proxy.url("/hello"))
                .header("accept", BROWSER_ACCEPT),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(resp.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/oauth2/sign_in"));
    assert_eq!(
        w.up.hits(),
        hits,
        "nothing reached the app after the refusal"
    );
    for token in [&first.access_token, &second.access_token] {
        assert!(
            !w.proxy.logs().contains(token.as_str()),
            "a token in the log"
        );
    }
}
