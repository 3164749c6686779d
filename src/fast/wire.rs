//! HTTP/1 on the wire for the fast path: request and response heads
//! parsed with `httparse` (the parser pingora itself uses), message framing
//! (RFC 9112 §6), a strict chunked decoder, and the heads we write.
//!
//! Pure functions over byte slices: no I/O, so that every framing rule has
//! a unit test (below) and the fuzzers can reach it.
//!
//! The defences pingora-proxy gave the old path and where they live now:
//! - request framing (CL vs TE, duplicate/invalid CL, TE on HTTP/1.0, final
//!   coding chunked, nothing but chunked): [`request_framing`];
//! - malformed `Connection` rejected, hop-by-hop headers and those named in
//!   `Connection` removed both ways: [`connection_tokens`], [`is_hop_by_hop`]
//!   (applied in `conn.rs` on the request and in [`write_response_head`]);
//! - Host/authority consistency (exactly one `Host` on HTTP/1.1): [`parse_request`];
//! - header count and size limits: [`MAX_HEADERS`], [`MAX_HEAD`];
//! - response framing validated: [`response_framing`];
//! - a chunked body is decoded and re-encoded by us ([`Chunked`]), so the
//!   upstream sees our reading of its boundaries, never the client's bytes.
//!   (CONNECT, upgrade rules, connection reuse and early responses live in
//!   `conn.rs`.)

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Version};
use pingora::http::RequestHeader;

/// At most this many header fields in a head (requests and responses).
pub const MAX_HEADERS: usize = 128;
/// At most this many bytes in a head (request line and all fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// A chunk-size line (size and extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer section of a chunked message, at most.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a request head is refused; each maps to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Not HTTP/1 syntax (includes bare CR, obs-fold, spaces before `:`).
    Syntax,
    /// More than [`MAX_HEADERS`] fields or [`MAX_HEAD`] bytes: 431.
    TooLarge,
    /// HTTP/1.1 without exactly one `Host`, or several `Host` on 1.0.
    Host,
    /// Content-Length and Transfer-Encoding disagree or are malformed.
    Framing,
    /// A transfer coding other than a single final `chunked`: 501.
    Coding,
    /// A `Connection` header that is not a list of tokens.
    Connection,
    /// `Expect` other than `100-continue`: 417.
    Expectation,
    /// CONNECT: Portcullis is not a forward proxy: 405.
    Connect,
}

impl BadRequest {
    pub fn status(self) -> u16 {
        match self {
            BadRequest::TooLarge => 431,
            BadRequest::Coding => 501,
            BadRequest::Expectation => 417,
            BadRequest::Connect => 405,
            _ => 400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BadRequest::Syntax => "malformed request",
            BadRequest::TooLarge => "request header fields too large",
            BadRequest::Host => "a request needs exactly one Host header",
            BadRequest::Framing => "conflicting or invalid message framing",
            BadRequest::Coding => "unsupported transfer coding",
            BadRequest::Connection => "malformed Connection header",
            BadRequest::Expectation => "unsupported expectation",
            BadRequest::Connect => "CONNECT is not supported",
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Responses only: the body ends when the connection closes.
    UntilClose,
}

/// A parsed request head.
pub struct RequestHead {
    pub req: RequestHeader,
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Bytes of the head (the body, or the next request, starts there).
    pub len: usize,
    /// The value of the field [`parse_request_with`]'s `stamp` put on it.
    pub stamped: Option<HeaderValue>,
}

/// Room for a head's fields, left uninitialised (httparse fills what it
/// uses): initialising [`MAX_HEADERS`] empty fields cost more than parsing.
fn no_fields<'b>() -> [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses a request head at the start of `buf`. `Ok(None)`: more bytes
/// needed. The header values share `buf`'s memory (no copy).
pub fn parse_request(buf: &Bytes) -> Result<Option<RequestHead>, BadRequest> {
    parse_request_with(buf, |_| None)
}

/// [`parse_request`], and `stamp`'s field (the request's id) put on the
/// request in place of every copy the client sent. The fields go straight
/// into the request's map: pingora's `append_header` title-cases each name
/// and parses it again, for a case map this request does not keep.
pub fn parse_request_with(
    buf: &Bytes,
    stamp: impl FnOnce(&http::HeaderMap) -> Option<(HeaderName, HeaderValue)>,
) -> Result<Option<RequestHead>, BadRequest> {
    let mut fields = no_fields();
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(BadRequest::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(BadRequest::TooLarge),
        Err(_) => return Err(BadRequest::Syntax),
    };
    if len > MAX_HEAD {
        return Err(BadRequest::TooLarge);
    }
    let method = parsed.method.ok_or(BadRequest::Syntax)?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| BadRequest::Syntax)?;
    if method == Method::CONNECT {
        return Err(BadRequest::Connect);
    }
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(BadRequest::Syntax),
    };
    let target = parsed.path.ok_or(BadRequest::Syntax)?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.version = version;
    parts.headers.reserve(parsed.headers.len() + 4);

