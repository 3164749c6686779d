//! Configuration reload on `SIGHUP` (SPEC.md "Operations"): the file is
//! read and validated again; a valid one becomes the [`Current`] App for
//! new requests (providers with their discovery, rules, routes, headers,
//! pages, secrets with `previous_secrets`), while requests in flight — and
//! WebSocket tunnels — finish on the App they started with. An invalid one
//! is refused with every problem logged and counted, and the running one
//! stays. What a running process cannot change (listeners, threads, the
//! session store) is logged as needing a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{self, Settings};
use crate::proxy::App;

/// How long a reload waits for the new providers' discovery before
/// switching (after that it switches anyway; discovery then happens on
/// the first sign-in, and warm-up keeps retrying in the background).
pub const WARM_UP_WAIT: Duration = Duration::from_secs(10);

/// The App new requests are served with. Both request paths ask it once
/// per request ([`Current::get`]: one atomic load and reference count).
pub struct Current(ArcSwap<App>);

impl Current {
    pub fn new(app: App) -> Current {
        Current(ArcSwap::from_pointee(app))
    }

    /// The App for a request that starts now.
    pub fn get(&self) -> Arc<App> {
        self.0.load_full()
    }

    /// Makes `app` the one new requests get.
    pub fn set(&self, app: Arc<App>) {
        self.0.store(app);
    }
}

/// One thread's view of [`Current`] (the fast path's workers): a request
/// asks it with a plain load of the pointer, and the App is read again
/// only after a reload changed it (`arc_swap::Cache`), instead of the
/// protected load of [`Current::get`] on every request.
pub struct Local(arc_swap::Cache<Shared, Arc<App>>);

/// [`Current`]'s `ArcSwap`, as `arc_swap::Cache` wants it.
pub struct Shared(Arc<Current>);

impl std::ops::Deref for Shared {
    type Target = ArcSwap<App>;
    fn deref(&self) -> &ArcSwap<App> {
        &self.0 .0
    }
}

impl Local {
    pub fn new(current: Arc<Current>) -> Local {
        Local(arc_swap::Cache::new(Shared(current)))
    }

    /// The App for a request that starts now.
    pub fn get(&mut self) -> Arc<App> {
        self.0.load().clone()
    }
}

/// The settings a running process keeps until it restarts, by key.
pub fn needs_restart(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.server.listen != new.server.listen {
        keys.push("server.listen");
    }
    let tls = |s: &Settings| {
        s.server
            .tls
            .as_ref()
            .map(|t| (t.cert.clone(), t.key.clone()))
    };
    if tls(old) != tls(new) {
        keys.push("server.tls_cert / server.tls_key");
    }
    if old.server.threads != new.server.threads {
        keys.push("server.threads");
    }
    if old.server.upgrade_socket != new.server.upgrade_socket {
        keys.push("server.upgrade_socket");
    }
    if old.server.shutdown_grace != new.server.shutdown_grace {
        keys.push("server.shutdown_grace");
    }
    if old.admin != new.admin {
        keys.push("admin.listen");
    }
    if old.upstream.keepalive != new.upstream.keepalive {
        keys.push("upstream.keepalive");
    }
    if old.telemetry.otlp_endpoint != new.telemetry.otlp_endpoint {
        keys.push("telemetry.otlp_endpoint");
    }
    if store_identity(old) != store_identity(new) {
        keys.push("session.store / session.redis_*");
    }
    keys
}

