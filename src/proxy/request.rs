//! The canonical view of a request-target: the one reading of it on which
//! every decision is made (own `/oauth2/` routes, `skip_auth`, `api_paths`,
//! the access log), and exactly the target the upstream receives.
//!
//! The only code that reads the raw bytes of a target. SPEC.md, "The
//! request the gate judges is the request the upstream gets"; what is
//! refused and what is rewritten:
//!
//! | in the target | here |
//! |---|---|
//! | origin-form `/path?query` | accepted |
//! | absolute-form `http://host/p` with `host` = the `Host` header | forwarded as origin-form `/p` |
//! | absolute-form for another authority, `x:/admin`, `admin`, CONNECT's `host:port` | 400 |
//! | `*` | accepted with `OPTIONS` only, 400 otherwise |
//! | `.` or `..` segments, plain or percent-encoded in any case | 400 |
//! | `;` in the path (path parameters, `..;`, `;jsessionid=`) | 400 |
//! | `\`, raw or `%5C` | 400 |
//! | `%2F` `%25` `%3B` `%3F` `%23`: a delimiter hidden behind an escape | 400 |
//! | `%` without two hex digits; control characters, raw or encoded; raw bytes outside ASCII | 400 |
//! | a path that is not UTF-8 once decoded (overlong forms such as `%C0%AE`) | 400 |
//! | empty segments `//` | merged: `/a//b` is forwarded as `/a/b` |
//! | percent-encoded unreserved characters (`%41`, `%2E` inside a name, `%7E`) | decoded: `/%61dmin` is forwarded as `/admin` |
//! | other escapes (`%20`, `%C3%A9`) | kept, hex digits upper-cased |
//! | a target longer than [`MAX_TARGET`] | 414 |
//!
//! Rules (`skip_auth`, `api_paths`, routes) match the canonical path
//! percent-decoded ([`Target::decoded`]). Decoding cannot create structure:
//! every escape that would decode to `/`, `\`, `;`, `?`, `#`, `%` or a
//! control character is refused above. The query is forwarded as received
//! and never judged.

use std::borrow::Cow;

use http::Method;

/// The longest request-target accepted (bytes, path and query together).
pub const MAX_TARGET: usize = 16 * 1024;

/// Why a target is refused. All are answered 400, except
/// [`Refusal::TooLong`] (414).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not origin-form, nor absolute-form for this host, nor `OPTIONS *`.
    TargetForm,
    /// Absolute-form naming an authority other than the `Host` header.
    ForeignAuthority,
    /// A `.` or `..` segment, plain or percent-encoded.
    DotSegment,
    /// A `;` in the path.
    PathParameter,
    /// A backslash, raw or percent-encoded.
    Backslash,
    /// `%2F`, `%25`, `%3B`, `%3F` or `%23`.
    EncodedDelimiter,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A control character (raw or encoded), a space, or a raw non-ASCII byte.
    BadByte,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// Longer than [`MAX_TARGET`].
    TooLong,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Refusal::TooLong => 414,
            Refusal::TargetForm
            | Refusal::ForeignAuthority
            | Refusal::DotSegment
            | Refusal::PathParameter
            | Refusal::Backslash
            | Refusal::EncodedDelimiter
            | Refusal::BadEscape
            | Refusal::BadByte
            | Refusal::NotUtf8 => 400,
        }
    }

    /// A short reason, for the access log and the error page.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TargetForm => "request target is not a path",
            Refusal::ForeignAuthority => "request target names another host",
            Refusal::DotSegment => "path has a dot segment",
            Refusal::PathParameter => "path has a ';' parameter",
            Refusal::Backslash => "path has a backslash",
            Refusal::EncodedDelimiter => "path has an encoded delimiter",
            Refusal::BadEscape => "path has a malformed escape",
            Refusal::BadByte => "target has a forbidden character",
            Refusal::NotUtf8 => "path is not UTF-8",
            Refusal::TooLong => "request target is too long",
        }
    }
}

/// A request-target in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The target as the upstream receives it: canonical path, then
    /// `?query` if the client sent one.
    wire: Cow<'a, str>,
    /// Where the path ends in `wire`.
    path_end: usize,
    /// The path percent-decoded.
    decoded: Cow<'a, str>,
}

impl<'a> Target<'a> {
    /// The target for the upstream's request line.
    pub fn wire(&self) -> &str {
        &self.wire
    }

