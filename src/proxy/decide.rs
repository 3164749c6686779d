//! The gate as a pure function: a request head (and the sessions and
//! settings of the [`App`]) in, a [`Decision`] out. No I/O, no pingora
//! session: the proxy loop only carries it out, and the tests below judge
//! requests without sockets.
//!
//! Data flows one way: bytes -> canonical view (`request.rs`) -> verdict.
//! A verdict never looks back at the raw target.
//!
//! Who may see what (`[[routes]]`, then `[access]`) is `auth::policy`;
//! this file feeds it the canonical path, the method and the `Host` — or,
//! for the forward-auth check, what a trusted front proxy says about the
//! original request.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::ACCEPT;
use http::{HeaderMap, Method};
use pingora::http::RequestHeader;
use pingora::Result;

use super::request::{self, Refusal, Target};
use super::App;
use crate::auth::flow::{self, RequestKind, Route};
use crate::auth::policy::{self, Judgement, RequestFacts, Rule};
use crate::identity::Identity;
use crate::providers::id_token::BearerError;
use crate::providers::BearerUser;
use crate::session::Unavailable;

/// What to do with a request.
#[derive(Debug)]
pub enum Verdict {
    /// The target cannot be judged: 400 (or 414), nothing forwarded.
    Refuse(Refusal),
    /// One of Portcullis's own `/oauth2/` routes (the canonical path).
    Own(String),
    /// `skip_auth` or a CORS preflight: forwarded without identity.
    Public,
    /// A valid session the `[access]` rules allow: forwarded with its
    /// identity; the session ends at the given unix second.
    Forward(Arc<Identity>, u64),
    /// A valid session the rules do not allow: the 403 page (403 JSON for
    /// an API request).
    Forbidden(Arc<Identity>, Denial),
    /// A valid bearer token whose user the rules do not allow: 403 JSON
    /// with `WWW-Authenticate: Bearer error="insufficient_scope"` (an API
    /// client has no use for a page offering a browser sign-in).
    BearerForbidden(Arc<Identity>),
    /// No valid session: 401 JSON for an API request, else a redirect to
    /// the sign-in page.
    SignIn { api: bool },
    /// The session store (Redis) cannot answer: 503, never a pass.
    StoreUnavailable { api: bool },
    /// No session, and the `Authorization: Bearer` token was refused: 401
    /// JSON with `WWW-Authenticate: Bearer error="invalid_token"` (503
    /// when the issuer's keys are unavailable).
    BearerRejected(BearerError),
}

/// Why a signed-in identity may not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// None of the rule's allow-lists names it.
    Lists,
    /// The matched route takes sessions from these providers only: the
    /// 403 page offers to sign in with them.
    Providers(Vec<String>),
}

impl Denial {
    fn of(rule: &Rule<'_>, judgement: Judgement) -> Option<Denial> {
        match judgement {
            Judgement::Allowed => None,
            Judgement::NotAllowed => Some(Denial::Lists),
            Judgement::WrongProvider => Some(Denial::Providers(
                rule.providers.map(<[String]>::to_vec).unwrap_or_default(),
            )),
        }
    }
}

/// What the forward-auth check (`/oauth2/auth`) answers.
#[derive(Debug)]
pub enum AuthVerdict {
    /// The original request a trusted proxy describes cannot be judged
    /// (its target is refused, or the headers disagree): 400, never a pass.
    Refuse(Refusal),
    /// `skip_auth` or a `public = true` route: 202 without identity.
    Public,
    /// 202 with the identity headers.
    Allow(Arc<Identity>),
    /// 403.
    Forbidden(Arc<Identity>),
    /// 401.
    SignIn,
    /// The session store (Redis) cannot answer: 503, never a pass.
    StoreUnavailable,
}

/// The original request as a trusted front proxy describes it.
struct Forwarded<'a> {
    method: Method,
    uri: &'a [u8],
    host: Option<&'a [u8]>,
}

/// The one value of header `name`, if any. Two or more values (or a list)
/// make the request ambiguous: refused.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> std::result::Result<Option<&'a [u8]>, Refusal> {
    let mut all = headers.get_all(name).iter();
    let first = all.next().map(|v| v.as_bytes().trim_ascii());
    if all.next().is_some() {
        return Err(Refusal::TargetForm);
    }
    Ok(first)
}

