//! The pingora `ProxyHttp` implementation: thin glue from pingora to the
//! decisions in `auth`, the sessions in `session` and the providers.

pub mod decide;
pub mod explain;
pub mod headers;
pub mod request;
pub(crate) mod respond;
pub(crate) mod upgrade;
// Test apps built from a configuration text.
#[cfg(test)]
pub(crate) mod testing;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::COOKIE;
use http::{HeaderValue, Method};
use opentelemetry::context::FutureExt as _;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use tracing::Instrument as _;

use crate::access_log;
use crate::auth::flow::{self, Route};
use crate::auth::redirect::safe_return_path;
use crate::config::{self, Settings};
use crate::identity::Identity;
use crate::pages::{self, ProviderButton};
use crate::providers::id_token::BearerError;
use crate::providers::{CallbackParams, Providers};
use crate::session::cookie::{self, CookieAttrs};
use crate::session::login_state::{self, LoginState, LOGIN_COOKIE_PATH, LOGIN_STATE_TTL};
use crate::session::{unix_now, SessionCodec, SessionStore, Unavailable};
use decide::{AuthVerdict, Denial, UpgradeKind, Verdict};
use headers::IdentityHeaders;
use request::Refusal;
use respond::Reply;

/// Everything a request needs, built once at start-up.
pub struct App {
    settings: Settings,
    codec: SessionCodec,
    /// Where sessions live: the cookie itself, or Redis (session/store.rs).
    store: SessionStore,
    providers: Providers,
    identity_headers: IdentityHeaders,
    /// The upstream with our timeouts, built once: each request clones it.
    peer: HttpPeer,
    session_attrs: CookieAttrs,
    login_attrs: CookieAttrs,
    forwarded_proto: HeaderValue,
    metrics: &'static crate::metrics::Metrics,
    /// Connections for WebSocket tunnels (never pooled: an upgraded
    /// connection is not reusable).
    upgrade_connector: pingora::connectors::http::v1::Connector,
    /// Upstream failures: one log line a second with a count.
    upstream_failures: crate::telemetry::EverySecond,
    /// `[assertion]`: signs the identity assertion sent upstream.
    assertion: Option<crate::assertion::Signer>,
    /// `pass_access_token` on some provider: refreshes, one per session.
    token_flight: Option<crate::access_token::SingleFlight>,
    /// The headers we add may be written straight into an upstream head
    /// ([`App::prepare_upstream_head`]): none of them shares a name with
    /// another.
    direct_heads: bool,
}

impl App {
    pub fn new(
        settings: Settings,
        providers: Providers,
        upstream: SocketAddr,
        store: SessionStore,
    ) -> Self {
        let s = &settings.session;
        let codec = SessionCodec::new(crate::session::Sealer::new(&s.secret, &s.previous_secrets));
        let same_site = match s.same_site {
            config::SameSite::Lax => cookie::SameSite::Lax,
            config::SameSite::Strict => cookie::SameSite::Strict,
            config::SameSite::None => cookie::SameSite::None,
        };
        let session_attrs = CookieAttrs {
            secure: s.secure,
            same_site,
            domain: s.domain.clone(),
        };
        // The provider sends the browser back with a cross-site top-level
        // navigation: the login-state cookie must be Lax (or None) to come along.
        let login_attrs = CookieAttrs {
            secure: s.secure,
            same_site: if same_site == cookie::SameSite::None {
                cookie::SameSite::None
            } else {
                cookie::SameSite::Lax
            },
            domain: None,
        };
        let forwarded_proto = HeaderValue::from_static(if settings.server.is_https() {
            "https"
        } else {
            "http"
        });
        let peer = upstream_peer(&settings.upstream, upstream);
        // Our pages are rendered with this configuration's [pages].
        pages::install(settings.pages.clone());
        let assertion = settings
            .assertion
            .as_ref()
            .map(|a| crate::assertion::Signer::new(a, settings.server.public_url.as_str()));
        let mut identity_headers = IdentityHeaders::new(settings.headers.clone());
        if let Some(a) = &assertion {
            identity_headers.also_strip(a.header_name());
        }
        let token_flight = settings
            .providers
            .iter()
            .any(|p| p.pass_access_token)
            .then(crate::access_token::SingleFlight::default);
        if token_flight.is_some() {
            identity_headers
                .also_strip(&http::HeaderName::from_static(crate::access_token::HEADER));
        }
        let direct_heads = !identity_headers.shares_a_managed_name();
        App {
            direct_heads,
            identity_headers,
            assertion,
            token_flight,
            codec,
            store,
            providers,
            peer,
            session_attrs,
            login_attrs,
            forwarded_proto,
            upgrade_connector: pingora::connectors::http::v1::Connector::new(None),
            upstream_failures: crate::telemetry::EverySecond::default(),
            metrics: crate::metrics::global(),
            settings,
        }
    }

    /// The upstream as a pingora peer, with our timeouts.
    fn peer(&self) -> HttpPeer {
        self.peer.clone()
    }

