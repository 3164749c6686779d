//! The protected test application behind Portcullis: echoes every request as JSON, and serves
//! a WebSocket echo, a chunked stream, chosen statuses, a delay and large streamed bodies.
//!
//! | path | answer |
//! |---|---|
//! | any other path, any method | 200 echo JSON (see [`start`]) |
//! | `/ws` | WebSocket echo; the text message `__headers__` is answered with the upgrade request's headers as JSON; a plain request is echoed |
//! | `/chunked?chunks=N&delay_ms=M` | `N` (default 5) chunks `chunk {i}\n`, chunked transfer encoding, `M` ms apart (default 0) |
//! | `/status/{code}` | that status, with the echo JSON unless the status forbids a body |
//! | `/delay/{ms}` | the echo JSON after `ms` milliseconds |
//! | `/bytes/{n}` | `n` streamed bytes (`i % 251`), chunked, SHA-256 in `x-body-sha256` |
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::served::Served;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The running upstream. Dropping it stops the server.
pub struct Upstream {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    served: Served,
}

#[derive(Default)]
struct Shared {
    hits: AtomicUsize,
    /// The echo JSON of every request, oldest first.
    requests: Mutex<Vec<Value>>,
    /// The client address of every connection a request came on.
    connections: Mutex<std::collections::HashSet<SocketAddr>>,
}

/// Starts the upstream on `127.0.0.1:0` on the current tokio runtime.
///
/// The echo JSON is `{"method", "path", "query" (string or null), "version",
/// "headers": [[name, value], ...] (every header received, names lower-case as the http crate
/// gives them, values lossy UTF-8), "body_len", "body_sha256" (hex)}`. The body is read as a
/// stream, without a size limit.
pub async fn start() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let shared = Arc::new(Shared::default());
    let router = Router::new()
        .fallback(dispatch)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared.clone());
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let served = Served::spawn(|shutdown| async move {
        let _ = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown.wait())
            .await;
    });
    Upstream {
        base_url: format!("http://{addr}"),
        addr,
        shared,
        served,
    }
}

impl Upstream {
    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// On how many distinct TCP connections requests arrived.
    pub fn connections(&self) -> usize {
        self.shared.connections.lock().unwrap().len()
    }

    /// How many requests (of any kind) reached the upstream.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// The echo JSON of every request so far (WebSocket upgrades included), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The echo JSON of the latest request.
    pub fn last_request(&self) -> Option<Value> {
        self.requests().pop()
    }

    /// Stops accepting connections and closes idle ones. Idempotent.
    pub fn shutdown(&self) {
        self.served.shutdown();
    }

    /// Shuts down and waits until the listener is closed and in-flight requests are done
    /// (at most 5 s, then the server task is aborted): afterwards connections are refused.
    pub async fn stop(&self) {
        self.served.stop().await;
    }
}

/// All values of header `name` (any letter case) in an echo JSON, in order.
pub fn header<'a>(json: &'a Value, name: &str) -> Vec<&'a str> {
    json["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            let pair = pair.as_array()?;
            let n = pair.first()?.as_str()?;
            let v = pair.get(1)?.as_str()?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
        .collect()
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        shared.connections.lock().unwrap().insert(*peer);
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();

    if path == "/ws" {
        let (mut parts, body) = request.into_parts();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => {
                let headers = headers_json(&parts.headers);
                let mut seen = summary(&parts, &headers, 0, &Sha256::new());
                seen["websocket"] = json!(true);
                record(&shared, seen);
                upgrade.on_upgrade(move |socket| ws_echo(socket, headers))
            }
            Err(_) => echo(shared, Request::from_parts(parts, body), StatusCode::OK).await,
        };
    }
    if path == "/chunked" {
        let param = |name: &str| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<u64>().ok())
        };
        let chunks = param("chunks").unwrap_or(5);
        let delay = Duration::from_millis(param("delay_ms").unwrap_or(0));
        let _ = echo_body(shared.clone(), request).await;
        let stream = futures_util::stream::unfold(0u64, move |i| async move {
            if i >= chunks {
                return None;
            }
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((
                Ok::<_, std::io::Error>(Bytes::from(format!("chunk {i}\n"))),
                i + 1,
            ))
        });
        return (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let Some(status) = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|s| s.as_u16() >= 200)
        else {
            return (StatusCode::BAD_REQUEST, "bad status").into_response();
        };
        return echo(shared, request, status).await;
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        let Ok(ms) = ms.parse::<u64>() else {
            return (StatusCode::BAD_REQUEST, "bad delay").into_response();
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return echo(shared, request, StatusCode::OK).await;
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let Ok(n) = n.parse::<u64>() else {
            return (StatusCode::BAD_REQUEST, "bad length").into_response();
        };
        let _ = echo_body(shared.clone(), request).await;
        return bytes_response(n);
    }
    echo(shared, request, StatusCode::OK).await
}

/// Reads the body, records the request, answers `status` with the echo JSON.
async fn echo(shared: Arc<Shared>, request: Request, status: StatusCode) -> Response {
    let seen = match echo_body(shared, request).await {
        Ok(seen) => seen,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let bodyless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if bodyless {
        return status.into_response();
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        seen.to_string(),
    )
        .into_response()
}

async fn echo_body(shared: Arc<Shared>, request: Request) -> Result<Value, String> {
    let (parts, body) = request.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("upstream: reading the body failed: {e}"))?;
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let headers = headers_json(&parts.headers);
    let seen = summary(&parts, &headers, len, &hasher);
    record(&shared, seen.clone());
    Ok(seen)
}

fn summary(
    parts: &axum::http::request::Parts,
    headers: &Value,
    len: u64,
    hasher: &Sha256,
) -> Value {
    json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": len,
        "body_sha256": hex(&hasher.clone().finalize()),
    })
}

fn record(shared: &Shared, seen: Value) {
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(seen);
}

fn headers_json(headers: &HeaderMap) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
            .collect(),
    )
}

async fn ws_echo(mut socket: WebSocket, headers: Value) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) if text.as_str() == "__headers__" => {
                Message::Text(headers.to_string().into())
            }
            Message::Text(text) => Message::Text(text),
            Message::Binary(data) => Message::Binary(data),
            Message::Close(frame) => {
                let _ = socket.send(Message::Close(frame)).await;
                return;
            }
            // Pings are answered by the library.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

fn bytes_response(n: u64) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let byte_at = |i: u64| (i % 251) as u8;
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < n {
        let end = (offset + CHUNK).min(n);
        hasher.update((offset..end).map(byte_at).collect::<Vec<u8>>());
        offset = end;
    }
    let stream = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= n {
            return None;
        }
        let end = (offset + CHUNK).min(n);
        let chunk: Vec<u8> = (offset..end).map(byte_at).collect();
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), end))
    });
    let mut response = (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response();
    response.headers_mut().insert(
        "x-body-sha256",
        HeaderValue::from_str(&hex(&hasher.finalize())).expect("hex is a header value"),
    );
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
