//! The Redis session store: sessions keyed by ticket id with the session's lifetime as TTL, a per-user index, invalidation over pub/sub, health tracking, and the operator's list and revoke.
//!
//! Keys (all under `redis_key_prefix`, default `portcullis:`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}s:{id}` | hash | `v` (the identity, binary), `user`, `provider`, `created`, `seen`, `exp` (unix seconds); expires at `exp` |
//! | `{prefix}u:{user}` | sorted set | the user's session ids, scored by `exp`; expires with the last one |
//! | `{prefix}invalidate` | channel | `signout {id}` and `revoke {n} {id} {id} ...` |
//!
//! `{id}` is 32 hex digits: the first half of SHA-256 of the ticket in the
//! cookie, never the ticket itself.
//!
//! Every Redis command runs on this store's own single-threaded runtime
//! (thread `portcullis-redis`); the proxy's threads only wait for the
//! answer, and a fresh cache entry costs them no await at all.
//!
//! Where Redis is (`redis_url`, `redis_sentinel_urls`, `redis_cluster_urls`):
//! one server through a connection manager that reconnects by itself; the
//! master named by Sentinel, followed across failovers (the health task asks
//! `ROLE` and, when the answer is not "master", asks the Sentinels again,
//! and the invalidation channel is subscribed again on the new master); or a
//! Cluster through the cluster client (which follows slots and reconnects by
//! itself), with the channel subscribed on any one node (Cluster pub/sub
//! reaches every node). No command touches two keys at once, so no key
//! needs a hash tag: the few multi-key operations are split by key.
//!
//! Failure handling: a background task pings Redis every
//! [`HEALTH_EVERY`] and records whether it is reachable; the request path
//! does not try Redis while it is known to be down. A cache entry is
//! served without asking Redis only while it is fresh
//! ([`cache::FRESH_FOR`]) and either the invalidation channel is
//! subscribed or Redis cannot be reached; otherwise the answer comes from
//! Redis, or the request gets a 503. Each change of state is logged once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, IntoConnectionInfo as _, Pipeline, RedisConnectionInfo, RedisError, RedisFuture,
    Value,
};
use serde::Serialize;
use tokio::runtime::Handle;

use super::cache::{SessionCache, SessionId};
use super::store::{Found, Unavailable};
use super::unix_now;
use crate::config::{self, RedisTarget};
use crate::identity::Identity;

/// Longest wait for one operation on the request path or the admin listener.
const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// Timeout of a connection attempt and of each command on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often Redis is pinged to know whether it is reachable.
pub const HEALTH_EVERY: Duration = Duration::from_millis(500);
/// How often the invalidation connection is pinged (a silent network loss
/// is noticed within about twice this).
const SUBSCRIBER_PING_EVERY: Duration = Duration::from_secs(1);
/// Pause between attempts to subscribe again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(250);

/// On a cache miss: the identity and expiry in one round trip, and "last
/// seen" updated only if the session still exists (no key is created).
/// Sent with EVAL each time (Redis caches the compiled script): always one
/// round trip, also right after a Redis restart, where EVALSHA would take
/// three.
const FETCH_SCRIPT: &str = r"
local v = redis.call('HMGET', KEYS[1], 'v', 'exp')
if v[1] then redis.call('HSET', KEYS[1], 'seen', ARGV[1]) end
return v
";

