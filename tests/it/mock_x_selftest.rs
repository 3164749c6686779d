//! Self-tests of the mock X (`support::mock_x`), driven by a minimal client written here, so that
//! a failing end-to-end X test can be blamed on Portcullis, not on its peer.
//!
//! The OAuth 1.0a signer below is a second, independent implementation (it shares no code with
//! the mock's verifier nor with Portcullis's signer); both it and the mock's verifier are held to
//! the worked example in X's "Creating a signature" page
//! (<https://docs.x.com/fundamentals/authentication/oauth-1-0a/creating-a-signature>).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::support::mock_x::{self, MockX, XUser};

const CLIENT_ID: &str = "M1M5R3BMVy13QmpScXkzTUt5OE46MTpjaQ";
/// `~` is left alone by X's plain Basic encoding but form-encoded by RFC 6749 clients.
const CLIENT_SECRET: &str = "mock~client-secret_Xy9";
const CONSUMER_KEY: &str = "mockConsumerKey4Portcullis";
const CONSUMER_SECRET: &str = "mockConsumerSecret+with/odd=chars";
const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback/twitter";
const CALLBACK: &str = "http://127.0.0.1:9/oauth2/callback/twitter?flow=abc";
const STATE: &str = "state-abc";
const SCOPES_WITH_EMAIL: &str = "tweet.read users.read users.email";
const SCOPES: &str = "tweet.read users.read";

// ---------------------------------------------------------------------------------------------
// A second OAuth 1.0a signer, written from X's pages independently of the mock's verifier.

mod signer {
    use std::collections::BTreeSet;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha1::Sha1;
    use url::Url;

