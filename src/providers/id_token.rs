//! ID token verification (OpenID Connect Core 1.0 §3.1.3.7): signature
//! against the provider's JWKS, then `iss`, `aud`/`azp`, `exp`, `iat` and
//! `nonce`. The JWS crypto is openidconnect's; the claim checks are here so
//! that Google's scheme-less issuer (`accounts.google.com`) can be accepted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey as _, JsonWebKeySet};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

/// Longest ID token we look at (real ones are 1-2 KB).
const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("malformed")]
    Malformed,
    #[error("signing algorithm not allowed")]
    Algorithm,
    #[error("signed with an unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("wrong nonce")]
    Nonce,
    #[error("unusable subject")]
    Subject,
}

/// What the token must say.
pub struct Expected<'a> {
    /// Accepted `iss` values (exact match).
    pub issuers: &'a [&'a str],
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: u64,
    /// Clock-skew allowance for `exp` and `iat`, seconds.
    pub leeway: u64,
}

/// The claims Portcullis uses.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub aud: Audience,
    #[serde(default)]
    pub azp: Option<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(flatten)]
    pub profile: Profile,
    /// Every other claim (`hd`, the `groups_claim`, `_claim_names`, ...).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The identity claims an ID token or a UserInfo answer may carry.
#[derive(Debug, Default, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<Flag>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
}

impl Profile {
    /// Fills what this profile lacks from `other`; the email and its
    /// verification travel together.
    pub fn complete_from(&mut self, other: Profile) {
        if self.email.is_none() {
            self.email = other.email;
            self.email_verified = other.email_verified;
        }
        self.name = self.name.take().or(other.name);
        self.preferred_username = self.preferred_username.take().or(other.preferred_username);
        self.picture = self.picture.take().or(other.picture);
    }
}

/// A UserInfo response (OIDC Core §5.3.2): the same claims, no token fields.
#[derive(Debug, Deserialize)]
pub struct UserInfo {
    pub sub: String,
    #[serde(flatten)]
    pub profile: Profile,
    /// Every other claim (the `groups_claim` among them).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// `aud` is a string or an array of strings.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

/// Some providers send booleans as strings (`"true"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    pub fn is_true(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(s) => s == "true",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Verifies `token` and returns its claims.
pub fn verify(
    token: &str,
    keys: &JsonWebKeySet<CoreJsonWebKey>,
    expected: &Expected<'_>,
) -> Result<Claims, IdTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(IdTokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(IdTokenError::Malformed)?;
    let alg = allowed_alg(&header.alg)?;
    let signature = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| IdTokenError::Malformed)?;

