//! A local stand-in for X (Twitter) sign-in, for tests and the demo: OAuth 2.0 Authorization Code
//! with PKCE, 3-legged OAuth 1.0a, the two "who is this" endpoints (`/2/users/me` and
//! `/1.1/account/verify_credentials.json`), an account chooser, and controls that make it
//! misbehave.
//!
//! Written from X's public documentation, cited below by short name:
//! - pkce-guide: <https://docs.x.com/fundamentals/authentication/oauth-2-0/user-access-token>
//!   (authorize URL, `POST /2/oauth2/token`, HTTP Basic for confidential clients)
//! - oauth2: <https://docs.x.com/fundamentals/authentication/oauth-2-0/authorization-code>
//!   (scopes incl. `users.email`, 30 s codes, two-hour access tokens, exact redirect match,
//!   `state` up to 500 characters, `offline.access` refresh tokens)
//! - users-me: <https://docs.x.com/x-api/users/lookup/quickstart/authenticated-lookup> and
//!   <https://docs.x.com/x-api/users/lookup/integrate> (default fields `id`, `name`, `username`;
//!   others only through `user.fields`); X's OpenAPI document
//!   (github.com/xdevplatform/xdk, `latest-openapi.json`: the `user.fields` values incl.
//!   `confirmed_email`, and `/2/users/me` needing `tweet.read` + `users.read`)
//! - errors-v2: <https://docs.x.com/x-api/fundamentals/response-codes-and-errors> (problem
//!   objects, `type: about:blank`)
//! - errors-v1: <https://developer.x.com/en/support/x-api/error-troubleshooting> (v1.1
//!   `{"errors":[{"code","message"}]}`: 32 "Could not authenticate you.", 89 "Invalid or expired
//!   token.", 135 "Timestamp out of bounds.", 215 "Bad Authentication data.", 415 callback not
//!   approved, 131 internal error)
//! - oauth1-flow: <https://docs.x.com/fundamentals/authentication/oauth-1-0a/obtaining-user-access-tokens>
//! - oauth1-api: <https://docs.x.com/fundamentals/authentication/api-reference>
//!   (`POST oauth/request_token`, `GET oauth/authenticate`, `GET oauth/authorize`,
//!   `POST oauth/access_token`)
//! - signature: <https://docs.x.com/fundamentals/authentication/oauth-1-0a/creating-a-signature>
//! - authorizing: <https://docs.x.com/fundamentals/authentication/oauth-1-0a/authorizing-a-request>
//!   (nonce "to determine whether a request has been submitted multiple times"; "X will reject
//!   requests which were created too far in the past")
//! - percent: <https://docs.x.com/fundamentals/authentication/oauth-1-0a/percent-encoding-parameters>
//! - verify-credentials: <https://developer.x.com/en/docs/twitter-api/v1/accounts-and-users/manage-account-settings/api-reference/get-account-verify_credentials>
//! - RFC 5849 (OAuth 1.0) where X's pages defer to it (sections 3.3, 3.4.1).
//!
//! X does not document its token-endpoint error bodies; the mock answers with the bodies X is
//! seen to send in client libraries' issue trackers ("observed" below):
//! xdevplatform/twitter-api-typescript-sdk#26 (PKCE mismatch), plhery/node-twitter-api-v2#496
//! (bad code), tweepy/tweepy#2035 and unasuke/omniauth-twitter2#4 (missing Basic auth),
//! tweepy/tweepy#2021 (missing `code_verifier`), xdevplatform/samples#69 and
//! plhery/node-twitter-api-v2#425 (the v2 401 problem object), plhery/node-twitter-api-v2#39
//! (plain-text `oauth/access_token` errors).
//!
//! The mock stands at `http://127.0.0.1:{port}` and uses X's paths under that origin (X spreads
//! them over `x.com` and `api.x.com`): `/i/oauth2/authorize`, `/2/oauth2/token`, `/2/users/me`,
//! `/oauth/request_token`, `/oauth/authenticate` (and `/oauth/authorize`),
//! `/oauth/access_token`, `/1.1/account/verify_credentials.json`.
//!
//! Its OAuth 1.0a signature check is its own code (base string, RFC 3986 percent-encoding,
//! HMAC-SHA1) and deliberately shares nothing with Portcullis's signer, so that a bug in one is
//! not hidden by the same bug in the other.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::served::{escape, lock, Served};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use serde_json::{json, Map, Value};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// OAuth 2.0 authorization (on `x.com`; pkce-guide, "Step 2").
pub const AUTHORIZE_PATH: &str = "/i/oauth2/authorize";
/// OAuth 2.0 token endpoint (on `api.x.com`; pkce-guide, "Step 3").
pub const TOKEN_PATH: &str = "/2/oauth2/token";
/// The authenticated user, API v2 (users-me).
pub const USERS_ME_PATH: &str = "/2/users/me";
/// OAuth 1.0a step 1 (oauth1-api).
pub const REQUEST_TOKEN_PATH: &str = "/oauth/request_token";
/// OAuth 1.0a step 2, "Sign in with X" (oauth1-api).
pub const AUTHENTICATE_PATH: &str = "/oauth/authenticate";
/// OAuth 1.0a step 2, the always-prompt variant (oauth1-api); the mock treats it like
/// [`AUTHENTICATE_PATH`].
pub const AUTHORIZE_V1_PATH: &str = "/oauth/authorize";
/// OAuth 1.0a step 3 (oauth1-api).
pub const ACCESS_TOKEN_PATH: &str = "/oauth/access_token";
/// The authenticated user, API v1.1 (verify-credentials).
pub const VERIFY_CREDENTIALS_PATH: &str = "/1.1/account/verify_credentials.json";
/// Not X's: where the account chooser's buttons go (GET with a query or POST a form).
pub const CONSENT_PATH: &str = "/mock/consent";

/// "The auth_code has a time limit of 30 seconds" (oauth2, Glossary).
pub const CODE_LIFETIME: Duration = Duration::from_secs(30);
/// Access tokens "stay valid for two hours" (oauth2, "How long will my credentials stay valid?").
pub const ACCESS_TOKEN_EXPIRES_IN: u64 = 7200;
/// How far `oauth_timestamp` may be from the mock's clock, either way. X documents only that it
/// rejects requests "created too far in the past" (authorizing); five minutes is the usual
/// window and what the brief asks for.
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;
/// How long a request token may wait for the user and the exchange (the mock's choice; X does
/// not document one).
pub const REQUEST_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// X's limit on `state` (oauth2, "Parameters").
pub const MAX_STATE_LEN: usize = 500;

/// The OAuth 2.0 scopes X documents (oauth2, "Scopes", plus `timeline.read` from the OpenAPI
/// document). Any other scope is refused.
pub const KNOWN_SCOPES: &[&str] = &[
    "tweet.read",
    "tweet.write",
    "tweet.moderate.write",
    "users.email",
    "users.read",
    "follows.read",
    "follows.write",
    "offline.access",
    "space.read",
    "mute.read",
    "mute.write",
    "like.read",
    "like.write",
    "list.read",
    "list.write",
    "block.read",
    "block.write",
    "bookmark.read",
    "bookmark.write",
    "dm.read",
    "dm.write",
    "media.write",
    "timeline.read",
];

/// The `user.fields` values X accepts (OpenAPI document, `UserFieldsParameter`). A value outside
/// this list is a 400 `invalid-request` problem.
pub const USER_FIELDS: &[&str] = &[
    "affiliation",
    "confirmed_email",
    "connection_status",
    "created_at",
    "description",
    "entities",
    "id",
    "is_identity_verified",
    "location",
    "most_recent_tweet_id",
    "name",
    "parody",
    "pinned_tweet_id",
    "profile_banner_url",
    "profile_image_url",
    "protected",
    "public_metrics",
    "receives_your_dm",
    "subscription",
    "subscription_type",
    "url",
    "username",
    "verified",
    "verified_followers_count",
    "verified_type",
    "withheld",
];

