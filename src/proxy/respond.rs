//! Local responses (pages, redirects, JSON): always with Content-Length,
//! `Cache-Control: no-store` and the security headers, since pingora's
//! `response_filter` does not run for them.

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
    /// `Cache-Control`, default `no-store`.
    cache_control: &'static str,
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
            cache_control: "no-store",
        }
    }

    pub fn cookie(mut self, set_cookie: String) -> Self {
        self.cookies.push(set_cookie);
        self
    }

    /// A `Cache-Control` other than `no-store` (public, cacheable answers).
    pub fn cache_control(mut self, value: &'static str) -> Self {
        self.cache_control = value;
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub async fn send(self, session: &mut Session) -> Result<()> {
        let (content_type, body) = match self.body {
            Body::Empty => (None, Bytes::new()),
            Body::Html(s) => (Some("text/html; charset=utf-8"), Bytes::from(s)),
            Body::Json(s) => (Some("application/json"), Bytes::from(s)),
        };
        let mut resp = ResponseHeader::build(self.status, Some(8 + self.cookies.len()))?;
        if let Some(ct) = content_type {
            resp.insert_header(http::header::CONTENT_TYPE, ct)?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header(http::header::CACHE_CONTROL, self.cache_control)?;
        resp.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
        resp.insert_header(http::header::REFERRER_POLICY, "no-referrer")?;
        if matches!(content_type, Some(ct) if ct.starts_with("text/html")) {
            resp.insert_header(http::header::CONTENT_SECURITY_POLICY, PAGE_CSP)?;
            resp.insert_header(http::header::X_FRAME_OPTIONS, "DENY")?;
        }
        if let Some(loc) = self.location {
            resp.insert_header(http::header::LOCATION, loc)?;
        }
        for c in self.cookies {
            resp.append_header(http::header::SET_COOKIE, c)?;
        }
        for (name, value) in self.headers {
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
