//! Public routes (`access.skip_auth`): `[METHOD ]regex` rules matched
//! against the normalised path only — never the query or fragment — and
//! built so that a rule cannot be widened by encoding tricks.

use std::borrow::Cow;

use http::Method;
use regex::Regex;

/// One `skip_auth` rule.
#[derive(Debug, Clone)]
pub struct SkipRule {
    pub method: Option<Method>,
    pub path: Regex,
}

impl SkipRule {
    /// Parses `"^/public/"` or `"GET ^/healthz$"`.
    pub fn parse(rule: &str) -> Result<SkipRule, String> {
        let rule = rule.trim();
        let (method, pattern) = match rule.split_once(' ') {
            Some((m, p)) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
                let method = Method::from_bytes(m.as_bytes())
                    .map_err(|_| format!("{m:?} is not an HTTP method"))?;
                (Some(method), p.trim())
            }
            _ => (None, rule),
        };
        if pattern.is_empty() {
            return Err("the path pattern is empty".to_owned());
        }
        let path = Regex::new(pattern).map_err(|e| {
            format!(
                "invalid regex: {}",
                e.to_string().lines().last().unwrap_or_default().trim()
            )
        })?;
        Ok(SkipRule { method, path })
    }
}

/// Does a rule let this request through without a session? Fails closed:
/// a path that cannot be normalised unambiguously is never skipped.
pub fn is_skipped(rules: &[SkipRule], method: &Method, raw_path: &str) -> bool {
    if rules.is_empty() {
        return false;
    }
    let Some(path) = normalize(raw_path) else {
        return false;
    };
    rules
        .iter()
        .any(|r| r.method.as_ref().is_none_or(|m| m == method) && r.path.is_match(&path))
}

/// The path as an application would see it: percent-decoded, `.`/`..`
/// segments resolved, repeated slashes collapsed. `None` (never skip) when
/// the path is not absolute, is not valid UTF-8 once decoded, or hides
/// separators or special characters behind percent-encoding (`%2F`, `%5C`,
/// `%2E`, `%23`, `%3F`, `%00`...), contains a backslash, or a control
/// character — the tricks that made other proxies' rules match more than
/// they said (oauth2-proxy CVE-2025-54576, CVE-2026-41059).
pub fn normalize(raw_path: &str) -> Option<Cow<'_, str>> {
    // The query is not part of the path, whatever a rule says.
    let raw = raw_path.split('?').next().unwrap_or_default();
    if !raw.starts_with('/') || raw.contains('\\') || raw.contains('#') {
        return None;
    }
    let clean = !raw.contains('%')
        && !raw.contains("//")
        && !raw.split('/').any(|s| s == "." || s == "..")
        && !raw.bytes().any(|b| b.is_ascii_control());
    if clean {
        return Some(Cow::Borrowed(raw));
    }
    // Percent-decoding, refusing encoded structure.
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if matches!(value, b'/' | b'\\' | b'.' | b'#' | b'?' | b'%' | b';')
                || value.is_ascii_control()
            {
                return None;
            }
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    if decoded.chars().any(char::is_control) {
        return None;
    }
    // Resolve dot segments and empty segments.
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || decoded.ends_with('/') && !out.is_empty() {
        path.push('/');
    }
    Some(Cow::Owned(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<SkipRule> {
        list.iter().map(|r| SkipRule::parse(r).unwrap()).collect()
    }

    #[test]
    fn parse_rules() {
        let r = SkipRule::parse("GET ^/healthz$").unwrap();
        assert_eq!(r.method, Some(Method::GET));
        assert!(SkipRule::parse("^/public/").unwrap().method.is_none());
        assert!(SkipRule::parse("GET").is_ok(), "a bare word is a pattern");
        assert!(SkipRule::parse("GET (").is_err());
        assert!(SkipRule::parse("").is_err());
    }

    #[test]
    fn normalisation() {
        for (raw, want) in [
            ("/public/a", Some("/public/a")),
            ("/public//a", Some("/public/a")),
            ("/public/./a", Some("/public/a")),
            ("/public/../private", Some("/private")),
            ("/a/b/../../..", Some("/")),
            ("/public/x%20y", Some("/public/x y")),
            ("/public/", Some("/public/")),
            ("/", Some("/")),
            ("/public/a?x=1", Some("/public/a")),
        ] {
            assert_eq!(normalize(raw).as_deref(), want, "{raw}");
        }
        for raw in [
            "/public%2F..%2Fprivate",
            "/public/%2e%2e/private",
            "/private%23/public/",
            "/private%3F/public/",
            "/public\\..\\private",
            "/public/%00",
            "/public/%zz",
            "/public/%",
            "public",
            "*",
            "/public/%ff",
        ] {
            assert_eq!(normalize(raw), None, "{raw}");
        }
    }

    /// SECURITY.md row 5 (oauth2-proxy CVE-2025-54576, CVE-2026-41059):
    /// the query and fragment cannot widen a rule, nor can encodings.
    #[test]
    fn security_05_skip_rules_see_the_path_only() {
        let r = rules(&["^/public/", "GET ^/healthz$"]);
        assert!(is_skipped(&r, &Method::GET, "/public/logo.png"));
        assert!(is_skipped(&r, &Method::POST, "/public/form"));
        assert!(is_skipped(&r, &Method::GET, "/healthz"));
        assert!(!is_skipped(&r, &Method::POST, "/healthz"));
        for raw in [
            "/private?x=/public/",
            "/private?/public/",
            "/private#/public/",
            "/private%23/public/",
            "/private%3F/public/",
            "/public/../private",
            "/public/%2e%2e/private",
            "/public%2F..%2Fprivate",
            "/healthz/../admin",
            "//public/../admin",
            "/private/public/",
        ] {
            assert!(!is_skipped(&r, &Method::GET, raw), "{raw}");
        }
        // An unanchored rule still only sees the path.
        let loose = rules(&["/public/"]);
        assert!(!is_skipped(&loose, &Method::GET, "/private?next=/public/"));
    }
}