/// An X account as the mock knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XUser {
    /// X's numeric user id, as a string (API v2 sends ids as strings; v1.1 sends both `id` and
    /// `id_str`).
    pub id: String,
    /// The handle without `@` (v2 `username`, v1.1 `screen_name`).
    pub username: String,
    /// The display name.
    pub name: String,
    /// The account's confirmed email, if it has one.
    pub email: Option<String>,
    pub profile_image_url: String,
}

impl XUser {
    pub fn new(id: &str, username: &str, name: &str, email: Option<&str>) -> XUser {
        XUser {
            id: id.to_owned(),
            username: username.to_owned(),
            name: name.to_owned(),
            email: email.map(str::to_owned),
            profile_image_url: format!(
                "https://pbs.twimg.com/profile_images/mock-{id}/{username}_normal.jpg"
            ),
        }
    }

    /// @jack: id `12`, name `jack`, email `jack@example.com`.
    pub fn jack() -> XUser {
        XUser::new("12", "jack", "jack", Some("jack@example.com"))
    }

    /// An account without an email. Its 19-digit id (like every modern X id) is beyond 2^53, so a
    /// client that reads v1.1's numeric `id` as a float gets it wrong; `id_str` is exact.
    pub fn noemail() -> XUser {
        XUser::new("1600000000000000001", "noemail_user", "No Email", None)
    }
}

/// What tests can change. Every field has a setter on [`MockX`].
#[derive(Clone, Debug)]
pub struct Controls {
    /// Approve every authorization (both protocols) at once as this user: no chooser page.
    pub auto_approve: Option<XUser>,
    /// Every authorization (both protocols) is denied: OAuth 2.0 redirects with
    /// `error=access_denied`, OAuth 1.0a with `denied={oauth_token}`.
    pub deny: bool,
    /// Accounts on the chooser page.
    pub users: Vec<XUser>,
    /// OAuth 2.0 callback URLs of the app; empty = any `http` loopback URL is accepted. Matching
    /// is exact (oauth2, "Redirect URI").
    pub redirect_uris: Vec<String>,
    /// OAuth 1.0a callback URLs of the app; empty = any `http` loopback URL (or `oob`) is
    /// accepted. The mock compares them without their query, so a client may add its own.
    pub callback_urls: Vec<String>,
    /// The OAuth 2.0 app is a public client: no Basic auth, `client_id` in the body instead
    /// (oauth2, "Confidential clients"). Default: confidential.
    pub public_client: bool,
    /// The OAuth 1.0a app has "Request email addresses from users" on (verify-credentials).
    /// Without it, `include_email` and `confirmed_email` (for OAuth 1.0a tokens) give nothing.
    pub email_permission: bool,
    /// v1.1 `include_email=true` for an account without an email gives `"email": null` instead
    /// of no `email` key (verify-credentials: "If the user does not have an email address on
    /// their account, or if the email address is not verified, null will be returned.").
    pub v1_null_email: bool,
    /// `POST /2/oauth2/token` (with a v2 problem object) and `POST /oauth/access_token` (with
    /// v1.1 error 131) answer this status.
    pub fail_token: Option<u16>,
    /// `POST /oauth/request_token` answers this status.
    pub fail_request_token: Option<u16>,
    /// `/2/users/me` and `verify_credentials` answer this status.
    pub fail_userinfo: Option<u16>,
    /// The token endpoints wait this long before answering.
    pub token_delay: Duration,
    /// Added to the mock's clock: expires codes, access tokens and request tokens, and moves
    /// the reference for `oauth_timestamp`.
    pub clock_offset: Duration,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            auto_approve: None,
            deny: false,
            users: vec![XUser::jack(), XUser::noemail()],
            redirect_uris: Vec::new(),
            callback_urls: Vec::new(),
            public_client: false,
            email_permission: true,
            v1_null_email: false,
            fail_token: None,
            fail_request_token: None,
            fail_userinfo: None,
            token_delay: Duration::ZERO,
            clock_offset: Duration::ZERO,
        }
    }
}

/// An OAuth 2.0 authorization request as received (query parameters in order).
#[derive(Clone, Debug)]
pub struct AuthorizeRecord {
    pub params: Vec<(String, String)>,
}

impl AuthorizeRecord {
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, name)
    }
}

/// A `POST /2/oauth2/token` request as received; secrets and verifiers are kept (it is a test
/// peer) so tests can check them.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    /// The HTTP Basic credentials as sent (base64-decoded, not form-decoded), if any.
    pub basic: Option<(String, String)>,
    pub content_type: Option<String>,
    pub params: Vec<(String, String)>,
}

impl TokenRecord {
    pub fn has_basic_auth(&self) -> bool {
        self.basic.is_some()
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, name)
    }
}

/// A request to one of the OAuth 1.0a-signed endpoints, as received, with the mock's verdict.
#[derive(Clone, Debug)]
pub struct OAuth1Record {
    pub method: String,
    pub path: String,
    /// The `Authorization` header's parameters, percent-decoded (incl. `oauth_signature`).
    pub oauth_params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// Form body parameters (only for `application/x-www-form-urlencoded` bodies).
    pub body: Vec<(String, String)>,
    /// Why the mock refused the request (`None`: accepted).
    pub rejected: Option<String>,
}

impl OAuth1Record {
    pub fn oauth_param(&self, name: &str) -> Option<&str> {
        find(&self.oauth_params, name)
    }
}

/// A request to `/2/users/me` or `verify_credentials`, as received.
#[derive(Clone, Debug)]
pub struct UserinfoRecord {
    pub path: String,
    pub query: Vec<(String, String)>,
    /// `Bearer`, `OAuth`, another scheme, or `None` without an `Authorization` header.
    pub auth_scheme: Option<String>,
}

impl UserinfoRecord {
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }
}

#[derive(Clone, Debug)]
struct AuthRequest {
    redirect_uri: String,
    state: String,
    scopes: Vec<String>,
    code_challenge: String,
}

struct CodeGrant {
    request: AuthRequest,
    user: XUser,
    issued: Instant,
    used: bool,
}

struct AccessGrant {
    user: XUser,
    scopes: Vec<String>,
    expires: Instant,
}

struct RequestToken {
    secret: String,
    callback: String,
    issued: Instant,
    /// Set when the user approved: (user, verifier).
    approved: Option<(XUser, String)>,
    used: bool,
}

struct OAuth1Access {
    secret: String,
    user: XUser,
}

#[derive(Clone, Debug)]
enum Pending {
    OAuth2(AuthRequest),
    /// The request token waiting for the user.
    OAuth1(String),
}

#[derive(Default)]
struct ProviderState {
    /// Requests waiting on the chooser, by id.
    pending: HashMap<String, Pending>,
    codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, AccessGrant>,
    request_tokens: HashMap<String, RequestToken>,
    oauth1_tokens: HashMap<String, OAuth1Access>,
    /// Nonces seen in accepted OAuth 1.0a requests: nonce -> its `oauth_timestamp`.
    nonces: HashMap<String, i64>,
    last_authorize: Option<AuthorizeRecord>,
    token_requests: Vec<TokenRecord>,
    oauth1_requests: Vec<OAuth1Record>,
    userinfo_requests: Vec<UserinfoRecord>,
}

struct Shared {
    base_url: String,
    client_id: String,
    client_secret: String,
    consumer_key: String,
    consumer_secret: String,
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

    /// The mock's monotonic clock (for lifetimes).
    fn now(&self) -> Instant {
        Instant::now() + lock(&self.controls).clock_offset
    }

    /// The mock's wall clock in Unix seconds (for `oauth_timestamp`).
    fn unix_now(&self) -> i64 {
        unix_now() + lock(&self.controls).clock_offset.as_secs() as i64
    }
}

