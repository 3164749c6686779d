//! Identity providers: a small trait, the errors they end in, and the
//! construction of every configured provider.

mod bearer_cache;
mod facebook;
pub mod groups;
pub mod id_token;
pub mod oauth1;
mod oidc;
mod transport;
mod twitter;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{ProviderKind, Settings};
use crate::identity::Identity;
use crate::pages::Logo;
use crate::session::login_state::LoginState;

pub use facebook::{appsecret_proof, FacebookProvider};
pub use oidc::OidcProvider;
pub use twitter::TwitterProvider;

/// Identity values (see README, "Limits on identity values"). A name or
/// handle longer than this is cut at a character boundary.
pub const MAX_TEXT_LEN: usize = 512;
/// A longer email address is left out, never cut (254: the longest address
/// RFC 5321 can deliver).
pub const MAX_EMAIL_LEN: usize = 254;
/// A longer picture URL is left out, never cut (a cut URL is a broken one).
pub const MAX_URL_LEN: usize = 2048;
/// A longer user id refuses the sign-in (OpenID Connect's limit for `sub`).
pub const MAX_SUBJECT_LEN: usize = 255;

/// The query parameters of a callback, as sent by the provider.
#[derive(Default)]
pub struct CallbackParams {
    pairs: Vec<(String, String)>,
}

impl CallbackParams {
    /// Parses a raw query string. Bounded: at most 32 parameters are kept.
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .take(32)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        CallbackParams { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Codes and tokens travel here: show names only.
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

/// How a sign-in with a provider can fail. Messages never carry codes,
/// tokens or secrets; `code` fields hold the provider's error code.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The user declined at the provider (`error=access_denied`, X's `denied=`).
    #[error("the sign-in was cancelled at the provider ({code})")]
    Denied { code: String },
    /// The provider sent the browser back with an error other than a denial.
    #[error("the provider returned an error ({code})")]
    Callback { code: String },
    /// The callback carried no authorization code.
    #[error("the callback carried no authorization code")]
    MissingCode,
    /// The callback's `iss` parameter (RFC 9207) names another issuer.
    #[error("the callback came from another issuer")]
    WrongIssuer,
    /// The provider could not be reached or answered with a server error.
    #[error("the provider is unavailable: {context}")]
    Unavailable { context: String },
    /// The token endpoint refused the request (`invalid_grant`, `invalid_client`, ...).
    #[error("the provider rejected the token request ({code})")]
    Rejected { code: String },
    /// The ID token (or the identity) failed verification.
    #[error("the identity token is not valid: {reason}")]
    InvalidToken { reason: String },
    /// The provider answered with something we cannot use.
    #[error("the provider sent an unusable response: {reason}")]
    Protocol { reason: String },
    /// The provider vouched for the user, but not in a way this site can
    /// accept: answered 403.
    #[error("{0}")]
    NotAccepted(NotAccepted),
}

/// Why a verified sign-in is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAccepted {
    /// `hosted_domains`: the Google account's `hd` claim (absent for
    /// consumer accounts) is not one of them.
    #[error("hosted domain not allowed: the ID token's hd claim is {}, not one of hosted_domains", .hd.as_deref().map_or("absent (a consumer Google account)".to_owned(), |d| format!("{d:?}")))]
    HostedDomain { hd: Option<String> },
    /// Entra ID's groups overage: the token names a separate source for the
    /// groups claim instead of carrying it (more than 200 groups).
    #[error("groups overage: the ID token carries no {claim:?} claim but points to another source for it (_claim_names/_claim_sources, or hasgroups), as Entra ID does for users in more than 200 groups; the user's groups cannot be known")]
    GroupsOverage { claim: String },
}

