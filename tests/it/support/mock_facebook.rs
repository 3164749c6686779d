//! A local stand-in for "Sign in with Facebook", for tests and the demo: the versioned Login
//! dialog, the code exchange (GET and POST), the Graph API `/me` node with `appsecret_proof`, an
//! account chooser, and controls that make it misbehave.
//!
//! Written from Facebook's public documentation, cited below by short name:
//! - manual-flow: <https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow>
//!   ("Manually Build a Login Flow": `GET https://www.facebook.com/{version}/dialog/oauth` with
//!   `client_id`, `redirect_uri`, `state`, `response_type` (default `code`), `scope` "a comma or
//!   space separated list of permissions"; "Exchanging Code for an Access Token":
//!   `GET https://graph.facebook.com/{version}/oauth/access_token?client_id&redirect_uri&
//!   client_secret&code`, answered `{"access_token","token_type","expires_in"}`; the
//!   `redirect_uri` "must be the same" as in the dialog; canceled logins come back with
//!   `error_reason=user_denied&error=access_denied&error_description=Permissions+error`)
//! - secure-requests: <https://developers.facebook.com/docs/graph-api/guides/secure-requests>
//!   ("appsecret_proof": a sha256 HMAC of the access token keyed with the app secret, hex; the
//!   app setting "Require App Secret" makes every call without it fail)
//! - error-handling: <https://developers.facebook.com/docs/graph-api/guides/error-handling>
//!   (the error object `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`;
//!   code 2 "temporary issue due to downtime", 190 "access token has expired", subcode 463
//!   "expired")
//! - user: <https://developers.facebook.com/docs/graph-api/reference/user> and
//!   user-picture: <https://developers.facebook.com/docs/graph-api/reference/user/picture>
//!   (fields `id` (a string), `name`, `email` (needs the `email` permission, absent when the
//!   account has none), `picture` as `{"data":{"height","is_silhouette","url","width"}}`)
//!
//! Facebook does not document most of its exact error bodies; the mock answers with the bodies
//! Facebook is seen to send in client libraries' issue trackers ("observed" below):
//! akeeba/sociallogin#102 (code used: 100/36009), overtrue/socialite#198 (code expired:
//! 100/36007), freizl/hoauth2#19 and scribejava/scribejava#605 (redirect_uri mismatch, and the
//! `WWW-Authenticate: OAuth "Facebook Platform" "invalid_code" "..."` header),
//! restfb/restfb#412 and mweibel/facebook.ex#52 ("Invalid verification code format."),
//! facebookarchive/php-graph-sdk#274 ("Missing redirect_uri parameter.", code 191),
//! facebook/facebook-python-business-sdk#528 and sns-sdks/python-facebook#101 ("Invalid
//! appsecret_proof provided in the API argument", GraphMethodException 100), markbates/goth#96
//! and stape.io's write-up of the same error ("API calls from the server require an
//! appsecret_proof argument", GraphMethodException 100), Kdyby/Facebook#22 (a wrong proof is
//! refused even when the app does not require one), arsduo/koala#425 and snarfed/bridgy#450 (code 2,
//! "An unexpected error has occurred. Please retry your request later.", `is_transient`),
//! VadimIzmalkov/fryday#88 and liberapay/liberapay.com#110 (callbacks with `error_code=4201&error_message=
//! User+canceled+the+Dialog+flow` and no `error`, e.g. when the app is not live), a login
//! dialog's `cancel_url` captured on pastebin (`error=access_denied&error_code=200&
//! error_description=Permissions+error&error_reason=user_denied#_=_`), and the `#_=_` fragment
//! Facebook adds to every redirect back to the app.
//!
//! The mock stands at `http://127.0.0.1:{port}`; ONE server answers both hosts' paths
//! (`www.facebook.com` and `graph.facebook.com`): `/{version}/dialog/oauth`,
//! `/{version}/oauth/access_token` (GET and POST), `/{version}/me`. `{version}` must look like
//! `vX.Y` and is recorded with every request.
//!
//! Its `appsecret_proof` is its own code ([`appsecret_proof`]) and shares nothing with
//! Portcullis's, so that a bug in one is not hidden by the same bug in the other.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::served::{escape, lock, Served};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// The Graph API version Portcullis uses by default (and the mock's URL helpers).
pub const DEFAULT_API_VERSION: &str = "v26.0";
/// Not Facebook's: where the account chooser's buttons go (GET with a query or POST a form).
pub const CONSENT_PATH: &str = "/mock/consent";
/// Authorization codes are single-use (observed: "This authorization code has been used.") and
/// short-lived (observed: "This authorization code has expired."). Facebook publishes no number;
/// ten minutes is RFC 6749 section 4.1.2's recommended maximum and what the issue asks for.
pub const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// `expires_in` of a user access token: about 60 days (the sample response in Facebook's
/// "Long-Lived Access Tokens" guide,
/// <https://developers.facebook.com/documentation/facebook-login/guides/access-tokens/get-long-lived>).
pub const ACCESS_TOKEN_EXPIRES_IN: u64 = 5_183_944;
/// Size of the default `picture` (user-picture: the default `small`/`square` size is 50 px).
pub const PICTURE_SIZE: u32 = 50;
/// How much an [`Endless`] answer offers before it would end: far more than any client should
/// read (finite only so that a client without a limit fails a test instead of the machine).
pub const ENDLESS_BYTES: u64 = 512 * 1024 * 1024;
/// The piece an [`Endless`] answer is streamed in.
const ENDLESS_CHUNK: usize = 64 * 1024;

