//! Who may see what, end to end: groups and roles from a real OpenID Connect provider
//! (oidc-provider, tests/oidc-peer) in the ID token, in UserInfo only, Keycloak-style
//! `realm_access.roles` and 300 of them; Entra ID's groups overage; `[[routes]]` (first match,
//! host, methods, providers, public, fallback to `[access]`), all judged on the canonical path;
//! and Google Workspace's `hd` against the mock Google.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{json, location, upstream_header, urlencode, World};
use crate::support::harness::{self, Browser, Portcullis};
use crate::support::mock_google::TestUser;
use crate::support::oidc_peer::{self, OidcPeer, PeerAccount, PeerClient};
use crate::support::upstream::{self, Upstream};

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-peer-secret";
const PROVIDERS: [&str; 3] = ["google", "acme", "kc"];

/// The 300 groups of `many`; realistic lengths, so that the session cookie is split.
fn many_groups() -> Vec<String> {
    (0..300)
        .map(|i| format!("team-{i:03}-engineering"))
        .collect()
}

fn accounts() -> Vec<PeerAccount> {
    let mut kim = PeerAccount::named("kim", "4003").with_claims(
        json!({ "realm_access": { "roles": ["ops", "admins"] } }),
        false,
    );
    // Not at example.com: [access] alone lets kim nowhere.
    kim.email = Some("kim@ops.example".to_owned());
    vec![
        PeerAccount::alice(),
        PeerAccount::named("grace", "4001")
            // Values that are not strings are ignored (with one warning per provider).
            .with_claims(json!({ "groups": ["admins", 7, "staff", null] }), false),
        PeerAccount::named("una", "4002").with_claims(
            json!({ "groups": ["staff", {"id": 1}, "a b,c/Zürich"] }),
            true,
        ),
        kim,
        PeerAccount::named("many", "4004").with_claims(json!({ "groups": many_groups() }), false),
        PeerAccount::named("ezra", "4005").with_claims(
            json!({
                "_claim_names": { "groups": "src1" },
                "_claim_sources": { "src1": {
                    "endpoint": "https://graph.windows.net/tenant/users/4005/getMemberObjects"
                } },
            }),
            false,
        ),
        // Far more than four cookie parts hold (UserInfo has room for it).
        PeerAccount::named("huge", "4006").with_claims(
            json!({ "groups": (0..1000)
                .map(|i| format!("cn=group-{i:04},ou=groups,dc=example,dc=com"))
                .collect::<Vec<_>>() }),
            true,
        ),
    ]
}

fn config(port: u16, upstream: &str, issuer: &str, secret: &str) -> String {
    format!(
        r#"{base}
[providers.google]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"

[providers.acme]
kind = "oidc"
display_name = "Acme SSO"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
groups_claim = "groups"

[providers.kc]
kind = "oidc"
display_name = "Keycloak"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
groups_claim = "realm_access.roles"

[access]
allowed_email_domains = ["example.com"]

[[routes]]
path = "^/admin/"
allowed_groups = ["acme:admins"]

[[routes]]
path = "^/admin/open"          # shadowed by the route above: first match wins
public = true

[[routes]]
path = "^/staff/"
allowed_groups = ["staff"]

[[routes]]
path = "^/ops/"
allowed_groups = ["kc:ops"]

[[routes]]
path = "^/teams/"
allowed_groups = ["team-299-engineering"]

[[routes]]
path = "^/reports/"
methods = ["POST", "DELETE"]
allowed_groups = ["admins"]

[[routes]]
path = "^/"
host = "intranet.localhost"
providers = ["kc"]
allowed_groups = ["kc:ops"]

[[routes]]
path = "^/status$"
public = true

[[routes]]
path = "^/acme-only/"
providers = ["acme", "kc"]
"#,
        base = harness::base_config(port, upstream, secret),
    )
}

struct PolicyWorld {
    peer: OidcPeer,
    upstream: Upstream,
    proxy: Portcullis,
}

