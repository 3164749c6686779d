//! The signed identity assertion (`[assertion]`): an ES256 JWT describing
//! the signed-in user, signed once per session and reused from a small
//! per-thread cache, the JWK Set that verifies it, and the key files.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, LineEnding};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::identity::Identity;

/// Default `assertion.header`.
pub const DEFAULT_HEADER: &str = "X-User-Assertion";
/// Default `assertion.lifetime`.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// `Cache-Control` of `/oauth2/jwks.json`: verifiers may keep the keys for
/// five minutes, so a key published for rotation reaches them in time.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";
/// Assertions kept per thread; beyond that, expired ones are dropped, then all.
const CACHE_ENTRIES: usize = 4096;

/// A fresh P-256 private key in PKCS#8 PEM (`portcullis assertion-key`).
pub fn generate_key_pem() -> Result<String, String> {
    let key = SigningKey::try_generate().map_err(|e| format!("no randomness: {e}"))?;
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| format!("cannot encode the key: {e}"))
}

/// A private key read from `key_file`: P-256, PKCS#8 PEM (`PRIVATE KEY`) or
/// SEC1 PEM (`EC PRIVATE KEY`, as `openssl ecparam -genkey` writes it).
/// The error says what is wrong without quoting the file.
pub fn read_private_key(path: &Path) -> Result<SigningKey, String> {
    let text = read_pem(path)?;
    parse_private_key(&text)
}

/// A key that is only published (`publish_key_files`): a private key as in
/// [`read_private_key`], or a P-256 public key (`PUBLIC KEY`, SPKI PEM).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, String> {
    let text = read_pem(path)?;
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(&text)
            .map_err(|_| "is not an EC P-256 public key in PEM (\"PUBLIC KEY\")".to_owned());
    }
    parse_private_key(&text).map(|k| *k.verifying_key())
}

/// Longest key file read (a P-256 key in PEM is about 250 bytes).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The file's text: a regular file (never a device or a FIFO, which could
/// block or never end) of at most [`MAX_KEY_FILE`] bytes.
fn read_pem(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path:?} is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(format!("{path:?} is larger than a key file can be"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{path:?} is not a PEM text file"))
}

fn parse_private_key(text: &str) -> Result<SigningKey, String> {
    const WHAT: &str =
        "is not an EC P-256 private key in PKCS#8 PEM (make one with `portcullis assertion-key`)";
    if text.contains("-----BEGIN EC PRIVATE KEY-----") {
        return p256::SecretKey::from_sec1_pem(text)
            .map(|k| SigningKey::from(&k))
            .map_err(|_| WHAT.to_owned());
    }
    SigningKey::from_pkcs8_pem(text).map_err(|_| WHAT.to_owned())
}

/// The public half of a key as a JWK, and its RFC 7638 thumbprint (the `kid`).
#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    kty: &'static str,
    crv: &'static str,
    x: String,
    y: String,
    kid: String,
    #[serde(rename = "use")]
    use_: &'static str,
    alg: &'static str,
}

