//! A local stand-in for Google's OpenID Connect provider: discovery, authorization (with an
//! account chooser), token, userinfo and JWKS endpoints, plus controls that make it misbehave.
//!
//! Written from Google's public documentation, which the comments below cite by short name:
//! - guide: <https://developers.google.com/identity/openid-connect/openid-connect>
//! - reference: <https://developers.google.com/identity/openid-connect/reference>
//! - web-server: <https://developers.google.com/identity/protocols/oauth2/web-server>
//!   (authorization errors, the code exchange and its error bodies)
//! - native-app: <https://developers.google.com/identity/protocols/oauth2/native-app>
//!   (PKCE: `code_challenge`, `code_challenge_method`, `code_verifier`)
//!
//! The mock stands at `http://127.0.0.1:{port}` and uses Google's paths under that origin:
//! `/o/oauth2/v2/auth`, `/token`, `/v1/userinfo`, `/oauth2/v3/certs` (Google spreads them over
//! `accounts.google.com`, `oauth2.googleapis.com`, `openidconnect.googleapis.com` and
//! `www.googleapis.com`). Its issuer is its own base URL.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::served::{escape, lock, Served};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use rsa::RsaPrivateKey;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const AUTHORIZE_PATH: &str = "/o/oauth2/v2/auth";
pub const TOKEN_PATH: &str = "/token";
pub const USERINFO_PATH: &str = "/v1/userinfo";
pub const JWKS_PATH: &str = "/oauth2/v3/certs";
/// Not Google's: where the account chooser's buttons go (GET with a query or POST a form).
pub const CONSENT_PATH: &str = "/mock/consent";

/// Lifetime of an authorization code (the brief's choice; Google documents no number).
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// `expires_in` of Google's access tokens (web-server, "Exchange authorization code").
pub const ACCESS_TOKEN_EXPIRES_IN: u64 = 3599;
/// ID tokens are valid for one hour (guide, "An ID token's payload": `exp`).
pub const ID_TOKEN_LIFETIME: u64 = 3600;

/// A Google account as the mock knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestUser {
    /// Google's stable numeric account id (guide: "never reused").
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub picture: String,
    pub locale: String,
    /// The Workspace hosted domain, only for Workspace accounts (guide: `hd`).
    pub hd: Option<String>,
}

impl TestUser {
    /// A user with a verified email; the names are split on the first space.
    pub fn new(sub: &str, email: &str, name: &str) -> TestUser {
        let (given, family) = name.split_once(' ').unwrap_or((name, ""));
        TestUser {
            sub: sub.to_owned(),
            email: email.to_owned(),
            email_verified: true,
            name: name.to_owned(),
            given_name: given.to_owned(),
            family_name: family.to_owned(),
            picture: format!(
                "https://lh3.googleusercontent.com/a/mock-{}=s96-c",
                sub.chars().rev().take(8).collect::<String>()
            ),
            locale: "en".to_owned(),
            hd: None,
        }
    }

    /// Alice: verified `alice@example.com`, sub `110169484474386276334`.
    pub fn alice() -> TestUser {
        TestUser::new(
            "110169484474386276334",
            "alice@example.com",
            "Alice Example",
        )
    }

    /// Bob: `bob@example.org`, email NOT verified.
    pub fn bob() -> TestUser {
        TestUser {
            email_verified: false,
            ..TestUser::new("104735893746372625501", "bob@example.org", "Bob Unverified")
        }
    }
}

/// One-shot misbehaviour applied to the next token response (then reset to `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tamper {
    #[default]
    None,
    /// Signed with a key that is not in the JWKS, under the current key's `kid`.
    BadSignature,
    /// Signed with a key that is not in the JWKS, under a `kid` the JWKS does not list.
    UnknownKid,
    /// `alg: none`, no signature.
    AlgNone,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `aud` (and `azp`) is another client.
    WrongAudience,
    /// `iat` two hours ago, `exp` one hour ago.
    Expired,
    /// `nonce` is not the one from the authorization request.
    WrongNonce,
    /// No `nonce` claim although the request had one.
    NoNonce,
    /// `at_hash` does not match the access token.
    WrongAtHash,
    /// The token response has no `id_token` at all.
    NoIdToken,
}

/// The two spellings of Google's issuer (reference: "The modern value is
/// https://accounts.google.com; however, accounts.google.com is also returned for legacy
/// implementations"). The mock's equivalents are its base URL and that URL without the scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IssuerStyle {
    /// `iss` = `http://127.0.0.1:PORT` (= the discovery `issuer`), like `https://accounts.google.com`.
    #[default]
    Url,
    /// `iss` = `127.0.0.1:PORT`, like `accounts.google.com`.
    HostOnly,
}

