//! Cookies on the wire: bounded parsing of request `Cookie` headers, and `Set-Cookie` building, including the splitting of a large session value into numbered parts.
//!
//! A session value longer than [`MAX_PART_LEN`] is written as `name_0`,
//! `name_1`, ... (at most [`MAX_PARTS`]); otherwise as `name`. Whichever
//! form is written, the other is expired in the same response so that stale
//! pieces never linger. Values must be cookie-octets (the sealed values are
//! base64url); names must be RFC 7230 tokens (see [`is_valid_name`]).

use std::borrow::Cow;
use std::time::Duration;

use ::cookie::Cookie;
pub use ::cookie::SameSite;

/// A value longer than this is split into parts.
pub const MAX_PART_LEN: usize = 3800;
/// Never read or write more parts than this.
pub const MAX_PARTS: usize = 4;
/// Parsing stops after this many bytes of `Cookie` headers in total.
pub const MAX_SCAN_BYTES: usize = 32 * 1024;
/// Parsing stops after this many `;`-separated pieces in total.
pub const MAX_SCAN_PAIRS: usize = 1024;

/// Attributes shared by every cookie Portcullis sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAttrs {
    /// Adds `Secure` (browsers require it with `SameSite=None`).
    pub secure: bool,
    pub same_site: SameSite,
    /// `Domain=`; `None` makes a host-only cookie. Must be a validated host
    /// name (no `;`, spaces or control characters).
    pub domain: Option<String>,
}

/// The value of cookie `name` in the request's `Cookie` headers (HTTP/2 may
/// send several). The first occurrence wins; surrounding double quotes are
/// removed. Bounded work: at most [`MAX_SCAN_BYTES`] bytes and
/// [`MAX_SCAN_PAIRS`] pieces are looked at; a pair cut by that limit is
/// ignored. A pair whose name or value is not UTF-8 is skipped for other
/// names (so one foreign cookie cannot hide ours); if the first pair named
/// `name` has a non-UTF-8 value, the result is `None`.
pub fn find<'a>(cookie_headers: impl IntoIterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
    let name = name.as_bytes();
    let (_, value) = Pairs::new(cookie_headers.into_iter()).find(|&(n, _)| n == name)?;
    std::str::from_utf8(value).ok()
}

/// The cookies whose names start with `prefix` (the login-state cookies),
/// as `(name, value)` in header order, each name once (its first
/// occurrence), at most `max` of them. Same scanning bounds as [`find`];
/// pairs that are not UTF-8 are skipped.
pub fn find_prefixed<'a>(
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    prefix: &str,
    max: usize,
) -> Vec<(&'a str, &'a str)> {
    let mut found: Vec<(&'a str, &'a str)> = Vec::new();
    for (name, value) in Pairs::new(cookie_headers.into_iter()) {
        if found.len() >= max {
            break;
        }
        if !name.starts_with(prefix.as_bytes()) {
            continue;
        }
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            continue;
        };
        if found.iter().all(|(n, _)| *n != name) {
            found.push((name, value));
        }
    }
    found
}

/// The session value that may be split: cookie `name` itself when present
/// and non-empty (it wins), else the parts `name_0`, `name_1`, ...
/// concatenated. Parts must be contiguous from 0, at most [`MAX_PARTS`], each
/// at most [`MAX_PART_LEN`] bytes; a gap, a part numbered [`MAX_PARTS`] or
/// more, or an oversized part gives `None`. Same scanning bounds as [`find`],
/// in one pass over the headers.
pub fn find_split<'a>(
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
) -> Option<Cow<'a, str>> {
    let scan = SplitScan::new(cookie_headers, name);
    if let Some(whole) = scan.whole.filter(|v| !v.is_empty()) {
        return std::str::from_utf8(whole).ok().map(Cow::Borrowed);
    }
    if scan.too_many {
        return None;
    }
    let count = scan.parts.iter().take_while(|p| p.is_some()).count();
    let after_gap = scan.parts.get(count..).unwrap_or_default();
    if count == 0 || after_gap.iter().any(Option::is_some) {
        return None;
    }
    let mut parts = Vec::with_capacity(count);
    for part in scan.parts.iter().flatten() {
        if part.len() > MAX_PART_LEN {
            return None;
        }
        parts.push(std::str::from_utf8(part).ok()?);
    }
    match parts.as_slice() {
        [only] => Some(Cow::Borrowed(only)),
        _ => Some(Cow::Owned(parts.concat())),
    }
}

