//! The fast path: Portcullis's own HTTP/1 proxy loop for plain-TCP
//! listeners in front of a plain-HTTP upstream (the common sidecar set-up).
//!
//! Why not pingora-proxy here: its per-request machinery (case-preserving
//! header maps, a cloned request, two channels, about ten boxed hooks, a
//! timer per read and write, a task per pooled upstream connection) cost
//! about three times nginx's CPU per request (BENCHMARKS.md). This loop
//! keeps the same gate ([`crate::proxy::App::decide`]) and the same answers
//! ([`crate::proxy::App::carry_out`]); TLS listeners and TLS upstreams stay
//! on pingora's path.
//!
//! Threads that do not talk to each other: each of `server.threads` OS
//! threads runs a current-thread tokio runtime with its own `SO_REUSEPORT`
//! listener and its own upstream connection pool (`pool.rs`).

mod conn;
mod pool;
pub mod wire;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::reload::Current;

/// Idle upstream connections are dropped after this long (and checked for
/// liveness whenever one is taken).
pub const UPSTREAM_IDLE: Duration = Duration::from_secs(30);

/// Binds `threads` sockets on `addr` with `SO_REUSEPORT`, so that the
/// kernel spreads connections over the threads. Binding happens before the
/// server starts (a port in use is a start-up error, not a log line);
/// listening starts with the service ([`FastPath`]), after the admin
/// listener is up.
pub fn bind(addr: SocketAddr, threads: usize) -> std::io::Result<Vec<socket2::Socket>> {
    let mut out = Vec::with_capacity(threads);
    let mut at = addr;
    for _ in 0..threads.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        // Port 0: the others join the port the first one got.
        if let Some(bound) = socket.local_addr()?.as_socket() {
            at = bound;
        }
        out.push(socket);
    }
    Ok(out)
}

/// The fast path as a pingora background service: pingora still owns the
/// process (signals, the grace period, the admin listener, TLS).
pub struct FastPath {
    current: Arc<Current>,
    upstream: SocketAddr,
    listeners: std::sync::Mutex<Vec<socket2::Socket>>,
}

impl FastPath {
    pub fn new(
        current: Arc<Current>,
        upstream: SocketAddr,
        listeners: Vec<socket2::Socket>,
    ) -> Self {
        FastPath {
            current,
            upstream,
            listeners: std::sync::Mutex::new(listeners),
        }
    }
}

#[async_trait]
impl BackgroundService for FastPath {
    async fn start(&self, shutdown: ShutdownWatch) {
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        let mut threads = Vec::new();
        for (i, socket) in listeners.into_iter().enumerate() {
            if let Err(e) = socket.listen(4096) {
                tracing::error!(error = %e, "cannot listen");
                continue;
            }
            let listener: TcpListener = socket.into();
            let app = self.current.clone();
            let upstream = self.upstream;
            let shutdown = shutdown.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("portcullis-{i}"))
                .spawn(move || conn::run_thread(app, upstream, listener, shutdown));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!(error = %e, "cannot start a proxy thread"),
            }
        }
        // Returns when the threads end (after a graceful shutdown has
        // drained them); pingora's own grace period bounds the wait.
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}