/// How the client authenticated at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic.
    Basic,
    /// `client_secret_post`: `client_id` + `client_secret` in the form.
    Post,
    /// No secret at all.
    None,
}

/// What tests can change. Every field has a setter on [`MockGoogle`].
#[derive(Clone, Debug)]
pub struct Controls {
    /// Approve every authorization request at once as this user (no chooser page).
    pub auto_approve: Option<TestUser>,
    /// Answer every authorization request with `error=access_denied`.
    pub deny: bool,
    /// Users listed on the account chooser.
    pub users: Vec<TestUser>,
    /// Registered redirect URIs; empty = any `http` loopback URI is accepted.
    pub redirect_uris: Vec<String>,
    /// Applied to the next token response, then reset.
    pub tamper: Tamper,
    pub issuer_style: IssuerStyle,
    /// Add RFC 9207 `iss` to authorization responses. Google started doing this for some users
    /// in 2026 without announcing it in discovery (openiddict/openiddict-core#2428), so a client
    /// must tolerate the extra parameter.
    pub authorization_iss: bool,
    /// Discovery answers 503.
    pub fail_discovery: bool,
    /// JWKS answers this status.
    pub fail_jwks: Option<u16>,
    /// The token endpoint answers this status.
    pub fail_token: Option<u16>,
    /// The userinfo endpoint answers this status.
    pub fail_userinfo: Option<u16>,
    /// The token endpoint waits this long before answering (a slow provider).
    pub token_delay: Duration,
    /// `max-age` of the JWKS response.
    pub jwks_max_age: u64,
    /// Added to the mock's clock for code and access-token expiry.
    pub clock_offset: Duration,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            auto_approve: None,
            deny: false,
            users: vec![TestUser::alice(), TestUser::bob()],
            redirect_uris: Vec::new(),
            tamper: Tamper::None,
            issuer_style: IssuerStyle::Url,
            authorization_iss: false,
            fail_discovery: false,
            fail_jwks: None,
            fail_token: None,
            fail_userinfo: None,
            token_delay: Duration::ZERO,
            // Google serves its certs with a max-age of several hours.
            jwks_max_age: 21_600,
            clock_offset: Duration::ZERO,
        }
    }
}

/// An authorization request as received (query parameters in order).
#[derive(Clone, Debug)]
pub struct AuthorizeRecord {
    pub params: Vec<(String, String)>,
}

impl AuthorizeRecord {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A token request as received; `client_secret` and `code_verifier` values are kept (it is a
/// test peer) so tests can check them.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub auth: ClientAuth,
    pub params: Vec<(String, String)>,
}

impl TokenRecord {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct SigningKeyEntry {
    kid: String,
    key: RsaPrivateKey,
    published: bool,
}

#[derive(Clone, Debug)]
struct AuthRequest {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scopes: Vec<String>,
    /// (challenge, method)
    pkce: Option<(String, String)>,
    prompt: Option<String>,
}

struct CodeGrant {
    request: AuthRequest,
    user: TestUser,
    issued: Instant,
    used: bool,
    access_token: Option<String>,
}

struct AccessGrant {
    user: TestUser,
    scopes: Vec<String>,
    expires: Instant,
}

#[derive(Default)]
struct ProviderState {
    /// Signing keys, oldest first; the last one signs.
    keys: Vec<SigningKeyEntry>,
    /// A key never published, for `BadSignature` / `UnknownKid`.
    rogue: Option<SigningKeyEntry>,
    /// Requests waiting on the account chooser, by id.
    pending: HashMap<String, AuthRequest>,
    codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, AccessGrant>,
    last_authorize: Option<AuthorizeRecord>,
    token_requests: Vec<TokenRecord>,
}

struct Shared {
    base_url: String,
    client_id: String,
    client_secret: String,
    controls: Arc<Mutex<Controls>>,
    state: Mutex<ProviderState>,
    hits: super::hits::Hits,
}

impl Shared {
    fn controls(&self) -> Controls {
        lock(&self.controls).clone()
    }

    fn state(&self) -> MutexGuard<'_, ProviderState> {
        lock(&self.state)
    }

    fn now(&self) -> Instant {
        Instant::now() + lock(&self.controls).clock_offset
    }

    fn issuer_claim(&self, style: IssuerStyle) -> String {
        match style {
            IssuerStyle::Url => self.base_url.clone(),
            IssuerStyle::HostOnly => self
                .base_url
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .to_owned(),
        }
    }
}

type App = Arc<Shared>;

/// The running mock provider. Dropping it (or [`MockGoogle::shutdown`]) stops the server.
pub struct MockGoogle {
    /// `http://127.0.0.1:PORT`, also the issuer.
    pub base_url: String,
    pub addr: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    controls: Arc<Mutex<Controls>>,
    shared: Arc<Shared>,
    served: Served,
}

/// Starts a mock provider on `127.0.0.1:0` on the current tokio runtime, knowing one client.
pub async fn start(client_id: &str, client_secret: &str) -> MockGoogle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock provider");
    let addr = listener.local_addr().expect("mock provider address");
    let base_url = format!("http://{addr}");
    let first_key = generate_key().await;