/// Key names under the configured prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn session(&self, id: &str) -> String {
        format!("{}s:{id}", self.prefix)
    }

    pub fn user(&self, user: &str) -> String {
        format!("{}u:{user}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }
}

/// A session as the admin listener and `portcullis sessions list` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// 32 hex digits (not the cookie's ticket; not usable to sign in).
    pub id: String,
    pub provider: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds: when a replica last asked Redis about it (each replica
    /// asks again at most every few seconds while it is in use).
    pub last_seen: u64,
    /// Unix seconds: when it ends by itself.
    pub expires: u64,
}

/// The id as it appears in keys and messages.
pub fn id_hex(id: &SessionId) -> String {
    let mut out = String::with_capacity(32);
    for b in id {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The id from its hex form.
pub fn id_from_hex(text: &str) -> Option<SessionId> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// A message on the invalidation channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// One session ended by its user.
    SignOut(SessionId),
    /// Sessions ended by an operator; `count` of them existed.
    Revoke { count: u64, ids: Vec<SessionId> },
}

impl Invalidation {
    pub fn encode(&self) -> String {
        match self {
            Invalidation::SignOut(id) => format!("signout {}", id_hex(id)),
            Invalidation::Revoke { count, ids } => {
                let mut out = format!("revoke {count}");
                for id in ids {
                    out.push(' ');
                    out.push_str(&id_hex(id));
                }
                out
            }
        }
    }

    /// `None` for anything else (ignored, never trusted).
    pub fn decode(text: &str) -> Option<Invalidation> {
        let mut words = text.split(' ');
        match words.next()? {
            "signout" => {
                let id = id_from_hex(words.next()?)?;
                words.next().is_none().then_some(Invalidation::SignOut(id))
            }
            "revoke" => {
                let count = words.next()?.parse().ok()?;
                let ids = words.map(id_from_hex).collect::<Option<Vec<_>>>()?;
                Some(Invalidation::Revoke { count, ids })
            }
            _ => None,
        }
    }

    fn ids(&self) -> &[SessionId] {
        match self {
            Invalidation::SignOut(id) => std::slice::from_ref(id),
            Invalidation::Revoke { ids, .. } => ids,
        }
    }
}

/// A short description of a Redis error for logs and `/readyz`: its kind,
/// never an address or a credential.
pub fn describe(e: &RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_dropped() {
        "connection lost".to_owned()
    } else {
        e.category().to_owned()
    }
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Whether Redis is reachable, with each change logged once.
struct Health {
    state: AtomicU8,
    /// Whether Redis ever answered (the first success is "connected", later
    /// ones "reachable again").
    ever_up: AtomicBool,
    why: Mutex<String>,
    /// The URL without credentials, for log lines.
    shown: String,
}

impl Health {
    fn up(&self) {
        if self.state.swap(UP, Ordering::AcqRel) == UP {
            return;
        }
        if self.ever_up.swap(true, Ordering::AcqRel) {
            tracing::warn!(redis = %self.shown, "session store: Redis is reachable again; sessions and sign-ins work again");
        } else {
            tracing::info!(redis = %self.shown, "session store: connected to Redis");
        }
    }

    fn down(&self, why: String) {
        let before = self.state.swap(DOWN, Ordering::AcqRel);
        if before != DOWN {
            match before {
                CONNECTING => {
                    tracing::error!(redis = %self.shown, reason = %why, "session store: Redis is unreachable at start-up; sign-ins and sessions not in the cache get 503 until it is reachable")
                }
                _ => {
                    tracing::error!(redis = %self.shown, reason = %why, "session store: Redis is unreachable; cached sessions work for a few seconds, then requests with a session get 503 until it is back")
                }
            }
        }
        *self.why.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }
}

/// A connection to Redis, whichever kind the configuration asks for; cheap
/// to clone (each kind multiplexes one connection per server).
#[derive(Clone)]
pub enum Conn {
    /// One server (or the Sentinel's master): reconnects by itself.
    Manager(ConnectionManager),
    /// One server, one attempt (the command line).
    Direct(MultiplexedConnection),
    /// A Redis Cluster: routes each command by its key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Direct(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Direct(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How this process reaches Redis.
enum Backend {
    /// `redis_url`.
    Single(Client),
    /// `redis_sentinel_urls` + `redis_sentinel_master`.
    Sentinel(Sentinels),
    /// `redis_cluster_urls`; `nodes` are the configured nodes, tried in
    /// turn for the invalidation channel.
    Cluster {
        client: ClusterClient,
        nodes: Vec<Client>,
    },
}

/// The Sentinels, asked which server is the master. The master is
/// reached with the user, password, database and TLS of the first URL; the
/// Sentinels with their own URL's user and password (a Sentinel has no
/// databases).
struct Sentinels {
    sentinels: Vec<Client>,
    /// One connection per Sentinel, made when first needed, dropped after
    /// an error.
    connections: tokio::sync::Mutex<Vec<Option<MultiplexedConnection>>>,
    /// The Sentinel that answered last: asked first next time, so that an
    /// unreachable one early in the list costs one timeout, not one per check.
    preferred: std::sync::atomic::AtomicUsize,
    name: String,
    tls: bool,
    settings: RedisConnectionInfo,
    /// The master in use (`host:port`, for log lines, and its client)
    /// once the Sentinels named one.
    master: Mutex<Option<(String, Client)>>,
}

impl Sentinels {
    fn new(urls: &[config::RedisUrl], name: &str) -> redis::RedisResult<Sentinels> {
        let mut sentinels = Vec::with_capacity(urls.len());
        let mut settings = None;
        for url in urls {
            let info = url.expose().into_connection_info()?;
            settings.get_or_insert_with(|| info.redis_settings().clone());
            let plain = info.redis_settings().clone().set_db(0);
            sentinels.push(Client::open(info.set_redis_settings(plain))?);
        }
        Ok(Sentinels {
            connections: tokio::sync::Mutex::new(vec![None; sentinels.len()]),
            preferred: std::sync::atomic::AtomicUsize::new(0),
            sentinels,
            name: name.to_owned(),
            tls: urls.iter().any(|u| u.expose().starts_with("rediss://")),
            settings: settings.unwrap_or_default(),
            master: Mutex::new(None),
        })
    }

    /// `host:port` of the master, from the first Sentinel that can name
    /// it: the one that answered last, then the others in the configured
    /// order.
    async fn ask(&self) -> Result<String, String> {
        let mut connections = self.connections.lock().await;
        let mut why = "no Sentinel".to_owned();
        let first = self.preferred.load(Ordering::Relaxed);
        let others = (0..self.sentinels.len()).filter(|&i| i != first);
        for i in std::iter::once(first).chain(others) {
            let client = self.sentinels.get(i);
            let (Some(client), Some(slot)) = (client, connections.get_mut(i)) else {
                continue;
            };
            if slot.is_none() {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(CONNECT_TIMEOUT));
                match client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(con) => *slot = Some(con),
                    Err(e) => {
                        why = describe(&e);
                        continue;
                    }
                }
            }
            let Some(con) = slot.as_mut() else { continue };
            let named = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.name)
                .query_async::<Option<(String, u16)>>(con)
                .await;
            match named {
                Ok(Some((host, port))) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    });
                }
                Ok(None) => why = format!("a Sentinel does not know {:?}", self.name),
                Err(e) => {
                    why = describe(&e);
                    *slot = None;
                }
            }
        }
        Err(why)
    }

    /// A client for the master at `address` (`host:port`).
    fn client_for(&self, address: &str) -> redis::RedisResult<Client> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let info = format!("{scheme}://{address}")
            .into_connection_info()?
            .set_redis_settings(self.settings.clone());
        Client::open(info)
    }

    /// The master's address and a client for it, asking the Sentinels.
    async fn master_client(&self) -> Result<(String, Client), String> {
        let address = self.ask().await?;
        let client = self.client_for(&address).map_err(|e| describe(&e))?;
        Ok((address, client))
    }
}