    /// The canonical path (still percent-encoded where it must be).
    pub fn path(&self) -> &str {
        &self.wire[..self.path_end]
    }

    /// The query, without its `?`.
    pub fn query(&self) -> Option<&str> {
        self.wire.get(self.path_end + 1..)
    }

    /// The canonical path percent-decoded: what rules match.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// Is this `OPTIONS *`?
    pub fn is_asterisk(&self) -> bool {
        &*self.wire == "*"
    }

    /// The wire form if it differs from what the client sent (`None` when
    /// the target is forwarded byte for byte).
    pub fn rewritten(&self) -> Option<&str> {
        match &self.wire {
            Cow::Borrowed(_) => None,
            Cow::Owned(s) => Some(s),
        }
    }
}

/// The canonical view of `raw` (the request-target as received), for a
/// request with this method and `Host` header.
pub fn canonicalize<'a>(
    method: &Method,
    raw: &'a [u8],
    host: Option<&[u8]>,
) -> Result<Target<'a>, Refusal> {
    if raw.len() > MAX_TARGET {
        return Err(Refusal::TooLong);
    }
    match raw.first() {
        Some(b'/') => origin_form(raw, false),
        Some(b'*') if raw.len() == 1 => {
            if method == Method::OPTIONS {
                Ok(Target {
                    wire: Cow::Borrowed("*"),
                    path_end: 1,
                    decoded: Cow::Borrowed("*"),
                })
            } else {
                Err(Refusal::TargetForm)
            }
        }
        _ => {
            let rest = strip_http_scheme(raw).ok_or(Refusal::TargetForm)?;
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            if authority.is_empty() || authority.contains(&b'@') {
                return Err(Refusal::TargetForm);
            }
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
                return Err(Refusal::ForeignAuthority);
            }
            match path.first() {
                Some(b'/') => origin_form(path, true),
                // `http://host` and `http://host?q`: the path is `/`.
                _ => {
                    let mut with_root = Vec::with_capacity(path.len() + 1);
                    with_root.push(b'/');
                    with_root.extend_from_slice(path);
                    origin_form(&with_root, true).map(into_owned)
                }
            }
        }
    }
}

fn into_owned(t: Target<'_>) -> Target<'static> {
    Target {
        wire: Cow::Owned(t.wire.into_owned()),
        path_end: t.path_end,
        decoded: Cow::Owned(t.decoded.into_owned()),
    }
}

/// `rest` after `http://` or `https://` (scheme in any case).
fn strip_http_scheme(raw: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if raw.len() >= scheme.len() && raw[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&raw[scheme.len()..]);
        }
    }
    None
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// A raw byte allowed in a path: visible ASCII, less what is refused or
/// handled on its own (`%`, `\`, `;`, `#`, `?`).
fn path_byte_ok(b: u8) -> Result<(), Refusal> {
    match b {
        b'\\' => Err(Refusal::Backslash),
        b';' => Err(Refusal::PathParameter),
        b'#' => Err(Refusal::BadByte),
        0x21..=0x7e => Ok(()),
        _ => Err(Refusal::BadByte),
    }
}