    let controls = Arc::new(Mutex::new(Controls::default()));
    let shared = Arc::new(Shared {
        base_url: base_url.clone(),
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        controls: controls.clone(),
        state: Mutex::new(ProviderState {
            keys: vec![first_key],
            ..ProviderState::default()
        }),
        hits: super::hits::Hits::new(&["discovery", "authorize", "token", "userinfo", "jwks"]),
    });

    let router = Router::new()
        .route(DISCOVERY_PATH, get(discovery))
        .route(AUTHORIZE_PATH, get(authorize))
        .route(CONSENT_PATH, get(consent_get).post(consent_post))
        .route(TOKEN_PATH, axum::routing::post(token))
        .route(USERINFO_PATH, get(userinfo).post(userinfo))
        .route(JWKS_PATH, get(jwks))
        .with_state(shared.clone());

    let served = Served::spawn(|shutdown| async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.wait())
            .await;
    });

    MockGoogle {
        base_url,
        addr,
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        controls,
        shared,
        served,
    }
}

impl MockGoogle {
    /// The discovery `issuer` (= `base_url`).
    pub fn issuer(&self) -> &str {
        &self.base_url
    }

    pub fn discovery_url(&self) -> String {
        format!("{}{DISCOVERY_PATH}", self.base_url)
    }

    pub fn authorize_url(&self) -> String {
        format!("{}{AUTHORIZE_PATH}", self.base_url)
    }

    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base_url)
    }

    pub fn userinfo_url(&self) -> String {
        format!("{}{USERINFO_PATH}", self.base_url)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.base_url)
    }

    /// Stops accepting connections and closes idle ones. Idempotent.
    pub fn shutdown(&self) {
        self.served.shutdown();
    }

    /// Shuts down and waits until the listener is closed and in-flight requests are done
    /// (at most 5 s, then the server task is aborted): afterwards connections are refused.
    pub async fn stop(&self) {
        self.served.stop().await;
    }

    /// Runs `f` on the controls (for anything without a setter).
    pub fn with_controls<R>(&self, f: impl FnOnce(&mut Controls) -> R) -> R {
        f(&mut lock(&self.controls))
    }

    /// Registers a redirect URI; once any is registered, only registered ones are accepted
    /// (exact string match, as Google does).
    pub fn register_redirect_uri(&self, uri: &str) {
        self.with_controls(|c| c.redirect_uris.push(uri.to_owned()));
    }

    pub fn set_auto_approve(&self, user: Option<TestUser>) {
        self.with_controls(|c| c.auto_approve = user);
    }

    pub fn set_deny(&self, deny: bool) {
        self.with_controls(|c| c.deny = deny);
    }

    /// Adds a user to the account chooser.
    pub fn add_user(&self, user: TestUser) {
        self.with_controls(|c| c.users.push(user));
    }

    /// Misbehaves on the next token response only.
    pub fn set_tamper(&self, tamper: Tamper) {
        self.with_controls(|c| c.tamper = tamper);
    }

    pub fn set_issuer_style(&self, style: IssuerStyle) {
        self.with_controls(|c| c.issuer_style = style);
    }

    /// Adds RFC 9207 `iss` to authorization responses (see [`Controls::authorization_iss`]).
    pub fn set_authorization_iss(&self, on: bool) {
        self.with_controls(|c| c.authorization_iss = on);
    }

    pub fn fail_discovery(&self, fail: bool) {
        self.with_controls(|c| c.fail_discovery = fail);
    }

    pub fn fail_jwks(&self, status: Option<u16>) {
        self.with_controls(|c| c.fail_jwks = status);
    }

    /// The token endpoint answers `status` (e.g. `Some(503)`) until set back to `None`.
    pub fn fail_token(&self, status: Option<u16>) {
        self.with_controls(|c| c.fail_token = status);
    }

    pub fn fail_userinfo(&self, status: Option<u16>) {
        self.with_controls(|c| c.fail_userinfo = status);
    }

    pub fn set_token_delay(&self, delay: Duration) {
        self.with_controls(|c| c.token_delay = delay);
    }

    pub fn set_jwks_max_age(&self, seconds: u64) {
        self.with_controls(|c| c.jwks_max_age = seconds);
    }

    /// Moves the mock's clock forward (expires codes and access tokens without sleeping).
    pub fn advance_clock(&self, by: Duration) {
        self.with_controls(|c| c.clock_offset += by);
    }

    /// Generates a new signing key with a new `kid`; new tokens are signed with it. With
    /// `keep_old`, the JWKS lists the old keys too (as Google does during rotation); without,
    /// only the new one. Returns the new `kid`.
    pub async fn rotate_key(&self, keep_old: bool) -> String {
        let entry = generate_key().await;
        let kid = entry.kid.clone();
        let mut state = self.shared.state();
        if !keep_old {
            for old in &mut state.keys {
                old.published = false;
            }
        }
        state.keys.push(entry);
        kid
    }

    /// The `kid` that signs new tokens.
    pub fn current_kid(&self) -> String {
        let state = self.shared.state();
        state.keys.last().expect("a key").kid.clone()
    }

    pub fn discovery_hits(&self) -> usize {
        self.shared.hits.get("discovery")
    }

    pub fn authorize_hits(&self) -> usize {
        self.shared.hits.get("authorize")
    }

    pub fn token_hits(&self) -> usize {
        self.shared.hits.get("token")
    }

    pub fn userinfo_hits(&self) -> usize {
        self.shared.hits.get("userinfo")
    }

    pub fn jwks_hits(&self) -> usize {
        self.shared.hits.get("jwks")
    }

    /// The last authorization request's query parameters.
    pub fn last_authorize(&self) -> Option<AuthorizeRecord> {
        self.shared.state().last_authorize.clone()
    }

    /// Every token request so far, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRecord> {
        self.shared.state().token_requests.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery

/// reference, "Discovery Document". `response_types_supported` lists only `code` (all the mock
/// implements; Google lists the implicit and hybrid types too), `grant_types_supported` only what
/// the mock implements plus Google's refresh grant, and the device and revocation endpoints are
/// left out.
async fn discovery(State(app): State<App>) -> Response {
    app.hits.hit("discovery");
    if app.controls().fail_discovery {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "mock provider: discovery outage",
        )
            .into_response();
    }
    let base = &app.base_url;
    let doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "userinfo_endpoint": format!("{base}{USERINFO_PATH}"),
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": [
            "aud", "email", "email_verified", "exp", "family_name", "given_name",
            "iat", "iss", "name", "picture", "sub"
        ],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
    });
    json_response(StatusCode::OK, &doc, Some("public, max-age=3600"))
}

// ---------------------------------------------------------------------------------------------
// Authorization endpoint

/// guide, "Send an authentication request to Google" and web-server, "Step 2 / Step 4".
async fn authorize(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    app.hits.hit("authorize");
    let params = parse_pairs(query.as_deref().unwrap_or("").as_bytes());
    app.state().last_authorize = Some(AuthorizeRecord {
        params: params.clone(),
    });
    let controls = app.controls();

    // Client and redirect URI problems are shown to the user, never redirected
    // (web-server, "Authorization errors": invalid_client, redirect_uri_mismatch).
    let client_id = single(&params, "client_id");
    match client_id {
        Ok(Some(id)) if id == app.client_id => {}
        Ok(Some(_)) => {
            return error_page(
                "invalid_client",
                "Error 401: invalid_client",
                "The OAuth client was not found.",
            )
        }
        _ => {
            return error_page(
                "invalid_request",
                "Error 400: invalid_request",
                "Missing required parameter: client_id",
            )
        }
    }
    let redirect_uri = match single(&params, "redirect_uri") {
        Ok(Some(uri)) => uri.to_owned(),
        _ => {
            return error_page(
                "invalid_request",
                "Error 400: invalid_request",
                "Missing required parameter: redirect_uri",
            )
        }
    };
    if !redirect_uri_allowed(&controls.redirect_uris, &redirect_uri) {
        return error_page(
            "redirect_uri_mismatch",
            "Error 400: redirect_uri_mismatch",
            &format!(
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 \
                 policy. The redirect URI {redirect_uri} is not registered for this client."
            ),
        );
    }

    // From here on, errors go back to the client (RFC 6749 section 4.1.2.1).
    let state = single(&params, "state").ok().flatten().map(str::to_owned);
    let iss = controls.authorization_iss.then(|| app.base_url.clone());
    let fail = |error: &str, description: &str| {
        redirect_with(
            &redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", state.as_deref()),
                ("iss", iss.as_deref()),
            ],
        )
    };
    if params
        .iter()
        .enumerate()
        .any(|(i, (k, _))| params[..i].iter().any(|(k2, _)| k2 == k))
    {
        return fail("invalid_request", "A parameter was repeated.");
    }
    match single(&params, "response_type") {
        Ok(Some("code")) => {}
        Ok(Some(_)) => {
            return fail(
                "unsupported_response_type",
                "The mock provider supports response_type=code only.",
            )
        }
        _ => {
            return fail(
                "invalid_request",
                "Required parameter is missing: response_type",
            )
        }
    }
    let scopes: Vec<String> = single(&params, "scope")
        .ok()
        .flatten()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return fail("invalid_request", "Missing required parameter: scope");
    }
    if !scopes.iter().any(|s| s == "openid") {
        return fail("invalid_scope", "The scope must contain openid.");
    }
    if let Some(unknown) = scopes.iter().find(|s| {
        !matches!(
            s.as_str(),
            "openid"
                | "email"
                | "profile"
                | "https://www.googleapis.com/auth/userinfo.email"
                | "https://www.googleapis.com/auth/userinfo.profile"
        )
    }) {
        return fail(
            "invalid_scope",
            &format!("Some requested scopes were invalid: {unknown}"),
        );
    }
    let challenge = single(&params, "code_challenge").ok().flatten();
    let method = single(&params, "code_challenge_method").ok().flatten();
    let pkce = match (challenge, method) {
        (None, None) => None,
        (None, Some(_)) => return fail("invalid_request", "Missing code_challenge."),
        (Some(c), m) => {
            // RFC 7636 section 4.2: the method defaults to plain.
            let m = m.unwrap_or("plain");
            if m != "S256" && m != "plain" {
                return fail("invalid_request", "Invalid code_challenge_method.");
            }
            if !valid_pkce_string(c) {
                return fail("invalid_request", "Invalid code_challenge.");
            }
            Some((c.to_owned(), m.to_owned()))
        }
    };
    let request = AuthRequest {
        redirect_uri,
        state,
        nonce: single(&params, "nonce").ok().flatten().map(str::to_owned),
        scopes,
        pkce,
        prompt: single(&params, "prompt").ok().flatten().map(str::to_owned),
    };

    if controls.deny {
        return deny_redirect(&app, &request);
    }
    if let Some(user) = controls.auto_approve {
        return approve(&app, request, user);
    }
    let id = random_token(18);
    app.state().pending.insert(id.clone(), request);
    chooser_page(&id, &controls.users)
}