type App = Arc<Shared>;

/// The running mock X. Dropping it (or [`MockX::shutdown`]) stops the server.
pub struct MockX {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub addr: SocketAddr,
    /// The OAuth 2.0 app's Client ID and Client Secret.
    pub client_id: String,
    pub client_secret: String,
    /// The OAuth 1.0a app's API Key and API Key Secret ("consumer key/secret").
    pub consumer_key: String,
    pub consumer_secret: String,
    controls: Arc<Mutex<Controls>>,
    shared: Arc<Shared>,
    served: Served,
}

/// Starts a mock X on `127.0.0.1:0` on the current tokio runtime, knowing one app: an OAuth 2.0
/// confidential client (`client_id`, `client_secret`) and its OAuth 1.0a consumer credentials
/// (`consumer_key`, `consumer_secret`). X gives one app both pairs; they are unrelated values.
pub async fn start(
    client_id: &str,
    client_secret: &str,
    consumer_key: &str,
    consumer_secret: &str,
) -> MockX {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock X");
    let addr = listener.local_addr().expect("mock X address");
    let base_url = format!("http://{addr}");

    let controls = Arc::new(Mutex::new(Controls::default()));
    let shared = Arc::new(Shared {
        base_url: base_url.clone(),
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        consumer_key: consumer_key.to_owned(),
        consumer_secret: consumer_secret.to_owned(),
        controls: controls.clone(),
        state: Mutex::new(ProviderState::default()),
        hits: super::hits::Hits::new(&[
            "authorize",
            "token",
            "users_me",
            "request_token",
            "authenticate",
            "access_token",
            "verify_credentials",
        ]),
    });

    let router = Router::new()
        .route(AUTHORIZE_PATH, get(authorize))
        .route(TOKEN_PATH, post(token))
        .route(USERS_ME_PATH, get(users_me))
        .route(REQUEST_TOKEN_PATH, post(request_token))
        .route(AUTHENTICATE_PATH, get(authenticate))
        .route(AUTHORIZE_V1_PATH, get(authenticate))
        .route(ACCESS_TOKEN_PATH, post(access_token))
        .route(VERIFY_CREDENTIALS_PATH, get(verify_credentials))
        .route(CONSENT_PATH, get(consent_get).post(consent_post))
        .with_state(shared.clone());

    let served = Served::spawn(|shutdown| async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.wait())
            .await;
    });

    MockX {
        base_url,
        addr,
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        consumer_key: consumer_key.to_owned(),
        consumer_secret: consumer_secret.to_owned(),
        controls,
        shared,
        served,
    }
}

