//! Bearer tokens for API clients (SPEC.md "Identity for apps and APIs"):
//! `accept_bearer_tokens` on an OIDC provider, against the real peer
//! (oidc-provider issuing JWT access tokens by the client-credentials grant).
//! Accepted: the peer's token. Refused with 401 and `WWW-Authenticate:
//! Bearer error="invalid_token"`: wrong issuer, wrong audience, expired,
//! `alg: none`, HS256 keyed with the public key, an unknown key, an opaque
//! token. Access rules apply to bearer users like to sessions.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::{BigUint, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::Sha256;

use portcullis::session::unix_now;

use crate::support::harness::{self, Portcullis};
use crate::support::oidc_peer::{self, OidcPeer, PeerClient, PeerOptions};
use crate::support::upstream::{self, Upstream};

const AUDIENCE: &str = "api://app";
const API_CLIENT: &str = "svc-client";
const API_SECRET: &str = "svc-secret-0123456789";

/// The peer's RSA signing key, from its private JWKS file.
fn peer_key(peer: &OidcPeer) -> (RsaPrivateKey, String) {
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(peer.keys_file()).expect("peer keys")).unwrap();
    let k = &jwks["keys"][0];
    let n = |name: &str| {
        BigUint::from_bytes_be(
            &URL_SAFE_NO_PAD
                .decode(k[name].as_str().expect("JWK member"))
                .expect("base64url"),
        )
    };
    let key = RsaPrivateKey::from_components(n("n"), n("e"), n("d"), vec![n("p"), n("q")])
        .expect("RSA key");
    (key, k["kid"].as_str().unwrap().to_owned())
}