/// The permissions the dialog accepts (public ones from Facebook's permissions reference); any
/// other is refused with Facebook's "Invalid Scopes" page.
pub const KNOWN_PERMISSIONS: &[&str] = &[
    "public_profile",
    "email",
    "user_age_range",
    "user_birthday",
    "user_friends",
    "user_gender",
    "user_hometown",
    "user_likes",
    "user_link",
    "user_location",
    "user_photos",
    "user_posts",
    "user_videos",
];

/// The `/me` fields the mock knows (user). Any other is a `(#100) Tried accessing nonexisting
/// field` error, as Graph answers.
pub const USER_FIELDS: &[&str] = &[
    "id",
    "name",
    "first_name",
    "last_name",
    "short_name",
    "email",
    "picture",
];

/// `/{version}/dialog/oauth` (manual-flow, "Invoking the Login Dialog").
pub fn dialog_path(version: &str) -> String {
    format!("/{version}/dialog/oauth")
}

/// `/{version}/oauth/access_token` (manual-flow, "Exchanging Code for an Access Token").
pub fn token_path(version: &str) -> String {
    format!("/{version}/oauth/access_token")
}

/// `/{version}/me` (user).
pub fn me_path(version: &str) -> String {
    format!("/{version}/me")
}

/// secure-requests, "appsecret_proof": lower-case hex of HMAC-SHA256(key = app secret,
/// message = access token). Public so the self-test can hold it to a known vector.
pub fn appsecret_proof(app_secret: &str, access_token: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC accepts any key");
    mac.update(access_token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in mac.finalize().into_bytes() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `vX.Y` with digits (manual-flow's paths: `v19.0`, `v21.0`, ...).
pub fn is_valid_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

/// A Facebook account as the mock knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FbUser {
    /// The app-scoped user id, a decimal string (user: "id ... numeric string"). The test users'
    /// ids are beyond 2^53, so a client that reads them as floats gets them wrong.
    pub id: String,
    pub name: String,
    /// The account's email; `None` for accounts registered with a phone number only (user:
    /// "this field will not be returned if no valid email address is available").
    pub email: Option<String>,
    pub picture_url: String,
}

impl FbUser {
    pub fn new(id: &str, name: &str, email: Option<&str>) -> FbUser {
        FbUser {
            id: id.to_owned(),
            name: name.to_owned(),
            email: email.map(str::to_owned),
            picture_url: format!(
                "https://platform-lookaside.fbsbx.com/platform/profilepic/?asid={id}&height=50&width=50&ext=1767225600&hash=mock"
            ),
        }
    }

    /// Alice: id `10158234567890123`, `alice@example.com`.
    pub fn alice() -> FbUser {
        FbUser::new(
            "10158234567890123",
            "Alice Example",
            Some("alice@example.com"),
        )
    }

    /// An account registered with a phone number: no email at all.
    pub fn phone_only() -> FbUser {
        FbUser::new("122098765432109876", "Pat Phone", None)
    }
}

/// Not Facebook's behaviour: an endpoint of a misbehaving or compromised provider that answers
/// `200 application/json` with a chunked body that does not end (see [`ENDLESS_BYTES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endless {
    /// `oauth/access_token`.
    Token,
    /// `/me`.
    Graph,
}

/// What tests can change. Every field has a setter on [`MockFacebook`].
#[derive(Clone, Debug)]
pub struct Controls {
    /// Approve every dialog at once as this user: no chooser page.
    pub auto_approve: Option<FbUser>,
    /// Every dialog is canceled by the user: `error=access_denied&error_reason=user_denied`.
    pub deny: bool,
    /// Every dialog comes back with `error_code={0}&error_message={1}` and no `error` (observed,
    /// e.g. `4201` "User canceled the Dialog flow" when the app is not live).
    pub dialog_error: Option<(u32, String)>,
    /// The user approves but declines the `email` permission (manual-flow, "Handling Declined
    /// Permissions"; users can un-tick it in "Edit access").
    pub decline_email: bool,
    /// Accounts on the chooser page.
    pub users: Vec<FbUser>,
    /// The app's "Valid OAuth Redirect URIs"; empty = any `http` loopback URL. Matching is exact.
    pub redirect_uris: Vec<String>,
    /// The app setting "Require App Secret" (secure-requests): Graph calls without
    /// `appsecret_proof` fail. Default on. A WRONG proof fails either way (observed).
    pub require_proof: bool,
    /// Graph (`oauth/access_token` and `/me`) answers this 5xx status with error code 2.
    pub fail_graph: Option<u16>,
    /// The token endpoint waits this long before answering.
    pub token_delay: Duration,
    /// This endpoint streams an endless body instead of answering.
    pub endless: Option<Endless>,
    /// Added to the mock's clock: expires codes (10 min) and tokens (~60 days) without sleeping.
    pub clock_offset: Duration,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            auto_approve: None,
            deny: false,
            dialog_error: None,
            decline_email: false,
            users: vec![FbUser::alice(), FbUser::phone_only()],
            redirect_uris: Vec::new(),
            require_proof: true,
            fail_graph: None,
            token_delay: Duration::ZERO,
            endless: None,
            clock_offset: Duration::ZERO,
        }
    }
}

