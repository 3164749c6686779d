//! A transparent TCP relay between Portcullis and an upstream that records the request line
//! of every HTTP/1.1 request Portcullis sends through it: what was forwarded, byte for byte,
//! whatever the upstream makes of it (or refuses). Bytes pass unchanged in both directions,
//! one upstream connection per Portcullis connection, so keep-alive works as without it.
//! Requests are told apart by a header the test sets on each ([`PROBE_HEADER`]), so that
//! many can be in flight at once.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The longest request head the relay parses; longer heads are recorded as unparsed.
const MAX_HEAD: usize = 1 << 20;

/// The request header whose value files a forwarded request line under [`Tap::forwarded`].
pub const PROBE_HEADER: &str = "x-probe";

/// Request lines by the value of their [`PROBE_HEADER`] ("" without one).
type Seen = Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>;

pub struct Tap {
    pub port: u16,
    /// `http://127.0.0.1:{port}`, the `upstream.url` to give Portcullis.
    pub url: String,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a relay on 127.0.0.1:0 to `127.0.0.1:{upstream_port}`, on the current runtime.
pub async fn start(upstream_port: u16) -> Tap {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tap");
    let port = listener.local_addr().expect("tap address").port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                if let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                    relay(client, upstream, record).await;
                }
            });
        }
    });
    Tap {
        port,
        url: format!("http://127.0.0.1:{port}"),
        seen,
        task,
    }
}

impl Tap {
    /// The request lines (without CRLF) forwarded with `PROBE_HEADER: probe`, oldest first,
    /// and forgets them. A request line is recorded before the request is passed on, so once
    /// its answer has arrived, a forwarded request is here.
    pub fn forwarded(&self, probe: &str) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(probe)
            .unwrap_or_default()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: TcpStream, record: Seen) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = async move {
        let mut heads = Heads::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Recorded before it is passed on, so a request line is in the record before the
            // upstream can answer it.
            let heads = heads.feed(&buf[..n]);
            if !heads.is_empty() {
                let mut record = record.lock().unwrap_or_else(|e| e.into_inner());
                for (probe, line) in heads {
                    record.entry(probe).or_default().push(line);
                }
            }
            if upstream_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    let responses = async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, responses);
}

/// Splits a client-to-server byte stream into request heads (Content-Length bodies skipped).
#[derive(Default)]
struct Heads {
    buf: Vec<u8>,
    body_left: usize,
    /// A head it could not frame (chunked body, oversized): the rest is not parsed.
    lost: bool,
}

impl Heads {
    /// The probe and request line (without CRLF) of each head that `bytes` completes.
    fn feed(&mut self, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut lines = Vec::new();
        if self.lost {
            return lines;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            if self.body_left > 0 {
                let skip = self.body_left.min(self.buf.len());
                self.buf.drain(..skip);
                self.body_left -= skip;
                if self.body_left > 0 {
                    return lines;
                }
            }
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.buf.len() > MAX_HEAD {
                    let note = b"(a request head the tap could not parse)".to_vec();
                    lines.push((String::new(), note));
                    self.lost = true;
                }
                return lines;
            };
            let head: Vec<u8> = self.buf.drain(..end + 4).collect();
            let mut head_lines = head.split(|&b| b == b'\n');
            let request_line = head_lines.next().unwrap_or_default();
            let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
            let mut probe = String::new();
            for line in head_lines {
                let line = String::from_utf8_lossy(line);
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    self.body_left = value.trim().parse().unwrap_or(0);
                } else if name == PROBE_HEADER {
                    probe = value.trim().to_owned();
                } else if name == "transfer-encoding" {
                    // Cannot frame what follows; this request still counts.
                    self.lost = true;
                }
            }
            lines.push((probe, request_line.to_vec()));
            if self.lost {
                return lines;
            }
        }
    }
}