impl ProviderError {
    /// The HTTP status of the error page. One exhaustive place.
    pub fn status(&self) -> u16 {
        match self {
            ProviderError::Denied { .. } => 401,
            ProviderError::Callback { .. } => 400,
            ProviderError::MissingCode => 400,
            ProviderError::WrongIssuer => 400,
            ProviderError::Unavailable { .. } => 502,
            ProviderError::Rejected { code } if code == "invalid_client" => 502,
            ProviderError::Rejected { .. } => 400,
            ProviderError::InvalidToken { .. } => 401,
            ProviderError::Protocol { .. } => 502,
            ProviderError::NotAccepted(_) => 403,
        }
    }

    /// A short sentence for the person in front of the browser.
    pub fn user_message(&self) -> &'static str {
        match self {
            ProviderError::Denied { .. } => {
                "The sign-in was cancelled. You can try again or pick another provider."
            }
            ProviderError::Callback { .. } | ProviderError::MissingCode => {
                "The provider could not complete the sign-in."
            }
            ProviderError::WrongIssuer => "The sign-in response did not come from the expected provider.",
            ProviderError::Unavailable { .. } => {
                "The sign-in provider is not reachable right now. Please try again in a moment."
            }
            ProviderError::Rejected { code } if code == "invalid_client" => {
                "The sign-in provider rejected this site's credentials. The site's administrator has been told."
            }
            ProviderError::Rejected { .. } => {
                "The sign-in code was not accepted; it may have expired or been used already."
            }
            ProviderError::InvalidToken { .. } => "The identity returned by the provider could not be verified.",
            ProviderError::Protocol { .. } => "The sign-in provider sent a response that could not be used.",
            ProviderError::NotAccepted(NotAccepted::HostedDomain { .. }) => {
                "This Google account does not belong to an organisation that may use this site. Sign in with your work account."
            }
            ProviderError::NotAccepted(NotAccepted::GroupsOverage { .. }) => {
                "Your account is a member of more groups than the sign-in provider can list (groups overage), so your access cannot be checked. Ask the site's administrator to send only the groups this application needs."
            }
        }
    }
}

/// What every provider shows of itself: its id, name and button logo.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    /// The table name: the id in URLs and in `X-User`.
    pub id: String,
    pub display_name: String,
    pub logo: Logo,
}

impl ProviderInfo {
    pub fn new(p: &crate::config::Provider, logo: Logo) -> ProviderInfo {
        ProviderInfo {
            id: p.id.clone(),
            display_name: p.display_name.clone(),
            logo,
        }
    }
}