    /// Strips forged identity headers, adds the identity (if any) and the
    /// X-Forwarded-* headers. `upstream_request` is the request as judged
    /// (its `Host` is the client's), on its way upstream.
    pub(crate) fn prepare_upstream_request(
        &self,
        client: Option<IpAddr>,
        upstream_request: &mut RequestHeader,
        identity: Option<&Identity>,
        request_id: &HeaderValue,
    ) -> Result<()> {
        // The client's Host (or absolute-form authority), before anything changes.
        let host = upstream_request
            .headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| {
                upstream_request
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            });
        self.identity_headers
            .strip(upstream_request, identity.is_some());
        headers::set_request_id(upstream_request, request_id)?;
        if let Some(id) = identity {
            self.identity_headers.inject(upstream_request, id)?;
        }
        if let Some(ip) = client {
            // One buffer: any earlier hops, then the client's address.
            let mut xff = Vec::with_capacity(64);
            headers::earlier_hops(&mut xff, upstream_request);
            crate::digits::push_ip(&mut xff, ip);
            upstream_request.insert_header("x-forwarded-for", xff)?;
        }
        upstream_request.insert_header("x-forwarded-proto", self.forwarded_proto.clone())?;
        match host {
            Some(h) => upstream_request.insert_header("x-forwarded-host", h)?,
            None => {
                upstream_request.remove_header("x-forwarded-host");
            }
        }
        Ok(())
    }

    /// The fast path's [`Self::prepare_upstream_request`] and
    /// [`Self::add_identity_extras`] in one: the same strips on the judged
    /// request and the same headers added, but the added ones are written
    /// as header lines to `extra` (which goes into the upstream head after
    /// the request's own fields) instead of being inserted into its header
    /// map: no header name parsed again, no map growth, no copy of a value.
    /// Every name written to `extra` is gone from `req` (stripped or
    /// removed here), as an insert would have replaced it. When an identity
    /// header shares a name with one set here, the map is used as before.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare_upstream_head(
        &self,
        client: Option<IpAddr>,
        req: &mut RequestHeader,
        identity: Option<&Identity>,
        request_id: &HeaderValue,
        session_expires_at: u64,
        access_token: Option<&HeaderValue>,
        extra: &mut Vec<u8>,
    ) -> Result<()> {
        if !self.direct_heads {
            self.prepare_upstream_request(client, req, identity, request_id)?;
            return self.add_identity_extras(req, identity, session_expires_at, access_token);
        }
        // The client's Host (or absolute-form authority), before anything changes.
        let host = req.headers.get(http::header::HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let present = self.identity_headers.strip_noting(req, identity.is_some());
        // Usually already the one copy, set when the request arrived.
        let ids = req.headers.get_all(&crate::request_id::NAME);
        let mut ids = ids.iter();
        if ids.next() != Some(request_id) || ids.next().is_some() {
            headers::set_request_id(req, request_id)?;
        }
        if let Some(id) = identity {
            self.identity_headers.write_lines(extra, id);
        }
        if let Some(ip) = client {
            // Any earlier hops, then the client's address.
            extra.extend_from_slice(b"x-forwarded-for: ");
            if present.forwarded_for && headers::earlier_hops(extra, req) {
                req.remove_header(&headers::X_FORWARDED_FOR);
            }
            crate::digits::push_ip(extra, ip);
            extra.extend_from_slice(b"\r\n");
        }
        if present.forwarded_proto {
            req.remove_header(&headers::X_FORWARDED_PROTO);
        }
        headers::put_line(extra, b"x-forwarded-proto", self.forwarded_proto.as_bytes());
        if present.forwarded_host {
            req.remove_header(&headers::X_FORWARDED_HOST);
        }
        if let Some(h) = host {
            headers::put_line(extra, b"x-forwarded-host", h.as_bytes());
        }
        // The assertion's and the access token's names were stripped with
        // the identity's (`IdentityHeaders::also_strip`).
        if let (Some(signer), Some(id)) = (&self.assertion, identity) {
            let token = signer.header_value(id, session_expires_at, unix_now());
            headers::put_line(
                extra,
                signer.header_name().as_str().as_bytes(),
                token.as_bytes(),
            );
        }
        if let (Some(token), Some(_)) = (access_token, identity) {
            req.remove_header(crate::access_token::HEADER);
            headers::put_line(
                extra,
                crate::access_token::HEADER.as_bytes(),
                token.as_bytes(),
            );
        }
        Ok(())
    }

    /// After the identity headers (forged copies already stripped): the
    /// signed identity assertion of `identity` (`[assertion]`, from the
    /// per-thread cache; the session ends at `session_expires_at`, unix
    /// seconds) and `X-Forwarded-Access-Token` (`pass_access_token`, the
    /// value [`App::access_token_for`] gave). Nothing for a request without
    /// identity. Both the pingora path and a WebSocket handshake call this.
    pub fn add_identity_extras(
        &self,
        upstream_request: &mut RequestHeader,
        identity: Option<&Identity>,
        session_expires_at: u64,
        access_token: Option<&HeaderValue>,
    ) -> Result<()> {
        if let (Some(signer), Some(id)) = (&self.assertion, identity) {
            let token = signer.header_value(id, session_expires_at, unix_now());
            upstream_request.insert_header(signer.header_name().clone(), token)?;
        }
        if let (Some(token), Some(_)) = (access_token, identity) {
            upstream_request.insert_header(crate::access_token::HEADER, token.clone())?;
        }
        Ok(())
    }

    /// Every cookie of a session: the session's parts and the access-token
    /// cookie's, removed (a refused refresh, a sign-out).
    /// Ends the request's session (the store's copy too) and adds the
    /// cookies that clear it to `reply`: the provider refused to refresh
    /// the user's access token.
    async fn signed_out(&self, req: &RequestHeader, mut reply: Reply) -> Reply {
        let _ = self.end_session(req).await;
        for c in self.clear_session_cookies() {
            reply = reply.cookie(c);
        }
        reply
    }

    pub fn clear_session_cookies(&self) -> Vec<String> {
        let mut out = cookie::clear_split(self.cookie_name(), &self.session_attrs);
        if self.token_flight.is_some() {
            out.extend(cookie::clear_split(
                &crate::access_token::cookie_name(self.cookie_name()),
                &self.session_attrs,
            ));
        }
        out
    }

    /// `pass_access_token`: the access token kept for this session, refreshed
    /// first when it is about to expire (one refresh per session at a
    /// time), with the re-sealed cookie to send back.
    pub async fn access_token_for(&self, req: &RequestHeader, id: &Identity) -> PassToken {
        let Some(flight) = &self.token_flight else {
            return PassToken::Nothing;
        };
        let name = crate::access_token::cookie_name(self.cookie_name());
        let cookies = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
        let Some(sealed) = cookie::find_split(cookies, &name) else {
            return PassToken::Nothing;
        };
        let user = id.user();
        let Some(tokens) = self
            .codec
            .sealer()
            .open(&name, &sealed)
            .and_then(|b| crate::access_token::AccessTokens::decode(&b, &user))
        else {
            return PassToken::Nothing;
        };
        let mut cookies_out = Vec::new();
        let mut current = tokens;
        let due = current.needs_refresh(unix_now());
        if let (true, Some(rt)) = (due, current.refresh_token.clone()) {
            let Some(provider) = self.providers.get(&id.provider).cloned() else {
                return PassToken::Nothing;
            };
            let provider_id = id.provider.clone();
            let key = rt.clone();
            let result = flight
                .refresh(&key, unix_now(), || async move {
                    match provider.refresh(&rt).await {
                        Ok(t) => Ok(t),
                        Err(crate::providers::ProviderError::Rejected { code }) => {
                            tracing::info!(provider = %provider_id, code = %code, "the provider refused to refresh the access token: session ended");
                            Err(crate::access_token::RefreshFailure::Refused)
                        }
                        Err(e) => {
                            tracing::warn!(provider = %provider_id, error = %e, "access token refresh failed; the current token is passed on");
                            Err(crate::access_token::RefreshFailure::Unavailable)
                        }
                    }
                })
                .await;
            match result {
                Ok(fresh) => {
                    let sealed = self.codec.sealer().seal(
                        &name,
                        &fresh.encode(&user),
                        self.settings.session.lifetime,
                    );
                    let held = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
                    cookies_out = cookie::set_split(
                        &name,
                        &sealed,
                        &self.session_attrs,
                        self.settings.session.lifetime,
                        held,
                    )
                    .unwrap_or_default();
                    current = fresh;
                }
                Err(crate::access_token::RefreshFailure::Refused) => {
                    return PassToken::SessionEnded
                }
                Err(crate::access_token::RefreshFailure::Unavailable) => {}
            }
        }
        match HeaderValue::from_str(&current.access_token) {
            Ok(value) => PassToken::Pass {
                value,
                cookies: cookies_out,
            },
            Err(_) => PassToken::Nothing,
        }
    }

    /// Counts a request that could not reach the upstream: one log line a
    /// second with the count, not one per request (an outage must not
    /// become a log flood).
    pub(crate) fn note_upstream_failure(&self, error: &str) {
        if let Some(failed) = self.upstream_failures.count() {
            tracing::error!(
                failed,
                error,
                "upstream unreachable: {failed} request(s) failed since the last report"
            );
        }
    }

    pub fn metrics(&self) -> &'static crate::metrics::Metrics {
        self.metrics
    }

    /// Each provider and whether it can take sign-ins now.
    pub async fn provider_readiness(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for p in self.providers.iter() {
            out.push((p.id().to_owned(), p.ready().await));
        }
        out
    }

    /// The validated configuration this App was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// The session store (the admin listener lists and revokes through it).
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    fn cookie_name(&self) -> &str {
        &self.settings.session.cookie_name
    }

    /// The session in the request's cookies, if any is valid. The hot path:
    /// one cookie lookup, one AEAD open, one decode (with Redis: then the
    /// per-process cache, or one round trip). `Err` when the session store
    /// cannot answer: the caller answers 503, never "no check".
    async fn read_session(
        &self,
        req: &RequestHeader,
    ) -> Result<Option<Arc<Identity>>, Unavailable> {
        Ok(self.read_session_until(req).await?.map(|(id, _)| id))
    }

    /// [`App::read_session`] with the session's expiry (unix seconds).
    async fn read_session_until(
        &self,
        req: &RequestHeader,
    ) -> Result<Option<(Arc<Identity>, u64)>, Unavailable> {
        let cookies = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
        let Some(sealed) = cookie::find_split(cookies, self.cookie_name()) else {
            return Ok(None);
        };
        self.store
            .open(&self.codec, self.cookie_name(), &sealed)
            .await
    }

    /// Ends the request's session in the store (with Redis: everywhere).
    async fn end_session(&self, req: &RequestHeader) -> Result<(), Unavailable> {
        let cookies = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
        let Some(sealed) = cookie::find_split(cookies, self.cookie_name()) else {
            return Ok(());
        };
        self.store
            .end(&self.codec, self.cookie_name(), &sealed)
            .await
    }

    /// The cookie that keeps the ID token for `sign_out_at_provider`: sealed
    /// like the session, sent only to `/oauth2/sign_out`.
    fn id_token_cookie_name(&self) -> String {
        format!("{}-idt", self.cookie_name())
    }

    /// `Set-Cookie` for the ID token of a sign-in with `provider`, sealed
    /// (`provider`, newline, token) for the session's lifetime. `None` when
    /// it would not fit in a cookie.
    fn id_token_cookie(&self, provider: &str, id_token: &str) -> Option<String> {
        let name = self.id_token_cookie_name();
        let lifetime = self.settings.session.lifetime;
        let sealed = self.codec.sealer().seal(
            &name,
            format!("{provider}\n{id_token}").as_bytes(),
            lifetime,
        );
        cookie::set_one(
            &name,
            &sealed,
            flow::SIGN_OUT,
            &self.session_attrs,
            lifetime,
        )
    }

    /// With `sign_out_at_provider`: the provider's end-session URL for the
    /// ID token kept at sign-in, returning to `target` (a safe local path)
    /// on this site. `None`: sign out locally only.
    async fn provider_sign_out(&self, req: &RequestHeader, target: &str) -> Option<url::Url> {
        let name = self.id_token_cookie_name();
        let cookies = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
        let sealed = cookie::find(cookies, &name)?;
        let opened = self.codec.sealer().open(&name, sealed)?;
        let opened = String::from_utf8(opened).ok()?;
        let (provider, id_token) = opened.split_once('\n')?;
        let provider = self.providers.get(provider)?;
        let origin = self
            .settings
            .server
            .public_url
            .as_str()
            .trim_end_matches('/');
        provider
            .end_session_url(id_token, &format!("{origin}{target}"))
            .await
    }

    async fn session_cookies(
        &self,
        req: &RequestHeader,
        id: &Identity,
    ) -> Result<Vec<String>, Unavailable> {
        let sealed = self
            .store
            .create(
                &self.codec,
                self.cookie_name(),
                id,
                self.settings.session.lifetime,
            )
            .await?;
        let cookies = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
        Ok(cookie::set_split(
            self.cookie_name(),
            &sealed,
            &self.session_attrs,
            self.settings.session.lifetime,
            cookies,
        )
        .unwrap_or_default())
    }
}

