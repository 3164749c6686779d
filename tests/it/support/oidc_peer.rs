//! A real, independent OpenID Connect provider as a test peer: panva's `oidc-provider` 9.x
//! (OpenID Certified), run by Node from `tests/oidc-peer/server.mjs` on plain HTTP on
//! 127.0.0.1, with its built-in development login and consent pages, which [`sign_in`] and
//! [`deny`] fill in like a person would.
//!
//! Needs `node` (20.18 or newer, 22 LTS recommended) on `PATH` and
//! `npm ci --prefix tests/oidc-peer`. Tests start with [`require!`] (or [`skip_or_fail`]):
//! without the peer they are skipped with a message, unless `CI` is set, where they fail.
//!
//! The peer's endpoints are oidc-provider's defaults under the issuer
//! `http://127.0.0.1:{port}`: `/.well-known/openid-configuration`, `/auth`, `/token`, `/me`
//! (userinfo), `/jwks`, `/interaction/{uid}` (login and consent pages). Its cookies
//! (`_session`, `_interaction`, `_interaction_resume`, each with a `.sig`) live on 127.0.0.1,
//! so a [`Browser`] also sends them to Portcullis on another port, as a real browser would.
//! Its state (sessions, codes, grants) is in memory: a restart forgets every session.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
use reqwest::header::LOCATION;
use serde_json::{json, Value};
use url::Url;

use super::harness::Browser;

/// `tests/oidc-peer`: `server.mjs`, `package.json`, `package-lock.json`, `node_modules`.
pub const PEER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc-peer");

/// How long node may take to print its `READY` line.
const START_DEADLINE: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Requests [`sign_in`] / [`deny`] may make before giving up.
const MAX_STEPS: usize = 20;

// ---------------------------------------------------------------------------------------------
// Availability

/// `Ok` when the peer can run: `node` 20.18+ on `PATH` and oidc-provider 9 installed in
/// `tests/oidc-peer/node_modules`. Checked once per test binary.
pub fn available() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(check_available).clone()
}

fn check_available() -> Result<(), String> {
    let output = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`node` is not on PATH ({e})"))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(str::parse::<u32>);
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return Err(format!("`node --version` printed {version:?}"));
    };
    // oidc-provider 9 uses URL.parse (Node 20.18+); it recommends Node 22 LTS and prints an
    // "Unsupported runtime" warning on 20, where it works.
    if (major, minor) < (20, 18) {
        return Err(format!(
            "node {version} is too old; oidc-provider 9 needs 20.18 or newer (22 LTS recommended)"
        ));
    }
    let package = Path::new(PEER_DIR).join("node_modules/oidc-provider/package.json");
    let text = fs::read_to_string(&package).map_err(|_| {
        format!(
            "{} is missing: run `npm ci --prefix tests/oidc-peer`",
            package.display()
        )
    })?;
    let installed = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if !installed.starts_with("9.") {
        return Err(format!(
            "oidc-provider {installed:?} is installed, 9.x expected: run `npm ci --prefix tests/oidc-peer`"
        ));
    }
    Ok(())
}

/// Whether `CI` is set (to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// `false` when the peer is available. Otherwise `true` with a message on stderr (the test
/// should return: skipped), or, when `CI` is set, a panic: CI never skips silently.
pub fn skip_or_fail(test: &str) -> bool {
    match available() {
        Ok(()) => false,
        Err(why) if in_ci() => panic!(
            "{test}: the OIDC test peer (tests/oidc-peer) is required in CI but unavailable: {why}"
        ),
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: the OIDC test peer is unavailable: {why} (with CI=true this fails)"
            );
            true
        }
    }
}

/// `oidc_peer::require!();` at the top of a test: returns from it (skipped) when the peer is
/// unavailable, panics instead when `CI` is set. See [`skip_or_fail`].
macro_rules! require_oidc_peer {
    () => {
        if $crate::support::oidc_peer::skip_or_fail(
            ::std::thread::current()
                .name()
                .unwrap_or(::std::module_path!()),
        ) {
            return;
        }
    };
}
pub(crate) use require_oidc_peer as require;

// ---------------------------------------------------------------------------------------------
// Configuration

