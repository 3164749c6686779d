//! Who may see what, as typed settings: the allow-lists of `[access]` and
//! of each `[[routes]]` block, the routes themselves and
//! `server.trusted_proxies`; and the reading of those keys, every problem
//! named by its key (`routes[2].path`). Evaluation lives in `auth::policy`.

use std::fmt;
use std::net::IpAddr;

use http::Method;
use regex::{Regex, RegexSet};

use super::reader::{Reader, Section};
use super::Access;

/// The allow-lists (`allowed_email_domains`, `allowed_emails`,
/// `allowed_users`, `allowed_groups`) of `[access]` or of one route. An
/// identity that any list names may pass; with no list at all, every
/// signed-in identity may.
#[derive(Debug, Default, Clone)]
pub struct Allow {
    /// `allowed_email_domains`, lower-cased, no leading `@`.
    pub allowed_email_domains: Vec<String>,
    /// `allowed_emails`, lower-cased.
    pub allowed_emails: Vec<String>,
    /// `allowed_users`: `X-User` values, e.g. `google:1234`.
    pub allowed_users: Vec<String>,
    /// `allowed_groups`: `"g"` (group g from any provider) or `"p:g"`.
    pub allowed_groups: Vec<GroupMatch>,
}

impl Allow {
    /// True when any allow-list is set (otherwise every signed-in user may pass).
    pub fn restricts(&self) -> bool {
        !(self.allowed_email_domains.is_empty()
            && self.allowed_emails.is_empty()
            && self.allowed_users.is_empty()
            && self.allowed_groups.is_empty())
    }
}

/// The allow-list keys, in the order they are read and reported.
pub const ALLOW_KEYS: [&str; 4] = [
    "allowed_email_domains",
    "allowed_emails",
    "allowed_users",
    "allowed_groups",
];

/// One entry of `allowed_groups`: `"admins"` matches the group `admins`
/// from any provider; `"acme:staff"` only from provider `acme`. The text
/// before the first `:` is always a provider id, so a group whose name
/// holds a `:` is written with its provider (`"acme:urn:role:x"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMatch {
    pub provider: Option<String>,
    pub group: String,
}

impl fmt::Display for GroupMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.provider {
            Some(p) => write!(f, "{p}:{}", self.group),
            None => f.write_str(&self.group),
        }
    }
}

/// One `[[routes]]` block. Matching is `auth::policy::route_for`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `path`: a regex on the canonical, percent-decoded path.
    pub path: Regex,
    /// `host`: the exact host name (lower-cased, no port), if any.
    pub host: Option<String>,
    /// `methods`, if any: the route applies to these methods only.
    pub methods: Option<Vec<Method>>,
    /// The route's allow-lists when it names at least one of them: they
    /// replace `[access]`'s as a whole. `None`: `[access]`'s apply.
    pub allow: Option<Allow>,
    /// `providers`: only sessions from these providers may pass.
    pub providers: Option<Vec<String>>,
    /// `public = true`: like `skip_auth`, no session needed or sent.
    pub public: bool,
}

/// An address block of `server.trusted_proxies` (`10.0.0.0/8`, `::1/128`;
/// a bare address is a block of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address. A block with host bits set
    /// (`10.0.0.1/8`) is refused: it is most likely a typo.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| {
            format!("{s:?} is not an IP address or address block such as \"10.0.0.0/8\"")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != network {
            return Err(format!(
                "{s:?} has bits set after the first {prefix}; the block is {}",
                Cidr {
                    network: cidr.masked(network),
                    prefix
                }
            ));
        }
        Ok(cidr)
    }

    /// `ip` with the bits after this block's prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Is `ip` in this block? An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// as a dual-stack listener reports IPv4 peers) counts as its IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `server.trusted_proxies`: every entry parsed, each problem named.