/// The answer when the user picks an account on the chooser page.
async fn consent_get(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    consent(app, parse_pairs(query.as_deref().unwrap_or("").as_bytes()))
}

async fn consent_post(State(app): State<App>, body: Bytes) -> Response {
    consent(app, parse_pairs(&body))
}

fn consent(app: App, params: Vec<(String, String)>) -> Response {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(request) = get("request").and_then(|id| app.state().pending.remove(&id)) else {
        return error_page(
            "invalid_request",
            "This sign-in request has expired",
            "Start again from the application.",
        );
    };
    if get("deny").is_some() {
        return deny_redirect(&app, &request);
    }
    let users = app.controls().users;
    match get("sub").and_then(|sub| users.into_iter().find(|u| u.sub == sub)) {
        Some(user) => approve(&app, request, user),
        None => error_page(
            "invalid_request",
            "Unknown account",
            "Pick a listed account.",
        ),
    }
}

fn deny_redirect(app: &App, request: &AuthRequest) -> Response {
    let iss = app
        .controls()
        .authorization_iss
        .then(|| app.base_url.clone());
    redirect_with(
        &request.redirect_uri,
        &[
            ("error", Some("access_denied")),
            ("state", request.state.as_deref()),
            ("iss", iss.as_deref()),
        ],
    )
}

/// web-server, "Step 4: Handle the OAuth 2.0 server response": `?state=...&code=...&scope=...`;
/// Google also adds `authuser` and `prompt` (seen on real responses), and, since 2026 for some
/// users, `iss` ([`Controls::authorization_iss`]).
fn approve(app: &App, request: AuthRequest, user: TestUser) -> Response {
    let code = format!("4/0Mock{}", random_token(30));
    let iss = app
        .controls()
        .authorization_iss
        .then(|| app.base_url.clone());
    let scope = granted_scope(&request.scopes);
    let prompt = if request.prompt.as_deref() == Some("consent") {
        "consent"
    } else {
        "none"
    };
    let response = redirect_with(
        &request.redirect_uri,
        &[
            ("state", request.state.as_deref()),
            ("iss", iss.as_deref()),
            ("code", Some(&code)),
            ("scope", Some(&scope)),
            ("authuser", Some("0")),
            ("prompt", Some(prompt)),
        ],
    );
    let issued = app.now();
    app.state().codes.insert(
        code,
        CodeGrant {
            request,
            user,
            issued,
            used: false,
            access_token: None,
        },
    );
    response
}

/// Google answers with the scopes in its long form next to the short ones.
fn granted_scope(scopes: &[String]) -> String {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut out = Vec::new();
    if has("email") || has("https://www.googleapis.com/auth/userinfo.email") {
        out.push("email");
    }
    if has("profile") || has("https://www.googleapis.com/auth/userinfo.profile") {
        out.push("profile");
    }
    if has("profile") || has("https://www.googleapis.com/auth/userinfo.profile") {
        out.push("https://www.googleapis.com/auth/userinfo.profile");
    }
    if has("email") || has("https://www.googleapis.com/auth/userinfo.email") {
        out.push("https://www.googleapis.com/auth/userinfo.email");
    }
    out.push("openid");
    out.join(" ")
}

