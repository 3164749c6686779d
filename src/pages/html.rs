//! HTML building blocks for the pages: escaping, URL encoding and the shared page frame.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but the unreserved characters and '/', for a query value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Everything but the unreserved characters, for one path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The pages' own stylesheet, inlined into every page.
pub(crate) const STYLE: &str = include_str!("style.css");

/// The policy of every page, without its `style-src`: pages load nothing and
/// run nothing; their one stylesheet is allowed by its hash (see
/// [`content_security_policy`]).
pub(crate) const CSP_REST: &str = "img-src 'self' data:; form-action 'self'; base-uri 'none'";

/// The `Content-Security-Policy` for `html`, one of our pages: no script at
/// all, and only the page's own `<style>` elements, each by its SHA-256 hash
/// (so no injected style runs either). `frame-ancestors` is added by the
/// header only (a meta tag cannot carry it).
pub fn content_security_policy(html: &str) -> String {
    let mut hashes = String::new();
    let mut rest = html;
    while let Some(open) = rest.find("<style>") {
        let after = &rest[open + "<style>".len()..];
        let Some(close) = after.find("</style>") else {
            break;
        };
        hashes.push_str(&format!(" 'sha256-{}'", style_hash(&after[..close])));
        rest = &after[close..];
    }
    if hashes.is_empty() {
        hashes.push_str(" 'none'");
    }
    format!("default-src 'none'; style-src{hashes}; {CSP_REST}")
}

/// The CSP source hash of a style element's text: base64 of its SHA-256.
pub(crate) fn style_hash(css: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(css.as_bytes()))
}

/// Escapes text for HTML element content and quoted attribute values:
/// `&`, `<`, `>`, `"` and `'`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Percent-encodes a query parameter value (keeps '/' readable).
pub fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Percent-encodes one path segment.
pub fn encode_path_segment(s: &str) -> String {
    utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// A link target for a page: a local path of this site, else the sign-in page.
/// Callers pass paths they built; this only stops a mistake from becoming a
/// link to elsewhere (`//host`, `javascript:`).
pub fn local_href(href: &str) -> &str {
    let local = href.starts_with('/')
        && !href.starts_with("//")
        && !href.starts_with("/\\")
        && !href.chars().any(|c| c == '\\' || c.is_control());
    if local {
        href
    } else {
        "/oauth2/sign_in"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_handles_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(
            escape("\"><script>alert(1)</script>"),
            "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        );
    }

    #[test]
    fn escape_leaves_plain_text_alone() {
        assert!(matches!(escape("Acme SSO"), Cow::Borrowed("Acme SSO")));
        assert_eq!(escape("caf\u{e9} \u{2713}"), "caf\u{e9} \u{2713}");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn query_values_keep_only_unreserved_and_slash() {
        assert_eq!(encode_query_value("/a/b-c.d_e~f"), "/a/b-c.d_e~f");
        assert_eq!(encode_query_value("/x?a=1&b=2#f"), "/x%3Fa%3D1%26b%3D2%23f");
        assert_eq!(encode_query_value("/\"><"), "/%22%3E%3C");
        assert_eq!(encode_query_value("/%41 +"), "/%2541%20%2B");
        assert_eq!(encode_query_value("/\u{2713}"), "/%E2%9C%93");
    }

    #[test]
    fn path_segments_encode_slashes() {
        assert_eq!(encode_path_segment("acme-sso_1"), "acme-sso_1");
        assert_eq!(encode_path_segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn local_href_refuses_other_origins() {
        assert_eq!(
            local_href("/oauth2/start/google?rd=%2F"),
            "/oauth2/start/google?rd=%2F"
        );
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "https://evil.com",
            "javascript:x",
            "",
            "/\t/x",
        ] {
            assert_eq!(local_href(bad), "/oauth2/sign_in", "{bad:?}");
        }
    }
}
