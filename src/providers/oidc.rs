//! OpenID Connect sign-in (Google and any `kind = "oidc"` provider):
//! discovery, authorization code + PKCE, and a verified ID token.
//!
//! Google's endpoints come from discovery at its issuer,
//! `https://accounts.google.com/.well-known/openid-configuration`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthenticationFlow, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, JsonWebKeySet, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use super::{clean, CallbackParams, Provider, ProviderError};
use crate::config;
use crate::identity::Identity;
use crate::pages::Logo;
use crate::session::login_state::LoginState;

/// Google signs with `iss` either with or without the scheme.
const GOOGLE_BARE_ISSUER: &str = "accounts.google.com";
/// Leeway for `exp` (clock skew between us and the provider).
const CLOCK_LEEWAY: Duration = Duration::from_secs(60);
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
    /// RFC 9207.
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for Extra {}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

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

struct Discovered {
    metadata: Metadata,
    fetched: Instant,
    jwks_fetched: Instant,
}

pub struct OidcProvider {
    id: String,
    display_name: String,
    google: bool,
    issuer: String,
    client_id: ClientId,
    client_secret: ClientSecret,
    scopes: Vec<Scope>,
    redirect: RedirectUrl,
    http: reqwest::Client,
    cache: RwLock<Option<Arc<Discovered>>>,
    refresh: Mutex<()>,
}

impl OidcProvider {
    pub fn google(p: &config::Provider, redirect: url::Url, http: reqwest::Client) -> Self {
        Self::new(p, redirect, http, true)
    }

    pub fn generic(p: &config::Provider, redirect: url::Url, http: reqwest::Client) -> Self {
        Self::new(p, redirect, http, false)
    }

    fn new(p: &config::Provider, redirect: url::Url, http: reqwest::Client, google: bool) -> Self {
        OidcProvider {
            id: p.id.clone(),
            display_name: p.display_name.clone(),
            google,
            issuer: p.issuer.clone(),
            client_id: ClientId::new(p.client_id.clone()),
            client_secret: p.client_secret.clone(),
            scopes: p
                .scopes
                .iter()
                .filter(|s| *s != "openid")
                .map(|s| Scope::new(s.clone()))
                .collect(),
            redirect: RedirectUrl::from_url(redirect),
            http,
            cache: RwLock::new(None),
            refresh: Mutex::new(()),
        }
    }