/// What `pass_access_token` adds to a forwarded request.
pub enum PassToken {
    /// Nothing (not configured, or no token kept for this session).
    Nothing,
    /// `X-Forwarded-Access-Token: value`; `cookies` re-seal a refreshed one.
    Pass {
        value: HeaderValue,
        cookies: Vec<String>,
    },
    /// The provider refused the refresh: the session is over.
    SessionEnded,
}

/// The proxy service: asks [`crate::reload::Current`] for the App once per
/// request, so that a reload applies to new requests while requests in
/// flight finish on the App they started with.
pub struct Portcullis(pub Arc<crate::reload::Current>);

/// Per-request state.
pub struct Ctx {
    /// The configuration this request is served with, start to end.
    pub(crate) app: Arc<App>,
    pub(crate) identity: Option<Arc<Identity>>,
    /// When the session in `identity` ends (unix seconds): a WebSocket
    /// tunnel it opened is closed then.
    pub(crate) session_expires_at: u64,
    pub(crate) started: Instant,
    /// What Portcullis decided, for the access log.
    pub(crate) outcome: &'static str,
    /// The request-target as judged, when it differs from the client's.
    pub(crate) target: TargetState,
    /// `X-Request-Id` (empty until the gate assigns it).
    pub(crate) request_id: HeaderValue,
    /// When the request went to the application, if it did.
    pub(crate) upstream_started: Option<Instant>,
    /// With traces on: the request's span, and its call to the application.
    pub(crate) span: Option<crate::traces::SpanCx>,
    pub(crate) upstream_span: Option<crate::traces::SpanCx>,
    /// `pass_access_token`: the value of `X-Forwarded-Access-Token`.
    pub(crate) access_token: Option<HeaderValue>,
    /// `Set-Cookie` values added to the upstream's response (a refreshed
    /// access token re-sealed).
    pub(crate) set_cookies: Vec<String>,
}