/// A statically registered client (relying party).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerClient {
    pub client_id: String,
    /// Ignored for `token_endpoint_auth_method = "none"`.
    pub client_secret: String,
    /// Must match exactly; `http://127.0.0.1:…` is accepted for web clients.
    pub redirect_uris: Vec<String>,
    /// `client_secret_basic` (oidc-provider's default), `client_secret_post`, or `none` (a
    /// public client, which oidc-provider requires to use PKCE).
    pub token_endpoint_auth_method: String,
    /// Empty: oidc-provider's default (`authorization_code`).
    pub grant_types: Vec<String>,
    /// Where RP-initiated logout (`/session/end`) may return the browser.
    pub post_logout_redirect_uris: Vec<String>,
}

impl PeerClient {
    /// A confidential client authenticating with `client_secret_basic`.
    pub fn confidential(
        client_id: &str,
        client_secret: &str,
        redirect_uris: &[&str],
    ) -> PeerClient {
        PeerClient {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            token_endpoint_auth_method: "client_secret_basic".to_owned(),
            grant_types: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
        }
    }

    /// An API client: the `client_credentials` grant only (`client_secret_basic`), for the
    /// access tokens of [`PeerOptions::resource_server`].
    pub fn api(client_id: &str, client_secret: &str) -> PeerClient {
        PeerClient {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: Vec::new(),
            token_endpoint_auth_method: "client_secret_basic".to_owned(),
            grant_types: vec!["client_credentials".to_owned()],
            post_logout_redirect_uris: Vec::new(),
        }
    }

    /// A public client (`token_endpoint_auth_method = "none"`, PKCE required).
    pub fn public(client_id: &str, redirect_uris: &[&str]) -> PeerClient {
        PeerClient {
            client_id: client_id.to_owned(),
            client_secret: String::new(),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            token_endpoint_auth_method: "none".to_owned(),
            grant_types: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": self.redirect_uris,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
        });
        if !self.grant_types.is_empty() {
            v["grant_types"] = json!(self.grant_types);
        }
        if !self.post_logout_redirect_uris.is_empty() {
            v["post_logout_redirect_uris"] = json!(self.post_logout_redirect_uris);
        }
        v
    }
}

/// An account at the peer. Its login name on the sign-in page is `preferred_username` (any
/// password works); its `sub` is what ID tokens and userinfo carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAccount {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: String,
    pub picture: Option<String>,
    /// Further claims (an object): `groups`, Keycloak's `realm_access`, Entra ID's
    /// `_claim_names`/`_claim_sources`, ...
    pub claims: Value,
    /// `claims` in userinfo only (else in the ID token and in userinfo).
    pub claims_only_in_userinfo: bool,
}

impl PeerAccount {
    /// A plain account: login `login`, sub `sub`, verified `{login}@example.com`.
    pub fn named(login: &str, sub: &str) -> PeerAccount {
        PeerAccount {
            sub: sub.to_owned(),
            email: Some(format!("{login}@example.com")),
            email_verified: true,
            name: Some(format!("User {login}")),
            preferred_username: login.to_owned(),
            picture: None,
            claims: json!({}),
            claims_only_in_userinfo: false,
        }
    }

    /// This account with further `claims` (an object), in the ID token and userinfo, or
    /// (`only_in_userinfo`) in userinfo only.
    pub fn with_claims(mut self, claims: Value, only_in_userinfo: bool) -> PeerAccount {
        self.claims = claims;
        self.claims_only_in_userinfo = only_in_userinfo;
        self
    }

    /// Alice: login `alice`, verified email.
    pub fn alice() -> PeerAccount {
        PeerAccount {
            sub: "248289761001".to_owned(),
            email: Some("alice@example.com".to_owned()),
            email_verified: true,
            name: Some("Alice Adams".to_owned()),
            preferred_username: "alice".to_owned(),
            picture: Some("https://pictures.example.com/alice.png".to_owned()),
            claims: json!({}),
            claims_only_in_userinfo: false,
        }
    }

    /// Bob: login `bob`, email NOT verified.
    pub fn bob() -> PeerAccount {
        PeerAccount {
            sub: "248289761002".to_owned(),
            email: Some("bob@example.com".to_owned()),
            email_verified: false,
            name: Some("Bob Brown".to_owned()),
            preferred_username: "bob".to_owned(),
            picture: None,
            claims: json!({}),
            claims_only_in_userinfo: false,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "sub": self.sub,
            "email": self.email,
            "email_verified": self.email_verified,
            "name": self.name,
            "preferred_username": self.preferred_username,
            "picture": self.picture,
            "claims": self.claims,
            "claims_only_in_userinfo": self.claims_only_in_userinfo,
        })
    }
}

