//! One client connection on the fast path: read a head, judge it with the
//! gate, answer or forward, repeat (keep-alive, pipelining in order).
//!
//! Defences kept from pingora-proxy, and where:
//! - hop-by-hop headers and those named in `Connection` never go upstream
//!   ([`wire::strip_hop_by_hop`]) nor back to the client (`wire::write_response_head`);
//! - request framing, Host, CONNECT, header limits: `wire::parse_request`;
//! - bodies are decoded and re-framed by us (`send_body`), so the upstream
//!   sees the boundaries the gate saw;
//! - an upstream connection goes back to the pool only after the request
//!   was fully sent and the response fully read with nothing after it
//!   (`proxy`);
//! - the client connection is closed when the response went out before
//!   the request body was read, or after any answer of our own to a request
//!   with a body we did not read (the next request would start inside it);
//! - slow clients: `server.header_timeout` for a head, `server.idle_timeout`
//!   idle; an idle connection holds no buffer.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Method, Version};
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::io;
use super::pool::Pool;
use super::wire::{self, BadRequest, Framing, RequestHead, ResponseHead};
use crate::access_log;
use crate::pages;
use crate::proxy::decide::{self, UpgradeKind};
use crate::proxy::respond::Reply;
use crate::proxy::{headers, judged_target, path_of, App, Ctx, Step, TargetState};
use crate::reload::{Current, Local};

/// Per-thread state: the gate (the configuration now in force, which a
/// reload may replace between requests), this thread's upstream pool,
/// drain flag.
struct Worker {
    current: RefCell<Local>,
    pool: Pool,
    read_timeout: Duration,
    /// `server.header_timeout`: a head must arrive within it.
    header_timeout: Duration,
    /// `server.idle_timeout`: an idle keep-alive connection closes after it.
    idle_timeout: Duration,
    /// `Host` for requests that came without one (HTTP/1.0).
    public_host: http::HeaderValue,
    draining: Cell<bool>,
    shutdown: ShutdownWatch,
    /// Connections being served; at shutdown the thread waits for them.
    open: Cell<usize>,
    /// Signalled when the last open connection ends.
    all_closed: tokio::sync::Notify,
    /// A spare buffer for the header lines we add to an upstream head.
    extra_lines: Cell<Vec<u8>>,
    /// Request buffers of connections gone idle.
    spare_requests: Spares,
    /// Response buffers between exchanges, apart from the request buffers:
    /// those share their memory with the parsed request.
    spare_responses: Spares,
}

impl Worker {
    fn new(current: Arc<Current>, upstream: SocketAddr, shutdown: ShutdownWatch) -> Self {
        // Listener, pool and timeouts stay as started (a reload says when
        // a change of them needs a restart).
        let app = current.get();
        let up = &app.settings().upstream;
        Worker {
            pool: Pool::new(upstream, up.keepalive, up.connect_timeout),
            read_timeout: up.read_timeout,
            header_timeout: app.settings().server.header_timeout,
            idle_timeout: app.settings().server.idle_timeout,
            public_host: public_host(&app.settings().server.public_url),
            draining: Cell::new(false),
            shutdown,
            current: RefCell::new(Local::new(current)),
            open: Cell::new(0),
            all_closed: tokio::sync::Notify::new(),
            extra_lines: Cell::new(Vec::with_capacity(1024)),
            spare_requests: Spares::default(),
            spare_responses: Spares::default(),
        }
    }

    /// Serves an accepted connection on its own task.
    fn start_serving(self: &Rc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let counted = OpenConnection::new(self.clone());
        tokio::task::spawn_local(serve(counted, stream, peer));
    }

    /// Graceful shutdown, once the listener is closed: open connections
    /// finish the request in flight (a connection accepted just before
    /// gets its first request served) and close; idle ones close at once.
    async fn drain(&self) {
        self.draining.set(true);
        while self.open.get() > 0 {
            self.all_closed.notified().await;
        }
    }
}

/// Buffers kept per thread between uses (an allocation and its free per
/// request otherwise): given back empty, at most [`SPARE_BUFFERS`] of them,
/// none bigger than [`SPARE_LARGEST`].
#[derive(Default)]
struct Spares(RefCell<Vec<BytesMut>>);

/// Buffers each [`Spares`] keeps.
const SPARE_BUFFERS: usize = 64;
/// A bigger buffer (a large body went through it) is freed.
const SPARE_LARGEST: usize = 64 * 1024;

impl Spares {
    /// A spare buffer, or a new one of `size` bytes.
    fn take(&self, size: usize) -> BytesMut {
        self.0
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(size))
    }

    fn give_back(&self, mut buf: BytesMut) {
        buf.clear();
        let mut spare = self.0.borrow_mut();
        if (1..=SPARE_LARGEST).contains(&buf.capacity()) && spare.len() < SPARE_BUFFERS {
            spare.push(buf);
        }
    }

    /// A buffer that goes back when dropped, however its user ends.
    fn lend(&self, size: usize) -> Lent<'_> {
        Lent(self.take(size), self)
    }
}

struct Lent<'s>(BytesMut, &'s Spares);

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.1.give_back(std::mem::take(&mut self.0));
    }
}

/// Counts a connection as open while it lives: from its accept, not from
/// its task's first poll, so that a connection accepted just before a
/// graceful shutdown is waited for (its task is then still to run; counted
/// later, the thread saw no open connection, ended, and dropped it unserved).
struct OpenConnection(Rc<Worker>);

impl OpenConnection {
    fn new(w: Rc<Worker>) -> Self {
        w.open.set(w.open.get() + 1);
        OpenConnection(w)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let left = self.0.open.get() - 1;
        self.0.open.set(left);
        if left == 0 {
            self.0.all_closed.notify_one();
        }
    }
}