/// A login dialog request as received (query parameters in order).
#[derive(Clone, Debug)]
pub struct DialogRecord {
    /// The `{version}` path segment, as sent (even when invalid).
    pub version: String,
    pub params: Vec<(String, String)>,
}

impl DialogRecord {
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, name)
    }
}

/// Where the token request's `client_secret` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// The URL's query (Facebook's documented GET form).
    Query,
    /// A form-encoded POST body.
    Body,
    Missing,
}

/// A token request as received, with the mock's verdict (secrets are kept: it is a test peer).
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub version: String,
    /// `GET` or `POST`.
    pub method: String,
    pub secret_source: SecretSource,
    pub query: Vec<(String, String)>,
    /// Form body parameters (only for `application/x-www-form-urlencoded` POST bodies).
    pub body: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// The error message the mock answered (`None`: a token was issued).
    pub rejected: Option<String>,
}

impl TokenRecord {
    /// A parameter from the body, else from the query.
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.body, name).or_else(|| find(&self.query, name))
    }
}

/// A Graph `/me` request as received, with the mock's verdict.
#[derive(Clone, Debug)]
pub struct GraphRecord {
    pub version: String,
    pub query: Vec<(String, String)>,
    /// The `Authorization` scheme (`Bearer`, `OAuth`, ...) or `None` without the header.
    pub auth_scheme: Option<String>,
    /// The token, from the header or the `access_token` parameter.
    pub access_token: Option<String>,
    pub appsecret_proof: Option<String>,
    pub fields: Option<String>,
    /// The error message the mock answered (`None`: the node was returned).
    pub rejected: Option<String>,
}

impl GraphRecord {
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }
}

#[derive(Clone, Debug)]
struct DialogRequest {
    version: String,
    redirect_uri: String,
    state: Option<String>,
    scopes: Vec<String>,
}

struct CodeGrant {
    request: DialogRequest,
    user: FbUser,
    granted: Vec<String>,
    issued: Instant,
    used: bool,
}

struct AccessGrant {
    user: FbUser,
    granted: Vec<String>,
    expires: Instant,
}

#[derive(Default)]
struct ProviderState {
    /// Dialogs waiting on the chooser, by id.
    pending: HashMap<String, DialogRequest>,
    codes: HashMap<String, CodeGrant>,
    tokens: HashMap<String, AccessGrant>,
    last_dialog: Option<DialogRecord>,
    token_requests: Vec<TokenRecord>,
    graph_requests: Vec<GraphRecord>,
}

struct Shared {
    app_id: String,
    app_secret: String,
    controls: Arc<Mutex<Controls>>,
    state: Mutex<ProviderState>,
    hits: super::hits::Hits,
    /// Bytes of [`Endless`] bodies handed to the server so far.
    endless_bytes: Arc<AtomicU64>,
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

    fn mint(&self, user: FbUser, granted: Vec<String>) -> String {
        let token = access_token();
        let expires = self.now() + Duration::from_secs(ACCESS_TOKEN_EXPIRES_IN);
        self.state().tokens.insert(
            token.clone(),
            AccessGrant {
                user,
                granted,
                expires,
            },
        );
        token
    }
}

type App = Arc<Shared>;

/// The running mock Facebook. Dropping it (or [`MockFacebook::shutdown`]) stops the server.
pub struct MockFacebook {
    /// `http://127.0.0.1:PORT`: stands for both `https://www.facebook.com` and
    /// `https://graph.facebook.com`.
    pub base_url: String,
    pub addr: SocketAddr,
    pub app_id: String,
    pub app_secret: String,
    controls: Arc<Mutex<Controls>>,
    shared: Arc<Shared>,
    served: Served,
}

/// Starts a mock Facebook on `127.0.0.1:0` on the current tokio runtime, knowing one app.
pub async fn start(app_id: &str, app_secret: &str) -> MockFacebook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock Facebook");
    let addr = listener.local_addr().expect("mock Facebook address");
    let base_url = format!("http://{addr}");

    let controls = Arc::new(Mutex::new(Controls::default()));
    let shared = Arc::new(Shared {
        app_id: app_id.to_owned(),
        app_secret: app_secret.to_owned(),
        controls: controls.clone(),
        state: Mutex::new(ProviderState::default()),
        hits: super::hits::Hits::new(&["dialog", "token", "graph", "consent"]),
        endless_bytes: Arc::default(),
    });

    let router = Router::new()
        .route("/{version}/dialog/oauth", get(dialog))
        .route("/{version}/oauth/access_token", get(token).post(token))
        .route("/{version}/me", get(me))
        .route(CONSENT_PATH, get(consent_get).post(consent_post))
        .with_state(shared.clone());

    let served = Served::spawn(|shutdown| async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.wait())
            .await;
    });

    MockFacebook {
        base_url,
        addr,
        app_id: app_id.to_owned(),
        app_secret: app_secret.to_owned(),
        controls,
        shared,
        served,
    }
}

impl MockFacebook {
    /// The dialog URL for [`DEFAULT_API_VERSION`].
    pub fn dialog_url(&self) -> String {
        self.dialog_url_for(DEFAULT_API_VERSION)
    }

