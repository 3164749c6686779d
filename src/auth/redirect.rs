//! Safe return paths: decides whether an `rd` value may be used as a redirect target.
//!
//! An `rd` is kept only when a browser resolving it as a `Location` against this
//! site can land nowhere but this site. Everything else becomes `/`. The checks
//! are deliberately stricter than the URL standard: a harmless but odd path that
//! is turned into `/` costs a click, a missed trick costs an open redirect.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, CONTROLS};
use url::Url;

/// Where every unsafe `rd` ends.
const FALLBACK: &str = "/";
/// Longest return path kept, in bytes (before and after encoding).
const MAX_LEN: usize = 2048;
/// How many nested layers of percent-encoding are looked through. A value
/// that still changes after this many decodings is rejected.
const MAX_DECODE_ROUNDS: usize = 4;
/// A stand-in origin for the final check: the path must resolve onto it.
const PROBE_ORIGIN: &str = "https://portcullis.invalid/";
const PROBE_HOST: &str = "portcullis.invalid";

/// The return path to use for an `rd` value (already percent-decoded once from
/// the query string, as a query parser gives it).
///
/// Returns the input unchanged (borrowed) when it is a safe local path of this
/// site, otherwise `"/"`. Query strings and fragments are kept. The one
/// rewrite: non-ASCII characters in an otherwise safe path are percent-encoded
/// (an owned value), so the result is always ASCII and fits a `Location` header.
pub fn safe_return_path(rd: &str) -> Cow<'_, str> {
    if !is_safe_local_path(rd) {
        return Cow::Borrowed(FALLBACK);
    }
    let path: Cow<'_, str> = if rd.is_ascii() {
        Cow::Borrowed(rd)
    } else {
        // Control characters were rejected above; CONTROLS only adds the
        // mandatory encoding of every non-ASCII byte.
        Cow::Owned(utf8_percent_encode(rd, CONTROLS).to_string())
    };
    if path.len() > MAX_LEN || !resolves_on_probe_origin(&path) {
        return Cow::Borrowed(FALLBACK);
    }
    path
}

/// Every check except the final URL resolution.
fn is_safe_local_path(rd: &str) -> bool {
    if rd.len() > MAX_LEN || !rd.starts_with('/') {
        return false;
    }
    // Anywhere in the raw value: no backslash (browsers read it as '/'), and
    // nothing invisible (browsers strip tabs and newlines from URLs).
    if rd.chars().any(|c| c == '\\' || is_invisible(c)) {
        return false;
    }
    if !has_safe_start(rd) {
        return false;
    }
    // Look through nested percent-encoding: `/%2f%2fevil.com`, `/%09/evil.com`,
    // `/%252f%252fevil.com`. Encoded characters deeper in the path or in the
    // query are legitimate (`/search?q=a%20b`), so only the start is judged.
    let mut current = Cow::Borrowed(rd);
    for _ in 0..MAX_DECODE_ROUNDS {
        let decoded = percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == current {
            return true;
        }
        let visible: String = decoded.chars().filter(|&c| !is_invisible(c)).collect();
        if !has_safe_start(&visible) {
            return false;
        }
        current = Cow::Owned(decoded);
    }
    // Still more layers: too deep to be an honest path.
    percent_decode_str(&current).decode_utf8_lossy() == current
}

/// The start of a (decoded, invisible-stripped) value: exactly one '/', not
/// followed by another slash, a backslash, a slash look-alike or a scheme.
fn has_safe_start(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('/') else {
        return false;
    };
    if rest.chars().next().is_some_and(is_slash_like) {
        return false;
    }
    !starts_with_scheme(rest)
}

/// `scheme:` at the start, as in `http:`, `javascript:`, `data:`. Strict:
/// a first path segment such as `/a:b` is refused too.
fn starts_with_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    if !bytes.next().is_some_and(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    for b in bytes {
        match b {
            b':' => return true,
            b if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') => {}
            _ => return false,
        }
    }
    false
}

/// Slashes, backslashes and characters that some agents fold into them.
fn is_slash_like(c: char) -> bool {
    matches!(
        c,
        '/' | '\\'
            | '\u{2044}' // FRACTION SLASH
            | '\u{2215}' // DIVISION SLASH
            | '\u{2216}' // SET MINUS
            | '\u{29F5}' // REVERSE SOLIDUS OPERATOR
            | '\u{29F8}' // BIG SOLIDUS
            | '\u{29F9}' // BIG REVERSE SOLIDUS
            | '\u{3031}' // VERTICAL KANA REPEAT MARK
            | '\u{3035}' // VERTICAL KANA REPEAT MARK LOWER HALF
            | '\u{309D}' // HIRAGANA ITERATION MARK
            | '\u{30FC}' // KATAKANA-HIRAGANA PROLONGED SOUND MARK
            | '\u{FE68}' // SMALL REVERSE SOLIDUS
            | '\u{FF0F}' // FULLWIDTH SOLIDUS
            | '\u{FF3C}' // FULLWIDTH REVERSE SOLIDUS
            | '\u{FF70}' // HALFWIDTH PROLONGED SOUND MARK
    )
}

/// Control characters, whitespace (ASCII and Unicode) and format characters
/// (zero-width, bidi controls, BOM, ...).
fn is_invisible(c: char) -> bool {
    c.is_control() || c.is_whitespace() || is_format_char(c)
}

