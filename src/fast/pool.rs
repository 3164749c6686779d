//! A per-thread pool of idle upstream connections: no lock, no task per
//! idle connection. A connection is checked for liveness when it is taken
//! (an upstream that closed it, or sent bytes nobody asked for, is dropped
//! then), and a sweep every few seconds drops the ones idle too long.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::UPSTREAM_IDLE;

pub struct Pool {
    idle: RefCell<Vec<(TcpStream, Instant)>>,
    max: usize,
    pub addr: SocketAddr,
    connect_timeout: Duration,
}

impl Pool {
    pub fn new(addr: SocketAddr, max: usize, connect_timeout: Duration) -> Self {
        Pool {
            idle: RefCell::new(Vec::with_capacity(max.min(1024))),
            max,
            addr,
            connect_timeout,
        }
    }

    /// An idle connection that is still open, most recently used first.
    /// `now`: a recent reading of the clock (the request's start).
    pub fn take(&self, now: Instant) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        while let Some((stream, since)) = idle.pop() {
            if now.saturating_duration_since(since) < UPSTREAM_IDLE && is_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// A new connection to the upstream.
    pub async fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Gives a connection back after a complete exchange; `now`: a recent
    /// reading of the clock.
    pub fn put(&self, stream: TcpStream, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max {
            idle.push((stream, now));
        }
    }

    /// Drops connections idle too long or closed by the upstream.
    pub fn sweep(&self) {
        self.idle
            .borrow_mut()
            .retain(|(stream, since)| since.elapsed() < UPSTREAM_IDLE && is_open(stream));
    }
}

/// An idle upstream connection is usable when reading it would block: no
/// EOF, no error, and no stray bytes.
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