/// `X-Forwarded-Uri` (or `X-Original-URI`: both, when both are sent, must
/// agree), `X-Forwarded-Method` (default: this request's) and
/// `X-Forwarded-Host` (default: this request's `Host`). `None` without a
/// forwarded URI.
fn forwarded(req: &RequestHeader) -> std::result::Result<Option<Forwarded<'_>>, Refusal> {
    let h = &req.headers;
    let uri = match (single(h, "x-forwarded-uri")?, single(h, "x-original-uri")?) {
        (Some(a), Some(b)) if a != b => return Err(Refusal::TargetForm),
        (Some(uri), _) | (None, Some(uri)) => uri,
        (None, None) => return Ok(None),
    };
    let method = match single(h, "x-forwarded-method")? {
        Some(m) => Method::from_bytes(m).map_err(|_| Refusal::TargetForm)?,
        None => req.method.clone(),
    };
    let host = match single(h, "x-forwarded-host")? {
        Some(host) if host.contains(&b',') || host.is_empty() => return Err(Refusal::TargetForm),
        Some(host) => Some(host),
        None => h.get(http::header::HOST).map(|v| v.as_bytes()),
    };
    Ok(Some(Forwarded { method, uri, host }))
}

/// The `Host` of a request (HTTP/2: its `:authority`).
fn request_host(req: &RequestHeader) -> Option<&str> {
    match req.headers.get(http::header::HOST) {
        Some(h) => h.to_str().ok(),
        None => req.uri.authority().map(|a| a.as_str()),
    }
}

/// A [`Verdict`] and what the proxy must change before carrying it out.
#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    /// The canonical request-target when it differs from the client's: the
    /// upstream must get this one.
    pub rewritten: Option<Box<str>>,
    /// The request's `Upgrade`: only [`UpgradeKind::WebSocket`] may be
    /// tunnelled; [`UpgradeKind::Other`] must be removed
    /// ([`remove_upgrade`]) before anything is forwarded.
    pub upgrade: UpgradeKind,
    /// Authenticated by a bearer token whose provider does not pass the
    /// `Authorization` header on (`pass_authorization_header = false`):
    /// remove it before forwarding.
    pub strip_authorization: bool,
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any
/// letter case), if the request has exactly one such header.
pub fn bearer_token(req: &RequestHeader) -> Option<&str> {
    let mut all = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let value = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Is `req` an API request (401 JSON rather than a redirect)?
pub fn is_api(app: &App, req: &RequestHeader) -> bool {
    let path = canonical(req)
        .map(|t| t.decoded().to_owned())
        .unwrap_or_default();
    let kind = RequestKind {
        path: &path,
        accept: req.headers.get(ACCEPT).map(|v| v.as_bytes()),
        x_requested_with: req.headers.get("x-requested-with").map(|v| v.as_bytes()),
        sec_fetch_mode: req.headers.get("sec-fetch-mode").map(|v| v.as_bytes()),
    };
    flow::is_api_request(&app.settings.access, &kind)
}

/// The canonical view of a request's target (see `request.rs`).
pub fn canonical(req: &RequestHeader) -> std::result::Result<Target<'_>, Refusal> {
    let host = req.headers.get(http::header::HOST).map(|v| v.as_bytes());
    request::canonicalize(&req.method, req.raw_path(), host)
}

impl App {
    /// Judges a request. Every decision is made on one canonical target.
    /// With the cookie store this never waits; with Redis a cache miss is
    /// one round trip.
    pub async fn decide(&self, req: &RequestHeader) -> Decision {
        let upgrade = upgrade_kind(req);
        let target = match canonical(req) {
            Ok(t) => t,
            Err(refusal) => {
                return Decision {
                    verdict: Verdict::Refuse(refusal),
                    rewritten: None,
                    upgrade,
                    strip_authorization: false,
                }
            }
        };
        let rewritten = target.rewritten().map(Box::from);
        let path = target.decoded();
        let mut strip_authorization = false;
        let verdict = if path.starts_with("/oauth2") && flow::route(path) != Route::Upstream {
            Verdict::Own(path.to_owned())
        } else if self.is_public(&req.method, &req.headers, path) {
            Verdict::Public
        } else {
            let api = || {
                let kind = RequestKind {
                    path,
                    accept: req.headers.get(ACCEPT).map(|v| v.as_bytes()),
                    x_requested_with: req.headers.get("x-requested-with").map(|v| v.as_bytes()),
                    sec_fetch_mode: req.headers.get("sec-fetch-mode").map(|v| v.as_bytes()),
                };
                flow::is_api_request(&self.settings.access, &kind)
            };
            let facts = RequestFacts {
                method: &req.method,
                host: request_host(req),
                path,
            };
            let rule = policy::rule_for(&self.settings.access, &self.settings.routes, &facts);
            // A public route needs no session: none is opened.
            if rule.public {
                Verdict::Public
            } else {
                match self.read_session_until(req).await {
                    Err(Unavailable) => Verdict::StoreUnavailable { api: api() },
                    Ok(Some((id, expires_at))) => match Denial::of(&rule, rule.judge(&id)) {
                        None => Verdict::Forward(id, expires_at),
                        Some(denial) => Verdict::Forbidden(id, denial),
                    },
                    Ok(None) => match self.bearer_user(req).await {
                        None => Verdict::SignIn { api: api() },
                        Some(Err(e)) => Verdict::BearerRejected(e),
                        Some(Ok(user)) => {
                            strip_authorization = !user.pass_authorization;
                            match Denial::of(&rule, rule.judge(&user.identity)) {
                                None => Verdict::Forward(Arc::new(user.identity), user.expires_at),
                                Some(_) => Verdict::BearerForbidden(Arc::new(user.identity)),
                            }
                        }
                    },
                }
            }
        };
        Decision {
            verdict,
            rewritten,
            upgrade,
            strip_authorization,
        }
    }