/// One configured sign-in provider.
#[async_trait]
pub trait Provider: Send + Sync {
    fn info(&self) -> &ProviderInfo;
    /// The table name: the id in URLs and in `X-User`.
    fn id(&self) -> &str {
        &self.info().id
    }
    fn display_name(&self) -> &str {
        &self.info().display_name
    }
    fn logo(&self) -> Logo {
        self.info().logo
    }
    /// Fetches what the provider needs before its first sign-in (discovery,
    /// keys). Called at start-up, with retries, off the request path.
    async fn warm_up(&self) -> Result<(), ProviderError> {
        Ok(())
    }
    /// Whether the provider can take sign-ins now (for `/readyz`).
    async fn ready(&self) -> bool {
        true
    }
    /// The URL to send the browser to. May record provider data in `login`
    /// (it is sealed into the login-state cookie).
    async fn start(&self, login: &mut LoginState) -> Result<url::Url, ProviderError>;
    /// Completes the sign-in from the callback's parameters.
    async fn finish(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Identity, ProviderError>;
    /// As [`Provider::finish`], also returning the raw ID token when the
    /// provider needs it at sign-out (`sign_out_at_provider`) and the
    /// tokens for `pass_access_token`.
    async fn finish_full(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Finished, ProviderError> {
        self.finish(login, params).await.map(|identity| Finished {
            identity,
            id_token: None,
            tokens: None,
        })
    }
    /// `pass_access_token`: new tokens for a refresh token.
    async fn refresh(&self, _refresh_token: &str) -> Result<AccessTokens, ProviderError> {
        Err(ProviderError::Protocol {
            reason: "this provider does not refresh tokens".into(),
        })
    }
    /// With `sign_out_at_provider` and an end_session_endpoint: where to
    /// send the browser to end the provider's session too.
    async fn end_session_url(
        &self,
        _id_token: &str,
        _post_logout_redirect_uri: &str,
    ) -> Option<url::Url> {
        None
    }
    /// With `accept_bearer_tokens`: whether this provider issued `token`
    /// (by its unverified `iss`). Providers without bearer tokens: never.
    fn issued(&self, _token_issuer: &str) -> bool {
        false
    }
    /// With `accept_bearer_tokens`: the user a bearer token stands for,
    /// verified with this provider's keys.
    async fn bearer(&self, _token: &str) -> Result<BearerUser, id_token::BearerError> {
        Err(id_token::BearerError::UnknownIssuer)
    }
}

pub use crate::access_token::AccessTokens;

/// What a sign-in produced.
#[derive(Debug)]
pub struct Finished {
    pub identity: Identity,
    /// `sign_out_at_provider`: the raw ID token for the end-session request.
    pub id_token: Option<String>,
    /// `pass_access_token`: the provider's tokens.
    pub tokens: Option<AccessTokens>,
}

/// An API client authenticated by a bearer token.
#[derive(Debug, Clone)]
pub struct BearerUser {
    pub identity: Identity,
    /// The token's `exp` (unix seconds).
    pub expires_at: u64,
    /// `pass_authorization_header` of the provider that issued it.
    pub pass_authorization: bool,
}

/// Every configured provider, in config order, with lookup by id.
pub struct Providers {
    list: Vec<Arc<dyn Provider>>,
    by_id: HashMap<String, usize>,
    /// Indexes of the providers with `accept_bearer_tokens`.
    bearer: Vec<usize>,
    /// This set's key in the per-thread cache of verified bearer tokens.
    generation: u64,
}

impl Providers {
    /// Do any providers accept bearer tokens?
    pub fn accept_bearer(&self) -> bool {
        !self.bearer.is_empty()
    }

    /// Verifies a bearer token with the keys of the provider (with
    /// `accept_bearer_tokens`) whose issuer it names.
    /// A token verified on this thread within the last minute (and not
    /// expired) is taken from a cache ([`bearer_cache`]).
    pub async fn verify_bearer(&self, token: &str) -> Result<BearerUser, id_token::BearerError> {
        let now = crate::session::unix_now();
        if let Some(user) = bearer_cache::get(self.generation, token, now) {
            return Ok(user);
        }
        let user = self.verify_bearer_uncached(token).await?;
        bearer_cache::put(self.generation, token, &user, now);
        Ok(user)
    }

    async fn verify_bearer_uncached(
        &self,
        token: &str,
    ) -> Result<BearerUser, id_token::BearerError> {
        if !id_token::looks_like_jwt(token) {
            return Err(id_token::BearerError::NotJwt);
        }
        let iss = id_token::unverified_issuer(token).ok_or(id_token::BearerError::Invalid(
            id_token::IdTokenError::Malformed,
        ))?;
        for &i in &self.bearer {
            let p = &self.list[i];
            if p.issued(&iss) {
                return p.bearer(token).await;
            }
        }
        Err(id_token::BearerError::UnknownIssuer)
    }

    pub fn build(settings: &Settings, http: &reqwest::Client) -> Result<Self, url::ParseError> {
        let mut list: Vec<Arc<dyn Provider>> = Vec::new();
        for p in &settings.providers {
            let redirect = url::Url::parse(&settings.server.callback_url(&p.id))?;
            let provider: Arc<dyn Provider> = match &p.kind {
                ProviderKind::Google { issuer } => {
                    Arc::new(OidcProvider::google(p, issuer, redirect, http.clone()))
                }
                ProviderKind::Oidc { issuer } => {
                    Arc::new(OidcProvider::generic(p, issuer, redirect, http.clone()))
                }
                ProviderKind::Twitter(x) => {
                    Arc::new(TwitterProvider::new(p, x, redirect, http.clone()))
                }
                ProviderKind::Facebook(fb) => {
                    Arc::new(FacebookProvider::new(p, fb, redirect, http.clone()))
                }
            };
            list.push(provider);
        }
        let by_id = list
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id().to_owned(), i))
            .collect();
        let bearer = settings
            .providers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.bearer.is_some())
            .map(|(i, _)| i)
            .collect();
        Ok(Providers {
            list,
            by_id,
            bearer,
            generation: bearer_cache::next_generation(),
        })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn Provider>> {
        self.by_id.get(id).and_then(|&i| self.list.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.list.iter()
    }
}

/// Warms every provider up at start-up, each with its own retry loop and
/// exponential back-off (1 s doubling to 60 s), until it succeeds or the
/// server shuts down. Sign-ins do not wait for this: a provider that is still
/// down answers its button with a "provider unavailable" page.
pub async fn warm_up_all(providers: &Providers, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for p in providers.iter() {
        let p = p.clone();
        tasks.spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match p.warm_up().await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(provider = p.id(), error = %e, retry_in = ?delay, "provider not ready");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        });
    }
    tokio::select! {
        _ = async { while tasks.join_next().await.is_some() {} } => {}
        _ = shutdown.changed() => tasks.abort_all(),
    }
}