impl MockX {
    pub fn authorize_url(&self) -> String {
        format!("{}{AUTHORIZE_PATH}", self.base_url)
    }

    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base_url)
    }

    pub fn users_me_url(&self) -> String {
        format!("{}{USERS_ME_PATH}", self.base_url)
    }

    pub fn request_token_url(&self) -> String {
        format!("{}{REQUEST_TOKEN_PATH}", self.base_url)
    }

    pub fn authenticate_url(&self) -> String {
        format!("{}{AUTHENTICATE_PATH}", self.base_url)
    }

    pub fn access_token_url(&self) -> String {
        format!("{}{ACCESS_TOKEN_PATH}", self.base_url)
    }

    pub fn verify_credentials_url(&self) -> String {
        format!("{}{VERIFY_CREDENTIALS_PATH}", self.base_url)
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

    pub fn set_auto_approve(&self, user: Option<XUser>) {
        self.with_controls(|c| c.auto_approve = user);
    }

    pub fn set_deny(&self, deny: bool) {
        self.with_controls(|c| c.deny = deny);
    }

    /// Adds an account to the chooser.
    pub fn add_user(&self, user: XUser) {
        self.with_controls(|c| c.users.push(user));
    }

    /// Registers an OAuth 2.0 callback URL; once any is registered, only registered ones are
    /// accepted (exact match).
    pub fn register_redirect_uri(&self, uri: &str) {
        self.with_controls(|c| c.redirect_uris.push(uri.to_owned()));
    }

    /// Registers an OAuth 1.0a callback URL; once any is registered, only those are accepted
    /// (compared without the query).
    pub fn register_callback_url(&self, url: &str) {
        self.with_controls(|c| c.callback_urls.push(url.to_owned()));
    }

    pub fn set_public_client(&self, public: bool) {
        self.with_controls(|c| c.public_client = public);
    }

    pub fn set_email_permission(&self, on: bool) {
        self.with_controls(|c| c.email_permission = on);
    }

    pub fn set_v1_null_email(&self, on: bool) {
        self.with_controls(|c| c.v1_null_email = on);
    }

    /// Both token endpoints answer `status` (e.g. `Some(503)`) until set back to `None`.
    pub fn fail_token(&self, status: Option<u16>) {
        self.with_controls(|c| c.fail_token = status);
    }

    pub fn fail_request_token(&self, status: Option<u16>) {
        self.with_controls(|c| c.fail_request_token = status);
    }

    pub fn fail_userinfo(&self, status: Option<u16>) {
        self.with_controls(|c| c.fail_userinfo = status);
    }

    pub fn set_token_delay(&self, delay: Duration) {
        self.with_controls(|c| c.token_delay = delay);
    }

    /// Moves the mock's clock forward: expires codes (30 s), access tokens (2 h) and request
    /// tokens without sleeping, and makes clients' current `oauth_timestamp`s look old.
    pub fn advance_clock(&self, by: Duration) {
        self.with_controls(|c| c.clock_offset += by);
    }

    /// Mints an OAuth 2.0 access token for `user` with `scopes`, as if a flow had completed.
    pub fn mint_oauth2_token(&self, user: &XUser, scopes: &[&str]) -> String {
        let token = oauth2_access_token();
        let expires = self.shared.now() + Duration::from_secs(ACCESS_TOKEN_EXPIRES_IN);
        self.shared.state().access_tokens.insert(
            token.clone(),
            AccessGrant {
                user: user.clone(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires,
            },
        );
        token
    }

    /// Mints an OAuth 1.0a access token and secret for `user`, as if a flow had completed.
    pub fn mint_oauth1_token(&self, user: &XUser) -> (String, String) {
        let (token, secret) = oauth1_access_token(user);
        self.shared.state().oauth1_tokens.insert(
            token.clone(),
            OAuth1Access {
                secret: secret.clone(),
                user: user.clone(),
            },
        );
        (token, secret)
    }

    pub fn authorize_hits(&self) -> usize {
        self.shared.hits.get("authorize")
    }

    /// `POST /2/oauth2/token` requests.
    pub fn token_hits(&self) -> usize {
        self.shared.hits.get("token")
    }

    pub fn users_me_hits(&self) -> usize {
        self.shared.hits.get("users_me")
    }

    pub fn request_token_hits(&self) -> usize {
        self.shared.hits.get("request_token")
    }

    /// `GET /oauth/authenticate` and `GET /oauth/authorize` requests.
    pub fn authenticate_hits(&self) -> usize {
        self.shared.hits.get("authenticate")
    }

    pub fn access_token_hits(&self) -> usize {
        self.shared.hits.get("access_token")
    }

    pub fn verify_credentials_hits(&self) -> usize {
        self.shared.hits.get("verify_credentials")
    }

    /// The last OAuth 2.0 authorization request's query parameters.
    pub fn last_authorize(&self) -> Option<AuthorizeRecord> {
        self.shared.state().last_authorize.clone()
    }

    /// Every `POST /2/oauth2/token` request so far, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRecord> {
        self.shared.state().token_requests.clone()
    }

    /// The last `POST /2/oauth2/token` request.
    pub fn last_token_request(&self) -> Option<TokenRecord> {
        self.shared.state().token_requests.last().cloned()
    }

    /// Every request to `request_token`, `access_token` and `verify_credentials` (and
    /// OAuth 1.0a-signed `/2/users/me`), oldest first, with the verdict.
    pub fn oauth1_requests(&self) -> Vec<OAuth1Record> {
        self.shared.state().oauth1_requests.clone()
    }

    /// Every request to `/2/users/me` and `verify_credentials`, oldest first.
    pub fn userinfo_requests(&self) -> Vec<UserinfoRecord> {
        self.shared.state().userinfo_requests.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth 2.0: authorization

/// pkce-guide "Step 2: GET oauth2/authorize" and oauth2 "Parameters". X shows its own error page
/// for a malformed request rather than redirecting, so every check here ends on the mock's error
/// page (400); only the user's decision goes back to the client.
async fn authorize(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    app.hits.hit("authorize");
    let params = parse_pairs(query.as_deref().unwrap_or("").as_bytes());
    app.state().last_authorize = Some(AuthorizeRecord {
        params: params.clone(),
    });
    let controls = app.controls();

    if let Some(name) = repeated(&params) {
        return error_page(&format!("The parameter {name} was repeated."));
    }
    match find(&params, "client_id") {
        Some(id) if id == app.client_id => {}
        Some(_) => return error_page("Unknown client_id: this app is not registered."),
        None => return error_page("Missing required parameter: client_id."),
    }
    let Some(redirect_uri) = find(&params, "redirect_uri") else {
        return error_page("Missing required parameter: redirect_uri.");
    };
    if !redirect_uri_allowed(&controls.redirect_uris, redirect_uri) {
        return error_page(&format!(
            "The redirect_uri {redirect_uri} does not match a callback URL of this app."
        ));
    }
    if find(&params, "response_type") != Some("code") {
        return error_page("response_type must be code.");
    }
    let scopes: Vec<String> = find(&params, "scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return error_page("Missing required parameter: scope.");
    }
    if let Some(unknown) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return error_page(&format!("Unknown scope: {unknown}."));
    }
    let state = match find(&params, "state") {
        Some(s) if !s.is_empty() && s.len() <= MAX_STATE_LEN => s.to_owned(),
        Some(s) if !s.is_empty() => return error_page("state is longer than 500 characters."),
        _ => return error_page("Missing required parameter: state."),
    };
    // X accepts `plain` too (oauth2, "Parameters"); the mock insists on S256 so that Portcullis
    // never falls back to sending its verifier through the browser.
    let Some(challenge) = find(&params, "code_challenge") else {
        return error_page("Missing required parameter: code_challenge.");
    };
    if find(&params, "code_challenge_method") != Some("S256") {
        return error_page("code_challenge_method must be S256 (this mock refuses plain).");
    }
    if challenge.len() != 43 || URL_SAFE_NO_PAD.decode(challenge).is_err() {
        return error_page("code_challenge is not a base64url SHA-256 digest.");
    }
    let request = AuthRequest {
        redirect_uri: redirect_uri.to_owned(),
        state,
        scopes,
        code_challenge: challenge.to_owned(),
    };

    if controls.deny {
        return oauth2_denied(&request);
    }
    if let Some(user) = controls.auto_approve {
        return oauth2_approve(&app, request, user);
    }
    let id = random_token(18);
    app.state()
        .pending
        .insert(id.clone(), Pending::OAuth2(request));
    chooser_page(&id, &controls.users, "sign in to the app with OAuth 2.0")
}

/// The denial goes back to the client as `error=access_denied` with the `state`.
fn oauth2_denied(request: &AuthRequest) -> Response {
    redirect_appending(
        &request.redirect_uri,
        &[("error", "access_denied"), ("state", &request.state)],
    )
}

/// pkce-guide "Step 2": `{redirect_uri}?state=...&code=...`.
fn oauth2_approve(app: &App, request: AuthRequest, user: XUser) -> Response {
    let code = random_token(60);
    let response = redirect_appending(
        &request.redirect_uri,
        &[("state", &request.state), ("code", &code)],
    );
    let issued = app.now();
    app.state().codes.insert(
        code,
        CodeGrant {
            request,
            user,
            issued,
            used: false,
        },
    );
    response
}

fn redirect_uri_allowed(registered: &[String], uri: &str) -> bool {
    if !registered.is_empty() {
        return registered.iter().any(|r| r == uri);
    }
    loopback_http(uri)
}

fn loopback_http(uri: &str) -> bool {
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
// OAuth 2.0: token endpoint

/// pkce-guide "Step 3: POST oauth2/token": a form with `code`, `grant_type`, `redirect_uri`,
/// `code_verifier`; a confidential client authenticates with HTTP Basic (`client_id` in the
/// body is then optional), a public client sends `client_id` in the body (oauth2,
/// "Confidential clients"). Error bodies as observed (see the module doc).
async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    app.hits.hit("token");
    let controls = app.controls();
    if !controls.token_delay.is_zero() {
        tokio::time::sleep(controls.token_delay).await;
    }
    let params = parse_pairs(&body);
    let basic = basic_credentials(&headers);
    let content_type = header_str(&headers, header::CONTENT_TYPE).map(str::to_owned);
    app.state().token_requests.push(TokenRecord {
        basic: basic.clone(),
        content_type: content_type.clone(),
        params: params.clone(),
    });

    if let Some(status) = controls.fail_token {
        return problem(status_or_503(status), None);
    }
    if !is_form(content_type.as_deref()) {
        return oauth2_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        );
    }
    if repeated(&params).is_some() {
        return oauth2_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A parameter was repeated.",
        );
    }
    let form = |name: &str| find(&params, name);

    // Client authentication.
    if controls.public_client {
        if form("client_id") != Some(app.client_id.as_str()) {
            return oauth2_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter [client_id].",
            );
        }
    } else {
        let authenticated = basic
            .as_ref()
            .is_some_and(|(id, secret)| basic_matches(id, secret, &app));
        let body_id_ok = form("client_id").is_none_or(|id| id == app.client_id);
        if !authenticated || !body_id_ok {
            // Observed: X answers a missing or wrong Basic header this way, also when the
            // secret is sent in the body instead (client_secret_post is not supported).
            return oauth2_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "Missing valid authorization header",
            );
        }
    }

    match form("grant_type") {
        Some("authorization_code") => {}
        None => {
            return oauth2_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter [grant_type].",
            )
        }
        Some(_) => {
            return oauth2_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The mock supports grant_type=authorization_code only.",
            )
        }
    }
    let Some(code) = form("code") else {
        return oauth2_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter [code].",
        );
    };
    let now = app.now();
    let mut state = app.state();
    let usable = state
        .codes
        .get(code)
        .is_some_and(|g| !g.used && now.duration_since(g.issued) <= CODE_LIFETIME);
    if !usable {
        // Unknown, already redeemed and expired codes all get this (observed).
        return oauth2_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the authorization code was invalid.",
        );
    }
    let grant = state.codes.get_mut(code).expect("checked above");
    match form("redirect_uri") {
        None => {
            return oauth2_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter [redirect_uri].",
            )
        }
        Some(uri) if uri != grant.request.redirect_uri => return oauth2_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the redirect uri did not match the uri of the authorization code.",
        ),
        Some(_) => {}
    }
    let Some(verifier) = form("code_verifier") else {
        return oauth2_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter [code_verifier].",
        );
    };
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if computed != grant.request.code_challenge {
        // Observed (xdevplatform/twitter-api-typescript-sdk#26).
        return oauth2_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the code verifier did not match the code challenge.",
        );
    }

    grant.used = true;
    let scopes = grant.request.scopes.clone();
    let user = grant.user.clone();
    let access_token = oauth2_access_token();
    state.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            user,
            scopes: scopes.clone(),
            expires: now + Duration::from_secs(ACCESS_TOKEN_EXPIRES_IN),
        },
    );
    drop(state);

    let mut response = Map::new();
    response.insert("token_type".into(), json!("bearer"));
    response.insert("expires_in".into(), json!(ACCESS_TOKEN_EXPIRES_IN));
    response.insert("access_token".into(), json!(access_token));
    response.insert("scope".into(), json!(scopes.join(" ")));
    // oauth2, "Refresh tokens": only with offline.access. The mock does not honour it.
    if scopes.iter().any(|s| s == "offline.access") {
        response.insert("refresh_token".into(), json!(random_token(60)));
    }
    api_json(StatusCode::OK, &Value::Object(response))
}

