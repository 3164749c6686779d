//! Every flow through the real pages in a real browser: headless Chromium driven over
//! WebDriver (`support/webdriver.rs`), against the local providers (the Google-like, X
//! OAuth 2.0 and 1.0a and Facebook mocks, and the real OIDC peer), the echo upstream and
//! nginx. Each test has its own Chromium; the pages are checked as a person would (sizes,
//! tap targets, contrast, axe-core, keyboard, dark mode, nothing loaded from elsewhere) and
//! photographed at both sizes into `target/screenshots/` (see [`check_page`]).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::support::harness::{self, Portcullis};
use crate::support::mock_facebook::{self, MockFacebook};
use crate::support::mock_google::{self, MockGoogle};
use crate::support::mock_x::{self, MockX};
use crate::support::nginx;
use crate::support::oidc_peer::{self, OidcPeer, PeerAccount, PeerClient};
use crate::support::upstream::{self, Upstream};
use crate::support::webdriver::{self, keys, Session, Viewport, DESKTOP, PHONE};

const GOOGLE_ID: &str = "test-client.apps.googleusercontent.com";
const GOOGLE_SECRET: &str = "test-google-secret";
const X_ID: &str = "x-oauth2-client";
const X_SECRET: &str = "x-oauth2-secret";
const X_KEY: &str = "x-consumer-key";
const X_KEY_SECRET: &str = "x-consumer-secret";
const FB_ID: &str = "fb-app-id";
const FB_SECRET: &str = "fb-app-secret";
const PEER_ID: &str = "portcullis";
const PEER_SECRET: &str = "portcullis-peer-secret";

/// Portcullis with every kind of provider, in front of the echo upstream. `/admin/` is for
/// alice@example.com only (the 403 page).
struct World {
    google: MockGoogle,
    _x: MockX,
    _fb: MockFacebook,
    _peer: OidcPeer,
    upstream: Upstream,
    proxy: Portcullis,
}

fn config(
    port: u16,
    w: (&MockGoogle, &MockX, &MockFacebook, &OidcPeer, &Upstream),
    extra: &str,
) -> String {
    let (google, x, fb, peer, upstream) = w;
    format!(
        r#"{base}
[providers.google]
client_id = "{GOOGLE_ID}"
client_secret = "{GOOGLE_SECRET}"
issuer = "{google_issuer}"

[providers.twitter]
client_id = "{X_ID}"
client_secret = "{X_SECRET}"
authorize_url = "{x_authorize}"
token_url = "{x_token}"
userinfo_url = "{x_me}"

[providers.xlegacy]
kind = "twitter"
display_name = "X (OAuth 1.0a)"
protocol = "oauth1"
client_id = "{X_KEY}"
client_secret = "{X_KEY_SECRET}"
request_token_url = "{x_request_token}"
authorize_url = "{x_authenticate}"
access_token_url = "{x_access_token}"
userinfo_url = "{x_verify}"

[providers.facebook]
client_id = "{FB_ID}"
client_secret = "{FB_SECRET}"
authorize_url = "{fb_dialog}"
token_url = "{fb_token}"
userinfo_url = "{fb_me}"

[providers.acme]
kind = "oidc"
display_name = "Acme SSO"
issuer = "{peer_issuer}"
client_id = "{PEER_ID}"
client_secret = "{PEER_SECRET}"

[[routes]]
path = "^/admin/"
allowed_emails = ["alice@example.com"]

[[routes]]
path = "^/acme-only/"
providers = ["acme"]

{extra}
"#,
        base = harness::base_config(port, &upstream.base_url, &harness::session_secret()),
        google_issuer = google.issuer(),
        x_authorize = x.authorize_url(),
        x_token = x.token_url(),
        x_me = x.users_me_url(),
        x_request_token = x.request_token_url(),
        x_authenticate = x.authenticate_url(),
        x_access_token = x.access_token_url(),
        x_verify = x.verify_credentials_url(),
        fb_dialog = fb.dialog_url(),
        fb_token = fb.token_url(),
        fb_me = fb.me_url(),
        peer_issuer = peer.issuer,
    )
}

