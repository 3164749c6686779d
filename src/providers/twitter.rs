//! Sign in with X (Twitter): OAuth 2.0 with PKCE (the default), or OAuth
//! 1.0a ("Log in with X") for existing apps. Endpoints are X's unless
//! overridden in the config (see `config::Twitter` for the defaults).
//!
//! OAuth 2.0 (developer.x.com, "OAuth 2.0 Authorization Code Flow with
//! PKCE"): authorize with S256 PKCE (X requires it), exchange the code at
//! once (it lives 30 s) with HTTP Basic client authentication, then
//! `GET /2/users/me?user.fields=...`.
//! OAuth 1.0a ("Log in with X", "Authentication"): a signed
//! `POST oauth/request_token` with `oauth_callback`, the browser to
//! `oauth/authenticate`, then `POST oauth/access_token` with the verifier,
//! then `GET 1.1/account/verify_credentials.json?include_email=true`.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _, TokenUrl,
};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use url::Url;

use super::oauth1::{self, Credentials};
use super::transport::{self, TokenClient, MAX_RESPONSE};
use super::ProviderInfo;
use super::{clean_text, clean_whole, CallbackParams, Provider, ProviderError};
use super::{MAX_EMAIL_LEN, MAX_URL_LEN};
use crate::config::{self, XProtocol};
use crate::identity::Identity;
use crate::metrics::{time_provider, Step};
use crate::pages::Logo;
use crate::session::login_state::LoginState;

type Client = super::OAuth2Client<BasicTokenResponse>;

/// The scope that lets `/2/users/me` return `confirmed_email`.
const EMAIL_SCOPE: &str = "users.email";

pub struct TwitterProvider {
    info: ProviderInfo,
    protocol: XProtocol,
    client_id: String,
    client_secret: ClientSecret,
    scopes: Vec<Scope>,
    wants_email: bool,
    redirect: Url,
    endpoints: Endpoints,
    oauth2: Client,
    http: reqwest::Client,
}

struct Endpoints {
    authorize: Url,
    userinfo: Url,
    request_token: Url,
    access_token: Url,
}

