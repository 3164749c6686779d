//! A real `redis-server` (Debian's `redis-server` package) for the session-store tests, on a
//! free loopback port, one per test: tests that kill it or count its commands must not share
//! it, and it starts in a few milliseconds.
//!
//! It runs in the foreground with its files in a [`tempfile::TempDir`] and with the
//! parent-death signal set (see `frameworks::spawn_tied`), so it dies with the test binary even
//! when no destructor runs. With [`Options::persistent`] it writes an append-only file synced
//! on every write, so that [`RedisServer::restart`] after [`RedisServer::kill`] brings the
//! sessions back, as a production Redis with persistence would.
//!
//! [`SentinelSetup`] adds a replica and a Sentinel (`redis-server sentinel.conf --sentinel`,
//! the binary Debian's redis-sentinel package runs) watching both; [`ClusterSetup`] makes a
//! three-node Redis Cluster with `redis-cli --cluster create`. Each belongs to one test.
//!
//! Tests start with [`require!`]: without `redis-server` they are skipped with a message,
//! unless `CI` is set, where they fail. `scripts/install-deps test` installs it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::harness;

const START_DEADLINE: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(10);

/// The binary: `$PORTCULLIS_TEST_REDIS`, else `redis-server` on `PATH`.
pub fn binary() -> PathBuf {
    std::env::var_os("PORTCULLIS_TEST_REDIS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// `Ok` when `redis-server` runs. Checked once per test binary.
pub fn available() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let out = Command::new(binary())
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| {
                    format!(
                        "`{}` cannot run ({e}); install Debian's redis-server",
                        binary().display()
                    )
                })?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !text.contains("Redis server v=") {
                return Err(format!("`redis-server --version` printed {text:?}"));
            }
            Ok(())
        })
        .clone()
}

/// `false` when Redis is available. Otherwise `true` with a message (the test returns:
/// skipped), or, when `CI` is set, a panic.
pub fn skip_or_fail(test: &str) -> bool {
    match available() {
        Ok(()) => false,
        Err(why) if super::oidc_peer::in_ci() => {
            panic!("{test}: redis-server is required in CI but unavailable: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: redis-server is unavailable: {why} (with CI=true this fails)"
            );
            true
        }
    }
}

/// `redis::require!();` at the top of a test. See [`skip_or_fail`].
macro_rules! require_redis {
    () => {
        if $crate::support::redis::skip_or_fail(
            ::std::thread::current()
                .name()
                .unwrap_or(::std::module_path!()),
        ) {
            return;
        }
    };
}
pub(crate) use require_redis as require;

/// How a [`RedisServer`] runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// 0 = a free port.
    pub port: u16,
    /// Append-only file, fsync on every write: data survives [`RedisServer::kill`].
    pub persistent: bool,
}

/// A running `redis-server`. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    options: Options,
    /// More command-line options (a replica, a cluster node).
    extra: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A non-persistent server on a free port.
pub async fn start() -> RedisServer {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> RedisServer {
    start_with_args(options, Vec::new()).await
}

/// A non-persistent server on a free port with more command-line options.
pub async fn start_with_args(options: Options, extra: Vec<String>) -> RedisServer {
    if let Err(why) = available() {
        panic!("redis-server is unavailable: {why}");
    }
    let mut server = RedisServer {
        port: options.port,
        options,
        extra,
        child: None,
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let mut last = String::new();
    for _ in 0..3 {
        if options.port == 0 {
            server.port = harness::free_port();
        }
        match server.spawn().await {
            Ok(()) => return server,
            Err(logs) if options.port == 0 => last = logs,
            Err(logs) => panic!(
                "redis-server did not start on port {}:\n{logs}",
                server.port
            ),
        }
    }
    panic!("redis-server did not start in 3 attempts:\n{last}");
}

impl RedisServer {
    /// `redis://127.0.0.1:{port}`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        fs::read(self.dir.path().join("redis.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL, as a crash or a lost host would; the port is free afterwards.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (with its data, when persistent).
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(logs) = self.spawn().await {
            panic!(
                "redis-server did not restart on port {}:\n{logs}",
                self.port
            );
        }
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new(binary());
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if self.options.persistent { "yes" } else { "no" })
            .arg("--appendfsync")
            .arg("always")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .arg("--daemonize")
            .arg("no")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = super::frameworks::spawn_tied(command)
            .map_err(|e| format!("spawn {}: {e}", binary().display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Ok(mut con) = self.try_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || tokio::time::Instant::now() >= deadline {
                self.kill();
                return Err(self.logs());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    async fn try_connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A connection for the test's own commands.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.try_connection()
            .await
            .unwrap_or_else(|e| panic!("connect to the test Redis: {e}"))
    }

    /// `calls` per command from `INFO commandstats` (e.g. `evalsha`, `hset`, `ping`).
    pub async fn command_calls(&self) -> BTreeMap<String, u64> {
        let mut con = self.connection().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut con)
            .await
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    /// Keys matching `pattern` (`KEYS`: fine on a test server).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut con = self.connection().await;
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut con)
            .await
            .expect("KEYS")
    }

    /// Seconds to live of `key` (-2: no such key, -1: no expiry).
    pub async fn ttl(&self, key: &str) -> i64 {
        let mut con = self.connection().await;
        redis::cmd("TTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .expect("TTL")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- redis-server log (port {}) ----\n{}\n---- end of redis-server log ----",
                self.port,
                self.logs()
            );
        }
    }
}