/// `Set-Cookie` values for a session value: one cookie `name` when it fits
/// in [`MAX_PART_LEN`], else parts `name_0`, `name_1`, ...; each `HttpOnly`,
/// `Path=/`, `Secure` and `Domain` per `attrs`, `SameSite`, `Max-Age`. Also
/// expires the form not used: the unsplit `name` whenever the value is
/// split, and the parts present in the request that are no longer needed.
/// `None` when the value needs more than [`MAX_PARTS`] parts, or when the
/// name or value is not valid in a cookie.
pub fn set_split<'a>(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    max_age: Duration,
    request_cookie_headers: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Vec<String>> {
    if !is_valid_name(name) || !is_valid_value(value) {
        return None;
    }
    let count = value.len().div_ceil(MAX_PART_LEN).max(1);
    if count > MAX_PARTS {
        return None;
    }
    let present = SplitScan::new(request_cookie_headers, name);
    let mut out = Vec::with_capacity(MAX_PARTS + 1);
    let first_stale_part = if count == 1 {
        out.push(build(name, value, "/", attrs, max_age));
        0
    } else {
        // Cookie-octets are ASCII, so every byte offset is a char boundary.
        for (i, start) in (0..value.len()).step_by(MAX_PART_LEN).enumerate() {
            let end = value.len().min(start + MAX_PART_LEN);
            let chunk = value.get(start..end)?;
            out.push(build(&part_name(name, i), chunk, "/", attrs, max_age));
        }
        out.push(removal(name, "/", attrs));
        count
    };
    for (i, part) in present.parts.iter().enumerate().skip(first_stale_part) {
        if part.is_some() {
            out.push(removal(&part_name(name, i), "/", attrs));
        }
    }
    Some(out)
}

/// `Set-Cookie` values that delete `name` and all of its possible parts.
pub fn clear_split(name: &str, attrs: &CookieAttrs) -> Vec<String> {
    std::iter::once(removal(name, "/", attrs))
        .chain((0..MAX_PARTS).map(|i| removal(&part_name(name, i), "/", attrs)))
        .collect()
}

/// A single cookie (the login-state cookie): `HttpOnly`, the given `path`,
/// `Secure`/`SameSite`/`Domain` per `attrs`, `Max-Age`. `None` when the name
/// or value is not valid in a cookie or the value is longer than
/// [`MAX_PART_LEN`] (browsers drop cookies over 4 KB).
pub fn set_one(
    name: &str,
    value: &str,
    path: &str,
    attrs: &CookieAttrs,
    max_age: Duration,
) -> Option<String> {
    if !is_valid_name(name) || !is_valid_value(value) || value.len() > MAX_PART_LEN {
        return None;
    }
    Some(build(name, value, path, attrs, max_age))
}

/// A `Set-Cookie` value that deletes the cookie `name` at `path`.
pub fn clear_one(name: &str, path: &str, attrs: &CookieAttrs) -> String {
    removal(name, path, attrs)
}

/// Whether `name` is usable as a cookie name (an RFC 7230 token). The config
/// should check `cookie_name` with this.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `value` consists of RFC 6265 cookie-octets only (printable ASCII
/// except space, `"`, `,`, `;` and `\`).
pub fn is_valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

fn part_name(name: &str, index: usize) -> String {
    format!("{name}_{index}")
}

fn build(name: &str, value: &str, path: &str, attrs: &CookieAttrs, max_age: Duration) -> String {
    let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let mut cookie = base(name, value, path, attrs);
    cookie.set_max_age(::cookie::time::Duration::seconds(seconds));
    cookie.to_string()
}

fn removal(name: &str, path: &str, attrs: &CookieAttrs) -> String {
    let mut cookie = base(name, "", path, attrs);
    cookie.make_removal();
    cookie.to_string()
}