impl PolicyWorld {
    async fn start() -> PolicyWorld {
        let port = harness::free_port();
        let uris: Vec<String> = PROVIDERS
            .iter()
            .map(|p| format!("http://127.0.0.1:{port}/oauth2/callback/{p}"))
            .collect();
        let uris: Vec<&str> = uris.iter().map(String::as_str).collect();
        let peer = oidc_peer::start(
            vec![PeerClient::confidential(CLIENT_ID, CLIENT_SECRET, &uris)],
            accounts(),
        )
        .await;
        let upstream = upstream::start().await;
        let secret = harness::session_secret();
        let proxy = harness::start_at(port, |port| {
            config(port, &upstream.base_url, &peer.issuer, &secret)
        })
        .await;
        PolicyWorld {
            peer,
            upstream,
            proxy,
        }
    }

    /// A sign-in through the peer's pages with `provider` as `login`, returning to `rd`;
    /// gives the browser and Portcullis's answer to the callback (not followed).
    async fn callback(
        &self,
        provider: &str,
        login: &str,
        rd: &str,
    ) -> (Browser, reqwest::Response) {
        let mut b = Browser::new();
        let resp = b
            .get(
                &self
                    .proxy
                    .url(&format!("/oauth2/start/{provider}?rd={}", urlencode(rd))),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{}", self.proxy.logs());
        let callback = oidc_peer::sign_in(&mut b, &location(&resp), login).await;
        let resp = b.get(&callback).await;
        (b, resp)
    }

    /// A browser signed in with `provider` as `login`, returned to `rd`.
    async fn signed_in(&self, provider: &str, login: &str, rd: &str) -> Browser {
        let (b, resp) = self.callback(provider, login, rd).await;
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "{login}: {}\npeer:\n{}",
            self.proxy.logs(),
            self.peer.logs()
        );
        assert_eq!(location(&resp), rd);
        b
    }

    /// `method path` with `b`'s session (none for `None`), optionally another `Host`.
    async fn status(
        &self,
        b: Option<&mut Browser>,
        method: &str,
        path: &str,
        host: Option<&str>,
    ) -> (StatusCode, reqwest::Response) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let url = self.proxy.url(path);
        let resp = match b {
            Some(b) => {
                let mut req = b.request(method, &url);
                if let Some(h) = host {
                    req = req.header("host", h);
                }
                b.send(req).await
            }
            None => {
                let mut req = harness::client()
                    .request(method, &url)
                    .header("accept", "text/html");
                if let Some(h) = host {
                    req = req.header("host", h);
                }
                req.send().await.unwrap()
            }
        };
        (resp.status(), resp)
    }
}