/// `redis-cli` next to `redis-server` (Debian's redis-tools, a dependency of redis-server).
pub fn cli_binary() -> PathBuf {
    let server = binary();
    match server.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("redis-cli"),
        _ => PathBuf::from("redis-cli"),
    }
}

/// A Sentinel watching a master and one replica: `redis-server sentinel.conf --sentinel`
/// (what Debian's redis-sentinel package runs), on a free port.
pub struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
    pub name: &'static str,
}

impl SentinelSetup {
    pub async fn start() -> SentinelSetup {
        let master = start().await;
        let replica = start_with_args(
            Options::default(),
            vec![
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master.port.to_string(),
            ],
        )
        .await;
        let name = "portcullis-test";
        let mut sentinel = RedisServer {
            port: 0,
            options: Options::default(),
            extra: Vec::new(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let mut last = String::new();
        for _ in 0..3 {
            sentinel.port = harness::free_port();
            let conf = sentinel.dir.path().join("sentinel.conf");
            fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {dir}/redis.log\n\
                     sentinel monitor {name} 127.0.0.1 {master} 1\n\
                     sentinel down-after-milliseconds {name} 2000\n\
                     sentinel failover-timeout {name} 10000\n",
                    port = sentinel.port,
                    dir = sentinel.dir.path().display(),
                    master = master.port,
                ),
            )
            .expect("write sentinel.conf");
            let mut command = Command::new(binary());
            command
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            sentinel.child =
                Some(super::frameworks::spawn_tied(command).expect("spawn the Sentinel"));
            if sentinel.wait_for_ping().await.is_ok() {
                let setup = SentinelSetup {
                    master,
                    replica,
                    sentinel,
                    name,
                };
                setup.wait_for_replica().await;
                return setup;
            }
            last = sentinel.logs();
            sentinel.kill();
        }
        panic!("the Sentinel did not start in 3 attempts:\n{last}");
    }

    /// `SENTINEL get-master-addr-by-name`'s port.
    pub async fn master_port(&self) -> u16 {
        let mut con = self.sentinel.connection().await;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(self.name)
            .query_async(&mut con)
            .await
            .expect("SENTINEL get-master-addr-by-name");
        port
    }

    /// Until the Sentinel knows the replica and it is in sync (a failover needs both).
    async fn wait_for_replica(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut con = self.sentinel.connection().await;
            let replicas: Vec<BTreeMap<String, String>> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(self.name)
                .query_async(&mut con)
                .await
                .unwrap_or_default();
            let ok = replicas.iter().any(|r| {
                r.get("port") == Some(&self.replica.port.to_string())
                    && r.get("master-link-status").map(String::as_str) == Some("ok")
                    && !r.get("flags").is_some_and(|f| f.contains("down"))
            });
            if ok {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Sentinel does not see the replica: {replicas:?}\n{}",
                self.sentinel.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `SENTINEL FAILOVER` and waits until the Sentinel names the replica as the master.
    pub async fn failover(&self) {
        let mut con = self.sentinel.connection().await;
        let _: () = redis::cmd("SENTINEL")
            .arg("failover")
            .arg(self.name)
            .query_async(&mut con)
            .await
            .unwrap_or_else(|e| panic!("SENTINEL FAILOVER: {e}\n{}", self.sentinel.logs()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.master_port().await != self.replica.port {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no failover after 30 s:\n{}",
                self.sentinel.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl RedisServer {
    async fn wait_for_ping(&self) -> Result<(), ()> {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Ok(mut con) = self.try_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// A Redis Cluster of three primaries (no replicas) on free ports, made with
/// `redis-cli --cluster create`.
pub struct ClusterSetup {
    pub nodes: Vec<RedisServer>,
}

impl ClusterSetup {
    pub async fn start() -> ClusterSetup {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                start_with_args(
                    Options::default(),
                    vec![
                        "--cluster-enabled".to_owned(),
                        "yes".to_owned(),
                        "--cluster-config-file".to_owned(),
                        "nodes.conf".to_owned(),
                        "--cluster-port".to_owned(),
                        harness::free_port().to_string(),
                        "--cluster-node-timeout".to_owned(),
                        "5000".to_owned(),
                    ],
                )
                .await,
            );
        }
        let mut create = Command::new(cli_binary());
        create
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .arg("--cluster-replicas")
            .arg("0")
            .arg("--cluster-yes")
            .stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || create.output())
            .await
            .expect("redis-cli thread")
            .unwrap_or_else(|e| panic!("run {}: {e}", cli_binary().display()));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let setup = ClusterSetup { nodes };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for node in &setup.nodes {
            loop {
                let mut con = node.connection().await;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut con)
                    .await
                    .expect("CLUSTER INFO");
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the cluster is not ok after 20 s:\n{info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        setup
    }

    /// The nodes' URLs, starting with node `first` (each replica of a test lists them in
    /// another order, so each subscribes to the invalidation channel on another node).
    pub fn urls_from(&self, first: usize) -> Vec<String> {
        (0..self.nodes.len())
            .map(|i| self.nodes[(first + i) % self.nodes.len()].url())
            .collect()
    }

    /// The node holding `key` (each node has only the keys of its own slots).
    pub async fn node_of(&self, key: &str) -> Option<usize> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.keys(key).await.iter().any(|k| k == key) {
                return Some(i);
            }
        }
        None
    }

    /// Keys matching `pattern`, on every node.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut all = Vec::new();
        for node in &self.nodes {
            all.extend(node.keys(pattern).await);
        }
        all.sort();
        all
    }
}