    /// The discovery document (with its JWKS), fetched on first use and
    /// cached; a failed fetch is retried by the next sign-in.
    async fn discovered(&self) -> Result<Arc<Discovered>, ProviderError> {
        if let Some(d) = self.cache.read().await.as_ref() {
            if d.fetched.elapsed() < METADATA_TTL {
                return Ok(d.clone());
            }
        }
        let _guard = self.refresh.lock().await;
        if let Some(d) = self.cache.read().await.as_ref() {
            if d.fetched.elapsed() < METADATA_TTL {
                return Ok(d.clone());
            }
        }
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|_| ProviderError::Protocol {
            reason: "invalid issuer URL".into(),
        })?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| ProviderError::Unavailable {
                context: format!("discovery at {} failed: {}", self.issuer, error_chain(&e)),
            })?;
        let now = Instant::now();
        let d = Arc::new(Discovered {
            metadata,
            fetched: now,
            jwks_fetched: now,
        });
        *self.cache.write().await = Some(d.clone());
        tracing::info!(provider = %self.id, issuer = %self.issuer, "discovered OpenID provider");
        Ok(d)
    }

    /// Refetches the JWKS after a token named a key we do not know, unless
    /// that happened less than a minute ago. Returns the new state if refetched.
    async fn refetch_jwks(&self, seen: &Arc<Discovered>) -> Option<Arc<Discovered>> {
        let _guard = self.refresh.lock().await;
        let current = self.cache.read().await.clone()?;
        if !Arc::ptr_eq(&current, seen) {
            // Someone else refreshed meanwhile.
            return Some(current);
        }
        if current.jwks_fetched.elapsed() < JWKS_REFETCH_MIN_INTERVAL {
            return None;
        }
        match JsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.http).await {
            Ok(jwks) => {
                let d = Arc::new(Discovered {
                    metadata: current.metadata.clone().set_jwks(jwks),
                    fetched: current.fetched,
                    jwks_fetched: Instant::now(),
                });
                *self.cache.write().await = Some(d.clone());
                tracing::info!(provider = %self.id, "refetched signing keys");
                Some(d)
            }
            Err(e) => {
                tracing::warn!(provider = %self.id, error = %error_chain(&e), "signing key refetch failed");
                None
            }
        }
    }

    fn client(&self, d: &Discovered) -> Client {
        // client_secret_basic unless the provider only offers client_secret_post.
        let methods = d.metadata.token_endpoint_auth_methods_supported();
        let basic_ok = methods
            .is_none_or(|m| m.is_empty() || m.contains(&CoreClientAuthMethod::ClientSecretBasic));
        let auth_type = if basic_ok {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        };
        CoreClient::from_provider_metadata(
            d.metadata.clone(),
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        )
        .set_redirect_uri(self.redirect.clone())
        .set_auth_type(auth_type)
    }

    fn uses_pkce(&self, d: &Discovered) -> bool {
        // Google supports S256 (and says so); for others, follow discovery.
        self.google
            || d.metadata
                .additional_metadata()
                .code_challenge_methods_supported
                .as_ref()
                .is_some_and(|m| m.iter().any(|x| x == "S256"))
    }

    fn issuer_ok(&self, iss: &str) -> bool {
        let configured = self.issuer.trim_end_matches('/');
        let iss_trim = iss.trim_end_matches('/');
        if iss_trim == configured {
            return true;
        }
        // Google: "accounts.google.com" and "https://accounts.google.com" are both its issuer.
        self.google
            && (iss == GOOGLE_BARE_ISSUER && configured == "https://accounts.google.com"
                || configured
                    .strip_prefix("https://")
                    .or(configured.strip_prefix("http://"))
                    == Some(iss_trim))
    }

    fn verify(
        &self,
        d: &Discovered,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: &Nonce,
    ) -> Result<Identity, ClaimsVerificationError> {
        let client = self.client(d);
        let verifier = client
            .id_token_verifier()
            .require_issuer_match(!self.google)
            .set_time_fn(|| {
                chrono::Utc::now() - chrono::Duration::from_std(CLOCK_LEEWAY).unwrap_or_default()
            });
        let claims = id_token.claims(&verifier, nonce)?;
        if self.google && !self.issuer_ok(claims.issuer().as_str()) {
            return Err(ClaimsVerificationError::InvalidIssuer(
                "unexpected issuer".to_owned(),
            ));
        }
        let email = match (claims.email(), claims.email_verified()) {
            (Some(e), Some(true)) => clean(Some(e.as_str())),
            _ => None,
        };
        let subject = claims.subject().as_str();
        if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
            return Err(ClaimsVerificationError::InvalidSubject(
                "unusable subject".to_owned(),
            ));
        }
        Ok(Identity {
            provider: self.id.clone(),
            subject: subject.to_owned(),
            email,
            name: clean(claims.name().and_then(|n| n.get(None)).map(|n| n.as_str())),
            login: clean(claims.preferred_username().map(|u| u.as_str())),
            picture: clean(
                claims
                    .picture()
                    .and_then(|p| p.get(None))
                    .map(|p| p.as_str()),
            ),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[async_trait]
impl Provider for OidcProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn display_name(&self) -> &str {
        &self.display_name
    }

    fn logo(&self) -> Logo {
        if self.google {
            Logo::Google
        } else {
            Logo::OpenId
        }
    }

    async fn start(&self, login: &mut LoginState) -> Result<url::Url, ProviderError> {
        let d = self.discovered().await?;
        let client = self.client(&d);
        let state = login.state.clone();
        let nonce = login.nonce.clone();
        let mut req = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scopes(self.scopes.iter().cloned());
        if self.uses_pkce(&d) {
            let verifier = PkceCodeVerifier::new(login.pkce_verifier.clone());
            req = req.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        }
        let (url, _, _) = req.url();
        Ok(url)
    }

    async fn finish(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Identity, ProviderError> {
        if let Some(error) = params.get("error") {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(if code == "access_denied" {
                ProviderError::Denied { code }
            } else {
                ProviderError::Callback { code }
            });
        }
        // RFC 9207: when the provider names itself, it must be the one we asked.
        if let Some(iss) = params.get("iss") {
            if !self.issuer_ok(iss) {
                return Err(ProviderError::WrongIssuer);
            }
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(ProviderError::MissingCode)?;
        let d = self.discovered().await?;
        let client = self.client(&d);
        let mut req = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| ProviderError::Protocol {
                reason: "the provider has no token endpoint".into(),
            })?;
        if self.uses_pkce(&d) {
            req = req.set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()));
        }
        let token = req.request_async(&self.http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => ProviderError::Rejected {
                code: r.error().as_ref().to_owned(),
            },
            RequestTokenError::Request(e) => ProviderError::Unavailable {
                context: format!("token request failed: {}", error_chain(&e)),
            },
            RequestTokenError::Parse(_, _) => ProviderError::Protocol {
                reason: "token response is not valid JSON".into(),
            },
            RequestTokenError::Other(m) => ProviderError::Protocol { reason: m },
        })?;
        let id_token = openidconnect::TokenResponse::id_token(&token).ok_or_else(|| {
            ProviderError::Protocol {
                reason: "no id_token in the token response".into(),
            }
        })?;
        let nonce = Nonce::new(login.nonce.clone());
        match self.verify(&d, id_token, &nonce) {
            Ok(id) => Ok(id),
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys.
                let Some(fresh) = self.refetch_jwks(&d).await else {
                    return Err(ProviderError::InvalidToken {
                        reason: "signed with an unknown key".into(),
                    });
                };
                self.verify(&fresh, id_token, &nonce)
                    .map_err(|e| ProviderError::InvalidToken {
                        reason: verification_reason(&e),
                    })
            }
            Err(e) => Err(ProviderError::InvalidToken {
                reason: verification_reason(&e),
            }),
        }
    }
}

