//! `auth::redirect::safe_return_path` (the `rd` sanitiser): whatever the
//! input, the result, resolved as a browser resolves a `Location` against
//! `https://app.example/some/page` (WHATWG URL, the `url` crate), stays on
//! the origin `https://app.example`; it is ASCII, at most 2048 bytes, and a
//! fixed point (sanitising it again gives it back). A kept ASCII value is
//! kept verbatim. Checked on the input as given and percent-decoded once (an
//! `rd` arrives decoded once from the query string).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use portcullis::auth::redirect::safe_return_path;
use url::Url;

const BASE: &str = "https://app.example/some/page";

fn check(rd: &str) {
    let out = safe_return_path(rd);
    let base = Url::parse(BASE).expect("base URL");
    let resolved = base
        .join(&out)
        .unwrap_or_else(|e| panic!("{rd:?} -> {out:?}: does not resolve: {e}"));
    assert_eq!(
        resolved.origin().ascii_serialization(),
        "https://app.example",
        "{rd:?} -> {out:?} leaves the origin ({resolved})"
    );
    assert!(
        resolved.username().is_empty() && resolved.password().is_none(),
        "{rd:?} -> {out:?}: credentials"
    );
    assert!(out.starts_with('/'), "{rd:?} -> {out:?}");
    assert!(out.is_ascii(), "{rd:?} -> {out:?}");
    assert!(out.len() <= 2048, "{rd:?} -> {out:?}");
    if out != "/" && rd.is_ascii() {
        assert_eq!(out, rd, "an ASCII value is kept verbatim or dropped");
    }
    let again = safe_return_path(&out);
    assert_eq!(
        again, out,
        "{rd:?} -> {out:?} -> {again:?}: not a fixed point"
    );
}

fuzz_target!(|data: &[u8]| {
    let rd = String::from_utf8_lossy(data);
    check(&rd);
    let decoded = common::percent_decode(data);
    if decoded != data {
        check(&String::from_utf8_lossy(&decoded));
    }
});
