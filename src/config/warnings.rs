//! Settings that are valid but risky: `portcullis check` prints them, and
//! `run` logs them at start-up, each with its key. They never stop a start
//! (a loopback demo or a deliberately open site is legitimate); what is
//! never right — `same_site = "none"` without `secure`, for one — is an
//! error in `validate`, not a warning here.

use super::{Issue, ProviderKind, Settings};

/// Every risky setting of `s`, in file order: the same key + message shape
/// as a configuration problem ([`Issue`]), printed as a warning.
pub fn warnings(s: &Settings) -> Vec<Issue> {
    let mut out = Vec::new();
    let mut warn = |key: String, message: String| out.push(Issue { key, message });

    let url = &s.server.public_url;
    if url.scheme() == "http" && !is_loopback(url) {
        warn(
            "server.public_url".into(),
            format!(
                "http:// on {}, a host other people reach: session cookies and sign-in codes cross the network in clear text; use https (tls_cert/tls_key here, or TLS in front)",
                url.host_str().unwrap_or_default()
            ),
        );
    }

    for (i, rule) in s.access.skip_auth.iter().enumerate() {
        let pattern = rule.path.as_str();
        if !pattern.starts_with('^') {
            // A plain pattern gets an example of a path it also matches.
            let plain = pattern
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
            let example = if plain {
                format!(" (also /admin/{})", pattern.trim_start_matches('/'))
            } else {
                String::new()
            };
            warn(
                format!("access.skip_auth[{i}]"),
                format!(
                    "{pattern:?} is not anchored with ^: it matches anywhere in a path{example}, so more paths skip the sign-in than it seems"
                ),
            );
        }
    }
    for (i, route) in s.routes.iter().enumerate() {
        let pattern = route.path.as_str();
        if route.public && !pattern.starts_with('^') {
            warn(
                format!("routes[{i}].path"),
                format!(
                    "{pattern:?} on a public route is not anchored with ^: any path containing it is public"
                ),
            );
        }
    }

    // On a loopback public_url (a demo, a developer's machine) nobody else
    // reaches the site: who could sign in does not matter.
    if !s.access.allow.restricts() && !is_loopback(url) {
        // Providers where anyone can make an account.
        let open: Vec<&str> = s
            .providers
            .iter()
            .filter(|p| match &p.kind {
                ProviderKind::Google { .. } => p.hosted_domains.is_empty(),
                ProviderKind::Twitter(_) | ProviderKind::Facebook(_) => true,
                ProviderKind::Oidc { .. } => false,
            })
            .map(|p| p.id.as_str())
            .collect();
        if !open.is_empty() {
            warn(
                "access".into(),
                format!(
                    "no allow-list, and anyone can make an account with {}: every such account gets in where no [[routes]] rule restricts it; set allowed_email_domains, allowed_emails, allowed_users or allowed_groups (or hosted_domains for Google) unless the site is meant for everyone",
                    open.join(", ")
                ),
            );
        }
    }
    out
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(public_url: &str, extra: &str, provider: &str) -> Settings {
        let secret = crate::session::seal::SessionKey::generate().to_base64();
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:4180"
public_url = "{public_url}"

[upstream]
url = "http://127.0.0.1:8080"

[session]
secret = "{secret}"

{provider}

{extra}
"#
        );
        crate::config::parse(&toml, &|_: &str| None).expect("config")
    }

    const GOOGLE: &str = "[providers.google]\nclient_id = \"id\"\nclient_secret = \"s\"";
    const COMPANY: &str = "[providers.acme]\nkind = \"oidc\"\nissuer = \"https://sso.acme.example\"\nclient_id = \"id\"\nclient_secret = \"s\"";

    fn keys(w: &[Issue]) -> Vec<&str> {
        w.iter().map(|w| w.key.as_str()).collect()
    }

    #[test]
    fn a_restricted_https_site_has_none() {
        let s = settings(
            "https://app.example.com",
            "[access]\nallowed_email_domains = [\"example.com\"]\nskip_auth = [\"^/healthz$\"]",
            GOOGLE,
        );
        assert!(warnings(&s).is_empty(), "{:?}", warnings(&s));
        // A company SSO without lists, and loopback demos: nothing either.
        assert!(warnings(&settings("https://app.example.com", "", COMPANY)).is_empty());
        assert!(warnings(&settings("http://127.0.0.1:4180", "", GOOGLE)).is_empty());
        assert!(warnings(&settings("http://localhost:4180", "", GOOGLE)).is_empty());
    }

    #[test]
    fn each_risk_is_named_by_its_key() {
        let s = settings(
            "http://app.example.com",
            "[access]\nskip_auth = [\"^/ok$\", \"/public\", \"GET static\"]\n\n[[routes]]\npath = \"/docs\"\npublic = true\n\n[[routes]]\npath = \"/admin\"\nallowed_emails = [\"a@example.com\"]",
            GOOGLE,
        );
        let w = warnings(&s);
        assert_eq!(
            keys(&w),
            [
                "server.public_url",
                "access.skip_auth[1]",
                "access.skip_auth[2]",
                "routes[0].path",
                "access"
            ],
            "{w:?}"
        );
        assert!(w[0].message.contains("app.example.com"), "{}", w[0]);
        assert!(w[1].message.contains("/admin/public"), "{}", w[1]);
        assert!(w[4].message.contains("google"), "{}", w[4]);
        // Google limited to a Workspace domain is not open to everyone.
        let hd = settings(
            "https://app.example.com",
            "",
            &format!("{GOOGLE}\nhosted_domains = [\"example.com\"]"),
        );
        assert!(warnings(&hd).is_empty(), "{:?}", warnings(&hd));
    }
}