impl World {
    async fn start(extra: &str) -> World {
        let port = harness::free_port();
        let callback = format!("http://127.0.0.1:{port}/oauth2/callback/acme");
        let peer = oidc_peer::start(
            vec![PeerClient::confidential(PEER_ID, PEER_SECRET, &[&callback])],
            vec![PeerAccount::alice(), PeerAccount::bob()],
        )
        .await;
        let google = mock_google::start(GOOGLE_ID, GOOGLE_SECRET).await;
        let x = mock_x::start(X_ID, X_SECRET, X_KEY, X_KEY_SECRET).await;
        let fb = mock_facebook::start(FB_ID, FB_SECRET).await;
        let upstream = upstream::start().await;
        let proxy = harness::start_at(port, |port| {
            config(port, (&google, &x, &fb, &peer, &upstream), extra)
        })
        .await;
        World {
            google,
            _x: x,
            _fb: fb,
            _peer: peer,
            upstream,
            proxy,
        }
    }

    fn url(&self, path: &str) -> String {
        self.proxy.url(path)
    }
}

/// Skips (or fails under CI) without Chromium or the OIDC peer.
fn missing_peers(test: &str) -> bool {
    webdriver::skip_or_fail(test) || oidc_peer::skip_or_fail(test)
}

/// The echo upstream's JSON as the browser shows it.
async fn echo(s: &Session) -> Value {
    s.wait_for("document.readyState === 'complete' && document.body && document.body.innerText.trim().startsWith('{')")
        .await;
    let text = s
        .execute(
            "const pre = document.querySelector('pre'); return pre ? pre.textContent : document.body.innerText",
            json!([]),
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not the upstream's JSON ({e}): {text}"))
}

/// The one value of header `name` the upstream received.
fn header(echo: &Value, name: &str) -> Option<String> {
    upstream::header(echo, name)
        .first()
        .map(|s| (*s).to_owned())
}

/// Which account to pick on a provider's page, and how.
#[derive(Clone, Copy)]
enum Account {
    /// A button on a mock's chooser: `button[name=..][value=..]`.
    Button(&'static str, &'static str),
    /// The OIDC peer's login form (login name), then its consent page.
    Peer(&'static str),
}

/// On the provider's pages: picks `account`, until the browser leaves the provider.
async fn choose(s: &Session, account: Account) {
    match account {
        Account::Button(name, value) => {
            s.click_on(&format!("button[name={name}][value=\"{value}\"]"))
                .await;
        }
        Account::Peer(login) => {
            let field = s.find("input[name=login]").await;
            s.type_into(&field, login).await;
            let password = s.find("input[name=password]").await;
            s.type_into(&password, "any password works").await;
            s.click_on("button[type=submit]").await;
            s.wait_for("document.querySelector('input[name=prompt][value=consent]')")
                .await;
            s.click_on("button[type=submit]").await;
        }
    }
}

/// From the picker: the button for `provider`, then `account` on the provider's page;
/// returns once the browser is back at `path` on Portcullis's origin.
async fn sign_in_from_picker(s: &Session, w: &World, provider: &str, account: Account, path: &str) {
    s.wait_for_path("/oauth2/sign_in").await;
    s.click_on(&format!("a[href^=\"/oauth2/start/{provider}?\"]"))
        .await;
    choose(s, account).await;
    s.wait_for(&format!(
        "location.origin === {} && location.pathname === {} && document.readyState === 'complete'",
        json!(w.url("")),
        json!(path)
    ))
    .await;
}

#[tokio::test]
async fn every_provider_signs_in_through_the_real_pages() {
    if missing_peers("every_provider_signs_in_through_the_real_pages") {
        return;
    }
    let w = World::start("").await;
    let cases = [
        (
            "google",
            Account::Button("sub", "110169484474386276334"),
            "google:110169484474386276334",
            Some("alice@example.com"),
        ),
        ("twitter", Account::Button("user", "12"), "twitter:12", None),
        ("xlegacy", Account::Button("user", "12"), "xlegacy:12", None),
        (
            "facebook",
            Account::Button("user", "10158234567890123"),
            "facebook:10158234567890123",
            Some("alice@example.com"),
        ),
        (
            "acme",
            Account::Peer("alice"),
            "acme:248289761001",
            Some("alice@example.com"),
        ),
    ];
    for (provider, account, user, email) in cases {
        let s = Session::start(DESKTOP).await;
        s.goto(&w.url("/dashboard?tab=2")).await;
        // Sent to the picker, which keeps the way back.
        s.wait_for_path("/oauth2/sign_in").await;
        assert!(
            s.url().await.ends_with("?rd=/dashboard%3Ftab%3D2"),
            "{}",
            s.url().await
        );
        sign_in_from_picker(&s, &w, provider, account, "/dashboard").await;
        let echo = echo(&s).await;
        assert_eq!(echo["query"], "tab=2", "{provider}");
        assert_eq!(
            header(&echo, "x-user").as_deref(),
            Some(user),
            "{provider}: {echo}"
        );
        assert_eq!(header(&echo, "x-user-provider").as_deref(), Some(provider));
        // (X shares an email only when asked for it: not configured here.)
        if email.is_some() {
            assert_eq!(
                header(&echo, "x-user-email").as_deref(),
                email,
                "{provider}"
            );
        }
        // A real browser's navigation: the session cookie is not readable by scripts.
        let script_cookies = s.execute("return document.cookie", json!([])).await;
        assert!(
            !script_cookies
                .as_str()
                .unwrap_or_default()
                .contains("_portcullis="),
            "{script_cookies}"
        );
    }
}

#[tokio::test]
async fn denial_the_403_page_and_use_another_account() {
    if missing_peers("denial_the_403_page_and_use_another_account") {
        return;
    }
    let w = World::start("").await;
    let s = Session::start(PHONE).await;

    // Saying no at the provider ends on a readable error page with a way back.
    s.goto(&w.url("/admin/panel")).await;
    s.wait_for_path("/oauth2/sign_in").await;
    s.click_on("a[href^=\"/oauth2/start/google?\"]").await;
    s.click_on("button[name=deny]").await;
    s.wait_for("document.querySelector('p.eyebrow')").await;
    let text = s.text().await;
    assert!(text.to_lowercase().contains("error 401"), "{text}");
    assert!(text.contains("cancelled"), "{text}");
    s.click_on("a.btn-quiet").await;
    s.wait_for_path("/oauth2/sign_in").await;

    // Bob (unverified email) signs in and uses the app, but may not see /admin/: the 403 page.
    s.goto(&w.url("/home")).await;
    sign_in_from_picker(
        &s,
        &w,
        "google",
        Account::Button("sub", "104735893746372625501"),
        "/home",
    )
    .await;
    s.goto(&w.url("/admin/panel")).await;
    s.wait_for("document.title === 'No access'").await;
    let text = s.text().await;
    assert!(
        text.contains("No access") && text.contains("does not have access"),
        "{text}"
    );
    // (The browser's own /favicon.ico requests may reach the app; /admin/ never does.)
    assert!(
        w.upstream
            .requests()
            .iter()
            .all(|r| !r["path"].as_str().unwrap_or_default().starts_with("/admin")),
        "the upstream saw a denied request: {:?}",
        w.upstream.requests()
    );

    // "Use another account" signs Bob out and offers the picker; Alice gets in.
    s.click_on("form[action^=\"/oauth2/sign_out?rd=/oauth2/sign_in\"] button")
        .await;
    s.wait_for_path("/oauth2/sign_in").await;
    assert!(!s.text().await.contains("signed in as"), "still signed in");
    s.goto(&w.url("/admin/panel")).await;
    sign_in_from_picker(
        &s,
        &w,
        "google",
        Account::Button("sub", "110169484474386276334"),
        "/admin/panel",
    )
    .await;
    let echo = echo(&s).await;
    assert_eq!(
        header(&echo, "x-user-email").as_deref(),
        Some("alice@example.com")
    );
}

#[tokio::test]
async fn sign_out_and_the_back_button() {
    if missing_peers("sign_out_and_the_back_button") {
        return;
    }
    let w = World::start("").await;
    let s = Session::start(DESKTOP).await;
    s.goto(&w.url("/first")).await;
    sign_in_from_picker(
        &s,
        &w,
        "google",
        Account::Button("sub", "110169484474386276334"),
        "/first",
    )
    .await;
    s.goto(&w.url("/second")).await;
    assert_eq!(echo(&s).await["path"], "/second");

    // Back after signing in: the earlier app page, still signed in; not the provider.
    s.back().await;
    s.wait_for_path("/first").await;
    assert_eq!(echo(&s).await["path"], "/first");
    s.forward().await;
    s.wait_for_path("/second").await;

    // Sign out from the picker's button (a POST form).
    s.goto(&w.url("/oauth2/sign_in")).await;
    assert!(
        s.text().await.contains("signed in as"),
        "{}",
        s.text().await
    );
    s.click_on("form[action^=\"/oauth2/sign_out\"] button")
        .await;
    s.wait_for("location.pathname === '/oauth2/sign_in' && !document.body.innerText.includes('signed in as')")
        .await;
    let hits = w.upstream.hits();

    // Back after signing out: no app page comes back from the cache or the app.
    s.back().await;
    s.wait_for("document.readyState === 'complete'").await;
    s.refresh().await;
    s.wait_for_path("/oauth2/sign_in").await;
    s.back().await;
    s.wait_for("document.readyState === 'complete'").await;
    s.refresh().await;
    s.wait_for_path("/oauth2/sign_in").await;
    let after: Vec<_> = w.upstream.requests()[hits..]
        .iter()
        .filter(|r| r["path"] != "/favicon.ico")
        .cloned()
        .collect();
    assert!(
        after.is_empty(),
        "the app answered after sign-out: {after:?}"
    );
    let text = s.text().await;
    assert!(!text.contains("x-user"), "{text}");
}

#[tokio::test]
async fn three_tabs_sign_in_at_once() {
    if missing_peers("three_tabs_sign_in_at_once") {
        return;
    }
    let w = World::start("").await;
    let s = Session::start(DESKTOP).await;
    let paths = ["/one", "/two", "/three"];
    // Three tabs each reach the provider's chooser before any signs in.
    let mut tabs = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        if i > 0 {
            s.new_tab().await;
        }
        tabs.push(s.current_tab().await);
        s.goto(&w.url(path)).await;
        s.wait_for_path("/oauth2/sign_in").await;
        s.click_on("a[href^=\"/oauth2/start/google?\"]").await;
        s.find("button[name=sub]").await;
    }
    // Then each picks Alice and lands on its own page.
    for (tab, path) in tabs.iter().zip(paths) {
        s.switch_to(tab).await;
        choose(&s, Account::Button("sub", "110169484474386276334")).await;
        s.wait_for(&format!(
            "location.origin === {} && location.pathname === {}",
            json!(w.url("")),
            json!(path)
        ))
        .await;
        let echo = echo(&s).await;
        assert_eq!(echo["path"], path);
        assert_eq!(
            header(&echo, "x-user").as_deref(),
            Some("google:110169484474386276334")
        );
    }
    assert_eq!(w.google.token_hits(), 3);
}

#[tokio::test]
async fn an_api_fetch_gets_the_401_json_not_a_redirect() {
    if missing_peers("an_api_fetch_gets_the_401_json_not_a_redirect") {
        return;
    }
    let w = World::start("").await;
    let s = Session::start(DESKTOP).await;
    s.goto(&w.url("/app")).await;
    sign_in_from_picker(
        &s,
        &w,
        "google",
        Account::Button("sub", "110169484474386276334"),
        "/app",
    )
    .await;
    let fetch = "const done = arguments[arguments.length - 1];
        fetch(arguments[0], {credentials: 'same-origin'})
          .then(r => r.text().then(body => done({status: r.status, redirected: r.redirected, type: r.headers.get('content-type'), body})))
          .catch(e => done({error: String(e)}));";
    // Signed in, the app's own script reaches the app.
    let ok = s.execute_async(fetch, json!(["/api/items"])).await;
    assert_eq!(ok["status"], 200, "{ok}");
    // Signed out in another tab: the same fetch gets 401 JSON, not the picker.
    let app_tab = s.current_tab().await;
    s.new_tab().await;
    s.goto(&w.url("/oauth2/sign_in")).await;
    s.click_on("form[action^=\"/oauth2/sign_out\"] button")
        .await;
    s.wait_for("location.pathname === '/oauth2/sign_in' && !document.body.innerText.includes('signed in as')")
        .await;
    s.switch_to(&app_tab).await;
    let denied = s.execute_async(fetch, json!(["/api/items"])).await;
    assert_eq!(denied["status"], 401, "{denied}");
    assert_eq!(denied["redirected"], false, "{denied}");
    assert!(
        denied["type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("application/json"),
        "{denied}"
    );
    let body: Value = serde_json::from_str(denied["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {denied}"));
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn forward_auth_through_the_real_nginx() {
    if webdriver::skip_or_fail("forward_auth_through_the_real_nginx")
        || nginx::skip_or_fail("forward_auth_through_the_real_nginx")
    {
        return;
    }
    let google = mock_google::start(GOOGLE_ID, GOOGLE_SECRET).await;
    let app = upstream::start().await;
    let unused = upstream::start().await;
    let secret = harness::session_secret();
    let mut started = None;
    for _ in 0..3 {
        let port = harness::free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        let portcullis = harness::start(|p| {
            harness::google_config(p, &unused.base_url, &google, &secret, "").replace(
                &format!("public_url = \"http://127.0.0.1:{p}\""),
                &format!("public_url = \"{public_url}\""),
            )
        })
        .await;
        if portcullis.port == port {
            continue;
        }
        let addr = format!("127.0.0.1:{}", portcullis.port);
        if let Ok(front) = nginx::start_at(port, &addr, &app.addr.to_string()).await {
            started = Some((portcullis, front));
            break;
        }
    }
    let (_portcullis, front) = started.expect("nginx and Portcullis on free ports");
    let s = Session::start(PHONE).await;
    s.goto(&front.url("/reports?q=1")).await;
    s.wait_for_path("/oauth2/sign_in").await;
    assert_eq!(
        s.url().await.split('/').nth(2),
        front.url("").split('/').nth(2)
    );
    s.click_on("a[href^=\"/oauth2/start/google?\"]").await;
    choose(&s, Account::Button("sub", "110169484474386276334")).await;
    s.wait_for(&format!(
        "location.origin === {} && location.pathname === '/reports'",
        json!(front.url(""))
    ))
    .await;
    let echo = echo(&s).await;
    assert_eq!(echo["query"], "q=1");
    assert_eq!(
        header(&echo, "x-user").as_deref(),
        Some("google:110169484474386276334")
    );
    assert_eq!(
        unused.hits(),
        0,
        "Portcullis proxied what nginx should serve"
    );
}

// ---------------------------------------------------------------------------------------------
// Checks a person would make

/// The folder of this test binary's screenshots: `target/screenshots/`.
fn shots() -> PathBuf {
    webdriver::screenshot_dir()
}

/// One page checked as a person would, at the current viewport: see `CHECKS_JS`.
/// Returns the problems found.
async fn page_problems(s: &Session) -> Vec<String> {
    let report = s.execute(CHECKS_JS, json!([])).await;
    report
        .as_array()
        .unwrap_or_else(|| panic!("checks: {report}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// axe-core's serious and critical violations on the current page.
async fn axe_violations(s: &Session) -> Vec<String> {
    let source = axe_source();
    s.execute(&format!("{source}\n;return true;"), json!([]))
        .await;
    let result = s
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']}).then(r => done(
               r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))
             )).catch(e => done(['axe failed: ' + e]));",
            json!([]),
        )
        .await;
    result
        .as_array()
        .unwrap_or_else(|| panic!("axe: {result}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn axe_source() -> &'static str {
    static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/node_modules/axe-core/axe.min.js"
        );
        std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{path}: {e} (scripts/install-deps test runs npm ci in tests/browser)")
        })
    })
}