impl TwitterProvider {
    pub fn new(
        p: &config::Provider,
        x: &config::Twitter,
        redirect: Url,
        http: reqwest::Client,
    ) -> Self {
        let oauth2 = BasicClient::new(ClientId::new(p.client_id.clone()))
            .set_client_secret(p.client_secret.clone())
            .set_auth_uri(AuthUrl::from_url(x.authorize_url.clone()))
            .set_token_uri(TokenUrl::from_url(x.token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(redirect.clone()))
            .set_auth_type(AuthType::BasicAuth);
        TwitterProvider {
            info: ProviderInfo::new(p, Logo::X),
            protocol: x.protocol,
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone(),
            scopes: p.scopes.iter().map(|s| Scope::new(s.clone())).collect(),
            wants_email: p.scopes.iter().any(|s| s == EMAIL_SCOPE),
            redirect,
            endpoints: Endpoints {
                authorize: x.authorize_url.clone(),
                userinfo: x.userinfo_url.clone(),
                request_token: x.request_token_url.clone(),
                access_token: x.access_token_url.clone(),
            },
            oauth2,
            http,
        }
    }

    // ---- OAuth 2.0 ----------------------------------------------------

    fn start_oauth2(&self, login: &LoginState) -> Url {
        let state = login.state.clone();
        let verifier = PkceCodeVerifier::new(login.pkce_verifier.clone());
        let (url, _) = self
            .oauth2
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier))
            .url();
        url
    }

    async fn finish_oauth2(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Identity, ProviderError> {
        if let Some(error) = params.get("error") {
            let code = super::error_code(error);
            return Err(if code == "access_denied" {
                ProviderError::Denied { code }
            } else {
                ProviderError::Callback { code }
            });
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(ProviderError::MissingCode)?;
        let exchange = self
            .oauth2
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()));
        let token = time_provider(
            &self.info.id,
            Step::Token,
            exchange.request_async(&TokenClient(&self.http)),
        )
        .await
        .map_err(|e| super::token_error(e, super::unparsable_token_response))?;

        let mut url = self.endpoints.userinfo.clone();
        let fields = if self.wants_email {
            "profile_image_url,confirmed_email"
        } else {
            "profile_image_url"
        };
        url.query_pairs_mut().append_pair("user.fields", fields);
        let resp = time_provider(
            &self.info.id,
            Step::Userinfo,
            self.http
                .get(url.as_str())
                .bearer_auth(token.access_token().secret())
                .send(),
        )
        .await;
        let body = read_api(resp, "users/me").await?;
        #[derive(Deserialize)]
        struct Me {
            data: MeData,
        }
        #[derive(Deserialize)]
        struct MeData {
            id: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            profile_image_url: Option<String>,
            #[serde(default)]
            confirmed_email: Option<String>,
        }
        let me: Me = serde_json::from_slice(&body).map_err(|_| ProviderError::Protocol {
            reason: "users/me did not return a user".into(),
        })?;
        self.identity(
            me.data.id,
            me.data.name,
            me.data.username,
            me.data.profile_image_url,
            me.data.confirmed_email,
        )
    }

    // ---- OAuth 1.0a ---------------------------------------------------

    fn consumer(&self) -> Credentials<'_> {
        Credentials {
            consumer_key: &self.client_id,
            consumer_secret: self.client_secret.secret(),
            token: None,
            token_secret: None,
        }
    }

    /// Sends an OAuth 1.0a-signed request and reads X's answer.
    async fn signed(
        &self,
        method: reqwest::Method,
        url: &Url,
        creds: &Credentials<'_>,
        extra: &[(&str, &str)],
        what: &str,
        step: Step,
    ) -> Result<Vec<u8>, ProviderError> {
        let header = oauth1::authorization_header(
            method.as_str(),
            url,
            &[],
            creds,
            extra,
            &oauth1::nonce(),
            unix_time(),
        );
        // Timed like the OAuth 2.0 steps (request and access token: `token`;
        // verify_credentials: `userinfo`).
        time_provider(&self.info.id, step, async {
            let resp = self
                .http
                .request(method, url.as_str())
                .header(http::header::AUTHORIZATION, header)
                .send()
                .await;
            read_api(resp, what).await
        })
        .await
    }

    async fn start_oauth1(&self, login: &mut LoginState) -> Result<Url, ProviderError> {
        // X appends oauth_token and oauth_verifier to this URL's query; the
        // state finds this login's cookie again.
        let mut callback = self.redirect.clone();
        callback
            .query_pairs_mut()
            .append_pair("state", &login.state);
        let body = self
            .signed(
                reqwest::Method::POST,
                &self.endpoints.request_token,
                &self.consumer(),
                &[("oauth_callback", callback.as_str())],
                "oauth/request_token",
                Step::Token,
            )
            .await?;
        let request = oauth1::request_token_response(&body)?;
        // The request-token secret travels sealed in the login-state cookie.
        login.extra = Some(format!("{}\n{}", request.token, request.secret));
        let mut authorize = self.endpoints.authorize.clone();
        authorize
            .query_pairs_mut()
            .append_pair("oauth_token", &request.token);
        Ok(authorize)
    }

    async fn finish_oauth1(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Identity, ProviderError> {
        if params.get("denied").is_some() {
            return Err(ProviderError::Denied {
                code: "denied".into(),
            });
        }
        let (request_token, request_secret) = login
            .extra
            .as_deref()
            .and_then(|e| e.split_once('\n'))
            .ok_or_else(|| ProviderError::Protocol {
                reason: "login state carries no request token".into(),
            })?;
        // The callback must be for the request token issued to this browser.
        let echoed = params.get("oauth_token").unwrap_or_default();
        if !bool::from(echoed.as_bytes().ct_eq(request_token.as_bytes())) {
            return Err(ProviderError::Callback {
                code: "oauth_token_mismatch".into(),
            });
        }
        let verifier = params
            .get("oauth_verifier")
            .filter(|v| !v.is_empty())
            .ok_or(ProviderError::MissingCode)?;
        let creds = Credentials {
            token: Some(request_token),
            token_secret: Some(request_secret),
            ..self.consumer()
        };
        let body = self
            .signed(
                reqwest::Method::POST,
                &self.endpoints.access_token,
                &creds,
                &[("oauth_verifier", verifier)],
                "oauth/access_token",
                Step::Token,
            )
            .await?;
        let access = oauth1::access_token_response(&body)?;

        let mut url = self.endpoints.userinfo.clone();
        url.query_pairs_mut()
            .append_pair("include_email", "true")
            .append_pair("skip_status", "true");
        let creds = Credentials {
            token: Some(&access.token),
            token_secret: Some(&access.secret),
            ..self.consumer()
        };
        let body = self
            .signed(
                reqwest::Method::GET,
                &url,
                &creds,
                &[],
                "account/verify_credentials",
                Step::Userinfo,
            )
            .await?;
        #[derive(Deserialize)]
        struct Account {
            id_str: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            screen_name: Option<String>,
            #[serde(default)]
            profile_image_url_https: Option<String>,
            /// Present only for apps with email access, and only when the
            /// address is verified (X: "verify_credentials", `email`).
            #[serde(default)]
            email: Option<String>,
        }
        let a: Account = serde_json::from_slice(&body).map_err(|_| ProviderError::Protocol {
            reason: "verify_credentials did not return an account".into(),
        })?;
        self.identity(
            a.id_str,
            a.name,
            a.screen_name,
            a.profile_image_url_https,
            a.email,
        )
    }

    fn identity(
        &self,
        id: String,
        name: Option<String>,
        login: Option<String>,
        picture: Option<String>,
        email: Option<String>,
    ) -> Result<Identity, ProviderError> {
        if !super::usable_subject(&id) || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProviderError::Protocol {
                reason: "X returned an unusable user id".into(),
            });
        }
        Ok(Identity {
            provider: self.info.id.clone(),
            subject: id,
            email: clean_whole(email.as_deref(), MAX_EMAIL_LEN),
            name: clean_text(name.as_deref()),
            login: clean_text(login.as_deref()),
            picture: clean_whole(picture.as_deref(), MAX_URL_LEN),
            groups: Vec::new(),
        })
    }
}