    pub fn dialog_url_for(&self, version: &str) -> String {
        format!("{}{}", self.base_url, dialog_path(version))
    }

    /// The token URL for [`DEFAULT_API_VERSION`].
    pub fn token_url(&self) -> String {
        self.token_url_for(DEFAULT_API_VERSION)
    }

    pub fn token_url_for(&self, version: &str) -> String {
        format!("{}{}", self.base_url, token_path(version))
    }

    /// The `/me` URL for [`DEFAULT_API_VERSION`].
    pub fn me_url(&self) -> String {
        self.me_url_for(DEFAULT_API_VERSION)
    }

    pub fn me_url_for(&self, version: &str) -> String {
        format!("{}{}", self.base_url, me_path(version))
    }

    /// The `appsecret_proof` of `access_token` for this app.
    pub fn proof(&self, access_token: &str) -> String {
        appsecret_proof(&self.app_secret, access_token)
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

    pub fn set_auto_approve(&self, user: Option<FbUser>) {
        self.with_controls(|c| c.auto_approve = user);
    }

    pub fn set_deny(&self, deny: bool) {
        self.with_controls(|c| c.deny = deny);
    }

    /// Dialogs come back with `error_code`/`error_message` and no `error` until set to `None`.
    pub fn set_dialog_error(&self, error: Option<(u32, &str)>) {
        self.with_controls(|c| c.dialog_error = error.map(|(code, m)| (code, m.to_owned())));
    }

    pub fn set_decline_email(&self, decline: bool) {
        self.with_controls(|c| c.decline_email = decline);
    }

    /// Adds an account to the chooser.
    pub fn add_user(&self, user: FbUser) {
        self.with_controls(|c| c.users.push(user));
    }

    /// Registers a "Valid OAuth Redirect URI"; once any is registered, only those are accepted.
    pub fn register_redirect_uri(&self, uri: &str) {
        self.with_controls(|c| c.redirect_uris.push(uri.to_owned()));
    }

    /// The app's "Require App Secret" setting (default on).
    pub fn set_require_proof(&self, on: bool) {
        self.with_controls(|c| c.require_proof = on);
    }

    /// Graph answers `status` (e.g. `Some(500)`) with error code 2 until set back to `None`.
    pub fn fail_graph(&self, status: Option<u16>) {
        self.with_controls(|c| c.fail_graph = status);
    }

    /// `Some(endpoint)`: that endpoint streams an endless body until set back to `None`.
    pub fn set_endless(&self, endless: Option<Endless>) {
        self.with_controls(|c| c.endless = endless);
    }

    /// Bytes of endless bodies streamed so far (handed to the server: at most a socket
    /// buffer more than the client read).
    pub fn endless_bytes_sent(&self) -> u64 {
        self.shared.endless_bytes.load(Ordering::SeqCst)
    }

    /// Every access token the token endpoint has issued.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.shared.state().tokens.keys().cloned().collect()
    }

    pub fn set_token_delay(&self, delay: Duration) {
        self.with_controls(|c| c.token_delay = delay);
    }

    /// Moves the mock's clock forward: expires codes (10 min) and tokens without sleeping.
    pub fn advance_clock(&self, by: Duration) {
        self.with_controls(|c| c.clock_offset += by);
    }

    /// Mints an access token for `user` with `permissions`, as if a login had completed.
    pub fn mint_token(&self, user: &FbUser, permissions: &[&str]) -> String {
        self.shared.mint(
            user.clone(),
            permissions.iter().map(|p| (*p).to_owned()).collect(),
        )
    }

    pub fn dialog_hits(&self) -> usize {
        self.shared.hits.get("dialog")
    }

    /// GET and POST `oauth/access_token` requests.
    pub fn token_hits(&self) -> usize {
        self.shared.hits.get("token")
    }

    /// `/me` requests.
    pub fn graph_hits(&self) -> usize {
        self.shared.hits.get("graph")
    }

    pub fn consent_hits(&self) -> usize {
        self.shared.hits.get("consent")
    }

    /// The last login dialog request.
    pub fn last_dialog(&self) -> Option<DialogRecord> {
        self.shared.state().last_dialog.clone()
    }