/// Checks the page now shown, at both sizes and in light and dark, and saves screenshots
/// named `{name}-{size}-{scheme}.png`. Panics listing every problem.
async fn check_page(s: &Session, name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (viewport, size) in [(PHONE, "390x844"), (DESKTOP, "1280x800")] {
        for dark in [false, true] {
            set_view(s, viewport, dark).await;
            let scheme = if dark { "dark" } else { "light" };
            let at = format!("{name} {size} {scheme}");
            for p in page_problems(s).await {
                problems.push(format!("{at}: {p}"));
            }
            for v in axe_violations(s).await {
                problems.push(format!("{at}: axe: {v}"));
            }
            s.screenshot(&shots(), &format!("{name}-{size}-{scheme}"))
                .await;
        }
    }
    set_view(s, DESKTOP, false).await;
    problems
}

async fn set_view(s: &Session, viewport: Viewport, dark: bool) {
    s.set_viewport(viewport).await;
    s.set_dark(dark).await;
    // Let layout settle for the new media, and the colour transitions end.
    s.execute_async(
        "const done = arguments[arguments.length - 1]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
        json!([]),
    )
    .await;
    s.wait_for("document.getAnimations().every(a => a.playState === 'finished')")
        .await;
}

/// Tab from the top of the page: the focus visits `expected` (CSS selectors of the buttons
/// and links, in order), each with a visible focus ring.
async fn keyboard_order(s: &Session) -> Vec<String> {
    s.execute("document.activeElement && document.activeElement.blur(); window.getSelection().removeAllRanges(); return true", json!([]))
        .await;
    let count = s
        .execute(
            "return document.querySelectorAll('a[href], button, input:not([type=hidden])').length",
            json!([]),
        )
        .await
        .as_u64()
        .unwrap_or(0);
    let mut problems = Vec::new();
    for i in 0..count {
        s.press(keys::TAB).await;
        let r = s
            .execute(
                "const all = [...document.querySelectorAll('a[href], button, input:not([type=hidden])')];
                 const a = document.activeElement; const cs = getComputedStyle(a);
                 const ring = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2;
                 return {index: all.indexOf(a), ring, visible: a.matches(':focus-visible'), what: a.outerHTML.slice(0, 60)};",
                json!([]),
            )
            .await;
        if r["index"].as_u64() != Some(i) {
            problems.push(format!(
                "Tab #{} reached {} (index {}), expected element {i}",
                i + 1,
                r["what"],
                r["index"]
            ));
        }
        if r["ring"] != true || r["visible"] != true {
            problems.push(format!("no visible focus on {}", r["what"]));
        }
    }
    problems
}