#[async_trait]
impl Provider for TwitterProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, login: &mut LoginState) -> Result<Url, ProviderError> {
        match self.protocol {
            XProtocol::OAuth2 => Ok(self.start_oauth2(login)),
            XProtocol::OAuth1 => self.start_oauth1(login).await,
        }
    }

    async fn finish(
        &self,
        login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Identity, ProviderError> {
        match self.protocol {
            XProtocol::OAuth2 => self.finish_oauth2(login, params).await,
            XProtocol::OAuth1 => self.finish_oauth1(login, params).await,
        }
    }
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads an X API answer: the body on success; X's error shapes otherwise
/// (v1.1 `{"errors":[{"code","message"}]}`, v2 problem `{"title","status"}`).
async fn read_api(
    resp: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<Vec<u8>, ProviderError> {
    let resp = resp.map_err(|e| ProviderError::Unavailable {
        context: format!("{what}: {}", transport::transport_error(e)),
    })?;
    let status = resp.status();
    let body = transport::read_capped(resp, MAX_RESPONSE, what).await?;
    if status.is_success() {
        return Ok(body);
    }
    if status.is_server_error() {
        return Err(ProviderError::Unavailable {
            context: format!("{what}: HTTP {status}"),
        });
    }
    #[derive(Deserialize)]
    struct V1 {
        errors: Vec<V1Error>,
    }
    #[derive(Deserialize)]
    struct V1Error {
        code: i64,
    }
    #[derive(Deserialize)]
    struct V2 {
        title: String,
    }
    let code = if let Ok(v1) = serde_json::from_slice::<V1>(&body) {
        match v1.errors.first().map(|e| e.code) {
            // 32 "Could not authenticate you", 89 "Invalid or expired token".
            Some(32) if what == "oauth/request_token" => "invalid_client".to_owned(),
            Some(c) => format!("x_error_{c}"),
            None => format!("http_{}", status.as_u16()),
        }
    } else if let Ok(v2) = serde_json::from_slice::<V2>(&body) {
        super::error_code(&v2.title.replace(' ', "_").to_ascii_lowercase())
    } else if status == reqwest::StatusCode::UNAUTHORIZED && what == "oauth/request_token" {
        "invalid_client".to_owned()
    } else {
        format!("http_{}", status.as_u16())
    };
    Err(ProviderError::Rejected { code })
}
