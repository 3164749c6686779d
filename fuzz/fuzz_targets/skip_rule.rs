//! `skip_auth` decisions (`auth::skip`) on canonical targets: the decision
//! is made on the same path the upstream gets. If a target is judged public
//! by a rule, the forwarded path, as a WHATWG URL parser reads and decodes
//! it, matches that rule too; the query cannot open a rule; judging the
//! forwarded target again gives the same decision.
//!
//! Rules: a fixed set (`^/public/`, `GET ^/$`, `\.png$`) plus up to three
//! rules from the input (parse errors are fine). Input: one byte choosing
//! the method, the `Host` header and how many of the following lines are
//! rules; then those lines; the rest is the request-target.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use http::Method;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::skip::{is_skipped, SkipRule};
use portcullis::proxy::request::canonicalize;

/// Longest rule taken from the input (the config's rules are short; huge
/// repetitions only measure the regex compiler).
const MAX_RULE: usize = 64;

fn fixed_rules() -> &'static [SkipRule] {
    static RULES: OnceLock<Vec<SkipRule>> = OnceLock::new();
    RULES.get_or_init(|| {
        ["^/public/", "GET ^/$", r"\.png$"]
            .iter()
            .map(|r| SkipRule::parse(r).expect("fixed rule"))
            .collect()
    })
}

/// What an upstream with a WHATWG URL parser takes as the path of `wire`,
/// percent-decoded.
fn upstream_path(wire: &str) -> String {
    let url = url::Url::parse(&format!("http://app.example{wire}"))
        .unwrap_or_else(|e| panic!("{wire:?}: not a URL path: {e}"));
    String::from_utf8(common::percent_decode(url.path().as_bytes()))
        .unwrap_or_else(|_| panic!("{wire:?}: upstream path not UTF-8"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = common::method(selector);
    let host = common::host(selector);
    let mut rules = fixed_rules().to_vec();
    let fixed = rules.len();
    let wanted = usize::from(selector >> 6);
    let pieces: Vec<&[u8]> = rest.splitn(wanted + 1, |&b| b == b'\n').collect();
    let Some((&raw, rule_lines)) = pieces.split_last() else {
        return;
    };
    for line in rule_lines {
        if line.len() <= MAX_RULE {
            if let Ok(r) = SkipRule::parse(&String::from_utf8_lossy(line)) {
                rules.push(r);
            }
        }
    }

    let Ok(t) = canonicalize(&method, raw, host) else {
        return;
    };
    let skipped = is_skipped(&rules, &method, t.decoded());
    if t.is_asterisk() {
        assert!(!skipped, "OPTIONS * is never public");
        return;
    }
    let upstream = upstream_path(t.wire());
    assert_eq!(upstream, t.decoded(), "{:?}", t.wire());
    assert_eq!(is_skipped(&rules, &method, &upstream), skipped);
    for (i, rule) in rules.iter().enumerate() {
        let applies = rule.method.as_ref().is_none_or(|m| *m == method);
        if !(applies && rule.path.is_match(t.decoded())) {
            continue;
        }
        assert!(
            rule.path.is_match(&upstream),
            "rule {:?} opened {:?} but the upstream gets {upstream:?}",
            rule.path.as_str(),
            t.wire()
        );
        // The fixed rules, spelled out on the forwarded form.
        if i < fixed {
            let ok = match i {
                0 => upstream.starts_with("/public/"),
                1 => method == Method::GET && upstream == "/",
                _ => upstream.ends_with(".png"),
            };
            assert!(ok, "rule {i} opened {:?} (upstream {upstream:?})", t.wire());
        }
    }

    // Judged again as forwarded: the same decision.
    let again = canonicalize(&method, t.wire().as_bytes(), host).expect("fixed point");
    assert_eq!(is_skipped(&rules, &method, again.decoded()), skipped);

    // The query never takes part: without it, the same decision; a query
    // naming a public path does not open a private one.
    let path_only = canonicalize(&method, t.path().as_bytes(), host).expect("path alone");
    assert_eq!(is_skipped(&rules, &method, path_only.decoded()), skipped);
    if !skipped && t.query().is_none() {
        let widened = format!("{}?/public/x.png", t.wire());
        if let Ok(w) = canonicalize(&method, widened.as_bytes(), host) {
            assert!(
                !is_skipped(&rules, &method, w.decoded()),
                "the query opened {widened:?}"
            );
        }
    }
});