    /// Without a session: the API client an `Authorization: Bearer` token
    /// stands for, when a provider accepts bearer tokens. `None` when none
    /// does or the request has no bearer token.
    async fn bearer_user(&self, req: &RequestHeader) -> Option<Result<BearerUser, BearerError>> {
        if !self.providers.accept_bearer() {
            return None;
        }
        let token = bearer_token(req)?;
        Some(self.providers.verify_bearer(token).await)
    }

    /// `access.skip_auth` and the CORS-preflight switch, on the canonical
    /// path (percent-decoded).
    pub(super) fn is_public(&self, method: &Method, headers: &HeaderMap, path: &str) -> bool {
        let access = &self.settings.access;
        if access.skip_auth_preflight
            && *method == Method::OPTIONS
            && headers.contains_key(http::header::ORIGIN)
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return true;
        }
        crate::auth::skip::is_skipped(&access.skip_auth, method, path)
    }

    /// Judges a forward-auth check. From a peer in
    /// `server.trusted_proxies`, the original request it describes
    /// ([`forwarded`]) is judged like a proxied one: its target made
    /// canonical (a refused one is refused here too), then `skip_auth`,
    /// routes, `[access]`. From anyone else those headers are ignored and
    /// `[access]` alone decides.
    pub async fn decide_auth(&self, req: &RequestHeader, peer: Option<IpAddr>) -> AuthVerdict {
        let access = &self.settings.access;
        let trusted = peer.is_some_and(|ip| {
            self.settings
                .server
                .trusted_proxies
                .iter()
                .any(|c| c.contains(ip))
        });
        let original = if trusted {
            match forwarded(req) {
                Ok(f) => f,
                Err(refusal) => return AuthVerdict::Refuse(refusal),
            }
        } else {
            self.warn_untrusted_forwarding(req, peer);
            None
        };
        let rule = match &original {
            None => Rule::access(access),
            Some(f) => {
                let target = match request::canonicalize(&f.method, f.uri, f.host) {
                    Ok(t) => t,
                    Err(refusal) => return AuthVerdict::Refuse(refusal),
                };
                let path = target.decoded();
                let host = f.host.and_then(|h| std::str::from_utf8(h).ok());
                let facts = RequestFacts {
                    method: &f.method,
                    host,
                    path,
                };
                let rule = policy::rule_for(access, &self.settings.routes, &facts);
                if rule.public || self.is_public(&f.method, &req.headers, path) {
                    return AuthVerdict::Public;
                }
                rule
            }
        };
        match self.read_session(req).await {
            Err(Unavailable) => AuthVerdict::StoreUnavailable,
            Ok(Some(id)) => match rule.judge(&id) {
                Judgement::Allowed => AuthVerdict::Allow(id),
                Judgement::NotAllowed | Judgement::WrongProvider => AuthVerdict::Forbidden(id),
            },
            Ok(None) => match self.bearer_user(req).await {
                Some(Ok(user)) => match rule.judge(&user.identity) {
                    Judgement::Allowed => AuthVerdict::Allow(Arc::new(user.identity)),
                    Judgement::NotAllowed | Judgement::WrongProvider => {
                        AuthVerdict::Forbidden(Arc::new(user.identity))
                    }
                },
                None | Some(Err(_)) => AuthVerdict::SignIn,
            },
        }
    }

    /// A proxy that describes the original request from an address not in
    /// `trusted_proxies`, while routes or `skip_auth` exist: most likely a
    /// missing `trusted_proxies` entry, so the routes do not apply to its
    /// checks. Said once per process.
    fn warn_untrusted_forwarding(&self, req: &RequestHeader, peer: Option<IpAddr>) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let access = &self.settings.access;
        let has_rules = !self.settings.routes.is_empty() || !access.skip_auth.is_empty();
        let describes = req.headers.contains_key("x-forwarded-uri")
            || req.headers.contains_key("x-original-uri");
        if has_rules && describes && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                peer = ?peer,
                "forward-auth: X-Forwarded-Uri/X-Original-URI from an address not in server.trusted_proxies is ignored: [[routes]] and skip_auth do not apply to its checks, [access] decides (warned once)"
            );
        }
    }

    /// At the callback: may `id` see the page it signed in for? The return
    /// path is judged like a `GET` of it on this request's host; a public
    /// or unusable one by `[access]` (as before routes existed).
    pub fn judge_sign_in(
        &self,
        req: &RequestHeader,
        return_to: &str,
        id: &Identity,
    ) -> std::result::Result<(), Denial> {
        let access = &self.settings.access;
        let target = request::canonicalize(&Method::GET, return_to.as_bytes(), None);
        let rule = match &target {
            Ok(t) => {
                let facts = RequestFacts {
                    method: &Method::GET,
                    host: request_host(req),
                    path: t.decoded(),
                };
                let rule = policy::rule_for(access, &self.settings.routes, &facts);
                if rule.public || self.is_public(&Method::GET, &HeaderMap::new(), t.decoded()) {
                    Rule::access(access)
                } else {
                    rule
                }
            }
            Err(_) => Rule::access(access),
        };
        match Denial::of(&rule, rule.judge(id)) {
            None => Ok(()),
            Some(denial) => Err(denial),
        }
    }
}