/// A log-safe reason (the crate's messages may quote claim values).
fn verification_reason(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::Expired(_) => "expired",
        ClaimsVerificationError::InvalidAudience(_) => "wrong audience",
        ClaimsVerificationError::InvalidAuthContext(_) => "invalid acr",
        ClaimsVerificationError::InvalidAuthTime(_) => "invalid auth_time",
        ClaimsVerificationError::InvalidIssuer(_) => "wrong issuer",
        ClaimsVerificationError::InvalidNonce(_) => "wrong nonce",
        ClaimsVerificationError::InvalidSubject(_) => "invalid subject",
        ClaimsVerificationError::Other(_) => "invalid",
        ClaimsVerificationError::SignatureVerification(_) => "bad signature",
        ClaimsVerificationError::Unsupported(_) => "unsupported token",
        _ => "invalid",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str, google: bool) -> OidcProvider {
        let p = config::Provider {
            id: "google".into(),
            kind: config::ProviderKind::Google,
            display_name: "Google".into(),
            client_id: "cid".into(),
            client_secret: ClientSecret::new("s".into()),
            issuer: issuer.into(),
            scopes: vec!["openid".into()],
        };
        OidcProvider::new(
            &p,
            url::Url::parse("https://app.example.com/oauth2/callback/google").unwrap(),
            reqwest::Client::new(),
            google,
        )
    }

    #[test]
    fn google_accepts_both_issuer_spellings() {
        let g = provider("https://accounts.google.com", true);
        assert!(g.issuer_ok("https://accounts.google.com"));
        assert!(g.issuer_ok("accounts.google.com"));
        assert!(!g.issuer_ok("https://accounts.google.com.evil.com"));
        assert!(!g.issuer_ok("evil.com"));
        let o = provider("https://sso.acme.example", false);
        assert!(o.issuer_ok("https://sso.acme.example"));
        assert!(!o.issuer_ok("sso.acme.example"));
    }
}
