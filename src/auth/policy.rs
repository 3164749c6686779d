//! Access rules (`[access]`): which signed-in identities may pass.

use crate::config::Access;
use crate::identity::Identity;

/// Splits an address into (local part, domain), strictly: exactly one `@`,
/// no quotes, whitespace or control characters, a non-empty local part and a
/// domain made of non-empty DNS labels (no trailing dot). Anything else is
/// not an address we will match on (`a@evil.com@example.com`,
/// `"a@evil.com"@example.com`, `a@example.com.`).
pub fn split_email(email: &str) -> Option<(&str, &str)> {
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.contains('@') || local.len() > 64 || domain.len() > 253 {
        return None;
    }
    let bad = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '"' | '\\' | '(' | ')' | ',' | ';' | ':' | '<' | '>' | '[' | ']'
            )
    };
    if local.chars().any(bad) {
        return None;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !domain.split('.').all(label_ok) || !domain.contains('.') {
        return None;
    }
    Some((local, domain))
}

/// May this identity pass? With no allow-list configured, every signed-in
/// identity may. Emails count only when the provider said they are verified
/// (Identity.email is only ever set then).
pub fn allowed(access: &Access, id: &Identity) -> bool {
    if !access.restricts() {
        return true;
    }
    if !access.allowed_users.is_empty() {
        let user_matches = access.allowed_users.iter().any(|u| {
            u.len() == id.provider.len() + 1 + id.subject.len()
                && u.starts_with(id.provider.as_str())
                && u.as_bytes()[id.provider.len()] == b':'
                && u.ends_with(id.subject.as_str())
        });
        if user_matches {
            return true;
        }
    }
    let Some(email) = id.email.as_deref() else {
        return false;
    };
    let Some((_, domain)) = split_email(email) else {
        return false;
    };
    if access
        .allowed_emails
        .iter()
        .any(|e| e.eq_ignore_ascii_case(email))
    {
        return true;
    }
    access
        .allowed_email_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(email: Option<&str>) -> Identity {
        Identity {
            provider: "google".into(),
            subject: "42".into(),
            email: email.map(str::to_owned),
            name: None,
            login: None,
            picture: None,
        }
    }

    fn access(domains: &[&str], emails: &[&str], users: &[&str]) -> Access {
        Access {
            allowed_email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_emails: emails.iter().map(|s| s.to_string()).collect(),
            allowed_users: users.iter().map(|s| s.to_string()).collect(),
            ..Access::default()
        }
    }

    #[test]
    fn no_lists_means_everyone_signed_in() {
        assert!(allowed(&access(&[], &[], &[]), &id(None)));
    }

    /// SECURITY.md row 3 (oauth2-proxy CVE-2021-21291): domains match on label boundaries only.
    #[test]
    fn security_03_domain_match_is_exact() {
        let a = access(&["example.com"], &[], &[]);
        assert!(allowed(&a, &id(Some("alice@example.com"))));
        assert!(allowed(&a, &id(Some("Alice@EXAMPLE.com"))));
        for bad in [
            "alice@badexample.com",
            "alice@example.com.evil.net",
            "alice@sub.example.com",
            "alice@evilexample.com",
            "alice@example.co",
        ] {
            assert!(!allowed(&a, &id(Some(bad))), "{bad}");
        }
    }

    /// SECURITY.md row 4 (oauth2-proxy CVE-2026-40574): malformed addresses never match.
    #[test]
    fn security_04_malformed_emails_never_match() {
        let a = access(&["example.com"], &["bob@example.com"], &[]);
        for bad in [
            "a@evil.com@example.com",
            "\"a@evil.com\"@example.com",
            "alice@example.com.",
            "alice @example.com",
            "@example.com",
            "alice@",
            "alice@example..com",
            "alice@.example.com",
            "alice\n@example.com",
            "alice@example.com\n",
            "bob@example.com@evil.com",
        ] {
            assert!(!allowed(&a, &id(Some(bad))), "{bad:?}");
        }
        assert!(allowed(&a, &id(Some("BOB@example.com"))));
    }

    #[test]
    fn emails_and_users() {
        let a = access(&[], &["alice@gmail.com"], &["twitter:783214"]);
        assert!(allowed(&a, &id(Some("alice@gmail.com"))));
        assert!(!allowed(&a, &id(Some("mallory@gmail.com"))));
        assert!(!allowed(&a, &id(None)));
        let mut tw = id(None);
        tw.provider = "twitter".into();
        tw.subject = "783214".into();
        assert!(allowed(&a, &tw));
        tw.subject = "7832145".into();
        assert!(!allowed(&a, &tw));
        tw.subject = "83214".into();
        assert!(!allowed(&a, &tw));
    }
}