pub(super) fn cidrs(r: &mut Reader, s: &mut Section, key: &str) -> Vec<Cidr> {
    let path = s.key(key);
    let mut out = Vec::new();
    for (i, v) in r.strings(s, key).unwrap_or_default().iter().enumerate() {
        match Cidr::parse(v) {
            Ok(c) => out.push(c),
            Err(e) => r.issue(format!("{path}[{i}]"), e),
        }
    }
    out
}

/// `[access]`. `providers` are the configured provider ids (for `"p:g"`).
pub(super) fn access(r: &mut Reader, s: &mut Section, providers: &[&str]) -> Access {
    let allow = allow_lists(r, s, providers);
    let mut access = Access {
        allow,
        ..Access::default()
    };
    let skip_key = s.key("skip_auth");
    for (i, rule) in r
        .strings(s, "skip_auth")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match crate::auth::skip::SkipRule::parse(&rule) {
            Ok(rule) => access.skip_auth.push(rule),
            Err(e) => r.issue(format!("{skip_key}[{i}]"), e),
        }
    }
    access.skip_auth_preflight = r.bool(s, "skip_auth_preflight").unwrap_or(false);
    let api_key = s.key("api_paths");
    if let Some(patterns) = r.strings(s, "api_paths") {
        let mut ok = true;
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = Regex::new(p) {
                r.issue(format!("{api_key}[{i}]"), regex_problem(&e));
                ok = false;
            }
        }
        if ok && !patterns.is_empty() {
            access.api_paths = RegexSet::new(&patterns).ok();
        }
    }
    access
}

/// The four allow-lists of a table (missing ones are empty).
fn allow_lists(r: &mut Reader, s: &mut Section, providers: &[&str]) -> Allow {
    let mut allow = Allow::default();
    let dom_key = s.key("allowed_email_domains");
    for (i, d) in r
        .strings(s, "allowed_email_domains")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            allow.allowed_email_domains.push(d);
        } else {
            r.issue(
                format!("{dom_key}[{i}]"),
                "must be a domain name such as \"example.com\" (subdomains are not included)",
            );
        }
    }
    let em_key = s.key("allowed_emails");
    for (i, e) in r
        .strings(s, "allowed_emails")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let e = e.trim().to_ascii_lowercase();
        if crate::identity::split_email(&e).is_some() {
            allow.allowed_emails.push(e);
        } else {
            r.issue(format!("{em_key}[{i}]"), "is not an email address");
        }
    }
    let users_key = s.key("allowed_users");
    for (i, u) in r
        .strings(s, "allowed_users")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match u.split_once(':') {
            Some((p, sub)) if !p.is_empty() && !sub.is_empty() => allow.allowed_users.push(u),
            _ => r.issue(
                format!("{users_key}[{i}]"),
                "must be an X-User value \"{provider}:{subject}\", e.g. \"google:1234\"",
            ),
        }
    }
    let groups_key = s.key("allowed_groups");
    for (i, g) in r
        .strings(s, "allowed_groups")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let key = format!("{groups_key}[{i}]");
        match g.split_once(':') {
            None if !g.is_empty() => allow.allowed_groups.push(GroupMatch {
                provider: None,
                group: g,
            }),
            None => r.issue(key, "must not be empty"),
            Some((p, group)) => {
                if !providers.contains(&p) {
                    r.issue(
                        key,
                        format!(
                            "{p:?} is not a configured provider: \"provider:group\" takes a provider id \
                             before the first ':' (configured: {})",
                            providers.join(", ")
                        ),
                    );
                } else if group.is_empty() {
                    r.issue(key, "names no group after the ':'");
                } else {
                    allow.allowed_groups.push(GroupMatch {
                        provider: Some(p.to_owned()),
                        group: group.to_owned(),
                    });
                }
            }
        }
    }
    allow
}

/// `[[routes]]`, in file order.
pub(super) fn routes(r: &mut Reader, root: &mut Section, providers: &[&str]) -> Vec<Route> {
    let mut out = Vec::new();
    for mut s in r.array_of_tables(root, "routes") {
        if let Some(route) = route(r, &mut s, providers) {
            out.push(route);
        }
        r.finish(s);
    }
    out
}

