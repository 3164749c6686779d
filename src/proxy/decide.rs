//! The gate as a pure function: a request head (and the sessions and
//! settings of the [`App`]) in, a [`Decision`] out. No I/O, no pingora
//! session: the proxy loop only carries it out, and the tests below judge
//! requests without sockets.
//!
//! Data flows one way: bytes -> canonical view (`request.rs`) -> verdict.
//! A verdict never looks back at the raw target.

use http::header::ACCEPT;
use http::Method;
use pingora::http::RequestHeader;
use pingora::Result;

use super::request::{self, Refusal, Target};
use super::App;
use crate::auth::flow::{self, RequestKind, Route};
use crate::auth::policy;
use crate::identity::Identity;
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
    Forward(Identity, u64),
    /// A valid session the rules do not allow: the 403 page.
    Forbidden(Identity),
    /// No valid session: 401 JSON for an API request, else a redirect to
    /// the sign-in page.
    SignIn { api: bool },
    /// The session store (Redis) cannot answer: 503, never a pass.
    StoreUnavailable { api: bool },
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
                }
            }
        };
        let rewritten = target.rewritten().map(Box::from);
        let path = target.decoded();
        let verdict = if path.starts_with("/oauth2") && flow::route(path) != Route::Upstream {
            Verdict::Own(path.to_owned())
        } else if self.is_public(req, path) {
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
            match self.read_session_until(req).await {
                Err(Unavailable) => Verdict::StoreUnavailable { api: api() },
                Ok(Some((id, expires_at))) if policy::allowed(&self.settings.access, &id) => {
                    Verdict::Forward(id, expires_at)
                }
                Ok(Some((id, _))) => Verdict::Forbidden(id),
                Ok(None) => Verdict::SignIn { api: api() },
            }
        };
        Decision {
            verdict,
            rewritten,
            upgrade,
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
    use crate::session::{unix_now, Sealer, SessionCodec, SessionKey};

    const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn app() -> App {
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:4180"
public_url = "http://app.example"

[upstream]
url = "http://127.0.0.1:8080"

[session]
secret = "{SECRET}"

[providers.google]
client_id = "id"
client_secret = "secret"
issuer = "http://127.0.0.1:9"

[access]
allowed_email_domains = ["example.com"]
skip_auth = ["^/public/", "GET ^/$"]
api_paths = ["^/api/"]
"#
        );
        let settings = crate::config::parse(&toml, &|_: &str| None).expect("config");
        let http = crate::providers::http_client().expect("client");
        let providers = crate::providers::Providers::build(&settings, &http).expect("providers");
        App::new(
            settings,
            providers,
            "127.0.0.1:8080".parse().unwrap(),
            crate::session::SessionStore::Cookie,
        )
    }

    fn cookie(email: &str) -> String {
        let key = SessionKey::from_base64(SECRET).unwrap();
        let codec = SessionCodec::new(Sealer::new(&key, &[]));
        let id = Identity {
            provider: "google".into(),
            subject: "7".into(),
            email: Some(email.into()),
            name: None,
            login: None,
            picture: None,
        };
        format!(
            "_portcullis={}",
            codec.seal_identity_at("_portcullis", &id, unix_now() + 600)
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
            Verdict::Forbidden(_) => "forbidden".into(),
            Verdict::SignIn { api } => format!("sign_in api={api}"),
            Verdict::StoreUnavailable { api } => format!("unavailable api={api}"),
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
}
