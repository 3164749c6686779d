//! `pass_access_token`: the provider's access token, kept sealed in a
//! cookie of its own next to the session, sent upstream as
//! `X-Forwarded-Access-Token`, and refreshed shortly before it expires —
//! once per session however many requests are waiting for it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::identity::wire;

/// The request header the access token travels in.
pub const HEADER: &str = "x-forwarded-access-token";
/// Format byte of the sealed payload.
const FORMAT: u8 = 0x01;
/// A refresh result is reused this long by requests that still carry the
/// old cookie (sent before the browser stored the new one).
const KEEP_RESULT: Duration = Duration::from_secs(120);

/// The cookie holding the sealed tokens: `{cookie_name}-at`.
pub fn cookie_name(session_cookie: &str) -> String {
    format!("{session_cookie}-at")
}

/// The provider's tokens for `pass_access_token`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds; 0 when the provider did not say (`expires_in` absent).
    pub expires_at: u64,
    /// Unix seconds.
    pub obtained_at: u64,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("refreshable", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Refresh when less than a quarter of the token's life (at most a
    /// minute) is left, and only with a refresh token.
    pub fn needs_refresh(&self, now: u64) -> bool {
        if self.expires_at == 0 || self.refresh_token.is_none() {
            return false;
        }
        let life = self.expires_at.saturating_sub(self.obtained_at);
        let margin = (life / 4).clamp(1, 60);
        now.saturating_add(margin) >= self.expires_at
    }

    /// The sealed cookie's payload, bound to `user` (the `X-User` value).
    pub fn encode(&self, user: &str) -> Vec<u8> {
        let mut out = vec![FORMAT];
        wire::put_str(&mut out, user);
        wire::put_str(&mut out, &self.access_token);
        wire::put_opt(&mut out, self.refresh_token.as_deref());
        wire::put_str(&mut out, &self.expires_at.to_string());
        wire::put_str(&mut out, &self.obtained_at.to_string());
        out
    }

    /// [`AccessTokens::encode`]'s payload, if it is about `user`.
    pub fn decode(bytes: &[u8], user: &str) -> Option<AccessTokens> {
        let mut r = wire::Reader::new(bytes);
        if r.u8()? != FORMAT || r.str()? != user {
            return None;
        }
        let tokens = AccessTokens {
            access_token: r.str()?,
            refresh_token: r.opt_str()?,
            expires_at: r.str()?.parse().ok()?,
            obtained_at: r.str()?.parse().ok()?,
        };
        r.finish()?;
        Some(tokens)
    }
}

/// Why a refresh gave no new token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The provider refused the refresh token (revoked, expired): the
    /// session ends.
    Refused,
    /// The provider could not be asked: keep the current token.
    Unavailable,
}

type Slot = Arc<tokio::sync::OnceCell<Result<AccessTokens, RefreshFailure>>>;

/// One refresh per refresh token at a time: the first request does it,
/// the others wait for its result, and requests that arrive with the old
/// cookie shortly after get the same result instead of a second refresh.
#[derive(Default)]
pub struct SingleFlight {
    hasher: std::collections::hash_map::RandomState,
    slots: Mutex<HashMap<u64, (Instant, Slot)>>,
}

impl SingleFlight {
    /// The refresh of `refresh_token`, done by `refresh` unless one is
    /// already under way or just finished with tokens still fresh at `now`
    /// (unix seconds; a provider that does not rotate refresh tokens sends
    /// the same one again, which must refresh again later).
    pub async fn refresh<F, Fut>(
        &self,
        refresh_token: &str,
        now: u64,
        refresh: F,
    ) -> Result<AccessTokens, RefreshFailure>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AccessTokens, RefreshFailure>>,
    {
        let unix_now = now;
        let mut h = self.hasher.build_hasher();
        h.write(refresh_token.as_bytes());
        let key = h.finish();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            slots.retain(|_, (at, _)| now.duration_since(*at) < KEEP_RESULT);
            let entry = slots.entry(key).or_insert_with(|| (now, Slot::default()));
            if let Some(Ok(done)) = entry.1.get() {
                if done.needs_refresh(unix_now) {
                    *entry = (now, Slot::default());
                }
            }
            entry.1.clone()
        };
        let result = slot.get_or_init(refresh).await.clone();
        if result == Err(RefreshFailure::Unavailable) {
            // Not worth remembering: the next request may try again.
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if slots.get(&key).is_some_and(|(_, s)| Arc::ptr_eq(s, &slot)) {
                slots.remove(&key);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tokens() -> AccessTokens {
        AccessTokens {
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            expires_at: 1_000_300,
            obtained_at: 1_000_000,
        }
    }

    #[test]
    fn round_trip_bound_to_the_user() {
        let t = tokens();
        let bytes = t.encode("acme:1");
        assert_eq!(AccessTokens::decode(&bytes, "acme:1"), Some(t));
        assert_eq!(AccessTokens::decode(&bytes, "acme:2"), None);
        assert_eq!(
            AccessTokens::decode(&bytes[..bytes.len() - 1], "acme:1"),
            None
        );
        assert!(!format!("{:?}", tokens()).contains("\"at\""));
    }

    #[test]
    fn refresh_in_the_last_quarter_at_most_a_minute() {
        let t = tokens();
        assert!(!t.needs_refresh(1_000_239));
        assert!(t.needs_refresh(1_000_240));
        let short = AccessTokens {
            expires_at: 1_000_008,
            ..tokens()
        };
        assert!(!short.needs_refresh(1_000_005));
        assert!(short.needs_refresh(1_000_006));
        let no_refresh = AccessTokens {
            refresh_token: None,
            ..tokens()
        };
        assert!(!no_refresh.needs_refresh(2_000_000));
    }

    #[tokio::test]
    async fn ten_waiting_requests_one_refresh() {
        let flight = Arc::new(SingleFlight::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (go, wait) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (flight, calls, mut wait) = (flight.clone(), calls.clone(), wait.clone());
            tasks.push(tokio::spawn(async move {
                flight
                    .refresh("rt", 0, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = wait.wait_for(|v| *v).await;
                        Ok(tokens())
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        go.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(tokens()));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
