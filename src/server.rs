//! Builds and runs the pingora server from validated settings.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::config::Settings;
use crate::providers::{self, Providers};
use crate::proxy::{App, Portcullis};
use crate::session::redis::RedisStore;
use crate::session::SessionStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("upstream.url: cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("server.public_url: cannot build a callback URL: {0}")]
    CallbackUrl(#[source] url::ParseError),
    #[error("server.tls_cert / server.tls_key: {0}")]
    Tls(String),
    #[error("server.listen: cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("{0}")]
    SessionStore(#[from] crate::session::redis::SetupError),
}

/// Resolves the upstream once, at start-up (pingora's `HttpPeer::new` would
/// block on DNS per request and panic when it fails).
pub fn resolve_upstream(host: &str, port: u16) -> Result<SocketAddr, StartError> {
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| StartError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
    addrs.next().ok_or_else(|| StartError::Resolve {
        host: host.to_owned(),
        reason: "no addresses".to_owned(),
    })
}

/// Runs until SIGTERM/SIGINT (then returns, so that logs are flushed);
/// SIGHUP reloads `config_path` (without one, SIGHUP is not handled).
/// With `upgrade`, the listening sockets are taken over from a running
/// Portcullis (pingora's hand-over through `server.upgrade_socket`, which
/// the old process starts on SIGQUIT). Must be called outside any tokio
/// runtime.
pub fn run(
    settings: Settings,
    config_path: Option<std::path::PathBuf>,
    upgrade: bool,
) -> Result<(), StartError> {
    let upstream = resolve_upstream(&settings.upstream.host, settings.upstream.port)?;
    let http = providers::http_client().map_err(StartError::HttpClient)?;
    let providers = Providers::build(&settings, &http).map_err(StartError::CallbackUrl)?;
    // Never waits for Redis: when it is down the proxy starts and /readyz says why.
    let store = match &settings.session.store {
        crate::config::SessionStore::Cookie => SessionStore::Cookie,
        crate::config::SessionStore::Redis(redis) => SessionStore::Redis(RedisStore::start(redis)?),
    };

    let conf = ServerConf {
        threads: settings.server.threads,
        grace_period_seconds: Some(settings.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: settings.upstream.keepalive,
        upgrade_sock: settings
            .server
            .upgrade_socket
            .as_deref()
            .unwrap_or(std::path::Path::new(crate::config::DEFAULT_UPGRADE_SOCKET))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    if upgrade {
        tracing::info!(
            socket = %settings
                .server
                .upgrade_socket
                .as_deref()
                .unwrap_or(std::path::Path::new(crate::config::DEFAULT_UPGRADE_SOCKET))
                .display(),
            "waiting for the running Portcullis to hand over its sockets (send it SIGQUIT)"
        );
    }
    // Started by a running Portcullis on SIGUSR2 (src/successor.rs): the
    // configuration is loaded and checked by now, so it may hand over.
    let mut handover = if upgrade {
        crate::successor::Handover::from_env()
    } else {
        None
    };
    if let Some(h) = &mut handover {
        h.ready_for_sockets();
    }
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let listen = settings.server.listen;
    // The certificate is read here (a bad pair stops the start with its
    // reason) and again on every SIGHUP.
    let tls = match settings.server.tls.as_ref() {
        Some(t) => Some(Arc::new(
            crate::tls::ReloadableCert::load(&t.cert, &t.key).map_err(StartError::Tls)?,
        )),
        None => None,
    };
    let names: Vec<String> = settings.providers.iter().map(|p| p.id.clone()).collect();
    let session_store = if store.redis().is_some() {
        "redis"
    } else {
        "cookie"
    };
    let public_url = settings.server.public_url.to_string();
    let admin = settings.admin;
    let threads = settings.server.threads;
    let upstream_tls = settings.upstream.tls;
    let settings_grace = settings.server.shutdown_grace;
    let app = Arc::new(crate::reload::Current::new(App::new(
        settings, providers, upstream, store,
    )));

    // The admin listener first: the proxy starts listening after it, so
    // that probes and metrics answer as soon as the proxy does.
    let admin_service = admin.map(|admin| {
        let mut service = pingora::services::listening::Service::new(
            "admin".to_owned(),
            pingora::apps::http_app::HttpServer::new_app(crate::admin::Admin(app.clone())),
        );
        service.add_tcp(&admin.to_string());
        server.add_service(service)
    });
    // Plain HTTP in front of a plain-HTTP upstream (the sidecar case): our
    // own HTTP/1 loop (src/fast). TLS on either side: pingora's proxy. Both
    // take part in the binary upgrade's socket hand-over.
    if tls.is_none() && !upstream_tls {
        // Bound now (a port in use is a start-up error), unless the old
        // process hands its sockets over.
        let listeners = if upgrade {
            Vec::new()
        } else {
            crate::fast::bind(listen, threads).map_err(|e| StartError::Listen {
                addr: listen,
                reason: e.to_string(),
            })?
        };
        let proxy = server.add_service(crate::fast::FastPath::new(
            app.clone(),
            upstream,
            listen,
            threads,
            listeners,
        ));
        if let Some(admin) = &admin_service {
            proxy.add_dependency(admin);
        }
    } else {
        let mut service = pingora::services::listening::Service::new(
            "portcullis".to_owned(),
            Counted {
                inner: Arc::new(pingora::proxy::http_proxy(
                    &server.configuration,
                    Portcullis(app.clone()),
                )),
                linger: (settings_grace / 2).min(Duration::from_secs(1)),
            },
        );
        // No L4 read buffer: pingora's default is 64 KiB per connection, zeroed
        // on accept, which was half the memory at 1,000 keep-alive connections.
        // The HTTP/1 parser reads into its own buffer anyway (the L4 one only
        // added a copy).
        let mut endpoint =
            ListenerConfig::tcp(listen.to_string()).l4_buffer(L4BufferSettings::default().read(0));
        if let Some(cert) = &tls {
            // No paths: the resolver hands out the current certificate.
            let mut settings =
                TlsSettings::intermediate("", "").map_err(|e| StartError::Tls(e.to_string()))?;
            settings.set_cert_resolver(cert.clone());
            // HTTP/2 through ALPN, HTTP/1.1 for clients that offer only it.
            settings.enable_h2();
            endpoint = endpoint.tls(settings);
        }
        service.add_listener(endpoint);
        let proxy = server.add_service(service);
        if let Some(admin) = &admin_service {
            proxy.add_dependency(admin);
        }
    }
    server.add_service(background_service("provider warm-up", WarmUp(app.get())));
    // SIGUSR2: a fresh start of the installed binary takes over.
    if let Some(successor) = config_path
        .as_deref()
        .and_then(crate::successor::Successor::new)
    {
        server.add_service(background_service("binary upgrade", successor));
    }
    if let Some(path) = config_path {
        server.add_service(background_service(
            "reload",
            crate::reload::Reloader {
                path,
                current: app,
                tls: tls.clone(),
            },
        ));
    }
    tracing::info!(
        %listen,
        %public_url,
        %upstream,
        providers = ?names,
        session_store,
        "portcullis {} starting",
        env!("CARGO_PKG_VERSION")
    );
    // systemd (Type=notify): the listening sockets are open, bound here or
    // taken over. A successor we were started as is named to systemd by
    // the old process (the main one, the only one allowed to); one started
    // by hand with `--upgrade` names itself (needs NotifyAccess=all).
    match handover {
        Some(h) => h.taken_over(),
        None if upgrade => {
            crate::sd_notify::notify_or_log(&format!("MAINPID={}\nREADY=1", std::process::id()))
        }
        None => crate::sd_notify::notify_or_log("READY=1"),
    }
    server.run(pingora::server::RunArgs::default());
    // Handed over to a successor we started: systemd must know it first.
    crate::successor::wait_for_successor(Duration::from_secs(10));
    Ok(())
}

/// A listener's app whose open client connections are counted
/// (`portcullis_connections_active`). pingora hands a keep-alive
/// connection back to `process_new` for each request, and `process_new`
/// waits for the next one itself: a connection counts from its first call
/// to the call that does not give it back.
///
/// It also delays the app's `cleanup` by `linger` after the listener stops
/// (SIGTERM, or SIGQUIT when handing the sockets to a new process):
/// pingora's cleanup drops every connection still waiting for a request,
/// and that includes connections accepted a moment earlier whose first
/// request is still on its way — about one connection in 4,000 failed
/// during a hand-over under load. Meanwhile keep-alive connections may
/// send one more request (answered with `Connection: close`).
struct Counted<A> {
    inner: Arc<A>,
    linger: Duration,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Counted<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = crate::metrics::global().connection();
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.linger).await;
        self.inner.cleanup().await
    }
}

/// Fetches every provider's discovery document at start-up, off the request path.
struct WarmUp(Arc<App>);

#[async_trait]
impl BackgroundService for WarmUp {
    async fn start(&self, shutdown: ShutdownWatch) {
        providers::warm_up_all(self.0.providers(), shutdown).await;
    }
}
