//! The short-lived login state carried across the provider round trip (CSRF state, OIDC nonce, PKCE verifier, return path), its encoding, and the per-login cookie name.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::identity::wire;

/// How long a login may take, from start to callback (also the cookie's
/// `Max-Age`).
pub const LOGIN_STATE_TTL: Duration = Duration::from_secs(600);
/// Path of the login-state cookie: sent to `/oauth2/callback/{provider}`,
/// which needs it, and to `/oauth2/start/{provider}`, which retires the
/// oldest ones (see [`crowded_out`]); never to the application.
pub const LOGIN_COOKIE_PATH: &str = "/oauth2/";
/// A longer return path is replaced by `/`. The return path is most of a
/// login-state cookie: with this cap one is at most about 1.7 KB, so
/// [`MAX_PENDING_LOGINS`] of them stay far inside the 32 KB that
/// `cookie::find` scans.
pub const MAX_RETURN_TO_LEN: usize = 1024;
/// Login-state cookies one browser keeps at once, the one being set
/// included. Each start of a login clears the oldest beyond this, so that
/// repeated starts (every one adds a cookie for ten minutes) cannot push
/// the newest past the scan budget.
pub const MAX_PENDING_LOGINS: usize = 4;
/// Login-state cookies looked at when a login starts (bounded work: each is
/// an AEAD open).
pub const MAX_LOGINS_EXAMINED: usize = 32;

/// Characters of the state used in the cookie name (96 bits).
const STATE_PREFIX_LEN: usize = 16;
/// A longer `state` parameter is not ours.
const MAX_STATE_LEN: usize = 512;
/// Random bytes behind each of state, nonce and PKCE verifier.
const RANDOM_LEN: usize = 32;
/// Format byte of the current [`LoginState::encode`] layout; distinct from
/// the identity's, so that neither ever decodes as the other.
const LOGIN_STATE_FORMAT: u8 = 0x4C;

/// What the callback needs to finish a login started at
/// `/oauth2/start/{provider}`. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginState {
    /// Provider id the login was started for.
    pub provider: String,
    /// OAuth `state` (CSRF token), 43 base64url characters.
    pub state: String,
    /// OpenID Connect `nonce`, 43 base64url characters.
    pub nonce: String,
    /// PKCE code verifier (RFC 7636), 43 base64url characters.
    pub pkce_verifier: String,
    /// Local path to return to after login (already made safe by the caller).
    pub return_to: String,
    /// Provider-specific secret, e.g. the OAuth 1.0a request-token secret.
    pub extra: Option<String>,
}

impl fmt::Debug for LoginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "<redacted>";
        f.debug_struct("LoginState")
            .field("provider", &self.provider)
            .field("state", &REDACTED)
            .field("nonce", &REDACTED)
            .field("pkce_verifier", &REDACTED)
            .field("return_to", &self.return_to)
            .field("extra", &self.extra.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl LoginState {
    /// A fresh login state with random state, nonce and PKCE verifier (32
    /// random bytes each, base64url without padding: 43 characters, valid
    /// for RFC 7636). A `return_to` longer than [`MAX_RETURN_TO_LEN`]
    /// becomes `/`.
    pub fn new(provider: &str, return_to: &str) -> Self {
        let return_to = if return_to.len() > MAX_RETURN_TO_LEN {
            "/"
        } else {
            return_to
        };
        LoginState {
            provider: provider.to_owned(),
            state: random_token(),
            nonce: random_token(),
            pkce_verifier: random_token(),
            return_to: return_to.to_owned(),
            extra: None,
        }
    }

    /// Compact binary form: a format byte, then each field as a big-endian
    /// `u16` length and its bytes (`0xFFFF` for an absent `extra`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + 6 * 2
                + self.provider.len()
                + self.state.len()
                + self.nonce.len()
                + self.pkce_verifier.len()
                + self.return_to.len()
                + self.extra.as_deref().map_or(0, str::len),
        );
        out.push(LOGIN_STATE_FORMAT);
        wire::put_str(&mut out, &self.provider);
        wire::put_str(&mut out, &self.state);
        wire::put_str(&mut out, &self.nonce);
        wire::put_str(&mut out, &self.pkce_verifier);
        wire::put_str(&mut out, &self.return_to);
        wire::put_opt(&mut out, self.extra.as_deref());
        out
    }

    /// Parses what [`LoginState::encode`] wrote; strict like
    /// [`crate::identity::Identity::decode`]. Never panics.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = wire::Reader::new(bytes);
        if reader.u8()? != LOGIN_STATE_FORMAT {
            return None;
        }
        let login = LoginState {
            provider: reader.str()?,
            state: reader.str()?,
            nonce: reader.str()?,
            pkce_verifier: reader.str()?,
            return_to: reader.str()?,
            extra: reader.opt_str()?,
        };
        reader.finish()?;
        Some(login)
    }

    /// Whether `state` (from the callback's query) is this login's state, in
    /// constant time. An empty state never matches.
    pub fn matches_state(&self, state: &str) -> bool {
        !self.state.is_empty() && bool::from(self.state.as_bytes().ct_eq(state.as_bytes()))
    }
}