    /// Every token request so far, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRecord> {
        self.shared.state().token_requests.clone()
    }

    pub fn last_token_request(&self) -> Option<TokenRecord> {
        self.shared.state().token_requests.last().cloned()
    }

    /// Every `/me` request so far, oldest first.
    pub fn graph_requests(&self) -> Vec<GraphRecord> {
        self.shared.state().graph_requests.clone()
    }

    pub fn last_graph_request(&self) -> Option<GraphRecord> {
        self.shared.state().graph_requests.last().cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// The Login dialog (www.facebook.com)

/// manual-flow, "Invoking the Login Dialog and Setting the Redirect URL". Facebook shows its own
/// error page for a malformed request rather than redirecting, so every check here ends on the
/// mock's error page; only the user's decision (or `dialog_error`) goes back to the app.
async fn dialog(
    State(app): State<App>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    app.hits.hit("dialog");
    let params = parse_pairs(query.as_deref().unwrap_or("").as_bytes());
    app.state().last_dialog = Some(DialogRecord {
        version: version.clone(),
        params: params.clone(),
    });
    let controls = app.controls();

    if !is_valid_version(&version) {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!(
                "Sorry, this content isn't available right now (unknown API version {version:?})."
            ),
        );
    }
    match find(&params, "client_id") {
        Some(id) if id == app.app_id => {}
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid App ID: The provided app ID does not look like a valid app ID.",
            )
        }
    }
    let Some(redirect_uri) = find(&params, "redirect_uri") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The parameter redirect_uri is required",
        );
    };
    if !redirect_uri_allowed(&controls.redirect_uris, redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "URL Blocked: This redirect failed because the redirect URI is not whitelisted in \
             the app's Client OAuth Settings. Make sure Client and Web OAuth Login are on and \
             add all your app domains as Valid OAuth Redirect URIs.",
        );
    }
    // manual-flow: `code` is the default; `token` and friends put the answer in the fragment,
    // which a server-side client never sees, so the mock refuses them.
    match find(&params, "response_type") {
        None | Some("code") => {}
        Some(other) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("This mock supports response_type=code only, not {other:?}."),
            )
        }
    }
    let scopes: Vec<String> = find(&params, "scope")
        .unwrap_or("")
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let unknown: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !KNOWN_PERMISSIONS.contains(s))
        .collect();
    if !unknown.is_empty() {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "Invalid Scopes: {}. This message is only shown to developers.",
                unknown.join(", ")
            ),
        );
    }
    let request = DialogRequest {
        version,
        redirect_uri: redirect_uri.to_owned(),
        state: find(&params, "state").map(str::to_owned),
        scopes,
    };

    if let Some((code, message)) = controls.dialog_error {
        let code = code.to_string();
        return redirect_back(
            &request,
            &[("error_code", &code), ("error_message", &message)],
        );
    }
    if controls.deny {
        return denied(&request);
    }
    if let Some(user) = controls.auto_approve {
        return approve(&app, request, user, !controls.decline_email);
    }
    let id = random_token(18);
    let asks_email = request.scopes.iter().any(|s| s == "email");
    app.state().pending.insert(id.clone(), request);
    chooser_page(&id, &controls.users, asks_email)
}

/// The user canceled (manual-flow, "Canceled Login"; order and `error_code=200` observed).
fn denied(request: &DialogRequest) -> Response {
    redirect_back(
        request,
        &[
            ("error", "access_denied"),
            ("error_code", "200"),
            ("error_description", "Permissions error"),
            ("error_reason", "user_denied"),
        ],
    )
}

/// manual-flow, "Confirming Identity": `{redirect_uri}?code=...&state=...#_=_`. The `email`
/// permission is granted only when asked and not declined; `public_profile` always is.
fn approve(app: &App, request: DialogRequest, user: FbUser, share_email: bool) -> Response {
    let mut granted = vec!["public_profile".to_owned()];
    for scope in &request.scopes {
        let declined = scope == "email" && !share_email;
        if !declined && !granted.contains(scope) {
            granted.push(scope.clone());
        }
    }
    let code = format!("AQ{}", random_token(96));
    let response = redirect_back(&request, &[("code", &code)]);
    let issued = app.now();
    app.state().codes.insert(
        code,
        CodeGrant {
            request,
            user,
            granted,
            issued,
            used: false,
        },
    );
    response
}

/// A 302 to the app's `redirect_uri` with `params` (then `state`, when the dialog had one)
/// appended to its query, and Facebook's `#_=_` fragment.
fn redirect_back(request: &DialogRequest, params: &[(&str, &str)]) -> Response {
    let mut url = url::Url::parse(&request.redirect_uri).expect("the redirect_uri was validated");
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = &request.state {
            query.append_pair("state", state);
        }
    }
    url.set_fragment(Some("_=_"));
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(url.as_str()).expect("a URL is a valid header value"),
    );
    no_store(response)
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

// ---------------------------------------------------------------------------------------------
// The code exchange (graph.facebook.com)

/// manual-flow, "Exchanging Code for an Access Token": documented as a GET with everything in
/// the query; Graph takes the same parameters in a form-encoded POST body, which is what OAuth
/// 2.0 clients send (client authentication in the body, never HTTP Basic).
async fn token(
    State(app): State<App>,
    Path(version): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.hits.hit("token");
    let controls = app.controls();
    if !controls.token_delay.is_zero() {
        tokio::time::sleep(controls.token_delay).await;
    }
    if controls.endless == Some(Endless::Token) {
        return endless(&app, "{\"access_token\":\"");
    }
    let query = parse_pairs(query.as_deref().unwrap_or("").as_bytes());
    let content_type = header_str(&headers, header::CONTENT_TYPE).map(str::to_owned);
    let body = if method == Method::POST && is_form(content_type.as_deref()) {
        parse_pairs(&body)
    } else {
        Vec::new()
    };
    let secret_source = if find(&body, "client_secret").is_some() {
        SecretSource::Body
    } else if find(&query, "client_secret").is_some() {
        SecretSource::Query
    } else {
        SecretSource::Missing
    };
    let mut record = TokenRecord {
        version: version.clone(),
        method: method.as_str().to_owned(),
        secret_source,
        query,
        body,
        content_type,
        rejected: None,
    };
    let outcome = exchange(&app, &controls, &version, &record);
    let response = match outcome {
        Ok(body) => graph_json(StatusCode::OK, &version, &body),
        Err(error) => {
            record.rejected = Some(error.message.clone());
            error.into_response(&version)
        }
    };
    app.state().token_requests.push(record);
    response
}

