//! `portcullis check --explain`: the effective rule table, and how the gate
//! judges one request for a given user, the way operators debug policy.
//!
//! The verdict is the gate's own: [`App::decide`] on a request built here,
//! with a session sealed for the user under the configured secret. The
//! explanation (which rule, which list entry) comes from `auth::policy`,
//! the functions the gate itself calls. Nothing here touches the network.

use std::fmt::Write as _;

use http::Method;
use pingora::http::RequestHeader;

use super::decide::{Denial, Verdict};
use super::request;
use super::App;
use crate::auth::policy::{self, Because, Judgement, RequestFacts};
use crate::config::{Allow, Route};
use crate::identity::Identity;
use crate::session::unix_now;

/// A request to explain.
#[derive(Debug, Clone)]
pub struct Question {
    pub method: Method,
    /// The request-target as a client would send it (`/admin/x?y=1`).
    pub target: String,
    /// The `Host`; default: `server.public_url`'s.
    pub host: Option<String>,
    /// The signed-in user; `None`: no session. Its email counts as verified.
    pub user: Option<Identity>,
}

/// Parses `--user provider:subject` with `--email` and `--groups` into an
/// identity (the email taken as verified, the groups as from that provider).
pub fn identity(user: &str, email: Option<&str>, groups: &[String]) -> Result<Identity, String> {
    let Some((provider, subject)) = user.split_once(':') else {
        return Err(format!(
            "--user {user:?}: expected an X-User value, provider:subject (e.g. google:123)"
        ));
    };
    if provider.is_empty() || subject.is_empty() {
        return Err(format!(
            "--user {user:?}: expected an X-User value, provider:subject (e.g. google:123)"
        ));
    }
    let mut seen = Vec::new();
    for g in groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
        if !seen.iter().any(|s: &String| s == g) {
            seen.push(g.to_owned());
        }
    }
    Ok(Identity {
        provider: provider.to_owned(),
        subject: subject.to_owned(),
        email: email.map(str::to_owned),
        name: None,
        login: None,
        picture: None,
        groups: seen,
    })
}

/// How one set of lists reads.
fn describe_allow(allow: &Allow) -> String {
    if !allow.restricts() {
        return "every signed-in user".to_owned();
    }
    let mut parts = Vec::new();
    let list = |v: &[String]| v.join(", ");
    if !allow.allowed_users.is_empty() {
        parts.push(format!("users {}", list(&allow.allowed_users)));
    }
    if !allow.allowed_groups.is_empty() {
        let groups: Vec<String> = allow.allowed_groups.iter().map(|g| g.to_string()).collect();
        parts.push(format!("groups {}", groups.join(", ")));
    }
    if !allow.allowed_emails.is_empty() {
        parts.push(format!("emails {}", list(&allow.allowed_emails)));
    }
    if !allow.allowed_email_domains.is_empty() {
        parts.push(format!("emails at {}", list(&allow.allowed_email_domains)));
    }
    parts.join("; ")
}

/// Where a route applies.
fn describe_match(route: &Route) -> String {
    let mut out = format!("path {}", route.path.as_str());
    match &route.host {
        Some(h) => write!(out, ", host {h}").unwrap_or_default(),
        None => out.push_str(", any host"),
    }
    match &route.methods {
        Some(m) => {
            let m: Vec<&str> = m.iter().map(Method::as_str).collect();
            write!(out, ", {}", m.join(" ")).unwrap_or_default();
        }
        None => out.push_str(", any method"),
    }
    out
}

/// Who passes a route.
fn describe_route(route: &Route) -> String {
    if route.public {
        return "everyone, without a session (public)".to_owned();
    }
    let lists = match &route.allow {
        Some(allow) => describe_allow(allow),
        None => "[access]'s lists".to_owned(),
    };
    match &route.providers {
        Some(p) => format!("sessions from {} only; {lists}", p.join(", ")),
        None => lists,
    }
}

fn describe_because(b: Because<'_>) -> String {
    match b {
        Because::NoLists => "no allow-list is set: every signed-in user".to_owned(),
        Because::User(u) => format!("allowed_users has {u:?}"),
        Because::Group(g) => format!("allowed_groups has {:?}", g.to_string()),
        Because::Email(e) => format!("allowed_emails has {e:?}"),
        Because::Domain(d) => format!("allowed_email_domains has {d:?}"),
    }
}