/// The one HTTP client for talking to providers: rustls, timeouts, and no
/// redirects (a provider endpoint that redirects is an SSRF hazard).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A provider-supplied text value (name, handle) for an identity header:
/// control characters stripped, trimmed, and cut at a character boundary
/// to [`MAX_TEXT_LEN`] bytes. `None` when nothing is left.
pub fn clean_text(value: Option<&str>) -> Option<String> {
    let mut v = crate::identity::sanitize(value?);
    if v.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
        // The cut may leave trailing whitespace.
        v.truncate(v.trim_end().len());
    }
    (!v.is_empty()).then_some(v)
}

/// A provider-supplied value that is useless when cut (an email address, a
/// URL): control characters stripped and trimmed, then left out entirely
/// when longer than `max` bytes. `None` when empty or too long.
pub fn clean_whole(value: Option<&str>, max: usize) -> Option<String> {
    let v = crate::identity::sanitize(value?);
    (!v.is_empty() && v.len() <= max).then_some(v)
}

/// Whether a provider's user id can be the subject of `X-User`: not empty,
/// at most [`MAX_SUBJECT_LEN`] bytes. (Never cut: a cut id is someone else's.)
pub fn usable_subject(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SUBJECT_LEN
}

/// An OAuth 2.0 client with authorization and token endpoints set, for a
/// token response type `TR` (plain for X and Facebook, with `id_token` for OIDC).
pub(crate) type OAuth2Client<TR> = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    TR,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// A token-endpoint failure as a provider error. RFC 6749 error codes are
/// kept (`unauthorized_client`, which X answers to a bad secret, counts as
/// `invalid_client`; the outage codes as unavailable); a body the oauth2
/// crate could not parse goes to `unparsed` (Facebook's Graph errors).
pub(crate) fn token_error(
    e: oauth2::RequestTokenError<ProviderError, oauth2::basic::BasicErrorResponse>,
    unparsed: impl FnOnce(&[u8]) -> ProviderError,
) -> ProviderError {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            let code = error_code(r.error().as_ref());
            match code.as_str() {
                "server_error" | "temporarily_unavailable" | "internal_failure" => {
                    ProviderError::Unavailable {
                        context: format!("token endpoint answered {code}"),
                    }
                }
                "unauthorized_client" => ProviderError::Rejected {
                    code: "invalid_client".into(),
                },
                _ => ProviderError::Rejected { code },
            }
        }
        // Our own client's errors (transport::TokenClient): already without URLs.
        oauth2::RequestTokenError::Request(e) => e,
        oauth2::RequestTokenError::Parse(_, body) => unparsed(&body),
        oauth2::RequestTokenError::Other(m) => ProviderError::Protocol { reason: m },
    }
}