/// Runs in the page; returns a list of problems (empty = fine):
/// - horizontal overflow (the page wider than the viewport);
/// - a link, button or field smaller than 44 x 44 CSS pixels;
/// - text with a contrast below 4.5:1 against its (opaque) background;
/// - a script element, a resource from another origin, or the page's own stylesheet not
///   applied (the CSP would have blocked it).
const CHECKS_JS: &str = r#"
const problems = [];
const de = document.documentElement;
if (de.scrollWidth > window.innerWidth + 1 || document.body.scrollWidth > window.innerWidth + 1) {
  problems.push('horizontal overflow: ' + de.scrollWidth + 'px in a ' + window.innerWidth + 'px viewport');
}
for (const e of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')) {
  const r = e.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  if (r.width < 44 || r.height < 44) problems.push('tap target ' + Math.round(r.width) + 'x' + Math.round(r.height) + ': ' + e.outerHTML.slice(0, 80));
}
function parse(c) {
  const m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) return [0, 0, 0, 0];
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function over(top, bottom) {
  const a = top[3];
  return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
}
function background(e) {
  const layers = [];
  for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
    const c = parse(getComputedStyle(n).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] >= 1) break;
  }
  let bg = [255, 255, 255, 1];
  for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
  return bg;
}
function lum(c) {
  const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const seen = new Set();
for (let t = walker.nextNode(); t; t = walker.nextNode()) {
  if (!t.textContent.trim()) continue;
  const e = t.parentElement;
  if (seen.has(e)) continue;
  seen.add(e);
  const cs = getComputedStyle(e);
  if (cs.visibility === 'hidden' || cs.display === 'none') continue;
  const bg = background(e);
  const fg = over(parse(cs.color), bg);
  const l1 = lum(fg), l2 = lum(bg);
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ':1 for "' + t.textContent.trim().slice(0, 40) + '" (' + cs.color + ' on rgb(' + bg.slice(0, 3).map(Math.round).join(',') + '))');
}
if (document.querySelectorAll('script').length) problems.push('the page has a script element');
for (const r of performance.getEntriesByType('resource')) {
  if (!r.name.startsWith(location.origin + '/')) problems.push('request to another origin: ' + r.name);
}
if (getComputedStyle(document.body).display !== 'flex') problems.push('the page stylesheet was not applied (blocked by the CSP?)');
return problems;
"#;