impl Ctx {
    pub(crate) fn new(app: Arc<App>) -> Ctx {
        Ctx::started_at(app, Instant::now())
    }

    /// A request that started at `started` (its first byte was read then).
    pub(crate) fn started_at(app: Arc<App>, started: Instant) -> Ctx {
        Ctx {
            app,
            identity: None,
            session_expires_at: 0,
            started,
            outcome: "proxied",
            target: TargetState::AsReceived,
            request_id: HeaderValue::from_static(""),
            upstream_started: None,
            span: None,
            upstream_span: None,
            access_token: None,
            set_cookies: Vec::new(),
        }
    }
}

/// How the request-target that was judged relates to the client's bytes.
pub(crate) enum TargetState {
    /// Judged and forwarded byte for byte as received.
    AsReceived,
    /// Judged in this canonical form, which is what the upstream gets.
    Rewritten(Box<str>),
    /// Refused (400/414): nothing was forwarded.
    Refused,
}

/// The request-target that was judged: the canonical one, else what the
/// client sent (lossily, for a refused one).
pub(crate) fn judged_target<'a>(req: &'a RequestHeader, ctx: &'a Ctx) -> Cow<'a, str> {
    match &ctx.target {
        TargetState::Rewritten(t) => Cow::Borrowed(t),
        TargetState::AsReceived | TargetState::Refused => String::from_utf8_lossy(req.raw_path()),
    }
}

/// The path part of a target.
pub(crate) fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or_default()
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.0.get())
    }

    /// HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests a client writes
    /// before reading the answers are served one after the other, each
    /// judged on its own, answers in order. (pingora's default drops every
    /// request after the first and closes the connection.)
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        if let pingora::protocols::http::ServerSession::H1(h1) = session.as_mut() {
            h1.set_pipelining_enabled(true);
        }
        Ok(())
    }

    /// The gate. Every decision below is made on one canonical view of the
    /// request-target, and that view is what the upstream receives
    /// (`upstream_request_filter` writes it when it differs).
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let app = Arc::clone(&ctx.app);
        let app = &*app;
        // First of all: the request's id, on the request itself, so that
        // the upstream, every answer and every log line carry it.
        ctx.request_id =
            headers::request_id(session.req_header(), app.settings.server.trust_request_id);
        headers::set_request_id(session.req_header_mut(), &ctx.request_id)?;
        if crate::traces::enabled() {
            let req = session.req_header();
            ctx.span = crate::traces::start_request(
                req.method.as_str(),
                req.uri.path(),
                req.headers.get("traceparent").map(|v| v.as_bytes()),
            );
        }
        let decision = app.decide(session.req_header()).await;
        if let Some(wire) = decision.rewritten {
            ctx.target = TargetState::Rewritten(wire);
        }
        if decision.upgrade == UpgradeKind::Other {
            decide::remove_upgrade(session.req_header_mut())?;
        }
        if decision.strip_authorization {
            session
                .req_header_mut()
                .remove_header(&http::header::AUTHORIZATION);
        }
        let websocket = decision.upgrade == UpgradeKind::WebSocket;
        let client = client_ip(session);
        match app
            .carry_out(decision.verdict, session.req_header(), client, ctx)
            .await
        {
            Step::Reply { reply, close } => {
                reply.send(session).await?;
                if close {
                    session.set_keepalive(None);
                }
                Ok(true)
            }
            Step::Forward if websocket => {
                // WebSocket: our own tunnel (see upgrade.rs for why).
                ctx.outcome = if ctx.identity.is_some() {
                    "upgrade"
                } else {
                    "public_upgrade"
                };
                upgrade::tunnel(app, session, ctx).await?;
                Ok(true)
            }
            Step::Forward => Ok(false),
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(ctx.app.peer()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_started = Some(Instant::now());
        if let Some(up) = ctx.span.as_ref().and_then(|cx| {
            crate::traces::start_child(Some(cx), "upstream", opentelemetry::trace::SpanKind::Client)
        }) {
            upstream_request.insert_header("traceparent", crate::traces::traceparent(&up))?;
            upstream_request.remove_header("tracestate");
            ctx.upstream_span = Some(up);
        }
        if let TargetState::Rewritten(target) = &ctx.target {
            upstream_request.set_raw_path(target.as_bytes())?;
        }
        ctx.app.prepare_upstream_request(
            client_ip(session),
            upstream_request,
            ctx.identity.as_deref(),
            &ctx.request_id,
        )?;
        ctx.app.add_identity_extras(
            upstream_request,
            ctx.identity.as_deref(),
            ctx.session_expires_at,
            ctx.access_token.as_ref(),
        )
    }

    /// A refreshed access token's cookie rides on the upstream's answer.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for c in ctx.set_cookies.drain(..) {
            upstream_response.append_header(http::header::SET_COOKIE, c)?;
        }
        Ok(())
    }

    /// What pingora's error lines say about a request: method and judged
    /// path, never the query (codes and states on the callback, tokens that
    /// apps put in WebSocket URLs).
    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let req = session.req_header();
        format!(
            "{} {} request_id={}",
            req.method,
            path_of(&judged_target(req, ctx)),
            ctx.request_id.to_str().unwrap_or_default()
        )
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ if is_client_gone(e) => 0,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => 400,
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            ctx.outcome = "proxy_error";
            let (title, message) = match code {
                502 | 504 => (
                    "The application is not responding",
                    "Portcullis could not reach the application behind it. Please try again in a moment.",
                ),
                400 => ("Bad request", "The request could not be understood."),
                _ => ("Something went wrong", "The request could not be completed."),
            };
            let rd = judged_target(session.req_header(), ctx).into_owned();
            let retry = safe_return_path(&rd).into_owned();
            let reply = Reply::html(code, pages::Page::error(code, title, message, &retry));
            if let Err(err) = reply.send(session).await {
                tracing::debug!(error = %err, "could not send the error page");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that goes away mid-request (a closed tab, a load tester
    /// stopping) is routine, not an ERROR line: the access log records it
    /// with its error type. Everything else keeps pingora's error log.
    /// An unreachable upstream is one aggregated line a second, not an
    /// ERROR line per request: during an outage the log must not become
    /// the outage. Each request still has its access-log line.
    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, e: &Error) -> bool {
        if is_client_gone(e) {
            return true;
        }
        if e.esource() == &ErrorSource::Upstream {
            if let Some(failed) = ctx.app.upstream_failures.count() {
                tracing::error!(
                    failed,
                    error = e.etype().as_str(),
                    "upstream unreachable: {failed} request(s) failed since the last report"
                );
            }
            return true;
        }
        false
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let took = ctx.started.elapsed();
        if let Some(up) = ctx.upstream_span.take() {
            crate::traces::end(&up, Vec::new());
        }
        if let Some(span) = ctx.span.take() {
            let status = session
                .response_written()
                .map(|r| i64::from(r.status.as_u16()))
                .unwrap_or(0);
            crate::traces::end(
                &span,
                vec![
                    opentelemetry::KeyValue::new("http.response.status_code", status),
                    opentelemetry::KeyValue::new("portcullis.outcome", ctx.outcome),
                    opentelemetry::KeyValue::new(
                        "portcullis.request_id",
                        ctx.request_id.to_str().unwrap_or_default().to_owned(),
                    ),
                ],
            );
        }
        ctx.app.metrics.request(ctx.outcome, took);
        if let Some(at) = ctx.upstream_started {
            ctx.app.metrics.upstream(at.elapsed());
        }
        let req = session.req_header();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        // The path only: queries carry codes and states on /oauth2/callback.
        let target = judged_target(req, ctx);
        access_log::log(&access_log::Entry {
            method: req.method.as_str(),
            path: path_of(&target),
            status,
            outcome: ctx.outcome,
            user: ctx
                .identity
                .as_ref()
                .map(|id| (id.provider.as_str(), id.subject.as_str())),
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            micros: took.as_micros() as u64,
            error: e.map(|e| e.etype().as_str()),
            request_id: ctx.request_id.to_str().unwrap_or_default(),
        });
    }
}

