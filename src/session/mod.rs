//! Sessions: the sealed session cookie carrying the identity, the sealed login-state cookie, and their handling on the wire.
//!
//! Writing a session: `SessionCodec::seal_identity(base_name, ..)` then
//! `cookie::set_split(base_name, ..)`; reading: `cookie::find_split` then
//! `SessionCodec::open_identity(base_name, ..)`. The seal is bound to the
//! base name (`_portcullis`), not to the names of the parts.
//!
//! Login state: `login_state::cookie_name(base, &state.state)` names the
//! cookie; seal the state under that name, set it with `cookie::set_one` at
//! [`LOGIN_COOKIE_PATH`] for [`LOGIN_STATE_TTL`]. In the callback, derive the
//! name from the `state` query parameter, open the cookie under it, then
//! check `matches_state` and that `provider` is the callback's provider.
//! When a login starts, `SessionCodec::clear_crowded_out_logins` gives the
//! `Set-Cookie`s that retire the browser's oldest login states (at most
//! [`login_state::MAX_PENDING_LOGINS`] stay, the new one included).
//!
//! Where the session lives (`store = "cookie"` or `"redis"`) is behind
//! [`SessionStore`] (`store.rs`); with Redis the cookie holds a sealed
//! ticket and the identity is in Redis (`redis.rs`), with a per-process
//! cache in front (`cache.rs`).

pub mod cache;
pub mod cookie;
pub mod login_state;
pub mod redis;
pub mod seal;
pub mod store;

use std::time::Duration;

use crate::identity::Identity;

pub use self::cookie::{CookieAttrs, SameSite};
pub use self::login_state::{LoginState, LOGIN_COOKIE_PATH, LOGIN_STATE_TTL};
pub use self::seal::{unix_now, KeyError, Sealer, SessionKey, MAX_SEALED_LEN};
pub use self::store::{SessionStore, Unavailable};

/// Seals and opens identities and login states with one [`Sealer`].
#[derive(Clone, Debug)]
pub struct SessionCodec {
    sealer: Sealer,
    /// Unique per codec built in this process: caches of opened sessions
    /// (store.rs) never serve one codec's result to another (a reload
    /// with other keys).
    generation: u64,
}

impl SessionCodec {
    pub fn new(sealer: Sealer) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SessionCodec {
            sealer,
            generation: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The underlying sealer.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The sealed session value for cookie `name`, valid for `ttl`.
    pub fn seal_identity(&self, name: &str, identity: &Identity, ttl: Duration) -> String {
        self.seal_identity_at(name, identity, unix_now().saturating_add(ttl.as_secs()))
    }

    /// The sealed session value for cookie `name`, valid until `expires_at`
    /// (unix seconds, exclusive).
    pub fn seal_identity_at(&self, name: &str, identity: &Identity, expires_at: u64) -> String {
        let mut payload = Vec::with_capacity(128);
        identity.encode(&mut payload);
        self.sealer.seal_at(name, &payload, expires_at)
    }

    /// The identity in a session value read from cookie `name`, if it is
    /// authentic, unexpired at `now` and well-formed.
    pub fn open_identity_at(&self, name: &str, sealed: &str, now: u64) -> Option<Identity> {
        Identity::decode(&self.sealer.open_at(name, sealed, now)?)
    }

    /// [`SessionCodec::open_identity_at`] at the current time.
    pub fn open_identity(&self, name: &str, sealed: &str) -> Option<Identity> {
        self.open_identity_at(name, sealed, unix_now())
    }

    /// The identity and the session's expiry (unix seconds, exclusive).
    pub fn open_identity_until(&self, name: &str, sealed: &str) -> Option<(Identity, u64)> {
        let (payload, expires_at) = self.sealer.open_with_expiry_at(name, sealed, unix_now())?;
        Some((Identity::decode(&payload)?, expires_at))
    }

    /// The sealed login-state value for cookie `name`, valid for
    /// [`LOGIN_STATE_TTL`].
    pub fn seal_login_state(&self, name: &str, login: &LoginState) -> String {
        self.sealer.seal(name, &login.encode(), LOGIN_STATE_TTL)
    }

    /// The login state in a value read from cookie `name`, if authentic,
    /// unexpired at `now` and well-formed.
    pub fn open_login_state_at(&self, name: &str, sealed: &str, now: u64) -> Option<LoginState> {
        LoginState::decode(&self.sealer.open_at(name, sealed, now)?)
    }

    /// [`SessionCodec::open_login_state_at`] at the current time.
    pub fn open_login_state(&self, name: &str, sealed: &str) -> Option<LoginState> {
        self.open_login_state_at(name, sealed, unix_now())
    }

    /// `Set-Cookie` values that clear the login-state cookies (of base name
    /// `base`) in the request's `cookie_headers` that a new login crowds
    /// out: the oldest beyond [`login_state::MAX_PENDING_LOGINS`] - 1, by
    /// the expiry sealed inside them, and every one that does not open at
    /// `now` as a login state. At most [`login_state::MAX_LOGINS_EXAMINED`]
    /// are looked at. To be sent with the new login's cookie.
    pub fn clear_crowded_out_logins_at<'a>(
        &self,
        base: &str,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        attrs: &CookieAttrs,
        now: u64,
    ) -> Vec<String> {
        let prefix = login_state::cookie_prefix(base);
        let held: Vec<(&str, Option<u64>)> =
            cookie::find_prefixed(cookie_headers, &prefix, login_state::MAX_LOGINS_EXAMINED)
                .into_iter()
                .map(|(name, sealed)| {
                    let expires_at = self
                        .sealer
                        .open_with_expiry_at(name, sealed, now)
                        .filter(|(payload, _)| LoginState::decode(payload).is_some())
                        .map(|(_, at)| at);
                    (name, expires_at)
                })
                .collect();
        login_state::crowded_out(&held)
            .into_iter()
            .map(|name| cookie::clear_one(name, LOGIN_COOKIE_PATH, attrs))
            .collect()
    }

