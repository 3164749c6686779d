//! Local responses (pages, redirects, JSON): always with Content-Length,
//! `Cache-Control: no-store` and the security headers, since pingora's
//! `response_filter` does not run for them.

use std::io::Write as _;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

pub enum Body {
    Empty,
    Html(String),
    Json(String),
}

/// The Content-Security-Policy of our pages: inline styles and data: images
/// only, no scripts, no framing, forms only to ourselves.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub struct Reply {
    status: u16,
    body: Body,
    location: Option<String>,
    cookies: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub fn html(status: u16, html: String) -> Self {
        Self::new(status, Body::Html(html))
    }

    pub fn json(status: u16, json: String) -> Self {
        Self::new(status, Body::Json(json))
    }

    pub fn empty(status: u16) -> Self {
        Self::new(status, Body::Empty)
    }

    pub fn redirect(location: String) -> Self {
        let mut r = Self::new(302, Body::Empty);
        r.location = Some(location);
        r
    }

    fn new(status: u16, body: Body) -> Self {
        Reply {
            status,
            body,
            location: None,
            cookies: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn cookie(mut self, set_cookie: String) -> Self {
        self.cookies.push(set_cookie);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Status, header fields and body, as every loop writes them.
    fn into_parts(self) -> (u16, Vec<(HeaderName, HeaderValue)>, Bytes) {
        let (content_type, body) = match self.body {
            Body::Empty => (None, Bytes::new()),
            Body::Html(s) => (Some("text/html; charset=utf-8"), Bytes::from(s)),
            Body::Json(s) => (Some("application/json"), Bytes::from(s)),
        };
        let mut h = Vec::with_capacity(8 + self.cookies.len() + self.headers.len());
        let st = HeaderValue::from_static;
        if let Some(ct) = content_type {
            h.push((http::header::CONTENT_TYPE, st(ct)));
        }
        h.push((http::header::CONTENT_LENGTH, HeaderValue::from(body.len())));
        h.push((http::header::CACHE_CONTROL, st("no-store")));
        h.push((http::header::X_CONTENT_TYPE_OPTIONS, st("nosniff")));
        h.push((http::header::REFERRER_POLICY, st("no-referrer")));
        if matches!(content_type, Some(ct) if ct.starts_with("text/html")) {
            h.push((http::header::CONTENT_SECURITY_POLICY, st(PAGE_CSP)));
            h.push((http::header::X_FRAME_OPTIONS, st("DENY")));
        }
        if let Some(loc) = self.location.and_then(|l| HeaderValue::try_from(l).ok()) {
            h.push((http::header::LOCATION, loc));
        }
        for c in self.cookies {
            if let Ok(v) = HeaderValue::try_from(c) {
                h.push((http::header::SET_COOKIE, v));
            }
        }
        h.extend(self.headers);
        (self.status, h, body)
    }

    /// The whole HTTP/1.1 response as bytes (the fast path's writer).
    /// `head_only`: the request was HEAD; `close`: announce that the
    /// connection closes after it.
    pub fn encode(self, head_only: bool, close: bool) -> Vec<u8> {
        let (status, fields, body) = self.into_parts();
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut out = Vec::with_capacity(256 + body.len());
        let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
        for (name, value) in &fields {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&body);
        }
        out
    }

    pub async fn send(self, session: &mut Session) -> Result<()> {
        let (status, fields, body) = self.into_parts();
        let mut resp = ResponseHeader::build(status, Some(fields.len()))?;
        for (name, value) in fields {
            resp.append_header(name, value)?;
        }
        let head = session.req_header().method == http::Method::HEAD;
        let no_body = head || body.is_empty();
        session
            .write_response_header(Box::new(resp), no_body)
            .await?;
        if !no_body {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}