fn cluster_config() -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(CONNECT_TIMEOUT)
}

impl Backend {
    fn new(target: &RedisTarget) -> redis::RedisResult<Backend> {
        Ok(match target {
            RedisTarget::Url(url) => Backend::Single(Client::open(url.expose())?),
            RedisTarget::Sentinel { urls, master } => {
                Backend::Sentinel(Sentinels::new(urls, master)?)
            }
            RedisTarget::Cluster(urls) => Backend::Cluster {
                client: ClusterClientBuilder::new(urls.iter().map(|u| u.expose()))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(CONNECT_TIMEOUT)
                    .build()?,
                nodes: urls
                    .iter()
                    .map(|u| Client::open(u.expose()))
                    .collect::<redis::RedisResult<_>>()?,
            },
        })
    }

    /// A fresh connection that connects when first used (never waits).
    /// `None` while Sentinel has not named a master. Inside the runtime.
    fn lazy_connection(&self) -> Option<Conn> {
        let manager = |client: &Client| {
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
                .ok()
                .map(Conn::Manager)
        };
        match self {
            Backend::Single(client) => manager(client),
            Backend::Sentinel(sentinels) => sentinels
                .master
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .and_then(|(_, client)| manager(client)),
            Backend::Cluster { client, .. } => Some(Conn::Cluster(
                client.get_pending_async_connection_with_config(cluster_config()),
            )),
        }
    }

    /// The server to subscribe to the invalidation channel on; `attempt`
    /// picks among a cluster's configured nodes.
    fn pubsub_client(&self, attempt: usize) -> Option<Client> {
        match self {
            Backend::Single(client) => Some(client.clone()),
            Backend::Sentinel(sentinels) => sentinels
                .master
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|(_, client)| client.clone()),
            Backend::Cluster { nodes, .. } => nodes.get(attempt % nodes.len().max(1)).cloned(),
        }
    }
}