fn redirect_uri_allowed(registered: &[String], uri: &str) -> bool {
    if !registered.is_empty() {
        return registered.iter().any(|r| r == uri);
    }
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    url.scheme() == "http" && url.fragment().is_none() && loopback
}

fn chooser_page(request_id: &str, users: &[TestUser]) -> Response {
    let mut buttons = String::new();
    for user in users {
        let verified = if user.email_verified {
            "verified"
        } else {
            "unverified"
        };
        let _ = write!(
            buttons,
            "<li><form method=\"post\" action=\"{CONSENT_PATH}\">\
             <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
             <button type=\"submit\" name=\"sub\" value=\"{sub}\">\
             <strong>{name}</strong><br><span>{email} ({verified})</span></button></form></li>",
            rid = escape(request_id),
            sub = escape(&user.sub),
            name = escape(&user.name),
            email = escape(&user.email),
        );
    }
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Local test provider — not Google</title>\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}\
         .banner{{background:#fde68a;padding:.75rem;border-radius:.5rem}}\
         ul{{list-style:none;padding:0}}li{{margin:.5rem 0}}\
         button{{width:100%;text-align:left;padding:.75rem;font-size:1rem;cursor:pointer}}\
         </style></head><body>\
         <p class=\"banner\"><strong>Local test provider — not Google.</strong> \
         This page stands in for Google's sign-in during tests and demos.</p>\
         <h1>Choose an account</h1><ul>{buttons}</ul>\
         <form method=\"post\" action=\"{CONSENT_PATH}\">\
         <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
         <button type=\"submit\" name=\"deny\" value=\"1\">Deny</button></form>\
         </body></html>",
        rid = escape(request_id),
    );
    no_store(Html(page).into_response())
}

fn error_page(error: &str, title: &str, detail: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Error - Local test provider — not Google</title></head><body>\
         <p><strong>Local test provider — not Google.</strong></p>\
         <h1>Access blocked: authorization error</h1><h2>{title}</h2><p>{detail}</p>\
         <p>Error code: <code>{error}</code></p></body></html>",
        title = escape(title),
        detail = escape(detail),
        error = escape(error),
    );
    no_store((StatusCode::BAD_REQUEST, Html(page)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

/// guide, "Exchange code for access token and ID token"; web-server, "Step 5" (error bodies);
/// native-app for `code_verifier`.
async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    app.hits.hit("token");
    let controls = app.controls();
    if !controls.token_delay.is_zero() {
        tokio::time::sleep(controls.token_delay).await;
    }
    let params = parse_pairs(&body);
    let basic = basic_credentials(&headers);
    let auth = if basic.is_some() {
        ClientAuth::Basic
    } else if params.iter().any(|(k, _)| k == "client_secret") {
        ClientAuth::Post
    } else {
        ClientAuth::None
    };
    app.state().token_requests.push(TokenRecord {
        auth,
        params: params.clone(),
    });

    if let Some(status) = controls.fail_token {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return oauth_error(status, "internal_failure", "Backend Error");
    }
    let form_typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_typed {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request");
    }
    if params
        .iter()
        .enumerate()
        .any(|(i, (k, _))| params[..i].iter().any(|(k2, _)| k2 == k))
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request");
    }
    let form = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    // Client authentication: Basic or the form, both accepted (reference, discovery
    // `token_endpoint_auth_methods_supported`).
    let (client_id, secret) = match (&basic, form("client_id"), form("client_secret")) {
        (Some((id, secret)), body_id, body_secret) => {
            if body_id.is_some_and(|b| b != id) || body_secret.is_some_and(|b| b != secret) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request");
            }
            (id.clone(), Some(secret.clone()))
        }
        (None, Some(id), secret) => (id.to_owned(), secret.map(str::to_owned)),
        (None, None, _) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Could not determine client ID from request.",
            )
        }
    };
    if client_id != app.client_id {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    match secret {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_secret is missing.",
            )
        }
        Some(s) if s != app.client_secret => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized")
        }
        Some(_) => {}
    }

    match form("grant_type") {
        Some("authorization_code") => {}
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {}", other.unwrap_or("")),
            )
        }
    }
    let Some(code) = form("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: code",
        );
    };
    let now = app.now();
    let mut state = app.state();
    let Some(grant) = state.codes.get_mut(code) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Malformed auth code.",
        );
    };
    if grant.used {
        // RFC 6749 section 4.1.2: a replayed code also revokes what it issued.
        if let Some(token) = grant.access_token.take() {
            state.access_tokens.remove(&token);
        }
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    }
    if now.duration_since(grant.issued) > CODE_LIFETIME {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    }
    match form("redirect_uri") {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing parameter: redirect_uri",
            )
        }
        Some(uri) if uri != grant.request.redirect_uri => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                "Bad Request",
            )
        }
        Some(_) => {}
    }
    if let Some((challenge, method)) = &grant.request.pkce {
        let Some(verifier) = form("code_verifier") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Missing code verifier.",
            );
        };
        let computed = if method == "S256" {
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        } else {
            verifier.to_owned()
        };
        if !valid_pkce_string(verifier) || &computed != challenge {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
        }
    }

    grant.used = true;
    let access_token = format!("ya29.mock-{}", random_token(48));
    grant.access_token = Some(access_token.clone());
    let request = grant.request.clone();
    let user = grant.user.clone();
    state.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            user: user.clone(),
            scopes: request.scopes.clone(),
            expires: now + Duration::from_secs(ACCESS_TOKEN_EXPIRES_IN),
        },
    );
    drop(state);

    let tamper = app.with_tamper_taken();
    let mut response = Map::new();
    response.insert("access_token".into(), json!(access_token));
    response.insert("expires_in".into(), json!(ACCESS_TOKEN_EXPIRES_IN));
    response.insert("scope".into(), json!(granted_scope(&request.scopes)));
    response.insert("token_type".into(), json!("Bearer"));
    if tamper != Tamper::NoIdToken {
        let id_token = app.mint_id_token(&request, &user, &access_token, tamper, &controls);
        response.insert("id_token".into(), json!(id_token));
    }
    // Google's token responses are marked uncacheable.
    json_response(
        StatusCode::OK,
        &Value::Object(response),
        Some("no-cache, no-store, max-age=0, must-revalidate"),
    )
}

