//! Who may see what, as pure functions: which rule governs a request (the
//! first `[[routes]]` block that matches, else `[access]`) and whether a
//! signed-in identity may pass it. No I/O; `proxy::decide` calls these
//! with the canonical, percent-decoded path (`request::Target::decoded`).

use http::Method;

use crate::config::{Access, Allow, GroupMatch, Route};
use crate::identity::{split_email, Identity};

/// What a rule needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// The `Host` (or `:authority`), as sent: the port is ignored here.
    pub host: Option<&'a str>,
    /// The canonical path, percent-decoded.
    pub path: &'a str,
}

/// The host name of a `Host` value: port removed, lower-cased when needed.
/// `[::1]:8080` gives `[::1]`.
pub fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Does `route` apply to this request? Host (port ignored, any letter
/// case), then methods (any letter case: `post` must not slip past a
/// POST rule in case the app reads it as POST), then the path regex.
/// `OPTIONS *` has no path and matches no route.
pub fn route_matches(route: &Route, req: &RequestFacts<'_>) -> bool {
    if !req.path.starts_with('/') {
        return false;
    }
    if let Some(want) = &route.host {
        match req.host {
            Some(h) if host_name(h).eq_ignore_ascii_case(want) => {}
            _ => return false,
        }
    }
    if let Some(methods) = &route.methods {
        let method = req.method.as_str();
        if !methods
            .iter()
            .any(|m| m.as_str().eq_ignore_ascii_case(method))
        {
            return false;
        }
    }
    route.path.is_match(req.path)
}

/// The first route that applies, with its index in `[[routes]]`.
pub fn route_for<'a>(routes: &'a [Route], req: &RequestFacts<'_>) -> Option<(usize, &'a Route)> {
    routes
        .iter()
        .enumerate()
        .find(|(_, r)| route_matches(r, req))
}

/// The rule that governs one request: a route's, or `[access]`'s.
#[derive(Debug, Clone, Copy)]
pub struct Rule<'a> {
    /// The index of the matched route; `None`: `[access]`.
    pub route: Option<usize>,
    /// No session needed (`public = true`).
    pub public: bool,
    /// The lists that apply: the route's when it names any, else `[access]`'s.
    pub allow: &'a Allow,
    /// Only sessions from these providers may pass.
    pub providers: Option<&'a [String]>,
}

/// The rule for a request: the first matching route, else `[access]`.
/// (`skip_auth` is checked before, by `auth::skip`.)
pub fn rule_for<'a>(access: &'a Access, routes: &'a [Route], req: &RequestFacts<'_>) -> Rule<'a> {
    match route_for(routes, req) {
        Some((i, route)) => Rule {
            route: Some(i),
            public: route.public,
            allow: route.allow.as_ref().unwrap_or(&access.allow),
            providers: route.providers.as_deref(),
        },
        None => Rule::access(access),
    }
}

impl<'a> Rule<'a> {
    /// `[access]` alone (no route applies, or none can be known).
    pub fn access(access: &'a Access) -> Rule<'a> {
        Rule {
            route: None,
            public: false,
            allow: &access.allow,
            providers: None,
        }
    }

    /// May this signed-in identity pass?
    pub fn judge(&self, id: &Identity) -> Judgement {
        if let Some(providers) = self.providers {
            if !providers.contains(&id.provider) {
                return Judgement::WrongProvider;
            }
        }
        if allowed(self.allow, id) {
            Judgement::Allowed
        } else {
            Judgement::NotAllowed
        }
    }
}

/// A rule's verdict on a signed-in identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    Allowed,
    /// None of the rule's lists names this identity.
    NotAllowed,
    /// The rule takes sessions from other providers only.
    WrongProvider,
}

/// May this identity pass these lists? With no list, every signed-in
/// identity may. Emails count only when the provider said they are
/// verified (Identity.email is only ever set then). Groups match exactly
/// (letter case included); `"p:g"` only a group from provider `p`.
pub fn allowed(allow: &Allow, id: &Identity) -> bool {
    why_allowed(allow, id).is_some()
}