/// Name of the login-state cookie for `state`, so that logins started in
/// several tabs do not overwrite each other:
/// `{base}_login_{first 16 characters of state}`. `None` unless `state` is
/// 16 to 512 base64url characters (`A-Z a-z 0-9 - _`).
pub fn cookie_name(base: &str, state: &str) -> Option<String> {
    if state.len() < STATE_PREFIX_LEN || state.len() > MAX_STATE_LEN {
        return None;
    }
    if !state
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let prefix = state.get(..STATE_PREFIX_LEN)?;
    Some(format!("{base}_login_{prefix}"))
}

/// The common prefix of every login-state cookie name for `base`:
/// `{base}_login_`.
pub fn cookie_prefix(base: &str) -> String {
    format!("{base}_login_")
}

/// Which login-state cookies to clear when a new login starts, so that the
/// browser keeps at most [`MAX_PENDING_LOGINS`] including the new one.
/// `held` lists the login-state cookies the request carried, in header
/// order, each with the expiry sealed inside it (`None`: it does not open,
/// is expired or is not a login state, so it goes anyway). The newest are
/// kept: latest sealed expiry first (every login state lives
/// [`LOGIN_STATE_TTL`], so that is the latest start), and among equal
/// expiries (starts within one second) the one later in the header, as
/// browsers list older cookies first. A name listed twice counts once.
pub fn crowded_out<'a>(held: &[(&'a str, Option<u64>)]) -> Vec<&'a str> {
    let mut clear: Vec<&'a str> = Vec::new();
    let mut live: Vec<(u64, usize, &'a str)> = Vec::new();
    for (position, &(name, expires_at)) in held.iter().enumerate() {
        if clear.contains(&name) || live.iter().any(|&(_, _, n)| n == name) {
            continue;
        }
        match expires_at {
            Some(at) => live.push((at, position, name)),
            None => clear.push(name),
        }
    }
    // Newest first.
    live.sort_unstable_by_key(|&(at, position, _)| std::cmp::Reverse((at, position)));
    let keep = MAX_PENDING_LOGINS.saturating_sub(1);
    clear.extend(live.iter().skip(keep).map(|&(_, _, name)| name));
    clear
}