/// Four users from one real provider, each with groups from another place (ID token,
/// UserInfo only, Keycloak's `realm_access.roles`, 300 of them in split cookies), each
/// reaches exactly the routes meant for it, and `X-User-Groups` carries its groups as SPEC
/// says.
#[tokio::test]
async fn groups_from_the_real_peer_reach_exactly_their_routes() {
    oidc_peer::require!();
    let w = PolicyWorld::start().await;
    let mut alice = w.signed_in("google", "alice", "/").await;
    let mut grace = w.signed_in("acme", "grace", "/").await;
    let mut una = w.signed_in("acme", "una", "/").await;
    let mut kim = w.signed_in("kc", "kim", "/ops/x").await;
    let mut many = w.signed_in("acme", "many", "/").await;
    // 300 groups do not fit one cookie: the session is split, and still works.
    assert!(
        many.cookie("_portcullis_1").is_some(),
        "expected a split session: {:?}",
        many.cookies().iter().map(|c| &c.name).collect::<Vec<_>>()
    );

    use StatusCode as S;
    const OK: S = S::OK;
    const NO: S = S::FORBIDDEN;
    // method, path: alice, grace, una, kim, many
    let table: &[(&str, &str, [S; 5])] = &[
        ("GET", "/", [OK, OK, OK, NO, OK]),
        ("GET", "/admin/x", [NO, OK, NO, NO, NO]),
        ("GET", "/%61dmin/x", [NO, OK, NO, NO, NO]),
        ("GET", "//admin//x", [NO, OK, NO, NO, NO]),
        ("GET", "/admin/open", [NO, OK, NO, NO, NO]),
        ("GET", "/staff/x", [NO, OK, OK, NO, NO]),
        ("GET", "/ops/x", [NO, NO, NO, OK, NO]),
        ("GET", "/teams/x", [NO, NO, NO, NO, OK]),
        ("GET", "/reports/x", [OK, OK, OK, NO, OK]),
        ("POST", "/reports/x", [NO, OK, NO, OK, NO]),
        ("GET", "/acme-only/x", [NO, OK, OK, NO, OK]),
        ("GET", "/status", [OK, OK, OK, OK, OK]),
    ];
    for (method, path, want) in table {
        let users: [(&str, &mut Browser); 5] = [
            ("alice", &mut alice),
            ("grace", &mut grace),
            ("una", &mut una),
            ("kim", &mut kim),
            ("many", &mut many),
        ];
        for ((name, b), want) in users.into_iter().zip(want) {
            let (got, _) = w.status(Some(b), method, path, None).await;
            assert_eq!(got, *want, "{name}: {method} {path}");
        }
    }

    // X-User-Groups: comma-separated, each group percent-encoded (unreserved kept); forged
    // copies are gone. Each user at a page it may see.
    let cases: [(&mut Browser, &str, Option<String>); 5] = [
        (&mut alice, "/echo", None),
        (&mut grace, "/staff/echo", Some("admins,staff".to_owned())),
        (
            &mut una,
            "/staff/echo",
            Some("staff,a%20b%2Cc%2FZ%C3%BCrich".to_owned()),
        ),
        (&mut kim, "/ops/echo", Some("ops,admins".to_owned())),
        (&mut many, "/teams/echo", Some(many_groups().join(","))),
    ];
    for (b, path, want) in cases {
        let resp = b
            .send(
                b.request(Method::GET, &w.proxy.url(path))
                    .header("X-User-Groups", "forged")
                    .header("x_user_groups", "forged"),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let echo = json(resp).await;
        assert_eq!(upstream_header(&echo, "x-user-groups"), want, "{echo}");
        assert!(
            upstream::header(&echo, "x_user_groups").is_empty(),
            "{echo}"
        );
    }

    // The upstream got the canonical path it was judged on.
    let (s, resp) = w
        .status(Some(&mut grace), "GET", "//admin//%78", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(resp).await["path"], "/admin/x");

    // /oauth2/userinfo lists the groups as they are.
    let resp = una.get(&w.proxy.url("/oauth2/userinfo")).await;
    let info = json(resp).await;
    assert_eq!(info["groups"], json!(["staff", "a b,c/Zürich"]), "{info}");
    assert_eq!(info["user"], "acme:4002");
    let resp = alice.get(&w.proxy.url("/oauth2/userinfo")).await;
    assert_eq!(json(resp).await["groups"], json!([]));

    // The peer was asked for UserInfo for una (groups only there).
    assert!(
        w.peer.logs().contains("GET /me -> 200"),
        "{}",
        w.peer.logs()
    );
    // grace's and una's lists held values that are not strings: one warning for acme.
    let logs = w.proxy.wait_for_log("values that are not strings").await;
    assert_eq!(
        logs.matches("values that are not strings").count(),
        1,
        "{logs}"
    );
}

/// Routes beyond groups: the `providers` restriction ends on a 403 page with buttons for the
/// allowed providers only; a `host` route; `public` routes need no session and send no
/// identity; a sign-in is judged for the page it returns to.
#[tokio::test]
async fn routes_providers_host_public_and_the_sign_in_itself() {
    oidc_peer::require!();
    let w = PolicyWorld::start().await;
    let mut alice = w.signed_in("google", "alice", "/").await;
    let mut kim = w.signed_in("kc", "kim", "/ops/x").await;
    let mut grace = w.signed_in("acme", "grace", "/").await;

    // A Google session on a route for acme and kc: the 403 page offers exactly those two.
    let (s, resp) = w
        .status(Some(&mut alice), "GET", "/acme-only/x?y=1", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("needs an account from Acme SSO or Keycloak"),
        "{html}"
    );
    assert!(
        html.contains("href=\"/oauth2/start/acme?rd=/acme-only/x%3Fy%3D1\""),
        "{html}"
    );
    assert!(html.contains("href=\"/oauth2/start/kc?rd=/acme-only/x%3Fy%3D1\""));
    assert!(!html.contains("/oauth2/start/google"), "{html}");
    // A refusal by the lists offers no provider.
    let (s, resp) = w.status(Some(&mut alice), "GET", "/admin/x", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let html = resp.text().await.unwrap();
    assert!(!html.contains("/oauth2/start/"), "{html}");
    assert!(html.contains("this account does not have access"), "{html}");
    // The same refusal for a script of the page (fetch): JSON, not a page.
    let req = alice
        .request(Method::GET, &w.proxy.url("/admin/x"))
        .header("accept", "application/json")
        .header("sec-fetch-mode", "cors");
    let resp = alice.send(req).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: serde_json::Value = resp.json().await.expect("a JSON 403");
    assert_eq!(body["error"], "forbidden");

    // The host route (any port): kc sessions with the ops role only.
    let intranet = format!("intranet.localhost:{}", w.proxy.port);
    let (s, _) = w.status(Some(&mut kim), "GET", "/", Some(&intranet)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, resp) = w
        .status(Some(&mut grace), "GET", "/", Some("INTRANET.localhost"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"/oauth2/start/kc?rd=/\""), "{html}");
    // Without that Host, [access] (kim is not at example.com).
    let (s, _) = w.status(Some(&mut kim), "GET", "/", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = w.status(Some(&mut grace), "GET", "/", None).await;
    assert_eq!(s, StatusCode::OK);

    // Public: no session needed; with one, no identity is sent and forged copies go.
    let hits = w.upstream.hits();
    let (s, resp) = w.status(None, "GET", "/status", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(w.upstream.hits(), hits + 1);
    assert!(upstream::header(&json(resp).await, "x-user").is_empty());
    let resp = grace
        .send(
            grace
                .request(Method::GET, &w.proxy.url("/%73tatus"))
                .header("x-user-groups", "admins"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = json(resp).await;
    assert_eq!(echo["path"], "/status");
    assert!(upstream::header(&echo, "x-user").is_empty(), "{echo}");
    assert!(
        upstream::header(&echo, "x-user-groups").is_empty(),
        "{echo}"
    );
    // Not public for other paths, nor for a route shadowed by an earlier one.
    for path in ["/status/", "/admin/open"] {
        let (s, resp) = w.status(None, "GET", path, None).await;
        assert_eq!(s, StatusCode::FOUND, "{path}");
        assert!(location(&resp).starts_with("/oauth2/sign_in?rd="));
    }
    // A target that is refused is refused before any route: never public.
    let status = crate::common::raw_status(&w.proxy.base_url, "GET", "/status/..", &[]).await;
    assert_eq!(status, 400);

    // The sign-in is judged for the page it returns to: kim may see /ops/ but not /.
    let (b, resp) = w.callback("kc", "kim", "/").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        b.cookie("_portcullis").is_none(),
        "no session for a refused sign-in"
    );
    // A Google sign-in for a kc-only page: the 403 page offers Keycloak.
    let (b, resp) = w.callback("google", "alice", "/acme-only/y").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(b.cookie("_portcullis").is_none());
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("href=\"/oauth2/start/kc?rd=/acme-only/y\""),
        "{html}"
    );
}

/// Entra ID's groups overage (`_claim_names` instead of `groups`): a 403 page and a log line
/// that name the cause; no session.
#[tokio::test]
async fn a_groups_overage_ends_on_a_403_naming_the_cause() {
    oidc_peer::require!();
    let w = PolicyWorld::start().await;
    let (b, resp) = w.callback("acme", "ezra", "/").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{}", w.proxy.logs());
    assert!(b.cookie("_portcullis").is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("groups overage"), "{html}");
    let logs = w.proxy.wait_for_log("groups overage").await;
    let line = logs
        .lines()
        .find(|l| l.contains("groups overage"))
        .unwrap_or_default();
    assert!(
        line.contains("provider=\"acme\"") || line.contains("provider=acme"),
        "{line}"
    );
    assert!(line.contains("_claim_names"), "{line}");
    // The token's source URL is not echoed.
    assert!(!logs.contains("graph.windows.net"), "{logs}");

    // Groups that no cookie can hold: an error page that says so and a log line, not a
    // redirect loop without a session.
    let (b, resp) = w.callback("acme", "huge", "/").await;
    assert_eq!(
        resp.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        w.proxy.logs()
    );
    assert!(b.cookie("_portcullis").is_none() && b.cookie("_portcullis_0").is_none());
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("more information (groups or roles) than a sign-in cookie can hold"),
        "{html}"
    );
    let logs = w
        .proxy
        .wait_for_log("does not fit in the session cookies")
        .await;
    assert!(logs.contains("groups=1000"), "{logs}");
}

// ---------------------------------------------------------------------------------------------
// Google Workspace: hosted_domains

fn workspace_user(hd: Option<&str>, email: &str) -> TestUser {
    TestUser {
        hd: hd.map(str::to_owned),
        ..TestUser::new("118000000000000000001", email, "Wendy Workspace")
    }
}

/// Signs in at the mock Google as `user` with `hosted_domains` configured; returns the
/// world and the final answer.
async fn workspace_sign_in(domains: &str, user: TestUser) -> (World, reqwest::Response, Browser) {
    let w = World::start_prepared(&format!("hosted_domains = {domains}\n"), |g| {
        g.set_auto_approve(Some(user))
    })
    .await;
    let mut b = Browser::new();
    let resp = w.sign_in(&mut b, "/").await;
    (w, resp, b)
}

/// `hd` is Google's word about the account, the email's domain is not: a Workspace user of a
/// listed domain passes; a consumer account (with an address at the very domain) and another
/// Workspace domain get 403; `hd` is sent to Google when there is one domain.
#[tokio::test]
async fn hosted_domains_trust_the_hd_claim_only() {
    // A Workspace user of the listed domain.
    let (w, resp, _) = workspace_sign_in(
        r#"["example.com"]"#,
        workspace_user(Some("example.com"), "wendy@example.com"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", w.proxy.logs());
    let echo = json(resp).await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some("google:118000000000000000001")
    );
    let auth = w.google.last_authorize().expect("an authorization request");
    assert_eq!(auth.param("hd"), Some("example.com"));

    // A consumer account whose address is at the listed domain: no hd, no entry.
    let (w, resp, b) = workspace_sign_in(
        r#"["example.com"]"#,
        workspace_user(None, "wendy@example.com"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(b.cookie("_portcullis").is_none());
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("does not belong to an organisation"),
        "{html}"
    );
    w.proxy.wait_for_log("hosted domain not allowed").await;
    assert_eq!(w.upstream.hits(), 0);

    // Another Workspace domain (with a listed email domain, even).
    let (w, resp, _) = workspace_sign_in(
        r#"["example.com"]"#,
        workspace_user(Some("other.example"), "wendy@example.com"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let logs = w.proxy.wait_for_log("hosted domain not allowed").await;
    assert!(logs.contains("other.example"), "{logs}");

    // Two domains: either passes, and no hd hint is sent (Google takes one).
    let (w, resp, _) = workspace_sign_in(
        r#"["example.org", "Example.COM"]"#,
        workspace_user(Some("example.com"), "wendy@example.com"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let auth = w.google.last_authorize().expect("an authorization request");
    assert_eq!(auth.param("hd"), None);
}

#[tokio::test]
async fn without_hosted_domains_consumer_accounts_pass_and_no_hd_is_sent() {
    let w = World::start_prepared("", |g| {
        g.set_auto_approve(Some(workspace_user(None, "wendy@gmail.example")))
    })
    .await;
    let (_, echo) = w.signed_in("/").await;
    assert!(upstream_header(&echo, "x-user").is_some());
    assert_eq!(w.google.last_authorize().unwrap().param("hd"), None);
}
