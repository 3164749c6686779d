//! Where a session lives, behind one type: in the cookie itself (`store = "cookie"`) or in Redis with a sealed ticket in the cookie (`store = "redis"`).
//!
//! The proxy calls [`SessionStore::open`] with the cookie's value,
//! [`SessionStore::create`] at sign-in and [`SessionStore::end`] at
//! sign-out, whatever the store. With Redis the cookie value is a ticket
//! sealed like a cookie-store session (AES-256-GCM, expiry inside) but under
//! another associated-data name ([`ticket_seal_name`]), so a value of one
//! store never opens as the other: switching stores signs everyone out
//! cleanly. A forged, tampered or expired ticket fails in the AEAD and costs
//! no Redis command.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::cache::SessionId;
use super::redis::RedisStore;
use super::{unix_now, SessionCodec};
use crate::identity::Identity;

/// Random bytes in a ticket.
pub const TICKET_LEN: usize = 32;

/// The session store could not answer (Redis unreachable or too slow): the
/// request gets a 503, never "no check".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the session store is unavailable")]
pub struct Unavailable;

/// A session found for a cookie: who, and until when (unix seconds).
pub type Found = (std::sync::Arc<Identity>, u64);

/// The configured store.
#[derive(Clone)]
pub enum SessionStore {
    Cookie,
    Redis(Arc<RedisStore>),
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionStore::Cookie => "SessionStore::Cookie",
            SessionStore::Redis(_) => "SessionStore::Redis",
        })
    }
}

/// The associated-data name a ticket is sealed under for cookie `name`.
/// The space cannot occur in a cookie name, so no cookie-store value (sealed
/// under the bare name) opens as a ticket, nor the reverse.
pub fn ticket_seal_name(name: &str) -> String {
    format!("{name} ticket")
}