fn random_token() -> String {
    let mut bytes = [0u8; RANDOM_LEN];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LoginState {
        LoginState {
            provider: "twitter".into(),
            state: "STATE-abcdefghijklmnopqrstuvwxyz_0123456789".into(),
            nonce: "NONCE-secret".into(),
            pkce_verifier: "VERIFIER-secret".into(),
            return_to: "/dashboard?tab=1".into(),
            extra: Some("OAUTH1-token-secret".into()),
        }
    }

    fn is_base64url(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn new_has_fresh_random_tokens() {
        let a = LoginState::new("google", "/x");
        let b = LoginState::new("google", "/x");
        assert_eq!(a.provider, "google");
        assert_eq!(a.return_to, "/x");
        assert_eq!(a.extra, None);
        for token in [&a.state, &a.nonce, &a.pkce_verifier] {
            assert_eq!(token.len(), 43);
            assert!(is_base64url(token), "{token}");
        }
        assert_ne!(a.state, b.state);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.pkce_verifier, b.pkce_verifier);
        assert_ne!(a.state, a.nonce);
        assert_ne!(a.nonce, a.pkce_verifier);
    }

    #[test]
    fn new_replaces_overlong_return_path() {
        let long = format!("/{}", "a".repeat(MAX_RETURN_TO_LEN));
        assert_eq!(LoginState::new("google", &long).return_to, "/");
        let fits = format!("/{}", "a".repeat(MAX_RETURN_TO_LEN - 1));
        assert_eq!(LoginState::new("google", &fits).return_to, fits);
    }

    #[test]
    fn round_trip() {
        let mut login = sample();
        assert_eq!(LoginState::decode(&login.encode()), Some(login.clone()));
        login.extra = None;
        assert_eq!(LoginState::decode(&login.encode()), Some(login));
        let fresh = LoginState::new("oidc", "/");
        assert_eq!(LoginState::decode(&fresh.encode()), Some(fresh));
    }

    #[test]
    fn decode_is_strict() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert_eq!(LoginState::decode(&bytes[..len]), None, "length {len}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(LoginState::decode(&trailing), None);
        for other in [0, 1, 2, 0x4D, 0xFF] {
            let mut format = bytes.clone();
            format[0] = other;
            assert_eq!(LoginState::decode(&format), None);
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let _ = LoginState::decode(&bad);
            }
        }
    }

    #[test]
    fn login_state_bytes_are_not_an_identity() {
        assert_eq!(crate::identity::Identity::decode(&sample().encode()), None);
        let mut no_extra = sample();
        no_extra.extra = None;
        assert_eq!(crate::identity::Identity::decode(&no_extra.encode()), None);
    }

    #[test]
    fn identity_bytes_are_not_a_login_state() {
        let identity = crate::identity::Identity {
            provider: "p".into(),
            subject: "s".into(),
            email: None,
            name: None,
            login: None,
            picture: None,
            groups: Vec::new(),
        };
        let mut bytes = Vec::new();
        identity.encode(&mut bytes);
        assert_eq!(LoginState::decode(&bytes), None);
    }

    #[test]
    fn matches_state() {
        let login = sample();
        assert!(login.matches_state("STATE-abcdefghijklmnopqrstuvwxyz_0123456789"));
        assert!(!login.matches_state("STATE-abcdefghijklmnopqrstuvwxyz_012345678"));
        assert!(!login.matches_state("STATE-abcdefghijklmnopqrstuvwxyz_01234567890"));
        assert!(!login.matches_state("state-abcdefghijklmnopqrstuvwxyz_0123456789"));
        assert!(!login.matches_state(""));
        let empty = LoginState {
            state: String::new(),
            ..sample()
        };
        assert!(!empty.matches_state(""));
    }

    #[test]
    fn debug_redacts_secrets() {
        let text = format!("{:?}", sample());
        for secret in ["STATE", "NONCE", "VERIFIER", "OAUTH1"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(
            text.contains("twitter") && text.contains("/dashboard"),
            "{text}"
        );
        assert!(text.contains("extra: Some(\"<redacted>\")"), "{text}");
        let none = LoginState {
            extra: None,
            ..sample()
        };
        assert!(format!("{none:?}").contains("extra: None"));
    }

    #[test]
    fn cookie_name_uses_state_prefix() {
        let login = LoginState::new("google", "/");
        let name = cookie_name("_portcullis", &login.state).unwrap_or_default();
        assert_eq!(name.len(), "_portcullis_login_".len() + 16);
        assert!(name.starts_with("_portcullis_login_"));
        assert!(login.state.starts_with(&name["_portcullis_login_".len()..]));
        assert!(crate::session::cookie::is_valid_name(&name));
        assert_eq!(
            cookie_name("_p", "0123456789abcdef").as_deref(),
            Some("_p_login_0123456789abcdef")
        );
        assert_eq!(
            cookie_name("_p", "0123456789abcdef-_XYZ").as_deref(),
            Some("_p_login_0123456789abcdef")
        );
    }

    #[test]
    fn cookie_name_rejects_foreign_states() {
        for state in [
            "",
            "short",
            "0123456789abcde",
            "0123456789abcdef;x=1",
            "0123456789abcdef ",
            "0123456789abcde=",
            "0123456789abcdef+/",
            "0123456789abcdéf",
            "0123456789abcdef\r\n",
        ] {
            assert_eq!(cookie_name("_p", state), None, "{state:?}");
        }
        assert_eq!(cookie_name("_p", &"a".repeat(MAX_STATE_LEN + 1)), None);
        assert!(cookie_name("_p", &"a".repeat(MAX_STATE_LEN)).is_some());
    }

    #[test]
    fn ttl_and_path() {
        assert_eq!(LOGIN_STATE_TTL, Duration::from_secs(600));
        // Sent to /oauth2/start/... and /oauth2/callback/...: both are needed.
        for path in ["/oauth2/start/google", "/oauth2/callback/google"] {
            assert!(path.starts_with(LOGIN_COOKIE_PATH), "{path}");
        }
        assert!(LOGIN_COOKIE_PATH.ends_with('/'));
    }

    #[test]
    fn crowded_out_keeps_the_newest_three_for_a_fourth() {
        assert_eq!(MAX_PENDING_LOGINS, 4);
        assert!(crowded_out(&[]).is_empty());
        let three = [("a", Some(100)), ("b", Some(200)), ("c", Some(300))];
        assert!(crowded_out(&three).is_empty());
        // Oldest by sealed expiry, whatever the header order.
        let five = [
            ("e", Some(500)),
            ("a", Some(100)),
            ("c", Some(300)),
            ("d", Some(400)),
            ("b", Some(200)),
        ];
        assert_eq!(crowded_out(&five), vec!["b", "a"]);
    }

    #[test]
    fn crowded_out_breaks_ties_by_header_order() {
        // Five logins started within one second: the last three listed stay.
        let same = [
            ("a", Some(7)),
            ("b", Some(7)),
            ("c", Some(7)),
            ("d", Some(7)),
            ("e", Some(7)),
        ];
        assert_eq!(crowded_out(&same), vec!["b", "a"]);
        // An older second still goes first.
        let mixed = [
            ("a", Some(8)),
            ("b", Some(7)),
            ("c", Some(8)),
            ("d", Some(8)),
        ];
        assert_eq!(crowded_out(&mixed), vec!["b"]);
    }

    #[test]
    fn crowded_out_clears_what_does_not_open_and_counts_names_once() {
        let held = [
            ("x", None),
            ("a", Some(1)),
            ("a", Some(9)),
            ("y", None),
            ("b", Some(2)),
            ("x", None),
        ];
        assert_eq!(crowded_out(&held), vec!["x", "y"]);
        let many: Vec<(String, Option<u64>)> =
            (0..20).map(|i| (format!("n{i:02}"), Some(i))).collect();
        let many: Vec<(&str, Option<u64>)> = many.iter().map(|(n, e)| (n.as_str(), *e)).collect();
        let cleared = crowded_out(&many);
        assert_eq!(cleared.len(), 20 - (MAX_PENDING_LOGINS - 1));
        for kept in ["n17", "n18", "n19"] {
            assert!(!cleared.contains(&kept), "{kept}");
        }
    }

    #[test]
    fn cookie_prefix_is_what_cookie_name_starts_with() {
        let login = LoginState::new("google", "/");
        let name = cookie_name("_portcullis", &login.state).unwrap_or_default();
        assert!(name.starts_with(&cookie_prefix("_portcullis")));
        assert_eq!(cookie_prefix("_p"), "_p_login_");
    }
}
