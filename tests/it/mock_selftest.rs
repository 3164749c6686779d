//! Self-tests of the test peers (mock Google, test upstream, browser cookie jar), so that a
//! failing end-to-end test can be blamed on Portcullis, not on its peers.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::support::harness::{self, Browser};
use crate::support::mock_google::{self, IssuerStyle, MockGoogle, Tamper, TestUser};
use crate::support::upstream;

const CLIENT_ID: &str = "123456789012-mock.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-mock-secret";
const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback/google";
const STATE: &str = "state-abc";
const NONCE: &str = "nonce-xyz";

// ---------------------------------------------------------------------------------------------
// Helpers: a minimal relying party

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = "v".repeat(20) + &URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn auth_url(google: &MockGoogle, extra: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&google.authorize_url()).unwrap();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.into()
}

fn standard_params(pkce: &Pkce) -> Vec<(&str, &str)> {
    vec![
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email profile"),
        ("state", STATE),
        ("nonce", NONCE),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ]
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Authorizes with the standard parameters; returns the redirect's Location.
async fn authorize(google: &MockGoogle, pkce: &Pkce) -> Url {
    let response = harness::client()
        .get(auth_url(google, &standard_params(pkce)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    location(&response)
}

async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    harness::client().get(url).send().await.unwrap()
}

fn location(response: &reqwest::Response) -> Url {
    Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

async fn exchange(
    google: &MockGoogle,
    code: &str,
    verifier: &str,
    basic: bool,
    secret: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    let mut request = harness::client().post(google.token_url());
    if basic {
        request = request.basic_auth(CLIENT_ID, Some(secret));
    } else {
        form.push(("client_id", CLIENT_ID));
        form.push(("client_secret", secret));
    }
    request.form(&form).send().await.unwrap()
}

async fn started() -> MockGoogle {
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    google.set_auto_approve(Some(TestUser::alice()));
    google
}

/// Runs the whole flow and returns the token response JSON.
async fn login(google: &MockGoogle) -> Value {
    let pkce = pkce();
    let location = authorize(google, &pkce).await;
    let code = param(&location, "code").unwrap();
    let response = exchange(google, &code, &pkce.verifier, true, CLIENT_SECRET).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn jwks(google: &MockGoogle) -> Value {
    get(google.jwks_url()).await.json().await.unwrap()
}

/// Checks an RS256 JWT against a JWKS; returns (header, claims).
fn verify_jwt(token: &str, jwks: &Value) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err("not three parts".into());
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string());
    let header: Value = serde_json::from_slice(&decode(header_b64)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims_b64)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .ok_or("unknown kid")?;
    let n = BigUint::from_bytes_be(&decode(key["n"].as_str().unwrap())?);
    let e = BigUint::from_bytes_be(&decode(key["e"].as_str().unwrap())?);
    let public = RsaPublicKey::new(n, e).map_err(|e| e.to_string())?;
    let signature =
        Signature::try_from(decode(signature_b64)?.as_slice()).map_err(|e| e.to_string())?;
    VerifyingKey::<Sha256>::new(public)
        .verify(format!("{header_b64}.{claims_b64}").as_bytes(), &signature)
        .map_err(|e| e.to_string())?;
    Ok((header, claims))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims_unverified(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Mock Google

#[tokio::test]
async fn discovery_document_points_at_the_mock() {
    let google = started().await;
    let response = get(google.discovery_url()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["issuer"], google.base_url.as_str());
    assert_eq!(
        doc["authorization_endpoint"],
        google.authorize_url().as_str()
    );
    assert_eq!(doc["token_endpoint"], google.token_url().as_str());
    assert_eq!(doc["userinfo_endpoint"], google.userinfo_url().as_str());
    assert_eq!(doc["jwks_uri"], google.jwks_url().as_str());
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
    assert_eq!(doc["code_challenge_methods_supported"][1], "S256");
    assert_eq!(google.discovery_hits(), 1);
}

#[tokio::test]
async fn full_flow_issues_a_verifiable_id_token() {
    let google = started().await;
    let pkce = pkce();
    let location = authorize(&google, &pkce).await;
    assert!(location.as_str().starts_with(REDIRECT));
    assert_eq!(param(&location, "state").as_deref(), Some(STATE));
    assert_eq!(param(&location, "authuser").as_deref(), Some("0"));
    assert_eq!(param(&location, "prompt").as_deref(), Some("none"));
    assert!(param(&location, "scope").unwrap().contains("openid"));
    assert_eq!(
        param(&location, "iss"),
        None,
        "Google does not send iss by default"
    );
    let code = param(&location, "code").unwrap();

    let recorded = google.last_authorize().unwrap();
    assert_eq!(recorded.param("code_challenge_method"), Some("S256"));

    let response = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3599);
    let access_token = token["access_token"].as_str().unwrap();

    let (header, claims) = verify_jwt(token["id_token"].as_str().unwrap(), &jwks(&google).await)
        .expect("valid signature");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], google.current_kid().as_str());
    assert_eq!(claims["iss"], google.base_url.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["azp"], CLIENT_ID);
    assert_eq!(claims["sub"], "110169484474386276334");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["given_name"], "Alice");
    assert_eq!(claims["family_name"], "Example");
    assert_eq!(claims["nonce"], NONCE);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let at_hash = URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16]);
    assert_eq!(claims["at_hash"], at_hash.as_str());

    let userinfo: Value = harness::client()
        .get(google.userinfo_url())
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], "110169484474386276334");
    assert_eq!(userinfo["email_verified"], true);
    assert_eq!(google.token_hits(), 1);
    assert_eq!(
        google.token_requests()[0].auth,
        mock_google::ClientAuth::Basic
    );
}