// ---------------------------------------------------------------------------------------------
// API v2: /2/users/me

/// users-me: `{"data":{"id","name","username"}}` plus the requested `user.fields`.
/// `confirmed_email` needs the `users.email` scope (oauth2, "Scopes") and an account with an
/// email. The endpoint takes OAuth 2.0 user tokens (needing `tweet.read` and `users.read`) and
/// OAuth 1.0a user context (OpenAPI document, `security`).
async fn users_me(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.hits.hit("users_me");
    let query = parse_pairs(uri.query().unwrap_or("").as_bytes());
    app.state().userinfo_requests.push(UserinfoRecord {
        path: uri.path().to_owned(),
        query: query.clone(),
        auth_scheme: auth_scheme(&headers),
    });
    if let Some(status) = app.controls().fail_userinfo {
        return problem(status_or_503(status), None);
    }

    // Who is asking, and may they see the email?
    let (user, email_allowed) = match auth_scheme(&headers).as_deref() {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = header_str(&headers, header::AUTHORIZATION)
                .and_then(|v| v.split_once(' '))
                .map(|(_, t)| t.trim().to_owned())
                .unwrap_or_default();
            let now = app.now();
            let grant = app
                .state()
                .access_tokens
                .get(&token)
                .filter(|g| g.expires > now)
                .map(|g| (g.user.clone(), g.scopes.clone()));
            let Some((user, scopes)) = grant else {
                return problem(StatusCode::UNAUTHORIZED, None);
            };
            let has = |s: &str| scopes.iter().any(|x| x == s);
            if !has("tweet.read") || !has("users.read") {
                // The OpenAPI document requires both scopes for this endpoint; X's exact answer
                // to a token without them is not documented.
                return problem(StatusCode::FORBIDDEN, None);
            }
            (user, has("users.email"))
        }
        Some(scheme) if scheme.eq_ignore_ascii_case("oauth") => {
            let checked = check_oauth1(&app, &method, &uri, &headers, &body, TokenUse::Access);
            match checked {
                Ok(ok) => {
                    let user = ok.user.expect("access tokens have a user");
                    (user, app.controls().email_permission)
                }
                Err(_) => return problem(StatusCode::UNAUTHORIZED, None),
            }
        }
        _ => return problem(StatusCode::UNAUTHORIZED, None),
    };

    let fields: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "user.fields")
        .flat_map(|(_, v)| v.split(',').map(str::to_owned))
        .collect();
    let invalid: Vec<&String> = fields
        .iter()
        .filter(|f| !USER_FIELDS.contains(&f.as_str()))
        .collect();
    if let Some(first) = invalid.first() {
        // errors-v2: an `invalid-request` problem, with X's per-parameter `errors` list.
        let body = json!({
            "errors": [{
                "parameters": { "user.fields": [first] },
                "message": format!(
                    "The `user.fields` query parameter value [{first}] is not one of [{}]",
                    USER_FIELDS.join(",")
                ),
            }],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.x.com/2/problems/invalid-request",
        });
        return problem_body(StatusCode::BAD_REQUEST, &body);
    }
    let wants = |f: &str| fields.iter().any(|x| x == f);
    let mut data = Map::new();
    data.insert("id".into(), json!(user.id));
    data.insert("name".into(), json!(user.name));
    data.insert("username".into(), json!(user.username));
    if wants("created_at") {
        data.insert("created_at".into(), json!("2006-03-21T20:50:14.000Z"));
    }
    if wants("description") {
        data.insert("description".into(), json!(""));
    }
    if wants("protected") {
        data.insert("protected".into(), json!(false));
    }
    if wants("verified") {
        data.insert("verified".into(), json!(false));
    }
    if wants("profile_image_url") {
        data.insert("profile_image_url".into(), json!(user.profile_image_url));
    }
    if wants("confirmed_email") && email_allowed {
        if let Some(email) = &user.email {
            data.insert("confirmed_email".into(), json!(email));
        }
    }
    api_json(StatusCode::OK, &json!({ "data": Value::Object(data) }))
}

// ---------------------------------------------------------------------------------------------
// OAuth 1.0a: request_token, authenticate, access_token

/// oauth1-api "POST oauth/request_token": signed with the consumer credentials only, the
/// `oauth_callback` in the signed header. Answers
/// `oauth_token=..&oauth_token_secret=..&oauth_callback_confirmed=true`.
async fn request_token(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.hits.hit("request_token");
    if let Some(status) = app.controls().fail_request_token {
        return v1_internal_error(status);
    }
    let ok = match check_oauth1(&app, &method, &uri, &headers, &body, TokenUse::None) {
        Ok(ok) => ok,
        Err(rejection) => return rejection.into_response(),
    };
    // oauth1-api: "Always send an oauth_callback on this step"; X requires it to be one of the
    // app's callback URLs (or `oob` for PIN mode).
    let callback = ok.oauth("oauth_callback").unwrap_or("").to_owned();
    let controls = app.controls();
    if !callback_allowed(&controls.callback_urls, &callback) {
        app.mark_last_oauth1_rejected("callback URL not approved");
        return v1_error(
            StatusCode::FORBIDDEN,
            415,
            "Callback URL not approved for this client application. Approved callback URLs can \
             be adjusted in your application settings",
        );
    }
    let token = random_alnum(27);
    let secret = random_alnum(32);
    let issued = app.now();
    app.state().request_tokens.insert(
        token.clone(),
        RequestToken {
            secret: secret.clone(),
            callback,
            issued,
            approved: None,
            used: false,
        },
    );
    form_response(&[
        ("oauth_token", &token),
        ("oauth_token_secret", &secret),
        ("oauth_callback_confirmed", "true"),
    ])
}

fn callback_allowed(registered: &[String], callback: &str) -> bool {
    if callback == "oob" {
        return true;
    }
    let Ok(url) = url::Url::parse(callback) else {
        return false;
    };
    if url.fragment().is_some() {
        return false;
    }
    if registered.is_empty() {
        return loopback_http(callback);
    }
    let strip = |mut u: url::Url| {
        u.set_query(None);
        u.to_string()
    };
    let wanted = strip(url);
    registered
        .iter()
        .filter_map(|r| url::Url::parse(r).ok())
        .any(|r| strip(r) == wanted)
}

/// oauth1-api "GET oauth/authenticate": the user decides; the browser goes to the callback with
/// `oauth_token` and `oauth_verifier` added to its query (oauth1-flow, "Step 2"), or with
/// `denied={oauth_token}` when the user declines.
async fn authenticate(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    app.hits.hit("authenticate");
    let params = parse_pairs(query.as_deref().unwrap_or("").as_bytes());
    let Some(token) = find(&params, "oauth_token").map(str::to_owned) else {
        return error_page("Missing required parameter: oauth_token.");
    };
    let now = app.now();
    let known = app.state().request_tokens.get(&token).is_some_and(|t| {
        !t.used && t.approved.is_none() && now.duration_since(t.issued) <= REQUEST_TOKEN_LIFETIME
    });
    if !known {
        // X's page: the token is invalid, already used, or expired.
        return error_page(
            "This page is no longer valid. The request token was already used, has expired, \
             or was never issued.",
        );
    }
    let controls = app.controls();
    if controls.deny {
        return oauth1_denied(&app, &token);
    }
    if let Some(user) = controls.auto_approve {
        return oauth1_approve(&app, &token, user);
    }
    let id = random_token(18);
    app.state()
        .pending
        .insert(id.clone(), Pending::OAuth1(token));
    chooser_page(&id, &controls.users, "sign in to the app with OAuth 1.0a")
}