/// What kind of `Upgrade` a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeKind {
    None,
    /// `GET`, HTTP/1.1, `Upgrade: websocket`, `Connection: upgrade`: the
    /// only upgrade that is tunnelled.
    WebSocket,
    /// Anything else (`h2c` above all): removed, proxied as plain HTTP.
    Other,
}

pub fn upgrade_kind(req: &RequestHeader) -> UpgradeKind {
    let mut upgrades = req.headers.get_all(http::header::UPGRADE).iter();
    let Some(first) = upgrades.next() else {
        return UpgradeKind::None;
    };
    let websocket = req.method == Method::GET
        && req.version == http::Version::HTTP_11
        && upgrades.next().is_none()
        && first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"websocket")
        && req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if websocket {
        UpgradeKind::WebSocket
    } else {
        UpgradeKind::Other
    }
}

/// Turns a request with a refused `Upgrade` into a plain one: `Upgrade`,
/// `HTTP2-Settings` and their `Connection` tokens go, so that neither
/// pingora nor the upstream sees an upgrade.
pub fn remove_upgrade(req: &mut RequestHeader) -> Result<()> {
    req.remove_header(&http::header::UPGRADE);
    req.remove_header("http2-settings");
    let kept: Vec<Vec<u8>> = req
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"upgrade")
                && !t.eq_ignore_ascii_case(b"http2-settings")
        })
        .map(<[u8]>::to_vec)
        .collect();
    req.remove_header(&http::header::CONNECTION);
    if !kept.is_empty() {
        req.insert_header(http::header::CONNECTION, kept.join(&b", "[..]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{app_configured, SECRET};
    use crate::session::{unix_now, Sealer, SessionCodec, SessionKey};

    fn app() -> App {
        app_with("")
    }

    /// The test app with `extra` appended to its config (more providers,
    /// routes, `[server]` keys come first in `server_extra`).
    fn app_with(extra: &str) -> App {
        app_configured("", extra)
    }

    fn cookie(email: &str) -> String {
        cookie_for(&Identity {
            provider: "google".into(),
            subject: "7".into(),
            email: Some(email.into()),
            name: None,
            login: None,
            picture: None,
            groups: Vec::new(),
        })
    }

    fn cookie_for(id: &Identity) -> String {
        let key = SessionKey::from_base64(SECRET).unwrap();
        let codec = SessionCodec::new(Sealer::new(&key, &[]));
        format!(
            "_portcullis={}",
            codec.seal_identity_at("_portcullis", id, unix_now() + 600)
        )
    }

    fn req(method: &str, target: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).unwrap();
        r.insert_header("host", "app.example").unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    /// A short name for a verdict, for the tables.
    fn short(d: &Decision) -> String {
        match &d.verdict {
            Verdict::Refuse(r) => format!("refuse {}", r.status()),
            Verdict::Own(p) => format!("own {p}"),
            Verdict::Public => "public".into(),
            Verdict::Forward(id, _) => format!("forward {}", id.user()),
            Verdict::Forbidden(_, Denial::Lists) => "forbidden".into(),
            Verdict::Forbidden(_, Denial::Providers(p)) => format!("forbidden providers={p:?}"),
            Verdict::BearerForbidden(id) => format!("bearer forbidden {}", id.user()),
            Verdict::SignIn { api } => format!("sign_in api={api}"),
            Verdict::StoreUnavailable { api } => format!("unavailable api={api}"),
            Verdict::BearerRejected(e) => format!("bearer rejected: {e}"),
        }
    }

    #[tokio::test]
    async fn verdicts() {
        let app = app();
        let alice = cookie("alice@example.com");
        let mallory = cookie("mallory@evil.example");
        let html = ("accept", "text/html");
        for (method, target, headers, want) in [
            ("GET", &b"/"[..], vec![], "public"),
            ("POST", b"/", vec![html], "sign_in api=false"),
            ("GET", b"/public/a", vec![], "public"),
            ("GET", b"//public//a", vec![], "public"),
            ("GET", b"/%70ublic/a", vec![], "public"),
            ("GET", b"/public/../admin", vec![], "refuse 400"),
            ("GET", b"/public/..;/admin", vec![], "refuse 400"),
            ("GET", b"x:/admin", vec![], "refuse 400"),
            (
                "GET",
                b"http://other.example/public/a",
                vec![],
                "refuse 400",
            ),
            ("GET", b"http://app.example/public/a", vec![], "public"),
            ("GET", b"/admin", vec![html], "sign_in api=false"),
            ("GET", b"/admin", vec![], "sign_in api=true"),
            ("GET", b"/api/x", vec![html], "sign_in api=true"),
            ("GET", b"/%61pi/x", vec![html], "sign_in api=true"),
            (
                "GET",
                b"/admin",
                vec![("cookie", alice.as_str())],
                "forward google:7",
            ),
            (
                "GET",
                b"/admin",
                vec![("cookie", mallory.as_str())],
                "forbidden",
            ),
            (
                "GET",
                b"/oauth2/sign_in?rd=/x",
                vec![],
                "own /oauth2/sign_in",
            ),
            ("GET", b"/%6Fauth2/sign_in", vec![], "own /oauth2/sign_in"),
            ("GET", b"/oauth2/nothing", vec![], "own /oauth2/nothing"),
            ("GET", b"/oauth2x", vec![html], "sign_in api=false"),
            ("OPTIONS", b"*", vec![], "sign_in api=true"),
            ("GET", b"*", vec![], "refuse 400"),
        ] {
            let d = app.decide(&req(method, target, &headers)).await;
            assert_eq!(
                short(&d),
                want,
                "{method} {}",
                String::from_utf8_lossy(target)
            );
        }
    }

    #[tokio::test]
    async fn the_rewritten_target_is_the_judged_one() {
        let app = app();
        let d = app
            .decide(&req("GET", b"//public//a%2e%41?q=%2F", &[]))
            .await;
        assert_eq!(short(&d), "public");
        assert_eq!(d.rewritten.as_deref(), Some("/public/a.A?q=%2F"));
        let d = app.decide(&req("GET", b"/public/a?q", &[])).await;
        assert_eq!(d.rewritten, None);
    }

    #[tokio::test]
    async fn upgrades() {
        let app = app();
        let alice = cookie("alice@example.com");
        let ws = [
            ("cookie", alice.as_str()),
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert_eq!(
            app.decide(&req("GET", b"/ws", &ws)).await.upgrade,
            UpgradeKind::WebSocket
        );
        assert_eq!(
            app.decide(&req("POST", b"/ws", &ws)).await.upgrade,
            UpgradeKind::Other
        );
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ];
        let mut r = req("GET", b"/public/a", &h2c);
        assert_eq!(app.decide(&r).await.upgrade, UpgradeKind::Other);
        remove_upgrade(&mut r).unwrap();
        assert!(r.headers.get("upgrade").is_none());
        assert!(r.headers.get("http2-settings").is_none());
        assert!(r.headers.get("connection").is_none());
        assert_eq!(app.decide(&r).await.upgrade, UpgradeKind::None);
        // Upgrade without the Connection token is no WebSocket handshake.
        let half = [("upgrade", "websocket")];
        assert_eq!(
            app.decide(&req("GET", b"/ws", &half)).await.upgrade,
            UpgradeKind::Other
        );
        let mut keep = req(
            "GET",
            b"/",
            &[("connection", "close, upgrade"), ("upgrade", "h2c")],
        );
        remove_upgrade(&mut keep).unwrap();
        assert_eq!(keep.headers.get("connection").unwrap(), "close");
    }

    const ROUTES: &str = r#"
[providers.acme]
kind = "oidc"
issuer = "http://127.0.0.1:9"
client_id = "id"
client_secret = "secret"
groups_claim = "groups"

[[routes]]
path = "^/admin/"
allowed_groups = ["admins"]

[[routes]]
path = "^/ops/"
host = "ops.example"
providers = ["acme"]

[[routes]]
path = "^/status$"
methods = ["GET"]
public = true
"#;

    /// Our headers reach the upstream two ways: into the request's header
    /// map (pingora's path, WebSocket handshakes, and the fast path when an
    /// identity header shares a name we set) or as lines after the
    /// request's own fields (the fast path). Both give the same fields for
    /// a request full of forged copies.
    #[test]
    fn upstream_fields_agree_between_the_map_and_the_lines() {
        use crate::fast::wire::{self, Framing};
        let app = app();
        assert!(app.direct_heads, "the test app takes the lines path");
        let id = acme_admin();
        let mut req = RequestHeader::build("GET", b"/x?y=1", None).unwrap();
        for (name, value) in [
            ("host", "app.example"),
            ("x-user", "forged"),
            ("X-User-Email", "forged@example.com"),
            ("x-forwarded-for", "10.0.0.9"),
            ("X-Forwarded-For", "10.0.0.10"),
            ("x-forwarded-proto", "ftp"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-access-token", "forged"),
            ("x-request-id", "from-client"),
            ("accept", "text/html"),
            ("x-other", "kept"),
        ] {
            req.append_header(name, value).unwrap();
        }
        let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let rid = http::HeaderValue::from_static("rid-1");
        let token = http::HeaderValue::from_static("the-access-token");
        let expires = unix_now() + 3600;

        let mut by_map = req.clone();
        app.prepare_upstream_request(Some(ip), &mut by_map, Some(&id), &rid)
            .unwrap();
        app.add_identity_extras(&mut by_map, Some(&id), expires, Some(&token))
            .unwrap();
        let mut head_map = Vec::new();
        wire::write_request_head(&mut head_map, &by_map, b"/x?y=1", Framing::None);

        let mut by_lines = req.clone();
        let mut extra = Vec::new();
        app.prepare_upstream_head(
            Some(ip),
            &mut by_lines,
            Some(&id),
            &rid,
            expires,
            Some(&token),
            &mut extra,
        )
        .unwrap();
        let mut head_lines = Vec::new();
        wire::write_request_head_with(&mut head_lines, &by_lines, b"/x?y=1", &extra, Framing::None);

        let fields = |head: &[u8]| {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Request::new(&mut slots);
            assert!(parsed.parse(head).unwrap().is_complete());
            let mut out: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            out.sort();
            out
        };
        let (map, lines) = (fields(&head_map), fields(&head_lines));
        assert_eq!(map, lines);
        // And what they agree on is what we mean.
        let get = |name: &str| -> Vec<&str> {
            lines
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("x-user"), ["acme:9"]);
        assert_eq!(get("x-forwarded-for"), ["10.0.0.9, 10.0.0.10, 203.0.113.7"]);
        assert_eq!(get("x-forwarded-proto"), ["http"]);
        assert_eq!(get("x-forwarded-host"), ["app.example"]);
        assert_eq!(get("x-forwarded-access-token"), ["the-access-token"]);
        assert_eq!(get("x-request-id"), ["rid-1"]);
        assert_eq!(get("x-other"), ["kept"]);
    }

    fn acme_admin() -> Identity {
        Identity {
            provider: "acme".into(),
            subject: "9".into(),
            email: Some("root@elsewhere.example".into()),
            name: None,
            login: None,
            picture: None,
            groups: vec!["admins".into()],
        }
    }

    /// Routes see the canonical path: encodings and merged slashes reach
    /// the same route, dot segments are refused before any route runs.
    #[tokio::test]
    async fn routes_are_matched_on_the_canonical_path() {
        let app = app_with(ROUTES);
        let alice = cookie("alice@example.com");
        let root = cookie_for(&acme_admin());
        let html = ("accept", "text/html");
        for (method, target, host, c, want) in [
            ("GET", &b"/admin/x"[..], "app.example", &alice, "forbidden"),
            ("GET", b"/%61dmin/x", "app.example", &alice, "forbidden"),
            ("GET", b"//admin//x", "app.example", &alice, "forbidden"),
            (
                "GET",
                b"/admin/%2e%2e/x",
                "app.example",
                &alice,
                "refuse 400",
            ),
            ("GET", b"/x/../admin/x", "app.example", &alice, "refuse 400"),
            ("GET", b"/admin;x=1/y", "app.example", &alice, "refuse 400"),
            ("GET", b"/admin/x", "app.example", &root, "forward acme:9"),
            ("GET", b"/%61dmin/x", "app.example", &root, "forward acme:9"),
            ("GET", b"/other", "app.example", &root, "forbidden"),
            ("GET", b"/other", "app.example", &alice, "forward google:7"),
            (
                "GET",
                b"/ops/x",
                "ops.example:8443",
                &alice,
                "forbidden providers=[\"acme\"]",
            ),
            (
                "GET",
                b"/%6Fps/x",
                "OPS.example",
                &alice,
                "forbidden providers=[\"acme\"]",
            ),
            ("GET", b"/ops/x", "app.example", &alice, "forward google:7"),
            (
                "GET",
                b"http://ops.example/ops/x",
                "ops.example",
                &alice,
                "forbidden providers=[\"acme\"]",
            ),
            ("GET", b"/status", "app.example", &String::new(), "public"),
            ("GET", b"/%73tatus", "app.example", &String::new(), "public"),
            (
                "POST",
                b"/status",
                "app.example",
                &String::new(),
                "sign_in api=false",
            ),
            (
                "GET",
                b"/status/",
                "app.example",
                &String::new(),
                "sign_in api=false",
            ),
        ] {
            let mut r = req(method, target, &[html]);
            r.insert_header("host", host).unwrap();
            if !c.is_empty() {
                r.insert_header("cookie", c.as_str()).unwrap();
            }
            let d = app.decide(&r).await;
            assert_eq!(
                short(&d),
                want,
                "{method} {} {host}",
                String::from_utf8_lossy(target)
            );
        }
    }

    fn auth_req(headers: &[(&str, &str)], cookie: Option<&str>) -> RequestHeader {
        let mut r = req("GET", b"/oauth2/auth", headers);
        if let Some(c) = cookie {
            r.insert_header("cookie", c).unwrap();
        }
        r
    }

    fn auth_short(v: &AuthVerdict) -> String {
        match v {
            AuthVerdict::Refuse(r) => format!("refuse {}", r.status()),
            AuthVerdict::Public => "202 public".into(),
            AuthVerdict::Allow(id) => format!("202 {}", id.user()),
            AuthVerdict::Forbidden(_) => "403".into(),
            AuthVerdict::SignIn => "401".into(),
            AuthVerdict::StoreUnavailable => "503".into(),
        }
    }

    /// The forward-auth check judges the original request a trusted proxy
    /// describes, with the same canonical path; from anyone else those
    /// headers change nothing.
    #[tokio::test]
    async fn forward_auth_applies_routes_for_trusted_proxies_only() {
        let app = app_configured("trusted_proxies = [\"10.0.0.0/8\"]", ROUTES);
        let proxy: Option<IpAddr> = Some("10.1.2.3".parse().unwrap());
        let stranger: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        let alice = cookie("alice@example.com");
        let root = cookie_for(&acme_admin());
        let a = Some(alice.as_str());
        let r = Some(root.as_str());
        type Row<'a> = (
            Option<IpAddr>,
            Vec<(&'a str, &'a str)>,
            Option<&'a str>,
            &'a str,
        );
        let rows: Vec<Row<'_>> = vec![
            // Trusted: routes apply to the forwarded URI.
            (proxy, vec![("x-forwarded-uri", "/admin/x")], a, "403"),
            (proxy, vec![("x-original-uri", "/admin/x")], a, "403"),
            (proxy, vec![("x-forwarded-uri", "/%61dmin/x")], a, "403"),
            (
                proxy,
                vec![("x-forwarded-uri", "//admin/x?q=/public/")],
                a,
                "403",
            ),
            (
                proxy,
                vec![("x-forwarded-uri", "/admin/x")],
                r,
                "202 acme:9",
            ),
            (proxy, vec![("x-forwarded-uri", "/home")], a, "202 google:7"),
            (proxy, vec![("x-forwarded-uri", "/home")], r, "403"),
            (
                proxy,
                vec![
                    ("x-forwarded-uri", "/ops/x"),
                    ("x-forwarded-host", "ops.example"),
                ],
                a,
                "403",
            ),
            (
                proxy,
                vec![
                    ("x-forwarded-uri", "/ops/x"),
                    ("x-forwarded-host", "app.example"),
                ],
                a,
                "202 google:7",
            ),
            (
                proxy,
                vec![("x-forwarded-uri", "/status")],
                None,
                "202 public",
            ),
            (
                proxy,
                vec![
                    ("x-forwarded-uri", "/status"),
                    ("x-forwarded-method", "POST"),
                ],
                None,
                "401",
            ),
            (
                proxy,
                vec![("x-forwarded-uri", "/public/logo.png")],
                None,
                "202 public",
            ),
            (proxy, vec![("x-forwarded-uri", "/admin/x")], None, "401"),
            // Refused targets are refused, never passed.
            (
                proxy,
                vec![("x-forwarded-uri", "/public/../admin/x")],
                a,
                "refuse 400",
            ),
            (
                proxy,
                vec![("x-forwarded-uri", "/public/%2e%2e/admin/x")],
                None,
                "refuse 400",
            ),
            (
                proxy,
                vec![("x-forwarded-uri", "/public/..;/admin")],
                r,
                "refuse 400",
            ),
            (proxy, vec![("x-forwarded-uri", "admin")], r, "refuse 400"),
            (
                proxy,
                vec![("x-forwarded-uri", "http://evil.example/public/")],
                None,
                "refuse 400",
            ),
            // Ambiguous headers are refused.
            (
                proxy,
                vec![
                    ("x-forwarded-uri", "/public/"),
                    ("x-original-uri", "/admin/x"),
                ],
                a,
                "refuse 400",
            ),
            (
                proxy,
                vec![
                    ("x-forwarded-uri", "/public/"),
                    ("x-forwarded-uri", "/admin/x"),
                ],
                a,
                "refuse 400",
            ),
            (
                proxy,
                vec![
                    ("x-forwarded-uri", "/x"),
                    ("x-forwarded-host", "a.example, ops.example"),
                ],
                a,
                "refuse 400",
            ),
            (
                proxy,
                vec![("x-forwarded-uri", "/x"), ("x-forwarded-method", "G ET")],
                a,
                "refuse 400",
            ),
            (
                proxy,
                vec![("x-forwarded-uri", "/x"), ("x-original-uri", "/x")],
                a,
                "202 google:7",
            ),
            // No forwarded URI: [access].
            (proxy, vec![], a, "202 google:7"),
            (proxy, vec![], r, "403"),
            // Untrusted: the headers are ignored, [access] decides.
            (
                stranger,
                vec![("x-forwarded-uri", "/admin/x")],
                a,
                "202 google:7",
            ),
            (stranger, vec![("x-forwarded-uri", "/status")], None, "401"),
            (
                stranger,
                vec![("x-forwarded-uri", "/public/x")],
                None,
                "401",
            ),
            (stranger, vec![("x-forwarded-uri", "/home")], r, "403"),
            (
                stranger,
                vec![("x-forwarded-uri", "/public/../x")],
                a,
                "202 google:7",
            ),
            (
                None,
                vec![("x-forwarded-uri", "/admin/x")],
                a,
                "202 google:7",
            ),
        ];
        for (peer, headers, c, want) in rows {
            let v = app.decide_auth(&auth_req(&headers, c), peer).await;
            assert_eq!(auth_short(&v), want, "{peer:?} {headers:?} {c:?}");
        }
        // Without trusted_proxies nobody is trusted.
        let app = app_with(ROUTES);
        let v = app
            .decide_auth(&auth_req(&[("x-forwarded-uri", "/admin/x")], a), proxy)
            .await;
        assert_eq!(auth_short(&v), "202 google:7");
        let v = app
            .decide_auth(
                &auth_req(&[("x-forwarded-uri", "/admin/x")], a),
                Some("127.0.0.1".parse().unwrap()),
            )
            .await;
        assert_eq!(auth_short(&v), "202 google:7");
    }

    /// At the callback the return path is judged like a GET of it; a
    /// public one by [access].
    #[test]
    fn sign_in_is_judged_for_the_return_path() {
        let app = app_with(ROUTES);
        let r = req("GET", b"/oauth2/callback/google", &[]);
        let alice = Identity {
            provider: "google".into(),
            subject: "7".into(),
            email: Some("alice@example.com".into()),
            name: None,
            login: None,
            picture: None,
            groups: Vec::new(),
        };
        assert_eq!(app.judge_sign_in(&r, "/", &alice), Ok(()));
        assert_eq!(
            app.judge_sign_in(&r, "/admin/x", &alice),
            Err(Denial::Lists)
        );
        assert_eq!(
            app.judge_sign_in(&r, "/%61dmin/x?a=1", &alice),
            Err(Denial::Lists)
        );
        assert_eq!(app.judge_sign_in(&r, "/admin/x", &acme_admin()), Ok(()));
        assert_eq!(
            app.judge_sign_in(&r, "/", &acme_admin()),
            Err(Denial::Lists)
        );
        // Public paths: [access] decides whether a session is made.
        assert_eq!(
            app.judge_sign_in(&r, "/status", &acme_admin()),
            Err(Denial::Lists)
        );
        assert_eq!(app.judge_sign_in(&r, "/public/x", &alice), Ok(()));
        let mut ops = req("GET", b"/oauth2/callback/google", &[]);
        ops.insert_header("host", "ops.example").unwrap();
        assert_eq!(
            app.judge_sign_in(&ops, "/ops/x", &alice),
            Err(Denial::Providers(vec!["acme".into()]))
        );
    }
}