/// The Redis session store of this process.
pub struct RedisStore {
    backend: Backend,
    /// The connection in use; `None` until Sentinel names a master.
    conn: RwLock<Option<Conn>>,
    /// Counts changes of the Sentinel's master: the invalidation channel is
    /// subscribed again on the new one at once.
    master_changes: tokio::sync::watch::Sender<u64>,
    /// Wakes the health task at once (an answer that says the master moved).
    recheck: tokio::sync::Notify,
    runtime: Handle,
    keys: Keys,
    cache: SessionCache,
    health: Health,
    /// Whether the invalidation channel is subscribed right now.
    subscribed: AtomicBool,
    /// Sessions revoked by operators, as announced on the channel.
    revoked: AtomicU64,
    /// Errors Redis answered with: one log line a second with a count.
    error_log: crate::telemetry::EverySecond,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("redis", &self.health.shown)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Why the store could not be set up (before any connection is tried).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("session: the Redis settings are not accepted by the client: {0}")]
    Client(String),
    #[error("cannot start the Redis thread: {0}")]
    Thread(#[source] std::io::Error),
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT))
        // One attempt per reconnection: while Redis is away, requests fail
        // fast (and the health task brings the store back).
        .set_number_of_retries(0)
}

/// Errors after which a Sentinel's master is asked about at once: the
/// server is no longer the master, or cannot be reached.
fn master_may_have_moved(e: &RedisError) -> bool {
    matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
}

impl RedisStore {
    /// Sets the store up and starts its background tasks. Never waits for
    /// Redis: when it is down, the proxy starts anyway and says why in
    /// `/readyz`. Call it outside any async runtime.
    pub fn start(settings: &config::Redis) -> Result<Arc<RedisStore>, SetupError> {
        let backend =
            Backend::new(&settings.target).map_err(|e| SetupError::Client(describe(&e)))?;
        let runtime = spawn_runtime().map_err(SetupError::Thread)?;
        let conn = {
            let _inside = runtime.enter();
            backend.lazy_connection()
        };
        let store = Arc::new(RedisStore {
            backend,
            conn: RwLock::new(conn),
            master_changes: tokio::sync::watch::Sender::new(0),
            recheck: tokio::sync::Notify::new(),
            runtime: runtime.clone(),
            keys: Keys::new(&settings.key_prefix),
            cache: SessionCache::default(),
            health: Health {
                state: AtomicU8::new(CONNECTING),
                ever_up: AtomicBool::new(false),
                why: Mutex::new("connecting".to_owned()),
                shown: settings.target.redacted(),
            },
            subscribed: AtomicBool::new(false),
            revoked: AtomicU64::new(0),
            error_log: crate::telemetry::EverySecond::default(),
        });
        runtime.spawn(watch_health(store.clone()));
        runtime.spawn(subscribe(store.clone()));
        Ok(store)
    }