fn route(r: &mut Reader, s: &mut Section, providers: &[&str]) -> Option<Route> {
    let path_key = s.key("path");
    let path = r
        .required_string(s, "path")
        .and_then(|p| match Regex::new(&p) {
            Ok(re) if !p.is_empty() => Some(re),
            Ok(_) => {
                r.issue(&path_key, "must not be empty (\"^/\" matches every path)");
                None
            }
            Err(e) => {
                r.issue(&path_key, regex_problem(&e));
                None
            }
        });

    let host_key = s.key("host");
    let host = r.string(s, "host").and_then(|h| {
        let h = h.trim().to_ascii_lowercase();
        let bracketed = h.starts_with('[')
            && h.ends_with(']')
            && h[1..h.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
        let name = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if bracketed || name {
            Some(h)
        } else if h.contains(':') && !h.starts_with('[') {
            r.issue(
                &host_key,
                "must be a host name without a port (the port of Host is ignored)",
            );
            None
        } else {
            r.issue(
                &host_key,
                format!("{h:?} is not a host name such as \"admin.example.com\""),
            );
            None
        }
    });

    let methods_key = s.key("methods");
    let methods = r.strings(s, "methods").and_then(|list| {
        if list.is_empty() {
            r.issue(
                &methods_key,
                "must name at least one method (leave the key out for every method)",
            );
            return None;
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let upper = !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase());
            match Method::from_bytes(m.as_bytes()) {
                Ok(method) if upper => out.push(method),
                _ => r.issue(
                    format!("{methods_key}[{i}]"),
                    format!("{m:?} is not an HTTP method in upper case, such as \"GET\""),
                ),
            }
        }
        Some(out)
    });

    let names_lists = ALLOW_KEYS.iter().any(|k| s.contains(k));
    let allow = allow_lists(r, s, providers);

    let providers_key = s.key("providers");
    let only = r.strings(s, "providers").and_then(|list| {
        if list.is_empty() {
            r.issue(
                &providers_key,
                "must name at least one provider (leave the key out for every provider)",
            );
            return None;
        }
        for (i, p) in list.iter().enumerate() {
            if !providers.contains(&p.as_str()) {
                r.issue(
                    format!("{providers_key}[{i}]"),
                    format!(
                        "{p:?} is not a configured provider (configured: {})",
                        providers.join(", ")
                    ),
                );
            }
        }
        Some(list)
    });

    let public_key = s.key("public");
    let public = r.bool(s, "public").unwrap_or(false);
    if public && (names_lists || only.is_some()) {
        r.issue(
            public_key,
            "a public route lets everyone through: it takes no allowed_* lists and no providers",
        );
    }

    Some(Route {
        path: path?,
        host,
        methods,
        allow: names_lists.then_some(allow),
        providers: only,
        public,
    })
}

/// The last line of a regex error (the others repeat the pattern).
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    format!(
        "invalid regex: {}",
        text.lines().last().unwrap_or(&text).trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn cidr_blocks() {
        let lo = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(lo.contains("127.0.0.1".parse().unwrap()));
        assert!(lo.contains("127.255.0.9".parse().unwrap()));
        assert!(!lo.contains("128.0.0.1".parse().unwrap()));
        assert!(
            lo.contains("::ffff:127.0.0.1".parse().unwrap()),
            "v4-mapped"
        );
        assert!(!lo.contains("::1".parse().unwrap()));
        let one = Cidr::parse("10.1.2.3").unwrap();
        assert!(one.contains(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
        assert!(!one.contains(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 4))));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Cidr::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.1/8",
            "localhost",
            "10.0.0.0/8/8",
            "::1/129",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("the block is 10.0.0.0/8"));
    }

    #[test]
    fn group_entries_display_as_written() {
        let g = GroupMatch {
            provider: Some("acme".into()),
            group: "urn:x".into(),
        };
        assert_eq!(g.to_string(), "acme:urn:x");
    }
}