/// The Unicode general category Cf (format), which `char` has no method for.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Belt and braces: resolved as a browser would against a stand-in origin,
/// the path must stay on that origin.
fn resolves_on_probe_origin(path: &str) -> bool {
    let Ok(base) = Url::parse(PROBE_ORIGIN) else {
        return false;
    };
    let Ok(resolved) = base.join(path) else {
        return false;
    };
    resolved.scheme() == base.scheme()
        && resolved.host_str() == Some(PROBE_HOST)
        && resolved.port() == base.port()
        && resolved.username().is_empty()
        && resolved.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = include_str!("../../tests/data/openredirects.txt");

    /// The property every output must have, whatever the input.
    fn assert_same_origin(input: &str, out: &str) {
        assert!(out.starts_with('/'), "{input:?} -> {out:?}: not a path");
        assert!(
            !out.starts_with("//") && !out.starts_with("/\\"),
            "{input:?} -> {out:?}: network-path reference"
        );
        let base = Url::parse(PROBE_ORIGIN).expect("constant base URL");
        let joined = base
            .join(out)
            .unwrap_or_else(|e| panic!("{input:?} -> {out:?}: does not join: {e}"));
        assert_eq!(joined.host_str(), Some(PROBE_HOST), "{input:?} -> {out:?}");
        assert_eq!(joined.scheme(), "https", "{input:?} -> {out:?}");
        assert_eq!(joined.port(), None, "{input:?} -> {out:?}");
    }

    #[test]
    fn corpus_is_present() {
        assert!(
            CORPUS.lines().count() > 500,
            "open-redirect corpus is missing"
        );
    }

    #[test]
    fn every_corpus_line_ends_on_a_same_origin_path() {
        for line in CORPUS.lines() {
            let raw = safe_return_path(line);
            assert_same_origin(line, &raw);

            let decoded = percent_decode_str(line).decode_utf8_lossy();
            let out = safe_return_path(&decoded);
            assert_same_origin(&decoded, &out);
        }
    }

    #[test]
    fn corpus_lines_that_survive_are_plain_local_paths() {
        // Whatever is kept must be kept verbatim (nothing is "repaired").
        for line in CORPUS.lines() {
            let out = safe_return_path(line);
            assert!(out == "/" || out == line, "{line:?} -> {out:?}");
        }
    }

    #[test]
    fn ordinary_paths_survive_unchanged() {
        for path in [
            "/",
            "/dashboard",
            "/a/b?c=d&e=f",
            "/search?q=a%20b",
            "/x#frag",
            "/%E2%9C%93",
            "/app?tab=2#x",
            "/wiki/Special:Search",
            "/search?q=http://example.com/",
            "/a//b",
            "/?next=//elsewhere",
            "/12:30",
            "/files/report%202024.pdf",
            "/a%5cb",
        ] {
            let out = safe_return_path(path);
            assert_eq!(out, path);
            assert!(matches!(out, Cow::Borrowed(_)), "{path:?} was copied");
        }
    }

    #[test]
    fn unsafe_values_become_root() {
        for rd in [
            "",
            "dashboard",
            "https://evil.com",
            "http://evil.com/",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "/%09/evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            "/ /evil.com",
            "/a b",
            "/\u{0b}/evil.com",
            "/\u{0c}/evil.com",
            "/\0/evil.com",
            "/\u{7f}",
            "/\u{85}/evil.com",
            "/\u{a0}/evil.com",
            "/\u{3000}/evil.com",
            "/\u{200b}/evil.com",
            "/\u{feff}/evil.com",
            "/\u{202e}moc.live",
            "/\u{ff0f}evil.com",
            "/\u{ff3c}evil.com",
            "javascript:alert(1)",
            "/javascript:alert(1)",
            "/JavaScript:alert(1)",
            "/data:text/html,hi",
            "/http://evil.com",
            "/https:evil.com",
            "/%2f%2fevil.com",
            "/%2F%2Fevil.com",
            "/%5cevil.com",
            "/%5Cevil.com",
            "/%252f%252fevil.com",
            "/%25252f%25252fevil.com",
            "/%2525252525252f%2525252525252fevil.com",
            "/%68%74%74%70%3a%2f%2fevil.com",
            "/%0d%0a/evil.com",
            "/%e3%80%80/evil.com",
            "/%e2%80%8b/evil.com",
            "/%ef%bc%8fevil.com",
            "/java%09script:alert(1)",
            "/a\\b",
        ] {
            assert_eq!(safe_return_path(rd), "/", "{rd:?}");
        }
    }

    #[test]
    fn length_is_capped() {
        let ok = format!("/{}", "a".repeat(MAX_LEN - 1));
        assert_eq!(safe_return_path(&ok), ok.as_str());
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(safe_return_path(&long), "/");
    }

    #[test]
    fn non_ascii_is_percent_encoded() {
        assert_eq!(
            safe_return_path("/caf\u{e9}?q=\u{2713}"),
            "/caf%C3%A9?q=%E2%9C%93"
        );
        // Encoding must not push it past the cap either.
        let wide = format!("/{}", "\u{e9}".repeat(1000));
        assert_eq!(safe_return_path(&wide), "/");
    }

    #[test]
    fn scheme_detection() {
        assert!(starts_with_scheme("http:"));
        assert!(starts_with_scheme("a+b-c.d:x"));
        assert!(!starts_with_scheme("1http:"));
        assert!(!starts_with_scheme("a/b:c"));
        assert!(!starts_with_scheme("abc"));
        assert!(!starts_with_scheme(""));
    }
}
