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
        }
    }

    pub fn cookie(mut self, set_cookie: String) -> Self {
        self.cookies.push(set_cookie);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub async fn send(self, session: &mut Session) -> Result<()> {
        // Our pages' policy: their own styles by hash, no scripts, no framing,
        // forms only to ourselves (see pages::content_security_policy).
        let mut csp = None;
        let mut cache = "no-store";
        let body = match self.body {
            Body::Page(page) => Body::Html(crate::pages::render_for(&page, session.req_header())),
            other => other,
        };
        let (content_type, body) = match body {
            Body::Empty => (None, Bytes::new()),
            Body::Html(s) => {
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
        let mut resp = ResponseHeader::build(self.status, Some(8 + self.cookies.len()))?;
        if let Some(ct) = content_type {
            resp.insert_header(http::header::CONTENT_TYPE, ct)?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        resp.insert_header(http::header::CACHE_CONTROL, cache)?;
        resp.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
        resp.insert_header(http::header::REFERRER_POLICY, "no-referrer")?;
        if let Some(csp) = csp {
            resp.insert_header(http::header::CONTENT_SECURITY_POLICY, csp)?;
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
