//! Sign in with Facebook: the OAuth dialog, the code exchanged with the app
//! secret in the request body (Facebook's way), then the Graph API's `/me`
//! with `appsecret_proof` so apps with "Require App Secret" work.
//!
//! Endpoints (developers.facebook.com, "Manually Build a Login Flow"):
//! `https://www.facebook.com/{version}/dialog/oauth`,
//! `https://graph.facebook.com/{version}/oauth/access_token`,
//! `https://graph.facebook.com/{version}/me?fields=id,name,email,picture`.
//! `appsecret_proof` ("Securing Graph API Requests"): the hex HMAC-SHA256 of
//! the access token keyed with the app secret.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, RedirectUrl, Scope,
    TokenResponse as _, TokenUrl,
};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

use super::transport::{self, TokenClient, MAX_RESPONSE};
use super::ProviderInfo;
use super::{clean_text, clean_whole, CallbackParams, Provider, ProviderError};
use super::{MAX_EMAIL_LEN, MAX_URL_LEN};
use crate::config;
use crate::identity::Identity;
use crate::metrics::{time_provider, Step};
use crate::pages::Logo;
use crate::session::login_state::LoginState;

type Client = super::OAuth2Client<BasicTokenResponse>;

/// The fields asked of `/me`.
const ME_FIELDS: &str = "id,name,email,picture";

pub struct FacebookProvider {
    info: ProviderInfo,
    client_secret: ClientSecret,
    scopes: Vec<Scope>,
    userinfo: Url,
    oauth2: Client,
    http: reqwest::Client,
}