    fn connection(&self) -> Option<Conn> {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A fresh connection (after an error it does not recover from by
    /// itself, such as a failed handshake, or for a new master).
    fn renew_connection(&self) {
        let _inside = self.runtime.enter();
        if let Some(fresh) = self.backend.lazy_connection() {
            *self.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
        }
    }

    /// Runs `op` on a connection, on the store's runtime, with
    /// [`OP_TIMEOUT`]; any failure marks Redis down and is [`Unavailable`].
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, Unavailable>
    where
        T: Send + 'static,
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        let Some(con) = self.connection() else {
            return Err(Unavailable);
        };
        let op = op(con);
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(OP_TIMEOUT, op).await });
        match task.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => {
                if matches!(self.backend, Backend::Sentinel(_)) && master_may_have_moved(&e) {
                    self.recheck.notify_one();
                }
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.health.down(describe(&e));
                } else {
                    // Redis answered, with an error (out of memory, a
                    // read-only replica, ...): it is reachable, so the
                    // health state stays; say why, at most once a second.
                    if let Some(failed) = self.error_log.count() {
                        tracing::error!(
                            failed,
                            error = %describe(&e),
                            code = e.code().unwrap_or("-"),
                            "session store: Redis answered {failed} operation(s) with an error since the last report"
                        );
                    }
                }
                Err(Unavailable)
            }
            Ok(Err(_)) => {
                self.health.down("timed out".to_owned());
                Err(Unavailable)
            }
            Err(_) => Err(Unavailable),
        }
    }

    /// True unless Redis is known to be unreachable.
    pub fn is_usable(&self) -> bool {
        self.health.state() != DOWN
    }

    /// `Err(why)` unless Redis answered the last ping.
    pub fn readiness(&self) -> Result<(), String> {
        match self.health.state() {
            UP => Ok(()),
            CONNECTING => Err("session store: connecting to Redis".to_owned()),
            _ => Err(format!(
                "session store: Redis is unreachable ({})",
                self.health.why.lock().unwrap_or_else(|e| e.into_inner())
            )),
        }
    }

    /// Sessions revoked by operators since start, as seen on the channel.
    pub fn revoked_total(&self) -> u64 {
        self.revoked.load(Ordering::Relaxed)
    }

    /// Whether Redis answered the last ping (for the metrics gauge).
    pub fn is_up(&self) -> bool {
        self.health.state() == UP
    }

    /// The session with this id. The hot path: a fresh cache entry is
    /// returned without any await on the network.
    pub async fn lookup(&self, id: SessionId) -> Result<Option<Found>, Unavailable> {
        let now = Instant::now();
        let unix = unix_now();
        let cached = self.cache.get_fresh(&id, now, unix);
        if cached.is_some() && self.subscribed.load(Ordering::Acquire) {
            return Ok(cached);
        }
        if !self.is_usable() {
            // Redis is away: a fresh entry still serves (fail closed after
            // its short expiry), anything else is a 503.
            return cached.map(Some).ok_or(Unavailable);
        }
        let epoch = self.cache.epoch();
        let key = self.keys.session(&id_hex(&id));
        let fetched = self
            .run(|mut con| async move {
                redis::cmd("EVAL")
                    .arg(FETCH_SCRIPT)
                    .arg(1)
                    .arg(key)
                    .arg(unix)
                    .query_async::<(Option<Vec<u8>>, Option<u64>)>(&mut con)
                    .await
            })
            .await;
        match fetched {
            Ok((Some(bytes), Some(expires_at))) if unix < expires_at => {
                let Some(identity) = Identity::decode(&bytes) else {
                    return Ok(None);
                };
                let identity = std::sync::Arc::new(identity);
                self.cache
                    .insert(epoch, id, identity.clone(), expires_at, now);
                Ok(Some((identity, expires_at)))
            }
            Ok(_) => {
                self.cache.remove(&id);
                Ok(None)
            }
            Err(Unavailable) => cached.map(Some).ok_or(Unavailable),
        }
    }

    /// Stores a new session; it is cached here at once.
    pub async fn create(
        &self,
        id: SessionId,
        identity: &Identity,
        expires_at: u64,
    ) -> Result<(), Unavailable> {
        if !self.is_usable() {
            return Err(Unavailable);
        }
        let pipes = put_session(&self.keys, &id, identity, expires_at, unix_now());
        let epoch = self.cache.epoch();
        self.run(|con| put(con, pipes)).await?;
        self.cache.insert(
            epoch,
            id,
            std::sync::Arc::new(identity.clone()),
            expires_at,
            Instant::now(),
        );
        Ok(())
    }

    /// Ends one session everywhere: deleted, removed from its user's index,
    /// announced to every replica.
    pub async fn end(&self, id: SessionId) -> Result<(), Unavailable> {
        let user = match self.lookup(id).await? {
            Some((identity, _)) => identity.user(),
            None => return Ok(()),
        };
        let hex = id_hex(&id);
        let mut del = redis::cmd("DEL");
        del.arg(self.keys.session(&hex));
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(self.keys.user(&user)).arg(&hex);
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(self.keys.channel())
            .arg(Invalidation::SignOut(id).encode());
        // Two keys in two slots (Cluster): one command each, sent together.
        let done = self
            .run(|con| async move {
                let (mut a, mut b) = (con.clone(), con.clone());
                futures_util::try_join!(
                    del.query_async::<()>(&mut a),
                    zrem.query_async::<()>(&mut b)
                )?;
                let mut con = con;
                publish.query_async::<()>(&mut con).await
            })
            .await;
        self.cache.invalidate(&[id]);
        done
    }

    /// The user's live sessions.
    pub async fn list(&self, user: &str) -> Result<Vec<SessionInfo>, Unavailable> {
        let keys = self.keys.clone();
        let user = user.to_owned();
        self.run(|con| async move { list(con, &keys, &user, unix_now()).await })
            .await
    }

    /// Ends all of the user's sessions on every replica; how many there were.
    pub async fn revoke(&self, user: &str) -> Result<u64, Unavailable> {
        let keys = self.keys.clone();
        let user = user.to_owned();
        let (count, ids) = self
            .run(|con| async move { revoke(con, &keys, &user).await })
            .await?;
        // Our own replica does not wait for the message.
        self.cache.invalidate(&ids);
        Ok(count)
    }

    fn apply(&self, message: &Invalidation) {
        self.cache.invalidate(message.ids());
        if let Invalidation::Revoke { count, .. } = message {
            self.revoked.fetch_add(*count, Ordering::Relaxed);
        }
    }

    /// One health check: PING (one server, a cluster's primaries); with
    /// Sentinel, which master the Sentinels name (switching to it when it
    /// changed) and `ROLE` on it.
    async fn check(&self) {
        let Backend::Sentinel(sentinels) = &self.backend else {
            let ping = match self.connection() {
                Some(mut con) => {
                    tokio::time::timeout(
                        OP_TIMEOUT,
                        redis::cmd("PING").query_async::<Value>(&mut con),
                    )
                    .await
                }
                None => Ok(Err(RedisError::from((
                    redis::ErrorKind::Io,
                    "no connection",
                )))),
            };
            match ping {
                Ok(Ok(_)) => self.health.up(),
                Ok(Err(e)) => {
                    self.health.down(describe(&e));
                    // I/O errors make a single server's manager reconnect
                    // by itself; anything else (a failed handshake) would
                    // stick, and a cluster connection that lost every node
                    // is started afresh.
                    if !e.is_io_error() || matches!(self.backend, Backend::Cluster { .. }) {
                        self.renew_connection();
                    }
                }
                Err(_) => {
                    self.health.down("timed out".to_owned());
                    self.renew_connection();
                }
            }
            return;
        };
        // Each unreachable Sentinel may cost a connection timeout.
        let patience = OP_TIMEOUT + CONNECT_TIMEOUT * sentinels.sentinels.len() as u32;
        let named = tokio::time::timeout(patience, sentinels.master_client()).await;
        let (address, client) = match named {
            Ok(Ok(named)) => named,
            Ok(Err(why)) => {
                return self
                    .health
                    .down(format!("no master from the Sentinels: {why}"))
            }
            Err(_) => {
                return self
                    .health
                    .down("no master from the Sentinels: timed out".to_owned())
            }
        };
        let changed = {
            let mut current = sentinels.master.lock().unwrap_or_else(|e| e.into_inner());
            let changed = current.as_ref().map(|(a, _)| a) != Some(&address);
            if changed {
                *current = Some((address.clone(), client));
            }
            changed
        };
        if changed {
            self.renew_connection();
            self.master_changes.send_modify(|n| *n += 1);
            tracing::warn!(redis = %self.health.shown, master = %address, "session store: the Sentinels name this Redis master; using it");
        }
        let Some(mut con) = self.connection() else {
            return self.health.down("no master yet".to_owned());
        };
        let role = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("ROLE").query_async::<redis::Role>(&mut con),
        )
        .await;
        match role {
            Ok(Ok(redis::Role::Primary { .. })) => self.health.up(),
            // A failover under way: the Sentinels will name the new master.
            Ok(Ok(_)) => self.health.down(
                "the server the Sentinels name is not a master (failover under way)".to_owned(),
            ),
            Ok(Err(e)) => self.health.down(describe(&e)),
            Err(_) => self.health.down("timed out".to_owned()),
        }
    }
}