    let mut hosts = 0;
    let mut lengths: Option<u64> = None;
    let mut codings = Codings::default();
    let mut conn = ConnectionTokens::default();
    let mut expect_continue = false;
    let mut each_field = || {
        for field in parsed.headers.iter() {
            let name =
                HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| BadRequest::Syntax)?;
            if name == http::header::HOST {
                hosts += 1;
            } else if name == http::header::CONTENT_LENGTH {
                let n = content_length(field.value).ok_or(BadRequest::Framing)?;
                if lengths.is_some_and(|m| m != n) {
                    return Err(BadRequest::Framing);
                }
                lengths = Some(n);
            } else if name == http::header::TRANSFER_ENCODING {
                codings.add(field.value);
            } else if name == http::header::CONNECTION {
                conn.add(field.value).map_err(|_| BadRequest::Connection)?;
            } else if name == http::header::EXPECT {
                if field.value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(BadRequest::Expectation);
                }
            }
            let value = value_in(buf, field.value);
            parts
                .headers
                .try_append(name, value)
                .map_err(|_| BadRequest::TooLarge)?;
        }
        Ok(())
    };
    let fields_read = each_field();
    let stamped = match fields_read {
        Ok(()) => stamp(&parts.headers).map(|(name, value)| {
            parts.headers.insert(name, value.clone());
            value
        }),
        Err(_) => None,
    };
    // Without a case map, as `RequestHeader::build_no_case` makes it.
    let mut req = RequestHeader::from(parts);
    // A bad target is the first error (it was parsed first before).
    req.set_raw_path(target.as_bytes())
        .map_err(|_| BadRequest::Syntax)?;
    fields_read?;
    let one_host = if version == Version::HTTP_11 {
        hosts == 1
    } else {
        hosts <= 1
    };
    if !one_host {
        return Err(BadRequest::Host);
    }
    let framing = request_framing(version, lengths, &codings)?;
    let keep_alive = if version == Version::HTTP_11 {
        !conn.close
    } else {
        conn.keep_alive && !conn.close
    };
    Ok(Some(RequestHead {
        req,
        framing,
        keep_alive,
        expect_continue,
        len,
        stamped,
    }))
}

/// A header value as a slice of the buffer it was parsed from: no copy.
fn value_in(buf: &Bytes, value: &[u8]) -> HeaderValue {
    let slice = buf.slice_ref(value);
    // httparse allows only HTAB, SP, VCHAR and obs-text in values, which
    // is exactly what HeaderValue checks again here.
    HeaderValue::from_maybe_shared(slice).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// RFC 9112 §6.3 for requests. Anything ambiguous is refused: a request a
/// second parser could read another way is never forwarded.
fn request_framing(
    version: Version,
    length: Option<u64>,
    codings: &Codings,
) -> Result<Framing, BadRequest> {
    if codings.present {
        // No Transfer-Encoding on HTTP/1.0 (§6.1), never together with
        // Content-Length (a classic CL.TE desync), and only `chunked`.
        if version != Version::HTTP_11 || length.is_some() {
            return Err(BadRequest::Framing);
        }
        if !codings.only_chunked() {
            return Err(BadRequest::Coding);
        }
        return Ok(Framing::Chunked);
    }
    Ok(match length {
        None | Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
    })
}

/// A Content-Length value: digits only (no sign, no spaces), or a list of
/// identical such values (RFC 9110 §8.6), at most 2^63.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|m| m != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The transfer codings of a message, across all its Transfer-Encoding fields.
#[derive(Default)]
pub struct Codings {
    present: bool,
    chunked: u32,
    other: bool,
    last_is_chunked: bool,
}

impl Codings {
    pub fn add(&mut self, value: &[u8]) {
        self.present = true;
        for part in value.split(|&b| b == b',') {
            let part = trim_ows(part);
            if part.is_empty() {
                continue;
            }
            if part.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
                self.last_is_chunked = true;
            } else {
                self.other = true;
                self.last_is_chunked = false;
            }
        }
    }

    /// Exactly one coding, `chunked`.
    fn only_chunked(&self) -> bool {
        self.chunked == 1 && !self.other
    }
}