/// A thread of the fast path: a current-thread runtime serving one
/// listener until shutdown, then letting its connections finish.
pub(super) fn run_thread(
    current: Arc<Current>,
    upstream: SocketAddr,
    listener: std::net::TcpListener,
    mut shutdown: ShutdownWatch,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a proxy thread's runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot use the listening socket");
                return;
            }
        };
        let worker = Rc::new(Worker::new(current, upstream, shutdown.clone()));
        let sweeper = worker.clone();
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            while !sweeper.draining.get() {
                every.tick().await;
                sweeper.pool.sweep();
            }
        });
        let accept_errors = crate::telemetry::EverySecond::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => worker.start_serving(stream, peer),
                    Err(e) => {
                        // Out of file descriptors and the like: say so
                        // (once a second), back off a little, go on.
                        if let Some(n) = accept_errors.count() {
                            tracing::error!(error = %e, failed = n, "cannot accept connections");
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
        // Graceful shutdown: no new connections; the thread waits for the
        // open ones (pingora's grace period bounds the process).
        drop(listener);
        worker.drain().await;
    });
}

fn public_host(url: &url::Url) -> http::HeaderValue {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    };
    http::HeaderValue::try_from(host)
        .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"))
}

/// One timer per connection for its timeouts (the idle wait, a head, each
/// upstream read) instead of a `tokio::time::timeout` per read, which read
/// the clock and added and removed a timer-wheel entry each time. It is
/// set only when a read has to wait (most find their bytes there), and
/// setting it later than before is cheap: tokio moves a registered entry's
/// deadline forward in place (`Sleep::reset`).
struct Timer {
    /// Made the first time a read waits.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Timer {
    fn new() -> Self {
        Timer { sleep: None }
    }

    /// `fut`, or `None` when it is still waiting `limit` after it first had
    /// to wait, as `tokio::time::timeout(limit, fut)` (but the clock is
    /// read only if it waits).
    fn within<F: Future>(&mut self, limit: Duration, fut: F) -> Bounded<'_, F> {
        Bounded {
            fut,
            timer: self,
            limit: Limit::Within(limit),
            armed: false,
        }
    }

    /// `fut`, or `None` at `deadline`.
    fn until<F: Future>(&mut self, deadline: tokio::time::Instant, fut: F) -> Bounded<'_, F> {
        Bounded {
            fut,
            timer: self,
            limit: Limit::Until(deadline),
            armed: false,
        }
    }
}

#[derive(Clone, Copy)]
enum Limit {
    /// From the first time the wait is pending.
    Within(Duration),
    Until(tokio::time::Instant),
}

pin_project_lite::pin_project! {
    /// One wait bounded by the connection's [`Timer`]. Written by hand: as
    /// `async fn`s the wrappers held the wrapped future two more times over
    /// and each call moved it twice (the futures of a request, copied as
    /// they nest, were a tenth of its instructions).
    struct Bounded<'t, F> {
        #[pin]
        fut: F,
        timer: &'t mut Timer,
        limit: Limit,
        // The timer was set for this wait (at its first `Pending`).
        armed: bool,
    }
}

impl<F: Future> Future for Bounded<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let deadline = || match *this.limit {
            Limit::Within(limit) => tokio::time::Instant::now() + limit,
            Limit::Until(at) => at,
        };
        let sleep = match &mut this.timer.sleep {
            Some(sleep) => {
                if !*this.armed {
                    sleep.as_mut().reset(deadline());
                }
                sleep
            }
            None => this
                .timer
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline()))),
        };
        *this.armed = true;
        sleep.as_mut().poll(cx).map(|()| None)
    }
}

enum HeadError {
    /// The client closed (or broke) the connection.
    Closed,
    Bad(BadRequest),
}

