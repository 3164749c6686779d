//! A ready-made world for a test: mock Google, the echo upstream and
//! Portcullis between them, plus a browser that signs in.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::harness::{self, Browser, Portcullis};
use crate::support::mock_google::{self, MockGoogle, TestUser};
use crate::support::upstream::{self, Upstream};

pub const CLIENT_ID: &str = "test-client.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "test-google-secret";

pub struct World {
    pub google: MockGoogle,
    pub upstream: Upstream,
    pub proxy: Portcullis,
    pub secret: String,
}

impl World {
    /// Google auto-approves Alice; `extra` is appended to the config.
    pub async fn start(extra: &str) -> World {
        Self::start_prepared(extra, |_| {}).await
    }

    /// As `start`, with the mock prepared before Portcullis starts.
    pub async fn start_prepared(extra: &str, prepare: impl FnOnce(&MockGoogle)) -> World {
        let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
        google.set_auto_approve(Some(TestUser::alice()));
        prepare(&google);
        let upstream = upstream::start().await;
        let secret = harness::session_secret();
        let proxy = harness::start(|port| {
            harness::google_config(port, &upstream.base_url, &google, &secret, extra)
        })
        .await;
        World {
            google,
            upstream,
            proxy,
            secret,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.proxy.url(path)
    }

    /// A new browser, signed in at `path`; returns it with the upstream's echo.
    pub async fn signed_in(&self, path: &str) -> (Browser, Value) {
        let mut b = Browser::new();
        let resp = self.sign_in(&mut b, path).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "hops: {:#?}\nlogs:\n{}",
            b.hops(),
            self.proxy.logs()
        );
        let echo = json(resp).await;
        (b, echo)
    }

    /// Starts a login for `provider` and returns the authorize URL and the
    /// browser holding the login-state cookie.
    pub async fn start_login(&self, b: &mut Browser, rd: &str) -> String {
        let resp = b
            .get(&self.url(&format!("/oauth2/start/google?rd={}", urlencode(rd))))
            .await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        location(&resp)
    }

    /// Goes to the provider with `authorize_url` and returns the callback URL it sends back.
    pub async fn provider_answer(&self, b: &mut Browser, authorize_url: &str) -> String {
        let resp = b.get(authorize_url).await;
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "provider did not redirect"
        );
        location(&resp)
    }
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()))
        .to_owned()
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn json(resp: reqwest::Response) -> Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The single value of header `name` the upstream received, if any.
pub fn upstream_header(echo: &Value, name: &str) -> Option<String> {
    let all = upstream::header(echo, name);
    assert!(
        all.len() <= 1,
        "{name} arrived {} times: {all:?}",
        all.len()
    );
    all.first().map(|s| (*s).to_owned())
}

/// The `href` of the picker button for `provider` (HTML-unescaped).
pub fn picker_link(html: &str, provider: &str) -> String {
    let needle = format!("href=\"/oauth2/start/{provider}?");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no button for {provider} in:\n{html}"))
        + "href=\"".len();
    let end = start + html[start..].find('"').expect("closing quote");
    html[start..end].replace("&amp;", "&")
}

impl World {
    /// The whole sign-in as a person does it: protected path -> picker ->
    /// button -> provider -> callback -> back at `path`.
    pub async fn sign_in(&self, b: &mut Browser, path: &str) -> reqwest::Response {
        let picker = b.follow(&self.url(path), 3).await;
        assert_eq!(picker.status(), StatusCode::OK);
        assert!(
            picker.url().path() == "/oauth2/sign_in",
            "expected the picker, got {}",
            picker.url()
        );
        let html = picker.text().await.expect("picker body");
        let link = picker_link(&html, "google");
        b.follow(&self.url(&link), 6).await
    }
}

/// Sends `METHOD raw_path` exactly as given (no URL normalisation, unlike
/// reqwest) and returns the status code.
pub async fn raw_status(
    base_url: &str,
    method: &str,
    raw_path: &str,
    headers: &[(&str, &str)],
) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let authority = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    let mut req =
        format!("{method} {raw_path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}