impl App {
    /// The rules in the order the gate tries them, with who may pass each.
    pub fn rule_table(&self) -> String {
        let access = &self.settings.access;
        let mut rows: Vec<[String; 3]> = vec![[
            "rule".to_owned(),
            "applies to".to_owned(),
            "who may pass".to_owned(),
        ]];
        rows.push([
            "/oauth2/*".to_owned(),
            "Portcullis's own pages".to_owned(),
            "everyone (sign-in, callbacks, sign-out, userinfo, auth)".to_owned(),
        ]);
        if access.skip_auth_preflight {
            rows.push([
                "skip_auth_preflight".to_owned(),
                "OPTIONS with Origin and Access-Control-Request-Method".to_owned(),
                "everyone, without a session".to_owned(),
            ]);
        }
        for (i, rule) in access.skip_auth.iter().enumerate() {
            let method = rule.method.as_ref().map_or("any method", Method::as_str);
            rows.push([
                format!("skip_auth[{i}]"),
                format!("path {}, {method}", rule.path.as_str()),
                "everyone, without a session".to_owned(),
            ]);
        }
        for (i, route) in self.settings.routes.iter().enumerate() {
            rows.push([
                format!("routes[{i}]"),
                describe_match(route),
                describe_route(route),
            ]);
        }
        rows.push([
            "[access]".to_owned(),
            "every other request".to_owned(),
            describe_allow(&access.allow),
        ]);
        let widths: Vec<usize> = (0..2)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out =
            String::from("Rules in the order they are tried; the first that applies decides:\n");
        for row in &rows {
            let _ = writeln!(
                out,
                "  {:w0$}  {:w1$}  {}",
                row[0],
                row[1],
                row[2],
                w0 = widths[0],
                w1 = widths[1]
            );
        }
        if let Some(api) = &access.api_paths {
            let _ = writeln!(
                out,
                "Without a session, these paths get 401 JSON instead of a redirect: {}",
                api.patterns().join(", ")
            );
        }
        if self.settings.server.trusted_proxies.is_empty() {
            out.push_str(
                "Forward-auth (/oauth2/auth): no trusted_proxies, so [access] alone decides its checks.\n",
            );
        } else {
            let proxies: Vec<String> = self
                .settings
                .server
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect();
            let _ = writeln!(
                out,
                "Forward-auth (/oauth2/auth): the rules above apply to the request described by {}.",
                proxies.join(", ")
            );
        }
        out
    }

