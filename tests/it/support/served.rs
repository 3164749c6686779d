//! What every in-test HTTP server (the mocks, the upstream) shares: serving
//! on a task until told to stop, stopping on drop, and escaping the HTML of
//! their pages.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

/// A server task with a graceful-shutdown signal. Dropping it shuts down.
pub struct Served {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Served {
    /// Spawns `serve(shutdown)` on the current runtime; `shutdown` resolves
    /// when [`Served::shutdown`] is called (pass it to
    /// `axum::serve(..).with_graceful_shutdown`).
    pub fn spawn<F>(serve: impl FnOnce(ShutdownSignal) -> F) -> Served
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(ShutdownSignal(stop_rx)));
        Served {
            stop: Mutex::new(Some(stop_tx)),
            server: Mutex::new(Some(server)),
        }
    }

    /// Stops accepting connections and closes idle ones. Idempotent.
    pub fn shutdown(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits until the listener is closed and in-flight requests are done
    /// (at most 5 s, then the server task is aborted): afterwards connections are refused.
    pub async fn stop(&self) {
        self.shutdown();
        let server = lock(&self.server).take();
        if let Some(mut server) = server {
            if tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
            {
                server.abort();
                let _ = server.await;
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Resolves when the server is told to shut down.
pub struct ShutdownSignal(oneshot::Receiver<()>);

impl ShutdownSignal {
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

/// Locks, ignoring poisoning: a panicking test must not hide its cause
/// behind a second panic in a mock.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