async fn serve(counted: OpenConnection, mut client: TcpStream, peer: SocketAddr) {
    let _open = crate::metrics::global().connection();
    let w = counted.0.clone();
    let ip = peer.ip();
    let mut shutdown = w.shutdown.clone();
    // Bytes read but not yet used: the rest of a pipelined batch or a body.
    let mut buf = BytesMut::new();
    let mut first = true;
    let mut timer = Timer::new();
    // Until when the connection may wait for its next request: a new one
    // `header_timeout` from its accept, a kept-alive one `idle_timeout`
    // from the previous request's end (a clock reading we have anyway).
    let mut idle_until = tokio::time::Instant::now() + w.header_timeout;
    loop {
        if buf.is_empty() {
            // Draining: a kept-alive connection closes between requests
            // (unless its next request is already here); a new one still
            // gets its first request answered (the client sent it to a
            // listener that was open).
            if w.draining.get() && !first && !io::has_bytes(&client) {
                break;
            }
            // Idle: wait without a buffer (readiness, then a read into the
            // stack; a buffer is taken only when bytes are there).
            // Shutdown came while a request was already here: wait for
            // that one only.
            let mut last = false;
            let arrived = loop {
                tokio::select! {
                    biased;
                    ready = timer.until(idle_until, client.readable()) => {
                        if !matches!(ready, Some(Ok(()))) {
                            break false;
                        }
                    }
                    _ = shutdown.changed(), if !first && !last => {
                        if !io::has_bytes(&client) {
                            break false;
                        }
                        last = true;
                    }
                }
                match first_read(&w, &client, &mut buf) {
                    Ok(0) => break false,
                    Ok(_) => break true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break false,
                }
            };
            if !arrived {
                break;
            }
        }
        first = false;
        let started = std::time::Instant::now();
        // The head's deadline counts from its first bytes.
        let head_by = tokio::time::Instant::from_std(started + w.header_timeout);
        // One configuration for the whole request, even across a reload.
        let app = w.current.borrow_mut().get();
        let trust_id = app.settings().server.trust_request_id;
        let head = match timer
            .until(head_by, read_head(&mut client, &mut buf, trust_id))
            .await
        {
            None => {
                // Half a head and then nothing: 408, and the connection goes.
                let reply = Reply::html(
                    408,
                    pages::Page::error(
                        408,
                        "Request timeout",
                        "The request took too long to arrive.",
                        "/",
                    ),
                );
                let _ = client.write_all(&reply.encode(None, true)).await;
                log_unparsed(408, "request_timeout", ip, started);
                break;
            }
            Some(Err(HeadError::Closed)) => break,
            Some(Err(HeadError::Bad(why))) => {
                let status = why.status();
                let reply = Reply::html(
                    status,
                    pages::Page::error(
                        status,
                        "Bad request",
                        &format!("This request cannot be served: {}.", why.as_str()),
                        "/",
                    ),
                );
                let _ = client.write_all(&reply.encode(None, true)).await;
                log_unparsed(status, "bad_request", ip, started);
                break;
            }
            Some(Ok(head)) => head,
        };
        // Boxed: the request's (large) state lives only while a request
        // does; an idle connection's future stays small.
        let (keep, end) = Box::pin(handle(
            &w,
            app,
            &mut client,
            ip,
            &mut buf,
            head,
            started,
            &mut timer,
        ))
        .await;
        idle_until = tokio::time::Instant::from_std(end + w.idle_timeout);
        if !keep {
            break;
        }
        if buf.is_empty() {
            // Give the buffer back: an idle connection holds none.
            w.spare_requests.give_back(std::mem::take(&mut buf));
        }
    }
    let _ = client.shutdown().await;
}

/// The first bytes of a request, read into a buffer taken from the
/// thread's spares (an idle connection holds none; it gets one back when
/// nothing was read).
fn first_read(w: &Worker, client: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() == 0 {
        *buf = w.spare_requests.take(4096);
    }
    let read = io::try_read_buf(client, buf, 4096);
    if !matches!(read, Ok(n) if n > 0) {
        w.spare_requests.give_back(std::mem::take(buf));
    }
    read
}

/// Reads until `buf` starts with a complete request head; the bytes after
/// it stay in `buf`. The head carries its request id
/// ([`headers::request_id_in`]; `trust_id`: `server.trust_request_id`),
/// so that the upstream, every answer and every log line carry it.
async fn read_head(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    trust_id: bool,
) -> Result<RequestHead, HeadError> {
    loop {
        if !buf.is_empty() {
            let bytes = buf.split().freeze();
            let id = |fields: &http::HeaderMap| {
                let id = headers::request_id_in(fields, trust_id);
                Some((crate::request_id::NAME.clone(), id))
            };
            match wire::parse_request_with(&bytes, id) {
                Ok(Some(head)) => {
                    if bytes.len() > head.len {
                        buf.extend_from_slice(&bytes[head.len..]);
                    }
                    return Ok(head);
                }
                // Rare: a head split over several reads.
                Ok(None) => buf.extend_from_slice(&bytes),
                Err(why) => return Err(HeadError::Bad(why)),
            }
        }
        match io::read_buf(client, buf, 4096).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(_) => {}
        }
    }
}

/// One request: judge, answer or forward, log. Returns whether the
/// connection may carry another request, and when this one ended.
#[allow(clippy::too_many_arguments)]
async fn handle(
    w: &Worker,
    app: Arc<App>,
    client: &mut TcpStream,
    ip: IpAddr,
    buf: &mut BytesMut,
    mut head: RequestHead,
    started: std::time::Instant,
    timer: &mut Timer,
) -> (bool, std::time::Instant) {
    let mut ctx = Ctx::started_at(app.clone(), started);
    let app = &*app;
    // The head's fields used in place: moved out, the request would be
    // kept twice in this future (an argument lives as long as it does).
    let (framing, keep_alive, expect_continue) =
        (head.framing, head.keep_alive, head.expect_continue);
    let req = &mut head.req;
    // The request's id, put on the request as it was read.
    if let Some(id) = head.stamped.take() {
        ctx.request_id = id;
    }
    if crate::traces::enabled() {
        ctx.span = crate::traces::start_request(
            req.method.as_str(),
            req.uri.path(),
            req.headers.get("traceparent").map(|v| v.as_bytes()),
        );
    }
    let decision = app.decide(req).await;
    if let Some(wire) = decision.rewritten {
        ctx.target = TargetState::Rewritten(wire);
    }
    if decision.upgrade == UpgradeKind::Other {
        let _ = decide::remove_upgrade(req);
    }
    if decision.strip_authorization {
        // A bearer token the operator keeps from the app.
        req.remove_header(&http::header::AUTHORIZATION);
    }
    let websocket = decision.upgrade == UpgradeKind::WebSocket;
    let head_only = req.method == Method::HEAD;
    let mut counted = false;
    let step = match app.carry_out_now(decision.verdict, &mut ctx) {
        Ok(step) => step,
        Err(verdict) => app.carry_out(verdict, req, Some(ip), &mut ctx).await,
    };
    let (status, keep, error) = match step {
        Step::Reply { reply, close } => {
            // An answer of our own to a request whose body was not read:
            // the connection closes (the next request would start inside it).
            let close = close || !keep_alive || framing != Framing::None || w.draining.get();
            let status = reply.status();
            // Counted before the answer leaves: whoever reads the metrics
            // after the answer sees this request.
            app.metrics().request(ctx.outcome, ctx.started.elapsed());
            counted = true;
            let written = client.write_all(&reply.encode(Some(req), close)).await;
            (
                status,
                written.is_ok() && !close,
                written.err().map(|_| "write_error"),
            )
        }
        Step::Forward if websocket => {
            ctx.outcome = if ctx.identity.is_some() {
                "upgrade"
            } else {
                "public_upgrade"
            };
            let (status, error) = Box::pin(tunnel(w, app, client, ip, buf, req, &mut ctx)).await;
            (status, false, error)
        }
        Step::Forward => {
            let exchange = Exchange {
                http10: req.version == Version::HTTP_10,
                framing,
                keep_alive,
                expect_continue,
                head_only,
                started: ctx.started,
            };
            let (status, keep, error, done) =
                proxy(w, app, client, ip, buf, req, exchange, &mut ctx, timer).await;
            counted = done;
            (status, keep, error)
        }
    };
    // One clock read for the request's end (the clock is read often enough).
    let ended = std::time::Instant::now();
    let took = ended.saturating_duration_since(ctx.started);
    if !counted {
        app.metrics().request(ctx.outcome, took);
    }
    if let Some(at) = ctx.upstream_started {
        app.metrics().upstream(ended.saturating_duration_since(at));
    }
    end_spans(&mut ctx, status);
    let target = judged_target(req, &ctx);
    access_log::log(&access_log::Entry {
        method: req.method.as_str(),
        path: path_of(&target),
        status,
        outcome: ctx.outcome,
        user: ctx
            .identity
            .as_ref()
            .map(|id| (id.provider.as_str(), id.subject.as_str())),
        client: Some(ip),
        micros: took.as_micros() as u64,
        error,
        request_id: ctx.request_id.to_str().unwrap_or_default(),
    });
    (keep, ended)
}