/// What a verdict comes to: an answer of our own, or a request to forward.
/// (Not boxed: one per request, moved once.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Step {
    /// Answer with `reply`; `close`: and close the connection after it.
    Reply { reply: Reply, close: bool },
    /// Forward the request (with `ctx.identity`, if any).
    Forward,
}

impl App {
    /// The verdicts carried out without anything to await — a session
    /// going through (no access token to pass), a public route — at once;
    /// the others come back for [`App::carry_out`]. The common request
    /// then builds no `carry_out` future (over a kilobyte, moved as it is
    /// made).
    pub(crate) fn carry_out_now(&self, verdict: Verdict, ctx: &mut Ctx) -> Result<Step, Verdict> {
        match verdict {
            Verdict::Public => {
                // A public route: no session needed, no identity sent.
                ctx.outcome = "public";
                Ok(Step::Forward)
            }
            Verdict::Forward(id, expires_at) if self.token_flight.is_none() => {
                ctx.identity = Some(id);
                ctx.session_expires_at = expires_at;
                Ok(Step::Forward)
            }
            other => Err(other),
        }
    }

    /// Carries out a verdict of the gate, for both request loops.
    pub(crate) async fn carry_out(
        &self,
        verdict: Verdict,
        req: &RequestHeader,
        client: Option<IpAddr>,
        ctx: &mut Ctx,
    ) -> Step {
        let verdict = match self.carry_out_now(verdict, ctx) {
            Ok(step) => return step,
            Err(verdict) => verdict,
        };
        let reply = match verdict {
            Verdict::Refuse(refusal) => {
                ctx.target = TargetState::Refused;
                ctx.outcome = "bad_request";
                // A client that sends such targets gets no second request.
                return Step::Reply {
                    reply: bad_target(refusal),
                    close: true,
                };
            }
            Verdict::Own(path) => {
                // Sign-in steps log (here and in the providers): each line
                // names the request. Only on our own routes, not per proxied request.
                let span = tracing::info_span!(
                    "request",
                    request_id = ctx.request_id.to_str().unwrap_or_default()
                );
                let otel = ctx.span.clone().unwrap_or_default();
                // Boxed: the rare, large future stays out of the
                // connection's own (which idles with every connection).
                Box::pin(
                    self.own_route(req, client, ctx, flow::route(&path))
                        .instrument(span)
                        .with_context(otel),
                )
                .await
            }
            Verdict::Public => {
                // (Carried out by `carry_out_now`.)
                ctx.outcome = "public";
                return Step::Forward;
            }
            Verdict::StoreUnavailable { api } => {
                ctx.outcome = "session_store_unavailable";
                let retry = safe_return_path(&judged_target(req, ctx)).into_owned();
                store_unavailable(api, &retry)
            }
            Verdict::Forward(id, expires_at) => {
                match self.access_token_for(req, &id).await {
                    PassToken::Nothing => {}
                    PassToken::Pass { value, cookies } => {
                        ctx.access_token = Some(value);
                        ctx.set_cookies = cookies;
                    }
                    PassToken::SessionEnded => {
                        // The provider refused the refresh: signed out.
                        ctx.outcome = "access_token_refused";
                        let reply = if decide::is_api(self, req) {
                            unauthenticated_json()
                        } else {
                            let target = judged_target(req, ctx);
                            Reply::redirect(flow::sign_in_location(&target))
                        };
                        return Step::Reply {
                            reply: self.signed_out(req, reply).await,
                            close: false,
                        };
                    }
                }
                ctx.identity = Some(id);
                ctx.session_expires_at = expires_at;
                return Step::Forward;
            }
            Verdict::BearerRejected(e) => {
                ctx.outcome = "bearer_rejected";
                bearer_rejected(e)
            }
            Verdict::Forbidden(_, _) if decide::is_api(self, req) => {
                ctx.outcome = "forbidden";
                forbidden_json(None)
            }
            Verdict::Forbidden(id, denial) => {
                ctx.outcome = "forbidden";
                let rd = judged_target(req, ctx).into_owned();
                forbidden(self, &id, &rd, &denial)
            }
            Verdict::BearerForbidden(_) => {
                ctx.outcome = "forbidden";
                forbidden_json(Some("Bearer error=\"insufficient_scope\""))
            }
            Verdict::SignIn { api } => {
                if api {
                    ctx.outcome = "unauthenticated";
                    unauthenticated_json()
                } else {
                    ctx.outcome = "sign_in_redirect";
                    let target = judged_target(req, ctx);
                    Reply::redirect(flow::sign_in_location(&target))
                }
            }
        };
        Step::Reply {
            reply,
            close: false,
        }
    }
}