fn base<'c>(name: &'c str, value: &'c str, path: &'c str, attrs: &'c CookieAttrs) -> Cookie<'c> {
    let mut cookie = Cookie::new(name, value);
    cookie.set_path(path);
    cookie.set_http_only(true);
    cookie.set_secure(attrs.secure);
    cookie.set_same_site(attrs.same_site);
    if let Some(domain) = &attrs.domain {
        cookie.set_domain(domain.as_str());
    }
    cookie
}

/// What one pass over the headers found for a possibly split cookie.
struct SplitScan<'a> {
    /// First value of the unsplit cookie `name`.
    whole: Option<&'a [u8]>,
    /// First value of each part `name_{i}`.
    parts: [Option<&'a [u8]>; MAX_PARTS],
    /// A part numbered `MAX_PARTS` or more was present.
    too_many: bool,
}

impl<'a> SplitScan<'a> {
    fn new(cookie_headers: impl IntoIterator<Item = &'a [u8]>, name: &str) -> Self {
        let mut scan = SplitScan {
            whole: None,
            parts: [None; MAX_PARTS],
            too_many: false,
        };
        for (n, value) in Pairs::new(cookie_headers.into_iter()) {
            let Some(rest) = n.strip_prefix(name.as_bytes()) else {
                continue;
            };
            if rest.is_empty() {
                scan.whole.get_or_insert(value);
                continue;
            }
            let Some(index) = rest.strip_prefix(b"_").and_then(part_index) else {
                continue;
            };
            match scan.parts.get_mut(index) {
                Some(slot) => {
                    slot.get_or_insert(value);
                }
                None => scan.too_many = true,
            }
        }
        scan
    }
}

/// The part number in a suffix such as `0` or `12`: ASCII digits without a
/// leading zero; large numbers saturate (they are too many anyway).
fn part_index(digits: &[u8]) -> Option<usize> {
    match digits {
        [] | [b'0', _, ..] => None,
        _ if !digits.iter().all(u8::is_ascii_digit) => None,
        _ => Some(digits.iter().fold(0usize, |n, d| {
            n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
        })),
    }
}

/// Iterator over `(name, value)` pairs of `Cookie` headers, with the
/// scanning bounds applied. Names and values are trimmed of spaces and tabs,
/// a value in double quotes is unquoted, pieces without `=` are skipped.
struct Pairs<'a, I> {
    headers: I,
    current: &'a [u8],
    /// `current` is a prefix of its header, cut by the byte budget.
    cut: bool,
    bytes_left: usize,
    pieces_left: usize,
    done: bool,
}