fn oauth1_denied(app: &App, token: &str) -> Response {
    let callback = app
        .state()
        .request_tokens
        .get(token)
        .map(|t| t.callback.clone())
        .unwrap_or_default();
    if callback == "oob" {
        return info_page("You did not authorize the app.", "No PIN was issued.");
    }
    redirect_appending(&callback, &[("denied", token)])
}

fn oauth1_approve(app: &App, token: &str, user: XUser) -> Response {
    let verifier = random_alnum(32);
    let callback = {
        let mut state = app.state();
        let Some(entry) = state.request_tokens.get_mut(token) else {
            return error_page("This page is no longer valid.");
        };
        entry.approved = Some((user, verifier.clone()));
        entry.callback.clone()
    };
    if callback == "oob" {
        // PIN-based flow: X shows the verifier to the user.
        return info_page(
            "You authorized the app. Enter this PIN in the app:",
            &verifier,
        );
    }
    redirect_appending(
        &callback,
        &[("oauth_token", token), ("oauth_verifier", &verifier)],
    )
}

/// oauth1-api "POST oauth/access_token": signed with the consumer credentials and the request
/// token (+ its secret), `oauth_verifier` in the header or the body. Answers
/// `oauth_token=..&oauth_token_secret=..&user_id=..&screen_name=..`.
async fn access_token(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.hits.hit("access_token");
    let controls = app.controls();
    if !controls.token_delay.is_zero() {
        tokio::time::sleep(controls.token_delay).await;
    }
    if let Some(status) = controls.fail_token {
        return v1_internal_error(status);
    }
    let ok = match check_oauth1(&app, &method, &uri, &headers, &body, TokenUse::Request) {
        Ok(ok) => ok,
        Err(rejection) => return rejection.into_response(),
    };
    let token = ok.token.clone().expect("request token checked");
    let verifier = ok.signed("oauth_verifier").map(str::to_owned);
    let now = app.now();
    let mut state = app.state();
    let entry = state.request_tokens.get_mut(&token).expect("checked");
    if entry.used || now.duration_since(entry.issued) > REQUEST_TOKEN_LIFETIME {
        drop(state);
        app.mark_last_oauth1_rejected("request token used or expired");
        return plain(StatusCode::UNAUTHORIZED, "Invalid request token.");
    }
    let user = match (&entry.approved, verifier) {
        (Some((user, expected)), Some(given)) if given == *expected => user.clone(),
        _ => {
            drop(state);
            app.mark_last_oauth1_rejected("oauth_verifier missing or wrong");
            return plain(
                StatusCode::UNAUTHORIZED,
                "Error processing your OAuth request: Invalid oauth_verifier parameter",
            );
        }
    };
    entry.used = true;
    let (access, secret) = oauth1_access_token(&user);
    state.oauth1_tokens.insert(
        access.clone(),
        OAuth1Access {
            secret: secret.clone(),
            user: user.clone(),
        },
    );
    drop(state);
    form_response(&[
        ("oauth_token", &access),
        ("oauth_token_secret", &secret),
        ("user_id", &user.id),
        ("screen_name", &user.username),
    ])
}

/// verify-credentials: the user object; `email` only with `include_email=true`, the app's email
/// permission, and an account with an email ([`Controls::v1_null_email`] for `null`). The mock
/// never includes `status`, whatever `skip_status` says.
async fn verify_credentials(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.hits.hit("verify_credentials");
    let query = parse_pairs(uri.query().unwrap_or("").as_bytes());
    app.state().userinfo_requests.push(UserinfoRecord {
        path: uri.path().to_owned(),
        query: query.clone(),
        auth_scheme: auth_scheme(&headers),
    });
    let controls = app.controls();
    if let Some(status) = controls.fail_userinfo {
        return v1_internal_error(status);
    }
    let ok = match check_oauth1(&app, &method, &uri, &headers, &body, TokenUse::Access) {
        Ok(ok) => ok,
        Err(rejection) => return rejection.into_response(),
    };
    let user = ok.user.expect("access tokens have a user");
    let id_number: Value = user
        .id
        .parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| json!(user.id));
    let mut out = Map::new();
    out.insert("id".into(), id_number);
    out.insert("id_str".into(), json!(user.id));
    out.insert("name".into(), json!(user.name));
    out.insert("screen_name".into(), json!(user.username));
    out.insert("location".into(), json!(""));
    out.insert("description".into(), json!(""));
    out.insert("url".into(), Value::Null);
    out.insert("protected".into(), json!(false));
    out.insert("followers_count".into(), json!(0));
    out.insert("friends_count".into(), json!(0));
    out.insert("created_at".into(), json!("Tue Mar 21 20:50:14 +0000 2006"));
    out.insert("verified".into(), json!(false));
    out.insert(
        "profile_image_url_https".into(),
        json!(user.profile_image_url),
    );
    out.insert("default_profile_image".into(), json!(false));
    let include_email = matches!(find(&query, "include_email"), Some("true" | "t" | "1"));
    if include_email && controls.email_permission {
        match &user.email {
            Some(email) => {
                out.insert("email".into(), json!(email));
            }
            None if controls.v1_null_email => {
                out.insert("email".into(), Value::Null);
            }
            None => {}
        }
    }
    api_json(StatusCode::OK, &Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// OAuth 1.0a: the signature check (this mock's own implementation)

/// Which token a signed request must carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenUse {
    /// `request_token`: none; the signing key is `consumer_secret&`.
    None,
    /// `access_token`: a request token from `request_token`.
    Request,
    /// API calls: an access token from `access_token`.
    Access,
}

struct OAuth1Ok {
    /// The `Authorization` header's parameters (decoded).
    oauth: Vec<(String, String)>,
    /// Every signed parameter: header (minus `oauth_signature` and `realm`), query, form body.
    signed: Vec<(String, String)>,
    token: Option<String>,
    user: Option<XUser>,
}

impl OAuth1Ok {
    fn oauth(&self, name: &str) -> Option<&str> {
        find(&self.oauth, name)
    }

    fn signed(&self, name: &str) -> Option<&str> {
        find(&self.signed, name)
    }
}

/// A refused OAuth 1.0a request: X's v1.1 error JSON, or the plain-text bodies of
/// `oauth/access_token`.
struct Rejection {
    status: StatusCode,
    /// v1.1 error code; `None` = plain-text `message`.
    code: Option<u32>,
    message: &'static str,
}

impl Rejection {
    fn could_not_authenticate() -> Rejection {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            code: Some(32),
            message: "Could not authenticate you.",
        }
    }

    fn into_response(self) -> Response {
        match self.code {
            Some(code) => v1_error(self.status, code, self.message),
            None => plain(self.status, self.message),
        }
    }
}

impl Shared {
    fn mark_last_oauth1_rejected(&self, reason: &str) {
        if let Some(last) = self.state().oauth1_requests.last_mut() {
            last.rejected = Some(reason.to_owned());
        }
    }
}

/// Checks an OAuth 1.0a-signed request (authorizing, signature, RFC 5849 section 3.2), and
/// records it. Order: the header's form, consumer key, method and version, timestamp window
/// (135), the token, the signature (32), then the nonce (32; only accepted requests use one up).
fn check_oauth1(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    token_use: TokenUse,
) -> Result<OAuth1Ok, Rejection> {
    let query = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let body_params = if is_form(header_str(headers, header::CONTENT_TYPE)) {
        parse_pairs(body)
    } else {
        Vec::new()
    };
    let oauth = header_str(headers, header::AUTHORIZATION).and_then(parse_oauth_header);
    let mut record = OAuth1Record {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        oauth_params: oauth.clone().unwrap_or_default(),
        query: query.clone(),
        body: body_params.clone(),
        rejected: None,
    };
    let result = verify_oauth1(
        app,
        method,
        uri,
        headers,
        oauth,
        query,
        body_params,
        token_use,
    );
    if let Err((_, reason)) = &result {
        record.rejected = Some(reason.clone());
    }
    app.state().oauth1_requests.push(record);
    result.map_err(|(rejection, _)| rejection)
}

