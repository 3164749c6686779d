//! Helpers shared by the fuzz targets (each target includes this file with
//! `#[path = "common.rs"] mod common;`; not a target itself).
#![allow(dead_code)]

/// Percent-decodes `s` byte for byte; `%` not followed by two hex digits is
/// kept as it is (as browsers and most servers do). Written here rather
/// than taken from the crate under test, so that it is an independent
/// reading.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// A method chosen by one input byte.
pub fn method(selector: u8) -> http::Method {
    use http::Method;
    match selector % 8 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::OPTIONS,
        3 => Method::HEAD,
        4 => Method::PUT,
        5 => Method::DELETE,
        6 => Method::CONNECT,
        _ => Method::PATCH,
    }
}

/// The `Host` header the proxy would see, chosen by one input byte.
pub fn host(selector: u8) -> Option<&'static [u8]> {
    match (selector >> 3) % 3 {
        0 => Some(b"app.example:4180"),
        1 => Some(b"APP.Example:4180"),
        _ => None,
    }
}