/// For providers whose errors are RFC 6749 JSON: an unparsable body is a protocol error.
pub(crate) fn unparsable_token_response(body: &[u8]) -> ProviderError {
    ProviderError::Protocol {
        reason: format!("token response is not valid JSON ({} bytes)", body.len()),
    }
}

/// An error and its causes on one line. For a `reqwest::Error`, use
/// [`transport::transport_error`], which leaves out the URL.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Provider error codes are logged and shown: keep them to a short token.
pub(crate) fn error_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_are_cut_at_a_character_boundary() {
        assert_eq!(clean_text(Some("  Alice\r\n ")).as_deref(), Some("Alice"));
        assert_eq!(clean_text(Some(" \t ")), None);
        assert_eq!(clean_text(None), None);
        let fits = "a".repeat(MAX_TEXT_LEN);
        assert_eq!(clean_text(Some(&fits)), Some(fits.clone()));
        let long = format!("{fits}b");
        assert_eq!(clean_text(Some(&long)), Some(fits));
        // A 3-byte character straddling the cap is left out whole.
        let straddling = format!("{}€tail", "a".repeat(MAX_TEXT_LEN - 1));
        let cut = clean_text(Some(&straddling)).unwrap_or_default();
        assert_eq!(cut, "a".repeat(MAX_TEXT_LEN - 1));
        // A cut that ends in a space is trimmed.
        let spaced = format!("{} x{}", "a".repeat(MAX_TEXT_LEN - 1), "y".repeat(10));
        assert_eq!(
            clean_text(Some(&spaced)).as_deref(),
            Some(&*"a".repeat(MAX_TEXT_LEN - 1))
        );
    }

    #[test]
    fn urls_and_emails_are_dropped_when_too_long_never_cut() {
        let base = "https://cdn.example/avatar/";
        let fits = format!("{base}{}", "p".repeat(MAX_URL_LEN - base.len()));
        assert_eq!(clean_whole(Some(&fits), MAX_URL_LEN), Some(fits.clone()));
        assert_eq!(clean_whole(Some(&format!("{fits}q")), MAX_URL_LEN), None);
        assert_eq!(
            clean_whole(Some(" https://x.example/a.png\n"), MAX_URL_LEN).as_deref(),
            Some("https://x.example/a.png")
        );
        let local = "l".repeat(64);
        let domain = format!("{}.example", "d".repeat(MAX_EMAIL_LEN - 64 - 1 - 8));
        let email = format!("{local}@{domain}");
        assert_eq!(email.len(), MAX_EMAIL_LEN);
        assert_eq!(
            clean_whole(Some(&email), MAX_EMAIL_LEN),
            Some(email.clone())
        );
        assert_eq!(clean_whole(Some(&format!("x{email}")), MAX_EMAIL_LEN), None);
        assert_eq!(clean_whole(Some(""), MAX_EMAIL_LEN), None);
    }

    #[test]
    fn user_ids_are_refused_when_too_long() {
        assert!(usable_subject("10158234567890123"));
        assert!(usable_subject(&"1".repeat(MAX_SUBJECT_LEN)));
        assert!(!usable_subject(&"1".repeat(MAX_SUBJECT_LEN + 1)));
        assert!(!usable_subject(""));
    }

    #[test]
    fn identity_caps_are_the_documented_ones() {
        assert_eq!(
            (MAX_TEXT_LEN, MAX_EMAIL_LEN, MAX_URL_LEN, MAX_SUBJECT_LEN),
            (512, 254, 2048, 255)
        );
        assert_eq!(
            (transport::MAX_DOCUMENT, transport::MAX_RESPONSE),
            (512 * 1024, 256 * 1024)
        );
    }
}
