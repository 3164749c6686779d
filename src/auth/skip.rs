//! Public routes (`access.skip_auth`): `[METHOD ]regex` rules matched
//! against the canonical, percent-decoded path only — never the query or
//! fragment — so that a rule cannot be widened by encoding tricks.

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

/// Does a rule let this request through without a session? `path` is the
/// canonical path, percent-decoded (`proxy::request::Target::decoded`):
/// dot segments, encoded delimiters and the rest were refused or rewritten
/// before any rule runs, so a rule sees exactly what the upstream gets.
/// Only paths take part: `OPTIONS *` is never skipped.
pub fn is_skipped(rules: &[SkipRule], method: &Method, path: &str) -> bool {
    path.starts_with('/')
        && rules
            .iter()
            .any(|r| r.method.as_ref().is_none_or(|m| m == method) && r.path.is_match(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<SkipRule> {
        list.iter().map(|r| SkipRule::parse(r).unwrap()).collect()
    }

    /// A request as the proxy judges it: canonical target first (refused
    /// targets are never skipped: they are answered 400), then the rules.
    fn skipped(rules: &[SkipRule], method: &Method, raw: &str) -> bool {
        crate::proxy::request::canonicalize(method, raw.as_bytes(), None)
            .is_ok_and(|t| is_skipped(rules, method, t.decoded()))
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

    /// SECURITY.md row 5 (oauth2-proxy CVE-2025-54576, CVE-2026-41059):
    /// the query and fragment cannot widen a rule, nor can encodings.
    #[test]
    fn security_05_skip_rules_see_the_path_only() {
        let r = rules(&["^/public/", "GET ^/healthz$"]);
        assert!(skipped(&r, &Method::GET, "/public/logo.png"));
        assert!(skipped(&r, &Method::POST, "/public/form"));
        assert!(skipped(&r, &Method::GET, "/healthz"));
        assert!(!skipped(&r, &Method::POST, "/healthz"));
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
            assert!(!skipped(&r, &Method::GET, raw), "{raw}");
        }
        // What the rules see is the canonical path the upstream gets:
        // merged slashes and decoded unreserved characters open the same
        // rule as the plain form (and are forwarded in the plain form).
        assert!(skipped(&r, &Method::GET, "//public//logo.png"));
        assert!(skipped(&r, &Method::GET, "/%70ublic/logo.png"));
        assert!(!skipped(&r, &Method::GET, "/public/..;/admin"));
        assert!(!skipped(&r, &Method::GET, "/public/x;.png"));
        // `OPTIONS *` is no path: even a rule matching anything skips it not.
        let any = rules(&[".*"]);
        assert!(!skipped(&any, &Method::OPTIONS, "*"));
        assert!(skipped(&any, &Method::OPTIONS, "/x"));
        // An unanchored rule still only sees the path.
        let loose = rules(&["/public/"]);
        assert!(!skipped(&loose, &Method::GET, "/private?next=/public/"));
    }
}
