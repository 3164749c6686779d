//! An upstream that records the raw bytes of every request head it
//! receives, and answers `101 Switching Protocols` to anyone who asks for
//! `Upgrade: h2c` (as an h2c-capable server would): a test can see exactly
//! what Portcullis forwarded, and whether it ever let an upgrade through.
//!
//! Requests are read as HTTP/1.1 with keep-alive: the head up to the empty
//! line, then a `Content-Length` or chunked body; everything else answers
//! `200` with the body `raw-upstream`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The bytes received on one connection.
type ConnectionLog = Arc<Mutex<Vec<u8>>>;

/// One request as received.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The head exactly as received, request line to the empty line.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The request-target of the request line.
    pub fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    /// Every value of header `name` (any case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Header names as received.
    pub fn header_names(&self) -> Vec<&str> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(n, _)| n)
            .collect()
    }
}

pub struct RawUpstream {
    pub addr: SocketAddr,
    pub base_url: String,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    /// Every byte received, one entry per connection, in accept order.
    streams: Arc<Mutex<Vec<ConnectionLog>>>,
    /// How many requests were answered `101`.
    upgrades: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn upgrades(&self) -> usize {
        *self.upgrades.lock().unwrap()
    }

    /// The raw bytes received on each connection so far.
    pub fn streams(&self) -> Vec<Vec<u8>> {
        self.streams
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.streams.lock().unwrap().len()
    }
}

/// How the upstream treats its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep-alive, as a normal server.
    KeepAlive,
    /// Close every connection right after its first answer, without saying
    /// so (`Connection: close` is not sent): what an upstream with a short
    /// idle timeout does to a pooled connection.
    CloseSilently,
}

pub async fn start() -> RawUpstream {
    start_with(Mode::KeepAlive).await
}

pub async fn start_with(mode: Mode) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests: Arc<Mutex<Vec<RawRequest>>> = Arc::default();
    let upgrades: Arc<Mutex<usize>> = Arc::default();
    let streams: Arc<Mutex<Vec<ConnectionLog>>> = Arc::default();
    let (r, u, st) = (requests.clone(), upgrades.clone(), streams.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log: ConnectionLog = Arc::default();
            st.lock().unwrap().push(log.clone());
            let stream = Recording { inner: stream, log };
            tokio::spawn(serve(stream, mode, r.clone(), u.clone()));
        }
    });
    RawUpstream {
        addr,
        base_url: format!("http://{addr}"),
        requests,
        streams,
        upgrades,
        task,
    }
}

/// A TCP stream that keeps a copy of every byte read from it.
struct Recording {
    inner: TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncRead for Recording {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.log.lock().unwrap().extend_from_slice(&new);
        polled
    }
}

impl tokio::io::AsyncWrite for Recording {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn serve(
    stream: Recording,
    mode: Mode,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    upgrades: Arc<Mutex<usize>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == "\r\n" || line == "\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        let mut req = RawRequest {
            head,
            body: Vec::new(),
        };
        let length = req
            .header("content-length")
            .first()
            .and_then(|v| v.parse::<usize>().ok());
        let chunked = req
            .header("transfer-encoding")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if reader.read_exact(&mut chunk).await.is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                req.body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            let mut body = vec![0; n];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            req.body = body;
        }
        let h2c = req
            .header("upgrade")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("h2c"));
        let target = req.target().to_owned();
        let user = req.header("x-user").first().map(|u| u.to_string());
        requests.lock().unwrap().push(req);
        let stream = reader.get_mut();
        if h2c {
            *upgrades.lock().unwrap() += 1;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
                )
                .await;
            // What follows would be HTTP/2; this upstream only wanted to
            // be asked. Hold the connection until the other side closes.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink).await;
            return;
        }
        let body = b"raw-upstream";
        // The target and user this answer belongs to, so that a client can
        // check order (targets are visible ASCII: safe in a header).
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Raw-Upstream: 1\r\nX-Target: {target}\r\nX-Seen-User: {}\r\n\r\n",
            body.len(),
            user.as_deref().unwrap_or("-")
        );
        if stream.write_all(answer.as_bytes()).await.is_err()
            || stream.write_all(body).await.is_err()
        {
            return;
        }
        if mode == Mode::CloseSilently {
            let _ = stream.shutdown().await;
            return;
        }
    }
}