/// The id a ticket is known by in Redis, in the cache and on the admin
/// listener: the first 16 bytes of its SHA-256. Neither Redis's contents
/// nor an operator ever see the ticket itself.
pub fn session_id(ticket: &[u8; TICKET_LEN]) -> SessionId {
    let digest = Sha256::digest(ticket);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Opens a sealed ticket: `None` on any failure (forged, tampered, expired,
/// another key, a cookie-store value), without any I/O.
pub fn open_ticket(
    codec: &SessionCodec,
    name: &str,
    sealed: &str,
    now: u64,
) -> Option<([u8; TICKET_LEN], u64)> {
    let (payload, expires_at) =
        codec
            .sealer()
            .open_with_expiry_at(&ticket_seal_name(name), sealed, now)?;
    let ticket = <[u8; TICKET_LEN]>::try_from(payload.as_slice()).ok()?;
    Some((ticket, expires_at))
}

/// A fresh random ticket, sealed for cookie `name` until `expires_at`.
pub fn new_ticket(codec: &SessionCodec, name: &str, expires_at: u64) -> ([u8; TICKET_LEN], String) {
    let mut ticket = [0u8; TICKET_LEN];
    OsRng.fill_bytes(&mut ticket);
    let sealed = codec
        .sealer()
        .seal_at(&ticket_seal_name(name), &ticket, expires_at);
    (ticket, sealed)
}

impl SessionStore {
    /// The session a cookie value stands for. Cookie store: one AEAD open.
    /// Redis: one AEAD open, then the per-process cache (no await on the
    /// network when it has a fresh entry), else one Redis round trip.
    pub async fn open(
        &self,
        codec: &SessionCodec,
        name: &str,
        sealed: &str,
    ) -> Result<Option<Found>, Unavailable> {
        match self {
            SessionStore::Cookie => Ok(opened::get_or_open(codec, name, sealed)),
            SessionStore::Redis(redis) => {
                let Some((ticket, _)) = open_ticket(codec, name, sealed, unix_now()) else {
                    return Ok(None);
                };
                redis.lookup(session_id(&ticket)).await
            }
        }
    }

    /// A new session for `identity` lasting `lifetime`: the cookie value to set.
    pub async fn create(
        &self,
        codec: &SessionCodec,
        name: &str,
        identity: &Identity,
        lifetime: Duration,
    ) -> Result<String, Unavailable> {
        match self {
            SessionStore::Cookie => Ok(codec.seal_identity(name, identity, lifetime)),
            SessionStore::Redis(redis) => {
                let expires_at = unix_now().saturating_add(lifetime.as_secs());
                let (ticket, sealed) = new_ticket(codec, name, expires_at);
                redis
                    .create(session_id(&ticket), identity, expires_at)
                    .await?;
                Ok(sealed)
            }
        }
    }

    /// Ends the session a cookie value stands for, everywhere. Nothing to
    /// do for the cookie store (the browser's cookie is cleared by the
    /// caller) or for a value that is no ticket.
    pub async fn end(
        &self,
        codec: &SessionCodec,
        name: &str,
        sealed: &str,
    ) -> Result<(), Unavailable> {
        match self {
            SessionStore::Cookie => Ok(()),
            SessionStore::Redis(redis) => {
                let Some((ticket, _)) = open_ticket(codec, name, sealed, unix_now()) else {
                    return Ok(());
                };
                redis.end(session_id(&ticket)).await
            }
        }
    }

    /// Whether a sign-in can be stored now (false while Redis is known to
    /// be unreachable).
    pub fn accepts_sign_ins(&self) -> bool {
        match self {
            SessionStore::Cookie => true,
            SessionStore::Redis(redis) => redis.is_usable(),
        }
    }

    /// `Err(why)` while the store cannot serve (for `/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        match self {
            SessionStore::Cookie => Ok(()),
            SessionStore::Redis(redis) => redis.readiness(),
        }
    }

    /// The Redis store, if that is the one configured.
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        match self {
            SessionStore::Cookie => None,
            SessionStore::Redis(redis) => Some(redis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Sealer, SessionKey};

    const NAME: &str = "_portcullis";

    fn codec() -> SessionCodec {
        SessionCodec::new(Sealer::new(&SessionKey::generate(), &[]))
    }

    fn identity() -> Identity {
        Identity {
            provider: "google".into(),
            subject: "1".into(),
            email: None,
            name: None,
            login: None,
            picture: None,
            groups: Vec::new(),
        }
    }

    #[test]
    fn opened_cookie_sessions_are_cached_per_codec() {
        let c = codec();
        let sealed = c.seal_identity(NAME, &identity(), Duration::from_secs(60));
        let first = opened::get_or_open(&c, NAME, &sealed).expect("opens");
        assert_eq!(*first.0, identity());
        // Served again (from the cache) for the same codec and name only.
        assert_eq!(opened::get_or_open(&c, NAME, &sealed), Some(first));
        assert_eq!(opened::get_or_open(&c, "_other", &sealed), None);
        // Another codec (a reload with another key) never gets this entry.
        assert_eq!(opened::get_or_open(&codec(), NAME, &sealed), None);
        // A tampered value is not a hit either.
        let mut tampered = sealed.clone().into_bytes();
        let at = tampered.len() / 2;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(opened::get_or_open(&c, NAME, &tampered), None);
    }

    #[test]
    fn tickets_round_trip_and_expire() {
        let c = codec();
        let now = unix_now();
        let (ticket, sealed) = new_ticket(&c, NAME, now + 60);
        assert_eq!(
            open_ticket(&c, NAME, &sealed, now),
            Some((ticket, now + 60))
        );
        assert_eq!(open_ticket(&c, NAME, &sealed, now + 60), None);
        assert_eq!(open_ticket(&c, "_other", &sealed, now), None);
        assert_eq!(open_ticket(&codec(), NAME, &sealed, now), None);
        let (other, _) = new_ticket(&c, NAME, now + 60);
        assert_ne!(ticket, other);
        assert_ne!(session_id(&ticket), session_id(&other));
    }

    #[test]
    fn the_two_stores_never_open_each_others_values() {
        let c = codec();
        let now = unix_now();
        let cookie_value = c.seal_identity(NAME, &identity(), Duration::from_secs(60));
        assert_eq!(open_ticket(&c, NAME, &cookie_value, now), None);
        let (_, ticket_value) = new_ticket(&c, NAME, now + 60);
        assert_eq!(c.open_identity(NAME, &ticket_value), None);
        // A cookie-store value with a 32-byte payload still does not open
        // as a ticket: the associated data differs.
        let sealed = c.sealer().seal_at(NAME, &[7u8; TICKET_LEN], now + 60);
        assert_eq!(open_ticket(&c, NAME, &sealed, now), None);
    }

    #[test]
    fn tickets_survive_key_rotation_with_previous_secrets() {
        let old = SessionKey::generate();
        let now = unix_now();
        let before = SessionCodec::new(Sealer::new(&old, &[]));
        let (ticket, sealed) = new_ticket(&before, NAME, now + 60);
        let rotated = SessionCodec::new(Sealer::new(&SessionKey::generate(), &[old]));
        assert_eq!(
            open_ticket(&rotated, NAME, &sealed, now),
            Some((ticket, now + 60))
        );
        let dropped = SessionCodec::new(Sealer::new(&SessionKey::generate(), &[]));
        assert_eq!(open_ticket(&dropped, NAME, &sealed, now), None);
    }

    #[test]
    fn a_ticket_must_be_exactly_32_bytes() {
        let c = codec();
        let now = unix_now();
        for len in [0, 16, 31, 33, 64] {
            let sealed = c
                .sealer()
                .seal_at(&ticket_seal_name(NAME), &vec![1u8; len], now + 60);
            assert_eq!(open_ticket(&c, NAME, &sealed, now), None, "{len}");
        }
    }

    #[tokio::test]
    async fn cookie_store_round_trip() {
        let c = codec();
        let store = SessionStore::Cookie;
        let value = store
            .create(&c, NAME, &identity(), Duration::from_secs(60))
            .await
            .expect("cookie store never fails");
        let (found, _) = store
            .open(&c, NAME, &value)
            .await
            .ok()
            .flatten()
            .expect("opens");
        assert_eq!(*found, identity());
        assert_eq!(store.open(&c, NAME, "forged").await, Ok(None));
        assert_eq!(store.end(&c, NAME, &value).await, Ok(()));
        assert!(store.accepts_sign_ins() && store.readiness().is_ok());
    }
}

/// Cookie sessions opened recently on this thread, keyed by the cookie
/// value: a browser sends the same cookie with every request, and a hash
/// lookup is cheaper than an AES-GCM open and a decode (issue 12). Only for
/// the cookie store: such a session cannot be revoked before its expiry
/// anyway, so the cache changes nothing about who gets in. (Redis sessions
/// go through the store's own cache, which revocations clear.)
mod opened {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::{unix_now, Found, SessionCodec};
    use crate::thread_cache::TailHash;

    /// Entries per thread; when full, the map starts over (no LRU
    /// bookkeeping on the hot path).
    const CAPACITY: usize = 4096;

    struct Entry {
        /// The codec (keys) that opened it: a new configuration's codec
        /// never takes an entry of the old one.
        codec: u64,
        name: Box<str>,
        found: Found,
    }

    thread_local! {
        static OPENED: RefCell<HashMap<Box<str>, Entry, TailHash>> =
            RefCell::new(HashMap::default());
    }

    pub(super) fn get_or_open(codec: &SessionCodec, name: &str, sealed: &str) -> Option<Found> {
        let id = codec.generation();
        let now = unix_now();
        let hit = OPENED.with(|m| {
            let m = m.borrow();
            let e = m.get(sealed)?;
            (e.codec == id && &*e.name == name && e.found.1 > now).then(|| e.found.clone())
        });
        if hit.is_some() {
            return hit;
        }
        let (identity, expires_at) = codec.open_identity_until(name, sealed)?;
        let found = (std::sync::Arc::new(identity), expires_at);
        OPENED.with(|m| {
            let mut m = m.borrow_mut();
            crate::thread_cache::insert_bounded(
                &mut m,
                CAPACITY,
                sealed.into(),
                Entry {
                    codec: id,
                    name: name.into(),
                    found: found.clone(),
                },
            );
        });
        Some(found)
    }
}