    /// How the gate judges `q`: the verdict of [`App::decide`], the rule
    /// that applied and why.
    pub fn explain(&self, q: &Question) -> Result<String, String> {
        let host = q.host.clone().unwrap_or_else(|| {
            let url = &self.settings.server.public_url;
            match url.port() {
                Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            }
        });
        let mut req = RequestHeader::build(q.method.clone(), q.target.as_bytes(), None)
            .map_err(|_| format!("{:?} is not a request-target", q.target))?;
        let header = |e| format!("cannot build the request: {e}");
        req.insert_header(http::header::HOST, &host)
            .map_err(header)?;
        // A browser navigation: without a session it is redirected.
        req.insert_header(http::header::ACCEPT, "text/html")
            .map_err(header)?;
        if let Some(id) = &q.user {
            let name = self.cookie_name();
            let sealed = self.codec.seal_identity_at(name, id, unix_now() + 600);
            req.insert_header(http::header::COOKIE, format!("{name}={sealed}"))
                .map_err(header)?;
        }
        // The gate is async (a Redis lookup may wait); here nothing does:
        // the session is sealed in memory, the store is the cookie.
        let decision = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?
            .block_on(self.decide(&req));

        let mut out = String::new();
        let _ = writeln!(out, "request:  {} {} (Host: {host})", q.method, q.target);
        match &q.user {
            Some(id) => {
                let _ = writeln!(
                    out,
                    "user:     {} (email: {}, groups: {})",
                    id.user(),
                    id.email.as_deref().unwrap_or("none"),
                    if id.groups.is_empty() {
                        "none".to_owned()
                    } else {
                        id.groups.join(", ")
                    }
                );
            }
            None => out.push_str("user:     none (no session)\n"),
        }
        let target = request::canonicalize(&q.method, q.target.as_bytes(), Some(host.as_bytes()));
        let path = match &target {
            Ok(t) => {
                if t.wire() != q.target {
                    let _ = writeln!(
                        out,
                        "judged:   {} (the canonical form, what the app gets)",
                        t.wire()
                    );
                }
                t.decoded().to_owned()
            }
            Err(_) => String::new(),
        };

        // The rule, as the gate chooses it.
        let access = &self.settings.access;
        let rule_line = match &decision.verdict {
            Verdict::Refuse(_) | Verdict::Own(_) => None,
            _ if self.is_public(&q.method, &req.headers, &path) => {
                let i = access.skip_auth.iter().position(|r| {
                    crate::auth::skip::is_skipped(std::slice::from_ref(r), &q.method, &path)
                });
                Some(match i {
                    Some(i) => format!(
                        "skip_auth[{i}] ({}): checked before the routes",
                        access.skip_auth[i].path.as_str()
                    ),
                    None => "skip_auth_preflight".to_owned(),
                })
            }
            _ => {
                let facts = RequestFacts {
                    method: &q.method,
                    host: Some(&host),
                    path: &path,
                };
                let rule = policy::rule_for(access, &self.settings.routes, &facts);
                let mut line = match rule.route {
                    Some(i) => format!(
                        "routes[{i}] ({}): the first route that applies",
                        describe_match(&self.settings.routes[i])
                    ),
                    None => "[access]: no route applies".to_owned(),
                };
                let _ = write!(line, "\nneeds:    ");
                match rule.route {
                    Some(i) => line.push_str(&describe_route(&self.settings.routes[i])),
                    None => line.push_str(&describe_allow(&access.allow)),
                }
                if let (Some(id), false) = (&q.user, rule.public) {
                    let _ = write!(line, "\nbecause:  ");
                    match rule.judge(id) {
                        Judgement::Allowed => line.push_str(
                            &policy::why_allowed(rule.allow, id)
                                .map(describe_because)
                                .unwrap_or_default(),
                        ),
                        Judgement::WrongProvider => {
                            let _ = write!(line, "the session is from {:?}", id.provider);
                        }
                        Judgement::NotAllowed => {
                            line.push_str("no entry of these lists names the user")
                        }
                    }
                }
                Some(line)
            }
        };
        if let Some(line) = rule_line {
            let _ = writeln!(out, "rule:     {line}");
        }
        let verdict = match &decision.verdict {
            Verdict::Refuse(r) => {
                format!("{} refused: {} (never forwarded)", r.status(), r.as_str())
            }
            Verdict::Own(p) => format!("Portcullis's own page {p}"),
            Verdict::Public => "public: forwarded without identity headers".to_owned(),
            Verdict::Forward(id, _) => format!("allowed: forwarded with X-User {}", id.user()),
            Verdict::Forbidden(_, Denial::Lists) => "403: not allowed".to_owned(),
            Verdict::Forbidden(_, Denial::Providers(p)) => format!(
                "403: not allowed; the page offers to sign in with {}",
                p.join(", ")
            ),
            Verdict::BearerForbidden(_) => {
                "403 JSON: a bearer token whose user is not allowed here".to_owned()
            }
            Verdict::SignIn { api: false } => {
                "no session: a browser is sent to /oauth2/sign_in".to_owned()
            }
            Verdict::SignIn { api: true } => "no session: 401 JSON (an API path)".to_owned(),
            Verdict::StoreUnavailable { .. } => {
                "the session store (Redis) cannot answer: 503, never a pass".to_owned()
            }
            Verdict::BearerRejected(e) => format!("401: {e}"),
        };
        let _ = writeln!(out, "verdict:  {verdict}");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::testing::SECRET;

    fn app() -> App {
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example"
trusted_proxies = ["10.0.0.0/8"]

[upstream]
url = "http://127.0.0.1:8080"

[session]
secret = "{SECRET}"

[providers.google]
client_id = "id"
client_secret = "secret"
issuer = "http://127.0.0.1:9"

[providers.acme]
kind = "oidc"
issuer = "http://127.0.0.1:9"
client_id = "id"
client_secret = "secret"
groups_claim = "groups"

[access]
allowed_email_domains = ["example.com"]
skip_auth = ["GET ^/healthz$"]
api_paths = ["^/api/"]

[[routes]]
path = "^/admin/"
allowed_groups = ["acme:admins"]

[[routes]]
path = "^/ops/"
host = "ops.example"
methods = ["GET"]
providers = ["acme"]

[[routes]]
path = "^/status$"
public = true
"#
        );
        crate::proxy::testing::app_from(&toml)
    }

