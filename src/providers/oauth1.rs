//! OAuth 1.0a request signing (RFC 5849 §3.4, HMAC-SHA1), as X uses for "Sign in with X", and the reading of the token endpoints' form-encoded answers.
//!
//! Pure: no I/O and no clock. The caller supplies the nonce and timestamp
//! (or takes a fresh nonce from [`nonce`]) and sends the request itself.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha1::Sha1;
use url::Url;

use super::ProviderError;

/// RFC 5849 §3.6: everything but the RFC 3986 unreserved set is escaped.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The only signature method this module produces.
const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// `oauth_version`, which X asks for on every request.
const VERSION: &str = "1.0";
/// Length of a [`nonce`], in alphanumeric characters.
const NONCE_LEN: usize = 32;

/// Consumer (app) and, when present, token credentials.
///
/// `Debug` shows the key and token but never the two secrets.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The app's consumer key (X: "API key"), sent as `oauth_consumer_key`.
    pub consumer_key: &'a str,
    /// The app's consumer secret; only ever part of the signing key.
    pub consumer_secret: &'a str,
    /// The request or access token, sent as `oauth_token`; `None` when
    /// asking for a request token.
    pub token: Option<&'a str>,
    /// The secret that goes with `token`; `None` signs with an empty one.
    pub token_secret: Option<&'a str>,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &"[redacted]")
            .field("token", &self.token)
            .field("token_secret", &self.token_secret.map(|_| "[redacted]"))
            .finish()
    }
}

/// RFC 3986 percent-encoding as RFC 5849 §3.6 requires (unreserved ALPHA
/// DIGIT - . _ ~ kept, everything else %XX uppercase, over UTF-8 bytes).
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

/// The signature base string (RFC 5849 §3.4.1.1).
///
/// `METHOD & encode(base string URI) & encode(normalized parameters)`, where
/// the base string URI is the URL without query or fragment, scheme and host
/// lowercased and the default port dropped (§3.4.1.2), and the parameters
/// are the URL's query parameters, `form` (the decoded pairs of an
/// `application/x-www-form-urlencoded` body, or nothing) and `oauth` (the
/// protocol parameters), normalized per §3.4.1.3.2: each name and value
/// encoded, sorted by name then value (byte order), joined `name=value`
/// with `&`. `oauth_signature` is left out wherever it appears, and `realm`
/// is left out of `oauth`, as §3.4.1.3.1 requires.
pub fn base_string(
    method: &str,
    url: &Url,
    form: &[(&str, &str)],
    oauth: &[(&str, &str)],
) -> String {
    let query = url.query_pairs();
    let form = form.iter().map(|&(n, v)| (n.into(), v.into()));
    let oauth = oauth
        .iter()
        .filter(|(n, _)| *n != "realm")
        .map(|&(n, v)| (n.into(), v.into()));
    let mut params: Vec<(String, String)> = query
        .chain(form)
        .chain(oauth)
        .filter(|(n, _)| n != "oauth_signature")
        .map(|(n, v)| (encode(&n), encode(&v)))
        .collect();
    params.sort_unstable();
    let normalized = params
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        encode(&method.to_ascii_uppercase()),
        encode(&base_uri(url)),
        encode(&normalized)
    )
}

/// The base string URI of §3.4.1.2. The `url` crate already lowercases the
/// scheme and a domain host and forgets a port that is the scheme's default.
fn base_uri(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme(), url.path())
}