/// Every page a person meets, at 390x844 and 1280x800, light and dark: no overflow, tap
/// targets of 44 px, contrast 4.5:1, no serious or critical axe-core violation, keyboard
/// order and focus ring, nothing from elsewhere, the CSP header, Enter activates.
#[tokio::test]
async fn every_page_passes_the_checks_a_person_would_make() {
    if missing_peers("every_page_passes_the_checks_a_person_would_make") {
        return;
    }
    let w = World::start("").await;
    let s = Session::start(DESKTOP).await;
    let mut problems = Vec::new();

    // The picker, signed out.
    s.goto(&w.url("/dashboard")).await;
    s.wait_for_path("/oauth2/sign_in").await;
    problems.extend(check_page(&s, "sign-in").await);
    problems.extend(
        keyboard_order(&s)
            .await
            .into_iter()
            .map(|p| format!("sign-in keyboard: {p}")),
    );

    // An error page (an unknown provider).
    s.goto(&w.url("/oauth2/start/nope?rd=/")).await;
    s.wait_for("document.querySelector('p.eyebrow')").await;
    problems.extend(check_page(&s, "error-404").await);
    problems.extend(
        keyboard_order(&s)
            .await
            .into_iter()
            .map(|p| format!("error keyboard: {p}")),
    );

    // Keyboard only: Tab to Google's button, Enter, then Bob on the chooser; then the 403 page.
    s.goto(&w.url("/home")).await;
    s.wait_for_path("/oauth2/sign_in").await;
    s.execute(
        "document.activeElement && document.activeElement.blur(); return true",
        json!([]),
    )
    .await;
    s.press(keys::TAB).await;
    let focused = s
        .execute(
            "return document.activeElement.getAttribute('href')",
            json!([]),
        )
        .await;
    assert!(
        focused
            .as_str()
            .unwrap_or_default()
            .starts_with("/oauth2/start/google?"),
        "{focused}"
    );
    s.press(keys::ENTER).await;
    choose(&s, Account::Button("sub", "104735893746372625501")).await;
    s.wait_for_path("/home").await;
    s.goto(&w.url("/admin/x")).await;
    s.wait_for("document.title === 'No access'").await;
    problems.extend(check_page(&s, "forbidden").await);
    // The 403 page of a route for other providers offers their buttons.
    s.goto(&w.url("/acme-only/x")).await;
    s.wait_for("document.querySelector('a[href^=\"/oauth2/start/acme?\"]')")
        .await;
    problems.extend(check_page(&s, "forbidden-offer").await);
    problems.extend(
        keyboard_order(&s)
            .await
            .into_iter()
            .map(|p| format!("forbidden keyboard: {p}")),
    );

    // The picker, signed in (with its sign-out button).
    s.goto(&w.url("/oauth2/sign_in")).await;
    s.wait_for("document.body.innerText.includes('signed in as')")
        .await;
    problems.extend(check_page(&s, "sign-in-signed-in").await);
    problems.extend(
        keyboard_order(&s)
            .await
            .into_iter()
            .map(|p| format!("signed-in keyboard: {p}")),
    );

    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The CSP header on every page: no script at all, styles by hash only.
    let client = harness::client();
    for path in [
        "/oauth2/sign_in",
        "/oauth2/start/nope",
        "/oauth2/sign_in?rd=/x",
    ] {
        let resp = client.get(w.url(path)).send().await.unwrap();
        let csp = resp
            .headers()
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("no CSP on {path}"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("script-src"),
            "{csp}"
        );
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}

/// The operator's look (title, logo, accent colour, footer) in every language, with the
/// "last used" mark: the same checks, and screenshots `{page}-{lang}-{size}-{scheme}.png`.
#[tokio::test]
async fn branded_pages_in_every_language_pass_the_checks() {
    if missing_peers("branded_pages_in_every_language_pass_the_checks") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logo = dir.path().join("logo.svg");
    std::fs::write(
        &logo,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 120 40\"><script>document.title='pwned'</script>\
         <rect width=\"40\" height=\"40\" rx=\"8\" fill=\"#0a5c36\"/><text x=\"48\" y=\"28\" font-size=\"22\" font-family=\"sans-serif\" fill=\"#0a5c36\">Acme</text></svg>",
    )
    .unwrap();
    let extra = format!(
        "[pages]\ntitle = \"Acme Intranet\"\nlogo = \"{}\"\naccent_color = \"#0a5c36\"\nfooter = \"Need help? Write to it@acme.example\"\n",
        logo.display()
    );
    let w = World::start(&extra).await;
    let s = Session::start(DESKTOP).await;
    // Bob signs in with the keyboard-free path once; /admin/ is not for him.
    s.goto(&w.url("/home")).await;
    sign_in_from_picker(
        &s,
        &w,
        "google",
        Account::Button("sub", "104735893746372625501"),
        "/home",
    )
    .await;
    let mut problems = Vec::new();
    for (lang, sign_in) in [
        ("en", "Sign in"),
        ("de", "Anmelden"),
        ("fr", "Connexion"),
        ("es", "Iniciar sesión"),
        ("ja", "ログイン"),
    ] {
        s.set_accept_language(lang).await;
        s.goto(&w.url("/oauth2/sign_in")).await;
        s.wait_for(&format!(
            "document.querySelector('h1').textContent === {}",
            json!(sign_in)
        ))
        .await;
        assert_eq!(
            s.execute("return document.documentElement.lang", json!([]))
                .await,
            lang
        );
        // The logo is shown (an image from our own origin) and its script never ran.
        s.wait_for("document.querySelector('img.mark-logo').complete && document.querySelector('img.mark-logo').naturalWidth > 0")
            .await;
        assert!(!s.title().await.contains("pwned"));
        assert!(s.text().await.contains("Acme Intranet"));
        problems.extend(check_page(&s, &format!("sign-in-{lang}")).await);
        if lang == "en" {
            problems.extend(
                keyboard_order(&s)
                    .await
                    .into_iter()
                    .map(|p| format!("branded keyboard: {p}")),
            );
        }
        s.goto(&w.url("/oauth2/start/nope")).await;
        s.wait_for("document.querySelector('p.eyebrow')").await;
        problems.extend(check_page(&s, &format!("error-{lang}")).await);
        s.goto(&w.url("/admin/x")).await;
        s.wait_for("document.querySelector('form button.btn-primary')")
            .await;
        problems.extend(check_page(&s, &format!("forbidden-{lang}")).await);
    }
    // Opened on its own, the SVG logo's script does not run either (CSP sandbox).
    s.goto(&w.url("/oauth2/static/logo.svg")).await;
    s.wait_for("document.readyState === 'complete'").await;
    assert_ne!(s.title().await, "pwned");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
