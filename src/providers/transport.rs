//! Provider HTTP calls: bounded body reads, transport errors without URLs,
//! and the oauth2 crate's HTTP client built on both.
//!
//! Every byte a provider sends goes through [`read_capped`]: a misbehaving or
//! compromised provider cannot make one sign-in buffer more than the cap,
//! whatever its `Content-Length` says or however long its chunked body runs.
//! Every `reqwest::Error` that may reach a log line, a page or a
//! [`ProviderError`] goes through [`transport_error`], which drops its URL
//! (Graph URLs carry `appsecret_proof`, token URLs may carry anything).

use std::future::Future;
use std::pin::Pin;

use super::{error_chain, ProviderError};

/// Discovery documents and JWKS larger than this are refused.
pub const MAX_DOCUMENT: usize = 512 * 1024;
/// Token, UserInfo, Graph and X API responses larger than this are refused.
pub const MAX_RESPONSE: usize = 256 * 1024;

/// A transport failure (connect, TLS, timeout, a broken body) as text,
/// without the request's URL.
pub(crate) fn transport_error(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// A URL as it may appear in an error: scheme, host, port and path only
/// (no user info, query or fragment).
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

/// The whole body of `resp`, read chunk by chunk, refused as soon as it
/// passes `cap` bytes (or at once when `Content-Length` announces more).
/// `what` names the call in the error.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
    what: &str,
) -> Result<Vec<u8>, ProviderError> {
    let too_large = || ProviderError::Protocol {
        reason: format!("{what}: the answer is larger than {cap} bytes"),
    };
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    // Never trust the announced length for more than the cap.
    let mut body = Vec::with_capacity(announced.map_or(8 * 1024, |n| n as usize).min(cap));
    while let Some(chunk) = resp.chunk().await.map_err(|e| ProviderError::Unavailable {
        context: format!("{what}: {}", transport_error(e)),
    })? {
        if chunk.len() > cap - body.len() {
            // Dropping `resp` closes the connection: the rest is never read.
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The HTTP client handed to the oauth2 crate for token requests: the
/// shared `reqwest::Client` (no redirects, its timeouts), the answer read
/// through [`read_capped`] with [`MAX_RESPONSE`], errors as
/// [`ProviderError`]s without URLs. (The crate's own `reqwest::Client`
/// implementation reads the body whole.)
pub(crate) struct TokenClient<'a>(pub &'a reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for TokenClient<'_> {
    type Error = ProviderError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, ProviderError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let unavailable = |e: reqwest::Error| ProviderError::Unavailable {
                context: format!("token endpoint: {}", transport_error(e)),
            };
            let request = reqwest::Request::try_from(request).map_err(unavailable)?;
            let resp = self.0.execute(request).await.map_err(unavailable)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_capped(resp, MAX_RESPONSE, "token endpoint").await?;
            let mut answer = oauth2::HttpResponse::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// Serves one connection: reads the request head, writes `head`, then
    /// `chunks` chunks of 16 KiB in chunked encoding, or fewer when the
    /// client goes away. Returns the server's address and a handle yielding
    /// the bytes of body it managed to write.
    async fn serve(head: &'static str, chunks: usize) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return 0;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            if s.write_all(head.as_bytes()).await.is_err() {
                return 0;
            }
            let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
            let mut written = 0;
            for _ in 0..chunks {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return written;
                }
                written += 0x4000;
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
            written
        });
        (format!("http://{addr}/doc"), task)
    }

    const CHUNKED: &str =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

    async fn get(url: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let (url, server) = serve(CHUNKED, 4).await;
        let body = read_capped(get(&url).await, 4 * 0x4000, "doc").await;
        assert_eq!(body.map(|b| b.len()).ok(), Some(4 * 0x4000));
        assert_eq!(server.await.unwrap(), 4 * 0x4000);
    }

    /// 256 MiB, "endless" for a 64 KiB cap (and finite, should the cap fail).
    #[tokio::test]
    async fn an_endless_chunked_body_stops_at_the_cap() {
        const CHUNKS: usize = 16 * 1024;
        let (url, server) = serve(CHUNKED, CHUNKS).await;
        let err = match read_capped(get(&url).await, 64 * 1024, "doc").await {
            Ok(body) => panic!("read {} bytes past a 64 KiB cap", body.len()),
            Err(e) => e,
        };
        assert!(matches!(err, ProviderError::Protocol { .. }), "{err}");
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
        // The reader let go: the server's writes failed long before the end
        // (what it wrote beyond the cap sat in socket buffers, a few MiB).
        let written = server.await.unwrap();
        assert!(
            written < 64 * 1024 * 1024,
            "{written} of {}",
            CHUNKS * 0x4000
        );
    }

    #[tokio::test]
    async fn an_announced_length_over_the_cap_is_refused_unread() {
        let (url, _server) =
            serve("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", 0).await;
        let err = read_capped(get(&url).await, 1024, "doc").await.err();
        assert!(
            matches!(err, Some(ProviderError::Protocol { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn shown_urls_lose_query_fragment_and_user_info() {
        assert_eq!(
            shown_url("https://u:p@sso.example:8443/userinfo?access_token=T#f"),
            "https://sso.example:8443/userinfo"
        );
        assert_eq!(
            shown_url("https://accounts.google.com/.well-known/openid-configuration"),
            "https://accounts.google.com/.well-known/openid-configuration"
        );
        assert_eq!(shown_url("not a url?token=T"), "(an invalid URL)");
    }

    #[tokio::test]
    async fn transport_errors_carry_no_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/me?appsecret_proof=SECRET&x=1");
        let e = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .expect_err("nothing listens");
        assert!(error_chain(&e).contains("SECRET"), "reqwest names the URL");
        let text = transport_error(e);
        assert!(
            !text.contains("SECRET") && !text.contains(&port.to_string()),
            "{text}"
        );
    }
}
