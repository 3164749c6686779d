//! Bearer tokens verified recently on this thread. An API client sends the
//! same token with every request, and an RS256 signature check (an RSA
//! public-key operation plus JSON decoding of the claims) costs far more
//! than a hash of the token, which is what a hit costs.
//!
//! Only tokens that passed every check are kept, each until its `exp` or
//! for [`MAX_AGE`] seconds, whichever comes first: a key the provider
//! stops publishing stops accepting its tokens within a minute, as the key
//! set itself is refetched no more often than that. Entries belong to one
//! [`super::Providers`] (a generation number): a reloaded configuration
//! with other audiences or issuers never takes an entry of the old one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::BearerUser;

/// Longest time a verified token is trusted without a new check (seconds).
pub const MAX_AGE: u64 = 60;
/// Entries per thread; when full the map starts over (no LRU bookkeeping).
const CAPACITY: usize = 1024;
/// Tokens longer than this are verified every time, never kept.
const MAX_TOKEN: usize = 8 * 1024;

struct Entry {
    generation: u64,
    /// Unix second after which the entry is not used.
    until: u64,
    user: BearerUser,
}

thread_local! {
    static VERIFIED: RefCell<HashMap<Box<str>, Entry, crate::thread_cache::TailHash>> =
        RefCell::new(HashMap::default());
}

/// A new generation for a new set of providers.
pub fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The user of `token` if it was verified by `generation` and is still
/// within its time.
pub fn get(generation: u64, token: &str, now: u64) -> Option<BearerUser> {
    VERIFIED.with(|m| {
        let m = m.borrow();
        let e = m.get(token)?;
        (e.generation == generation && now < e.until).then(|| e.user.clone())
    })
}

/// Keeps a token that passed every check at `now`.
pub fn put(generation: u64, token: &str, user: &BearerUser, now: u64) {
    if token.len() > MAX_TOKEN {
        return;
    }
    let until = user.expires_at.min(now.saturating_add(MAX_AGE));
    VERIFIED.with(|m| {
        let mut m = m.borrow_mut();
        crate::thread_cache::insert_bounded(
            &mut m,
            CAPACITY,
            token.into(),
            Entry {
                generation,
                until,
                user: user.clone(),
            },
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn user(expires_at: u64) -> BearerUser {
        BearerUser {
            identity: Identity {
                provider: "acme".into(),
                subject: "svc".into(),
                email: None,
                name: None,
                login: None,
                picture: None,
                groups: vec![],
            },
            expires_at,
            pass_authorization: false,
        }
    }

    #[test]
    fn kept_until_exp_or_a_minute_and_only_for_its_generation() {
        let g = next_generation();
        let other = next_generation();
        let now = 1_000_000;
        put(g, "tok-a", &user(now + 3600), now);
        assert_eq!(get(g, "tok-a", now).map(|u| u.expires_at), Some(now + 3600));
        assert!(get(g, "tok-a", now + MAX_AGE - 1).is_some());
        assert!(get(g, "tok-a", now + MAX_AGE).is_none(), "a minute at most");
        assert!(get(other, "tok-a", now).is_none(), "another configuration");
        assert!(get(g, "tok-b", now).is_none());
        // A token expiring sooner than a minute: until its exp only.
        put(g, "tok-c", &user(now + 10), now);
        assert!(get(g, "tok-c", now + 9).is_some());
        assert!(get(g, "tok-c", now + 10).is_none());
        // Huge tokens are never kept.
        let huge = "x".repeat(MAX_TOKEN + 1);
        put(g, &huge, &user(now + 3600), now);
        assert!(get(g, &huge, now).is_none());
    }
}