/// With traces on: the request's span and its call to the application end.
fn end_spans(ctx: &mut Ctx, status: u16) {
    if let Some(up) = ctx.upstream_span.take() {
        crate::traces::end(&up, Vec::new());
    }
    if let Some(span) = ctx.span.take() {
        crate::traces::end(
            &span,
            vec![
                opentelemetry::KeyValue::new("http.response.status_code", i64::from(status)),
                opentelemetry::KeyValue::new("portcullis.outcome", ctx.outcome),
                opentelemetry::KeyValue::new(
                    "portcullis.request_id",
                    ctx.request_id.to_str().unwrap_or_default().to_owned(),
                ),
            ],
        );
    }
}

fn log_unparsed(status: u16, outcome: &'static str, ip: IpAddr, started: std::time::Instant) {
    crate::metrics::global().request(outcome, started.elapsed());
    access_log::log(&access_log::Entry {
        method: "-",
        path: "-",
        status,
        outcome,
        user: None,
        client: Some(ip),
        micros: started.elapsed().as_micros() as u64,
        error: None,
        request_id: "",
    });
}

/// What the request says about its own exchange.
#[derive(Clone, Copy)]
struct Exchange {
    /// The client spoke HTTP/1.0: no chunks for it.
    http10: bool,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    head_only: bool,
    /// When the request started (for the metrics).
    started: std::time::Instant,
}

/// What goes to the upstream, once judged.
struct Outgoing<'a> {
    /// The request head, written for the upstream.
    head: &'a [u8],
    /// When it was about to go (the response's wait counts from it).
    at: std::time::Instant,
    /// What the access log and metrics call this request.
    outcome: &'static str,
    /// Cookies of ours for the answer (a re-sealed access token).
    set_cookies: &'a [String],
}