    /// [`SessionCodec::clear_crowded_out_logins_at`] at the current time.
    pub fn clear_crowded_out_logins<'a>(
        &self,
        base: &str,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        attrs: &CookieAttrs,
    ) -> Vec<String> {
        self.clear_crowded_out_logins_at(base, cookie_headers, attrs, unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "_portcullis";

    fn codec(byte: u8) -> SessionCodec {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let key = SessionKey::from_base64(&text).unwrap_or_else(|_| SessionKey::generate());
        SessionCodec::new(Sealer::new(&key, &[]))
    }

    fn identity() -> Identity {
        Identity {
            provider: "google".into(),
            subject: "110169484474386276334".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice".into()),
            login: None,
            picture: Some("https://example.com/a.png".into()),
            groups: Vec::new(),
        }
    }

    #[test]
    fn identity_round_trip() {
        let c = codec(0);
        let sealed = c.seal_identity_at(NAME, &identity(), 2_000);
        assert_eq!(c.open_identity_at(NAME, &sealed, 1_999), Some(identity()));
        assert_eq!(c.open_identity_at(NAME, &sealed, 2_000), None);
        assert_eq!(c.open_identity_at("_other", &sealed, 1_000), None);
        let sealed = c.seal_identity(NAME, &identity(), Duration::from_secs(3600));
        assert_eq!(c.open_identity(NAME, &sealed), Some(identity()));
    }

    #[test]
    fn identity_does_not_open_under_another_key() {
        let sealed = codec(0).seal_identity(NAME, &identity(), Duration::from_secs(60));
        assert_eq!(codec(1).open_identity(NAME, &sealed), None);
    }

    #[test]
    fn login_state_round_trip_and_not_an_identity() {
        let c = codec(0);
        let login = LoginState::new("google", "/after");
        let name = login_state::cookie_name(NAME, &login.state).unwrap_or_default();
        let sealed = c.seal_login_state(&name, &login);
        assert_eq!(c.open_login_state(&name, &sealed), Some(login.clone()));
        assert_eq!(c.open_identity(&name, &sealed), None);
        assert_eq!(c.open_login_state(NAME, &sealed), None);
        let later = unix_now() + LOGIN_STATE_TTL.as_secs();
        assert_eq!(c.open_login_state_at(&name, &sealed, later), None);
    }

    #[test]
    fn login_state_of_another_tab_does_not_open_under_this_name() {
        let c = codec(0);
        let a = LoginState::new("google", "/a");
        let b = LoginState::new("google", "/b");
        let name_a = login_state::cookie_name(NAME, &a.state).unwrap_or_default();
        let name_b = login_state::cookie_name(NAME, &b.state).unwrap_or_default();
        let sealed_b = c.seal_login_state(&name_b, &b);
        assert_eq!(c.open_login_state(&name_a, &sealed_b), None);
    }

    #[test]
    fn sealed_session_fits_one_cookie_and_survives_the_wire() {
        let c = codec(0);
        let sealed = c.seal_identity(NAME, &identity(), Duration::from_secs(60));
        let attrs = CookieAttrs {
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
        };
        let set = cookie::set_split(NAME, &sealed, &attrs, Duration::from_secs(60), [])
            .unwrap_or_default();
        assert_eq!(set.len(), 1);
        let header = set[0].split(';').next().unwrap_or_default().to_owned();
        let read = cookie::find_split([header.as_bytes()], NAME);
        assert_eq!(
            c.open_identity(NAME, read.as_deref().unwrap_or_default()),
            Some(identity())
        );
    }

    fn lax() -> CookieAttrs {
        CookieAttrs {
            secure: false,
            same_site: SameSite::Lax,
            domain: None,
        }
    }

    /// `n` login states sealed at one-second steps from `t0`, as a browser
    /// would send them (oldest first), with their cookie names.
    fn held_logins(c: &SessionCodec, n: u64, t0: u64) -> (Vec<String>, String) {
        let mut names = Vec::new();
        let mut pairs = Vec::new();
        for i in 0..n {
            let login = LoginState::new("google", "/");
            let name = login_state::cookie_name(NAME, &login.state).unwrap_or_default();
            let expires = t0 + i + LOGIN_STATE_TTL.as_secs();
            let sealed = c.sealer().seal_at(&name, &login.encode(), expires);
            pairs.push(format!("{name}={sealed}"));
            names.push(name);
        }
        (names, pairs.join("; "))
    }

    /// The cookie names cleared by `Set-Cookie` values.
    fn cleared(set: &[String]) -> Vec<String> {
        set.iter()
            .map(|c| {
                assert!(
                    c.contains("Max-Age=0") && c.contains("Path=/oauth2/;"),
                    "{c}"
                );
                c.split('=').next().unwrap_or_default().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_new_login_clears_the_oldest_beyond_three() {
        let c = codec(0);
        let now = 1_000_000;
        let (names, header) = held_logins(&c, 6, now - 10);
        // Shuffled order: the sealed expiry decides, not the header.
        let mut parts: Vec<&str> = header.split("; ").collect();
        parts.reverse();
        let shuffled = format!("_portcullis=s; {}", parts.join("; "));
        let set = c.clear_crowded_out_logins_at(NAME, [shuffled.as_bytes()], &lax(), now);
        let mut got = cleared(&set);
        got.sort();
        let mut want = names[..3].to_vec();
        want.sort();
        assert_eq!(got, want);
        // Three or fewer: nothing to clear.
        let (_, three) = held_logins(&c, 3, now - 10);
        assert!(c
            .clear_crowded_out_logins_at(NAME, [three.as_bytes()], &lax(), now)
            .is_empty());
    }

    #[test]
    fn login_states_that_do_not_open_are_cleared_and_do_not_count() {
        let c = codec(0);
        let now = 1_000_000;
        let (names, header) = held_logins(&c, 3, now - 10);
        let foreign = held_logins(&codec(1), 1, now - 10).1;
        let expired = held_logins(&c, 1, now - 1000).1;
        let header = format!("{foreign}; _portcullis_login_garbage=x; {expired}; {header}");
        let set = c.clear_crowded_out_logins_at(NAME, [header.as_bytes()], &lax(), now);
        let got = cleared(&set);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&"_portcullis_login_garbage".to_owned()));
        for kept in &names {
            assert!(!got.contains(kept), "{kept}");
        }
        // A session, or an identity sealed under a login-state name, is no login state.
        let id_name = format!("{NAME}_login_0123456789abcdef");
        let id = c.seal_identity_at(&id_name, &identity(), now + 60);
        let header = format!("{NAME}=x; {id_name}={id}");
        let set = c.clear_crowded_out_logins_at(NAME, [header.as_bytes()], &lax(), now);
        assert_eq!(cleared(&set), vec![id_name]);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let text = format!("{:?}", codec(0));
        assert!(
            text.contains("SessionCodec") && text.contains("Sealer"),
            "{text}"
        );
    }
}