/// Everything [`start_with`] accepts.
#[derive(Clone, Debug, Default)]
pub struct PeerOptions {
    /// 0 = any free port.
    pub port: u16,
    pub clients: Vec<PeerClient>,
    pub accounts: Vec<PeerAccount>,
    /// oidc-provider's `conformIdTokenClaims`. `None` keeps its default (true): in the code
    /// flow the ID token carries only `sub` and protocol claims, and the `email`/`profile`
    /// claims come from userinfo only. `Some(false)` puts them in the ID token too.
    pub conform_id_token_claims: Option<bool>,
    /// One API whose access tokens are RS256 JWTs: `(audience, lifetime in seconds)`, issued
    /// to [`PeerClient::api`] clients by the `client_credentials` grant
    /// ([`OidcPeer::client_credentials`]).
    pub resource_server: Option<(String, u64)>,
    /// Refresh tokens for clients with the `refresh_token` grant.
    pub refresh_tokens: bool,
    /// Access-token lifetime in seconds (oidc-provider's default: 3600).
    pub access_token_ttl: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The process

/// A running oidc-provider. Killed and reaped on drop; when the test is panicking, its
/// stderr is printed first.
pub struct OidcPeer {
    /// `http://127.0.0.1:{port}`, no trailing slash.
    pub issuer: String,
    pub port: u16,
    pub options: PeerOptions,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// Starts the peer on a free port with oidc-provider's defaults.
pub async fn start(clients: Vec<PeerClient>, accounts: Vec<PeerAccount>) -> OidcPeer {
    start_with(PeerOptions {
        clients,
        accounts,
        ..PeerOptions::default()
    })
    .await
}

/// Starts the peer on `port` (e.g. one freed by an earlier peer).
pub async fn start_on(port: u16, clients: Vec<PeerClient>, accounts: Vec<PeerAccount>) -> OidcPeer {
    start_with(PeerOptions {
        port,
        clients,
        accounts,
        ..PeerOptions::default()
    })
    .await
}

/// Starts the peer as `options` say; returns once it prints `READY`. Panics with its stderr
/// when it does not start.
pub async fn start_with(options: PeerOptions) -> OidcPeer {
    if let Err(why) = available() {
        panic!("the OIDC test peer is unavailable: {why}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = json!({
        "clients": options.clients.iter().map(PeerClient::to_json).collect::<Vec<_>>(),
        "accounts": options.accounts.iter().map(PeerAccount::to_json).collect::<Vec<_>>(),
        "keys_file": dir.path().join("jwks.json"),
    });
    if let Some(conform) = options.conform_id_token_claims {
        config["conform_id_token_claims"] = json!(conform);
    }
    if options.refresh_tokens {
        config["refresh_tokens"] = json!(true);
    }
    if let Some(ttl) = options.access_token_ttl {
        config["access_token_ttl"] = json!(ttl);
    }
    if let Some((audience, ttl)) = &options.resource_server {
        config["resource_server"] = json!({ "audience": audience, "ttl": ttl });
    }
    fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec_pretty(&config).expect("config JSON"),
    )
    .expect("write peer config");
    let mut peer = OidcPeer {
        issuer: String::new(),
        port: options.port,
        options,
        child: None,
        dir,
    };
    peer.spawn().await;
    peer
}

impl OidcPeer {
    /// An access token for the resource server from the `client_credentials` grant of the
    /// API client `client_id`.
    pub async fn client_credentials(&self, client_id: &str, client_secret: &str) -> String {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(self.token_endpoint())
            .basic_auth(client_id, Some(client_secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "api")])
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("token JSON");
        assert_eq!(status, 200, "client_credentials: {body}\n{}", self.logs());
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    pub fn authorization_endpoint(&self) -> String {
        self.url("/auth")
    }

    pub fn token_endpoint(&self) -> String {
        self.url("/token")
    }

    pub fn userinfo_endpoint(&self) -> String {
        self.url("/me")
    }