/// Why forwarding failed.
#[derive(Debug)]
enum Failure {
    /// Before any response byte: the client gets a 502 page.
    Upstream(&'static str),
    /// A pooled connection that turned out closed before answering: try a
    /// new one (only for requests without a body).
    Stale,
    /// The client went away or sent a broken body.
    Client(&'static str),
    /// The response had started: nothing to do but close.
    Midway(&'static str),
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    w: &Worker,
    app: &App,
    client: &mut TcpStream,
    ip: IpAddr,
    buf: &mut BytesMut,
    req: &mut RequestHeader,
    ex: Exchange,
    ctx: &mut Ctx,
    timer: &mut Timer,
) -> (u16, bool, Option<&'static str>, bool) {
    wire::strip_hop_by_hop(req);
    if !req.headers.contains_key(http::header::HOST) {
        // HTTP/1.0 without Host: we speak HTTP/1.1 upstream, which needs
        // one; the app gets the site's own name.
        let _ = req.insert_header(http::header::HOST, w.public_host.clone());
    }
    // The headers we add, as lines for the head (not into the map).
    let mut extra = w.extra_lines.take();
    extra.clear();
    if app
        .prepare_upstream_head(
            Some(ip),
            req,
            ctx.identity.as_deref(),
            &ctx.request_id,
            ctx.session_expires_at,
            ctx.access_token.as_ref(),
            &mut extra,
        )
        .is_err()
    {
        w.extra_lines.set(extra);
        ctx.outcome = "proxy_error";
        let close = ex.framing != Framing::None || !ex.keep_alive;
        let reply = crate::proxy::internal_error();
        let ok = client
            .write_all(&reply.encode(Some(req), close))
            .await
            .is_ok();
        return (500, ok && !close, Some("internal"), false);
    }
    if let Some(up) = ctx.span.as_ref().and_then(|cx| {
        crate::traces::start_child(Some(cx), "upstream", opentelemetry::trace::SpanKind::Client)
    }) {
        let _ = req.insert_header("traceparent", crate::traces::traceparent(&up));
        req.remove_header("tracestate");
        ctx.upstream_span = Some(up);
    }
    let sent_at = std::time::Instant::now();
    ctx.upstream_started = Some(sent_at);
    let mut head = Vec::with_capacity(1024);
    {
        let target = match &ctx.target {
            TargetState::Rewritten(t) => t.as_bytes(),
            _ => req.raw_path(),
        };
        wire::write_request_head_with(&mut head, req, target, &extra, ex.framing);
    }
    w.extra_lines.set(extra);
    if ex.expect_continue && ex.framing != Framing::None {
        // The gate has judged the head: the body may come (RFC 9110 §10.1.1).
        // Expect itself does not go on: we answered it.
        if client
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
        {
            return (0, false, Some("write_error"), false);
        }
    }

    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut upstream, reused) = match w.pool.take(ctx.started) {
            Some(s) if attempt == 1 => (s, true),
            _ => match w.pool.connect().await {
                Ok(s) => (s, false),
                Err(_) => {
                    return with_uncounted(upstream_failed(w, client, req, ctx, "connect").await);
                }
            },
        };
        let outgoing = Outgoing {
            head: &head,
            at: sent_at,
            outcome: ctx.outcome,
            set_cookies: &ctx.set_cookies,
        };
        match exchange(w, client, &mut upstream, buf, &outgoing, ex, reused, timer).await {
            Ok(done) => {
                if done.upstream_reusable {
                    w.pool.put(upstream, done.answered);
                }
                let keep = ex.keep_alive && done.client_reusable && !w.draining.get();
                return (done.status, keep, None, true);
            }
            Err(Failure::Stale) if attempt == 1 => continue,
            Err(Failure::Stale) => {
                return with_uncounted(upstream_failed(w, client, req, ctx, "closed").await)
            }
            Err(Failure::Upstream(why)) => {
                return with_uncounted(upstream_failed(w, client, req, ctx, why).await)
            }
            Err(Failure::Client("bad_chunk")) => {
                // A broken chunked body, found before any answer: 400.
                ctx.outcome = "bad_request";
                let reply = Reply::html(
                    400,
                    pages::Page::error(
                        400,
                        "Bad request",
                        "The request body is not valid chunked encoding.",
                        "/",
                    ),
                );
                let _ = client.write_all(&reply.encode(Some(req), true)).await;
                return (400, false, Some("bad_chunk"), false);
            }
            Err(Failure::Client(why)) => return (0, false, Some(why), false),
            Err(Failure::Midway(why)) => {
                // Counted as proxied when its head went out.
                return (0, false, Some(why), true);
            }
        }
    }
}

fn with_uncounted(
    (status, keep, error): (u16, bool, Option<&'static str>),
) -> (u16, bool, Option<&'static str>, bool) {
    (status, keep, error, false)
}

async fn upstream_failed(
    w: &Worker,
    client: &mut TcpStream,
    req: &RequestHeader,
    ctx: &mut Ctx,
    why: &'static str,
) -> (u16, bool, Option<&'static str>) {
    w.current.borrow_mut().get().note_upstream_failure(why);
    ctx.outcome = "proxy_error";
    let rd = crate::auth::redirect::safe_return_path(path_of(&target_text(ctx))).into_owned();
    let reply = Reply::html(
        502,
        pages::Page::error(
            502,
            "The application is not responding",
            "Portcullis could not reach the application behind it. Please try again in a moment.",
            &rd,
        ),
    );
    // The body (if any) may be half sent: this connection is done.
    let _ = client.write_all(&reply.encode(Some(req), true)).await;
    (502, false, Some(why))
}

fn target_text(ctx: &Ctx) -> String {
    match &ctx.target {
        TargetState::Rewritten(t) => t.to_string(),
        _ => "/".to_owned(),
    }
}

/// How an exchange ended.
struct Done {
    status: u16,
    /// When the response head was ready to go to the client.
    answered: std::time::Instant,
    upstream_reusable: bool,
    client_reusable: bool,
}

/// One request and its response over `upstream`.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    w: &Worker,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    buf: &mut BytesMut,
    outgoing: &Outgoing<'_>,
    ex: Exchange,
    reused: bool,
    timer: &mut Timer,
) -> Result<Done, Failure> {
    let head = outgoing.head;
    let (cr, mut cw) = client.split();
    let (ur, mut uw) = upstream.split();
    let (cr, ur): (&TcpStream, &TcpStream) = (cr.as_ref(), ur.as_ref());
    let mut spare = w.spare_responses.lend(8192);
    let rbuf = &mut spare.0;
    let mut body_done = ex.framing == Framing::None;
    let stale_if = |reused: bool| {
        if reused && ex.framing == Framing::None {
            Failure::Stale
        } else {
            Failure::Upstream("write")
        }
    };
    if let Framing::Length(n) = ex.framing {
        // The common small body arrives with its head: one write for both.
        if (buf.len() as u64) >= n {
            let mut out = Vec::with_capacity(head.len() + n as usize);
            out.extend_from_slice(head);
            out.extend_from_slice(&buf[..n as usize]);
            buf.advance(n as usize);
            uw.write_all(&out).await.map_err(|_| stale_if(reused))?;
            body_done = true;
        } else {
            uw.write_all(head).await.map_err(|_| stale_if(reused))?;
        }
    } else {
        uw.write_all(head).await.map_err(|_| stale_if(reused))?;
    }

    // The client's head, written while the upstream's is parsed.
    let mut out = Vec::with_capacity(1024);
    // Request sent whole: a closed pooled connection may be retried, and
    // the wait counts from when the request went out.
    let (may_be_stale, waiting_since) = if body_done {
        (reused && ex.framing == Framing::None, Some(outgoing.at))
    } else {
        (false, None)
    };
    let recv = read_response_head(
        ur,
        rbuf,
        &mut out,
        ex.head_only,
        timer,
        w.read_timeout,
        may_be_stale,
        waiting_since,
    );
    let response = if body_done {
        recv.await?
    } else {
        let send = send_body(cr, buf, &mut uw, ex.framing, w.read_timeout);
        tokio::pin!(send);
        tokio::pin!(recv);
        loop {
            tokio::select! {
                biased;
                sent = &mut send, if !body_done => {
                    sent?;
                    body_done = true;
                }
                got = &mut recv => break got?,
            }
        }
    };

    // The client's framing: HTTP/1.1 clients get a length or chunks;
    // HTTP/1.0 clients a length or the connection's end.
    let client_10 = ex.http10;
    let out_framing = match response.framing {
        Framing::None => Framing::None,
        Framing::Length(n) => Framing::Length(n),
        Framing::Chunked | Framing::UntilClose if client_10 => Framing::UntilClose,
        Framing::Chunked | Framing::UntilClose => Framing::Chunked,
    };
    let close =
        !ex.keep_alive || !body_done || out_framing == Framing::UntilClose || w.draining.get();
    wire::finish_response_head(
        &mut out,
        &response,
        out_framing,
        close,
        client_10 && !close,
        outgoing.set_cookies,
    );
    rbuf.advance(response.len);
    let status = response.status;
    // Counted before the answer leaves (see `handle`).
    let answered = std::time::Instant::now();
    crate::metrics::global().request(
        outgoing.outcome,
        answered.saturating_duration_since(ex.started),
    );
    let upstream_clean = relay_body(
        ur,
        &mut cw,
        rbuf,
        out,
        response.framing,
        out_framing,
        timer,
        w.read_timeout,
    )
    .await?;
    Ok(Done {
        status,
        answered,
        upstream_reusable: upstream_clean && body_done && !response.close,
        client_reusable: !close,
    })
}

/// Reads the upstream's response head (skipping interim 1xx answers);
/// `out` gets the start of the client's head
/// ([`wire::parse_response_into`]).
#[allow(clippy::too_many_arguments)]
async fn read_response_head(
    ur: &TcpStream,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    head_only: bool,
    timer: &mut Timer,
    read_timeout: Duration,
    may_be_stale: bool,
    mut waiting_since: Option<std::time::Instant>,
) -> Result<ResponseHead, Failure> {
    let mut got_any = false;
    loop {
        if !rbuf.is_empty() {
            match wire::parse_response_into(rbuf, head_only, Some(out)) {
                Ok(Some(head)) if head.status == 101 => {
                    // Nobody asked to switch protocols.
                    let _ = head;
                    return Err(Failure::Upstream("unexpected_101"));
                }
                Ok(Some(head)) if (100..200).contains(&head.status) => {
                    out.clear();
                    rbuf.advance(head.len);
                    continue;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(_) => return Err(Failure::Upstream("bad_response")),
            }
        }
        let read = io::read_buf(ur, rbuf, 8192);
        // The first wait counts from when the request went out (a clock
        // reading the caller already has), the others from now.
        let got = match waiting_since.take() {
            Some(at) => {
                let until = tokio::time::Instant::from_std(at + read_timeout);
                timer.until(until, read).await
            }
            None => timer.within(read_timeout, read).await,
        };
        match got {
            None => return Err(Failure::Upstream("read_timeout")),
            Some(Ok(0)) | Some(Err(_)) if may_be_stale && !got_any => return Err(Failure::Stale),
            Some(Ok(0)) => return Err(Failure::Upstream("closed")),
            Some(Err(_)) => return Err(Failure::Upstream("read_error")),
            Some(Ok(_)) => got_any = true,
        }
    }
}

/// Sends the request body (already judged with its head) to the upstream,
/// re-framed by us: exactly `n` bytes, or our own chunks.
async fn send_body<W>(
    cr: &TcpStream,
    buf: &mut BytesMut,
    uw: &mut W,
    framing: Framing,
    read_timeout: Duration,
) -> Result<(), Failure>
where
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::None | Framing::UntilClose => Ok(()),
        Framing::Length(mut left) => loop {
            if !buf.is_empty() {
                let n = (buf.len() as u64).min(left) as usize;
                uw.write_all(&buf[..n])
                    .await
                    .map_err(|_| Failure::Upstream("write"))?;
                buf.advance(n);
                left -= n as u64;
            }
            if left == 0 {
                return Ok(());
            }
            read_more(cr, buf, read_timeout).await?;
        },
        Framing::Chunked => {
            let mut decoder = wire::Chunked::default();
            let mut out = BytesMut::with_capacity(8192);
            loop {
                while !buf.is_empty() && !decoder.is_done() {
                    let (used, data) = decoder
                        .step(buf)
                        .map_err(|_| Failure::Client("bad_chunk"))?;
                    if let Some(r) = data {
                        wire::put_chunk(&mut out, &buf[r]);
                    }
                    buf.advance(used);
                }
                if decoder.is_done() {
                    out.extend_from_slice(wire::LAST_CHUNK);
                }
                if !out.is_empty() {
                    uw.write_all(&out)
                        .await
                        .map_err(|_| Failure::Upstream("write"))?;
                    out.clear();
                }
                if decoder.is_done() {
                    return Ok(());
                }
                read_more(cr, buf, read_timeout).await?;
            }
        }
    }
}