/// The routes Portcullis answers itself (`/oauth2/...`): plain inputs in,
/// a [`Reply`] out, so that both request loops (pingora's, for TLS, and
/// the fast HTTP/1 one) share them.
impl App {
    pub(crate) async fn own_route(
        &self,
        req: &RequestHeader,
        client: Option<IpAddr>,
        ctx: &mut Ctx,
        route: Route<'_>,
    ) -> Reply {
        let app = self;
        let method = req.method.clone();
        let query = req.uri.query().map(str::to_owned);
        let get_like = method == Method::GET || method == Method::HEAD;
        match route {
            Route::SignIn if get_like => {
                ctx.outcome = "sign_in_page";
                let rd = flow::rd_param(query.as_deref());
                let buttons: Vec<ProviderButton<'_>> = app
                    .providers
                    .iter()
                    .map(|p| ProviderButton {
                        id: p.id(),
                        display_name: p.display_name(),
                        logo: p.logo(),
                    })
                    .collect();
                // The picker still works while the session store is away.
                let who = app
                    .read_session(req)
                    .await
                    .ok()
                    .flatten()
                    .map(|id| display_who(&id));
                Reply::html(200, pages::Page::sign_in(&buttons, &rd, who.as_deref()))
            }
            Route::Start(id) if get_like => {
                ctx.outcome = "start";
                let Some(provider) = app.providers.get(id) else {
                    return not_found();
                };
                if !app.store.accepts_sign_ins() {
                    // No detour through the provider for a sign-in that
                    // could not be stored.
                    ctx.outcome = "session_store_unavailable";
                    let rd = flow::rd_param(query.as_deref());
                    return store_unavailable(
                        false,
                        &flow::with_rd(&format!("/oauth2/start/{id}"), &rd),
                    );
                }
                let rd = flow::rd_param(query.as_deref());
                let mut login = LoginState::new(id, &rd);
                match provider.start(&mut login).await {
                    Ok(url) => {
                        let Some(name) = login_state::cookie_name(app.cookie_name(), &login.state)
                        else {
                            return internal_error();
                        };
                        let sealed = app.codec.seal_login_state(&name, &login);
                        let Some(set) = cookie::set_one(
                            &name,
                            &sealed,
                            LOGIN_COOKIE_PATH,
                            &app.login_attrs,
                            LOGIN_STATE_TTL,
                        ) else {
                            return internal_error();
                        };
                        let mut reply = Reply::redirect(url.to_string())
                            .cookie(set)
                            // The picker marks this provider "last used" next time.
                            .cookie(pages::last_used_cookie(id, app.settings.session.secure));
                        // At most MAX_PENDING_LOGINS login states per browser.
                        let held = req.headers.get_all(COOKIE).iter();
                        for clear in app.codec.clear_crowded_out_logins(
                            app.cookie_name(),
                            held.map(|v| v.as_bytes()),
                            &app.login_attrs,
                        ) {
                            reply = reply.cookie(clear);
                        }
                        reply
                    }
                    Err(e) => {
                        ctx.outcome = "provider_error";
                        tracing::warn!(provider = id, error = %e, "sign-in could not start");
                        let retry = flow::with_rd(&format!("/oauth2/start/{id}"), &rd);
                        Reply::html(
                            e.status(),
                            pages::Page::error(
                                e.status(),
                                "Sign-in is unavailable",
                                e.user_message(),
                                &retry,
                            ),
                        )
                    }
                }
            }
            Route::Callback(id) if get_like => self.callback(req, ctx, id, query.as_deref()).await,
            Route::SignOut if get_like || method == Method::POST => {
                ctx.outcome = "sign_out";
                let rd = query.as_deref().and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .take(64)
                        .find(|(k, _)| k == "rd")
                        .map(|(_, v)| safe_return_path(&v).into_owned())
                });
                let target = rd.unwrap_or_else(|| flow::SIGN_IN.to_owned());
                if app.end_session(req).await.is_err() {
                    // The session could not be ended everywhere: say so and
                    // keep the cookie, so that trying again can finish it.
                    ctx.outcome = "session_store_unavailable";
                    return Reply::html(
                        503,
                        pages::Page::error(
                            503,
                            "Sign-out could not be completed",
                            "Portcullis cannot reach its session store right now, so your session could not be ended everywhere. Please try again in a moment.",
                            &flow::with_rd("/oauth2/sign_out", &target),
                        ),
                    )
                    .header(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
                // sign_out_at_provider: on to the provider's end-session
                // endpoint, which sends the browser back to `target`.
                let location = match app.provider_sign_out(req, &target).await {
                    Some(url) => {
                        ctx.outcome = "sign_out_at_provider";
                        url.to_string()
                    }
                    None => target,
                };
                let mut reply = Reply::redirect(location);
                for c in app.clear_session_cookies() {
                    reply = reply.cookie(c);
                }
                reply.cookie(cookie::clear_one(
                    &app.id_token_cookie_name(),
                    flow::SIGN_OUT,
                    &app.session_attrs,
                ))
            }
            Route::UserInfo if get_like => match app.read_session(req).await {
                Err(Unavailable) => {
                    ctx.outcome = "session_store_unavailable";
                    store_unavailable(true, flow::SIGN_IN)
                }
                Ok(Some(id)) => {
                    ctx.outcome = "userinfo";
                    let body = serde_json::json!({
                        "user": id.user(),
                        "provider": id.provider,
                        "email": id.email,
                        "name": id.name,
                        "login": id.login,
                        "picture": id.picture,
                        "groups": id.groups,
                    });
                    ctx.identity = Some(id);
                    Reply::json(200, body.to_string())
                }
                Ok(None) => {
                    ctx.outcome = "unauthenticated";
                    unauthenticated_json()
                }
            },
            Route::Auth => match app.decide_auth(req, client).await {
                AuthVerdict::StoreUnavailable => {
                    ctx.outcome = "session_store_unavailable";
                    store_unavailable(true, flow::SIGN_IN)
                }
                AuthVerdict::Allow(id) => {
                    ctx.outcome = "auth_ok";
                    let mut reply = Reply::empty(202);
                    for (name, value) in app.identity_headers.pairs(&id) {
                        reply = reply.header(name, value);
                    }
                    if let Some(signer) = &app.assertion {
                        let token = signer.header_value(&id, 0, unix_now());
                        reply = reply.header(signer.header_name().clone(), token);
                    }
                    // `pass_access_token`: the token for the front proxy to
                    // hand on (nginx: auth_request_set), refreshed as for a
                    // proxied request; a re-sealed cookie rides on the 202
                    // for the front proxy to return to the browser.
                    match app.access_token_for(req, &id).await {
                        PassToken::Nothing => {}
                        PassToken::Pass { value, cookies } => {
                            reply = reply.header(
                                http::header::HeaderName::from_static("x-forwarded-access-token"),
                                value,
                            );
                            for c in cookies {
                                reply = reply.cookie(c);
                            }
                        }
                        PassToken::SessionEnded => {
                            ctx.outcome = "access_token_refused";
                            return app.signed_out(req, unauthenticated_json()).await;
                        }
                    }
                    ctx.identity = Some(id);
                    reply
                }
                AuthVerdict::Public => {
                    ctx.outcome = "public";
                    Reply::empty(202)
                }
                AuthVerdict::Refuse(refusal) => {
                    ctx.outcome = "bad_request";
                    let body = serde_json::json!({
                        "error": "bad_request",
                        "reason": refusal.as_str(),
                    });
                    Reply::json(400, body.to_string())
                }
                AuthVerdict::Forbidden(id) => {
                    ctx.outcome = "auth_forbidden";
                    ctx.identity = Some(id);
                    Reply::json(403, r#"{"error":"forbidden"}"#.to_owned())
                }
                AuthVerdict::SignIn => {
                    ctx.outcome = "auth_unauthenticated";
                    // The original URI (set by the front proxy) is the
                    // return path offered for signing in; from a trusted
                    // proxy it was also judged (decide_auth).
                    let original = ["x-forwarded-uri", "x-original-uri"]
                        .iter()
                        .find_map(|h| req.headers.get(*h).and_then(|v| v.to_str().ok()))
                        .unwrap_or("/");
                    let body = serde_json::json!({
                        "error": "unauthenticated",
                        "sign_in": flow::sign_in_location(original),
                    });
                    Reply::json(401, body.to_string())
                }
            },
            Route::Static(name) if get_like => {
                // Part of the sign-in page (the logo).
                ctx.outcome = "sign_in_page";
                match pages::current().logo() {
                    Some(logo) if logo.path.strip_prefix("/oauth2/static/") == Some(name) => {
                        Reply::file(logo.content_type, logo.bytes.clone())
                    }
                    _ => not_found(),
                }
            }
            Route::Jwks if get_like => match &app.assertion {
                Some(signer) => {
                    ctx.outcome = "jwks";
                    Reply::json(200, signer.jwks().to_owned())
                        .cache_control(crate::assertion::JWKS_CACHE_CONTROL)
                }
                None => not_found(),
            },
            Route::NotFound | Route::Upstream => not_found(),
            Route::SignIn
            | Route::Static(_)
            | Route::Start(_)
            | Route::Callback(_)
            | Route::SignOut
            | Route::UserInfo
            | Route::Jwks => {
                ctx.outcome = "method_not_allowed";
                Reply::html(
                    405,
                    pages::Page::error(
                        405,
                        "Method not allowed",
                        "This address only answers GET.",
                        flow::SIGN_IN,
                    ),
                )
                .header(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"))
            }
        }
    }

    async fn callback(
        &self,
        req: &RequestHeader,
        ctx: &mut Ctx,
        id: &str,
        query: Option<&str>,
    ) -> Reply {
        let app = self;
        ctx.outcome = "callback";
        let Some(provider) = app.providers.get(id) else {
            return not_found();
        };
        let params = CallbackParams::parse(query);
        // The login-state cookie named after this state, sealed under that
        // name, for this provider, with exactly this state (CSRF check).
        let login = params.get("state").and_then(|state| {
            let name = login_state::cookie_name(app.cookie_name(), state)?;
            let cookies = req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
            let sealed = cookie::find(cookies, &name)?;
            let login = app.codec.open_login_state(&name, sealed)?;
            (login.provider == id && login.matches_state(state)).then_some((name, login))
        });
        let Some((name, login)) = login else {
            ctx.outcome = "callback_bad_state";
            app.metrics.sign_in(id, "bad_state");
            tracing::warn!(provider = id, "callback without a matching login state (expired, replayed, or from another browser)");
            return Reply::html(
                400,
                pages::Page::error(
                    400,
                    "This sign-in link is no longer valid",
                    "The sign-in took too long, was already used, or was started in another browser. Please sign in again.",
                    flow::SIGN_IN,
                ),
            );
        };
        let clear_login = cookie::clear_one(&name, LOGIN_COOKIE_PATH, &app.login_attrs);
        let retry = flow::with_rd(&format!("/oauth2/start/{id}"), &login.return_to);
        match provider.finish_full(&login, &params).await {
            Err(e) => {
                ctx.outcome = "provider_error";
                app.metrics.sign_in(id, "failed");
                tracing::warn!(provider = id, error = %e, status = e.status(), "sign-in failed");
                Reply::html(
                    e.status(),
                    pages::Page::error(e.status(), "Sign-in failed", e.user_message(), &retry),
                )
                .cookie(clear_login)
            }
            Ok(crate::providers::Finished {
                identity,
                id_token,
                tokens,
            }) => {
                let target = safe_return_path(&login.return_to).into_owned();
                if let Err(denial) = app.judge_sign_in(req, &target, &identity) {
                    ctx.outcome = "forbidden";
                    app.metrics.sign_in(id, "forbidden");
                    tracing::info!(provider = id, user = %identity.user(), "signed in but not allowed");
                    return forbidden(app, &identity, &target, &denial).cookie(clear_login);
                }
                let Ok(cookies) = app.session_cookies(req, &identity).await else {
                    ctx.outcome = "session_store_unavailable";
                    app.metrics.sign_in(id, "store_unavailable");
                    tracing::warn!(
                        provider = id,
                        "signed in at the provider, but the session could not be stored"
                    );
                    return store_unavailable(false, &retry).cookie(clear_login);
                };
                if cookies.is_empty() {
                    // The provider sent more than a cookie holds (the log line says so).
                    ctx.outcome = "provider_error";
                    app.metrics.sign_in(id, "failed");
                    tracing::warn!(
                        provider = id,
                        user = %identity.user(),
                        groups = identity.groups.len(),
                        "signed in, but the session does not fit in the session cookies (at most {} parts of {} bytes); send fewer groups",
                        cookie::MAX_PARTS,
                        cookie::MAX_PART_LEN
                    );
                    return Reply::html(
                        500,
                        pages::Page::error(
                            500,
                            "Sign-in could not be completed",
                            "Your account carries more information (groups or roles) than a sign-in cookie can hold. Ask the site's administrator to send only the groups this application needs.",
                            flow::SIGN_IN,
                        ),
                    )
                    .cookie(clear_login);
                }
                ctx.outcome = "signed_in";
                app.metrics.sign_in(id, "ok");
                tracing::info!(provider = id, user = %identity.user(), groups = identity.groups.len(), "signed in");
                let mut reply = Reply::redirect(target).cookie(clear_login);
                for c in cookies {
                    reply = reply.cookie(c);
                }
                let idt_name = app.id_token_cookie_name();
                let held = req.headers.get_all(COOKIE).iter();
                if id_token.is_none()
                    && cookie::find(held.map(|v| v.as_bytes()), &idt_name).is_some()
                {
                    // An earlier sign-in's ID token, from another provider.
                    reply = reply.cookie(cookie::clear_one(
                        &idt_name,
                        flow::SIGN_OUT,
                        &app.session_attrs,
                    ));
                }
                let at_name = crate::access_token::cookie_name(app.cookie_name());
                match &tokens {
                    Some(t) => {
                        let sealed = app.codec.sealer().seal(
                            &at_name,
                            &t.encode(&identity.user()),
                            app.settings.session.lifetime,
                        );
                        let held = req.headers.get_all(COOKIE).iter();
                        match cookie::set_split(
                            &at_name,
                            &sealed,
                            &app.session_attrs,
                            app.settings.session.lifetime,
                            held.map(|v| v.as_bytes()),
                        ) {
                            Some(set) => {
                                for c in set {
                                    reply = reply.cookie(c);
                                }
                            }
                            None => tracing::warn!(
                                provider = id,
                                "the access token is too large to keep for pass_access_token"
                            ),
                        }
                    }
                    None if app.token_flight.is_some() => {
                        for c in cookie::clear_split(&at_name, &app.session_attrs) {
                            reply = reply.cookie(c);
                        }
                    }
                    None => {}
                }
                if let Some(token) = id_token {
                    match app.id_token_cookie(id, &token) {
                        Some(c) => reply = reply.cookie(c),
                        None => tracing::warn!(
                            provider = id,
                            "the ID token is too large to keep for sign_out_at_provider; sign-out will end the Portcullis session only"
                        ),
                    }
                }
                ctx.identity = Some(Arc::new(identity));
                reply
            }
        }
    }
}

/// The answer to a refused request-target.
fn bad_target(refusal: Refusal) -> Reply {
    let status = refusal.status();
    let title = if status == 414 {
        "Address too long"
    } else {
        "Bad request"
    };
    Reply::html(
        status,
        pages::Page::error(
            status,
            title,
            &format!("This address cannot be served: {}.", refusal.as_str()),
            "/",
        ),
    )
}

/// The session store (Redis) cannot answer: 503, a page for people, JSON
/// for API clients. Fail closed: the request goes nowhere.
fn store_unavailable(api: bool, retry: &str) -> Reply {
    let reply = if api {
        Reply::json(503, r#"{"error":"session_store_unavailable"}"#.to_owned())
    } else {
        Reply::html(
            503,
            pages::Page::error(
                503,
                "Temporarily unavailable",
                "Portcullis cannot reach its session store right now. Please try again in a moment.",
                retry,
            ),
        )
    };
    reply.header(http::header::RETRY_AFTER, HeaderValue::from_static("5"))
}

/// A refused bearer token: 401 with `WWW-Authenticate: Bearer
/// error="invalid_token"` (RFC 6750 §3.1); 503 when the issuer's keys are
/// unavailable. Never the token itself.
fn bearer_rejected(e: BearerError) -> Reply {
    let description = e.description();
    let (status, error) = match e {
        BearerError::Unavailable => (503, "temporarily_unavailable"),
        BearerError::NotJwt | BearerError::UnknownIssuer | BearerError::Invalid(_) => {
            (401, "invalid_token")
        }
    };
    let body = serde_json::json!({ "error": error, "error_description": description });
    let mut reply = Reply::json(status, body.to_string());
    if status == 401 {
        let challenge =
            format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            reply = reply.header(http::header::WWW_AUTHENTICATE, v);
        }
    } else {
        reply = reply.header(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    reply
}

/// 403 for an API client: JSON, and for a bearer token the RFC 6750 §3.1
/// challenge (the token is valid; its user is not allowed here).
fn forbidden_json(challenge: Option<&'static str>) -> Reply {
    let reply = Reply::json(
        403,
        r#"{"error":"forbidden","error_description":"the access rules do not allow this user here"}"#
            .to_owned(),
    );
    match challenge {
        Some(c) => reply.header(http::header::WWW_AUTHENTICATE, HeaderValue::from_static(c)),
        None => reply,
    }
}

fn unauthenticated_json() -> Reply {
    Reply::json(
        401,
        r#"{"error":"unauthenticated","sign_in":"/oauth2/sign_in"}"#.to_owned(),
    )
}

fn not_found() -> Reply {
    Reply::html(
        404,
        pages::Page::error(
            404,
            "Not found",
            "There is nothing at this address.",
            flow::SIGN_IN,
        ),
    )
}

pub(crate) fn internal_error() -> Reply {
    Reply::html(
        500,
        pages::Page::error(
            500,
            "Something went wrong",
            "Please try again.",
            flow::SIGN_IN,
        ),
    )
}

/// How a person is named on our pages: email, else handle, else name, else X-User.
fn display_who(id: &Identity) -> String {
    id.email
        .clone()
        .or_else(|| id.login.clone())
        .or_else(|| id.name.clone())
        .unwrap_or_else(|| id.user())
}

/// The 403 page. When a route takes other providers' sessions only, it
/// offers to sign in with those.
fn forbidden(app: &App, id: &Identity, rd: &str, denial: &Denial) -> Reply {
    let who = display_who(id);
    let action = flow::with_rd("/oauth2/sign_out", &flow::with_rd(flow::SIGN_IN, rd));
    let offer: Vec<ProviderButton<'_>> = match denial {
        Denial::Lists => Vec::new(),
        Denial::Providers(ids) => ids
            .iter()
            .filter_map(|p| app.providers.get(p))
            .map(|p| ProviderButton {
                id: p.id(),
                display_name: p.display_name(),
                logo: p.logo(),
            })
            .collect(),
    };
    Reply::html(
        403,
        pages::Page::forbidden(&who, &action, &offer, &safe_return_path(rd)),
    )
}

/// The client's IP address (none on a Unix socket).
fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client closed or broke its connection: nobody is left to answer.
fn is_client_gone(e: &Error) -> bool {
    e.esource() == &ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
        )
}

/// The upstream as a pingora peer: address resolved at start-up, our
/// timeouts, and the host name as TLS server name (with rustls an empty SNI
/// would disable certificate checks).
fn upstream_peer(up: &config::Upstream, addr: SocketAddr) -> HttpPeer {
    let sni = if up.tls {
        up.host.clone()
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(addr, up.tls, sni);
    peer.options.connection_timeout = Some(up.connect_timeout);
    peer.options.total_connection_timeout = Some(up.connect_timeout + Duration::from_secs(5));
    peer.options.read_timeout = Some(up.read_timeout);
    peer.options.write_timeout = Some(up.read_timeout);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    peer
}