    /// X's "Percent encoding parameters": unreserved bytes stay, others become `%XX`.
    pub fn escape(input: &str) -> String {
        const UNRESERVED: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
        input
            .bytes()
            .map(|b| {
                if UNRESERVED.contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// The signature base string of a request to `url` (its query is taken as parameters) with
    /// the extra `params` (form body and oauth_* values, raw).
    pub fn base_string(method: &str, url: &str, params: &[(&str, &str)]) -> String {
        let parsed = Url::parse(url).expect("absolute URL");
        let base_url = &parsed[..url::Position::AfterPath];
        let pairs: BTreeSet<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (escape(&k), escape(&v)))
            .chain(params.iter().map(|(k, v)| (escape(k), escape(v))))
            .collect();
        let parameter_string = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        [
            method.to_uppercase(),
            escape(base_url),
            escape(&parameter_string),
        ]
        .join("&")
    }

    pub fn signature(base_string: &str, consumer_secret: &str, token_secret: &str) -> String {
        let key = [escape(consumer_secret), escape(token_secret)].join("&");
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(base_string.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// What a request needs to be signed.
    pub struct Request<'a> {
        pub method: &'a str,
        /// With its query.
        pub url: &'a str,
        /// Form body parameters (raw).
        pub form: &'a [(&'a str, &'a str)],
        pub consumer_key: &'a str,
        pub consumer_secret: &'a str,
        /// (token, token secret)
        pub token: Option<(&'a str, &'a str)>,
        /// More oauth_* header parameters (oauth_callback, oauth_verifier).
        pub extra_oauth: &'a [(&'a str, &'a str)],
        pub nonce: &'a str,
        pub timestamp: i64,
    }

    /// The `Authorization: OAuth ...` header ("Authorizing a request").
    pub fn authorization(r: &Request<'_>) -> String {
        let timestamp = r.timestamp.to_string();
        let mut oauth: Vec<(&str, &str)> = vec![
            ("oauth_consumer_key", r.consumer_key),
            ("oauth_nonce", r.nonce),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", &timestamp),
            ("oauth_version", "1.0"),
        ];
        if let Some((token, _)) = r.token {
            oauth.push(("oauth_token", token));
        }
        oauth.extend_from_slice(r.extra_oauth);
        let mut all = oauth.clone();
        all.extend_from_slice(r.form);
        let base = base_string(r.method, r.url, &all);
        let sig = signature(
            &base,
            r.consumer_secret,
            r.token.map(|(_, s)| s).unwrap_or(""),
        );
        oauth.push(("oauth_signature", &sig));
        let fields: Vec<String> = oauth
            .iter()
            .map(|(k, v)| format!("{}=\"{}\"", escape(k), escape(v)))
            .collect();
        format!("OAuth {}", fields.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers: a minimal client

async fn mock() -> MockX {
    mock_x::start(CLIENT_ID, CLIENT_SECRET, CONSUMER_KEY, CONSUMER_SECRET).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = Url::parse(base).unwrap();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    url.into()
}

fn authorize_params<'a>(pkce: &'a Pkce, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", STATE),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ]
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn location(response: &reqwest::Response) -> Url {
    assert_eq!(response.status(), StatusCode::FOUND, "expected a redirect");
    let value = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap();
    Url::parse(value).unwrap()
}

/// Authorizes (auto-approve must be on) and returns the redirect.
async fn authorize(x: &MockX, pkce: &Pkce, scope: &str) -> Url {
    let response = client()
        .get(url_with(&x.authorize_url(), &authorize_params(pkce, scope)))
        .send()
        .await
        .unwrap();
    location(&response)
}

/// A code for `user` with `scope`.
async fn code_for(x: &MockX, user: XUser, pkce: &Pkce, scope: &str) -> String {
    x.set_auto_approve(Some(user));
    let redirect = authorize(x, pkce, scope).await;
    param(&redirect, "code").expect("a code")
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// `POST /2/oauth2/token`; `auth` is the Authorization header value, if any.
async fn exchange(x: &MockX, auth: Option<String>, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = client().post(x.token_url()).form(form);
    if let Some(auth) = auth {
        request = request.header(reqwest::header::AUTHORIZATION, auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ]
}

async fn token_for(x: &MockX, user: XUser, scope: &str) -> String {
    let pkce = pkce();
    let code = code_for(x, user, &pkce, scope).await;
    let (status, body) = exchange(
        x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn users_me(x: &MockX, token: &str, fields: Option<&str>) -> (StatusCode, String, Value) {
    let url = match fields {
        Some(f) => url_with(&x.users_me_url(), &[("user.fields", f)]),
        None => x.users_me_url(),
    };
    let response = client().get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.json().await.unwrap())
}

fn object_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// The chooser's request id for the page in `html`.
fn request_id(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).expect("a chooser form") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn nonce() -> String {
    // "base64 encoding 32 bytes of random data, and stripping out all non-word characters"
    // (Authorizing a request).
    STANDARD
        .encode(rand::random::<[u8; 32]>())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// Sends an OAuth 1.0a-signed request. `url` may carry a query; `form` goes in the body.
#[allow(clippy::too_many_arguments)]
async fn send_signed(
    method: reqwest::Method,
    url: &str,
    form: &[(&str, &str)],
    consumer_secret: &str,
    token: Option<(&str, &str)>,
    extra_oauth: &[(&str, &str)],
    nonce: &str,
    timestamp: i64,
) -> reqwest::Response {
    let auth = signer::authorization(&signer::Request {
        method: method.as_str(),
        url,
        form,
        consumer_key: CONSUMER_KEY,
        consumer_secret,
        token,
        extra_oauth,
        nonce,
        timestamp,
    });
    let mut request = client()
        .request(method, url)
        .header(reqwest::header::AUTHORIZATION, auth);
    if !form.is_empty() {
        request = request.form(form);
    }
    request.send().await.unwrap()
}

async fn v1_error(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn form_pairs(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {pairs:?}"))
}

/// Step 1: a request token for `callback`.
async fn request_token(x: &MockX, callback: &str) -> (String, String) {
    let response = send_signed(
        reqwest::Method::POST,
        &x.request_token_url(),
        &[],
        CONSUMER_SECRET,
        None,
        &[("oauth_callback", callback)],
        &nonce(),
        unix_now(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let pairs = form_pairs(&response.text().await.unwrap());
    assert_eq!(get(&pairs, "oauth_callback_confirmed"), "true");
    (
        get(&pairs, "oauth_token").to_owned(),
        get(&pairs, "oauth_token_secret").to_owned(),
    )
}

/// Step 2 with auto-approve on: the callback redirect.
async fn authenticate(x: &MockX, token: &str) -> reqwest::Response {
    client()
        .get(url_with(&x.authenticate_url(), &[("oauth_token", token)]))
        .send()
        .await
        .unwrap()
}

/// Step 3, `oauth_verifier` in the form body.
async fn access_token(x: &MockX, token: &str, secret: &str, verifier: &str) -> reqwest::Response {
    send_signed(
        reqwest::Method::POST,
        &x.access_token_url(),
        &[("oauth_verifier", verifier)],
        CONSUMER_SECRET,
        Some((token, secret)),
        &[],
        &nonce(),
        unix_now(),
    )
    .await
}

/// The whole OAuth 1.0a flow for `user`: the access token and secret.
async fn oauth1_login(x: &MockX, user: XUser) -> (String, String) {
    x.set_auto_approve(Some(user.clone()));
    let (token, secret) = request_token(x, CALLBACK).await;
    let redirect = location(&authenticate(x, &token).await);
    let verifier = param(&redirect, "oauth_verifier").unwrap();
    let response = access_token(x, &token, &secret, &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let pairs = form_pairs(&response.text().await.unwrap());
    assert_eq!(get(&pairs, "user_id"), user.id);
    (
        get(&pairs, "oauth_token").to_owned(),
        get(&pairs, "oauth_token_secret").to_owned(),
    )
}

async fn verify_credentials(
    x: &MockX,
    token: &str,
    secret: &str,
    query: &[(&str, &str)],
) -> (StatusCode, Value) {
    let response = send_signed(
        reqwest::Method::GET,
        &url_with(&x.verify_credentials_url(), query),
        &[],
        CONSUMER_SECRET,
        Some((token, secret)),
        &[],
        &nonce(),
        unix_now(),
    )
    .await;
    v1_error(response).await
}

// ---------------------------------------------------------------------------------------------
// X's worked signature example, for both implementations

const DOC_PARAMS: [(&str, &str); 8] = [
    (
        "status",
        "Hello Ladies + Gentlemen, a signed OAuth request!",
    ),
    ("include_entities", "true"),
    ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
    ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_timestamp", "1318622958"),
    (
        "oauth_token",
        "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
    ),
    ("oauth_version", "1.0"),
];
const DOC_CONSUMER_SECRET: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
const DOC_TOKEN_SECRET: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
/// The page's base string, verbatim (the page now uses `api.x.com`).
const DOC_BASE_STRING: &str = "POST&https%3A%2F%2Fapi.x.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521";
/// The page's result for `api.x.com` ("2E CF 77 84 ...").
const DOC_SIGNATURE_X: &str = "Ls93hJiZbQ3akF3HF3x1Bz8/zU4=";
/// The same example as published with `https://api.twitter.com/...` before the rename.
const DOC_SIGNATURE_TWITTER: &str = "hCtSmYh+iHYCEqBWrE7C7hYmtUk=";

#[test]
fn test_signer_reproduces_xs_worked_example() {
    let base = signer::base_string(
        "POST",
        "https://api.x.com/1.1/statuses/update.json",
        &DOC_PARAMS,
    );
    assert_eq!(base, DOC_BASE_STRING);
    assert_eq!(
        signer::signature(&base, DOC_CONSUMER_SECRET, DOC_TOKEN_SECRET),
        DOC_SIGNATURE_X
    );
    // The query is a parameter like any other ("Collecting parameters").
    let base = signer::base_string(
        "post",
        "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
        &DOC_PARAMS[..1]
            .iter()
            .chain(&DOC_PARAMS[2..])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        signer::signature(&base, DOC_CONSUMER_SECRET, DOC_TOKEN_SECRET),
        DOC_SIGNATURE_TWITTER
    );
    // "Percent encoding parameters", Examples.
    assert_eq!(
        signer::escape("Ladies + Gentlemen"),
        "Ladies%20%2B%20Gentlemen"
    );
    assert_eq!(
        signer::escape("An encoded string!"),
        "An%20encoded%20string%21"
    );
    assert_eq!(
        signer::escape("Dogs, Cats & Mice"),
        "Dogs%2C%20Cats%20%26%20Mice"
    );
    assert_eq!(signer::escape("☃"), "%E2%98%83");
}

#[test]
fn mock_verifier_reproduces_xs_worked_example() {
    let params: Vec<(String, String)> = DOC_PARAMS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let url = "https://api.x.com/1.1/statuses/update.json";
    assert_eq!(
        mock_x::oauth1_base_string("POST", url, &params),
        DOC_BASE_STRING
    );
    assert_eq!(
        mock_x::oauth1_signature("POST", url, &params, DOC_CONSUMER_SECRET, DOC_TOKEN_SECRET),
        DOC_SIGNATURE_X
    );
    assert_eq!(
        mock_x::oauth1_signature(
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json",
            &params,
            DOC_CONSUMER_SECRET,
            DOC_TOKEN_SECRET
        ),
        DOC_SIGNATURE_TWITTER
    );
}

// ---------------------------------------------------------------------------------------------
// OAuth 2.0 with PKCE

#[tokio::test]
async fn oauth2_full_flow_through_the_chooser_with_email() {
    let x = mock().await;
    let pkce = pkce();
    let scope = "tweet.read users.read users.email offline.access";
    let response = client()
        .get(url_with(
            &x.authorize_url(),
            &authorize_params(&pkce, scope),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("Local test provider — not X"));
    assert!(html.contains("@jack") && html.contains("@noemail_user"));
    let record = x.last_authorize().unwrap();
    assert_eq!(
        record.param("code_challenge"),
        Some(pkce.challenge.as_str())
    );

    let consent = client()
        .post(format!("{}{}", x.base_url, mock_x::CONSENT_PATH))
        .form(&[("request", request_id(&html).as_str()), ("user", "12")])
        .send()
        .await
        .unwrap();
    let redirect = location(&consent);
    assert!(redirect.as_str().starts_with(REDIRECT));
    assert_eq!(param(&redirect, "state").as_deref(), Some(STATE));
    let keys: Vec<String> = redirect
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(keys, ["state", "code"]);
    let code = param(&redirect, "code").unwrap();

    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["scope"], scope);
    assert!(
        body["refresh_token"].is_string(),
        "offline.access was asked"
    );
    let token = body["access_token"].as_str().unwrap();
    let record = x.last_token_request().unwrap();
    assert!(record.has_basic_auth());
    assert_eq!(record.param("code_verifier"), Some(pkce.verifier.as_str()));
    assert_eq!(record.param("client_id"), None);

    // users-me: only id, name, username unless asked.
    let (status, content_type, body) = users_me(&x, token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("application/json"));
    assert_eq!(
        body,
        json!({"data": {"id": "12", "name": "jack", "username": "jack"}})
    );

    let (status, _, body) = users_me(&x, token, Some("profile_image_url,confirmed_email")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["confirmed_email"], "jack@example.com");
    assert_eq!(
        body["data"]["profile_image_url"],
        XUser::jack().profile_image_url
    );
    assert_eq!(
        object_keys(&body["data"]),
        [
            "confirmed_email",
            "id",
            "name",
            "profile_image_url",
            "username"
        ]
    );
    assert_eq!(x.authorize_hits(), 1);
    assert_eq!(x.token_hits(), 1);
    assert_eq!(x.users_me_hits(), 2);
    let asked = x.userinfo_requests();
    assert_eq!(
        asked[1].param("user.fields"),
        Some("profile_image_url,confirmed_email")
    );
    assert_eq!(asked[1].auth_scheme.as_deref(), Some("Bearer"));
}

#[tokio::test]
async fn oauth2_email_needs_the_scope_and_an_email() {
    let x = mock().await;
    // No users.email scope: no confirmed_email even when asked; no refresh token either.
    let pkce = pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap();
    let (_, _, body) = users_me(&x, token, Some("confirmed_email,profile_image_url")).await;
    assert!(body["data"].get("confirmed_email").is_none());
    assert!(body["data"]["profile_image_url"].is_string());

    // The scope but an account without an email.
    let token = token_for(&x, XUser::noemail(), SCOPES_WITH_EMAIL).await;
    let (_, _, body) = users_me(&x, &token, Some("confirmed_email")).await;
    assert_eq!(
        body,
        json!({"data": {"id": "1600000000000000001", "name": "No Email", "username": "noemail_user"}})
    );
}

#[tokio::test]
async fn oauth2_pkce_mismatch_is_refused_as_x_does() {
    let x = mock().await;
    let pkce = pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    let other = self::pkce();
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &other.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_request",
               "error_description": "Value passed for the code verifier did not match the code challenge."})
    );
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error_description"],
        "Missing required parameter [code_verifier]."
    );
    // A failed attempt does not use the code up.
    let (status, _) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn oauth2_confidential_client_needs_basic_auth() {
    let x = mock().await;
    let pkce = pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    let expected = json!({"error": "unauthorized_client",
                          "error_description": "Missing valid authorization header"});

    let (status, body) = exchange(&x, None, &code_form(&code, &pkce.verifier)).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &expected));
    assert!(!x.last_token_request().unwrap().has_basic_auth());

    // client_secret_post is not how X authenticates confidential clients.
    let mut form = code_form(&code, &pkce.verifier);
    form.push(("client_id", CLIENT_ID));
    form.push(("client_secret", CLIENT_SECRET));
    let (status, body) = exchange(&x, None, &form).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &expected));

    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, "wrong")),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &expected));

    // RFC 6749 2.3.1 spelling (form-encoded before base64) is accepted too.
    let encoded_secret: String =
        url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect();
    assert_ne!(encoded_secret, CLIENT_SECRET);
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, &encoded_secret)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(x.token_hits(), 4);
}

#[tokio::test]
async fn oauth2_public_client_sends_its_id_in_the_body() {
    let x = mock().await;
    x.set_public_client(true);
    let pkce = pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    let (status, _) = exchange(&x, None, &code_form(&code, &pkce.verifier)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut form = code_form(&code, &pkce.verifier);
    form.push(("client_id", CLIENT_ID));
    let (status, body) = exchange(&x, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn oauth2_codes_expire_after_30_seconds_and_are_single_use() {
    let x = mock().await;
    let invalid = json!({"error": "invalid_request",
                         "error_description": "Value passed for the authorization code was invalid."});

    // Expired.
    let pkce = pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    x.advance_clock(Duration::from_secs(31));
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &invalid));

    // Just within 30 s still works; then a replay is refused.
    let pkce = self::pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    x.advance_clock(Duration::from_secs(29));
    let (status, _) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &invalid));

    // Unknown code, and a redirect_uri other than the authorization's.
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form("not-a-code", &pkce.verifier),
    )
    .await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &invalid));
    let pkce = self::pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn oauth2_denial_redirects_with_access_denied_and_state() {
    let x = mock().await;
    let pkce = pkce();
    x.set_deny(true);
    let redirect = authorize(&x, &pkce, SCOPES).await;
    assert!(redirect.as_str().starts_with(REDIRECT));
    assert_eq!(param(&redirect, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&redirect, "state").as_deref(), Some(STATE));
    assert_eq!(param(&redirect, "code"), None);

    // The chooser's Cancel button does the same.
    x.set_deny(false);
    let html = client()
        .get(url_with(
            &x.authorize_url(),
            &authorize_params(&pkce, SCOPES),
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = client()
        .post(format!("{}{}", x.base_url, mock_x::CONSENT_PATH))
        .form(&[("request", request_id(&html).as_str()), ("deny", "1")])
        .send()
        .await
        .unwrap();
    let redirect = location(&response);
    assert_eq!(param(&redirect, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&redirect, "state").as_deref(), Some(STATE));
}

#[tokio::test]
async fn oauth2_malformed_authorization_requests_get_an_error_page() {
    let x = mock().await;
    x.set_auto_approve(Some(XUser::jack()));
    let pkce = pkce();
    let long_state = "s".repeat(501);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no PKCE", {
            let mut p = authorize_params(&pkce, SCOPES);
            p.retain(|(k, _)| !k.starts_with("code_challenge"));
            p
        }),
        ("plain PKCE", {
            let mut p = authorize_params(&pkce, SCOPES);
            p.retain(|(k, _)| *k != "code_challenge_method");
            p.push(("code_challenge_method", "plain"));
            p
        }),
        ("unknown client", {
            let mut p = authorize_params(&pkce, SCOPES);
            p.retain(|(k, _)| *k != "client_id");
            p.push(("client_id", "someone-else"));
            p
        }),
        ("non-loopback redirect", {
            let mut p = authorize_params(&pkce, SCOPES);
            p.retain(|(k, _)| *k != "redirect_uri");
            p.push(("redirect_uri", "https://evil.example/cb"));
            p
        }),
        (
            "unknown scope",
            authorize_params(&pkce, "tweet.read users.read openid"),
        ),
        ("no state", {
            let mut p = authorize_params(&pkce, SCOPES);
            p.retain(|(k, _)| *k != "state");
            p
        }),
        ("state over 500", {
            let mut p = authorize_params(&pkce, SCOPES);
            p.retain(|(k, _)| *k != "state");
            p.push(("state", &long_state));
            p
        }),
        ("token response type", {
            let mut p = authorize_params(&pkce, SCOPES);
            p.retain(|(k, _)| *k != "response_type");
            p.push(("response_type", "token"));
            p
        }),
    ];
    for (name, params) in cases {
        let response = client()
            .get(url_with(&x.authorize_url(), &params))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert!(response.headers().get("location").is_none(), "{name}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Local test provider — not X"),
            "{name}"
        );
    }

    // Once a callback URL is registered, only it (exactly) is accepted.
    x.register_redirect_uri(REDIRECT);
    let mut params = authorize_params(&pkce, SCOPES);
    params.retain(|(k, _)| *k != "redirect_uri");
    params.push((
        "redirect_uri",
        "http://127.0.0.1:9/oauth2/callback/twitter/",
    ));
    let response = client()
        .get(url_with(&x.authorize_url(), &params))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let redirect = authorize(&x, &pkce, SCOPES).await;
    assert!(param(&redirect, "code").is_some());
}