fn exchange(
    app: &App,
    controls: &Controls,
    version: &str,
    request: &TokenRecord,
) -> Result<Value, GraphError> {
    if let Some(status) = controls.fail_graph {
        return Err(GraphError::transient(status));
    }
    if !is_valid_version(version) {
        return Err(GraphError::unknown_version(version));
    }
    let param = |name: &str| request.param(name);
    // Messages and codes observed (see the module doc); the missing-secret and missing-code
    // wordings are the mock's.
    match param("client_id") {
        None => {
            return Err(
                GraphError::oauth(101, "Missing client_id parameter.").www("invalid_request")
            )
        }
        Some(id) if id != app.app_id => {
            return Err(GraphError::oauth(
                101,
                "Error validating application. Invalid application ID.",
            )
            .www("invalid_client"))
        }
        Some(_) => {}
    }
    let Some(redirect_uri) = param("redirect_uri") else {
        return Err(
            GraphError::oauth(191, "Missing redirect_uri parameter.").www("invalid_request")
        );
    };
    match param("client_secret") {
        None => {
            return Err(
                GraphError::oauth(1, "Missing client_secret parameter.").www("invalid_request")
            )
        }
        Some(secret) if secret != app.app_secret => {
            return Err(
                GraphError::oauth(1, "Error validating client secret.").www("invalid_client")
            )
        }
        Some(_) => {}
    }
    let Some(code) = param("code") else {
        return Err(GraphError::oauth(1, "Missing code parameter.").www("invalid_request"));
    };

    let now = app.now();
    let mut state = app.state();
    let Some(grant) = state.codes.get_mut(code) else {
        return Err(GraphError::oauth(100, "Invalid verification code format.").www("invalid_code"));
    };
    if grant.used {
        return Err(
            GraphError::oauth(100, "This authorization code has been used.")
                .subcode(36009)
                .www("invalid_code"),
        );
    }
    if now.duration_since(grant.issued) > CODE_LIFETIME {
        return Err(
            GraphError::oauth(100, "This authorization code has expired.")
                .subcode(36007)
                .www("invalid_code"),
        );
    }
    if redirect_uri != grant.request.redirect_uri {
        return Err(GraphError::oauth(
            100,
            "Error validating verification code. Please make sure your redirect_uri is \
             identical to the one you used in the OAuth dialog request",
        )
        .subcode(36008)
        .www("invalid_code"));
    }
    grant.used = true;
    let user = grant.user.clone();
    let granted = grant.granted.clone();
    drop(state);
    let access_token = app.mint(user, granted);
    Ok(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_EXPIRES_IN,
    }))
}

// ---------------------------------------------------------------------------------------------
// The Graph API user node (graph.facebook.com)

/// user: `GET /{version}/me?fields=...`, the token as `access_token` or in an
/// `Authorization: Bearer` (or `OAuth`) header, `appsecret_proof` (secure-requests).
async fn me(
    State(app): State<App>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    app.hits.hit("graph");
    if app.controls().endless == Some(Endless::Graph) {
        return endless(&app, "{\"id\":\"1\",\"name\":\"");
    }
    let query = parse_pairs(query.as_deref().unwrap_or("").as_bytes());
    let authorization = header_str(&headers, header::AUTHORIZATION).map(str::trim);
    let auth_scheme = authorization.map(|v| v.split(' ').next().unwrap_or("").to_owned());
    let header_token = authorization
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")
        })
        .map(|(_, token)| token.trim().to_owned());
    let access_token = header_token.or_else(|| find(&query, "access_token").map(str::to_owned));
    let mut record = GraphRecord {
        version: version.clone(),
        appsecret_proof: find(&query, "appsecret_proof").map(str::to_owned),
        fields: find(&query, "fields").map(str::to_owned),
        query,
        auth_scheme,
        access_token,
        rejected: None,
    };
    let response = match user_node(&app, &version, &record) {
        Ok(node) => graph_json(StatusCode::OK, &version, &node),
        Err(error) => {
            record.rejected = Some(error.message.clone());
            error.into_response(&version)
        }
    };
    app.state().graph_requests.push(record);
    response
}