impl<'a, I: Iterator<Item = &'a [u8]>> Pairs<'a, I> {
    fn new(headers: I) -> Self {
        Pairs {
            headers,
            current: &[],
            cut: false,
            bytes_left: MAX_SCAN_BYTES,
            pieces_left: MAX_SCAN_PAIRS,
            done: false,
        }
    }
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for Pairs<'a, I> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.current.is_empty() {
                if self.cut {
                    break;
                }
                let Some(header) = self.headers.next() else {
                    break;
                };
                let take = header.len().min(self.bytes_left);
                self.bytes_left -= take;
                self.current = header.get(..take).unwrap_or_default();
                self.cut = take < header.len();
                continue;
            }
            // memchr: a session cookie is a few hundred bytes to scan.
            let (piece, rest, complete) = match memchr::memchr(b';', self.current) {
                Some(i) => (
                    self.current.get(..i).unwrap_or_default(),
                    self.current.get(i + 1..).unwrap_or_default(),
                    true,
                ),
                None => (self.current, &[][..], !self.cut),
            };
            self.current = rest;
            if !complete || self.pieces_left == 0 {
                break;
            }
            self.pieces_left -= 1;
            let Some(eq) = memchr::memchr(b'=', piece) else {
                continue;
            };
            let name = trim(piece.get(..eq).unwrap_or_default());
            let value = unquote(trim(piece.get(eq + 1..).unwrap_or_default()));
            if !name.is_empty() {
                return Some((name, value));
            }
        }
        self.done = true;
        None
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "_portcullis";

    fn attrs() -> CookieAttrs {
        CookieAttrs {
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
        }
    }

    fn one(header: &str) -> [&[u8]; 1] {
        [header.as_bytes()]
    }

    /// The `name=value` part of a `Set-Cookie` value.
    fn pair(set_cookie: &str) -> (&str, &str) {
        let first = set_cookie.split(';').next().unwrap_or_default();
        first.split_once('=').unwrap_or((first, ""))
    }

    /// What a browser would send after applying `set_cookies` to a jar that
    /// held `before`.
    fn apply(before: &[(String, String)], set_cookies: &[String]) -> String {
        let mut jar: Vec<(String, String)> = before.to_vec();
        for sc in set_cookies {
            let (n, v) = pair(sc);
            jar.retain(|(name, _)| name != n);
            if !sc.contains("Max-Age=0") {
                jar.push((n.to_owned(), v.to_owned()));
            }
        }
        jar.iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn value_of_len(len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|i| char::from(ALPHABET[(i * 7 + i / 64) % 64]))
            .collect()
    }

    #[test]
    fn find_basic_and_spacing() {
        let h = one("a=1; _portcullis=abc;b=2 ;  c = 3 ");
        assert_eq!(find(h, NAME), Some("abc"));
        assert_eq!(find(h, "a"), Some("1"));
        assert_eq!(find(h, "b"), Some("2"));
        assert_eq!(find(h, "c"), Some("3"));
        assert_eq!(find(h, "d"), None);
        assert_eq!(find(one("\t_portcullis=x\t"), NAME), Some("x"));
    }

    #[test]
    fn find_across_several_headers() {
        let headers: [&[u8]; 3] = [b"a=1", b"b=2; c=3", b"_portcullis=v"];
        assert_eq!(find(headers, NAME), Some("v"));
        assert_eq!(find(headers, "c"), Some("3"));
        assert_eq!(find(Vec::<&[u8]>::new(), NAME), None);
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(
            find(one("_portcullis=first; _portcullis=second"), NAME),
            Some("first")
        );
        let headers: [&[u8]; 2] = [b"_portcullis=first", b"_portcullis=second"];
        assert_eq!(find(headers, NAME), Some("first"));
    }

    #[test]
    fn quoted_values_are_unquoted() {
        assert_eq!(find(one("_portcullis=\"abc\""), NAME), Some("abc"));
        assert_eq!(find(one("_portcullis=\"\""), NAME), Some(""));
        assert_eq!(find(one("_portcullis=\"abc"), NAME), Some("\"abc"));
        assert_eq!(find(one("_portcullis=\""), NAME), Some("\""));
    }

    #[test]
    fn empty_and_valueless_pieces() {
        assert_eq!(find(one("_portcullis="), NAME), Some(""));
        assert_eq!(
            find(one(";;; _portcullis ;=x; _portcullis=y"), NAME),
            Some("y")
        );
        assert_eq!(find(one("=_portcullis; _portcullis=z"), NAME), Some("z"));
        assert_eq!(find(one(""), NAME), None);
        assert_eq!(find(one("_portcullis=a=b"), NAME), Some("a=b"));
    }

    #[test]
    fn name_prefix_confusion() {
        let h = one("_portcullis_x=bad; _portcullisx=bad; x_portcullis=bad; _portcullis=good");
        assert_eq!(find(h, NAME), Some("good"));
        assert_eq!(find(one("_portcullis_x=bad"), NAME), None);
        assert_eq!(find(one("_PORTCULLIS=bad"), NAME), None);
        assert_eq!(find(one("_portcullis=v"), "_portcullis_x"), None);
        assert_eq!(find(one("_portcullis=v"), "_portcul"), None);
    }

    #[test]
    fn non_utf8_pairs_do_not_hide_others() {
        let headers: [&[u8]; 2] = [b"junk=\xff\xfe; _portcullis=ok", b"\xc3\x28=1"];
        assert_eq!(find(headers, NAME), Some("ok"));
        let bad_first: [&[u8]; 1] = [b"_portcullis=\xff; _portcullis=ok"];
        assert_eq!(find(bad_first, NAME), None);
    }

    #[test]
    fn many_junk_cookies() {
        let mut header: String = (0..200).map(|i| format!("junk{i}=value{i}; ")).collect();
        header.push_str("_portcullis=found");
        assert_eq!(find(one(&header), NAME), Some("found"));
    }

    #[test]
    fn scanning_is_bounded_by_bytes() {
        let filler = format!("junk={}; ", "x".repeat(MAX_SCAN_BYTES));
        let header = format!("{filler}_portcullis=late");
        assert_eq!(find(one(&header), NAME), None);
        let headers: [&[u8]; 2] = [filler.as_bytes(), b"_portcullis=late"];
        assert_eq!(find(headers, NAME), None);
        // A pair cut by the budget is not returned truncated.
        let pad = "p=".to_owned() + &"y".repeat(MAX_SCAN_BYTES - 20) + "; ";
        let header = format!("{pad}_portcullis=0123456789abcdefghij");
        assert!(header.len() > MAX_SCAN_BYTES);
        assert_eq!(find(one(&header), NAME), None);
        // Within the budget it is found.
        let header = format!("{}; _portcullis=ok", "q=".to_owned() + &"y".repeat(1000));
        assert_eq!(find(one(&header), NAME), Some("ok"));
    }

    #[test]
    fn scanning_is_bounded_by_pairs() {
        let mut header = ";".repeat(MAX_SCAN_PAIRS);
        header.push_str("_portcullis=late");
        assert_eq!(find(one(&header), NAME), None);
        let mut header = ";".repeat(MAX_SCAN_PAIRS - 1);
        header.push_str("_portcullis=ok");
        assert_eq!(find(one(&header), NAME), Some("ok"));
    }

    #[test]
    fn huge_header_returns_quickly() {
        let huge = "a=b; ".repeat(2_000_000);
        let start = std::time::Instant::now();
        assert_eq!(find(one(&huge), NAME), None);
        assert_eq!(find_split(one(&huge), NAME), None);
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn find_prefixed_lists_each_name_once_in_order() {
        let h = one("a=1; _p_login_b=2; _p_login_a=1; _p=s; _p_login_b=dup; _p_loginx=3");
        assert_eq!(
            find_prefixed(h, "_p_login_", 8),
            vec![("_p_login_b", "2"), ("_p_login_a", "1")]
        );
        assert_eq!(find_prefixed(h, "_p_login_", 1), vec![("_p_login_b", "2")]);
        assert!(find_prefixed(one("a=1"), "_p_login_", 8).is_empty());
        let headers: [&[u8]; 2] = [b"_p_login_x=\xff; _p_login_y=1", b"_p_login_z=2"];
        assert_eq!(
            find_prefixed(headers, "_p_login_", 8),
            vec![("_p_login_y", "1"), ("_p_login_z", "2")]
        );
    }

    #[test]
    fn find_prefixed_is_bounded_by_bytes() {
        let filler = format!("junk={}; ", "x".repeat(MAX_SCAN_BYTES));
        let header = format!("_p_login_a=1; {filler}_p_login_b=2");
        assert_eq!(
            find_prefixed(one(&header), "_p_login_", 8),
            vec![("_p_login_a", "1")]
        );
    }

    #[test]
    fn find_split_prefers_unsplit() {
        let h = one("_portcullis_0=p0; _portcullis=whole; _portcullis_1=p1");
        assert_eq!(find_split(h, NAME).as_deref(), Some("whole"));
        assert!(matches!(find_split(h, NAME), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn find_split_joins_parts_in_order() {
        let h = one("_portcullis_2=c; _portcullis_0=a; x=y; _portcullis_1=b");
        assert_eq!(find_split(h, NAME).as_deref(), Some("abc"));
        let headers: [&[u8]; 2] = [b"_portcullis_1=b", b"_portcullis_0=a"];
        assert_eq!(find_split(headers, NAME).as_deref(), Some("ab"));
        assert_eq!(
            find_split(one("_portcullis_0=only"), NAME).as_deref(),
            Some("only")
        );
        // An empty unsplit cookie does not hide parts.
        let h = one("_portcullis=; _portcullis_0=a; _portcullis_1=b");
        assert_eq!(find_split(h, NAME).as_deref(), Some("ab"));
    }

    #[test]
    fn find_split_first_occurrence_of_each_part_wins() {
        let h = one("_portcullis_0=a; _portcullis_0=x; _portcullis_1=b");
        assert_eq!(find_split(h, NAME).as_deref(), Some("ab"));
    }

    #[test]
    fn find_split_rejects_gaps() {
        assert_eq!(
            find_split(one("_portcullis_0=a; _portcullis_2=c"), NAME),
            None
        );
        assert_eq!(find_split(one("_portcullis_1=b"), NAME), None);
        assert_eq!(
            find_split(one("_portcullis_1=b; _portcullis_2=c"), NAME),
            None
        );
    }

    #[test]
    fn find_split_rejects_too_many_parts() {
        let h = one(
            "_portcullis_0=a; _portcullis_1=b; _portcullis_2=c; _portcullis_3=d; _portcullis_4=e",
        );
        assert_eq!(find_split(h, NAME), None);
        let h = one("_portcullis_0=a; _portcullis_99999999999999999999999=z");
        assert_eq!(find_split(h, NAME), None);
        let h = one("_portcullis_0=a; _portcullis_1=b; _portcullis_2=c; _portcullis_3=d");
        assert_eq!(find_split(h, NAME).as_deref(), Some("abcd"));
    }

    #[test]
    fn find_split_ignores_lookalike_names() {
        let h = one(
            "_portcullis_x=1; _portcullis_01=2; _portcullis_=3; _portcullis_1a=4; \
             _portcullis_login_abc=5; _portcullisx_0=6; _portcullis_0=a",
        );
        assert_eq!(find_split(h, NAME).as_deref(), Some("a"));
        assert_eq!(find_split(one("_portcullis_login_abc=5"), NAME), None);
    }

    #[test]
    fn find_split_rejects_oversized_part() {
        let big = value_of_len(MAX_PART_LEN + 1);
        let h = format!("_portcullis_0={big}; _portcullis_1=b");
        assert_eq!(find_split(one(&h), NAME), None);
    }

    #[test]
    fn find_split_nothing() {
        assert_eq!(find_split(one("a=b"), NAME), None);
        assert_eq!(find_split(one("_portcullis="), NAME), None);
        assert_eq!(find_split(Vec::<&[u8]>::new(), NAME), None);
    }

    #[test]
    fn set_split_small_value_is_one_cookie_with_attributes() {
        let out =
            set_split(NAME, "abc", &attrs(), Duration::from_secs(604_800), []).unwrap_or_default();
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert!(c.starts_with("_portcullis=abc;"), "{c}");
        for attr in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=604800",
        ] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
        assert!(!c.contains("Domain"), "{c}");
    }

    #[test]
    fn attributes_follow_attrs() {
        let a = CookieAttrs {
            secure: false,
            same_site: SameSite::Strict,
            domain: Some(".example.com".into()),
        };
        let out = set_split(NAME, "v", &a, Duration::from_secs(60), []).unwrap_or_default();
        let c = out.first().cloned().unwrap_or_default();
        assert!(c.contains("SameSite=Strict"), "{c}");
        assert!(c.contains("Domain=example.com"), "{c}");
        assert!(!c.contains("Secure"), "{c}");
        let a = CookieAttrs {
            secure: true,
            same_site: SameSite::None,
            domain: None,
        };
        let c = set_one("n", "v", "/p", &a, Duration::from_secs(1)).unwrap_or_default();
        assert!(c.contains("SameSite=None") && c.contains("Secure"), "{c}");
    }

    #[test]
    fn set_split_small_value_expires_present_parts() {
        let req = one("_portcullis_0=a; _portcullis_2=c; other=1");
        let out =
            set_split(NAME, "abc", &attrs(), Duration::from_secs(60), req).unwrap_or_default();
        let names: Vec<_> = out.iter().map(|c| pair(c).0).collect();
        assert_eq!(names, ["_portcullis", "_portcullis_0", "_portcullis_2"]);
        assert!(out[1].contains("Max-Age=0") && out[2].contains("Max-Age=0"));
        assert!(out[1].contains("Path=/"));
    }

    #[test]
    fn set_split_large_value_splits_and_expires_unsplit_and_stale_parts() {
        let value = value_of_len(MAX_PART_LEN * 2 + 5);
        let req = one("_portcullis=old; _portcullis_0=a; _portcullis_3=d");
        let out =
            set_split(NAME, &value, &attrs(), Duration::from_secs(60), req).unwrap_or_default();
        let names: Vec<_> = out.iter().map(|c| pair(c).0).collect();
        assert_eq!(
            names,
            [
                "_portcullis_0",
                "_portcullis_1",
                "_portcullis_2",
                "_portcullis",
                "_portcullis_3"
            ]
        );
        assert_eq!(pair(&out[0]).1.len(), MAX_PART_LEN);
        assert_eq!(pair(&out[2]).1.len(), 5);
        for c in &out[..3] {
            assert!(c.contains("Max-Age=60") && c.contains("HttpOnly") && c.contains("Path=/"));
        }
        for c in &out[3..] {
            assert!(c.contains("Max-Age=0"), "{c}");
        }
        // The unsplit name is expired even when the request did not carry it.
        let out =
            set_split(NAME, &value, &attrs(), Duration::from_secs(60), []).unwrap_or_default();
        assert_eq!(out.len(), 4);
        assert!(out[3].starts_with("_portcullis=;") && out[3].contains("Max-Age=0"));
    }

    #[test]
    fn set_split_boundaries() {
        let exact = value_of_len(MAX_PART_LEN);
        let out = set_split(NAME, &exact, &attrs(), Duration::from_secs(1), []).unwrap_or_default();
        assert_eq!(out.len(), 1);
        let max = value_of_len(MAX_PART_LEN * MAX_PARTS);
        let out = set_split(NAME, &max, &attrs(), Duration::from_secs(1), []).unwrap_or_default();
        assert_eq!(out.len(), MAX_PARTS + 1);
        let over = value_of_len(MAX_PART_LEN * MAX_PARTS + 1);
        assert_eq!(
            set_split(NAME, &over, &attrs(), Duration::from_secs(1), []),
            None
        );
        let empty = set_split(NAME, "", &attrs(), Duration::from_secs(1), []).unwrap_or_default();
        assert_eq!(empty.len(), 1);
    }

    #[test]
    fn set_split_rejects_invalid_names_and_values() {
        let d = Duration::from_secs(1);
        for bad_value in ["a;b", "a b", "a\"b", "a,b", "a\\b", "é", "a\nb"] {
            assert_eq!(
                set_split(NAME, bad_value, &attrs(), d, []),
                None,
                "{bad_value:?}"
            );
            assert_eq!(
                set_one(NAME, bad_value, "/", &attrs(), d),
                None,
                "{bad_value:?}"
            );
        }
        for bad_name in ["", "a=b", "a b", "a;b", "a\r\n", "ü"] {
            assert_eq!(
                set_split(bad_name, "v", &attrs(), d, []),
                None,
                "{bad_name:?}"
            );
            assert_eq!(
                set_one(bad_name, "v", "/", &attrs(), d),
                None,
                "{bad_name:?}"
            );
        }
    }

    #[test]
    fn round_trip_10kb_through_a_browser_jar() {
        let value = value_of_len(10 * 1024);
        let out =
            set_split(NAME, &value, &attrs(), Duration::from_secs(60), []).unwrap_or_default();
        assert_eq!(out.len(), 4); // 3 parts + expiry of the unsplit name
        let header = apply(&[("other".into(), "1".into())], &out);
        assert_eq!(
            find_split(one(&header), NAME).as_deref(),
            Some(value.as_str())
        );
        // Then the value shrinks: the old parts must go.
        let small = value_of_len(100);
        let out2 = set_split(
            NAME,
            &small,
            &attrs(),
            Duration::from_secs(60),
            one(&header),
        )
        .unwrap_or_default();
        let header2 = apply(
            &header
                .split("; ")
                .filter_map(|p| p.split_once('='))
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect::<Vec<_>>(),
            &out2,
        );
        assert!(!header2.contains("_portcullis_"), "{header2}");
        assert_eq!(
            find_split(one(&header2), NAME).as_deref(),
            Some(small.as_str())
        );
        // And grows again.
        let out3 = set_split(
            NAME,
            &value,
            &attrs(),
            Duration::from_secs(60),
            one(&header2),
        )
        .unwrap_or_default();
        let jar2: Vec<(String, String)> = header2
            .split("; ")
            .filter_map(|p| p.split_once('='))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let header3 = apply(&jar2, &out3);
        assert!(!header3.contains("_portcullis="), "{header3}");
        assert_eq!(
            find_split(one(&header3), NAME).as_deref(),
            Some(value.as_str())
        );
    }

    #[test]
    fn clear_split_covers_all_parts() {
        let out = clear_split(NAME, &attrs());
        let names: Vec<_> = out.iter().map(|c| pair(c).0).collect();
        let mut expected = vec![NAME.to_owned()];
        expected.extend((0..MAX_PARTS).map(|i| format!("{NAME}_{i}")));
        assert_eq!(names, expected);
        for c in &out {
            assert_eq!(pair(c).1, "");
            assert!(c.contains("Max-Age=0") && c.contains("Path=/") && c.contains("Expires="));
        }
        let before = [
            (NAME.to_owned(), "a".to_owned()),
            (format!("{NAME}_0"), "b".to_owned()),
            (format!("{NAME}_3"), "c".to_owned()),
        ];
        assert_eq!(apply(&before, &out), "");
    }

    #[test]
    fn clear_split_keeps_domain() {
        let a = CookieAttrs {
            domain: Some("example.com".into()),
            ..attrs()
        };
        assert!(clear_split(NAME, &a)
            .iter()
            .all(|c| c.contains("Domain=example.com")));
    }

    #[test]
    fn set_one_and_clear_one() {
        let c = set_one(
            "_portcullis_login_abc",
            "xyz",
            "/oauth2/callback",
            &attrs(),
            Duration::from_secs(600),
        )
        .unwrap_or_default();
        assert!(c.starts_with("_portcullis_login_abc=xyz;"), "{c}");
        for attr in [
            "HttpOnly",
            "Path=/oauth2/callback",
            "Max-Age=600",
            "Secure",
            "SameSite=Lax",
        ] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
        let too_long = value_of_len(MAX_PART_LEN + 1);
        assert_eq!(
            set_one("n", &too_long, "/", &attrs(), Duration::from_secs(1)),
            None
        );
        let c = clear_one("_portcullis_login_abc", "/oauth2/callback", &attrs());
        assert!(c.starts_with("_portcullis_login_abc=;"), "{c}");
        assert!(
            c.contains("Max-Age=0") && c.contains("Path=/oauth2/callback"),
            "{c}"
        );
    }

    #[test]
    fn huge_max_age_does_not_panic() {
        let c = set_one("n", "v", "/", &attrs(), Duration::MAX).unwrap_or_default();
        assert!(c.contains("Max-Age="), "{c}");
    }

    #[test]
    fn name_and_value_validity() {
        assert!(is_valid_name("_portcullis"));
        assert!(is_valid_name("a.b-c~d"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a(b)"));
        assert!(is_valid_value(""));
        assert!(is_valid_value("AZaz09-_"));
        assert!(!is_valid_value(" "));
    }

    #[test]
    fn part_index_parsing() {
        assert_eq!(part_index(b"0"), Some(0));
        assert_eq!(part_index(b"3"), Some(3));
        assert_eq!(part_index(b"12"), Some(12));
        assert_eq!(part_index(b"01"), None);
        assert_eq!(part_index(b""), None);
        assert_eq!(part_index(b"1a"), None);
        assert_eq!(part_index(b"-1"), None);
        assert_eq!(part_index(b"999999999999999999999999999"), Some(usize::MAX));
    }
}