/// An origin-form target (`raw` starts with `/`). `force_owned`: the
/// result differs from the client's bytes anyway (absolute-form).
fn origin_form(raw: &[u8], force_owned: bool) -> Result<Target<'_>, Refusal> {
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(q) => (&raw[..q], Some(&raw[q + 1..])),
        None => (raw, None),
    };
    if let Some(query) = query {
        // Forwarded as received; only bytes no client may send are refused.
        if query
            .iter()
            .any(|&b| !(0x21..=0x7e).contains(&b) || b == b'#')
        {
            return Err(Refusal::BadByte);
        }
    }
    // One pass to validate and to see whether anything must change.
    let mut needs_rewrite = force_owned;
    let mut has_escape = false;
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            has_escape = true;
            let (Some(hi), Some(lo)) = (
                path.get(i + 1).copied().and_then(hex_value),
                path.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(Refusal::BadEscape);
            };
            let v = hi << 4 | lo;
            match v {
                b'/' | b'%' | b';' | b'?' | b'#' => return Err(Refusal::EncodedDelimiter),
                b'\\' => return Err(Refusal::Backslash),
                0..=0x1f | 0x7f => return Err(Refusal::BadByte),
                _ => {}
            }
            if is_unreserved(v)
                || path[i + 1].is_ascii_lowercase()
                || path[i + 2].is_ascii_lowercase()
            {
                needs_rewrite = true;
            }
            i += 3;
        } else {
            path_byte_ok(b)?;
            if b == b'/' && path.get(i + 1) == Some(&b'/') {
                needs_rewrite = true;
            }
            i += 1;
        }
    }

    if !needs_rewrite {
        // The common case: forwarded byte for byte.
        check_segments(path)?;
        // Visible ASCII only, checked above.
        let wire = std::str::from_utf8(raw).map_err(|_| Refusal::BadByte)?;
        let path_str = &wire[..path.len()];
        let decoded = if has_escape {
            Cow::Owned(decode(path_str.as_bytes())?)
        } else {
            Cow::Borrowed(path_str)
        };
        return Ok(Target {
            wire: Cow::Borrowed(wire),
            path_end: path.len(),
            decoded,
        });
    }

    // Rewrite: unreserved escapes decoded, other escapes upper-cased,
    // empty segments merged.
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let v = hex_value(path[i + 1]).unwrap_or(0) << 4 | hex_value(path[i + 2]).unwrap_or(0);
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(HEX_UPPER[(v >> 4) as usize] as char);
                out.push(HEX_UPPER[(v & 0xf) as usize] as char);
            }
            i += 3;
        } else {
            if !(b == b'/' && out.ends_with('/')) {
                out.push(b as char);
            }
            i += 1;
        }
    }
    check_segments(out.as_bytes())?;
    let path_end = out.len();
    let decoded = decode(out.as_bytes())?;
    if let Some(query) = query {
        out.push('?');
        // Visible ASCII, checked above.
        out.push_str(std::str::from_utf8(query).map_err(|_| Refusal::BadByte)?);
    }
    Ok(Target {
        wire: Cow::Owned(out),
        path_end,
        decoded: Cow::Owned(decoded),
    })
}

/// Refuses `.` and `..` segments (escapes of unreserved characters are
/// already decoded when this runs on a rewritten path; a path forwarded
/// byte for byte has no escape of `.` left unflagged).
fn check_segments(path: &[u8]) -> Result<(), Refusal> {
    for seg in path.split(|&b| b == b'/') {
        if seg == b"." || seg == b".." {
            return Err(Refusal::DotSegment);
        }
    }
    Ok(())
}