    pub fn jwks_uri(&self) -> String {
        self.url("/jwks")
    }

    /// The private JWKS file the peer signs with (kept across [`OidcPeer::restart`]).
    pub fn keys_file(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the peer wrote to stderr so far, over all its restarts: oidc-provider's
    /// warnings, one `oidc-peer: METHOD /path -> status` line per request, and errors.
    pub fn logs(&self) -> String {
        fs::read(self.stderr_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and waits for it; the port is then free. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the peer and starts it again on the same port with the same clients and
    /// accounts. Its in-memory state (sessions, codes, grants) is lost. With `rotate_key`
    /// the signing key file is deleted first, so a new key (new `kid`) is generated;
    /// otherwise the same key is loaded.
    pub async fn restart(&mut self, rotate_key: bool) {
        self.stop();
        if rotate_key {
            let _ = fs::remove_file(self.keys_file());
        }
        self.spawn().await;
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    async fn spawn(&mut self) {
        let stdout_path = self.dir.path().join("stdout.log");
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("peer stderr file");
        let child = Command::new("node")
            .arg("server.mjs")
            .arg(self.dir.path().join("config.json"))
            .arg(self.port.to_string())
            .current_dir(PEER_DIR)
            .env_remove("NODE_OPTIONS")
            .env_remove("OIDC_PEER_PORT")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("peer stdout file"))
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {PEER_DIR}/server.mjs: {e}"));
        self.child = Some(child);

        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = stdout.lines().find(|l| l.starts_with("READY ")) {
                let issuer = line["READY ".len()..].trim().to_owned();
                let port = Url::parse(&issuer)
                    .ok()
                    .and_then(|u| u.port())
                    .unwrap_or_else(|| panic!("bad READY line from the peer: {line:?}"));
                assert!(
                    self.port == 0 || self.port == port,
                    "the peer listens on {port}, not on the requested {}",
                    self.port
                );
                self.issuer = issuer;
                self.port = port;
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll peer"));
            if let Some(status) = exited {
                self.child = None;
                panic!(
                    "the OIDC peer exited ({status}) before it was ready (port {}); stderr:\n{}",
                    self.port,
                    self.logs()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                let pid = self.pid();
                let status = pid
                    .and_then(|p| fs::read_to_string(format!("/proc/{p}/status")).ok())
                    .unwrap_or_default();
                self.stop();
                panic!(
                    "the OIDC peer (pid {pid:?}, port {}) was not ready within \
                     {START_DEADLINE:?}; stdout: {:?}; /proc status:\n{status}\nstderr:\n{}",
                    self.port,
                    fs::read_to_string(&stdout_path).unwrap_or_default(),
                    self.logs()
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- oidc peer stderr ({}) ----\n{}\n---- end of oidc peer stderr ----",
                self.issuer,
                self.logs()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Driving its pages like a person

/// Goes to `authorize_url` (an authorization request to the peer) with `b`, signs in as
/// `login` (a `preferred_username`) on the peer's login page when it asks, approves its
/// consent page when it asks, and follows the peer's redirects until one leaves the peer's
/// origin. Returns that URL, the relying party's callback (`?code=…&state=…&iss=…`, or
/// `?error=…` when the peer refuses the request), WITHOUT requesting it.
///
/// Panics when the peer shows an error page, rejects the login (unknown account), or
/// answers something else than its pages and redirects.
pub async fn sign_in(b: &mut Browser, authorize_url: &str, login: &str) -> String {
    drive(b, authorize_url, login, false).await
}

/// As [`sign_in`], but presses the consent page's "Cancel" link (`/interaction/{uid}/abort`),
/// so the callback URL carries `error=access_denied`. Panics when no consent page comes (the
/// browser already granted this client: use a fresh [`Browser`]).
pub async fn deny(b: &mut Browser, authorize_url: &str, login: &str) -> String {
    drive(b, authorize_url, login, true).await
}

async fn drive(b: &mut Browser, authorize_url: &str, login: &str, deny: bool) -> String {
    let peer_origin = Url::parse(authorize_url)
        .unwrap_or_else(|e| panic!("bad authorize URL {authorize_url:?}: {e}"))
        .origin();
    let mut trail: Vec<String> = Vec::new();
    let mut response = b.get(authorize_url).await;
    let mut logged_in = false;
    let mut aborted = false;
    for _ in 0..MAX_STEPS {
        let url = response.url().clone();
        let status = response.status();
        trail.push(format!("{status} {url}"));
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("redirect without Location at {url}; trail: {trail:#?}"))
                .to_owned();
            let next = url
                .join(&location)
                .unwrap_or_else(|e| panic!("bad Location {location:?} at {url}: {e}"));
            if next.origin() != peer_origin {
                if deny && !aborted {
                    panic!(
                        "deny: the peer never showed a consent page (already granted in this \
                         browser?); it sent the browser to {next}; trail: {trail:#?}"
                    );
                }
                return next.to_string();
            }
            response = b.get(next.as_str()).await;
            continue;
        }
        let body = response.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::OK {
            panic!("the peer answered {status} at {url}:\n{body}\ntrail: {trail:#?}");
        }
        let form = Form::parse(&body, &url).unwrap_or_else(|| {
            panic!("no form on the peer's page {url}:\n{body}\ntrail: {trail:#?}")
        });
        match form.value("prompt") {
            Some("login") => {
                if logged_in {
                    panic!(
                        "the peer asked to sign in again: login {login:?} was rejected (no \
                         such preferred_username?); trail: {trail:#?}"
                    );
                }
                logged_in = true;
                let mut fields = form.fields.clone();
                set_field(&mut fields, "login", login);
                set_field(&mut fields, "password", "any password works");
                response = post(b, &form.action, &fields).await;
            }
            Some("consent") if deny => {
                let abort = abort_link(&body, &url).unwrap_or_else(|| {
                    panic!("no Cancel (abort) link on the consent page {url}:\n{body}")
                });
                aborted = true;
                response = b.get(abort.as_str()).await;
            }
            Some("consent") => {
                response = post(b, &form.action, &form.fields).await;
            }
            other => panic!(
                "unexpected page at {url} (form prompt {other:?}; form_post response mode is \
                 not supported):\n{body}\ntrail: {trail:#?}"
            ),
        }
    }
    panic!("the peer did not send the browser back within {MAX_STEPS} steps: {trail:#?}");
}

async fn post(b: &mut Browser, action: &Url, fields: &[(String, String)]) -> reqwest::Response {
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post_form(action.as_str(), &form).await
}

fn set_field(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    match fields.iter_mut().find(|(k, _)| k == name) {
        Some(field) => field.1 = value.to_owned(),
        None => fields.push((name.to_owned(), value.to_owned())),
    }
}

/// The first `<form>` of a page: its absolute action and its named inputs.
#[derive(Clone, Debug)]
struct Form {
    action: Url,
    fields: Vec<(String, String)>,
}

impl Form {
    fn parse(html: &str, page: &Url) -> Option<Form> {
        let start = html.find("<form")?;
        let end = start + html[start..].find("</form>")?;
        let form_html = &html[start..end];
        let open_tag = &form_html[..form_html.find('>')?];
        let attrs = attributes(open_tag);
        let action = attr(&attrs, "action").unwrap_or_default();
        let action = page.join(&action).ok()?;
        let fields = form_html
            .match_indices("<input")
            .filter_map(|(i, _)| {
                let tag = &form_html[i..i + form_html[i..].find('>')?];
                let attrs = attributes(tag);
                let name = attr(&attrs, "name")?;
                Some((name, attr(&attrs, "value").unwrap_or_default()))
            })
            .collect();
        Some(Form { action, fields })
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn attribute_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)')"#).unwrap()
    })
}

/// `name="value"` / `name='value'` pairs of a tag, names lower-cased, values unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    attribute_regex()
        .captures_iter(tag)
        .map(|c| {
            let value = c.get(2).or_else(|| c.get(3)).map_or("", |m| m.as_str());
            (c[1].to_ascii_lowercase(), html_unescape(value))
        })
        .collect()
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The `href` of the page's link to `/interaction/{uid}/abort`.
fn abort_link(html: &str, page: &Url) -> Option<Url> {
    html.match_indices("<a ").find_map(|(i, _)| {
        let tag = &html[i..i + html[i..].find('>')?];
        let href = attr(&attributes(tag), "href")?;
        let url = page.join(&href).ok()?;
        url.path().ends_with("/abort").then_some(url)
    })
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