async fn read_more(
    cr: &TcpStream,
    buf: &mut BytesMut,
    read_timeout: Duration,
) -> Result<(), Failure> {
    match tokio::time::timeout(read_timeout, io::read_buf(cr, buf, 16 * 1024)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(_) => Err(Failure::Client("client_closed")),
        Err(_) => Err(Failure::Client("client_timeout")),
    }
}

/// Sends `out` (the response head) and the response body to the client.
/// Returns whether the upstream connection ended cleanly at the body's end
/// (nothing read past it).
#[allow(clippy::too_many_arguments)]
async fn relay_body<W>(
    ur: &TcpStream,
    cw: &mut W,
    rbuf: &mut BytesMut,
    mut out: Vec<u8>,
    from: Framing,
    to: Framing,
    timer: &mut Timer,
    read_timeout: Duration,
) -> Result<bool, Failure>
where
    W: AsyncWrite + Unpin,
{
    let client_err = |_| Failure::Client("write_error");
    match from {
        Framing::None => {
            cw.write_all(&out).await.map_err(client_err)?;
            Ok(rbuf.is_empty())
        }
        Framing::Length(mut left) => {
            // Head and as much body as is here: one write.
            let n = (rbuf.len() as u64).min(left) as usize;
            out.extend_from_slice(&rbuf[..n]);
            rbuf.advance(n);
            left -= n as u64;
            cw.write_all(&out).await.map_err(client_err)?;
            while left > 0 {
                rbuf.clear();
                match timer
                    .within(read_timeout, io::read_buf(ur, rbuf, 64 * 1024))
                    .await
                {
                    Some(Ok(n)) if n > 0 => {}
                    _ => return Err(Failure::Midway("upstream_body")),
                }
                let n = (rbuf.len() as u64).min(left) as usize;
                cw.write_all(&rbuf[..n]).await.map_err(client_err)?;
                rbuf.advance(n);
                left -= n as u64;
            }
            Ok(rbuf.is_empty())
        }
        Framing::Chunked | Framing::UntilClose => {
            let mut decoder = wire::Chunked::default();
            let mut chunks = BytesMut::with_capacity(out.len() + rbuf.len() + 64);
            chunks.extend_from_slice(&out);
            drop(out);
            let mut eof = false;
            loop {
                // Decode what is here (or take it as is until close).
                while !rbuf.is_empty() && !decoder.is_done() {
                    if from == Framing::Chunked {
                        let (used, data) = decoder
                            .step(rbuf)
                            .map_err(|_| Failure::Midway("bad_chunk"))?;
                        if let Some(r) = data {
                            emit(&mut chunks, &rbuf[r], to);
                        }
                        rbuf.advance(used);
                    } else {
                        emit(&mut chunks, rbuf, to);
                        rbuf.clear();
                    }
                }
                let finished = decoder.is_done() || eof;
                if finished && to == Framing::Chunked {
                    chunks.extend_from_slice(wire::LAST_CHUNK);
                }
                if !chunks.is_empty() {
                    cw.write_all(&chunks).await.map_err(client_err)?;
                    chunks.clear();
                }
                if finished {
                    return Ok(from == Framing::Chunked && rbuf.is_empty());
                }
                rbuf.clear();
                match timer
                    .within(read_timeout, io::read_buf(ur, rbuf, 64 * 1024))
                    .await
                {
                    Some(Ok(0)) if from == Framing::UntilClose => eof = true,
                    Some(Ok(n)) if n > 0 => {}
                    _ => return Err(Failure::Midway("upstream_body")),
                }
            }
        }
    }
}