/// Percent-decodes a validated canonical path into UTF-8.
fn decode(path: &[u8]) -> Result<String, Refusal> {
    let mut bytes = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let hi = path.get(i + 1).copied().and_then(hex_value);
            let lo = path.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Refusal::BadEscape);
            };
            bytes.push(hi << 4 | lo);
            i += 3;
        } else {
            bytes.push(path[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(bytes).map_err(|_| Refusal::NotUtf8)?;
    if s.chars().any(char::is_control) {
        return Err(Refusal::BadByte);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(raw: &str) -> Result<Target<'_>, Refusal> {
        canonicalize(&Method::GET, raw.as_bytes(), Some(b"app.example:4180"))
    }

    #[test]
    fn clean_targets_are_forwarded_byte_for_byte() {
        for raw in [
            "/",
            "/public/a",
            "/public/a?x=1&y=/admin",
            "/a-b_c~d.e/f",
            "/public/x%20y",
            "/public/%C3%A9",
            "/api/v1/items/",
            "/a:b@c!$&'()*+,=",
            "/.well-known/openid-configuration",
            "/a/...",
            "/a/.hidden",
        ] {
            let t = get(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(t.wire(), raw);
            assert_eq!(t.rewritten(), None, "{raw}");
        }
        let t = get("/public/x%20y?q=%2F..").unwrap();
        assert_eq!(t.path(), "/public/x%20y");
        assert_eq!(t.decoded(), "/public/x y");
        assert_eq!(t.query(), Some("q=%2F.."));
        assert_eq!(get("/p?").unwrap().query(), Some(""));
        assert_eq!(get("/p").unwrap().query(), None);
    }

    #[test]
    fn rewrites() {
        for (raw, wire, decoded) in [
            ("//public//a", "/public/a", "/public/a"),
            ("/public//", "/public/", "/public/"),
            ("/%61dmin", "/admin", "/admin"),
            ("/%7Euser/%41", "/~user/A", "/~user/A"),
            ("/file%2ejs", "/file.js", "/file.js"),
            ("/x%c3%a9?q=%2f", "/x%C3%A9?q=%2f", "/xé"),
            ("/a%20b", "/a%20b", "/a b"),
        ] {
            let t = get(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(t.wire(), wire, "{raw}");
            assert_eq!(t.decoded(), decoded, "{raw}");
        }
        assert!(get("//a").unwrap().rewritten().is_some());
    }

    #[test]
    fn refusals() {
        use Refusal::*;
        for (raw, want) in [
            ("/admin/../public/x", DotSegment),
            ("/public/..", DotSegment),
            ("/./admin", DotSegment),
            ("/public/%2e%2e/admin", DotSegment),
            ("/public/%2E./admin", DotSegment),
            ("/public/.%2E/admin", DotSegment),
            ("/public/%2e/admin", DotSegment),
            ("/public//..//admin", DotSegment),
            ("/public/..;/admin", PathParameter),
            ("/admin;jsessionid=1", PathParameter),
            ("/public/x;.png", PathParameter),
            ("/public\\..\\admin", Backslash),
            ("/public/%5c../admin", Backslash),
            ("/public%2F..%2Fadmin", EncodedDelimiter),
            ("/public/%252e%252e/admin", EncodedDelimiter),
            ("/admin%3B/public/", EncodedDelimiter),
            ("/admin%3f/public/", EncodedDelimiter),
            ("/admin%23/public/", EncodedDelimiter),
            ("/public/%", BadEscape),
            ("/public/%zz", BadEscape),
            ("/public/%4", BadEscape),
            ("/public/%00", BadByte),
            ("/public/%0a", BadByte),
            ("/public/%7f", BadByte),
            ("/public/a b", BadByte),
            ("/public/\u{7f}", BadByte),
            ("/public/é", BadByte),
            ("/public/#x", BadByte),
            ("/p?a\tb", BadByte),
            ("/public/%c0%ae%c0%ae/admin", NotUtf8),
            ("/public/%e0%80%ae", NotUtf8),
            ("/public/%ff", NotUtf8),
            ("/public/%c2%85", BadByte),
            ("x:/admin", TargetForm),
            ("admin", TargetForm),
            ("admin/x", TargetForm),
            ("", TargetForm),
            ("*", TargetForm),
            ("app.example:4180", TargetForm),
            ("http://evil.example/admin", ForeignAuthority),
            ("http://user@app.example:4180/admin", TargetForm),
            ("http:///admin", TargetForm),
            ("http://app.example/admin", ForeignAuthority),
        ] {
            assert_eq!(get(raw), Err(want), "{raw:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_TARGET));
        assert_eq!(get(&long), Err(TooLong));
        assert_eq!(TooLong.status(), 414);
        assert_eq!(DotSegment.status(), 400);
    }

    #[test]
    fn absolute_form_for_this_host_becomes_origin_form() {
        for (raw, wire) in [
            ("http://app.example:4180/public/x?q", "/public/x?q"),
            ("HTTPS://APP.example:4180/a//b", "/a/b"),
            ("http://app.example:4180", "/"),
            ("http://app.example:4180?q=1", "/?q=1"),
        ] {
            let t = get(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(t.wire(), wire, "{raw}");
            assert!(t.rewritten().is_some());
        }
        assert_eq!(
            get("http://app.example:4180/public/../admin"),
            Err(Refusal::DotSegment)
        );
        assert_eq!(
            canonicalize(&Method::GET, b"http://a/x", None),
            Err(Refusal::ForeignAuthority)
        );
    }

    #[test]
    fn asterisk_only_with_options() {
        let t = canonicalize(&Method::OPTIONS, b"*", None).unwrap();
        assert!(t.is_asterisk());
        assert_eq!(t.wire(), "*");
        assert_eq!(
            canonicalize(&Method::GET, b"*", None),
            Err(Refusal::TargetForm)
        );
        assert_eq!(
            canonicalize(&Method::OPTIONS, b"*/x", None),
            Err(Refusal::TargetForm)
        );
    }

    /// What is forwarded is a fixed point: canonicalising it again changes
    /// nothing, and it decodes to what the rules saw.
    #[test]
    fn canonical_form_is_a_fixed_point() {
        for raw in ["//a//b/", "/%61%62%63/%C3%a9", "/x%20y//z?q=1", "/public/a"] {
            let t = get(raw).unwrap();
            let again = get(t.wire()).unwrap();
            assert_eq!(again.wire(), t.wire());
            assert_eq!(again.rewritten(), None, "{raw}");
            assert_eq!(again.decoded(), t.decoded());
        }
    }
}