    fn ask(
        app: &App,
        method: &str,
        target: &str,
        host: Option<&str>,
        user: Option<Identity>,
    ) -> String {
        app.explain(&Question {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            target: target.to_owned(),
            host: host.map(str::to_owned),
            user,
        })
        .unwrap()
    }

    fn root() -> Identity {
        identity(
            "acme:9",
            Some("root@ops.example"),
            &["admins".into(), "admins".into()],
        )
        .unwrap()
    }

    fn alice() -> Identity {
        identity("google:7", Some("alice@example.com"), &[]).unwrap()
    }

    #[test]
    fn the_rule_table_lists_every_rule_in_order() {
        let table = app().rule_table();
        let order = [
            "/oauth2/*",
            "skip_auth[0]",
            "routes[0]",
            "routes[1]",
            "routes[2]",
            "[access]",
        ];
        let mut at = 0;
        for name in order {
            let i = table[at..]
                .find(name)
                .unwrap_or_else(|| panic!("{name} missing or out of order:\n{table}"));
            at += i;
        }
        for text in [
            "path ^/admin/, any host, any method",
            "groups acme:admins",
            "path ^/ops/, host ops.example, GET",
            "sessions from acme only; [access]'s lists",
            "everyone, without a session (public)",
            "emails at example.com",
            "401 JSON instead of a redirect: ^/api/",
            "described by 10.0.0.0/8",
        ] {
            assert!(table.contains(text), "{text:?} missing:\n{table}");
        }
    }

    #[test]
    fn a_request_is_explained_with_the_gate_s_own_verdict() {
        let app = app();
        for (method, target, host, user, want) in [
            (
                "GET",
                "/admin/x",
                None,
                Some(root()),
                vec![
                    "routes[0]",
                    "allowed_groups has \"acme:admins\"",
                    "allowed: forwarded with X-User acme:9",
                ],
            ),
            (
                "GET",
                "/%61dmin/x",
                None,
                Some(alice()),
                vec![
                    "judged:   /admin/x",
                    "routes[0]",
                    "no entry of these lists names the user",
                    "403: not allowed",
                ],
            ),
            (
                "GET",
                "/x",
                None,
                Some(alice()),
                vec![
                    "[access]: no route applies",
                    "allowed_email_domains has \"example.com\"",
                    "allowed: forwarded",
                ],
            ),
            (
                "GET",
                "/x",
                None,
                Some(root()),
                vec!["[access]", "403: not allowed"],
            ),
            (
                "GET",
                "/ops/x",
                Some("ops.example:443"),
                Some(alice()),
                vec![
                    "routes[1]",
                    "the session is from \"google\"",
                    "the page offers to sign in with acme",
                ],
            ),
            (
                "POST",
                "/ops/x",
                Some("ops.example"),
                Some(alice()),
                vec!["[access]: no route applies", "allowed: forwarded"],
            ),
            (
                "GET",
                "/status",
                None,
                None,
                vec!["routes[2]", "public: forwarded without identity headers"],
            ),
            (
                "GET",
                "/healthz",
                None,
                None,
                vec!["skip_auth[0]", "public"],
            ),
            (
                "GET",
                "/admin/x",
                None,
                None,
                vec![
                    "routes[0]",
                    "no session: a browser is sent to /oauth2/sign_in",
                ],
            ),
            ("GET", "/api/x", None, None, vec!["no session: 401 JSON"]),
            (
                "GET",
                "/admin/../x",
                None,
                Some(root()),
                vec!["400 refused: path has a dot segment"],
            ),
            (
                "GET",
                "/oauth2/sign_in",
                None,
                None,
                vec!["Portcullis's own page /oauth2/sign_in"],
            ),
        ] {
            let text = ask(&app, method, target, host, user);
            for w in want {
                assert!(
                    text.contains(w),
                    "{method} {target}: {w:?} missing:\n{text}"
                );
            }
        }
    }

    #[test]
    fn users_are_parsed_from_the_command_line() {
        let id = root();
        assert_eq!(id.user(), "acme:9");
        assert_eq!(id.groups, vec!["admins"]);
        assert!(identity("nobody", None, &[]).is_err());
        assert!(identity(":x", None, &[]).is_err());
        assert!(identity("google:", None, &[]).is_err());
    }
}