impl Shared {
    fn with_tamper_taken(&self) -> Tamper {
        std::mem::take(&mut lock(&self.controls).tamper)
    }

    /// guide, "An ID token's payload".
    fn mint_id_token(
        &self,
        request: &AuthRequest,
        user: &TestUser,
        access_token: &str,
        tamper: Tamper,
        controls: &Controls,
    ) -> String {
        let now = unix_now();
        let (iat, exp) = if tamper == Tamper::Expired {
            (now - 7200, now - 3600)
        } else {
            (now, now + ID_TOKEN_LIFETIME as i64)
        };
        let audience = if tamper == Tamper::WrongAudience {
            "000000000000-other.apps.googleusercontent.com".to_owned()
        } else {
            self.client_id.clone()
        };
        let iss = if tamper == Tamper::WrongIssuer {
            "https://issuer.invalid".to_owned()
        } else {
            self.issuer_claim(controls.issuer_style)
        };
        let at_hash = if tamper == Tamper::WrongAtHash {
            half_sha256("not-the-access-token")
        } else {
            half_sha256(access_token)
        };
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(iss));
        claims.insert("azp".into(), json!(audience));
        claims.insert("aud".into(), json!(audience));
        claims.insert("sub".into(), json!(user.sub));
        let has = |s: &str| request.scopes.iter().any(|x| x == s);
        let email_scope = has("email") || has("https://www.googleapis.com/auth/userinfo.email");
        let profile_scope =
            has("profile") || has("https://www.googleapis.com/auth/userinfo.profile");
        if let Some(hd) = &user.hd {
            claims.insert("hd".into(), json!(hd));
        }
        if email_scope {
            claims.insert("email".into(), json!(user.email));
            claims.insert("email_verified".into(), json!(user.email_verified));
        }
        claims.insert("at_hash".into(), json!(at_hash));
        match (tamper, &request.nonce) {
            (Tamper::NoNonce, _) => {}
            (Tamper::WrongNonce, _) => {
                claims.insert("nonce".into(), json!("not-the-nonce-that-was-sent"));
            }
            (_, Some(nonce)) => {
                claims.insert("nonce".into(), json!(nonce));
            }
            (_, None) => {}
        }
        if profile_scope {
            claims.insert("name".into(), json!(user.name));
            claims.insert("picture".into(), json!(user.picture));
            claims.insert("given_name".into(), json!(user.given_name));
            if !user.family_name.is_empty() {
                claims.insert("family_name".into(), json!(user.family_name));
            }
            claims.insert("locale".into(), json!(user.locale));
        }
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(exp));
        let claims = Value::Object(claims);

        match tamper {
            Tamper::AlgNone => encode_jwt(None, &json!({"alg": "none", "typ": "JWT"}), &claims),
            Tamper::BadSignature | Tamper::UnknownKid => {
                let mut state = self.state();
                let current_kid = state.keys.last().expect("a key").kid.clone();
                let rogue = state.rogue.get_or_insert_with(generate_key_blocking);
                let kid = if tamper == Tamper::BadSignature {
                    current_kid
                } else {
                    rogue.kid.clone()
                };
                encode_jwt(
                    Some(&rogue.key),
                    &json!({"alg": "RS256", "kid": kid, "typ": "JWT"}),
                    &claims,
                )
            }
            _ => {
                let state = self.state();
                let key = state.keys.last().expect("a key");
                encode_jwt(
                    Some(&key.key),
                    &json!({"alg": "RS256", "kid": key.kid, "typ": "JWT"}),
                    &claims,
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Userinfo and JWKS

/// guide, "Obtaining user profile information": `GET` with `Authorization: Bearer`.
async fn userinfo(State(app): State<App>, headers: HeaderMap) -> Response {
    app.hits.hit("userinfo");
    if let Some(status) = app.controls().fail_userinfo {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return oauth_error(status, "internal_failure", "Backend Error");
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_owned);
    let now = app.now();
    let grant = token.and_then(|t| {
        let state = app.state();
        state
            .access_tokens
            .get(&t)
            .filter(|g| g.expires > now)
            .map(|g| (g.user.clone(), g.scopes.clone()))
    });
    let Some((user, scopes)) = grant else {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "Invalid Credentials",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
        return response;
    };
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.sub));
    if has("profile") || has("https://www.googleapis.com/auth/userinfo.profile") {
        claims.insert("name".into(), json!(user.name));
        claims.insert("given_name".into(), json!(user.given_name));
        if !user.family_name.is_empty() {
            claims.insert("family_name".into(), json!(user.family_name));
        }
        claims.insert("picture".into(), json!(user.picture));
        claims.insert("locale".into(), json!(user.locale));
    }
    if has("email") || has("https://www.googleapis.com/auth/userinfo.email") {
        claims.insert("email".into(), json!(user.email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    if let Some(hd) = &user.hd {
        claims.insert("hd".into(), json!(hd));
    }
    json_response(StatusCode::OK, &Value::Object(claims), Some("no-store"))
}

/// guide, "Validating an ID token": Google's public keys as a JWK set, cacheable per
/// `Cache-Control`.
async fn jwks(State(app): State<App>) -> Response {
    app.hits.hit("jwks");
    let controls = app.controls();
    if let Some(status) = controls.fail_jwks {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, "mock provider: jwks outage").into_response();
    }
    let keys: Vec<Value> = app
        .state()
        .keys
        .iter()
        .rev()
        .filter(|k| k.published)
        .map(|k| {
            json!({
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": k.kid,
                "n": URL_SAFE_NO_PAD.encode(k.key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(k.key.e().to_bytes_be()),
            })
        })
        .collect();
    let cache = format!(
        "public, max-age={}, must-revalidate, no-transform",
        controls.jwks_max_age
    );
    json_response(StatusCode::OK, &json!({ "keys": keys }), Some(&cache))
}

// ---------------------------------------------------------------------------------------------
// Helpers

async fn generate_key() -> SigningKeyEntry {
    tokio::task::spawn_blocking(generate_key_blocking)
        .await
        .expect("key generation")
}

fn generate_key_blocking() -> SigningKeyEntry {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA-2048 key");
    // Google's kids are 40 hex digits.
    let mut raw = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut raw);
    let kid = raw.iter().map(|b| format!("{b:02x}")).collect();
    SigningKeyEntry {
        kid,
        key,
        published: true,
    }
}

fn encode_jwt(key: Option<&RsaPrivateKey>, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    match key {
        Some(key) => {
            let signature = SigningKey::<Sha256>::new(key.clone()).sign(signing_input.as_bytes());
            format!(
                "{signing_input}.{}",
                URL_SAFE_NO_PAD.encode(signature.to_bytes())
            )
        }
        None => format!("{signing_input}."),
    }
}

/// OIDC Core section 3.1.3.6: base64url of the left half of SHA-256 of the access token.
fn half_sha256(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// RFC 7636 section 4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn parse_pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// `Ok(None)` when absent, `Err(())` when repeated.
fn single<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ()> {
    let mut found = params.iter().filter(|(k, _)| k == name);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some((_, v)), None) => Ok(Some(v.as_str())),
        (Some(_), Some(_)) => Err(()),
    }
}

/// RFC 6749 section 2.3.1: Basic credentials are form-urlencoded before base64.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

fn redirect_with(base: &str, params: &[(&str, Option<&str>)]) -> Response {
    let mut url = url::Url::parse(base).expect("redirect_uri was validated");
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
    }
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(url.as_str()).expect("a URL is a valid header value"),
    );
    no_store(response)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
        Some("no-store"),
    )
}

fn json_response(status: StatusCode, body: &Value, cache_control: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    if let Some(cc) = cache_control {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(cc).expect("ASCII cache-control"),
        );
    }
    response
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