fn sign_rs256(key: &RsaPrivateKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

struct World {
    peer: OidcPeer,
    up: Upstream,
    secret: String,
}

impl World {
    async fn start() -> World {
        let peer = oidc_peer::start_with(PeerOptions {
            clients: vec![
                PeerClient::confidential(
                    "web",
                    "web-secret-0123456789",
                    &["http://127.0.0.1:9/cb"],
                ),
                PeerClient::api(API_CLIENT, API_SECRET),
            ],
            resource_server: Some((AUDIENCE.to_owned(), 300)),
            ..PeerOptions::default()
        })
        .await;
        World {
            peer,
            up: upstream::start().await,
            secret: harness::session_secret(),
        }
    }

    /// Portcullis with the peer as provider `acme`; `bearer` is added to its table.
    async fn portcullis(&self, bearer: &str) -> Portcullis {
        harness::start(|port| {
            format!(
                r#"{base}
[providers.acme]
kind = "oidc"
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret-0123456789"
{bearer}

[access]
allowed_users = ["acme:{API_CLIENT}"]

[[routes]]
path = "^/admin/"
allowed_users = ["acme:somebody-else"]
"#,
                base = harness::base_config(port, &self.up.base_url, &self.secret),
                issuer = self.peer.issuer,
            )
        })
        .await
    }
}

async fn get(proxy: &Portcullis, path: &str, token: &str) -> reqwest::Response {
    harness::client()
        .get(proxy.url(path))
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn bearer_tokens_from_the_peer_accepted_forgeries_refused() {
    oidc_peer::require!();
    let w = World::start().await;
    let proxy = w
        .portcullis(&format!(
            "accept_bearer_tokens = true\nbearer_audiences = [\"{AUDIENCE}\"]"
        ))
        .await;
    let token = w.peer.client_credentials(API_CLIENT, API_SECRET).await;
    let real = claims_of(&token);
    assert_eq!(real["aud"], AUDIENCE, "{real}");
    assert_eq!(real["sub"], API_CLIENT, "{real}");

    // The peer's token: in, as acme:svc-client; Authorization not passed on.
    let before = w.up.hits();
    let resp = get(&proxy, "/api/items", &token).await;
    assert_eq!(resp.status(), 200, "{}", proxy.logs());
    assert_eq!(w.up.hits(), before + 1);
    let seen = w.up.last_request().unwrap();
    assert_eq!(
        upstream::header(&seen, "x-user"),
        [format!("acme:{API_CLIENT}").as_str()]
    );
    assert!(
        upstream::header(&seen, "authorization").is_empty(),
        "{seen}"
    );

    // Access rules apply to bearer users: a route for someone else.
    let resp = get(&proxy, "/admin/panel", &token).await;
    assert_eq!(resp.status(), 403);
    // An API client's answer: JSON and RFC 6750's challenge, not the
    // browser page offering a sign-in.
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\""
    );
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = resp.json().await.expect("a JSON 403");
    assert_eq!(body["error"], "forbidden");
    assert_eq!(w.up.hits(), before + 1);

    // Forgeries, each signed (where signed) with the peer's own key.
    let (key, kid) = peer_key(&w.peer);
    let now = unix_now();
    let good = json!({
        "iss": w.peer.issuer, "sub": API_CLIENT, "aud": AUDIENCE,
        "iat": now, "exp": now + 300, "client_id": API_CLIENT,
    });
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    // Our own forgery with good claims passes: the refusals below are about
    // what each one changes, not about how it was made.
    let control = sign_rs256(&key, &header, &good);
    assert_eq!(get(&proxy, "/api/items", &control).await.status(), 200);
    let before = w.up.hits();

    let other_key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let hs256 = {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(good.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(public_pem.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong issuer",
            sign_rs256(&key, &header, &with("iss", json!("http://127.0.0.1:9"))),
        ),
        (
            "wrong audience",
            sign_rs256(&key, &header, &with("aud", json!("api://other"))),
        ),
        (
            "expired",
            sign_rs256(&key, &header, &with("exp", json!(now - 3600))),
        ),
        (
            "not yet valid",
            sign_rs256(&key, &header, &with("nbf", json!(now + 3600))),
        ),
        ("alg none", none),
        ("HS256 keyed with the public key", hs256),
        (
            "another key",
            sign_rs256(&other_key, &json!({"alg": "RS256", "kid": "nope"}), &good),
        ),
        ("tampered", {
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(with("sub", json!("admin")).to_string());
            parts.join(".")
        }),
        ("opaque", "2YotnFZFEjr1zCsicMWpAA".to_owned()),
    ];
    for (what, forged) in &cases {
        let resp = get(&proxy, "/api/items", forged).await;
        assert_eq!(resp.status(), 401, "{what}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token""#),
            "{what}: {challenge}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token", "{what}: {body}");
        if *what == "opaque" {
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("not a JWT"),
                "{body}"
            );
        }
    }
    assert_eq!(w.up.hits(), before, "a refused token reached the upstream");
    assert!(
        !proxy.logs().contains(&token),
        "a token was written to the log"
    );
}

#[tokio::test]
async fn authorization_passed_only_when_asked_and_bearer_ignored_when_off() {
    oidc_peer::require!();
    let w = World::start().await;
    let token = w.peer.client_credentials(API_CLIENT, API_SECRET).await;

    // pass_authorization_header = true: the app gets the header unchanged.
    let passing = w
        .portcullis(&format!(
            "accept_bearer_tokens = true\nbearer_audiences = [\"{AUDIENCE}\"]\npass_authorization_header = true"
        ))
        .await;
    assert_eq!(get(&passing, "/api/x", &token).await.status(), 200);
    let seen = w.up.last_request().unwrap();
    assert_eq!(
        upstream::header(&seen, "authorization"),
        [format!("Bearer {token}").as_str()]
    );

    // Default audience (client_id "web"): the API token is for another one.
    let default_aud = w.portcullis("accept_bearer_tokens = true").await;
    assert_eq!(get(&default_aud, "/api/x", &token).await.status(), 401);

    // Without accept_bearer_tokens the token opens nothing: the usual 401.
    let off = w.portcullis("").await;
    let before = w.up.hits();
    let resp = get(&off, "/api/x", &token).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(w.up.hits(), before);
}
