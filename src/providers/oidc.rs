//! OpenID Connect sign-in (Google and any `kind = "oidc"` provider):
//! discovery, authorization code + PKCE, and a verified ID token.
//!
//! Google's endpoints come from discovery at its issuer,
//! `https://accounts.google.com/.well-known/openid-configuration`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oauth2::basic::BasicTokenType;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, ExtraTokenFields,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, StandardTokenResponse,
    TokenResponse as _, TokenUrl,
};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, JsonWebKeySet, ProviderMetadata};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use super::groups::{self, Lookup};
use super::id_token::{self, BearerError, BearerExpected, Expected, IdTokenError};
use super::transport::{self, TokenClient, MAX_DOCUMENT, MAX_RESPONSE};
use super::ProviderInfo;
use super::{
    clean_text, clean_whole, AccessTokens, BearerUser, CallbackParams, Finished, NotAccepted,
    Provider, ProviderError,
};
use super::{MAX_EMAIL_LEN, MAX_URL_LEN};
use crate::config;
use crate::identity::Identity;
use crate::metrics::{time_provider, Step};
use crate::pages::Logo;
use crate::session::login_state::LoginState;
use crate::session::unix_now;

/// Google signs `iss` with or without the scheme.
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const GOOGLE_BARE_ISSUER: &str = "accounts.google.com";
/// Leeway for `exp` and `iat` (clock skew between us and the provider).
const CLOCK_LEEWAY_SECS: u64 = 60;
/// Keys whose JWKS response had no max-age are re-read after this long.
const DEFAULT_KEYS_TTL: Duration = Duration::from_secs(3600);
/// ... and never more often than this, whatever max-age says.
const MIN_KEYS_TTL: Duration = Duration::from_secs(60);
/// Discovery documents are re-read after this long.
const METADATA_TTL: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` refetches the JWKS at most this often (forged tokens must
/// not turn into a refetch storm).
const JWKS_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// Discovery fields beyond the core set that we act on.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct Extra {
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    /// OpenID Connect RP-Initiated Logout 1.0 §2.1.
    #[serde(default)]
    end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for Extra {}

type Metadata = ProviderMetadata<
    Extra,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The token response, with the ID token kept as the raw JWT: it is
/// verified here, not parsed by the HTTP layer.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default)]
    id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

type Client = super::OAuth2Client<TokenResponse>;

/// What discovery told us, with the client built from it and the keys.
struct Discovered {
    client: Client,
    jwks_uri: url::Url,
    /// Where claims not in the ID token come from (OIDC Core §5.3).
    userinfo: Option<url::Url>,
    /// RP-initiated logout (`sign_out_at_provider`), when discovery names it.
    end_session: Option<url::Url>,
    keys: JsonWebKeySet<CoreJsonWebKey>,
    pkce: bool,
    fetched: Instant,
    /// When the keys go stale (the JWKS response's Cache-Control max-age).
    keys_expire: Instant,
    /// When an unknown `kid` last made us refetch the keys (None: never).
    keys_refetched: Option<Instant>,
}

impl Discovered {
    fn with_keys(&self, keys: Keys, refetched: Option<Instant>) -> Self {
        Discovered {
            client: self.client.clone(),
            jwks_uri: self.jwks_uri.clone(),
            userinfo: self.userinfo.clone(),
            end_session: self.end_session.clone(),
            keys: keys.set,
            pkce: self.pkce,
            fetched: self.fetched,
            keys_expire: keys.expire,
            keys_refetched: refetched.or(self.keys_refetched),
        }
    }
}

struct Keys {
    set: JsonWebKeySet<CoreJsonWebKey>,
    expire: Instant,
}

pub struct OidcProvider {
    info: ProviderInfo,
    google: bool,
    issuer: String,
    /// `iss` values accepted in ID tokens and on the callback (RFC 9207).
    accepted_issuers: Vec<String>,
    client_id: ClientId,
    client_secret: ClientSecret,
    scopes: Vec<Scope>,
    redirect: RedirectUrl,
    http: reqwest::Client,
    cache: RwLock<Option<Arc<Discovered>>>,
    refresh: Mutex<()>,
    /// `groups_claim`: one key per level.
    groups_claim: Option<Vec<String>>,
    /// `hosted_domains` (Google), lower-cased.
    hosted_domains: Vec<String>,
    /// A groups claim with values other than strings is warned about once.
    groups_warned: AtomicBool,
    /// `accept_bearer_tokens` and its settings.
    bearer: Option<config::Bearer>,
    /// `sign_out_at_provider`: keep the ID token for the end-session request.
    sign_out_at_provider: bool,
    /// `pass_access_token`: keep the tokens for the upstream.
    pass_access_token: bool,
    /// A missing end_session_endpoint is warned about once.
    end_session_warned: AtomicBool,
}

impl OidcProvider {
    pub fn google(
        p: &config::Provider,
        issuer: &str,
        redirect: url::Url,
        http: reqwest::Client,
    ) -> Self {
        Self::new(p, issuer, redirect, http, true)
    }

    pub fn generic(
        p: &config::Provider,
        issuer: &str,
        redirect: url::Url,
        http: reqwest::Client,
    ) -> Self {
        Self::new(p, issuer, redirect, http, false)
    }

    fn new(
        p: &config::Provider,
        issuer: &str,
        redirect: url::Url,
        http: reqwest::Client,
        google: bool,
    ) -> Self {
        let mut accepted_issuers = vec![issuer.to_owned()];
        if google {
            // Google: "https://accounts.google.com" or "accounts.google.com";
            // for an overridden issuer, the same two spellings of it.
            let bare = issuer
                .strip_prefix("https://")
                .or_else(|| issuer.strip_prefix("http://"))
                .unwrap_or(issuer)
                .trim_end_matches('/');
            accepted_issuers.push(bare.to_owned());
            if issuer == GOOGLE_ISSUER {
                accepted_issuers.push(GOOGLE_BARE_ISSUER.to_owned());
            }
        }
        accepted_issuers.dedup();
        OidcProvider {
            info: ProviderInfo::new(p, if google { Logo::Google } else { Logo::OpenId }),
            google,
            issuer: issuer.to_owned(),
            accepted_issuers,
            client_id: ClientId::new(p.client_id.clone()),
            client_secret: p.client_secret.clone(),
            scopes: std::iter::once("openid")
                .chain(
                    p.scopes
                        .iter()
                        .map(String::as_str)
                        .filter(|s| *s != "openid"),
                )
                .map(|s| Scope::new(s.to_owned()))
                .collect(),
            redirect: RedirectUrl::from_url(redirect),
            http,
            cache: RwLock::new(None),
            refresh: Mutex::new(()),
            groups_claim: p.groups_claim.clone(),
            hosted_domains: p.hosted_domains.clone(),
            groups_warned: AtomicBool::new(false),
            bearer: p.bearer.clone(),
            sign_out_at_provider: p.sign_out_at_provider,
            pass_access_token: p.pass_access_token,
            end_session_warned: AtomicBool::new(false),
        }
    }

    /// A bearer token verified with this provider's keys (refetched once
    /// for an unknown `kid`, at most once a minute), then its claims.
    async fn verify_bearer(
        &self,
        bearer: &config::Bearer,
        token: &str,
    ) -> Result<BearerUser, BearerError> {
        let d = self
            .discovered()
            .await
            .map_err(|_| BearerError::Unavailable)?;
        let d = self.current_keys(d).await;
        let issuers: Vec<&str> = self.accepted_issuers.iter().map(String::as_str).collect();
        let check = |d: &Discovered| {
            id_token::verify_bearer(
                token,
                &d.keys,
                &BearerExpected {
                    issuers: &issuers,
                    audiences: &bearer.audiences,
                    now: unix_now(),
                    leeway: CLOCK_LEEWAY_SECS,
                },
            )
        };
        let claims = match check(&d) {
            Err(IdTokenError::UnknownKey) => match self.refetch_keys(&d).await {
                Some(fresh) => check(&fresh),
                None => Err(IdTokenError::UnknownKey),
            },
            other => other,
        }
        .map_err(BearerError::Invalid)?;
        let groups = self
            .groups_in(&claims.other)
            .map_err(|_| BearerError::Invalid(IdTokenError::Malformed))?
            .unwrap_or_default();
        let expires_at = claims.exp;
        Ok(BearerUser {
            identity: self.identity(claims, groups),
            expires_at,
            pass_authorization: bearer.pass_authorization_header,
        })
    }

    /// `hosted_domains`: the verified ID token's `hd` must be one of them
    /// (never the email's domain: `hd` is what Google asserts about a
    /// Workspace account; consumer accounts have none).
    fn check_hosted_domain(&self, claims: &id_token::Claims) -> Result<(), ProviderError> {
        if self.hosted_domains.is_empty() {
            return Ok(());
        }
        let hd = claims.other.get("hd").and_then(|v| v.as_str());
        if hd.is_some_and(|hd| {
            self.hosted_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(hd))
        }) {
            return Ok(());
        }
        Err(ProviderError::NotAccepted(NotAccepted::HostedDomain {
            // For the log line: a domain's characters only.
            hd: hd.map(|d| {
                d.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                    .take(253)
                    .collect()
            }),
        }))
    }

    /// The groups in `claims` at `groups_claim`; an overage ends the
    /// sign-in. Values that are not strings are ignored, with one warning
    /// per provider.
    fn groups_in(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Vec<String>>, ProviderError> {
        let Some(path) = &self.groups_claim else {
            return Ok(Some(Vec::new()));
        };
        match groups::lookup(claims, path) {
            Lookup::Found { groups, ignored } => {
                if ignored > 0 && !self.groups_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        provider = %self.info.id,
                        claim = %path.join("."),
                        ignored,
                        "groups_claim holds values that are not strings (or are longer than {} bytes); they are ignored (warned once)",
                        groups::MAX_GROUP_LEN
                    );
                }
                Ok(Some(groups))
            }
            Lookup::Absent => Ok(None),
            Lookup::Overage => Err(ProviderError::NotAccepted(NotAccepted::GroupsOverage {
                claim: path.join("."),
            })),
        }
    }

    /// The discovery document and keys, fetched on first use and cached; a
    /// failed fetch is retried by the next sign-in.
    async fn discovered(&self) -> Result<Arc<Discovered>, ProviderError> {
        if let Some(d) = self.fresh().await {
            return Ok(d);
        }
        let _guard = self.refresh.lock().await;
        if let Some(d) = self.fresh().await {
            return Ok(d);
        }
        let metadata = self.fetch_metadata().await?;
        let jwks_uri = metadata.jwks_uri().url().clone();
        let keys = self.fetch_keys(&jwks_uri).await?;
        let token_url = metadata
            .token_endpoint()
            .map(|t| TokenUrl::from_url(t.url().clone()))
            .ok_or_else(|| ProviderError::Protocol {
                reason: "discovery names no token endpoint".into(),
            })?;
        // client_secret_basic unless the provider only offers client_secret_post.
        let basic = metadata
            .token_endpoint_auth_methods_supported()
            .is_none_or(|m| m.is_empty() || m.contains(&CoreClientAuthMethod::ClientSecretBasic));
        let pkce = self.google
            || metadata
                .additional_metadata()
                .code_challenge_methods_supported
                .as_ref()
                .is_some_and(|m| m.iter().any(|x| x == "S256"));
        let client = oauth2::Client::new(self.client_id.clone())
            .set_client_secret(self.client_secret.clone())
            .set_auth_uri(AuthUrl::from_url(
                metadata.authorization_endpoint().url().clone(),
            ))
            .set_token_uri(token_url)
            .set_redirect_uri(self.redirect.clone())
            .set_auth_type(if basic {
                AuthType::BasicAuth
            } else {
                AuthType::RequestBody
            });
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "https" | "http"));
        if self.sign_out_at_provider
            && end_session.is_none()
            && !self.end_session_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                provider = %self.info.id,
                "sign_out_at_provider: the provider's discovery names no end_session_endpoint; sign-out ends the Portcullis session only (warned once)"
            );
        }
        let d = Arc::new(Discovered {
            client,
            jwks_uri,
            end_session,
            userinfo: metadata.userinfo_endpoint().map(|u| u.url().clone()),
            keys: keys.set,
            pkce,
            fetched: Instant::now(),
            keys_expire: keys.expire,
            keys_refetched: None,
        });
        *self.cache.write().await = Some(d.clone());
        tracing::info!(provider = %self.info.id, issuer = %self.issuer, "discovered OpenID provider");
        Ok(d)
    }

    async fn fresh(&self) -> Option<Arc<Discovered>> {
        self.cache
            .read()
            .await
            .as_ref()
            .filter(|d| d.fetched.elapsed() < METADATA_TTL)
            .cloned()
    }

    /// The discovery document, checked to name the configured issuer
    /// (OpenID Connect Discovery 1.0 §4.3).
    async fn fetch_metadata(&self) -> Result<Metadata, ProviderError> {
        let base = self.issuer.trim_end_matches('/');
        let url = format!("{base}/.well-known/openid-configuration");
        let body = time_provider(
            &self.info.id,
            Step::Discovery,
            self.get_json(&url, "discovery"),
        )
        .await?
        .0;
        let metadata: Metadata =
            serde_json::from_slice(&body).map_err(|e| ProviderError::Protocol {
                reason: format!(
                    "discovery document at {} is not valid: {e}",
                    transport::shown_url(&url)
                ),
            })?;
        if metadata.issuer().as_str() != self.issuer {
            return Err(ProviderError::Protocol {
                reason: format!(
                    "discovery document names issuer {:?}, not the configured {:?}",
                    metadata.issuer().as_str(),
                    self.issuer
                ),
            });
        }
        Ok(metadata)
    }

    /// The signing keys, with their freshness from Cache-Control.
    async fn fetch_keys(&self, jwks_uri: &url::Url) -> Result<Keys, ProviderError> {
        let (body, max_age) = time_provider(
            &self.info.id,
            Step::Jwks,
            self.get_json(jwks_uri.as_str(), "signing keys"),
        )
        .await?;
        let set: JsonWebKeySet<CoreJsonWebKey> =
            serde_json::from_slice(&body).map_err(|e| ProviderError::Protocol {
                reason: format!(
                    "JWKS at {} is not valid: {e}",
                    transport::shown_url(jwks_uri.as_str())
                ),
            })?;
        let ttl = max_age
            .unwrap_or(DEFAULT_KEYS_TTL)
            .clamp(MIN_KEYS_TTL, METADATA_TTL);
        Ok(Keys {
            set,
            expire: Instant::now() + ttl,
        })
    }

    /// GETs a JSON document (at most [`MAX_DOCUMENT`] bytes); returns the
    /// body and the Cache-Control max-age.
    async fn get_json(
        &self,
        url: &str,
        what: &str,
    ) -> Result<(Vec<u8>, Option<Duration>), ProviderError> {
        self.get_json_as(url, what, None, MAX_DOCUMENT).await
    }

    /// As `get_json`, with a bearer token when given (UserInfo) and a cap.
    async fn get_json_as(
        &self,
        url: &str,
        what: &str,
        bearer: Option<&str>,
        cap: usize,
    ) -> Result<(Vec<u8>, Option<Duration>), ProviderError> {
        let unavailable = |detail: String| ProviderError::Unavailable {
            context: format!("{what} at {}: {detail}", transport::shown_url(url)),
        };
        let mut req = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unavailable(transport::transport_error(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let max_age = resp
            .headers()
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let body = transport::read_capped(resp, cap, what).await?;
        Ok((body, max_age))
    }

    /// Keys past their max-age are refreshed (at sign-in time, never on the
    /// request path); when that fails, the stale keys are still used.
    async fn current_keys(&self, d: Arc<Discovered>) -> Arc<Discovered> {
        if Instant::now() < d.keys_expire {
            return d;
        }
        let _guard = self.refresh.lock().await;
        let Some(current) = self.cache.read().await.clone() else {
            return d;
        };
        if Instant::now() < current.keys_expire {
            return current;
        }
        match self.fetch_keys(&current.jwks_uri).await {
            Ok(keys) => {
                let fresh = Arc::new(current.with_keys(keys, None));
                *self.cache.write().await = Some(fresh.clone());
                fresh
            }
            Err(e) => {
                tracing::warn!(provider = %self.info.id, error = %e, "signing keys are stale and could not be refreshed");
                current
            }
        }
    }

    /// Refetches the JWKS after a token named a key we do not know, unless
    /// that happened less than a minute ago. Returns the new state if refetched.
    async fn refetch_keys(&self, seen: &Arc<Discovered>) -> Option<Arc<Discovered>> {
        let _guard = self.refresh.lock().await;
        let current = self.cache.read().await.clone()?;
        if !Arc::ptr_eq(&current, seen) {
            // Someone else refreshed meanwhile.
            return Some(current);
        }
        if current
            .keys_refetched
            .is_some_and(|t| t.elapsed() < JWKS_REFETCH_MIN_INTERVAL)
        {
            return None;
        }
        match self.fetch_keys(&current.jwks_uri).await {
            Ok(keys) => {
                let d = Arc::new(current.with_keys(keys, Some(Instant::now())));
                *self.cache.write().await = Some(d.clone());
                tracing::info!(provider = %self.info.id, "refetched signing keys for an unknown key id");
                Some(d)
            }
            Err(e) => {
                tracing::warn!(provider = %self.info.id, error = %e, "signing key refetch failed");
                // Do not retry on every forged token either.
                let same = Keys {
                    set: current.keys.clone(),
                    expire: current.keys_expire,
                };
                *self.cache.write().await =
                    Some(Arc::new(current.with_keys(same, Some(Instant::now()))));
                None
            }
        }
    }

    fn verify(
        &self,
        d: &Discovered,
        token: &str,
        nonce: &str,
    ) -> Result<id_token::Claims, IdTokenError> {
        let issuers: Vec<&str> = self.accepted_issuers.iter().map(String::as_str).collect();
        let claims = id_token::verify(
            token,
            &d.keys,
            &Expected {
                issuers: &issuers,
                client_id: self.client_id.as_str(),
                nonce,
                now: unix_now(),
                leeway: CLOCK_LEEWAY_SECS,
            },
        )?;
        Ok(claims)
    }

    /// Providers may keep email and profile claims (and groups) out of the
    /// ID token and serve them from the UserInfo endpoint (OIDC Core §5.4;
    /// oidc-provider does by default). Fetched only when the ID token lacks
    /// them; the answer must be about the same `sub` (§5.3.2). Returns the
    /// UserInfo's other claims when it was fetched.
    async fn complete_claims(
        &self,
        d: &Discovered,
        claims: &mut id_token::Claims,
        access_token: &str,
        want_groups: bool,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, ProviderError> {
        let complete =
            claims.profile.email.is_some() && claims.profile.name.is_some() && !want_groups;
        let Some(url) = d.userinfo.as_ref().filter(|_| !complete) else {
            return Ok(None);
        };
        let (body, _) = time_provider(
            &self.info.id,
            Step::Userinfo,
            self.get_json_as(url.as_str(), "userinfo", Some(access_token), MAX_RESPONSE),
        )
        .await?;
        let info: id_token::UserInfo =
            serde_json::from_slice(&body).map_err(|_| ProviderError::Protocol {
                reason: "userinfo response is not a JSON claims object".into(),
            })?;
        if info.sub != claims.sub {
            return Err(ProviderError::InvalidToken {
                reason: "userinfo is about another subject".into(),
            });
        }
        claims.profile.complete_from(info.profile);
        Ok(Some(info.other))
    }

    fn identity(&self, claims: id_token::Claims, groups: Vec<String>) -> Identity {
        let p = claims.profile;
        let verified = p.email_verified.as_ref().is_some_and(|f| f.is_true());
        Identity {
            provider: self.info.id.clone(),
            subject: claims.sub,
            email: if verified {
                clean_whole(p.email.as_deref(), MAX_EMAIL_LEN)
            } else {
                None
            },
            name: clean_text(p.name.as_deref()),
            login: clean_text(p.preferred_username.as_deref()),
            picture: clean_whole(p.picture.as_deref(), MAX_URL_LEN),
            groups,
        }
    }
}

/// `max-age=N` of a Cache-Control value (`no-store`/`no-cache` count as 0).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        let (k, v) = d.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        v.trim()
            .trim_matches('"')
            .parse()
            .ok()
            .map(Duration::from_secs)
    })
}

#[async_trait]
impl Provider for OidcProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn warm_up(&self) -> Result<(), ProviderError> {
        self.discovered().await.map(|_| ())
    }

    async fn ready(&self) -> bool {
        self.cache.read().await.is_some()
    }

    async fn start(&self, login: &mut LoginState) -> Result<url::Url, ProviderError> {
        let d = self.discovered().await?;
        let state = login.state.clone();
        let mut req = d
            .client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().cloned())
            .add_extra_param("nonce", login.nonce.clone());
        if d.pkce {
            let verifier = PkceCodeVerifier::new(login.pkce_verifier.clone());
            req = req.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        }
        // Google pre-selects an account of the one Workspace domain (a
        // hint only: the ID token's `hd` is what is checked).
        if let [domain] = self.hosted_domains.as_slice() {
            req = req.add_extra_param("hd", domain.clone());
        }
        let (url, _) = req.url();
        Ok(url)
    }

    async fn finish(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Identity, ProviderError> {
        self.finish_full(login, params).await.map(|f| f.identity)
    }

    async fn finish_full(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Finished, ProviderError> {
        if let Some(error) = params.get("error") {
            let code = super::error_code(error);
            return Err(if code == "access_denied" {
                ProviderError::Denied { code }
            } else {
                ProviderError::Callback { code }
            });
        }
        // RFC 9207: when the provider names itself, it must be the one we asked.
        if let Some(iss) = params.get("iss") {
            if !self.accepted_issuers.iter().any(|a| a == iss) {
                return Err(ProviderError::WrongIssuer);
            }
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(ProviderError::MissingCode)?;
        let d = self.current_keys(self.discovered().await?).await;
        let mut req = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()));
        if d.pkce {
            req = req.set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()));
        }
        let token = time_provider(
            &self.info.id,
            Step::Token,
            req.request_async(&TokenClient(&self.http)),
        )
        .await
        .map_err(|e| super::token_error(e, super::unparsable_token_response))?;
        let raw =
            token
                .extra_fields()
                .id_token
                .as_deref()
                .ok_or_else(|| ProviderError::Protocol {
                    reason: "no id_token in the token response".into(),
                })?;
        let claims = match self.verify(&d, raw, &login.nonce) {
            Ok(claims) => claims,
            Err(IdTokenError::UnknownKey) => {
                // The provider may have rotated its keys.
                let Some(fresh) = self.refetch_keys(&d).await else {
                    return Err(ProviderError::InvalidToken {
                        reason: IdTokenError::UnknownKey.to_string(),
                    });
                };
                self.verify(&fresh, raw, &login.nonce)
                    .map_err(|e| ProviderError::InvalidToken {
                        reason: e.to_string(),
                    })?
            }
            Err(e) => {
                return Err(ProviderError::InvalidToken {
                    reason: e.to_string(),
                })
            }
        };
        let mut claims = claims;
        self.check_hosted_domain(&claims)?;
        let in_token = self.groups_in(&claims.other)?;
        let userinfo = self
            .complete_claims(
                &d,
                &mut claims,
                token.access_token().secret(),
                in_token.is_none(),
            )
            .await?;
        let groups = match (in_token, userinfo) {
            (Some(groups), _) => groups,
            (None, Some(info)) => self.groups_in(&info)?.unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        let id_token = self.sign_out_at_provider.then(|| raw.to_owned());
        let tokens = self.pass_access_token.then(|| {
            let now = unix_now();
            AccessTokens {
                access_token: token.access_token().secret().clone(),
                refresh_token: token.refresh_token().map(|r| r.secret().clone()),
                expires_at: token
                    .expires_in()
                    .map_or(0, |d| now.saturating_add(d.as_secs())),
                obtained_at: now,
            }
        });
        Ok(Finished {
            identity: self.identity(claims, groups),
            id_token,
            tokens,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<AccessTokens, ProviderError> {
        let d = self.discovered().await?;
        let token = d
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .request_async(&TokenClient(&self.http))
            .await
            .map_err(|e| super::token_error(e, super::unparsable_token_response))?;
        let now = unix_now();
        Ok(AccessTokens {
            access_token: token.access_token().secret().clone(),
            // Providers that do not rotate refresh tokens send none back.
            refresh_token: Some(
                token
                    .refresh_token()
                    .map_or_else(|| refresh_token.to_owned(), |r| r.secret().clone()),
            ),
            expires_at: token
                .expires_in()
                .map_or(0, |d| now.saturating_add(d.as_secs())),
            obtained_at: now,
        })
    }

    async fn end_session_url(
        &self,
        id_token: &str,
        post_logout_redirect_uri: &str,
    ) -> Option<url::Url> {
        if !self.sign_out_at_provider {
            return None;
        }
        let d = self.discovered().await.ok()?;
        let mut url = d.end_session.clone()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
            .append_pair("client_id", self.client_id.as_str());
        Some(url)
    }

    fn issued(&self, token_issuer: &str) -> bool {
        self.bearer.is_some() && self.accepted_issuers.iter().any(|i| i == token_issuer)
    }

    async fn bearer(&self, token: &str) -> Result<BearerUser, BearerError> {
        match &self.bearer {
            Some(b) => self.verify_bearer(b, token).await,
            None => Err(BearerError::UnknownIssuer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str, google: bool) -> OidcProvider {
        let p = config::Provider {
            id: "google".into(),
            kind: config::ProviderKind::Google {
                issuer: issuer.into(),
            },
            display_name: "Google".into(),
            client_id: "cid".into(),
            client_secret: ClientSecret::new("s".into()),
            scopes: vec!["email".into(), "openid".into()],
            groups_claim: None,
            hosted_domains: Vec::new(),
            bearer: None,
            sign_out_at_provider: false,
            pass_access_token: false,
        };
        OidcProvider::new(
            &p,
            issuer,
            url::Url::parse("https://app.example.com/oauth2/callback/google").unwrap(),
            reqwest::Client::new(),
            google,
        )
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=21600, must-revalidate"),
            Some(Duration::from_secs(21600))
        );
        assert_eq!(max_age("MAX-AGE=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn google_accepts_both_issuer_spellings() {
        let g = provider(GOOGLE_ISSUER, true);
        assert_eq!(g.accepted_issuers, vec![GOOGLE_ISSUER, GOOGLE_BARE_ISSUER]);
        let o = provider("https://sso.acme.example", false);
        assert_eq!(o.accepted_issuers, vec!["https://sso.acme.example"]);
        assert_eq!(
            o.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            vec!["openid", "email"]
        );
    }
}
