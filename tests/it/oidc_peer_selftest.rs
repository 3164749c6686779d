//! Self-tests of the real OpenID Connect peer (oidc-provider, tests/oidc-peer) and of the
//! helpers that drive it, with a minimal relying party written here: so that a failing
//! end-to-end test against it can be blamed on Portcullis, not on the peer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use reqwest::StatusCode;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::support::harness::{self, Browser};
use crate::support::oidc_peer::{self, OidcPeer, PeerAccount, PeerClient, PeerOptions};

const CLIENT_ID: &str = "portcullis-test";
const CLIENT_SECRET: &str = "portcullis-test-secret";
/// Never requested: [`oidc_peer::sign_in`] stops before the callback.
const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback/acme";
const PUBLIC_ID: &str = "portcullis-public";

fn clients() -> Vec<PeerClient> {
    vec![
        PeerClient::confidential(CLIENT_ID, CLIENT_SECRET, &[REDIRECT]),
        PeerClient::public(PUBLIC_ID, &[REDIRECT]),
    ]
}

async fn peer() -> OidcPeer {
    oidc_peer::start(clients(), vec![PeerAccount::alice(), PeerAccount::bob()]).await
}

// ---------------------------------------------------------------------------------------------
// A minimal relying party

fn random() -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

struct Request {
    state: String,
    nonce: String,
    verifier: String,
}

impl Request {
    fn new() -> Request {
        Request {
            state: random(),
            nonce: random(),
            verifier: random(),
        }
    }

    /// An authorization request for `client_id`, with PKCE S256 when `pkce`.
    fn url(&self, peer: &OidcPeer, client_id: &str, pkce: bool) -> String {
        let mut url = Url::parse(&peer.authorization_endpoint()).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &self.state)
            .append_pair("nonce", &self.nonce);
        if pkce {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()));
            url.query_pairs_mut()
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
        }
        url.into()
    }
}

/// The query parameters of a callback URL, after checking it goes to [`REDIRECT`].
fn callback_params(callback: &str) -> Vec<(String, String)> {
    let url = Url::parse(callback).unwrap();
    assert_eq!(
        &url[..url::Position::AfterPath],
        REDIRECT,
        "callback {callback}"
    );
    url.query_pairs().into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// POSTs the code to the token endpoint with client_secret_basic; returns status and JSON.
async fn exchange(peer: &OidcPeer, code: &str, verifier: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    let resp = harness::client()
        .post(peer.token_endpoint())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&form)
        .send()
        .await
        .expect("token request");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

async fn get_json(url: &str) -> Value {
    let resp = harness::client().get(url).send().await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    resp.json().await.expect("JSON")
}

async fn signing_kids(peer: &OidcPeer) -> Vec<String> {
    let jwks = get_json(&peer.jwks_uri()).await;
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Verifies the RS256 signature of `jwt` against the peer's JWKS and returns its header and
/// claims.
async fn verify_id_token(peer: &OidcPeer, jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS: {jwt}");
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("JSON")
    };
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["alg"], "RS256");
    let jwks = get_json(&peer.jwks_uri()).await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in {jwks}", header["kid"]));
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let key = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e)).unwrap();
    let signature = Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice())
        .expect("signature bytes");
    VerifyingKey::<Sha256>::new(key)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the ID token's RS256 signature verifies with the peer's JWKS");
    (header, claims)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn discovery_names_the_issuer_and_endpoints() {
    oidc_peer::require!();
    let peer = peer().await;
    assert_eq!(peer.issuer, format!("http://127.0.0.1:{}", peer.port));
    let doc = get_json(&peer.discovery_url()).await;
    assert_eq!(doc["issuer"], peer.issuer.as_str());
    assert_eq!(
        doc["authorization_endpoint"],
        peer.authorization_endpoint().as_str()
    );
    assert_eq!(doc["token_endpoint"], peer.token_endpoint().as_str());
    assert_eq!(doc["userinfo_endpoint"], peer.userinfo_endpoint().as_str());
    assert_eq!(doc["jwks_uri"], peer.jwks_uri().as_str());
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    for scope in ["openid", "email", "profile"] {
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == scope),
            "{scope} in {}",
            doc["scopes_supported"]
        );
    }
}