/// Which entry lets an identity pass a set of lists ([`allowed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Because<'a> {
    /// No list is set: every signed-in identity.
    NoLists,
    /// This `allowed_users` entry.
    User(&'a str),
    /// This `allowed_groups` entry.
    Group(&'a GroupMatch),
    /// This `allowed_emails` entry.
    Email(&'a str),
    /// This `allowed_email_domains` entry.
    Domain(&'a str),
}

/// The entry that lets `id` pass `allow`, in the order users, groups,
/// emails, domains; `None` when none does. [`allowed`] is this.
pub fn why_allowed<'a>(allow: &'a Allow, id: &Identity) -> Option<Because<'a>> {
    if !allow.restricts() {
        return Some(Because::NoLists);
    }
    let user = allow.allowed_users.iter().find(|u| {
        u.len() == id.provider.len() + 1 + id.subject.len()
            && u.starts_with(id.provider.as_str())
            && u.as_bytes()[id.provider.len()] == b':'
            && u.ends_with(id.subject.as_str())
    });
    if let Some(u) = user {
        return Some(Because::User(u));
    }
    if !id.groups.is_empty() {
        let group = allow.allowed_groups.iter().find(|g| {
            g.provider.as_ref().is_none_or(|p| *p == id.provider) && id.groups.contains(&g.group)
        });
        if let Some(g) = group {
            return Some(Because::Group(g));
        }
    }
    let email = id.email.as_deref()?;
    let (_, domain) = split_email(email)?;
    if let Some(e) = allow
        .allowed_emails
        .iter()
        .find(|e| e.eq_ignore_ascii_case(email))
    {
        return Some(Because::Email(e));
    }
    allow
        .allowed_email_domains
        .iter()
        .find(|d| d.eq_ignore_ascii_case(domain))
        .map(|d| Because::Domain(d))
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
            groups: Vec::new(),
        }
    }

    fn access(domains: &[&str], emails: &[&str], users: &[&str]) -> Allow {
        Allow {
            allowed_email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_emails: emails.iter().map(|s| s.to_string()).collect(),
            allowed_users: users.iter().map(|s| s.to_string()).collect(),
            ..Allow::default()
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

    // ----- routes -----------------------------------------------------------------------

    use regex::Regex;

    fn route(path: &str) -> Route {
        Route {
            path: Regex::new(path).unwrap(),
            host: None,
            methods: None,
            allow: None,
            providers: None,
            public: false,
        }
    }

    fn groups(list: &[&str]) -> Vec<GroupMatch> {
        list.iter()
            .map(|g| match g.split_once(':') {
                Some((p, g)) => GroupMatch {
                    provider: Some(p.into()),
                    group: g.into(),
                },
                None => GroupMatch {
                    provider: None,
                    group: (*g).into(),
                },
            })
            .collect()
    }

    fn user(provider: &str, email: Option<&str>, groups: &[&str]) -> Identity {
        Identity {
            provider: provider.into(),
            subject: "1".into(),
            email: email.map(str::to_owned),
            name: None,
            login: None,
            picture: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn groups_match_exactly_and_by_provider() {
        let a = Allow {
            allowed_groups: groups(&["admins", "acme:staff"]),
            ..Allow::default()
        };
        assert!(allowed(&a, &user("google", None, &["admins"])));
        assert!(allowed(&a, &user("acme", None, &["x", "admins"])));
        assert!(allowed(&a, &user("acme", None, &["staff"])));
        assert!(
            !allowed(&a, &user("google", None, &["staff"])),
            "staff only from acme"
        );
        assert!(
            !allowed(&a, &user("acme", None, &["Admins"])),
            "case matters"
        );
        assert!(!allowed(
            &a,
            &user("acme", None, &["admins-x", "acme:staff"])
        ));
        assert!(!allowed(&a, &user("acme", None, &[])));
        // Groups are one list among others: any list lets the identity in.
        let b = Allow {
            allowed_email_domains: vec!["example.com".into()],
            allowed_groups: groups(&["admins"]),
            ..Allow::default()
        };
        assert!(allowed(&b, &user("google", Some("a@example.com"), &[])));
        assert!(allowed(
            &b,
            &user("google", Some("a@other.org"), &["admins"])
        ));
        assert!(!allowed(
            &b,
            &user("google", Some("a@other.org"), &["staff"])
        ));
    }

    #[test]
    fn host_names_lose_their_port() {
        for (host, want) in [
            ("app.example", "app.example"),
            ("app.example:8080", "app.example"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:4180", "127.0.0.1"),
            (" app.example ", "app.example"),
            ("app.example:x", "app.example:x"),
        ] {
            assert_eq!(host_name(host), want, "{host}");
        }
    }

    /// A table of requests against one route list: which rule decides,
    /// and what it says about Alice (google, example.com, no groups), Root
    /// (acme, admins) and Bob (google, other.org).
    #[test]
    fn routes_first_match_host_methods_providers_public_fallback() {
        let access = Access {
            allow: Allow {
                allowed_email_domains: vec!["example.com".into()],
                ..Allow::default()
            },
            ..Access::default()
        };
        let routes = vec![
            // 0: the admin area, admins only (replaces [access]'s domain list).
            Route {
                allow: Some(Allow {
                    allowed_groups: groups(&["admins"]),
                    ..Allow::default()
                }),
                ..route("^/admin/")
            },
            // 1: a health check, public for GET only.
            Route {
                methods: Some(vec![Method::GET]),
                public: true,
                ..route("^/healthz$")
            },
            // 2: a host of its own, acme sessions only, [access]'s lists.
            Route {
                host: Some("ops.example".into()),
                providers: Some(vec!["acme".into()]),
                ..route("^/")
            },
            // 3: never reached for /admin/ (route 0 comes first).
            Route {
                public: true,
                ..route("^/admin/public")
            },
            // 4: every signed-in user (an empty list names a list).
            Route {
                allow: Some(Allow::default()),
                ..route("^/lobby(/|$)")
            },
        ];
        let alice = user("google", Some("alice@example.com"), &[]);
        let root = user("acme", Some("root@ops.example"), &["admins"]);
        let bob = user("google", Some("bob@other.org"), &[]);
        use Judgement::*;
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<usize>,
            &'a str,
            [Judgement; 3],
        );
        let table: &[Row<'_>] = &[
            (
                "GET",
                None,
                "/",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "GET",
                None,
                "/admin/x",
                Some(0),
                "session",
                [NotAllowed, Allowed, NotAllowed],
            ),
            (
                "GET",
                None,
                "/admin/public/x",
                Some(0),
                "session",
                [NotAllowed, Allowed, NotAllowed],
            ),
            (
                "GET",
                None,
                "/x/admin/",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "GET",
                None,
                "/healthz",
                Some(1),
                "public",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "HEAD",
                None,
                "/healthz",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "POST",
                None,
                "/healthz",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "get",
                None,
                "/healthz",
                Some(1),
                "public",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "GET",
                None,
                "/healthz/x",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "GET",
                Some("ops.example"),
                "/x",
                Some(2),
                "session",
                [WrongProvider, NotAllowed, WrongProvider],
            ),
            (
                "GET",
                Some("OPS.example:8443"),
                "/x",
                Some(2),
                "session",
                [WrongProvider, NotAllowed, WrongProvider],
            ),
            (
                "GET",
                Some("ops.example.evil"),
                "/x",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "GET",
                Some("ops.example"),
                "/admin/x",
                Some(0),
                "session",
                [NotAllowed, Allowed, NotAllowed],
            ),
            (
                "GET",
                Some("app.example"),
                "/lobby",
                Some(4),
                "session",
                [Allowed, Allowed, Allowed],
            ),
            (
                "GET",
                None,
                "/lobbyist",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
            (
                "OPTIONS",
                None,
                "*",
                None,
                "session",
                [Allowed, NotAllowed, NotAllowed],
            ),
        ];
        for (method, host, path, want_route, want_kind, want) in table {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let req = RequestFacts {
                method: &method,
                host: *host,
                path,
            };
            let rule = rule_for(&access, &routes, &req);
            let row = format!("{method} {host:?} {path}");
            assert_eq!(rule.route, *want_route, "{row}");
            assert_eq!(rule.public, *want_kind == "public", "{row}");
            let got = [rule.judge(&alice), rule.judge(&root), rule.judge(&bob)];
            if !rule.public {
                assert_eq!(got, *want, "{row}");
            }
        }
        // Root on ops.example: the provider fits, [access]'s domain list does not.
        let ops = RequestFacts {
            method: &Method::GET,
            host: Some("ops.example"),
            path: "/",
        };
        let mut ops_root = root.clone();
        ops_root.email = Some("root@example.com".into());
        assert_eq!(rule_for(&access, &routes, &ops).judge(&ops_root), Allowed);
    }

    // ----- the property test ------------------------------------------------------------

    /// A deterministic pseudo-random source (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
        fn chance(&mut self, one_in: usize) -> bool {
            self.below(one_in) == 0
        }
        fn some<'a, T>(&mut self, items: &'a [T], max: usize) -> Vec<&'a T> {
            (0..self.below(max + 1)).map(|_| self.pick(items)).collect()
        }
    }

    const PREFIXES: [&str; 6] = ["/", "/admin/", "/admin", "/api/", "/a", "/api/v1/"];
    const PATHS: [&str; 9] = [
        "/",
        "/admin",
        "/admin/",
        "/admin/x",
        "/api/",
        "/api/v1/x",
        "/a",
        "/ab",
        "/x/admin/",
    ];
    const HOSTS: [&str; 3] = ["a.example", "b.example", "c.example"];
    const REQUEST_HOSTS: [Option<&str>; 5] = [
        None,
        Some("a.example"),
        Some("A.EXAMPLE:8443"),
        Some("b.example:80"),
        Some("c.example.evil"),
    ];
    const PROVIDERS: [&str; 3] = ["google", "acme", "github"];
    const GROUPS: [&str; 4] = ["admins", "staff", "dev", "ops"];
    const DOMAINS: [&str; 3] = ["example.com", "example.org", "corp.example"];

    /// A route as the generator made it: the path is a literal prefix,
    /// compiled to `^{escaped prefix}` for the real code.
    struct Spec {
        prefix: &'static str,
        route: Route,
    }

    fn gen_allow(rng: &mut Rng) -> Allow {
        Allow {
            allowed_email_domains: rng
                .some(&DOMAINS, 2)
                .into_iter()
                .map(|d| d.to_string())
                .collect(),
            allowed_emails: rng
                .some(&["u1@example.com", "u2@example.org"], 1)
                .into_iter()
                .map(|e| e.to_string())
                .collect(),
            allowed_users: rng
                .some(&["google:1", "acme:2", "github:3"], 1)
                .into_iter()
                .map(|u| u.to_string())
                .collect(),
            allowed_groups: (0..rng.below(3))
                .map(|_| GroupMatch {
                    provider: rng.chance(2).then(|| rng.pick(&PROVIDERS).to_string()),
                    group: rng.pick(&GROUPS).to_string(),
                })
                .collect(),
        }
    }

    /// `^{escaped prefix}`, compiled once per prefix (a `Regex` clone is cheap).
    fn prefix_regex(prefix: &str) -> Regex {
        use std::sync::OnceLock;
        static COMPILED: OnceLock<Vec<Regex>> = OnceLock::new();
        let all = COMPILED.get_or_init(|| {
            PREFIXES
                .iter()
                .map(|p| Regex::new(&format!("^{}", regex::escape(p))).unwrap())
                .collect()
        });
        let i = PREFIXES.iter().position(|p| *p == prefix).unwrap();
        all[i].clone()
    }

    fn gen_route(rng: &mut Rng) -> Spec {
        let prefix = *rng.pick(&PREFIXES);
        let public = rng.chance(5);
        Spec {
            prefix,
            route: Route {
                path: prefix_regex(prefix),
                host: rng.chance(3).then(|| rng.pick(&HOSTS).to_string()),
                methods: rng.chance(3).then(|| {
                    let mut m = vec![rng
                        .pick(&[Method::GET, Method::POST, Method::DELETE])
                        .clone()];
                    if rng.chance(2) {
                        m.push(Method::HEAD);
                    }
                    m
                }),
                allow: (!public && rng.chance(2)).then(|| gen_allow(rng)),
                providers: (!public && rng.chance(3)).then(|| {
                    rng.some(&PROVIDERS, 2)
                        .into_iter()
                        .map(|p| p.to_string())
                        .chain(std::iter::once(rng.pick(&PROVIDERS).to_string()))
                        .collect()
                }),
                public,
            },
        }
    }

    fn gen_identity(rng: &mut Rng) -> Identity {
        let provider = rng.pick(&PROVIDERS).to_string();
        let subject = rng.pick(&["1", "2", "3"]).to_string();
        let email = rng
            .chance(4)
            .then(|| "u1@example.com".to_owned())
            .or_else(|| (!rng.chance(4)).then(|| format!("someone@{}", rng.pick(&DOMAINS))));
        Identity {
            provider,
            subject,
            email,
            name: None,
            login: None,
            picture: None,
            groups: rng
                .some(&GROUPS, 3)
                .into_iter()
                .map(|g| g.to_string())
                .collect(),
        }
    }

    /// What a person would check by hand: the routes in order, each
    /// condition written out; then the lists one by one.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Public,
        Judged(Judgement),
    }

    fn reference(
        access: &Allow,
        specs: &[Spec],
        method: &Method,
        host: Option<&str>,
        path: &str,
        id: &Identity,
    ) -> (Option<usize>, Outcome) {
        let mut chosen = None;
        for (i, s) in specs.iter().enumerate() {
            let r = &s.route;
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(want), Some(got)) => {
                    let name = got.split(':').next().unwrap();
                    name.to_lowercase() == *want
                }
            };
            let method_ok = match &r.methods {
                None => true,
                Some(list) => list.iter().any(|m| m == method),
            };
            if host_ok && method_ok && path.starts_with(s.prefix) {
                chosen = Some(i);
                break;
            }
        }
        let route = chosen.map(|i| &specs[i].route);
        if route.is_some_and(|r| r.public) {
            return (chosen, Outcome::Public);
        }
        if let Some(providers) = route.and_then(|r| r.providers.as_ref()) {
            if !providers.contains(&id.provider) {
                return (chosen, Outcome::Judged(Judgement::WrongProvider));
            }
        }
        let lists = route.and_then(|r| r.allow.as_ref()).unwrap_or(access);
        let no_lists = lists.allowed_email_domains.is_empty()
            && lists.allowed_emails.is_empty()
            && lists.allowed_users.is_empty()
            && lists.allowed_groups.is_empty();
        let user = format!("{}:{}", id.provider, id.subject);
        let mut ok = no_lists || lists.allowed_users.contains(&user);
        for g in &lists.allowed_groups {
            let provider_ok = g.provider.is_none() || g.provider.as_ref() == Some(&id.provider);
            if provider_ok && id.groups.contains(&g.group) {
                ok = true;
            }
        }
        if let Some(email) = &id.email {
            let domain = email.split('@').nth(1).unwrap();
            if lists.allowed_emails.contains(email)
                || lists.allowed_email_domains.iter().any(|d| d == domain)
            {
                ok = true;
            }
        }
        let judgement = if ok {
            Judgement::Allowed
        } else {
            Judgement::NotAllowed
        };
        (chosen, Outcome::Judged(judgement))
    }

    /// 20,000 random route lists, requests and users: the decision equals
    /// the reference evaluation.
    #[test]
    fn property_decisions_equal_the_reference() {
        let mut rng = Rng(0x5EED_0F90_11C1_E5A7);
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for case in 0..20_000 {
            let access = Access {
                allow: gen_allow(&mut rng),
                ..Access::default()
            };
            let specs: Vec<Spec> = (0..rng.below(6)).map(|_| gen_route(&mut rng)).collect();
            let routes: Vec<Route> = specs.iter().map(|s| s.route.clone()).collect();
            let method = rng
                .pick(&[Method::GET, Method::POST, Method::HEAD, Method::DELETE])
                .clone();
            let host = *rng.pick(&REQUEST_HOSTS);
            let path = *rng.pick(&PATHS);
            let id = gen_identity(&mut rng);
            let req = RequestFacts {
                method: &method,
                host,
                path,
            };
            let rule = rule_for(&access, &routes, &req);
            let got = if rule.public {
                Outcome::Public
            } else {
                Outcome::Judged(rule.judge(&id))
            };
            let want = reference(&access.allow, &specs, &method, host, path, &id);
            assert_eq!(
                (rule.route, &got),
                (want.0, &want.1),
                "case {case}: {method} {host:?} {path} as {id:?}\nroutes: {routes:#?}\naccess: {:?}",
                access.allow
            );
            *seen
                .entry(format!("{:?}/{}", got, rule.route.is_some()))
                .or_default() += 1;
        }
        // The generator reaches every outcome, by route and by [access].
        for key in [
            "Public/true",
            "Judged(Allowed)/true",
            "Judged(NotAllowed)/true",
            "Judged(WrongProvider)/true",
            "Judged(Allowed)/false",
            "Judged(NotAllowed)/false",
        ] {
            assert!(seen.get(key).copied().unwrap_or(0) > 100, "{key}: {seen:?}");
        }
    }
}