    // The key: by kid, else the only signing key that fits the algorithm.
    let candidates: Vec<&CoreJsonWebKey> = keys
        .keys()
        .iter()
        .filter(|k| match (&header.kid, k.key_id()) {
            (Some(want), Some(have)) => want == have.as_str(),
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(IdTokenError::UnknownKey);
    }
    let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let verified = candidates
        .iter()
        .any(|k| k.verify_signature(&alg, message, &signature).is_ok());
    if !verified {
        return Err(IdTokenError::BadSignature);
    }

    let claims: Claims = URL_SAFE_NO_PAD
        .decode(p64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(IdTokenError::Malformed)?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

fn allowed_alg(alg: &str) -> Result<CoreJwsSigningAlgorithm, IdTokenError> {
    // Asymmetric algorithms only: never "none", never HMAC with the client secret.
    const ALLOWED: [&str; 9] = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    if !ALLOWED.contains(&alg) {
        return Err(IdTokenError::Algorithm);
    }
    serde_json::from_value(serde_json::Value::String(alg.to_owned()))
        .map_err(|_| IdTokenError::Algorithm)
}

fn check_claims(c: &Claims, e: &Expected<'_>) -> Result<(), IdTokenError> {
    if !e.issuers.contains(&c.iss.as_str()) {
        return Err(IdTokenError::Issuer);
    }
    let audience_ok = match &c.aud {
        Audience::None => false,
        Audience::One(a) => a == e.client_id,
        Audience::Many(list) => {
            // Several audiences: the authorized party must be us (§3.1.3.7 items 3-5).
            list.iter().any(|a| a == e.client_id) && c.azp.as_deref() == Some(e.client_id)
        }
    };
    if !audience_ok || c.azp.as_deref().is_some_and(|azp| azp != e.client_id) {
        return Err(IdTokenError::Audience);
    }
    if e.now >= c.exp.saturating_add(e.leeway) {
        return Err(IdTokenError::Expired);
    }
    if c.iat
        .is_some_and(|iat| iat > e.now.saturating_add(e.leeway))
    {
        return Err(IdTokenError::IssuedInFuture);
    }
    let nonce_ok = c
        .nonce
        .as_deref()
        .is_some_and(|n| bool::from(n.as_bytes().ct_eq(e.nonce.as_bytes())));
    if !nonce_ok {
        return Err(IdTokenError::Nonce);
    }
    if c.sub.is_empty() || c.sub.len() > 255 || c.sub.chars().any(char::is_control) {
        return Err(IdTokenError::Subject);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuers: &["https://accounts.google.com", "accounts.google.com"],
            client_id: "cid",
            nonce: "n0nce",
            now: 1_000_000,
            leeway: 60,
        }
    }

    const GOOD: &str = r#"{"iss":"https://accounts.google.com","sub":"1","aud":"cid","exp":1000100,"iat":999900,"nonce":"n0nce"}"#;

    #[test]
    fn good_claims_pass() {
        assert_eq!(check_claims(&claims(GOOD), &expected()), Ok(()));
        let bare = GOOD.replace("https://accounts.google.com", "accounts.google.com");
        assert_eq!(check_claims(&claims(&bare), &expected()), Ok(()));
    }

    #[test]
    fn each_bad_claim_is_caught() {
        let cases = [
            (
                GOOD.replace("https://accounts.google.com", "https://evil.example"),
                IdTokenError::Issuer,
            ),
            (
                GOOD.replace("\"aud\":\"cid\"", "\"aud\":\"other\""),
                IdTokenError::Audience,
            ),
            (
                GOOD.replace("\"aud\":\"cid\"", "\"aud\":[\"cid\",\"other\"]"),
                IdTokenError::Audience,
            ),
            (GOOD.replace("\"aud\":\"cid\",", ""), IdTokenError::Audience),
            (
                GOOD.replace("\"aud\":\"cid\"", "\"aud\":\"cid\",\"azp\":\"other\""),
                IdTokenError::Audience,
            ),
            (GOOD.replace("1000100", "999940"), IdTokenError::Expired),
            (
                GOOD.replace("999900", "1000061"),
                IdTokenError::IssuedInFuture,
            ),
            (GOOD.replace("n0nce", "other"), IdTokenError::Nonce),
            (
                GOOD.replace(",\"nonce\":\"n0nce\"", ""),
                IdTokenError::Nonce,
            ),
            (
                GOOD.replace("\"sub\":\"1\"", "\"sub\":\"\""),
                IdTokenError::Subject,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(
                check_claims(&claims(&json), &expected()),
                Err(want),
                "{json}"
            );
        }
        // Within the leeway: still valid.
        let late = GOOD.replace("1000100", "999941");
        assert_eq!(check_claims(&claims(&late), &expected()), Ok(()));
        let multi = GOOD.replace(
            "\"aud\":\"cid\"",
            "\"aud\":[\"cid\",\"other\"],\"azp\":\"cid\"",
        );
        assert_eq!(check_claims(&claims(&multi), &expected()), Ok(()));
    }

    #[test]
    fn structure_and_algorithm_are_checked_first() {
        let keys = JsonWebKeySet::new(vec![]);
        for token in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(
                verify(token, &keys, &expected()).err(),
                Some(IdTokenError::Malformed),
                "{token}"
            );
        }
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(GOOD)
        );
        assert_eq!(
            verify(&none, &keys, &expected()).err(),
            Some(IdTokenError::Algorithm)
        );
        let hs = format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(GOOD)
        );
        assert_eq!(
            verify(&hs, &keys, &expected()).err(),
            Some(IdTokenError::Algorithm)
        );
        let rs = format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(GOOD)
        );
        assert_eq!(
            verify(&rs, &keys, &expected()).err(),
            Some(IdTokenError::UnknownKey)
        );
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            verify(&long, &keys, &expected()).err(),
            Some(IdTokenError::Malformed)
        );
    }
}