/// What a `Connection` header says: `close`, `keep-alive`, and whether it
/// names other headers (which then do not go on).
#[derive(Default)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Another header was named (removed in transit).
    pub names_others: bool,
}

impl ConnectionTokens {
    /// `Err` when the value is not a comma-separated list of tokens.
    pub fn add(&mut self, value: &[u8]) -> Result<(), NotTokens> {
        for token in connection_tokens(value) {
            let token = token.map_err(|()| NotTokens)?;
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.names_others = true;
            }
        }
        Ok(())
    }
}

/// A `Connection` value that is not a list of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotTokens;

/// The tokens of a `Connection` value (RFC 9110 §7.6.1); empty list
/// elements are skipped, anything that is not a token is an error.
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = Result<&[u8], ()>> {
    value.split(|&b| b == b',').filter_map(|part| {
        let part = trim_ows(part);
        if part.is_empty() {
            None
        } else if part.iter().all(|&b| is_tchar(b)) {
            Some(Ok(part))
        } else {
            Some(Err(()))
        }
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the long-standing
/// `Keep-Alive`/`Proxy-Connection` and HTTP/2's `HTTP2-Settings`): they
/// describe one connection and never go on to the next hop. The framing
/// headers are set by Portcullis for each hop.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 10] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
        b"content-length",
        b"expect",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A parsed response head.
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    pub framing: Framing,
    /// The upstream will close the connection after this response.
    pub close: bool,
    pub len: usize,
    /// The Content-Length it announced (kept on an answer to HEAD).
    pub announced: Option<u64>,
}

/// Why an upstream response is unusable: 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse;

/// Parses a response head at the start of `buf` (`Ok(None)`: more bytes
/// needed). `head_request`: the request was HEAD (no body follows).
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, BadResponse> {
    parse_response_into(buf, head_request, None)
}

/// [`parse_response`], and in the same pass (the head parsed once) the
/// start of the client's head in `client`: for a final answer, its status
/// line and the fields that go on — all but the hop-by-hop ones and those
/// its `Connection` names, case and order kept. [`finish_response_head`]
/// adds our framing and connection fields. Nothing is written for an
/// incomplete or a bad head.
pub fn parse_response_into(
    buf: &[u8],
    head_request: bool,
    client: Option<&mut Vec<u8>>,
) -> Result<Option<ResponseHead>, BadResponse> {
    let mut fields = no_fields();
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        _ => return Err(BadResponse),
    };
    let status = parsed.code.ok_or(BadResponse)?;
    if !(100..=999).contains(&status) {
        return Err(BadResponse);
    }
    let version = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut length: Option<u64> = None;
    let mut codings = Codings::default();
    let mut conn = ConnectionTokens::default();
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = content_length(field.value).ok_or(BadResponse)?;
            if length.is_some_and(|m| m != n) {
                return Err(BadResponse);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            codings.add(field.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            conn.add(field.value).map_err(|_| BadResponse)?;
        }
    }
    let framing = response_framing(status, head_request, length, &codings, version)?;
    let close = if version == Version::HTTP_11 {
        conn.close
    } else {
        !conn.keep_alive || conn.close
    } || framing == Framing::UntilClose;
    if let Some(out) = client {
        out.extend_from_slice(b"HTTP/1.1 ");
        crate::digits::push_u64(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(parsed.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        // Usually no `Connection` names another field: no list to build.
        let named = if conn.names_others {
            named_by_connection(parsed.headers.iter().map(|h| (h.name.as_bytes(), h.value)))
        } else {
            Vec::new()
        };
        for field in parsed.headers.iter() {
            let name = field.name.as_bytes();
            if is_hop_by_hop(name) || named.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(field.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(Some(ResponseHead {
        status,
        version,
        framing,
        close,
        len,
        announced: length,
    }))
}

/// RFC 9112 §6.3 for responses.
fn response_framing(
    status: u16,
    head_request: bool,
    length: Option<u64>,
    codings: &Codings,
    version: Version,
) -> Result<Framing, BadResponse> {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    if codings.present && version == Version::HTTP_11 {
        // Transfer-Encoding overrides Content-Length; a final coding other
        // than chunked means "until close".
        return Ok(if codings.last_is_chunked && codings.chunked == 1 {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    Ok(match length {
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// Writes the response head for the client from the upstream's head
/// `upstream` (parsed before as `head`): see [`parse_response_into`] and
/// [`finish_response_head`]. For answers read apart from their parse (the
/// WebSocket handshake's); the exchange path writes while it parses.
pub fn write_response_head(
    out: &mut Vec<u8>,
    upstream: &[u8],
    head: &ResponseHead,
    body: Framing,
    close: bool,
    keep_alive_10: bool,
    set_cookies: &[String],
) {
    // Parsed successfully before: cannot fail now (read as an answer to
    // HEAD: the framing is `head`'s, not this pass's).
    let _ = parse_response_into(upstream, true, Some(out));
    finish_response_head(out, head, body, close, keep_alive_10, set_cookies);
}

/// Ends a client head begun by [`parse_response_into`]: our framing field,
/// cookies of ours that ride on the answer (a re-sealed access token), our
/// connection field, the blank line. `body`: how the body will be sent to
/// the client.
pub fn finish_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    body: Framing,
    close: bool,
    keep_alive_10: bool,
    set_cookies: &[String],
) {
    match body {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            crate::digits::push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None
            if head.framing == Framing::None
                && head.status != 204
                && head.status != 304
                && !(100..200).contains(&head.status) =>
        {
            // A HEAD answer keeps the length the upstream announced.
            if let Some(n) = head.announced {
                out.extend_from_slice(b"content-length: ");
                crate::digits::push_u64(out, n);
                out.extend_from_slice(b"\r\n");
            }
        }
        Framing::None | Framing::UntilClose => {}
    }
    for c in set_cookies {
        out.extend_from_slice(b"set-cookie: ");
        out.extend_from_slice(c.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Header names listed in the `Connection` fields of a head (lower-cased
/// comparisons are done by the caller). Malformed lists were refused
/// before; here they name nothing.
pub fn named_by_connection<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"connection") {
            for token in connection_tokens(value).flatten() {
                if !token.eq_ignore_ascii_case(b"close")
                    && !token.eq_ignore_ascii_case(b"keep-alive")
                {
                    out.push(token);
                }
            }
        }
    }
    out
}

/// Removes hop-by-hop headers and every header the client's `Connection`
/// names (RFC 9110 §7.6.1): they were for this hop only. `Host` and the
/// identity are never removable this way (identity headers are set after).
/// The body framing headers go too: `write_request_head` writes our own.
pub fn strip_hop_by_hop(req: &mut RequestHeader) {
    // Usually there is none: one pass over the names instead of a lookup
    // per hop-by-hop name. (`Connection` is one of them, so no header is
    // named by it either.)
    if !req
        .headers
        .keys()
        .any(|name| is_hop_by_hop(name.as_str().as_bytes()))
    {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in req.headers.get_all(http::header::CONNECTION) {
        for token in connection_tokens(value.as_bytes()).flatten() {
            if let Ok(name) = HeaderName::from_bytes(token) {
                if name != http::header::HOST {
                    named.push(name);
                }
            }
        }
    }
    for name in named {
        req.remove_header(&name);
    }
    for name in [
        http::header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        http::header::TE,
        http::header::TRAILER,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        HeaderName::from_static("http2-settings"),
        http::header::CONTENT_LENGTH,
        http::header::EXPECT,
    ] {
        req.remove_header(&name);
    }
}

/// Writes the request head for the upstream from the judged request:
/// `METHOD target HTTP/1.1`, its fields (lower-case names), then our
/// framing field.
pub fn write_request_head(out: &mut Vec<u8>, req: &RequestHeader, target: &[u8], body: Framing) {
    write_request_head_with(out, req, target, &[], body);
}

/// [`write_request_head`] with `extra`, header lines of ours (CRLF-ended,
/// names absent from `req`), after the request's fields.
pub fn write_request_head_with(
    out: &mut Vec<u8>,
    req: &RequestHeader,
    target: &[u8],
    extra: &[u8],
    body: Framing,
) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    match body {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            crate::digits::push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A method that usually carries a body says it carries none.
        Framing::None | Framing::UntilClose => {
            if matches!(req.method, Method::POST | Method::PUT | Method::PATCH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A strict incremental decoder of the chunked coding (RFC 9112 §7.1):
/// hex sizes without sign or overflow, CRLF line ends only, extensions
/// skipped, trailers read and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunked {
    /// Reading a chunk-size line; `line` bytes of it so far. `ext`: 0 in
    /// the size, 1 in white space after it (only `;` may follow), 2 in the
    /// extensions.
    Size {
        size: u64,
        digits: u8,
        ext: u8,
        line: usize,
    },
    /// Saw CR after the size line.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section: `line` bytes of the current field, `total` so far.
    Trailer {
        line: usize,
        total: usize,
        cr: bool,
    },
    Done,
}

/// A chunked body that cannot be read safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk;

impl Default for Chunked {
    fn default() -> Self {
        Chunked::Size {
            size: 0,
            digits: 0,
            ext: 0,
            line: 0,
        }
    }
}

impl Chunked {
    pub fn is_done(&self) -> bool {
        *self == Chunked::Done
    }

    /// Consumes bytes from `input`, returning how many were consumed and the
    /// data range (within `input`) found, if any. Call again with the rest
    /// until everything is consumed or the body is done.
    pub fn step(
        &mut self,
        input: &[u8],
    ) -> Result<(usize, Option<std::ops::Range<usize>>), BadChunk> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self {
                Chunked::Size {
                    size,
                    digits,
                    ext,
                    line,
                } => {
                    *line += 1;
                    if *line > MAX_CHUNK_LINE {
                        return Err(BadChunk);
                    }
                    if b == b'\r' {
                        if *digits == 0 {
                            return Err(BadChunk);
                        }
                        *self = Chunked::SizeLf(*size);
                    } else if *ext == 2 {
                        // Extension bytes: visible ASCII, space, tab, obs-text.
                        if b < 0x20 && b != b'\t' || b == 0x7f {
                            return Err(BadChunk);
                        }
                    } else if b == b';' && *digits > 0 {
                        *ext = 2;
                    } else if (b == b' ' || b == b'\t') && *digits > 0 {
                        *ext = 1;
                    } else if let Some(d) = hex(b).filter(|_| *ext == 0) {
                        if *digits == 15 {
                            return Err(BadChunk);
                        }
                        *digits += 1;
                        *size = (*size << 4) | u64::from(d);
                    } else {
                        return Err(BadChunk);
                    }
                    i += 1;
                }
                Chunked::SizeLf(size) => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    i += 1;
                    *self = if *size == 0 {
                        Chunked::Trailer {
                            line: 0,
                            total: 0,
                            cr: false,
                        }
                    } else {
                        Chunked::Data(*size)
                    };
                }
                Chunked::Data(left) => {
                    let n = (*left).min((input.len() - i) as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        *self = Chunked::DataCr;
                    }
                    return Ok((i + n, Some(i..i + n)));
                }
                Chunked::DataCr => {
                    if b != b'\r' {
                        return Err(BadChunk);
                    }
                    i += 1;
                    *self = Chunked::DataLf;
                }
                Chunked::DataLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    i += 1;
                    *self = Chunked::default();
                }
                Chunked::Trailer { line, total, cr } => {
                    i += 1;
                    *total += 1;
                    if *total > MAX_TRAILERS {
                        return Err(BadChunk);
                    }
                    if *cr {
                        if b != b'\n' {
                            return Err(BadChunk);
                        }
                        if *line == 0 {
                            *self = Chunked::Done;
                            return Ok((i, None));
                        }
                        *line = 0;
                        *cr = false;
                    } else if b == b'\r' {
                        *cr = true;
                    } else if b == b'\n' {
                        return Err(BadChunk);
                    } else {
                        *line += 1;
                    }
                }
                Chunked::Done => return Ok((i, None)),
            }
        }
        Ok((i, None))
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends one chunk of the chunked coding (Portcullis's own encoding).
pub fn put_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::fmt::Write as _;
    let mut size = String::with_capacity(16);
    let _ = write!(size, "{:x}", data.len());
    out.put_slice(size.as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// The last chunk, no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Option<RequestHead>, BadRequest> {
        parse_request(&Bytes::copy_from_slice(raw.as_bytes()))
    }

    fn framing(raw: &str) -> Result<Framing, BadRequest> {
        req(raw).map(|h| h.expect("complete").framing)
    }

    #[test]
    fn hop_by_hop_headers_never_go_on() {
        let hop = [
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "HTTP2-Settings",
            "Content-Length",
            "Expect",
        ];
        // Each alone (the quick check must see every one of them).
        for name in hop {
            let mut r = RequestHeader::build_no_case("GET", b"/", None).unwrap();
            r.append_header("Host", "a").unwrap();
            r.append_header(name, "x").unwrap();
            strip_hop_by_hop(&mut r);
            assert!(r.headers.get(name).is_none(), "{name}");
            assert_eq!(r.headers.len(), 1, "{name}");
        }
        // Named by Connection; Host never goes.
        let mut r = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        r.append_header("Host", "a").unwrap();
        r.append_header("Connection", "X-Secret, host").unwrap();
        r.append_header("X-Secret", "1").unwrap();
        r.append_header("Accept", "*/*").unwrap();
        strip_hop_by_hop(&mut r);
        let names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "accept"]);
        // Nothing to strip: nothing changes.
        let mut r = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        r.append_header("Host", "a").unwrap();
        r.append_header("X-Te", "1").unwrap();
        strip_hop_by_hop(&mut r);
        assert_eq!(r.headers.len(), 2);
    }

    #[test]
    fn request_framing_rules() {
        let ok = |f: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{f}\r\n");
        assert_eq!(framing(&ok("")), Ok(Framing::None));
        assert_eq!(
            framing(&ok("Content-Length: 5\r\n")),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(&ok("Content-Length: 5, 5\r\n")),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(&ok("Content-Length: 5\r\nContent-Length: 5\r\n")),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(&ok("Transfer-Encoding: chunked\r\n")),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(&ok("Transfer-Encoding: CHUNKED\r\n")),
            Ok(Framing::Chunked)
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 0x5\r\n",
            "Content-Length: 5 5\r\n",
            "Content-Length:\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(framing(&ok(bad)), Err(BadRequest::Framing), "{bad:?}");
        }
        for bad in [
            "Transfer-Encoding: xchunked\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding: \r\n",
        ] {
            assert_eq!(framing(&ok(bad)), Err(BadRequest::Coding), "{bad:?}");
        }
        // Transfer-Encoding on HTTP/1.0.
        assert_eq!(
            framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(BadRequest::Framing)
        );
        // Syntax the parser refuses: space before the colon, obs-fold.
        assert!(matches!(
            req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
            Err(BadRequest::Syntax)
        ));
        assert!(matches!(
            req("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
            Err(BadRequest::Syntax)
        ));
    }

    #[test]
    fn a_stamped_field_replaces_every_client_copy() {
        let raw = Bytes::from_static(
            b"GET /a HTTP/1.1\r\nX-Request-Id: forged\r\nHost: h\r\nx-request-id: again\r\nAccept: */*\r\n\r\n",
        );
        let mut seen = Vec::new();
        let head = parse_request_with(&raw, |fields| {
            seen = fields
                .get_all("x-request-id")
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect();
            Some((
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("ours"),
            ))
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen, [b"forged".to_vec(), b"again".to_vec()]);
        assert_eq!(head.stamped.unwrap(), "ours");
        let ids: Vec<_> = head.req.headers.get_all("x-request-id").iter().collect();
        assert_eq!(ids, ["ours"]);
        assert_eq!(head.req.headers.len(), 3);
        assert!(!head.req.has_case());
    }

    #[test]
    fn host_connection_expect_connect() {
        assert!(matches!(
            req("GET / HTTP/1.1\r\n\r\n"),
            Err(BadRequest::Host)
        ));
        assert!(matches!(
            req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(BadRequest::Host)
        ));
        assert!(req("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
        assert!(matches!(
            req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close x\r\n\r\n"),
            Err(BadRequest::Connection)
        ));
        assert!(matches!(
            req("GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n"),
            Err(BadRequest::Expectation)
        ));
        assert!(matches!(
            req("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            Err(BadRequest::Connect)
        ));
        let h = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        assert!(req("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    #[test]
    fn limits() {
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert!(matches!(
            req(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
            Err(BadRequest::TooLarge)
        ));
        let big = "a".repeat(MAX_HEAD);
        assert!(matches!(
            req(&format!("GET / HTTP/1.1\r\nHost: a\r\nX: {big}")),
            Err(BadRequest::TooLarge)
        ));
    }

    fn decode(input: &[u8]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() && !c.is_done() {
            let (n, data) = c.step(&input[at..])?;
            if let Some(r) = data {
                out.extend_from_slice(&input[at..][r]);
            }
            at += n;
        }
        Ok((out, at, c.is_done()))
    }

    #[test]
    fn chunked_decoding() {
        assert_eq!(
            decode(b"5\r\nhello\r\n0\r\n\r\nNEXT"),
            Ok((b"hello".to_vec(), 15, true))
        );
        assert_eq!(
            decode(b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
            Ok((b"hello".to_vec(), 29, true))
        );
        // Byte by byte gives the same.
        let body = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        let mut c = Chunked::default();
        let mut out = Vec::new();
        for (i, _) in body.iter().enumerate() {
            let (n, data) = c.step(&body[i..=i]).unwrap();
            assert_eq!(n, 1);
            if let Some(r) = data {
                out.extend_from_slice(&body[i..=i][r]);
            }
        }
        assert!(c.is_done());
        assert_eq!(out, b"abc0123456789");
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"ffffffffffffffff\r\n",
            b"\r\n",
            b";\r\n",
            b"5;\x00\r\n",
            b"5 5\r\nhello\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            assert_eq!(
                decode(bad),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn response_framing_rules() {
        let p = |raw: &str, head: bool| parse_response(raw.as_bytes(), head).unwrap().unwrap();
        assert_eq!(
            p("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).framing,
            Framing::Length(3)
        );
        assert_eq!(
            p("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).framing,
            Framing::None
        );
        assert_eq!(p("HTTP/1.1 204 No\r\n\r\n", false).framing, Framing::None);
        assert_eq!(
            p("HTTP/1.1 304 NM\r\nContent-Length: 9\r\n\r\n", false).framing,
            Framing::None
        );
        assert_eq!(
            p(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                false
            )
            .framing,
            Framing::Chunked
        );
        let r = p("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(r.framing, Framing::UntilClose);
        assert!(r.close);
        assert!(p("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).close);
        assert!(!p("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", false).close);
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    }

    #[test]
    fn response_head_loses_hop_by_hop_and_named_headers() {
        let up = b"HTTP/1.1 200 OK\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nX-Kept: yes\r\n\r\n";
        let head = parse_response(up, false).unwrap().unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, up, &head, Framing::Length(2), false, false, &[]);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nX-Kept: yes\r\ncontent-length: 2\r\n\r\n"
        );
    }

    #[test]
    fn response_head_written_while_parsed() {
        // The exchange writes the client's head in the parsing pass; the
        // tunnel parses first and writes later: same bytes, and a field
        // named by a `Connection` that comes after it still goes.
        let up = b"HTTP/1.1 404 Not Here\r\nX-Private: 1\r\nContent-Length: 0\r\nSet-Cookie: a=b\r\nConnection: x-private\r\n\r\nnext";
        let mut during = Vec::new();
        let head = parse_response_into(up, false, Some(&mut during))
            .unwrap()
            .unwrap();
        assert_eq!(head.len, up.len() - 4);
        finish_response_head(
            &mut during,
            &head,
            Framing::None,
            true,
            false,
            &["s=1".into()],
        );
        let mut after = Vec::new();
        write_response_head(
            &mut after,
            up,
            &head,
            Framing::None,
            true,
            false,
            &["s=1".into()],
        );
        assert_eq!(during, after);
        assert_eq!(
            String::from_utf8(during).unwrap(),
            "HTTP/1.1 404 Not Here\r\nSet-Cookie: a=b\r\ncontent-length: 0\r\nset-cookie: s=1\r\nconnection: close\r\n\r\n"
        );
        // An answer to HEAD keeps the length the upstream announced.
        let up = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        let mut out = Vec::new();
        let head = parse_response_into(up, true, Some(&mut out))
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::None);
        finish_response_head(&mut out, &head, Framing::None, false, false, &[]);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        // Incomplete: nothing written.
        let mut out = Vec::new();
        assert!(
            parse_response_into(b"HTTP/1.1 200 OK\r\nX: y\r\n", false, Some(&mut out))
                .unwrap()
                .is_none()
        );
        assert!(out.is_empty());
    }
}
