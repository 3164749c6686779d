//! Local responses (pages, redirects, JSON): always with Content-Length,
//! `Cache-Control: no-store` and the security headers, since pingora's
//! `response_filter` does not run for them.

use std::io::Write as _;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;

pub enum Body {
    Empty,
    Html(String),
    /// One of our pages, rendered when sent: in the request's language, with
    /// the operator's look (see `pages::render_for`).
    Page(crate::pages::Page),
    Json(String),
    /// A static file we serve (the operator's logo): its type and bytes.
    File(&'static str, Bytes),
}

/// What [`Reply::html`] accepts: ready HTML or a page to render.
pub enum Html {
    Ready(String),
    Page(crate::pages::Page),
}

impl From<String> for Html {
    fn from(s: String) -> Self {
        Html::Ready(s)
    }
}

impl From<crate::pages::Page> for Html {
    fn from(p: crate::pages::Page) -> Self {
        Html::Page(p)
    }
}

/// The policy for a file we serve: nothing in it runs (an SVG logo's
/// scripts included), nothing loads.
const FILE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

pub struct Reply {
    status: u16,
    body: Body,
    location: Option<String>,
    cookies: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `Cache-Control`, default `no-store`.
    cache_control: Option<&'static str>,
}

impl Reply {
    pub fn html(status: u16, html: impl Into<Html>) -> Self {
        match html.into() {
            Html::Ready(s) => Self::new(status, Body::Html(s)),
            Html::Page(p) => Self::new(status, Body::Page(p)),
        }
    }

    /// A static file (`content_type`, `bytes`), cacheable for an hour.
    pub fn file(content_type: &'static str, bytes: Bytes) -> Self {
        Self::new(200, Body::File(content_type, bytes))
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
            cache_control: None,
        }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn cookie(mut self, set_cookie: String) -> Self {
        self.cookies.push(set_cookie);
        self
    }

    /// A `Cache-Control` other than `no-store` (public, cacheable answers).
    pub fn cache_control(mut self, value: &'static str) -> Self {
        self.cache_control = Some(value);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Status, header fields and body, as every loop writes them. Pages
    /// are rendered here, in the request's language.
    fn into_parts(self, req: &RequestHeader) -> (u16, Vec<(HeaderName, HeaderValue)>, Bytes) {
        // Our pages' policy: their own styles by hash, no scripts, no framing,
        // forms only to ourselves (see pages::content_security_policy).
        let mut csp = None;
        // The request's id (set on the request by the gate before anything
        // answers): on the answer, and on error pages as a reference.
        let request_id = req.headers.get(crate::request_id::HEADER).cloned();
        let mut cache = "no-store";
        let body = match self.body {
            Body::Page(page) => Body::Html(crate::pages::render_for(&page, req)),
            other => other,
        };
        let (content_type, body) = match body {
            Body::Empty => (None, Bytes::new()),
            Body::Html(s) => {
                let s = match (&request_id, self.status >= 400) {
                    (Some(id), true) => {
                        crate::pages::with_reference(s, id.to_str().unwrap_or_default())
                    }
                    _ => s,
                };
                csp = Some(format!(
                    "{}; frame-ancestors 'none'",
                    crate::pages::content_security_policy(&s)
                ));
                (Some("text/html; charset=utf-8"), Bytes::from(s))
            }
            Body::Json(s) => (Some("application/json"), Bytes::from(s)),
            Body::File(content_type, bytes) => {
                csp = Some(FILE_CSP.to_owned());
                cache = "public, max-age=3600";
                (Some(content_type), bytes)
            }
            Body::Page(_) => unreachable!("rendered above"),
        };
        let mut h = Vec::with_capacity(8 + self.cookies.len() + self.headers.len());
        let st = HeaderValue::from_static;
        if let Some(ct) = content_type {
            h.push((http::header::CONTENT_TYPE, st(ct)));
        }
        h.push((http::header::CONTENT_LENGTH, HeaderValue::from(body.len())));
        h.push((
            http::header::CACHE_CONTROL,
            st(self.cache_control.unwrap_or(cache)),
        ));
        h.push((http::header::X_CONTENT_TYPE_OPTIONS, st("nosniff")));
        h.push((http::header::REFERRER_POLICY, st("no-referrer")));
        if let Some(csp) = csp.and_then(|c| HeaderValue::try_from(c).ok()) {
            h.push((http::header::CONTENT_SECURITY_POLICY, csp));
            h.push((http::header::X_FRAME_OPTIONS, st("DENY")));
        }
        if let Some(id) = request_id {
            h.push((HeaderName::from_static(crate::request_id::HEADER), id));
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

    /// The whole HTTP/1.1 response to `req` as bytes (the fast path's
    /// writer); `None` when no request could be read (pages then in the
    /// default language). `close`: announce that the connection closes
    /// after it.
    pub fn encode(self, req: Option<&RequestHeader>, close: bool) -> Vec<u8> {
        let fallback;
        let req = match req {
            Some(r) => r,
            None => {
                fallback = RequestHeader::build_no_case(http::Method::GET, b"/", None).ok();
                match &fallback {
                    Some(r) => r,
                    None => return b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                }
            }
        };
        let head_only = req.method == http::Method::HEAD;
        let (status, fields, body) = self.into_parts(req);
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
        let (status, fields, body) = self.into_parts(session.req_header());
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