/// `appsecret_proof`: hex(HMAC-SHA256(key = app secret, message = access token)).
pub fn appsecret_proof(app_secret: &str, access_token: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(access_token.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Graph API error object: `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`
/// (developers.facebook.com, "Graph API: Handling Errors").
#[derive(Debug, Deserialize)]
struct GraphError {
    error: GraphErrorBody,
}

#[derive(Debug, Deserialize)]
struct GraphErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    fbtrace_id: Option<String>,
    #[serde(default)]
    is_transient: Option<bool>,
}

impl FacebookProvider {
    pub fn new(
        p: &config::Provider,
        fb: &config::Facebook,
        redirect: Url,
        http: reqwest::Client,
    ) -> Self {
        let oauth2 = BasicClient::new(ClientId::new(p.client_id.clone()))
            .set_client_secret(p.client_secret.clone())
            .set_auth_uri(AuthUrl::from_url(fb.authorize_url.clone()))
            .set_token_uri(TokenUrl::from_url(fb.token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(redirect))
            .set_auth_type(AuthType::RequestBody);
        FacebookProvider {
            info: ProviderInfo::new(p, Logo::Facebook),
            client_secret: p.client_secret.clone(),
            scopes: p.scopes.iter().map(|s| Scope::new(s.clone())).collect(),
            userinfo: fb.userinfo_url.clone(),
            oauth2,
            http,
        }
    }

    /// A provider error from a Graph error object, logged with Facebook's
    /// code and trace id.
    fn graph_error(&self, what: &str, status: u16, body: &[u8]) -> ProviderError {
        let parsed = serde_json::from_slice::<GraphError>(body).ok();
        let (code, subcode, kind, trace, transient) = match &parsed {
            Some(g) => (
                g.error.code,
                g.error.error_subcode,
                g.error.kind.as_deref().unwrap_or("-"),
                g.error.fbtrace_id.as_deref().unwrap_or("-"),
                g.error.is_transient.unwrap_or(false),
            ),
            None => (None, None, "-", "-", false),
        };
        tracing::warn!(
            provider = %self.info.id,
            call = what,
            http_status = status,
            fb_code = code.unwrap_or(0),
            fb_subcode = subcode.unwrap_or(0),
            fb_type = %kind.chars().filter(|c| c.is_ascii_alphanumeric()).take(40).collect::<String>(),
            fbtrace_id = %trace.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(40).collect::<String>(),
            "Facebook answered with an error"
        );
        // 2 "temporary issue", 4/17/32/613 rate limits (Graph API "Handling
        // Errors"), or anything Facebook marks transient: an outage, not a refusal.
        if status >= 500 || transient || matches!(code, Some(2 | 4 | 17 | 32 | 613)) {
            return ProviderError::Unavailable {
                context: format!("{what}: Facebook error {}", code.unwrap_or(0)),
            };
        }
        match code {
            // 1 "Error validating client secret"; 101 "Error validating
            // application"; 100 with appsecret_proof messages: our app
            // credentials are wrong.
            Some(1) | Some(101) => ProviderError::Rejected {
                code: "invalid_client".into(),
            },
            Some(c) => ProviderError::Rejected {
                code: format!("graph_{c}"),
            },
            None => ProviderError::Protocol {
                reason: format!("{what}: HTTP {status} without a Graph error object"),
            },
        }
    }
}

#[async_trait]
impl Provider for FacebookProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, login: &mut LoginState) -> Result<Url, ProviderError> {
        let state = login.state.clone();
        let (url, _) = self
            .oauth2
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().cloned())
            .url();
        Ok(url)
    }

    async fn finish(
        &self,
        _login: &LoginState,
        params: &CallbackParams,
    ) -> Result<Identity, ProviderError> {
        // Denial: error=access_denied&error_reason=user_denied. Some failures
        // come as error_code=...&error_message=... with no `error` at all.
        if let Some(error) = params.get("error") {
            let code = super::error_code(error);
            let reason = params.get("error_reason").map(super::error_code);
            tracing::info!(provider = %self.info.id, error = %code, reason = reason.as_deref().unwrap_or("-"), "Facebook callback error");
            return Err(if code == "access_denied" {
                ProviderError::Denied { code }
            } else {
                ProviderError::Callback { code }
            });
        }
        if let Some(code) = params.get("error_code") {
            let code = format!("fb_{}", super::error_code(code));
            return Err(ProviderError::Callback { code });
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(ProviderError::MissingCode)?;
        let exchange = self
            .oauth2
            .exchange_code(AuthorizationCode::new(code.to_owned()));
        let token = time_provider(
            &self.info.id,
            Step::Token,
            exchange.request_async(&TokenClient(&self.http)),
        )
        .await
        .map_err(|e| {
            // Facebook's errors are Graph error objects, which the
            // oauth2 crate cannot parse as RFC 6749 errors.
            super::token_error(e, |body| self.graph_error("oauth/access_token", 400, body))
        })?;
        let access = token.access_token().secret();
        let mut url = self.userinfo.clone();
        url.query_pairs_mut()
            .append_pair("fields", ME_FIELDS)
            .append_pair(
                "appsecret_proof",
                &appsecret_proof(self.client_secret.secret(), access),
            );
        let resp = time_provider(
            &self.info.id,
            Step::Userinfo,
            self.http.get(url.as_str()).bearer_auth(access).send(),
        )
        .await
        .map_err(|e| ProviderError::Unavailable {
            context: format!("/me: {}", transport::transport_error(e)),
        })?;
        let status = resp.status();
        let body = transport::read_capped(resp, MAX_RESPONSE, "/me").await?;
        if !status.is_success() {
            return Err(self.graph_error("/me", status.as_u16(), &body));
        }
        #[derive(Deserialize)]
        struct Me {
            id: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            email: Option<String>,
            #[serde(default)]
            picture: Option<Picture>,
        }
        #[derive(Deserialize)]
        struct Picture {
            data: PictureData,
        }
        #[derive(Deserialize)]
        struct PictureData {
            #[serde(default)]
            url: Option<String>,
        }
        let me: Me = serde_json::from_slice(&body).map_err(|_| ProviderError::Protocol {
            reason: "/me did not return a user".into(),
        })?;
        if !super::usable_subject(&me.id) || !me.id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProviderError::Protocol {
                reason: "Facebook returned an unusable user id".into(),
            });
        }
        Ok(Identity {
            provider: self.info.id.clone(),
            subject: me.id,
            // Facebook returns only confirmed addresses ("email" on the User
            // node), and none for phone-only accounts or a declined permission.
            email: clean_whole(me.email.as_deref(), MAX_EMAIL_LEN),
            name: clean_text(me.name.as_deref()),
            login: None,
            picture: clean_whole(me.picture.and_then(|p| p.data.url).as_deref(), MAX_URL_LEN),
            groups: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the issue (secret `secret`, token `token`).
    #[test]
    fn appsecret_proof_vector() {
        assert_eq!(
            appsecret_proof("secret", "token"),
            "e941110e3d2bfe82621f0e3e1434730d7305d106c5f68c87165d0b27a4611a4a"
        );
    }
}
