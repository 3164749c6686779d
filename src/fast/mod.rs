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
mod io;
mod pool;
pub mod wire;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};

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

/// The fast path as a pingora service: pingora still owns the process
/// (signals, the grace period, the admin listener, TLS, the binary
/// upgrade). Its listening sockets go into pingora's table of listening
/// fds, so that `run --upgrade` receives them from the old process on
/// SIGQUIT (the same sockets: no connection is refused meanwhile) —
/// pingora's hand-over, extended to our per-thread sockets.
pub struct FastPath {
    current: Arc<Current>,
    upstream: SocketAddr,
    addr: SocketAddr,
    threads: usize,
    /// Bound at start-up (a port in use is a start-up error); empty when
    /// the sockets come from the process being replaced.
    prebound: Vec<socket2::Socket>,
}

impl FastPath {
    pub fn new(
        current: Arc<Current>,
        upstream: SocketAddr,
        addr: SocketAddr,
        threads: usize,
        prebound: Vec<socket2::Socket>,
    ) -> Self {
        FastPath {
            current,
            upstream,
            addr,
            threads: threads.max(1),
            prebound,
        }
    }

    /// The key of thread `i`'s socket in pingora's fd table (no spaces:
    /// the table is sent as space-separated keys).
    fn key(&self, i: usize) -> String {
        format!("portcullis-http1#{i}@{}", self.addr)
    }

    /// Thread `i`'s listener: handed over by the old process, else the
    /// one bound at start-up (or a new one), then registered for the next
    /// hand-over.
    fn listener(
        &mut self,
        i: usize,
        fds: Option<&pingora::server::ListenFds>,
    ) -> std::io::Result<TcpListener> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let key = self.key(i);
        if let Some(fds) = fds {
            if let Some(&fd) = fds.lock().get(&key) {
                // SAFETY: pingora received this fd from the old process for
                // this key and hands it to no one else; it is a listening
                // TCP socket (we registered it under this key there).
                let listener = unsafe { TcpListener::from_raw_fd(fd) };
                listener.set_nonblocking(true)?;
                tracing::info!(key, "listening socket taken over from the previous process");
                return Ok(listener);
            }
        }
        let socket = match self.prebound.pop() {
            Some(s) => s,
            None => bind(self.addr, 1)?.pop().expect("one socket"),
        };
        socket.listen(4096)?;
        let listener: TcpListener = socket.into();
        if let Some(fds) = fds {
            fds.lock().add(key, listener.as_raw_fd());
        }
        Ok(listener)
    }
}

#[async_trait]
impl ServiceWithDependents for FastPath {
    async fn start_service(
        &mut self,
        fds: Option<pingora::server::ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let mut threads = Vec::new();
        for i in 0..self.threads {
            let listener = match self.listener(i, fds.as_ref()) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen");
                    continue;
                }
            };
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
        ready_notifier.notify_ready();
        // Returns when the threads end (after a graceful shutdown has
        // drained them); pingora's own grace period bounds the wait.
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    fn name(&self) -> &str {
        "proxy"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    /// Our keys in pingora's fd table: inherited sockets under other keys
    /// are closed by pingora, these are kept for us.
    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some((0..self.threads).map(|i| self.key(i)).collect())
    }
}
