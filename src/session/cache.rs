//! The per-process cache of recently seen Redis sessions: bounded, sharded, each entry trusted for a short time only; pure, with the clock as a parameter.
//!
//! An entry is what Redis said about a session id at `fetched`. It is
//! *fresh* for [`FRESH_FOR`]; after that the session is asked of Redis
//! again. Invalidation (a sign-out or revocation announced on the Redis
//! channel) removes ids at once. A lookup that started before an
//! invalidation must not put its (possibly revoked) answer back: every
//! invalidation bumps an epoch, and [`SessionCache::insert`] is refused when
//! the epoch moved since the lookup began ([`SessionCache::epoch`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::identity::Identity;

/// How long an answer from Redis is trusted without asking again. It is
/// also how long cached sessions keep working while Redis is unreachable.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// Entries kept at most, over all shards.
pub const CAPACITY: usize = 16 * 1024;

const SHARDS: usize = 16;

/// A session id: the first 16 bytes of SHA-256 of the ticket.
pub type SessionId = [u8; 16];

#[derive(Clone, Debug)]
struct Entry {
    identity: Arc<Identity>,
    /// When the session ends (unix seconds, exclusive).
    expires_at: u64,
    fetched: Instant,
}

/// The cache. All methods take `&self`; the hot path is one short lock of
/// one shard.
pub struct SessionCache {
    shards: [Mutex<HashMap<SessionId, Entry>>; SHARDS],
    per_shard: usize,
    epoch: AtomicU64,
}

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache::with_capacity(CAPACITY)
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache of about `capacity` entries (at least one per shard).
    pub fn with_capacity(capacity: usize) -> Self {
        SessionCache {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            epoch: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: &SessionId) -> std::sync::MutexGuard<'_, HashMap<SessionId, Entry>> {
        self.shards[usize::from(id[0]) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The cached session, if its entry is fresh at `now` and the session
    /// has not ended at `unix_now`.
    pub fn get_fresh(
        &self,
        id: &SessionId,
        now: Instant,
        unix_now: u64,
    ) -> Option<(Arc<Identity>, u64)> {
        let shard = self.shard(id);
        let entry = shard.get(id)?;
        let fresh = now.saturating_duration_since(entry.fetched) < FRESH_FOR;
        (fresh && unix_now < entry.expires_at).then(|| (entry.identity.clone(), entry.expires_at))
    }

    /// The current epoch; pass it to [`SessionCache::insert`] for an answer
    /// fetched after this call.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches Redis's answer, fetched at `fetched`, unless an invalidation
    /// happened since `epoch` was read. Returns whether it was cached.
    pub fn insert(
        &self,
        epoch: u64,
        id: SessionId,
        identity: Arc<Identity>,
        expires_at: u64,
        fetched: Instant,
    ) -> bool {
        let mut shard = self.shard(&id);
        // Checked under the shard lock: an invalidation bumps the epoch
        // before it takes the lock to remove ids, so either it sees this
        // entry or this insert sees its epoch.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return false;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(&id) {
            shard.retain(|_, e| fetched.saturating_duration_since(e.fetched) < FRESH_FOR);
            if shard.len() >= self.per_shard {
                // Still full of fresh entries: drop one (the map's order is
                // effectively random).
                if let Some(victim) = shard.keys().next().copied() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            id,
            Entry {
                identity,
                expires_at,
                fetched,
            },
        );
        true
    }

    /// Forgets these ids (a sign-out or revocation) and refuses answers
    /// from lookups that were in flight.
    pub fn invalidate<'a>(&self, ids: impl IntoIterator<Item = &'a SessionId>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for id in ids {
            self.shard(id).remove(id);
        }
    }

    /// Forgets everything (after invalidations may have been missed).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// Forgets one id without bumping the epoch (Redis said it is gone).
    pub fn remove(&self, id: &SessionId) {
        self.shard(id).remove(id);
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIX: u64 = 1_700_000_000;

    fn identity(n: u8) -> Arc<Identity> {
        Arc::new(Identity {
            provider: "google".into(),
            subject: format!("{n}"),
            email: None,
            name: None,
            login: None,
            picture: None,
            groups: Vec::new(),
        })
    }

    fn id(n: u8) -> SessionId {
        let mut id = [0u8; 16];
        id[0] = n;
        id[15] = n.wrapping_mul(7);
        id
    }

    #[test]
    fn fresh_entries_are_served_then_expire() {
        let c = SessionCache::default();
        let t0 = Instant::now();
        assert!(c.insert(c.epoch(), id(1), identity(1), UNIX + 60, t0));
        assert_eq!(
            c.get_fresh(&id(1), t0, UNIX),
            Some((identity(1), UNIX + 60))
        );
        let almost = t0 + FRESH_FOR - Duration::from_millis(1);
        assert!(c.get_fresh(&id(1), almost, UNIX).is_some());
        assert!(c.get_fresh(&id(1), t0 + FRESH_FOR, UNIX).is_none());
        // The session's own end counts too.
        assert!(c.get_fresh(&id(1), t0, UNIX + 60).is_none());
        assert!(c.get_fresh(&id(2), t0, UNIX).is_none());
    }

    #[test]
    fn invalidation_removes_and_refuses_answers_in_flight() {
        let c = SessionCache::default();
        let t0 = Instant::now();
        c.insert(c.epoch(), id(1), identity(1), UNIX + 60, t0);
        c.insert(c.epoch(), id(2), identity(2), UNIX + 60, t0);
        // A lookup of id 3 starts ...
        let before = c.epoch();
        // ... a sign-out of id 3 (and 1) is announced meanwhile ...
        c.invalidate(&[id(1), id(3)]);
        // ... so its answer is not cached.
        assert!(!c.insert(before, id(3), identity(3), UNIX + 60, t0));
        assert!(c.get_fresh(&id(3), t0, UNIX).is_none());
        assert!(c.get_fresh(&id(1), t0, UNIX).is_none());
        assert!(c.get_fresh(&id(2), t0, UNIX).is_some(), "others stay");
        // A lookup that started after it is cached.
        assert!(c.insert(c.epoch(), id(3), identity(3), UNIX + 60, t0));
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn it_stays_bounded() {
        let c = SessionCache::with_capacity(64);
        let t0 = Instant::now();
        for n in 0..=255u8 {
            let mut key = id(n);
            for k in 0..8u8 {
                key[1] = k;
                c.insert(c.epoch(), key, identity(n), UNIX + 60, t0);
            }
        }
        assert!(c.len() <= 64, "{}", c.len());
        // Stale entries are dropped first when a shard is full.
        let later = t0 + FRESH_FOR;
        assert!(c.insert(c.epoch(), id(0), identity(0), UNIX + 60, later));
        assert!(c.get_fresh(&id(0), later, UNIX).is_some());
    }
}