#[tokio::test]
async fn client_secret_post_is_accepted_too() {
    let google = started().await;
    let pkce = pkce();
    let code = param(&authorize(&google, &pkce).await, "code").unwrap();
    let response = exchange(&google, &code, &pkce.verifier, false, CLIENT_SECRET).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        google.token_requests()[0].auth,
        mock_google::ClientAuth::Post
    );
}

#[tokio::test]
async fn wrong_secret_is_invalid_client_with_either_method() {
    let google = started().await;
    for basic in [true, false] {
        let pkce = pkce();
        let code = param(&authorize(&google, &pkce).await, "code").unwrap();
        let response = exchange(&google, &code, &pkce.verifier, basic, "wrong").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_description"], "Unauthorized");
    }
}

#[tokio::test]
async fn pkce_mismatch_and_missing_verifier_are_invalid_grant() {
    let google = started().await;
    let pkce = pkce();
    let code = param(&authorize(&google, &pkce).await, "code").unwrap();
    let other = self::pkce();
    let response = exchange(&google, &code, &other.verifier, true, CLIENT_SECRET).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    let response = harness::client()
        .post(google.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn codes_are_single_use_and_replay_revokes_the_access_token() {
    let google = started().await;
    let pkce = pkce();
    let code = param(&authorize(&google, &pkce).await, "code").unwrap();
    let first = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET).await;
    assert_eq!(first.status(), StatusCode::OK);
    let token: Value = first.json().await.unwrap();
    let replay = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let userinfo = harness::client()
        .get(google.userinfo_url())
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn codes_expire_after_a_minute() {
    let google = started().await;
    let pkce = pkce();
    let code = param(&authorize(&google, &pkce).await, "code").unwrap();
    google.advance_clock(Duration::from_secs(61));
    let response = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn token_redirect_uri_must_match_the_authorization_one() {
    let google = started().await;
    let pkce = pkce();
    let code = param(&authorize(&google, &pkce).await, "code").unwrap();
    let response = harness::client()
        .post(google.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "redirect_uri_mismatch"
    );
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_state() {
    let google = started().await;
    google.set_deny(true);
    let location = authorize(&google, &pkce()).await;
    assert_eq!(param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&location, "state").as_deref(), Some(STATE));
    assert_eq!(param(&location, "code"), None);
}

#[tokio::test]
async fn bad_client_or_redirect_uri_shows_a_page_and_does_not_redirect() {
    let google = started().await;
    let pkce = pkce();
    let client = harness::client();

    let mut params = standard_params(&pkce);
    params[1] = ("client_id", "unknown.apps.googleusercontent.com");
    let response = client.get(auth_url(&google, &params)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("invalid_client"));

    let mut params = standard_params(&pkce);
    params[2] = ("redirect_uri", "https://evil.example/callback");
    let response = client.get(auth_url(&google, &params)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());

    google.register_redirect_uri("http://127.0.0.1:9/registered");
    let response = client
        .get(auth_url(&google, &standard_params(&pkce)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("redirect_uri_mismatch"));
}

#[tokio::test]
async fn scope_without_openid_is_redirected_as_invalid_scope() {
    let google = started().await;
    let pkce = pkce();
    let mut params = standard_params(&pkce);
    params[3] = ("scope", "email profile");
    let response = harness::client()
        .get(auth_url(&google, &params))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = location(&response);
    assert_eq!(param(&location, "error").as_deref(), Some("invalid_scope"));
    assert_eq!(param(&location, "state").as_deref(), Some(STATE));
}

#[tokio::test]
async fn account_chooser_approves_or_denies() {
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    let pkce = pkce();
    let mut browser = Browser::new();
    let page = browser
        .get(&auth_url(&google, &standard_params(&pkce)))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Local test provider — not Google"));
    assert!(html.contains("alice@example.com") && html.contains("bob@example.org"));
    let request_id = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();

    let consent = format!("{}{}", google.base_url, mock_google::CONSENT_PATH);
    let response = browser
        .post_form(
            &consent,
            &[("request", &request_id), ("sub", &TestUser::bob().sub)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let code = param(&location(&response), "code").unwrap();
    let token: Value = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap();
    let claims = claims_unverified(token["id_token"].as_str().unwrap());
    assert_eq!(claims["email"], "bob@example.org");
    assert_eq!(claims["email_verified"], false);

    // The request is consumed; a second one is denied from the page.
    let html = browser
        .get(&auth_url(&google, &standard_params(&pkce)))
        .await
        .text()
        .await
        .unwrap();
    let request_id = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let response = browser
        .post_form(&consent, &[("request", &request_id), ("deny", "1")])
        .await;
    assert_eq!(
        param(&location(&response), "error").as_deref(),
        Some("access_denied")
    );
}

#[tokio::test]
async fn tampered_tokens_fail_the_matching_check_once() {
    let google = started().await;

    google.set_tamper(Tamper::BadSignature);
    let token = login(&google).await;
    let jwks = jwks(&google).await;
    let error = verify_jwt(token["id_token"].as_str().unwrap(), &jwks).unwrap_err();
    assert!(
        error.contains("signature") || error.contains("verification"),
        "{error}"
    );

    // One-shot: the next token is fine.
    let token = login(&google).await;
    assert!(verify_jwt(token["id_token"].as_str().unwrap(), &jwks).is_ok());

    google.set_tamper(Tamper::UnknownKid);
    let token = login(&google).await;
    assert_eq!(
        verify_jwt(token["id_token"].as_str().unwrap(), &jwks).unwrap_err(),
        "unknown kid"
    );

    google.set_tamper(Tamper::AlgNone);
    let token = login(&google).await;
    assert!(token["id_token"].as_str().unwrap().ends_with('.'));
    assert!(verify_jwt(token["id_token"].as_str().unwrap(), &jwks).is_err());

    type Check = fn(&Value) -> bool;
    let cases: [(Tamper, Check); 6] = [
        (Tamper::WrongIssuer, |c| {
            c["iss"] == "https://issuer.invalid"
        }),
        (Tamper::WrongAudience, |c| c["aud"] != CLIENT_ID),
        (Tamper::Expired, |c| c["exp"].as_u64().unwrap() < now()),
        (Tamper::WrongNonce, |c| {
            c["nonce"] != NONCE && c["nonce"].is_string()
        }),
        (Tamper::NoNonce, |c| c.get("nonce").is_none()),
        (Tamper::WrongAtHash, |c| c["at_hash"].is_string()),
    ];
    for (tamper, check) in cases {
        google.set_tamper(tamper);
        let token = login(&google).await;
        let (_, claims) = verify_jwt(token["id_token"].as_str().unwrap(), &jwks)
            .unwrap_or_else(|e| panic!("{tamper:?} must stay signed: {e}"));
        assert!(check(&claims), "{tamper:?}: {claims}");
    }

    google.set_tamper(Tamper::NoIdToken);
    let token = login(&google).await;
    assert!(token.get("id_token").is_none());
}

#[tokio::test]
async fn issuer_style_host_only_drops_the_scheme() {
    let google = started().await;
    google.set_issuer_style(IssuerStyle::HostOnly);
    let token = login(&google).await;
    let claims = claims_unverified(token["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], google.base_url.trim_start_matches("http://"));
}

#[tokio::test]
async fn authorization_iss_can_be_switched_on() {
    let google = started().await;
    google.set_authorization_iss(true);
    let location = authorize(&google, &pkce()).await;
    assert_eq!(param(&location, "iss").as_deref(), Some(google.issuer()));
}

#[tokio::test]
async fn key_rotation_signs_with_the_new_key_and_publishes_per_flag() {
    let google = started().await;
    let old_kid = google.current_kid();
    let new_kid = google.rotate_key(true).await;
    assert_ne!(old_kid, new_kid);
    let keys = jwks(&google).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    let token = login(&google).await;
    let (header, _) = verify_jwt(token["id_token"].as_str().unwrap(), &keys).unwrap();
    assert_eq!(header["kid"], new_kid.as_str());

    google.rotate_key(false).await;
    let keys = jwks(&google).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["keys"][0]["kid"], google.current_kid().as_str());
    assert_eq!(keys["keys"][0]["kty"], "RSA");
    assert_eq!(keys["keys"][0]["use"], "sig");
    assert_eq!(google.jwks_hits(), 2);
}

#[tokio::test]
async fn outages_and_cache_headers() {
    let google = started().await;
    google.set_jwks_max_age(120);
    let response = get(google.jwks_url()).await;
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=120, must-revalidate, no-transform"
    );

    google.fail_discovery(true);
    let response = get(google.discovery_url()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    google.fail_token(Some(503));
    let pkce = pkce();
    let code = param(&authorize(&google, &pkce).await, "code").unwrap();
    let response = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    google.fail_token(None);
    let response = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(google.token_hits(), 2);

    google.stop().await;
    assert!(harness::client()
        .get(google.discovery_url())
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn scopes_gate_the_claims() {
    let google = started().await;
    let pkce = pkce();
    let mut params = standard_params(&pkce);
    params[3] = ("scope", "openid");
    let response = harness::client()
        .get(auth_url(&google, &params))
        .send()
        .await
        .unwrap();
    let code = param(&location(&response), "code").unwrap();
    let token: Value = exchange(&google, &code, &pkce.verifier, true, CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap();
    let claims = claims_unverified(token["id_token"].as_str().unwrap());
    assert!(claims.get("email").is_none() && claims.get("name").is_none());
    assert_eq!(claims["sub"], "110169484474386276334");
}

// ---------------------------------------------------------------------------------------------
// Upstream

#[tokio::test]
async fn upstream_echoes_method_path_query_and_headers() {
    let app = upstream::start().await;
    let response = harness::client()
        .patch(app.url("/some/path?a=1&b=two"))
        .header("X-Test", "one")
        .header("x-test", "two")
        .header("X_Other", "three")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["path"], "/some/path");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(upstream::header(&echo, "X-TEST"), ["one", "two"]);
    assert_eq!(upstream::header(&echo, "x_other"), ["three"]);
    assert_eq!(echo["body_len"], 0);
    assert_eq!(app.hits(), 1);
    assert_eq!(app.last_request().unwrap()["path"], "/some/path");
    app.stop().await;
    assert!(harness::client().get(app.url("/")).send().await.is_err());
}

#[tokio::test]
async fn upstream_hashes_large_bodies() {
    let app = upstream::start().await;
    for size in [5 * 1024 * 1024, 52 * 1024 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let expected: String = Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let echo: Value = harness::client()
            .post(app.url("/upload"))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["body_len"], size);
        assert_eq!(echo["body_sha256"], expected.as_str());
    }
}

#[tokio::test]
async fn upstream_websocket_echoes() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Message;

    let app = upstream::start().await;
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-probe", "hello".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);

    socket.send(Message::text("ping me")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("ping me")
    );
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    socket.send(Message::text("__headers__")).await.unwrap();
    let Message::Text(headers) = socket.next().await.unwrap().unwrap() else {
        panic!("text expected");
    };
    let headers: Value = serde_json::from_str(headers.as_str()).unwrap();
    let echo = serde_json::json!({ "headers": headers });
    assert_eq!(upstream::header(&echo, "x-probe"), ["hello"]);
    socket.close(None).await.unwrap();
    assert_eq!(app.requests()[0]["websocket"], true);
}

#[tokio::test]
async fn upstream_streams_chunked_responses_and_statuses() {
    let app = upstream::start().await;
    let client = harness::client();
    let response = client.get(app.url("/chunked")).send().await.unwrap();
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(
        response.text().await.unwrap(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
    );

    let response = client
        .get(app.url("/chunked?chunks=3&delay_ms=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        "chunk 0\nchunk 1\nchunk 2\n"
    );

    let response = client.post(app.url("/status/418")).send().await.unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.json::<Value>().await.unwrap()["method"], "POST");
    let response = client.get(app.url("/status/204")).send().await.unwrap();
    assert_eq!(response.status(), 204);

    let response = client.get(app.url("/bytes/1000003")).send().await.unwrap();
    let expected = response.headers()["x-body-sha256"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 1_000_003);
    let actual: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(actual, expected);
}

// ---------------------------------------------------------------------------------------------
// Browser

/// A tiny cookie-setting server: `/set?c=<Set-Cookie value>` sets it, `/redirect?to=URL`
/// redirects, anything else echoes the `Cookie` header.
async fn cookie_server() -> (String, tokio::sync::oneshot::Sender<()>) {
    use axum::extract::RawQuery;
    use axum::http::{header, HeaderMap, StatusCode as S};
    use axum::response::IntoResponse;

    async fn handle(
        uri: axum::http::Uri,
        headers: HeaderMap,
        RawQuery(q): RawQuery,
    ) -> axum::response::Response {
        let q: Vec<(String, String)> =
            url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        if uri.path() == "/redirect" {
            let to = &q.iter().find(|(k, _)| k == "to").unwrap().1;
            return (S::FOUND, [(header::LOCATION, to.clone())]).into_response();
        }
        let mut response = headers
            .get(header::COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
            .into_response();
        for (k, v) in q {
            if k == "c" {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, v.parse().unwrap());
            }
        }
        response
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(handle))
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (base, tx)
}

fn set_url(base: &str, cookies: &[&str]) -> String {
    let mut url = Url::parse(&format!("{base}/set")).unwrap();
    for c in cookies {
        url.query_pairs_mut().append_pair("c", c);
    }
    url.into()
}

#[tokio::test]
async fn browser_honours_cookie_paths_and_deletion() {
    let (base, _stop) = cookie_server().await;
    let mut browser = Browser::new();
    browser
        .get(&set_url(
            &base,
            &[
                "session=s1; Path=/; HttpOnly; SameSite=Lax",
                "login=l1; Path=/oauth2/callback; Max-Age=600; HttpOnly",
            ],
        ))
        .await;
    assert!(browser.cookie("session").unwrap().http_only);
    let sent = |path: &str| format!("{base}{path}");
    assert_eq!(
        browser.get(&sent("/app")).await.text().await.unwrap(),
        "session=s1"
    );
    assert_eq!(
        browser
            .get(&sent("/oauth2/callback/google"))
            .await
            .text()
            .await
            .unwrap(),
        "login=l1; session=s1"
    );
    assert_eq!(
        browser
            .get(&sent("/oauth2/callbackX"))
            .await
            .text()
            .await
            .unwrap(),
        "session=s1"
    );

    browser
        .get(&set_url(
            &base,
            &["login=; Path=/oauth2/callback; Max-Age=0"],
        ))
        .await;
    assert!(browser.cookie("login").is_none());
    browser
        .get(&set_url(
            &base,
            &["session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"],
        ))
        .await;
    assert!(browser.cookies().is_empty());

    // SameSite=None without Secure is refused, as browsers do.
    browser
        .get(&set_url(&base, &["x=1; Path=/; SameSite=None"]))
        .await;
    assert!(browser.cookie("x").is_none());
}

#[tokio::test]
async fn browser_follows_redirects_across_ports_and_shares_cookies_by_host() {
    let (a, _stop_a) = cookie_server().await;
    let (b, _stop_b) = cookie_server().await;
    let mut browser = Browser::new();
    browser.get(&set_url(&a, &["shared=yes; Path=/"])).await;
    let start = format!(
        "{a}/redirect?to={}",
        url::form_urlencoded::byte_serialize(
            format!(
                "{b}/redirect?to={}",
                url::form_urlencoded::byte_serialize(b"/final").collect::<String>()
            )
            .as_bytes()
        )
        .collect::<String>()
    );
    let response = browser.follow(&start, 5).await;
    assert_eq!(response.url().as_str(), format!("{b}/final"));
    assert_eq!(browser.hops().len(), 3);
    assert_eq!(browser.hops()[0].status, StatusCode::FOUND);
    assert_eq!(response.text().await.unwrap(), "shared=yes");
}