impl Jwk {
    pub fn of(key: &VerifyingKey) -> Jwk {
        let point = key.to_sec1_point(false);
        let bytes = point.as_bytes();
        // Uncompressed: 0x04, then x and y, 32 bytes each.
        let (x, y) = match bytes {
            [4, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => (&[][..], &[][..]),
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        // RFC 7638: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Jwk {
            kty: "EC",
            crv: "P-256",
            x,
            y,
            kid,
            use_: "sig",
            alg: "ES256",
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// `[assertion]`, validated.
pub struct Settings {
    /// `assertion.header`, default `X-User-Assertion`.
    pub header: HeaderName,
    /// `assertion.key_file`: the key that signs.
    pub key: SigningKey,
    /// `assertion.publish_key_files`: keys in the JWKS that never sign.
    pub publish: Vec<VerifyingKey>,
    /// `assertion.audience`, default `server.public_url` (as written there,
    /// without a trailing `/`).
    pub audience: String,
    /// `assertion.lifetime`, default `5m`.
    pub lifetime: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("assertion::Settings")
            .field("header", &self.header)
            .field("kid", &Jwk::of(self.key.verifying_key()).kid)
            .field("publish", &self.publish.len())
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Signs assertions; built once at start-up (and again on a reload).
pub struct Signer {
    key: SigningKey,
    /// `base64url({"alg":"ES256","kid":...,"typ":"JWT"})` and the `.`.
    header_b64: String,
    issuer: String,
    audience: String,
    lifetime: u64,
    header_name: HeaderName,
    jwks: String,
    /// Distinguishes this signer's entries in the per-thread cache from an
    /// earlier one's (a reload with another key or audience).
    generation: u64,
}

/// The claims, in the order SPEC.md lists them.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    login: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    iat: u64,
    exp: u64,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Signer {
    /// `issuer` is `server.public_url` (as an origin, no trailing `/`).
    pub fn new(settings: &Settings, issuer: &str) -> Signer {
        let own = Jwk::of(settings.key.verifying_key());
        let header = format!(r#"{{"alg":"ES256","kid":"{}","typ":"JWT"}}"#, own.kid);
        let mut keys = vec![own];
        for k in &settings.publish {
            let jwk = Jwk::of(k);
            if keys.iter().all(|have| have.kid != jwk.kid) {
                keys.push(jwk);
            }
        }
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        Signer {
            key: settings.key.clone(),
            header_b64: format!("{}.", URL_SAFE_NO_PAD.encode(header)),
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: settings.audience.clone(),
            lifetime: settings.lifetime.as_secs().max(1),
            header_name: settings.header.clone(),
            jwks,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The request header the assertion travels in.
    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    /// The body of `/oauth2/jwks.json`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A fresh assertion for `id`, valid from `now` for the lifetime, but
    /// never past `session_expires_at` (unix seconds; 0 = unknown).
    pub fn sign(&self, id: &Identity, session_expires_at: u64, now: u64) -> String {
        let mut exp = now.saturating_add(self.lifetime);
        if session_expires_at > now {
            exp = exp.min(session_expires_at);
        }
        let sub = id.user();
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &sub,
            provider: &id.provider,
            email: nonempty(&id.email),
            name: nonempty(&id.name),
            login: nonempty(&id.login),
            picture: nonempty(&id.picture),
            groups: &id.groups,
            iat: now,
            exp,
        };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 90);
        token.push_str(&self.header_b64);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature: Signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        token
    }

    /// The assertion for `id` as a header value: from this thread's cache
    /// while it has more than a quarter of its lifetime left, else freshly
    /// signed (and cached). One hash and one map look-up per request.
    pub fn header_value(&self, id: &Identity, session_expires_at: u64, now: u64) -> HeaderValue {
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let hash = cache.hash(self.generation, id, session_expires_at);
            if let Some(e) = cache.entries.get(&hash) {
                if now < e.renew_at
                    && e.generation == self.generation
                    && e.session_expires_at == session_expires_at
                    && e.identity == *id
                {
                    return e.value.clone();
                }
            }
            let token = self.sign(id, session_expires_at, now);
            let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(token))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            let full = now.saturating_add(self.lifetime);
            // Capped by the session's end: a new one would not last longer,
            // and after that end the session is gone.
            let renew_at = if session_expires_at > now && session_expires_at < full {
                session_expires_at
            } else {
                full - self.lifetime / 4
            };
            if cache.entries.len() >= CACHE_ENTRIES {
                cache.entries.retain(|_, e| now < e.renew_at);
                if cache.entries.len() >= CACHE_ENTRIES {
                    cache.entries.clear();
                }
            }
            cache.entries.insert(
                hash,
                Entry {
                    generation: self.generation,
                    identity: id.clone(),
                    session_expires_at,
                    renew_at,
                    value: value.clone(),
                },
            );
            value
        })
    }
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|v| !v.is_empty())
}

struct Entry {
    generation: u64,
    identity: Identity,
    session_expires_at: u64,
    renew_at: u64,
    value: HeaderValue,
}

struct Cache {
    hasher: RandomState,
    entries: HashMap<u64, Entry>,
}

impl Cache {
    fn hash(&self, generation: u64, id: &Identity, session_expires_at: u64) -> u64 {
        let mut h = self.hasher.build_hasher();
        generation.hash(&mut h);
        session_expires_at.hash(&mut h);
        id.provider.hash(&mut h);
        id.subject.hash(&mut h);
        id.email.hash(&mut h);
        id.name.hash(&mut h);
        id.login.hash(&mut h);
        id.picture.hash(&mut h);
        id.groups.hash(&mut h);
        h.finish()
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        hasher: RandomState::new(),
        entries: HashMap::new(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    fn settings(key: SigningKey) -> Settings {
        Settings {
            header: HeaderName::from_static("x-user-assertion"),
            key,
            publish: Vec::new(),
            audience: "https://app.example.com".into(),
            lifetime: DEFAULT_LIFETIME,
        }
    }

    fn alice() -> Identity {
        Identity {
            provider: "acme".into(),
            subject: "42".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice".into()),
            login: None,
            picture: Some(String::new()),
            groups: vec!["admins".into()],
        }
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn key_files_must_be_small_regular_files() {
        let dev = read_private_key(Path::new("/dev/zero")).unwrap_err();
        assert!(dev.contains("not a regular file"), "{dev}");
        let dir = std::env::temp_dir().join(format!("portcullis-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.pem");
        std::fs::write(&big, vec![b'A'; 70 * 1024]).unwrap();
        let err = read_private_key(&big).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(err.contains("larger"), "{err}");
    }

    #[test]
    fn generated_key_reads_back() {
        let pem = generate_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        parse_private_key(&pem).unwrap();
        assert!(parse_private_key(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }

    #[test]
    fn token_verifies_and_carries_the_claims() {
        let key = SigningKey::try_generate().unwrap();
        let signer = Signer::new(&settings(key.clone()), "https://app.example.com/");
        let token = signer.sign(&alice(), 0, 1_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], Jwk::of(key.verifying_key()).kid);
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "https://app.example.com");
        assert_eq!(claims["aud"], "https://app.example.com");
        assert_eq!(claims["sub"], "acme:42");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["groups"], serde_json::json!(["admins"]));
        assert_eq!(claims["exp"], 1_000_300);
        assert!(claims.get("picture").is_none() && claims.get("login").is_none());
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        key.verifying_key().verify(input.as_bytes(), &sig).unwrap();
    }

    #[test]
    fn expiry_never_passes_the_session() {
        let signer = Signer::new(&settings(SigningKey::try_generate().unwrap()), "https://a");
        let token = signer.sign(&alice(), 1_000_060, 1_000_000);
        let claims = decode(token.split('.').nth(1).unwrap());
        assert_eq!(claims["exp"], 1_000_060);
    }

    #[test]
    fn cached_until_three_quarters_of_the_lifetime() {
        let signer = Signer::new(&settings(SigningKey::try_generate().unwrap()), "https://a");
        let id = alice();
        let first = signer.header_value(&id, 2_000_000, 1_000_000);
        assert_eq!(signer.header_value(&id, 2_000_000, 1_000_224), first);
        let renewed = signer.header_value(&id, 2_000_000, 1_000_225);
        assert_ne!(renewed, first);
        // Another identity, another session: another assertion.
        let mut bob = id.clone();
        bob.subject = "43".into();
        assert_ne!(signer.header_value(&bob, 2_000_000, 1_000_225), renewed);
        // A session ending sooner: an assertion that ends with it.
        assert_ne!(signer.header_value(&id, 1_000_260, 1_000_225), renewed);
        // Another signer (a reload) never reuses this one's.
        let other = Signer::new(&settings(SigningKey::try_generate().unwrap()), "https://a");
        assert_ne!(other.header_value(&id, 2_000_000, 1_000_225), renewed);
    }

    #[test]
    fn jwks_lists_each_key_once() {
        let key = SigningKey::try_generate().unwrap();
        let next = SigningKey::try_generate().unwrap();
        let mut s = settings(key.clone());
        s.publish = vec![*next.verifying_key(), *key.verifying_key()];
        let signer = Signer::new(&s, "https://a");
        let jwks: serde_json::Value = serde_json::from_str(signer.jwks()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(
            kids,
            [
                Jwk::of(key.verifying_key()).kid.as_str(),
                Jwk::of(next.verifying_key()).kid.as_str()
            ]
        );
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
        assert_eq!(jwks["keys"][0]["x"].as_str().unwrap().len(), 43);
    }
}
