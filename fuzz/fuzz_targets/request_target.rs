//! `proxy::request::canonicalize`: whatever the bytes, an accepted target is
//! canonical. Its wire form is a fixed point, its path carries no dot
//! segment, empty segment, `;`, `\`, hidden delimiter or lower-case / needless
//! escape, only visible ASCII; `decoded()` is the percent-decoding of
//! `path()`; `rewritten()` is `None` exactly when the wire form is the input;
//! and a WHATWG URL parser (as an upstream framework would) reads the same
//! path from the wire form.
//!
//! Input: one byte choosing the method and the `Host` header, then the
//! request-target.
#![no_main]

#[path = "common.rs"]
mod common;

use http::Method;
use libfuzzer_sys::fuzz_target;
use portcullis::proxy::request::{canonicalize, Refusal, MAX_TARGET};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, raw)) = data.split_first() else {
        return;
    };
    let method = common::method(selector);
    let host = common::host(selector);
    let t = match canonicalize(&method, raw, host) {
        Ok(t) => t,
        Err(Refusal::TooLong) => {
            assert!(raw.len() > MAX_TARGET);
            return;
        }
        Err(_) => {
            assert!(raw.len() <= MAX_TARGET);
            return;
        }
    };
    let wire = t.wire();
    assert!(
        wire.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'#'),
        "{wire:?}: not visible ASCII"
    );
    // Forwarded byte for byte exactly when nothing was rewritten.
    match t.rewritten() {
        None => assert_eq!(wire.as_bytes(), raw),
        Some(w) => {
            assert_eq!(w, wire);
            assert_ne!(wire.as_bytes(), raw, "rewritten to the same bytes");
        }
    }
    if t.is_asterisk() {
        assert_eq!(method, Method::OPTIONS);
        assert_eq!(raw, b"*");
        return;
    }

    let path = t.path();
    assert!(path.starts_with('/'), "{wire:?}");
    match t.query() {
        Some(q) => assert_eq!(wire, format!("{path}?{q}")),
        None => assert_eq!(wire, path),
    }
    if raw.first() == Some(&b'/') {
        // Origin-form: the query is forwarded as received.
        let raw_query = raw.iter().position(|&b| b == b'?').map(|q| &raw[q + 1..]);
        assert_eq!(t.query().map(str::as_bytes), raw_query);
    }
    assert!(!path.contains('?'), "{wire:?}");
    assert!(!path.contains("//"), "{wire:?}: empty segment");
    assert!(!path.contains(';'), "{wire:?}: path parameter");
    assert!(!path.contains('\\'), "{wire:?}: backslash");
    for seg in path.split('/') {
        assert!(seg != "." && seg != "..", "{wire:?}: dot segment");
    }
    let upper = path.to_ascii_uppercase();
    for hidden in ["%2F", "%5C", "%25", "%3B", "%3F", "%23"] {
        assert!(!upper.contains(hidden), "{wire:?}: {hidden}");
    }
    // Every escape: two upper-case hex digits, of a byte that must stay
    // escaped (not unreserved, not a control character).
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let hi = bytes.get(i + 1).copied().unwrap_or(0);
        let lo = bytes.get(i + 2).copied().unwrap_or(0);
        let is_hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
        assert!(is_hex(hi) && is_hex(lo), "{wire:?}: escape at {i}");
        let v = u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap_or(0);
        assert!(
            !(v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~')),
            "{wire:?}: needless escape"
        );
        assert!(v > 0x1f && v != 0x7f, "{wire:?}: control escape");
    }

    // What the rules match is the decoding of what is forwarded.
    let decoded = String::from_utf8(common::percent_decode(path.as_bytes()))
        .unwrap_or_else(|_| panic!("{wire:?}: does not decode to UTF-8"));
    assert_eq!(t.decoded(), decoded, "{wire:?}");
    assert!(!decoded.chars().any(char::is_control), "{wire:?}");

    // A fixed point: judging the forwarded target again changes nothing.
    let again = canonicalize(&method, wire.as_bytes(), host)
        .unwrap_or_else(|e| panic!("{wire:?} is refused when judged again: {e:?}"));
    assert_eq!(again.wire(), wire);
    assert_eq!(again.rewritten(), None, "{wire:?}");
    assert_eq!(again.decoded(), t.decoded());

    // An upstream with a WHATWG URL parser reads the same path.
    let url = url::Url::parse(&format!("http://app.example{wire}"))
        .unwrap_or_else(|e| panic!("{wire:?}: not a URL path: {e}"));
    let upstream = String::from_utf8(common::percent_decode(url.path().as_bytes()))
        .unwrap_or_else(|_| panic!("{wire:?}: upstream path not UTF-8"));
    assert_eq!(
        upstream,
        t.decoded(),
        "{wire:?}: upstream reads another path"
    );
});