fn user_node(app: &App, version: &str, request: &GraphRecord) -> Result<Value, GraphError> {
    let controls = app.controls();
    if let Some(status) = controls.fail_graph {
        return Err(GraphError::transient(status));
    }
    if !is_valid_version(version) {
        return Err(GraphError::unknown_version(version));
    }
    let Some(token) = request.access_token.as_deref() else {
        return Err(GraphError::oauth(
            2500,
            "An active access token must be used to query information about the current user.",
        ));
    };
    let now = app.now();
    let (user, granted) = {
        let state = app.state();
        let Some(grant) = state.tokens.get(token) else {
            return Err(GraphError::oauth(
                190,
                "Invalid OAuth access token - Cannot parse access token",
            )
            .www("invalid_token"));
        };
        if grant.expires <= now {
            return Err(GraphError::oauth(
                190,
                "Error validating access token: Session has expired.",
            )
            .subcode(463)
            .www("invalid_token"));
        }
        (grant.user.clone(), grant.granted.clone())
    };
    match request.appsecret_proof.as_deref() {
        Some(proof) if !proof_matches(&app.app_secret, token, proof) => {
            return Err(GraphError::method(
                100,
                "Invalid appsecret_proof provided in the API argument",
            ))
        }
        None if controls.require_proof => {
            return Err(GraphError::method(
                100,
                "API calls from the server require an appsecret_proof argument",
            ))
        }
        _ => {}
    }

    // Graph answers `id` and `name` when no fields are asked (user, "Default fields").
    let fields = split_fields(request.fields.as_deref().unwrap_or("id,name"));
    let mut node = Map::new();
    for field in &fields {
        let name = field_name(field);
        if !USER_FIELDS.contains(&name) {
            return Err(GraphError::oauth(
                100,
                &format!("(#100) Tried accessing nonexisting field ({name}) on node type (User)"),
            ));
        }
        let (first, last) = user.name.split_once(' ').unwrap_or((&user.name, ""));
        match name {
            "id" => {
                node.insert("id".into(), json!(user.id));
            }
            "name" => {
                node.insert("name".into(), json!(user.name));
            }
            "first_name" => {
                node.insert("first_name".into(), json!(first));
            }
            "short_name" => {
                node.insert("short_name".into(), json!(first));
            }
            "last_name" => {
                node.insert("last_name".into(), json!(last));
            }
            // user: only with the `email` permission, and only when the account has one.
            "email" => {
                if let Some(email) = user
                    .email
                    .as_ref()
                    .filter(|_| granted.iter().any(|p| p == "email"))
                {
                    node.insert("email".into(), json!(email));
                }
            }
            "picture" => {
                let size = picture_size(field);
                node.insert(
                    "picture".into(),
                    json!({ "data": {
                        "height": size,
                        "is_silhouette": false,
                        "url": user.picture_url,
                        "width": size,
                    }}),
                );
            }
            _ => unreachable!("checked against USER_FIELDS"),
        }
    }
    // Graph always returns the node's id.
    node.insert("id".into(), json!(user.id));
    Ok(Value::Object(node))
}