/// A current-thread runtime on its own thread, for all Redis I/O. The
/// thread runs until the process exits (so the runtime is never dropped
/// inside another runtime).
fn spawn_runtime() -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("portcullis-redis".to_owned())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Checks Redis every [`HEALTH_EVERY`], and at once when an answer said
/// the Sentinel's master may have moved.
async fn watch_health(store: Arc<RedisStore>) {
    let mut ticks = tokio::time::interval(HEALTH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = store.recheck.notified() => {}
        }
        store.check().await;
    }
}

/// Keeps the invalidation channel subscribed. After every (re)subscription
/// the cache is cleared: messages may have been missed meanwhile.
async fn subscribe(store: Arc<RedisStore>) {
    let channel = store.keys.channel();
    let mut lost = false;
    let mut attempt = 0usize;
    loop {
        let mut master_changes = store.master_changes.subscribe();
        master_changes.borrow_and_update();
        let client = store.backend.pubsub_client(attempt);
        attempt = attempt.wrapping_add(1);
        let connected = match client {
            Some(client) => {
                tokio::time::timeout(OP_TIMEOUT, async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, RedisError>(pubsub)
                })
                .await
            }
            None => Ok(Err(RedisError::from((
                redis::ErrorKind::Io,
                "no master yet",
            )))),
        };
        if let Ok(Ok(pubsub)) = connected {
            store.cache.clear();
            store.subscribed.store(true, Ordering::Release);
            if lost {
                tracing::info!("session store: invalidation channel subscribed again");
            }
            let (mut sink, mut messages) = pubsub.split();
            let mut pings = tokio::time::interval(SUBSCRIBER_PING_EVERY);
            pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pings.tick().await;
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        let payload: String = message.get_payload().unwrap_or_default();
                        match Invalidation::decode(&payload) {
                            Some(invalidation) => store.apply(&invalidation),
                            None => tracing::warn!("session store: ignored a malformed message on the invalidation channel"),
                        }
                    }
                    _ = master_changes.changed() => {
                        // Sentinel named another master: subscribe there.
                        break;
                    }
                    _ = pings.tick() => {
                        let pong = tokio::time::timeout(
                            OP_TIMEOUT,
                            sink.ping::<redis::Value>(),
                        ).await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            store.subscribed.store(false, Ordering::Release);
            tracing::warn!("session store: invalidation channel lost; every session is checked with Redis until it is back");
            lost = true;
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

/// The commands that store a new session and index it under its user: one
/// pipeline per key (a Cluster keeps them in different slots), sent
/// together by [`put`].
pub fn put_session(
    keys: &Keys,
    id: &SessionId,
    identity: &Identity,
    expires_at: u64,
    now: u64,
) -> [redis::Pipeline; 2] {
    let hex = id_hex(id);
    let user = identity.user();
    let mut value = Vec::with_capacity(128);
    identity.encode(&mut value);
    let session_key = keys.session(&hex);
    let user_key = keys.user(&user);
    let mut session = redis::pipe();
    session
        .cmd("HSET")
        .arg(&session_key)
        .arg("v")
        .arg(value)
        .arg("user")
        .arg(&user)
        .arg("provider")
        .arg(&identity.provider)
        .arg("created")
        .arg(now)
        .arg("seen")
        .arg(now)
        .arg("exp")
        .arg(expires_at)
        .ignore()
        .cmd("EXPIREAT")
        .arg(&session_key)
        .arg(expires_at)
        .ignore();
    let mut index = redis::pipe();
    index
        .cmd("ZADD")
        .arg(&user_key)
        .arg(expires_at)
        .arg(&hex)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&user_key)
        .arg("-inf")
        .arg(now)
        .ignore()
        // The index lives as long as its longest session: set a TTL on
        // a new index, extend it on an existing one.
        .cmd("EXPIREAT")
        .arg(&user_key)
        .arg(expires_at)
        .arg("NX")
        .ignore()
        .cmd("EXPIREAT")
        .arg(&user_key)
        .arg(expires_at)
        .arg("GT")
        .ignore();
    [session, index]
}

/// Sends the pipelines of [`put_session`] together (one round trip on a
/// multiplexed connection).
pub async fn put(con: Conn, [session, index]: [redis::Pipeline; 2]) -> redis::RedisResult<()> {
    let (mut a, mut b) = (con.clone(), con);
    futures_util::try_join!(
        session.query_async::<()>(&mut a),
        index.query_async::<()>(&mut b)
    )?;
    Ok(())
}

/// The user's live sessions, oldest first.
pub async fn list(
    con: Conn,
    keys: &Keys,
    user: &str,
    now: u64,
) -> redis::RedisResult<Vec<SessionInfo>> {
    let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(keys.user(user))
        .arg(format!("({now}"))
        .arg("+inf")
        .query_async(&mut con.clone())
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One command per session key (each may be on another cluster node),
    // all sent at once.
    type Row = (Option<String>, Option<u64>, Option<u64>, Option<u64>);
    let rows: Vec<Row> = futures_util::future::try_join_all(ids.iter().map(|id| {
        let mut con = con.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(keys.session(id))
            .arg("provider")
            .arg("created")
            .arg("seen")
            .arg("exp");
        async move { cmd.query_async::<Row>(&mut con).await }
    }))
    .await?;
    let mut out: Vec<SessionInfo> = ids
        .into_iter()
        .zip(rows)
        .filter_map(|(id, row)| match row {
            (Some(provider), Some(created), seen, Some(expires)) if expires > now => {
                Some(SessionInfo {
                    id,
                    provider,
                    created,
                    last_seen: seen.unwrap_or(created),
                    expires,
                })
            }
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(out)
}

/// Deletes every session of the user and its index, then announces it on
/// the channel. Returns how many sessions existed, and their ids.
pub async fn revoke(
    con: Conn,
    keys: &Keys,
    user: &str,
) -> redis::RedisResult<(u64, Vec<SessionId>)> {
    let user_key = keys.user(user);
    let mut con = con;
    let hexes: Vec<String> = redis::cmd("ZRANGE")
        .arg(&user_key)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await?;
    let ids: Vec<SessionId> = hexes.iter().filter_map(|h| id_from_hex(h)).collect();
    if hexes.is_empty() {
        return Ok((0, ids));
    }
    // DEL of many keys: a cluster client splits it by slot and adds up
    // the counts.
    let mut del = redis::cmd("DEL");
    for hex in &hexes {
        del.arg(keys.session(hex));
    }
    let count: u64 = del.query_async(&mut con).await?;
    redis::cmd("DEL")
        .arg(&user_key)
        .query_async::<()>(&mut con)
        .await?;
    let message = Invalidation::Revoke {
        count,
        ids: ids.clone(),
    };
    redis::cmd("PUBLISH")
        .arg(keys.channel())
        .arg(message.encode())
        .query_async::<()>(&mut con)
        .await?;
    Ok((count, ids))
}

/// A connection for `portcullis sessions ...`: one attempt, with a timeout.
pub async fn connect_once(settings: &config::Redis) -> Result<Conn, String> {
    let wait = Duration::from_secs(5);
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(wait))
        .set_response_timeout(Some(wait));
    let backend = Backend::new(&settings.target).map_err(|e| describe(&e))?;
    let connected = async {
        match &backend {
            Backend::Single(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map(Conn::Direct),
            Backend::Sentinel(sentinels) => {
                let (_, client) = sentinels
                    .master_client()
                    .await
                    .map_err(|why| RedisError::from((redis::ErrorKind::Io, "Sentinel", why)))?;
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Direct)
            }
            Backend::Cluster { client, .. } => client
                .get_async_connection_with_config(cluster_config())
                .await
                .map(Conn::Cluster),
        }
    };
    match tokio::time::timeout(wait, connected).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// One server from a bare URL (tools and benchmarks).
pub async fn connect_url(url: &str) -> Result<Conn, String> {
    let client = Client::open(url).map_err(|e| describe(&e))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map(Conn::Direct)
        .map_err(|e| describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let id: SessionId = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let hex = id_hex(&id);
        assert_eq!(hex.len(), 32);
        assert_eq!(id_from_hex(&hex), Some(id));
        assert_eq!(id_from_hex(&hex.to_uppercase()), Some(id));
        for bad in [
            "",
            "00",
            &hex[1..],
            &format!("{hex}0"),
            &hex.replace(|_: char| true, "g"),
        ] {
            assert_eq!(id_from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn invalidations_round_trip_and_garbage_is_ignored() {
        let a: SessionId = [1; 16];
        let b: SessionId = [0xab; 16];
        for m in [
            Invalidation::SignOut(a),
            Invalidation::Revoke {
                count: 2,
                ids: vec![a, b],
            },
            Invalidation::Revoke {
                count: 0,
                ids: vec![],
            },
        ] {
            assert_eq!(Invalidation::decode(&m.encode()), Some(m.clone()));
        }
        for bad in [
            "",
            "signout",
            "signout 12",
            &format!("signout {} {}", id_hex(&a), id_hex(&b)),
            "revoke x",
            &format!("revoke 1 {} zz", id_hex(&a)),
            "hello",
        ] {
            assert_eq!(Invalidation::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sentinel_master_gets_the_first_urls_credentials_and_database() {
        let urls = [
            config::RedisUrl::new("redis://u:pw@10.0.0.1:26379/3".to_owned()),
            config::RedisUrl::new("redis://10.0.0.2:26379".to_owned()),
        ];
        let s = Sentinels::new(&urls, "mymaster").expect("sentinels");
        // The Sentinels themselves: their own credentials, no database.
        let first = s.sentinels[0].get_connection_info();
        assert_eq!(first.redis_settings().db(), 0);
        assert_eq!(first.redis_settings().password(), Some("pw"));
        assert_eq!(
            s.sentinels[1]
                .get_connection_info()
                .redis_settings()
                .password(),
            None
        );
        for (address, host) in [("10.0.0.9:6380", "10.0.0.9"), ("[::1]:6380", "::1")] {
            let master = s.client_for(address).expect("master client");
            let info = master.get_connection_info();
            assert!(
                matches!(info.addr(), redis::ConnectionAddr::Tcp(h, 6380) if h == host),
                "{address}: {:?}",
                info.addr()
            );
            assert_eq!(info.redis_settings().db(), 3);
            assert_eq!(info.redis_settings().username(), Some("u"));
            assert_eq!(info.redis_settings().password(), Some("pw"));
        }
        let tls = Sentinels::new(
            &[config::RedisUrl::new("rediss://10.0.0.1:26379".to_owned())],
            "m",
        )
        .expect("sentinels");
        let master = tls.client_for("10.0.0.9:6380").expect("master client");
        assert!(matches!(
            master.get_connection_info().addr(),
            redis::ConnectionAddr::TcpTls { .. }
        ));
    }

    #[test]
    fn keys_are_prefixed() {
        let k = Keys::new("app1:");
        assert_eq!(k.session("ab"), "app1:s:ab");
        assert_eq!(k.user("google:1"), "app1:u:google:1");
        assert_eq!(k.channel(), "app1:invalidate");
    }
}