/// Body bytes to the client in its framing.
fn emit(out: &mut BytesMut, data: &[u8], to: Framing) {
    if to == Framing::Chunked {
        wire::put_chunk(out, data);
    } else {
        out.extend_from_slice(data);
    }
}

/// A WebSocket upgrade: the handshake built from an allow-list
/// (`proxy::upgrade::handshake_for`), a fresh upstream connection, and —
/// after a `101` — bytes both ways until either side closes or the session
/// that opened the tunnel ends.
async fn tunnel(
    w: &Worker,
    app: &App,
    client: &mut TcpStream,
    ip: IpAddr,
    buf: &mut BytesMut,
    req: &RequestHeader,
    ctx: &mut Ctx,
) -> (u16, Option<&'static str>) {
    let target = judged_target(req, ctx).into_owned();
    let handshake = crate::proxy::upgrade::handshake_for(
        app,
        req,
        target.as_bytes(),
        Some(ip),
        ctx.identity.as_deref(),
        &ctx.request_id,
    )
    .and_then(|mut up| {
        app.add_identity_extras(
            &mut up,
            ctx.identity.as_deref(),
            ctx.session_expires_at,
            ctx.access_token.as_ref(),
        )
        .map(|()| up)
    });
    let Ok(handshake) = handshake else {
        ctx.outcome = "proxy_error";
        let _ = client
            .write_all(&crate::proxy::internal_error().encode(Some(req), true))
            .await;
        return (500, Some("internal"));
    };
    let Ok(mut upstream) = w.pool.connect().await else {
        let (status, _, err) = upstream_failed(w, client, req, ctx, "connect").await;
        return (status, err);
    };
    let mut head = Vec::with_capacity(512);
    wire::write_request_head(&mut head, &handshake, target.as_bytes(), Framing::None);
    // Bytes the client sent after its handshake go along.
    head.extend_from_slice(buf);
    buf.clear();
    if upstream.write_all(&head).await.is_err() {
        let (status, _, err) = upstream_failed(w, client, req, ctx, "write").await;
        return (status, err);
    }
    let mut rbuf = BytesMut::with_capacity(4096);
    let response = loop {
        if !rbuf.is_empty() {
            match wire::parse_response(&rbuf, false) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(_) => {
                    let (status, _, err) =
                        upstream_failed(w, client, req, ctx, "bad_response").await;
                    return (status, err);
                }
            }
        }
        match tokio::time::timeout(w.read_timeout, io::read_buf(&upstream, &mut rbuf, 4096)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                let (status, _, err) = upstream_failed(w, client, req, ctx, "closed").await;
                return (status, err);
            }
        }
    };
    if response.status != 101 {
        // The app refused the upgrade: relay its answer, then close.
        let mut out = Vec::with_capacity(response.len + 64);
        wire::write_response_head(
            &mut out,
            &rbuf[..response.len],
            &response,
            response.framing,
            true,
            false,
            &[],
        );
        rbuf.advance(response.len);
        let (_, mut cw) = client.split();
        return match relay_body(
            &upstream,
            &mut cw,
            &mut rbuf,
            out,
            response.framing,
            response.framing,
            &mut Timer::new(),
            w.read_timeout,
        )
        .await
        {
            Ok(_) => (response.status, None),
            Err(_) => (response.status, Some("upstream_body")),
        };
    }
    // Switched: the app's 101 as it is (it carries Upgrade and the
    // Sec-WebSocket-Accept), then whatever it sent after it.
    if client.write_all(&rbuf).await.is_err() {
        return (101, Some("write_error"));
    }
    drop(rbuf);
    let session_end = ctx.identity.is_some().then(|| {
        let left = ctx
            .session_expires_at
            .saturating_sub(crate::session::unix_now());
        tokio::time::Instant::now() + Duration::from_secs(left)
    });
    let expired = async {
        match session_end {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = expired => ctx.outcome = "upgrade_session_expired",
        _ = tokio::io::copy_bidirectional(client, &mut upstream) => {}
    }
    (101, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The usual test app (`proxy::testing`): `/public/...` passes
    /// without a session, anything else asks a browser to sign in.
    fn current() -> Arc<Current> {
        Arc::new(Current::new(crate::proxy::testing::app_configured("", "")))
    }

    /// Reads until `stream` has sent `want` (or closed, or a generous
    /// guard ran out: a failure, not a synchronisation).
    async fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, want: &[u8]) {
        let found = |got: &[u8]| got.windows(want.len()).any(|w| w == want);
        let read = async {
            let mut chunk = [0u8; 4096];
            while !found(got) {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        assert!(
            found(got),
            "{:?} not in {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_accepted_as_shutdown_begins_is_answered() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let (_stop, shutdown) = tokio::sync::watch::channel(false);
                let w = Rc::new(Worker::new(
                    current(),
                    "127.0.0.1:9".parse().unwrap(),
                    shutdown,
                ));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                // A plain socket: read below without the runtime's help.
                let mut client =
                    std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                std::io::Write::write_all(
                    &mut client,
                    b"GET /x HTTP/1.1\r\nHost: app.example\r\nAccept: text/html\r\n\r\n",
                )
                .unwrap();
                let (stream, peer) = listener.accept().await.unwrap();
                w.start_serving(stream, peer);
                // The drain begins before the connection's task first ran:
                // it waits for it (the thread would end and drop the task
                // otherwise), so its answer is complete when it returns.
                w.drain().await;
                let mut got = Vec::new();
                client.set_nonblocking(true).unwrap();
                let _ = std::io::Read::read_to_end(&mut client, &mut got);
                let text = String::from_utf8_lossy(&got);
                assert!(text.starts_with("HTTP/1.1 302 "), "{text}");
                assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_already_sent_when_shutdown_begins_is_answered() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let (stop, shutdown) = tokio::sync::watch::channel(false);
                let w = Rc::new(Worker::new(
                    current(),
                    upstream.local_addr().unwrap(),
                    shutdown,
                ));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mut client = TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let (stream, peer) = listener.accept().await.unwrap();
                w.start_serving(stream, peer);

                client
                    .write_all(b"GET /public/one HTTP/1.1\r\nHost: app.example\r\n\r\n")
                    .await
                    .unwrap();
                let (mut app, _) = upstream.accept().await.unwrap();
                let mut seen = Vec::new();
                read_until(&mut app, &mut seen, b"\r\n\r\n").await;
                assert!(seen.starts_with(b"GET /public/one "));
                app.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none")
                    .await
                    .unwrap();
                let mut got = Vec::new();
                read_until(&mut client, &mut got, b"\r\n\r\none").await;

                // The connection waits, kept alive. Its next request is
                // sent, and then shutdown begins: the connection's task
                // learns of the shutdown before its socket's readiness
                // (the runtime has not polled for events yet). The request
                // is on its socket: it is answered, then the connection
                // closes.
                client
                    .write_all(b"GET /public/two HTTP/1.1\r\nHost: app.example\r\n\r\n")
                    .await
                    .unwrap();
                w.draining.set(true);
                stop.send(true).unwrap();
                seen.clear();
                read_until(&mut app, &mut seen, b"\r\n\r\n").await;
                assert!(seen.starts_with(b"GET /public/two "));
                app.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo")
                    .await
                    .unwrap();
                got.clear();
                client.read_to_end(&mut got).await.unwrap();
                let text = String::from_utf8_lossy(&got);
                assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
                assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
                assert!(text.ends_with("\r\n\r\ntwo"), "{text}");
                w.drain().await;
            })
            .await;
    }
}