/// Splits `fields` at top-level commas (`picture.width(100).height(100),name` or
/// `picture{url}` keep their inner commas).
fn split_fields(fields: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in fields.chars() {
        match c {
            '(' | '{' => depth += 1,
            ')' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

fn field_name(field: &str) -> &str {
    let end = field.find(['.', '{', '(']).unwrap_or(field.len());
    &field[..end]
}

/// user-picture: `type(small|normal|album|large|square)` or `width(n)`/`height(n)` modifiers.
fn picture_size(field: &str) -> u32 {
    let modifier = |name: &str| {
        let start = field.find(&format!("{name}("))? + name.len() + 1;
        let end = start + field[start..].find(')')?;
        Some(field[start..end].to_owned())
    };
    if let Some(n) = modifier("width").or_else(|| modifier("height")) {
        return n.parse().unwrap_or(PICTURE_SIZE);
    }
    match modifier("type").as_deref() {
        Some("normal") => 100,
        Some("album") | Some("large") => 200,
        _ => PICTURE_SIZE,
    }
}

/// Constant-time check of a hex proof.
fn proof_matches(app_secret: &str, token: &str, given: &str) -> bool {
    let Some(given) = hex_decode(given.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key");
    mac.update(token.as_bytes());
    mac.verify_slice(&given).is_ok()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => u8::from_str_radix(std::str::from_utf8(&[*high, *low]).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Graph errors

/// error-handling: `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`.
struct GraphError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    code: u32,
    subcode: Option<u32>,
    transient: bool,
    /// The second quoted word of `WWW-Authenticate: OAuth "Facebook Platform" "..." "..."`
    /// (observed on token and token-validation errors).
    www: Option<&'static str>,
}

impl GraphError {
    fn oauth(code: u32, message: &str) -> GraphError {
        GraphError {
            status: StatusCode::BAD_REQUEST,
            message: message.to_owned(),
            kind: "OAuthException",
            code,
            subcode: None,
            transient: false,
            www: None,
        }
    }

    fn method(code: u32, message: &str) -> GraphError {
        GraphError {
            kind: "GraphMethodException",
            ..GraphError::oauth(code, message)
        }
    }

    /// Observed: code 2, `is_transient: true`, with a 5xx status.
    fn transient(status: u16) -> GraphError {
        GraphError {
            status: StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            transient: true,
            ..GraphError::oauth(
                2,
                "An unexpected error has occurred. Please retry your request later.",
            )
        }
    }

    /// The mock's wording: Graph's answer to an unknown version is not documented.
    fn unknown_version(version: &str) -> GraphError {
        GraphError::oauth(2500, &format!("Unknown path components: /{version}"))
    }

    fn subcode(mut self, subcode: u32) -> GraphError {
        self.subcode = Some(subcode);
        self
    }

    fn www(mut self, kind: &'static str) -> GraphError {
        self.www = Some(kind);
        self
    }

    fn into_response(self, version: &str) -> Response {
        let mut error = Map::new();
        error.insert("message".into(), json!(self.message));
        error.insert("type".into(), json!(self.kind));
        if self.transient {
            error.insert("is_transient".into(), json!(true));
        }
        error.insert("code".into(), json!(self.code));
        if let Some(subcode) = self.subcode {
            error.insert("error_subcode".into(), json!(subcode));
        }
        error.insert("fbtrace_id".into(), json!(fbtrace_id()));
        let mut response = graph_json(self.status, version, &json!({ "error": error }));
        if let Some(kind) = self.www {
            let value = format!(
                "OAuth \"Facebook Platform\" \"{kind}\" \"{}\"",
                self.message.replace('"', "'")
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// `200 application/json` whose chunked body starts with `prefix` (the opening of a JSON
/// string) and then goes on with `a` for [`ENDLESS_BYTES`], counting what it hands over.
fn endless(app: &App, prefix: &'static str) -> Response {
    let counter = app.endless_bytes.clone();
    let chunks = futures_util::stream::unfold(0u64, move |sent| {
        let counter = counter.clone();
        async move {
            if sent >= ENDLESS_BYTES {
                return None;
            }
            let chunk = if sent == 0 {
                let mut first = prefix.as_bytes().to_vec();
                first.resize(ENDLESS_CHUNK, b'a');
                Bytes::from(first)
            } else {
                Bytes::from_static(&[b'a'; ENDLESS_CHUNK])
            };
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Some((
                Ok::<_, std::convert::Infallible>(chunk),
                sent + ENDLESS_CHUNK as u64,
            ))
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// Graph's JSON: `application/json; charset=UTF-8`, a `facebook-api-version` header, and
/// Facebook's escaping of `/` as `\/` and `@` as `\u0040` inside strings (observed; both are
/// valid JSON escapes that a client must decode).
fn graph_json(status: StatusCode, version: &str, body: &Value) -> Response {
    let text = body.to_string().replace('/', "\\/").replace('@', "\\u0040");
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        text,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if is_valid_version(version) {
        if let Ok(value) = HeaderValue::from_str(version) {
            headers.insert("facebook-api-version", value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&fbtrace_id()) {
        headers.insert("x-fb-trace-id", value);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// The account chooser (not Facebook's pages: a clearly labelled stand-in)

async fn consent_get(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    consent(app, parse_pairs(query.as_deref().unwrap_or("").as_bytes()))
}

async fn consent_post(State(app): State<App>, body: Bytes) -> Response {
    consent(app, parse_pairs(&body))
}

/// `request` (the chooser's id), then `deny=1`, or `user={id}` with optional
/// `decline_email=1` (the "Edit access" choice).
fn consent(app: App, params: Vec<(String, String)>) -> Response {
    app.hits.hit("consent");
    let Some(request) = find(&params, "request").and_then(|id| app.state().pending.remove(id))
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This login request has expired. Start again from the app.",
        );
    };
    if find(&params, "deny").is_some() {
        return denied(&request);
    }
    let controls = app.controls();
    let Some(user) = find(&params, "user")
        .and_then(|id| controls.users.iter().find(|u| u.id == id))
        .cloned()
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown account: pick a listed account.",
        );
    };
    let share_email = find(&params, "decline_email").is_none() && !controls.decline_email;
    approve(&app, request, user, share_email)
}

const BANNER: &str = "Local test provider — not Facebook";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} - {BANNER}</title>\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}\
         .banner{{background:#fde68a;padding:.75rem;border-radius:.5rem}}\
         ul{{list-style:none;padding:0}}li{{margin:.75rem 0}}\
         button{{width:100%;text-align:left;padding:.75rem;font-size:1rem;cursor:pointer}}\
         label{{font-size:.85rem}}</style></head><body>\
         <p class=\"banner\"><strong>{BANNER}.</strong> This page stands in for Facebook Login \
         during tests and demos; nothing here talks to Facebook.</p>{body}</body></html>",
        title = escape(title),
    )
}

fn chooser_page(request_id: &str, users: &[FbUser], asks_email: bool) -> Response {
    let rid = escape(request_id);
    let mut items = String::new();
    for user in users {
        let email = user
            .email
            .as_deref()
            .unwrap_or("no email on this account (phone only)");
        let decline = if asks_email && user.email.is_some() {
            "<br><label><input type=\"checkbox\" name=\"decline_email\" value=\"1\"> \
             Edit access: don't share my email address</label>"
        } else {
            ""
        };
        let _ = write!(
            items,
            "<li><form method=\"post\" action=\"{CONSENT_PATH}\">\
             <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
             <button type=\"submit\" name=\"user\" value=\"{id}\">\
             Continue as <strong>{name}</strong><br><span>{email}</span></button>{decline}\
             </form></li>",
            id = escape(&user.id),
            name = escape(&user.name),
            email = escape(email),
        );
    }
    let body = format!(
        "<h1>Log in with Facebook</h1><p>Choose the account to log in to the app with.</p>\
         <ul>{items}</ul>\
         <form method=\"post\" action=\"{CONSENT_PATH}\">\
         <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
         <button type=\"submit\" name=\"deny\" value=\"1\">Cancel</button></form>"
    );
    no_store(Html(page("Log in with Facebook", &body)).into_response())
}

fn error_page(status: StatusCode, detail: &str) -> Response {
    let body = format!(
        "<h1>Sorry, something went wrong.</h1><p>{}</p>",
        escape(detail)
    );
    no_store((status, Html(page("Error", &body))).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Letters and digits, like Facebook's `EAA...` user access tokens.
fn access_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = vec![0u8; 180];
    rand::thread_rng().fill_bytes(&mut raw);
    let tail: String = raw
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("EAA{tail}")
}

fn fbtrace_id() -> String {
    random_token(9)
}

fn parse_pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn find<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}