#[allow(clippy::too_many_arguments)]
fn verify_oauth1(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    oauth: Option<Vec<(String, String)>>,
    query: Vec<(String, String)>,
    body_params: Vec<(String, String)>,
    token_use: TokenUse,
) -> Result<OAuth1Ok, (Rejection, String)> {
    let fail32 = |reason: &str| (Rejection::could_not_authenticate(), reason.to_owned());
    let Some(oauth) = oauth else {
        return Err((
            Rejection {
                status: StatusCode::BAD_REQUEST,
                code: Some(215),
                message: "Bad Authentication data.",
            },
            "no OAuth Authorization header".to_owned(),
        ));
    };
    if let Some(name) = repeated(&oauth) {
        // signature, note [2]: "X does not accept duplicate keys".
        return Err(fail32(&format!("{name} repeated in the header")));
    }
    let get = |name: &str| find(&oauth, name);
    if get("oauth_consumer_key") != Some(app.consumer_key.as_str()) {
        return Err(fail32("unknown oauth_consumer_key"));
    }
    // authorizing, "Signature method": HMAC-SHA1; "Version": 1.0 (optional per RFC 5849).
    if get("oauth_signature_method") != Some("HMAC-SHA1") {
        return Err(fail32("oauth_signature_method is not HMAC-SHA1"));
    }
    if get("oauth_version").is_some_and(|v| v != "1.0") {
        return Err(fail32("oauth_version is not 1.0"));
    }
    let Some(signature) = get("oauth_signature") else {
        return Err(fail32("no oauth_signature"));
    };
    let Some(timestamp) = get("oauth_timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return Err(fail32("oauth_timestamp missing or not a number"));
    };
    let now = app.unix_now();
    if (now - timestamp).abs() > TIMESTAMP_WINDOW_SECS {
        return Err((
            Rejection {
                status: StatusCode::UNAUTHORIZED,
                code: Some(135),
                message: "Timestamp out of bounds.",
            },
            format!(
                "oauth_timestamp {timestamp} is {}s from now",
                now - timestamp
            ),
        ));
    }
    // oauth1-api, request_token: "Only ASCII values are accepted for the oauth_nonce".
    let nonce = match get("oauth_nonce") {
        Some(n) if !n.is_empty() && n.is_ascii() => n.to_owned(),
        _ => return Err(fail32("oauth_nonce missing or not ASCII")),
    };

    // The token and its secret.
    let token = get("oauth_token")
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let (token_secret, user) = match token_use {
        TokenUse::None => (String::new(), None),
        TokenUse::Request => {
            let Some(t) = &token else {
                return Err((
                    Rejection {
                        status: StatusCode::UNAUTHORIZED,
                        code: None,
                        message: "Request token missing",
                    },
                    "no oauth_token".to_owned(),
                ));
            };
            match app.state().request_tokens.get(t) {
                Some(entry) => (entry.secret.clone(), None),
                None => {
                    return Err((
                        Rejection {
                            status: StatusCode::UNAUTHORIZED,
                            code: None,
                            message: "Invalid request token.",
                        },
                        "unknown request token".to_owned(),
                    ))
                }
            }
        }
        TokenUse::Access => {
            let entry = token.as_ref().and_then(|t| {
                app.state()
                    .oauth1_tokens
                    .get(t)
                    .map(|e| (e.secret.clone(), e.user.clone()))
            });
            match entry {
                Some((secret, user)) => (secret, Some(user)),
                None => {
                    return Err((
                        Rejection {
                            status: StatusCode::UNAUTHORIZED,
                            code: Some(89),
                            message: "Invalid or expired token.",
                        },
                        "unknown access token".to_owned(),
                    ))
                }
            }
        }
    };

    // signature, "Collecting parameters": every oauth_* parameter but the signature itself,
    // plus the query and the form body (RFC 5849 3.4.1.3.1 also drops `realm`).
    let mut signed: Vec<(String, String)> = oauth
        .iter()
        .filter(|(k, _)| k != "oauth_signature" && k != "realm")
        .cloned()
        .collect();
    signed.extend(query);
    signed.extend(body_params);
    let base_uri = base_string_uri(app, uri, headers);
    let base = oauth1_base_string(method.as_str(), &base_uri, &signed);
    if !signature_matches(&base, &app.consumer_secret, &token_secret, signature) {
        return Err(fail32(&format!(
            "signature mismatch; base string was {base}"
        )));
    }

    // authorizing, "Nonce": X uses it "to determine whether a request has been submitted
    // multiple times". RFC 5849 3.3 makes nonces unique per timestamp, client and token; the
    // mock is stricter and refuses any nonce it has accepted in the last 10 minutes.
    {
        let mut state = app.state();
        state
            .nonces
            .retain(|_, ts| *ts >= now - 2 * TIMESTAMP_WINDOW_SECS);
        if state.nonces.contains_key(&nonce) {
            drop(state);
            return Err(fail32("oauth_nonce already used"));
        }
        state.nonces.insert(nonce, timestamp);
    }
    Ok(OAuth1Ok {
        oauth,
        signed,
        token,
        user,
    })
}

/// RFC 5849 3.4.1.2: scheme and host in lower case, default port left out, path, no query. The
/// mock is plain HTTP; the host is the request's `Host` (what the client connected to).
fn base_string_uri(app: &App, uri: &Uri, headers: &HeaderMap) -> String {
    let authority = header_str(headers, header::HOST)
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| app.base_url.trim_start_matches("http://").to_owned());
    let authority = authority.strip_suffix(":80").unwrap_or(&authority);
    format!("http://{authority}{}", uri.path())
}

/// signature, "Creating the signature base string": `METHOD&enc(url)&enc(parameter string)`,
/// the parameter string being `enc(k)=enc(v)` pairs sorted by encoded key (then value), joined
/// with `&`.
pub fn oauth1_base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (rfc3986(k), rfc3986(v)))
        .collect();
    encoded.sort();
    let mut parameter_string = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            parameter_string.push('&');
        }
        parameter_string.push_str(k);
        parameter_string.push('=');
        parameter_string.push_str(v);
    }
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        rfc3986(base_uri),
        rfc3986(&parameter_string)
    )
}

/// signature, "Getting a signing key" and "Calculating the signature": base64 of
/// HMAC-SHA1(`enc(consumer_secret)&enc(token_secret)`, base string). Public so the self-test can
/// hold the mock's verifier to X's worked example.
pub fn oauth1_signature(
    method: &str,
    base_uri: &str,
    params: &[(String, String)],
    consumer_secret: &str,
    token_secret: &str,
) -> String {
    let base = oauth1_base_string(method, base_uri, params);
    STANDARD.encode(
        signing_mac(consumer_secret, token_secret, &base)
            .finalize()
            .into_bytes(),
    )
}

fn signing_mac(consumer_secret: &str, token_secret: &str, base: &str) -> Hmac<Sha1> {
    let key = format!("{}&{}", rfc3986(consumer_secret), rfc3986(token_secret));
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key");
    mac.update(base.as_bytes());
    mac
}

/// Constant-time comparison of the received signature with the expected one.
fn signature_matches(base: &str, consumer_secret: &str, token_secret: &str, given: &str) -> bool {
    let Ok(given) = STANDARD.decode(given.trim()) else {
        return false;
    };
    signing_mac(consumer_secret, token_secret, base)
        .verify_slice(&given)
        .is_ok()
}

