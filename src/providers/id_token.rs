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
    #[error("not valid yet")]
    NotYetValid,
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
    /// Checked for bearer tokens (ID tokens have none).
    #[serde(default)]
    pub nbf: Option<u64>,
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
    let claims = verify_signature(token, keys)?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Not a JWT: opaque access tokens cannot be verified here.
    #[error("the bearer token is not a JWT (opaque access tokens are not accepted)")]
    NotJwt,
    /// No provider with `accept_bearer_tokens` issued it.
    #[error("the bearer token is from an issuer that is not accepted")]
    UnknownIssuer,
    #[error("the bearer token is invalid: {0}")]
    Invalid(IdTokenError),
    /// The provider's keys could not be fetched.
    #[error("the token issuer's signing keys are unavailable")]
    Unavailable,
}

impl BearerError {
    /// For `WWW-Authenticate` and the JSON body: words without the token.
    pub fn description(&self) -> String {
        self.to_string()
    }
}

/// The `iss` claim of a token, unverified: only to pick the provider whose
/// keys will verify it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok().map(|c| c.iss)
}

/// What a bearer token (an access token that is a JWT, RFC 9068) must say.
pub struct BearerExpected<'a> {
    /// Accepted `iss` values (exact match).
    pub issuers: &'a [&'a str],
    /// `bearer_audiences`: `aud` (a string or a list) must name one.
    pub audiences: &'a [String],
    /// Unix seconds.
    pub now: u64,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, seconds.
    pub leeway: u64,
}

/// Verifies a bearer token with the same signature check as ID tokens
/// (asymmetric algorithms only, the provider's keys), then `iss`, `aud`,
/// `exp`, `nbf`, `iat` and `sub`. No nonce: nobody asked for this token.
pub fn verify_bearer(
    token: &str,
    keys: &JsonWebKeySet<CoreJsonWebKey>,
    expected: &BearerExpected<'_>,
) -> Result<Claims, IdTokenError> {
    let claims = verify_signature(token, keys)?;
    check_bearer_claims(&claims, expected)?;
    Ok(claims)
}

/// Is `token` shaped like a JWS (three base64url parts, a JSON header)?
/// Opaque access tokens are not.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h64), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.is_object())
}

fn check_bearer_claims(c: &Claims, e: &BearerExpected<'_>) -> Result<(), IdTokenError> {
    if !e.issuers.contains(&c.iss.as_str()) {
        return Err(IdTokenError::Issuer);
    }
    let audience_ok = match &c.aud {
        Audience::None => false,
        Audience::One(a) => e.audiences.iter().any(|want| want == a),
        Audience::Many(list) => list.iter().any(|a| e.audiences.iter().any(|w| w == a)),
    };
    if !audience_ok {
        return Err(IdTokenError::Audience);
    }
    if e.now >= c.exp.saturating_add(e.leeway) {
        return Err(IdTokenError::Expired);
    }
    if c.nbf
        .is_some_and(|nbf| nbf > e.now.saturating_add(e.leeway))
    {
        return Err(IdTokenError::NotYetValid);
    }
    if c.iat
        .is_some_and(|iat| iat > e.now.saturating_add(e.leeway))
    {
        return Err(IdTokenError::IssuedInFuture);
    }
    if c.sub.is_empty() || c.sub.len() > 255 || c.sub.chars().any(char::is_control) {
        return Err(IdTokenError::Subject);
    }
    Ok(())
}

/// The signature of `token` with one of `keys` (by `kid`), and its claims
/// parsed, unchecked.
fn verify_signature(
    token: &str,
    keys: &JsonWebKeySet<CoreJsonWebKey>,
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
    fn bearer_claims_checked() {
        let audiences = ["api://app".to_owned(), "cid".to_owned()];
        let e = BearerExpected {
            issuers: &["https://idp.example"],
            audiences: &audiences,
            now: 1_000_000,
            leeway: 60,
        };
        let good = r#"{"iss":"https://idp.example","sub":"svc","aud":["x","api://app"],"exp":1000100,"nbf":999000}"#;
        assert_eq!(check_bearer_claims(&claims(good), &e), Ok(()));
        let cases = [
            (
                good.replace("https://idp.example", "https://evil.example"),
                IdTokenError::Issuer,
            ),
            (
                good.replace("[\"x\",\"api://app\"]", "\"other\""),
                IdTokenError::Audience,
            ),
            (good.replace("1000100", "999900"), IdTokenError::Expired),
            (good.replace("999000", "1000100"), IdTokenError::NotYetValid),
            (
                good.replace("\"sub\":\"svc\"", "\"sub\":\"\""),
                IdTokenError::Subject,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(check_bearer_claims(&claims(&json), &e), Err(want), "{json}");
        }
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.e30.sig"));
        assert!(!looks_like_jwt("2YotnFZFEjr1zCsicMWpAA"));
        assert!(!looks_like_jwt("a.b.c"));
    }

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