/// What identifies the session store a process runs with.
fn store_identity(s: &Settings) -> Option<(String, String)> {
    match &s.session.store {
        config::SessionStore::Cookie => None,
        config::SessionStore::Redis(r) => {
            let all = |urls: &[config::RedisUrl]| {
                urls.iter()
                    .map(|u| u.expose().to_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let target = match &r.target {
                config::RedisTarget::Url(u) => u.expose().to_owned(),
                config::RedisTarget::Sentinel { urls, master } => {
                    format!("sentinel {master} {}", all(urls))
                }
                config::RedisTarget::Cluster(urls) => format!("cluster {}", all(urls)),
            };
            Some((target, r.key_prefix.clone()))
        }
    }
}

/// Listens for `SIGHUP` and reloads `path` into `current`.
pub struct Reloader {
    pub path: PathBuf,
    pub current: Arc<Current>,
    /// The TLS listener's certificate, re-read on every SIGHUP.
    pub tls: Option<Arc<crate::tls::ReloadableCert>>,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::SignalKind;
        tracing::info!(config = %self.path.display(), "SIGHUP reloads the configuration");
        let hup = SignalKind::hangup();
        on_signal(hup, "SIGHUP", &mut shutdown, |shutdown| async move {
            self.reload(&shutdown).await
        })
        .await;
    }
}

/// Runs `each` for every `kind` signal until shutdown (one at a time; a
/// signal during a run is taken after it). Logs once when the signal
/// cannot be listened for.
pub async fn on_signal<F, Fut>(
    kind: tokio::signal::unix::SignalKind,
    name: &str,
    shutdown: &mut ShutdownWatch,
    mut each: F,
) where
    F: FnMut(ShutdownWatch) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut signals = match tokio::signal::unix::signal(kind) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for {name}");
            return;
        }
    };
    loop {
        tokio::select! {
            got = signals.recv() => {
                if got.is_none() {
                    return;
                }
                each(shutdown.clone()).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

impl Reloader {
    /// One reload: refused (and counted) or switched to.
    pub async fn reload(&self, shutdown: &ShutdownWatch) {
        let metrics = crate::metrics::global();
        // The certificate first, whatever the configuration file says: a
        // renewal hook sends SIGHUP after writing new files.
        if let Some(cert) = &self.tls {
            match cert.reload() {
                Ok(true) => tracing::info!("TLS certificate reloaded: new connections get it"),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    "TLS certificate reload refused: {e}; the running certificate stays"
                ),
            }
        }
        tracing::info!(config = %self.path.display(), "SIGHUP: reloading the configuration");
        let settings = match config::load(&self.path, &config::ProcessEnv) {
            Ok(s) => s,
            Err(e) => {
                let lines = e.lines();
                for line in &lines {
                    tracing::error!("configuration reload refused: {line}");
                }
                tracing::error!(
                    problems = lines.len(),
                    "configuration reload refused: the running configuration stays"
                );
                metrics.reload(false);
                return;
            }
        };
        let old = self.current.get();
        for key in needs_restart(old.settings(), &settings) {
            tracing::warn!(
                key,
                "configuration reload: {key} changed; it takes effect after a restart (the running value stays)"
            );
        }
        let app = match build(settings, &old).await {
            Ok(app) => Arc::new(app),
            Err(e) => {
                tracing::error!("configuration reload refused: {e}");
                tracing::error!(
                    problems = 1,
                    "configuration reload refused: the running configuration stays"
                );
                metrics.reload(false);
                return;
            }
        };
        // New providers discover before they take sign-ins (bounded wait).
        let warm = tokio::time::timeout(
            WARM_UP_WAIT,
            crate::providers::warm_up_all(app.providers(), shutdown.clone()),
        )
        .await;
        if warm.is_err() {
            let app = app.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                crate::providers::warm_up_all(app.providers(), shutdown).await;
            });
        }
        let names: Vec<&str> = app.providers().iter().map(|p| p.id()).collect();
        tracing::info!(providers = ?names, "configuration reloaded: new requests use it");
        self.current.set(app.clone());
        metrics.reload(true);
    }
}

/// The App of `settings`, keeping `old`'s session store (a store change
/// needs a restart).
async fn build(settings: Settings, old: &App) -> Result<App, crate::server::StartError> {
    let host = settings.upstream.host.clone();
    let port = settings.upstream.port;
    let upstream =
        tokio::task::spawn_blocking(move || crate::server::resolve_upstream(&host, port))
            .await
            .map_err(|e| crate::server::StartError::Resolve {
                host: settings.upstream.host.clone(),
                reason: e.to_string(),
            })??;
    let http = crate::providers::http_client().map_err(crate::server::StartError::HttpClient)?;
    let providers = crate::providers::Providers::build(&settings, &http)
        .map_err(crate::server::StartError::CallbackUrl)?;
    Ok(App::new(settings, providers, upstream, old.store().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(server_extra: &str, extra: &str) -> Settings {
        let secret = crate::session::seal::SessionKey::generate().to_base64();
        let listen = if server_extra.contains("listen") {
            ""
        } else {
            "listen = \"127.0.0.1:4180\""
        };
        let toml = format!(
            r#"[server]
{listen}
public_url = "http://127.0.0.1:4180"
{server_extra}

[upstream]
url = "http://127.0.0.1:8080"

[session]
secret = "{secret}"

[providers.google]
client_id = "id"
client_secret = "secret"
{extra}
"#
        );
        crate::config::parse(&toml, &|_: &str| None).expect("config")
    }

    #[test]
    fn listeners_threads_and_store_need_a_restart_the_rest_does_not() {
        let old = settings("threads = 2", "");
        // A new secret, routes and access lists: all reloadable.
        let new = settings(
            "threads = 2",
            "[access]\nallowed_emails = [\"a@example.com\"]\n[[routes]]\npath = \"^/x/\"\npublic = true\n",
        );
        assert!(needs_restart(&old, &new).is_empty());
        let new = settings(
            "threads = 3\nlisten = \"127.0.0.1:4181\"",
            "[admin]\nlisten = \"127.0.0.1:9180\"",
        );
        assert_eq!(
            needs_restart(&old, &new),
            ["server.listen", "server.threads", "admin.listen"]
        );
    }

    #[test]
    fn current_hands_out_the_app_set_last() {
        let s = settings("", "");
        let http = crate::providers::http_client().unwrap();
        let app = |s: Settings| {
            let providers = crate::providers::Providers::build(&s, &http).unwrap();
            App::new(
                s,
                providers,
                ([127, 0, 0, 1], 8080).into(),
                crate::session::SessionStore::Cookie,
            )
        };
        let current = Current::new(app(s));
        let first = current.get();
        current.set(Arc::new(app(settings("threads = 7", ""))));
        // A request that started before keeps its App; new ones get the new one.
        assert_ne!(first.settings().server.threads, 7);
        assert_eq!(current.get().settings().server.threads, 7);
    }
}