#[tokio::test]
async fn users_me_refuses_bad_tokens_with_xs_problem_object() {
    let x = mock().await;
    let unauthorized = json!({"title": "Unauthorized", "type": "about:blank",
                              "status": 401, "detail": "Unauthorized"});
    let (status, content_type, body) = users_me(&x, "not-a-token", None).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &unauthorized));
    assert_eq!(content_type, "application/problem+json");

    let response = client().get(x.users_me_url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Tokens live two hours.
    let token = token_for(&x, XUser::jack(), SCOPES).await;
    x.advance_clock(Duration::from_secs(7199));
    assert_eq!(users_me(&x, &token, None).await.0, StatusCode::OK);
    x.advance_clock(Duration::from_secs(2));
    let (status, _, body) = users_me(&x, &token, None).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &unauthorized));

    // /2/users/me needs tweet.read and users.read.
    let token = x.mint_oauth2_token(&XUser::jack(), &["users.read"]);
    let (status, _, body) = users_me(&x, &token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "about:blank");

    // A user.fields value X does not have.
    let token = x.mint_oauth2_token(&XUser::jack(), &["tweet.read", "users.read"]);
    let (status, _, body) = users_me(&x, &token, Some("profile_image_url,email")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "https://api.x.com/2/problems/invalid-request");
    assert_eq!(body["errors"][0]["parameters"]["user.fields"][0], "email");
}