/// percent: RFC 3986 section 2.1, byte by byte; only `A-Z a-z 0-9 - . _ ~` stay as they are,
/// everything else becomes `%XX` with upper-case hex.
fn rfc3986(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &byte in s.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Strict percent-decoding (no `+` for space), for the header's values.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// authorizing, "Building the header string": `OAuth k="v", k2="v2"` with percent-encoded keys
/// and values. `None` when it is not an `OAuth` header or does not parse.
fn parse_oauth_header(value: &str) -> Option<Vec<(String, String)>> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("oauth") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let end = after.find('"')?;
        let key = percent_decode(key.trim())?;
        let value = percent_decode(&after[..end])?;
        out.push((key, value));
        rest = after[end + 1..].trim_start();
        if let Some(next) = rest.strip_prefix(',') {
            rest = next.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The account chooser (not X's pages: a clearly labelled stand-in)

async fn consent_get(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    consent(app, parse_pairs(query.as_deref().unwrap_or("").as_bytes()))
}

async fn consent_post(State(app): State<App>, body: Bytes) -> Response {
    consent(app, parse_pairs(&body))
}

fn consent(app: App, params: Vec<(String, String)>) -> Response {
    let Some(pending) = find(&params, "request").and_then(|id| app.state().pending.remove(id))
    else {
        return error_page("This sign-in request has expired. Start again from the app.");
    };
    let deny = find(&params, "deny").is_some();
    let users = app.controls().users;
    let user = find(&params, "user").and_then(|id| users.into_iter().find(|u| u.id == id));
    match (pending, deny, user) {
        (Pending::OAuth2(request), true, _) => oauth2_denied(&request),
        (Pending::OAuth1(token), true, _) => oauth1_denied(&app, &token),
        (Pending::OAuth2(request), false, Some(user)) => oauth2_approve(&app, request, user),
        (Pending::OAuth1(token), false, Some(user)) => oauth1_approve(&app, &token, user),
        (_, false, None) => error_page("Unknown account: pick a listed account."),
    }
}

const BANNER: &str = "Local test provider — not X";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} - {BANNER}</title>\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}\
         .banner{{background:#fde68a;padding:.75rem;border-radius:.5rem}}\
         ul{{list-style:none;padding:0}}li{{margin:.5rem 0}}\
         button{{width:100%;text-align:left;padding:.75rem;font-size:1rem;cursor:pointer}}\
         code{{font-size:1.5rem}}</style></head><body>\
         <p class=\"banner\"><strong>{BANNER}.</strong> This page stands in for X's sign-in \
         during tests and demos; nothing here talks to X.</p>{body}</body></html>",
        title = escape(title),
    )
}

fn chooser_page(request_id: &str, users: &[XUser], purpose: &str) -> Response {
    let rid = escape(request_id);
    let mut buttons = String::new();
    for user in users {
        let email = user.email.as_deref().unwrap_or("no email on this account");
        let _ = write!(
            buttons,
            "<li><form method=\"post\" action=\"{CONSENT_PATH}\">\
             <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
             <button type=\"submit\" name=\"user\" value=\"{id}\">\
             <strong>{name}</strong> @{username}<br><span>{email}</span></button></form></li>",
            id = escape(&user.id),
            name = escape(&user.name),
            username = escape(&user.username),
            email = escape(email),
        );
    }
    let body = format!(
        "<h1>Authorize app</h1><p>Choose the X account to {purpose}.</p><ul>{buttons}</ul>\
         <form method=\"post\" action=\"{CONSENT_PATH}\">\
         <input type=\"hidden\" name=\"request\" value=\"{rid}\">\
         <button type=\"submit\" name=\"deny\" value=\"1\">Cancel (deny)</button></form>",
        purpose = escape(purpose),
    );
    no_store(Html(page("Authorize app", &body)).into_response())
}

fn info_page(title: &str, detail: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p><code>{}</code></p>",
        escape(title),
        escape(detail)
    );
    no_store(Html(page(title, &body)).into_response())
}

fn error_page(detail: &str) -> Response {
    let body = format!(
        "<h1>Something went wrong</h1><p>You weren't able to give access to the App. Go back \
         and try logging in again.</p><p>{}</p>",
        escape(detail)
    );
    no_store((StatusCode::BAD_REQUEST, Html(page("Error", &body))).into_response())
}

// ---------------------------------------------------------------------------------------------
// Responses

/// Token endpoint errors: `{"error","error_description"}` (observed).
fn oauth2_error(status: StatusCode, error: &str, description: &str) -> Response {
    api_json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// errors-v2: a problem object; with `detail: None` the generic `about:blank` one whose title
/// and detail are the status text, e.g. `{"title":"Unauthorized","type":"about:blank",
/// "status":401,"detail":"Unauthorized"}` (observed).
fn problem(status: StatusCode, detail: Option<&str>) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    problem_body(
        status,
        &json!({
            "title": reason,
            "type": "about:blank",
            "status": status.as_u16(),
            "detail": detail.unwrap_or(reason),
        }),
    )
}

fn problem_body(status: StatusCode, body: &Value) -> Response {
    let mut response = api_json(status, body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// errors-v1: `{"errors":[{"code":N,"message":"..."}]}`.
fn v1_error(status: StatusCode, code: u32, message: &str) -> Response {
    api_json(
        status,
        &json!({ "errors": [{ "code": code, "message": message }] }),
    )
}

/// errors-v1: code 131 "Internal error", with the status the test asked for.
fn v1_internal_error(status: u16) -> Response {
    v1_error(status_or_503(status), 131, "Internal error.")
}

fn api_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0"),
    );
    response
}

/// The OAuth 1.0a token endpoints answer a form-encoded body (oauth1-api examples). X serves it
/// with a `text/html` content type although its docs say JSON; a client must parse the body as
/// a form whatever the header says.
fn form_response(pairs: &[(&str, &str)]) -> Response {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k, v);
    }
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.finish(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0"),
    );
    response
}

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_owned(),
    )
        .into_response()
}

/// A 302 to `base` with `params` appended to its existing query (oauth1-flow, "Step 2").
fn redirect_appending(base: &str, params: &[(&str, &str)]) -> Response {
    let mut url = url::Url::parse(base).expect("the callback was validated");
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(url.as_str()).expect("a URL is a valid header value"),
    );
    no_store(response)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn status_or_503(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

// ---------------------------------------------------------------------------------------------
// Helpers

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

/// Letters and digits only, like X's OAuth 1.0a tokens.
fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut raw);
    raw.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn oauth2_access_token() -> String {
    random_token(66)
}

/// X's access tokens start with the user id (oauth1-flow: `7588892-kagSNq...`).
fn oauth1_access_token(user: &XUser) -> (String, String) {
    (
        format!("{}-{}", user.id, random_alnum(40)),
        random_alnum(45),
    )
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

/// The first parameter name that occurs twice.
fn repeated(params: &[(String, String)]) -> Option<&str> {
    params
        .iter()
        .enumerate()
        .find(|(i, (k, _))| params[..*i].iter().any(|(k2, _)| k2 == k))
        .map(|(_, (k, _))| k.as_str())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn auth_scheme(headers: &HeaderMap) -> Option<String> {
    header_str(headers, header::AUTHORIZATION)
        .map(|v| v.trim().split(' ').next().unwrap_or("").to_owned())
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

/// HTTP Basic credentials, as sent (base64-decoded, split at the first `:`).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, header::AUTHORIZATION)?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// pkce-guide: X base64s `client_id:client_secret` as they are; RFC 6749 2.3.1 form-encodes both
/// first (what generic OAuth 2.0 clients do). The mock accepts either spelling.
fn basic_matches(id: &str, secret: &str, app: &App) -> bool {
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    (id == app.client_id && secret == app.client_secret)
        || (unescape(id) == app.client_id && unescape(secret) == app.client_secret)
}