#[tokio::test]
async fn code_flow_with_pkce_yields_a_signed_id_token_and_userinfo() {
    oidc_peer::require!();
    let peer = peer().await;
    let alice = PeerAccount::alice();
    let request = Request::new();
    let mut b = Browser::new();

    let callback = oidc_peer::sign_in(&mut b, &request.url(&peer, CLIENT_ID, true), "alice").await;
    let params = callback_params(&callback);
    assert_eq!(param(&params, "state"), Some(request.state.as_str()));
    // RFC 9207: the issuer comes with the code.
    assert_eq!(param(&params, "iss"), Some(peer.issuer.as_str()));
    let code = param(&params, "code").expect("code");
    assert!(b.cookie("_session").is_some(), "the peer's session cookie");

    let (status, tokens) = exchange(&peer, code, Some(&request.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}\n{}", peer.logs());
    assert_eq!(tokens["token_type"], "Bearer");
    let (_, claims) = verify_id_token(&peer, tokens["id_token"].as_str().expect("id_token")).await;
    assert_eq!(claims["iss"], peer.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], alice.sub.as_str());
    assert_eq!(claims["nonce"], request.nonce.as_str());
    // oidc-provider's conformIdTokenClaims default: scope-requested claims only at userinfo.
    assert!(claims.get("email").is_none(), "{claims}");

    let userinfo = harness::client()
        .get(peer.userinfo_endpoint())
        .bearer_auth(tokens["access_token"].as_str().expect("access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::OK);
    let userinfo: Value = userinfo.json().await.unwrap();
    assert_eq!(userinfo["sub"], alice.sub.as_str());
    assert_eq!(userinfo["email"], "alice@example.com");
    assert_eq!(userinfo["email_verified"], true);
    assert_eq!(userinfo["name"], "Alice Adams");
    assert_eq!(userinfo["preferred_username"], "alice");
    assert_eq!(
        userinfo["picture"],
        "https://pictures.example.com/alice.png"
    );
    assert!(
        peer.logs().contains("oidc-peer: POST /token -> 200"),
        "one log line per request:\n{}",
        peer.logs()
    );

    // The same browser signs in again without login or consent pages (session + grant).
    let again = Request::new();
    let callback = oidc_peer::sign_in(&mut b, &again.url(&peer, CLIENT_ID, true), "alice").await;
    let params = callback_params(&callback);
    assert_eq!(param(&params, "state"), Some(again.state.as_str()));
    assert!(param(&params, "code").is_some(), "{callback}");
}

#[tokio::test]
async fn id_token_claims_when_conformance_is_off() {
    oidc_peer::require!();
    let peer = oidc_peer::start_with(PeerOptions {
        clients: clients(),
        accounts: vec![PeerAccount::bob()],
        conform_id_token_claims: Some(false),
        ..PeerOptions::default()
    })
    .await;
    let request = Request::new();
    let mut b = Browser::new();
    let callback = oidc_peer::sign_in(&mut b, &request.url(&peer, CLIENT_ID, false), "bob").await;
    let params = callback_params(&callback);
    let (status, tokens) = exchange(&peer, param(&params, "code").unwrap(), None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, claims) = verify_id_token(&peer, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "248289761002");
    assert_eq!(claims["email"], "bob@example.com");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["preferred_username"], "bob");
    assert!(claims.get("picture").is_none(), "{claims}");
}

#[tokio::test]
async fn deny_returns_access_denied() {
    oidc_peer::require!();
    let peer = peer().await;
    let request = Request::new();
    let mut b = Browser::new();
    let callback = oidc_peer::deny(&mut b, &request.url(&peer, CLIENT_ID, true), "alice").await;
    let params = callback_params(&callback);
    assert_eq!(param(&params, "error"), Some("access_denied"), "{callback}");
    assert_eq!(param(&params, "state"), Some(request.state.as_str()));
    assert_eq!(param(&params, "iss"), Some(peer.issuer.as_str()));
    assert!(param(&params, "code").is_none());
}

#[tokio::test]
async fn a_replayed_code_is_invalid_grant() {
    oidc_peer::require!();
    let peer = peer().await;
    let request = Request::new();
    let mut b = Browser::new();
    let callback = oidc_peer::sign_in(&mut b, &request.url(&peer, CLIENT_ID, true), "alice").await;
    let params = callback_params(&callback);
    let code = param(&params, "code").unwrap();

    let (status, body) = exchange(&peer, code, Some(&request.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = exchange(&peer, code, Some(&request.verifier)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn pkce_is_checked_and_required_only_for_public_clients() {
    oidc_peer::require!();
    let peer = peer().await;

    // A wrong verifier is refused.
    let request = Request::new();
    let mut b = Browser::new();
    let callback = oidc_peer::sign_in(&mut b, &request.url(&peer, CLIENT_ID, true), "alice").await;
    let code = param(&callback_params(&callback), "code")
        .unwrap()
        .to_owned();
    let (status, body) = exchange(&peer, &code, Some(&random())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // A public client without PKCE is refused at the authorization endpoint, back at the
    // callback (no page of the peer is shown).
    let request = Request::new();
    let mut b = Browser::new();
    let callback = oidc_peer::sign_in(&mut b, &request.url(&peer, PUBLIC_ID, false), "alice").await;
    let params = callback_params(&callback);
    assert_eq!(
        param(&params, "error"),
        Some("invalid_request"),
        "{callback}"
    );
    assert_eq!(param(&params, "state"), Some(request.state.as_str()));
}

#[tokio::test]
async fn an_unknown_login_is_rejected() {
    oidc_peer::require!();
    let peer = peer().await;
    let request = Request::new();
    let url = request.url(&peer, CLIENT_ID, true);
    let outcome = tokio::spawn(async move {
        let mut b = Browser::new();
        oidc_peer::sign_in(&mut b, &url, "mallory").await
    })
    .await;
    let panic = outcome.expect_err("sign_in as an unknown login panics");
    let message = panic
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(message.contains("was rejected"), "{message}");
    assert!(
        peer.logs()
            .contains("oidc-peer: no account with login \"mallory\""),
        "{}",
        peer.logs()
    );
}

#[tokio::test]
async fn restart_keeps_or_rotates_the_signing_key() {
    oidc_peer::require!();
    let mut peer = peer().await;
    let (issuer, port) = (peer.issuer.clone(), peer.port);
    let first = signing_kids(&peer).await;
    assert_eq!(first.len(), 1, "{first:?}");

    peer.restart(false).await;
    assert_eq!((peer.issuer.as_str(), peer.port), (issuer.as_str(), port));
    assert_eq!(
        signing_kids(&peer).await,
        first,
        "same key after a plain restart"
    );

    peer.restart(true).await;
    assert_eq!((peer.issuer.as_str(), peer.port), (issuer.as_str(), port));
    let rotated = signing_kids(&peer).await;
    assert_eq!(rotated.len(), 1);
    assert_ne!(rotated, first, "a new key after rotation");

    // Still a working provider: a whole sign-in with the new key.
    let request = Request::new();
    let mut b = Browser::new();
    let callback = oidc_peer::sign_in(&mut b, &request.url(&peer, CLIENT_ID, true), "alice").await;
    let code = param(&callback_params(&callback), "code")
        .unwrap()
        .to_owned();
    let (status, tokens) = exchange(&peer, &code, Some(&request.verifier)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (header, _) = verify_id_token(&peer, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(header["kid"], rotated[0].as_str());

    // A stopped peer refuses connections; the port can be reused by start_on.
    peer.stop();
    assert!(harness::client()
        .get(peer.discovery_url())
        .send()
        .await
        .is_err());
    let again = oidc_peer::start_on(port, clients(), vec![PeerAccount::alice()]).await;
    assert_eq!(again.issuer, issuer);
}

/// The accounts' further claims land where the policy tests need them: in the ID token and
/// userinfo, in userinfo only, nested (Keycloak), or as Entra ID's distributed-claims overage.
#[tokio::test]
async fn further_claims_reach_the_id_token_or_userinfo_as_configured() {
    oidc_peer::require!();
    let overage = serde_json::json!({
        "_claim_names": { "groups": "src1" },
        "_claim_sources": { "src1": { "endpoint": "https://graph.example/v1.0/users/x/getMemberObjects" } },
    });
    let accounts = vec![
        PeerAccount::named("grace", "3001")
            .with_claims(serde_json::json!({ "groups": ["admins", "staff"] }), false),
        PeerAccount::named("una", "3002")
            .with_claims(serde_json::json!({ "groups": ["staff"] }), true),
        PeerAccount::named("kim", "3003").with_claims(
            serde_json::json!({ "realm_access": { "roles": ["ops"] } }),
            false,
        ),
        PeerAccount::named("ezra", "3004").with_claims(overage.clone(), false),
    ];
    let peer = oidc_peer::start(clients(), accounts).await;
    let mut seen = Vec::new();
    for login in ["grace", "una", "kim", "ezra"] {
        let request = Request::new();
        let mut b = Browser::new();
        let callback =
            oidc_peer::sign_in(&mut b, &request.url(&peer, CLIENT_ID, false), login).await;
        let params = callback_params(&callback);
        let (status, tokens) = exchange(&peer, param(&params, "code").unwrap(), None).await;
        assert_eq!(status, StatusCode::OK, "{tokens}\n{}", peer.logs());
        let (_, claims) = verify_id_token(&peer, tokens["id_token"].as_str().unwrap()).await;
        let userinfo: Value = harness::client()
            .get(peer.userinfo_endpoint())
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.push((login, claims, userinfo));
    }
    let [grace, una, kim, ezra] = &seen[..] else {
        panic!("four sign-ins")
    };
    assert_eq!(
        grace.1["groups"],
        serde_json::json!(["admins", "staff"]),
        "{}",
        grace.1
    );
    assert_eq!(grace.2["groups"], serde_json::json!(["admins", "staff"]));
    assert!(una.1.get("groups").is_none(), "ID token: {}", una.1);
    assert_eq!(una.2["groups"], serde_json::json!(["staff"]), "{}", una.2);
    assert_eq!(
        kim.1["realm_access"]["roles"],
        serde_json::json!(["ops"]),
        "{}",
        kim.1
    );
    assert!(ezra.1.get("groups").is_none(), "{}", ezra.1);
    assert_eq!(
        ezra.1["_claim_names"], overage["_claim_names"],
        "{}",
        ezra.1
    );
    assert_eq!(
        ezra.1["_claim_sources"], overage["_claim_sources"],
        "{}",
        ezra.1
    );
}
