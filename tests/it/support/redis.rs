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
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A non-persistent server on a free port.
pub async fn start() -> RedisServer {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> RedisServer {
    if let Err(why) = available() {
        panic!("redis-server is unavailable: {why}");
    }
    let mut server = RedisServer {
        port: options.port,
        options,
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