#[tokio::test]
async fn failure_controls_make_endpoints_fail() {
    let x = mock().await;
    let pkce = pkce();
    let code = code_for(&x, XUser::jack(), &pkce, SCOPES).await;
    x.fail_token(Some(503));
    let (status, _) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    x.fail_token(None);
    let (status, body) = exchange(
        &x,
        Some(basic(CLIENT_ID, CLIENT_SECRET)),
        &code_form(&code, &pkce.verifier),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = body["access_token"].as_str().unwrap();
    x.fail_userinfo(Some(500));
    assert_eq!(
        users_me(&x, token, None).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    x.fail_request_token(Some(503));
    let response = send_signed(
        reqwest::Method::POST,
        &x.request_token_url(),
        &[],
        CONSUMER_SECRET,
        None,
        &[("oauth_callback", CALLBACK)],
        &nonce(),
        unix_now(),
    )
    .await;
    let (status, body) = v1_error(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errors"][0]["code"], 131);
}

// ---------------------------------------------------------------------------------------------
// OAuth 1.0a

#[tokio::test]
async fn oauth1_full_flow_with_email() {
    let x = mock().await;
    x.set_auto_approve(Some(XUser::jack()));

    let (token, secret) = request_token(&x, CALLBACK).await;
    let record = x.oauth1_requests().pop().unwrap();
    assert_eq!(record.rejected, None);
    assert_eq!(record.oauth_param("oauth_callback"), Some(CALLBACK));

    // The callback keeps its own query; the mock appends oauth_token and oauth_verifier.
    let redirect = location(&authenticate(&x, &token).await);
    assert!(redirect
        .as_str()
        .starts_with(&format!("{CALLBACK}&oauth_token=")));
    assert_eq!(param(&redirect, "flow").as_deref(), Some("abc"));
    assert_eq!(
        param(&redirect, "oauth_token").as_deref(),
        Some(token.as_str())
    );
    let verifier = param(&redirect, "oauth_verifier").unwrap();

    let response = access_token(&x, &token, &secret, &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let pairs = form_pairs(&response.text().await.unwrap());
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "oauth_token",
            "oauth_token_secret",
            "user_id",
            "screen_name"
        ]
    );
    assert_eq!(get(&pairs, "user_id"), "12");
    assert_eq!(get(&pairs, "screen_name"), "jack");
    let access = get(&pairs, "oauth_token").to_owned();
    assert!(access.starts_with("12-"));
    let access_secret = get(&pairs, "oauth_token_secret").to_owned();

    let (status, body) = verify_credentials(
        &x,
        &access,
        &access_secret,
        &[("include_email", "true"), ("skip_status", "true")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], 12);
    assert_eq!(body["id_str"], "12");
    assert_eq!(body["name"], "jack");
    assert_eq!(body["screen_name"], "jack");
    assert_eq!(body["email"], "jack@example.com");
    assert_eq!(
        body["profile_image_url_https"],
        XUser::jack().profile_image_url
    );
    assert!(body.get("status").is_none());

    // Without include_email there is no email.
    let (_, body) = verify_credentials(&x, &access, &access_secret, &[]).await;
    assert!(body.get("email").is_none());

    // The same access token works on /2/users/me with OAuth 1.0a user context.
    let url = url_with(&x.users_me_url(), &[("user.fields", "confirmed_email")]);
    let response = send_signed(
        reqwest::Method::GET,
        &url,
        &[],
        CONSUMER_SECRET,
        Some((&access, &access_secret)),
        &[],
        &nonce(),
        unix_now(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["confirmed_email"], "jack@example.com");

    assert_eq!(x.request_token_hits(), 1);
    assert_eq!(x.authenticate_hits(), 1);
    assert_eq!(x.access_token_hits(), 1);
    assert_eq!(x.verify_credentials_hits(), 2);
    assert!(x.oauth1_requests().iter().all(|r| r.rejected.is_none()));
}

#[tokio::test]
async fn oauth1_verifier_in_the_header_and_the_chooser_page() {
    let x = mock().await;
    let (token, secret) = request_token(&x, CALLBACK).await;
    let response = client()
        .get(url_with(
            &format!("{}{}", x.base_url, mock_x::AUTHORIZE_V1_PATH),
            &[("oauth_token", &token)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("Local test provider — not X"));
    let consent = client()
        .post(format!("{}{}", x.base_url, mock_x::CONSENT_PATH))
        .form(&[
            ("request", request_id(&html).as_str()),
            ("user", "1600000000000000001"),
        ])
        .send()
        .await
        .unwrap();
    let verifier = param(&location(&consent), "oauth_verifier").unwrap();

    let response = send_signed(
        reqwest::Method::POST,
        &x.access_token_url(),
        &[],
        CONSUMER_SECRET,
        Some((&token, &secret)),
        &[("oauth_verifier", &verifier)],
        &nonce(),
        unix_now(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let pairs = form_pairs(&response.text().await.unwrap());
    assert_eq!(get(&pairs, "screen_name"), "noemail_user");

    // No email on this account: no email key (or null, with the control).
    let (access, access_secret) = (
        get(&pairs, "oauth_token").to_owned(),
        get(&pairs, "oauth_token_secret").to_owned(),
    );
    let (status, body) =
        verify_credentials(&x, &access, &access_secret, &[("include_email", "true")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("email").is_none(), "{body}");
    assert_eq!(body["id_str"], "1600000000000000001");
    assert_eq!(body["id"].as_u64(), Some(1_600_000_000_000_000_001));
    x.set_v1_null_email(true);
    let (_, body) =
        verify_credentials(&x, &access, &access_secret, &[("include_email", "true")]).await;
    assert_eq!(body["email"], Value::Null);
}

#[tokio::test]
async fn oauth1_wrong_signatures_are_refused_with_code_32() {
    let x = mock().await;
    let could_not = json!({"errors": [{"code": 32, "message": "Could not authenticate you."}]});

    // Wrong consumer secret.
    let response = send_signed(
        reqwest::Method::POST,
        &x.request_token_url(),
        &[],
        "not-the-secret",
        None,
        &[("oauth_callback", CALLBACK)],
        &nonce(),
        unix_now(),
    )
    .await;
    assert_eq!(
        v1_error(response).await,
        (StatusCode::UNAUTHORIZED, could_not.clone())
    );
    let record = x.oauth1_requests().pop().unwrap();
    assert!(record.rejected.unwrap().contains("signature mismatch"));

    // Unknown consumer key.
    let auth = signer::authorization(&signer::Request {
        method: "POST",
        url: &x.request_token_url(),
        form: &[],
        consumer_key: "someone-else",
        consumer_secret: CONSUMER_SECRET,
        token: None,
        extra_oauth: &[("oauth_callback", CALLBACK)],
        nonce: &nonce(),
        timestamp: unix_now(),
    });
    let response = client()
        .post(x.request_token_url())
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(
        v1_error(response).await,
        (StatusCode::UNAUTHORIZED, could_not.clone())
    );

    // A signed query parameter changed after signing.
    let (access, access_secret) = x.mint_oauth1_token(&XUser::jack());
    let signed_url = url_with(&x.verify_credentials_url(), &[("include_email", "false")]);
    let auth = signer::authorization(&signer::Request {
        method: "GET",
        url: &signed_url,
        form: &[],
        consumer_key: CONSUMER_KEY,
        consumer_secret: CONSUMER_SECRET,
        token: Some((&access, &access_secret)),
        extra_oauth: &[],
        nonce: &nonce(),
        timestamp: unix_now(),
    });
    let response = client()
        .get(url_with(
            &x.verify_credentials_url(),
            &[("include_email", "true")],
        ))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(
        v1_error(response).await,
        (StatusCode::UNAUTHORIZED, could_not.clone())
    );

    // Signed with the wrong token secret.
    let (status, body) = verify_credentials(&x, &access, "wrong-secret", &[]).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, could_not));

    // An unknown access token: 89.
    let (status, body) = verify_credentials(&x, "12-nope", &access_secret, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"errors": [{"code": 89, "message": "Invalid or expired token."}]})
    );

    // No OAuth header at all: 215.
    let response = client().post(x.request_token_url()).send().await.unwrap();
    let (status, body) = v1_error(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["code"], 215);
    assert_eq!(x.request_token_hits(), 3);
}

#[tokio::test]
async fn oauth1_signatures_cover_awkward_characters_in_query_and_body() {
    let x = mock().await;
    let (access, access_secret) = x.mint_oauth1_token(&XUser::jack());
    let awkward = "Ladies + Gentlemen, a signed OAuth request! ☃ *'()~%20&=?/";
    let (status, body) = verify_credentials(
        &x,
        &access,
        &access_secret,
        &[("include_email", "true"), ("note", awkward)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], "jack@example.com");

    x.set_auto_approve(Some(XUser::jack()));
    let (token, secret) = request_token(&x, "http://localhost:9/cb?a=1+2&b=%2F").await;
    let redirect = location(&authenticate(&x, &token).await);
    assert!(redirect
        .as_str()
        .starts_with("http://localhost:9/cb?a=1+2&b=%2F&oauth_token="));
    let verifier = param(&redirect, "oauth_verifier").unwrap();
    let response = send_signed(
        reqwest::Method::POST,
        &x.access_token_url(),
        &[("oauth_verifier", &verifier), ("note", awkward)],
        CONSUMER_SECRET,
        Some((&token, &secret)),
        &[],
        &nonce(),
        unix_now(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn oauth1_reused_nonce_is_refused() {
    let x = mock().await;
    let once = nonce();
    let now = unix_now();
    let url = x.request_token_url();
    let send = || {
        send_signed(
            reqwest::Method::POST,
            &url,
            &[],
            CONSUMER_SECRET,
            None,
            &[("oauth_callback", CALLBACK)],
            &once,
            now,
        )
    };
    assert_eq!(send().await.status(), StatusCode::OK);
    let (status, body) = v1_error(send().await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["code"], 32);
    let record = x.oauth1_requests().pop().unwrap();
    assert_eq!(record.rejected.as_deref(), Some("oauth_nonce already used"));

    // A refused request (bad signature) does not use its nonce up.
    let fresh = nonce();
    let bad = send_signed(
        reqwest::Method::POST,
        &x.request_token_url(),
        &[],
        "wrong",
        None,
        &[("oauth_callback", CALLBACK)],
        &fresh,
        now,
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let good = send_signed(
        reqwest::Method::POST,
        &x.request_token_url(),
        &[],
        CONSUMER_SECRET,
        None,
        &[("oauth_callback", CALLBACK)],
        &fresh,
        now,
    )
    .await;
    assert_eq!(good.status(), StatusCode::OK);
}

#[tokio::test]
async fn oauth1_stale_or_future_timestamps_are_refused_with_code_135() {
    let x = mock().await;
    let out_of_bounds = json!({"errors": [{"code": 135, "message": "Timestamp out of bounds."}]});
    for timestamp in [unix_now() - 310, unix_now() + 310] {
        let response = send_signed(
            reqwest::Method::POST,
            &x.request_token_url(),
            &[],
            CONSUMER_SECRET,
            None,
            &[("oauth_callback", CALLBACK)],
            &nonce(),
            timestamp,
        )
        .await;
        assert_eq!(
            v1_error(response).await,
            (StatusCode::UNAUTHORIZED, out_of_bounds.clone()),
            "{timestamp}"
        );
    }
    // Within the window is fine.
    let response = send_signed(
        reqwest::Method::POST,
        &x.request_token_url(),
        &[],
        CONSUMER_SECRET,
        None,
        &[("oauth_callback", CALLBACK)],
        &nonce(),
        unix_now() - 240,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Moving the mock's clock makes a client's current timestamps stale.
    let (access, access_secret) = oauth1_login(&x, XUser::jack()).await;
    x.advance_clock(Duration::from_secs(600));
    let (status, body) = verify_credentials(&x, &access, &access_secret, &[]).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, out_of_bounds));
}

#[tokio::test]
async fn oauth1_denial_sends_denied_to_the_callback() {
    let x = mock().await;
    x.set_deny(true);
    let (token, secret) = request_token(&x, CALLBACK).await;
    let redirect = location(&authenticate(&x, &token).await);
    assert!(redirect.as_str().starts_with(CALLBACK));
    assert_eq!(param(&redirect, "denied").as_deref(), Some(token.as_str()));
    assert_eq!(param(&redirect, "oauth_verifier"), None);

    // The request token cannot be exchanged without a verifier.
    let response = access_token(&x, &token, &secret, "guess").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.text().await.unwrap(),
        "Error processing your OAuth request: Invalid oauth_verifier parameter"
    );
}

#[tokio::test]
async fn oauth1_request_tokens_are_single_use_and_need_the_right_verifier() {
    let x = mock().await;
    x.set_auto_approve(Some(XUser::jack()));
    let (token, secret) = request_token(&x, CALLBACK).await;
    let verifier = param(&location(&authenticate(&x, &token).await), "oauth_verifier").unwrap();

    let response = access_token(&x, &token, &secret, "not-the-verifier").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = access_token(&x, &token, &secret, &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = access_token(&x, &token, &secret, &verifier).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.text().await.unwrap(), "Invalid request token.");

    // A used request token cannot be authorized again either.
    let response = authenticate(&x, &token).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Local test provider — not X"));

    // Request tokens expire.
    let (token, secret) = request_token(&x, CALLBACK).await;
    let verifier = param(&location(&authenticate(&x, &token).await), "oauth_verifier").unwrap();
    x.advance_clock(mock_x::REQUEST_TOKEN_LIFETIME + Duration::from_secs(1));
    // Sign with the mock's (advanced) clock so that the timestamp is not what fails.
    let response = send_signed(
        reqwest::Method::POST,
        &x.access_token_url(),
        &[("oauth_verifier", &verifier)],
        CONSUMER_SECRET,
        Some((&token, &secret)),
        &[],
        &nonce(),
        unix_now() + 601,
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.text().await.unwrap(), "Invalid request token.");
}

#[tokio::test]
async fn oauth1_callbacks_must_be_approved() {
    let x = mock().await;
    let not_approved = |callback: &'static str| {
        let x = &x;
        async move {
            send_signed(
                reqwest::Method::POST,
                &x.request_token_url(),
                &[],
                CONSUMER_SECRET,
                None,
                &[("oauth_callback", callback)],
                &nonce(),
                unix_now(),
            )
            .await
        }
    };
    // Without registered URLs, only loopback http (and oob).
    let (status, body) = v1_error(not_approved("https://evil.example/cb").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["code"], 415);
    assert_eq!(not_approved("oob").await.status(), StatusCode::OK);

    x.register_callback_url(REDIRECT);
    assert_eq!(not_approved(CALLBACK).await.status(), StatusCode::OK);
    let response = not_approved("http://127.0.0.1:9/oauth2/callback/other").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn stopping_the_mock_refuses_connections() {
    let x = mock().await;
    let url = x.users_me_url();
    x.stop().await;
    assert!(client().get(url).send().await.is_err());
}