/// HMAC-SHA1 over `base` with the key `encode(consumer_secret)&encode(token_secret or "")`,
/// as standard padded base64 (RFC 5849 §3.4.2).
pub fn sign(base: &str, consumer_secret: &str, token_secret: Option<&str>) -> String {
    let key = format!(
        "{}&{}",
        encode(consumer_secret),
        encode(token_secret.unwrap_or_default())
    );
    // HMAC takes a key of any length, so this never fails; should it ever,
    // an empty signature is refused by the server rather than panicking here.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The full `Authorization` header value (`OAuth ...`) for one request.
///
/// Sends `oauth_consumer_key`, `oauth_nonce`, `oauth_signature_method`
/// (`HMAC-SHA1`), `oauth_timestamp`, `oauth_token` (when `creds` has one),
/// `oauth_version` (`1.0`), the `extra` protocol parameters (such as
/// `oauth_callback` or `oauth_verifier`) and `oauth_signature`. An `extra`
/// whose name is already set, or is `oauth_signature`, is ignored. `url`'s
/// query and `form` (the decoded body pairs, if the body is form-encoded)
/// are signed but not copied into the header. Each name and value is
/// percent-encoded, each value double-quoted; the pairs are sorted by name
/// and joined with `", "`, as in X's "Authorizing a request".
pub fn authorization_header(
    method: &str,
    url: &Url,
    form: &[(&str, &str)],
    creds: &Credentials<'_>,
    extra: &[(&str, &str)],
    nonce: &str,
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let mut oauth: Vec<(&str, &str)> = vec![
        ("oauth_consumer_key", creds.consumer_key),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", SIGNATURE_METHOD),
        ("oauth_timestamp", &timestamp),
        ("oauth_version", VERSION),
    ];
    if let Some(token) = creds.token {
        oauth.push(("oauth_token", token));
    }
    for &(name, value) in extra {
        if name != "oauth_signature" && oauth.iter().all(|(n, _)| *n != name) {
            oauth.push((name, value));
        }
    }
    let signature = sign(
        &base_string(method, url, form, &oauth),
        creds.consumer_secret,
        creds.token_secret,
    );
    oauth.push(("oauth_signature", &signature));
    oauth.sort_unstable();
    let fields = oauth
        .iter()
        .map(|(n, v)| format!("{}=\"{}\"", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("OAuth {fields}")
}

/// Only the first pairs of a token endpoint's answer are read.
const MAX_RESPONSE_PAIRS: usize = 32;

/// A token and its secret, as the token endpoints answer them. `Debug`
/// never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenCredentials {
    /// `oauth_token`.
    pub token: String,
    /// `oauth_token_secret`.
    pub secret: String,
}

impl fmt::Debug for TokenCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCredentials")
            .field("token", &self.token)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Reads the answer to `POST oauth/request_token` (RFC 5849 §2.1), an
/// `application/x-www-form-urlencoded` body: non-empty `oauth_token` and
/// `oauth_token_secret`, and `oauth_callback_confirmed=true`. Neither value
/// may contain a newline: they travel as `token\nsecret` in the login state.
/// The first of a repeated name counts; only the first 32 pairs are read.
/// Errors name what is missing, never a value.
pub fn request_token_response(body: &[u8]) -> Result<TokenCredentials, ProviderError> {
    let form = parse_form(body);
    let token = form_value(&form, "oauth_token")?;
    let secret = form_value(&form, "oauth_token_secret")?;
    if form_value(&form, "oauth_callback_confirmed").ok() != Some("true") {
        return Err(ProviderError::Protocol {
            reason: "request token without oauth_callback_confirmed=true".into(),
        });
    }
    if token.contains('\n') || secret.contains('\n') {
        return Err(ProviderError::Protocol {
            reason: "malformed request token".into(),
        });
    }
    Ok(TokenCredentials {
        token: token.to_owned(),
        secret: secret.to_owned(),
    })
}

/// Reads the answer to `POST oauth/access_token` (RFC 5849 §2.3): non-empty
/// `oauth_token` and `oauth_token_secret`; same reading rules as
/// [`request_token_response`].
pub fn access_token_response(body: &[u8]) -> Result<TokenCredentials, ProviderError> {
    let form = parse_form(body);
    Ok(TokenCredentials {
        token: form_value(&form, "oauth_token")?.to_owned(),
        secret: form_value(&form, "oauth_token_secret")?.to_owned(),
    })
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .take(MAX_RESPONSE_PAIRS)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, ProviderError> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ProviderError::Protocol {
            reason: format!("X's answer has no {name}"),
        })
}

/// A fresh nonce: 32 random alphanumeric characters from the thread-local
/// CSPRNG.
pub fn nonce() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(NONCE_LEN)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    // ---- X: "Creating a signature" --------------------------------------
    //
    // https://docs.x.com/fundamentals/authentication/oauth-1-0a/creating-a-signature
    // (source: github.com/xdevplatform/docs, file
    // fundamentals/authentication/oauth-1-0a/creating-a-signature.mdx at
    // ea1d2d4c4f2e5d74326299da50d1f301781ee3ee). The page now says
    // api.x.com and publishes the digest 2E CF 77 84 ... = Ls93hJiZ...;
    // the same page under api.twitter.com (developer.twitter.com/en/docs/
    // basics/authentication/guides/creating-a-signature) published
    // hCtSmYh+iHYCEqBWrE7C7hYmtUk=. Same inputs otherwise; both are checked.

    const X_CONSUMER_KEY: &str = "xvz1evFS4wEEPTGEFPHBog";
    const X_CONSUMER_SECRET: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
    const X_TOKEN: &str = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb";
    const X_TOKEN_SECRET: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
    const X_NONCE: &str = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg";
    const X_TIMESTAMP: u64 = 1318622958;
    const X_STATUS: &str = "Hello Ladies + Gentlemen, a signed OAuth request!";

    const X_CREDS: Credentials<'static> = Credentials {
        consumer_key: X_CONSUMER_KEY,
        consumer_secret: X_CONSUMER_SECRET,
        token: Some(X_TOKEN),
        token_secret: Some(X_TOKEN_SECRET),
    };

    fn x_oauth_params() -> [(&'static str, &'static str); 6] {
        [
            ("oauth_consumer_key", X_CONSUMER_KEY),
            ("oauth_nonce", X_NONCE),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            ("oauth_token", X_TOKEN),
            ("oauth_version", "1.0"),
        ]
    }

    /// The page's base string, printed for `https://{host}/1.1/...`.
    fn x_base_string(host: &str) -> String {
        format!(
            "POST&https%3A%2F%2F{host}%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        )
    }

    #[test]
    fn x_creating_a_signature_api_x_com() {
        let u = url("https://api.x.com/1.1/statuses/update.json?include_entities=true");
        let base = base_string("POST", &u, &[("status", X_STATUS)], &x_oauth_params());
        assert_eq!(base, x_base_string("api.x.com"));
        assert_eq!(base.matches('&').count(), 2);
        assert_eq!(
            sign(&base, X_CONSUMER_SECRET, Some(X_TOKEN_SECRET)),
            "Ls93hJiZbQ3akF3HF3x1Bz8/zU4="
        );
    }

    #[test]
    fn x_creating_a_signature_api_twitter_com() {
        let u = url("https://api.twitter.com/1.1/statuses/update.json?include_entities=true");
        let base = base_string("POST", &u, &[("status", X_STATUS)], &x_oauth_params());
        assert_eq!(base, x_base_string("api.twitter.com"));
        assert_eq!(
            sign(&base, X_CONSUMER_SECRET, Some(X_TOKEN_SECRET)),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
    }

    #[test]
    fn x_header_carries_the_documented_signature() {
        let u = url("https://api.twitter.com/1.1/statuses/update.json?include_entities=true");
        let h = authorization_header(
            "POST",
            &u,
            &[("status", X_STATUS)],
            &X_CREDS,
            &[],
            X_NONCE,
            X_TIMESTAMP,
        );
        assert!(
            h.contains(r#"oauth_signature="hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D""#),
            "{h}"
        );
    }

    /// X's "Authorizing a request" prints this header byte for byte
    /// (xdevplatform/docs authorizing-a-request.mdx at
    /// 7c59f7beceb586804a7043a26a29b96d790e54aa). Its signature,
    /// tnnArxj06cWHq44gCs1OSKk/jLY=, is the original 2011 page's, signed for
    /// https://api.twitter.com/1/statuses/update.json (API v1 path).
    #[test]
    fn x_authorizing_a_request_header_verbatim() {
        let u = url("https://api.twitter.com/1/statuses/update.json?include_entities=true");
        let h = authorization_header(
            "POST",
            &u,
            &[("status", X_STATUS)],
            &X_CREDS,
            &[],
            X_NONCE,
            X_TIMESTAMP,
        );
        assert_eq!(
            h,
            "OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", \
             oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\", \
             oauth_signature=\"tnnArxj06cWHq44gCs1OSKk%2FjLY%3D\", \
             oauth_signature_method=\"HMAC-SHA1\", \
             oauth_timestamp=\"1318622958\", \
             oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\", \
             oauth_version=\"1.0\""
        );
    }

    // ---- Twitter's three-legged sign-in example ------------------------
    //
    // From the former https://dev.twitter.com/docs/auth/oauth ("Implementing
    // Sign in with Twitter"), as reproduced in github.com/request/oauth-sign
    // test.js. request_token: no token, oauth_callback; access_token:
    // request token + oauth_verifier.

    const TW_CONSUMER_KEY: &str = "GDdmIQH6jhtmLUypg82g";
    const TW_CONSUMER_SECRET: &str = "MCD8BKwGdgPHvAuvgvz4EQpqDAtx89grbuNMRd7Eh98";

    fn field<'h>(header: &'h str, name: &str) -> Option<&'h str> {
        let rest = header.strip_prefix("OAuth ")?;
        rest.split(", ").find_map(|kv| {
            let (n, v) = kv.split_once('=')?;
            if n == name {
                v.strip_prefix('"')?.strip_suffix('"')
            } else {
                None
            }
        })
    }

    #[test]
    fn twitter_request_token_with_callback() {
        let creds = Credentials {
            consumer_key: TW_CONSUMER_KEY,
            consumer_secret: TW_CONSUMER_SECRET,
            token: None,
            token_secret: None,
        };
        let callback = "http://localhost:3005/the_dance/process_callback?service_provider_id=11";
        let h = authorization_header(
            "POST",
            &url("https://api.twitter.com/oauth/request_token"),
            &[],
            &creds,
            &[("oauth_callback", callback)],
            "QP70eNmVz8jvdPevU3oJD2AfF7R7odC2XJcn4XlZJqk",
            1272323042,
        );
        assert_eq!(
            field(&h, "oauth_signature"),
            Some("8wUi7m5HFQy76nowoCThusfgB%2BQ%3D")
        );
        assert_eq!(field(&h, "oauth_callback"), Some(encode(callback).as_str()));
        assert_eq!(field(&h, "oauth_token"), None);
    }

    #[test]
    fn twitter_access_token_with_verifier() {
        let creds = Credentials {
            consumer_key: TW_CONSUMER_KEY,
            consumer_secret: TW_CONSUMER_SECRET,
            token: Some("8ldIZyxQeVrFZXFOZH5tAwj6vzJYuLQpl0WUEYtWc"),
            token_secret: Some("x6qpRnlEmW9JbQn4PQVVeVG8ZLPEx6A0TOebgwcuA"),
        };
        let h = authorization_header(
            "POST",
            &url("https://api.twitter.com/oauth/access_token"),
            &[],
            &creds,
            &[(
                "oauth_verifier",
                "pDNg57prOHapMbhv25RNf75lVRd6JDsni1AJJIDYoTY",
            )],
            "9zWH6qe0qG7Lc1telCn7FhUbLyVdjEaL3MO5uHxn8",
            1272323047,
        );
        assert_eq!(
            field(&h, "oauth_signature"),
            Some("PUw%2FdHA4fnlJYM6RhXk5IU%2F0fCc%3D")
        );
        assert_eq!(
            field(&h, "oauth_verifier"),
            Some("pDNg57prOHapMbhv25RNf75lVRd6JDsni1AJJIDYoTY")
        );
    }

    /// Same source: a status with multi-byte UTF-8 in the signed body.
    #[test]
    fn twitter_utf8_status() {
        let creds = Credentials {
            consumer_key: TW_CONSUMER_KEY,
            consumer_secret: TW_CONSUMER_SECRET,
            token: Some("819797-Jxq8aYUDRmykzVKrgoLhXSq67TEa5ruc4GJC2rWimw"),
            token_secret: Some("J6zix3FfA9LofH0awS24M3HcBYXO5nI1iYe8EfBA"),
        };
        let h = authorization_header(
            "POST",
            &url("http://api.twitter.com/1/statuses/update.json"),
            &[("status", "setting up my twitter 私のさえずりを設定する")],
            &creds,
            &[],
            "oElnnMTQIZvqvlfXM56aBLAf5noGD0AQR3Fmi7Q6Y",
            1272325550,
        );
        assert_eq!(
            field(&h, "oauth_signature"),
            Some("yOahq5m0YjDDjfjxHaXEsW9D%2BX0%3D")
        );
    }

    // ---- RFC 5849 -------------------------------------------------------

    type Pairs<const N: usize> = [(&'static str, &'static str); N];

    /// §3.4.1.1 / §3.4.1.3: the request
    /// `POST /request?b5=%3D%253D&a3=a&c%40=&a2=r%20b` with body `c2&a3=2+q`.
    fn rfc_example() -> (Url, Pairs<2>, Pairs<6>) {
        let u = url("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b");
        // The body `c2&a3=2+q`, decoded as §3.4.1.3.1 says.
        let body: Vec<(String, String)> = url::form_urlencoded::parse(b"c2&a3=2+q")
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            body,
            [("c2".into(), "".into()), ("a3".into(), "2 q".into())]
        );
        let form = [("c2", ""), ("a3", "2 q")];
        let oauth = [
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
            ("oauth_signature", "bYT5CMsGcbgUdFHObYMEfcx6bsw="),
        ];
        (u, form, oauth)
    }

    #[test]
    fn rfc5849_3_4_1_1_base_string() {
        let (u, form, oauth) = rfc_example();
        // As printed in §3.4.1.1, its display line breaks joined.
        let expected = concat!(
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q",
            "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_",
            "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m",
            "ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk",
            "9d7dh3k39sjv7",
        );
        assert_eq!(base_string("POST", &u, &form, &oauth), expected);
        // A realm from the header is not a signed parameter either.
        let mut with_realm = oauth.to_vec();
        with_realm.push(("realm", "Example"));
        assert_eq!(base_string("post", &u, &form, &with_realm), expected);
    }

    #[test]
    fn rfc5849_3_4_1_3_2_normalized_parameters() {
        let (u, form, oauth) = rfc_example();
        // §3.4.1.3.2, "concatenated together into a single string".
        let normalized = concat!(
            "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj",
            "dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1",
            "&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7",
        );
        let base = base_string("POST", &u, &form, &oauth);
        let third = base.splitn(3, '&').nth(2).unwrap();
        assert_eq!(third, encode(normalized));
    }

    /// §3.4.1.2's two examples of the base string URI.
    #[test]
    fn rfc5849_3_4_1_2_base_string_uri() {
        assert_eq!(
            base_uri(&url("http://EXAMPLE.COM:80/r%20v/X?id=123")),
            "http://example.com/r%20v/X"
        );
        assert_eq!(
            base_uri(&url("https://www.example.net:8080/?q=1")),
            "https://www.example.net:8080/"
        );
        assert_eq!(
            base_uri(&url("HTTPS://Api.X.com:443/a#frag")),
            "https://api.x.com/a"
        );
    }

    /// §1.2's three signed requests (client secret kd94hf93k423kf44). They
    /// send no oauth_version, so they go through base_string and sign.
    #[test]
    fn rfc5849_1_2_examples() {
        let initiate = base_string(
            "POST",
            &url("https://photos.example.net/initiate"),
            &[],
            &[
                ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "137131200"),
                ("oauth_nonce", "wIjqoS"),
                ("oauth_callback", "http://printer.example.com/ready"),
            ],
        );
        assert_eq!(
            sign(&initiate, "kd94hf93k423kf44", None),
            "74KNZJeDHnMBp0EMJ9ZHt/XKycU="
        );

        let token = base_string(
            "POST",
            &url("https://photos.example.net/token"),
            &[],
            &[
                ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
                ("oauth_token", "hh5s93j4hdidpola"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "137131201"),
                ("oauth_nonce", "walatlh"),
                ("oauth_verifier", "hfdp7dh39dks9884"),
            ],
        );
        assert_eq!(
            sign(&token, "kd94hf93k423kf44", Some("hdhd0244k9j7ao03")),
            "gKgrFCywp7rO0OXSjdot/IHF7IU="
        );

        let photo = base_string(
            "GET",
            &url("http://photos.example.net/photos?file=vacation.jpg&size=original"),
            &[],
            &[
                ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
                ("oauth_token", "nnch734d00sl2jdk"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "137131202"),
                ("oauth_nonce", "chapoH"),
            ],
        );
        assert_eq!(
            sign(&photo, "kd94hf93k423kf44", Some("pfkkdhi9sl3r4s00")),
            "MdpQcU8iPSUjWoN/UDMsK2sui9I="
        );
    }

    // ---- Percent-encoding (RFC 5849 §3.6; X "Percent encoding parameters")

    #[test]
    fn encode_rfc5849_3_6() {
        assert_eq!(encode(" "), "%20");
        assert_eq!(encode("*"), "%2A");
        assert_eq!(encode("+"), "%2B");
        assert_eq!(encode("~"), "~");
        assert_eq!(encode("-._~"), "-._~");
        assert_eq!(encode("AZaz09"), "AZaz09");
        assert_eq!(encode("%"), "%25");
        assert_eq!(encode("=&/?#:@!'()"), "%3D%26%2F%3F%23%3A%40%21%27%28%29");
        assert_eq!(encode("\u{0}\u{7f}"), "%00%7F");
        assert_eq!(encode("æ"), "%C3%A6");
        assert_eq!(encode("😀"), "%F0%9F%98%80");
        assert_eq!(encode(""), "");
    }

    /// The table at the end of X's "Percent encoding parameters"
    /// (xdevplatform/docs percent-encoding-parameters.mdx).
    #[test]
    fn encode_x_examples() {
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("An encoded string!"), "An%20encoded%20string%21");
        assert_eq!(encode("Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
        assert_eq!(encode("☃"), "%E2%98%83");
    }

    // ---- Behaviour around the vectors -----------------------------------

    #[test]
    fn header_format() {
        let u = url("https://api.x.com/oauth/request_token");
        let creds = Credentials {
            consumer_key: "key with space",
            consumer_secret: "s",
            token: Some("tok"),
            token_secret: None,
        };
        let h = authorization_header(
            "POST",
            &u,
            &[],
            &creds,
            &[("oauth_callback", "https://app.example/cb?state=a&b=c")],
            "abc",
            7,
        );
        assert!(h.starts_with("OAuth "), "{h}");
        for name in [
            "oauth_callback",
            "oauth_consumer_key",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
            "oauth_timestamp",
            "oauth_token",
            "oauth_version",
        ] {
            assert!(h.contains(&format!("{name}=\"")), "{name} missing in {h}");
        }
        assert_eq!(h.matches(", ").count(), 7, "{h}");
        assert_eq!(field(&h, "oauth_consumer_key"), Some("key%20with%20space"));
        assert_eq!(
            field(&h, "oauth_callback"),
            Some("https%3A%2F%2Fapp.example%2Fcb%3Fstate%3Da%26b%3Dc")
        );
        assert_eq!(field(&h, "oauth_signature_method"), Some("HMAC-SHA1"));
        assert_eq!(field(&h, "oauth_timestamp"), Some("7"));
        assert_eq!(field(&h, "oauth_version"), Some("1.0"));
        // The signature is base64 of 20 bytes, percent-encoded: no raw + / =.
        let sig = field(&h, "oauth_signature").unwrap();
        assert!(!sig.contains(['+', '/', '=']), "{sig}");
        let expected_base = base_string(
            "POST",
            &u,
            &[],
            &[
                ("oauth_callback", "https://app.example/cb?state=a&b=c"),
                ("oauth_consumer_key", "key with space"),
                ("oauth_nonce", "abc"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "7"),
                ("oauth_token", "tok"),
                ("oauth_version", "1.0"),
            ],
        );
        assert_eq!(sig, encode(&sign(&expected_base, "s", None)));
    }

    #[test]
    fn header_ignores_colliding_extras() {
        let u = url("https://api.x.com/1.1/account/verify_credentials.json");
        let plain = authorization_header("GET", &u, &[], &X_CREDS, &[], X_NONCE, X_TIMESTAMP);
        let noisy = authorization_header(
            "GET",
            &u,
            &[],
            &X_CREDS,
            &[
                ("oauth_signature", "forged"),
                ("oauth_nonce", "other"),
                ("oauth_token", "other"),
                ("oauth_version", "2.0"),
            ],
            X_NONCE,
            X_TIMESTAMP,
        );
        assert_eq!(plain, noisy);
        assert_eq!(plain.matches("oauth_signature=").count(), 1);
    }

    #[test]
    fn query_is_signed_and_order_independent() {
        let a = url("https://api.x.com/1.1/account/verify_credentials.json?include_email=true&skip_status=true");
        let b = url("https://api.x.com/1.1/account/verify_credentials.json?skip_status=true&include_email=true");
        let c = url("https://api.x.com/1.1/account/verify_credentials.json?include_email=false&skip_status=true");
        let h = |u: &Url| authorization_header("GET", u, &[], &X_CREDS, &[], X_NONCE, X_TIMESTAMP);
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&c));
    }

    #[test]
    fn sign_without_token_secret_uses_empty_one() {
        assert_eq!(sign("x", "cs", None), sign("x", "cs", Some("")));
        assert_ne!(sign("x", "cs", None), sign("x", "cs", Some("t")));
        // §3.4.2: each secret is encoded before the two are joined with '&'.
        let mut mac = Hmac::<Sha1>::new_from_slice(b"a%26b&c%20d%2B").unwrap();
        mac.update(b"x");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sign("x", "a&b", Some("c d+")), expected);
    }

    #[test]
    fn odd_urls_do_not_panic() {
        for s in [
            "mailto:someone@example.com",
            "data:text/plain,hi",
            "file:///etc/x",
            "http://[::1]:8080/p?q",
        ] {
            let u = url(s);
            let _ = authorization_header("GET", &u, &[("", "")], &X_CREDS, &[("", "")], "", 0);
        }
        assert_eq!(
            base_uri(&url("http://[::1]:8080/p?q")),
            "http://[::1]:8080/p"
        );
    }

    #[test]
    fn nonces_are_fresh_and_alphanumeric() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    // ---- Token endpoint answers (RFC 5849 §2.1, §2.3) -------------------

    #[test]
    fn request_token_answer() {
        // RFC 5849 §2.1's example answer.
        let body = b"oauth_token=hh5s93j4hdidpola&oauth_token_secret=hdhd0244k9j7ao03&oauth_callback_confirmed=true";
        let t = request_token_response(body).unwrap();
        assert_eq!(t.token, "hh5s93j4hdidpola");
        assert_eq!(t.secret, "hdhd0244k9j7ao03");
        // Percent-decoded; the first of a repeated name counts.
        let t = request_token_response(
            b"oauth_token=a%2Bb&oauth_token=zzz&oauth_token_secret=c+d&oauth_callback_confirmed=true",
        )
        .unwrap();
        assert_eq!((t.token.as_str(), t.secret.as_str()), ("a+b", "c d"));
        for bad in [
            &b""[..],
            b"oauth_token=a&oauth_token_secret=b",
            b"oauth_token=a&oauth_token_secret=b&oauth_callback_confirmed=false",
            b"oauth_token=&oauth_token_secret=b&oauth_callback_confirmed=true",
            b"oauth_token=a&oauth_token_secret=&oauth_callback_confirmed=true",
            b"oauth_token=a%0Ab&oauth_token_secret=b&oauth_callback_confirmed=true",
            b"oauth_token=a&oauth_token_secret=b%0A&oauth_callback_confirmed=true",
            b"{\"errors\":[{\"code\":32}]}",
        ] {
            assert!(
                request_token_response(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn access_token_answer() {
        let body = b"oauth_token=nnch734d00sl2jdk&oauth_token_secret=pfkkdhi9sl3r4s00&user_id=1&screen_name=jack";
        let t = access_token_response(body).unwrap();
        assert_eq!(t.token, "nnch734d00sl2jdk");
        assert_eq!(t.secret, "pfkkdhi9sl3r4s00");
        assert!(access_token_response(b"oauth_token=a").is_err());
        // Only the first 32 pairs are read.
        let mut padded = "x=1&".repeat(31);
        padded.push_str("oauth_token=a&oauth_token_secret=b");
        assert!(access_token_response(padded.as_bytes()).is_err());
    }

    #[test]
    fn token_answer_errors_and_debug_show_no_secret() {
        let e = request_token_response(b"oauth_token=tok&oauth_token_secret=s3cr3t").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let t = access_token_response(b"oauth_token=tok&oauth_token_secret=s3cr3t").unwrap();
        let shown = format!("{t:?}");
        assert!(
            shown.contains("tok") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let shown = format!("{X_CREDS:?}");
        assert!(shown.contains(X_CONSUMER_KEY));
        assert!(!shown.contains(X_CONSUMER_SECRET));
        assert!(!shown.contains(X_TOKEN_SECRET));
    }
}
