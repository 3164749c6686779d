//! The pages over HTTP through the real binary: languages from `Accept-Language`, the
//! operator's `[pages]` (title, logo under `/oauth2/static/`, accent colour, footer,
//! templates), the "last used" provider, the CSP header on every page, and `portcullis check`
//! finding a broken template. (The same pages in a real browser: `browser.rs`.)

use reqwest::StatusCode;

use crate::common::{location, World};
use crate::support::harness::{self, Browser};

async fn page(
    w: &World,
    path: &str,
    accept_language: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = harness::client()
        .get(w.url(path))
        .header("accept", harness::BROWSER_ACCEPT);
    if let Some(lang) = accept_language {
        request = request.header("accept-language", lang);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status();
    let csp = resp
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, csp, resp.text().await.unwrap())
}

#[tokio::test]
async fn pages_speak_the_browser_s_language() {
    let w = World::start("").await;
    for (header, lang, sign_in, not_found) in [
        (None, "en", "<h1>Sign in</h1>", "<h1>Not found</h1>"),
        (
            Some("de-DE,de;q=0.9,en;q=0.8"),
            "de",
            "<h1>Anmelden</h1>",
            "<h1>Nicht gefunden</h1>",
        ),
        (
            Some("fr-CH, fr;q=0.9"),
            "fr",
            "<h1>Connexion</h1>",
            "<h1>Page introuvable</h1>",
        ),
        (
            Some("es-MX"),
            "es",
            "<h1>Iniciar sesión</h1>",
            "<h1>No encontrado</h1>",
        ),
        (
            Some("ja,en;q=0.5"),
            "ja",
            "<h1>ログイン</h1>",
            "<h1>ページが見つかりません</h1>",
        ),
        (
            Some("pt-BR, zh;q=0.8"),
            "en",
            "<h1>Sign in</h1>",
            "<h1>Not found</h1>",
        ),
    ] {
        let (status, csp, html) = page(&w, "/oauth2/sign_in", header).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(&format!("<html lang=\"{lang}\">")),
            "{header:?}: {html}"
        );
        assert!(html.contains(sign_in), "{header:?}: {html}");
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        let (status, csp, html) = page(&w, "/oauth2/start/nope", header).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(html.contains(not_found), "{header:?}: {html}");
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
    }
}

#[tokio::test]
async fn language_forces_one_language() {
    let w = World::start("[pages]\nlanguage = \"de\"\n").await;
    let (_, _, html) = page(&w, "/oauth2/sign_in", Some("fr, en")).await;
    assert!(html.contains("<h1>Anmelden</h1>"), "{html}");
}

/// The CSP header is on every page: picker, error pages, 403, 405.
#[tokio::test]
async fn every_page_carries_the_strict_csp_header() {
    let w = World::start("[access]\nallowed_emails = [\"nobody@example.com\"]\n").await;
    let mut b = Browser::new();
    // Alice signs in but is not allowed: the 403 page.
    let forbidden = w.sign_in(&mut b, "/").await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let mut seen = vec![forbidden];
    seen.push(b.get(&w.url("/oauth2/sign_in")).await);
    seen.push(b.get(&w.url("/oauth2/nothing")).await);
    seen.push(
        b.get(&w.url("/oauth2/callback/google?state=x&code=y"))
            .await,
    );
    seen.push(b.post_form(&w.url("/oauth2/userinfo"), &[]).await);
    for resp in seen {
        let status = resp.status();
        let csp = resp
            .headers()
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("no CSP on {status} {}", resp.url()))
            .to_str()
            .unwrap()
            .to_owned();
        let html = resp.text().await.unwrap();
        assert!(html.starts_with("<!doctype html>"), "{status}: {html}");
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-")
                && csp.ends_with("frame-ancestors 'none'")
                && !csp.contains("unsafe")
                && !csp.contains("script"),
            "{status}: {csp}"
        );
        assert_eq!(
            csp,
            format!(
                "{}; frame-ancestors 'none'",
                portcullis::pages::content_security_policy(&html)
            )
        );
        assert!(!html.contains("<script"), "{html}");
    }
}

#[tokio::test]
async fn branding_title_logo_colour_footer_and_css() {
    let dir = tempfile::tempdir().unwrap();
    let logo = dir.path().join("acme.svg");
    std::fs::write(
        &logo,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 10 10\"><script>alert(1)</script><rect width=\"10\" height=\"10\"/></svg>",
    )
    .unwrap();
    let css = dir.path().join("custom.css");
    std::fs::write(&css, ".card { border-width: 2px; }\n").unwrap();
    let extra = format!(
        "[pages]\ntitle = \"Acme Intranet\"\nlogo = \"{}\"\naccent_color = \"#0a5c36\"\nfooter = \"Need help? it@acme.example\"\ncustom_css = \"{}\"\n",
        logo.display(),
        css.display()
    );
    let w = World::start(&extra).await;
    let (_, _, html) = page(&w, "/oauth2/sign_in", None).await;
    assert!(
        html.contains("<title>Sign in \u{b7} Acme Intranet</title>"),
        "{html}"
    );
    assert!(
        html.contains("to continue to <strong>Acme Intranet</strong>"),
        "{html}"
    );
    assert!(
        html.contains("src=\"/oauth2/static/logo.svg\" alt=\"Acme Intranet\""),
        "{html}"
    );
    assert!(html.contains("--accent: #0a5c36;"), "{html}");
    assert!(html.contains(".card { border-width: 2px; }"), "{html}");
    assert!(html.contains("<p>Need help? it@acme.example</p>"), "{html}");

    // The logo: served as an image whose scripts cannot run.
    let resp = harness::client()
        .get(w.url("/oauth2/static/logo.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["content-type"], "image/svg+xml");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("sandbox") && csp.starts_with("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(resp.bytes().await.unwrap(), std::fs::read(&logo).unwrap());
    for other in [
        "/oauth2/static/logo.png",
        "/oauth2/static/",
        "/oauth2/static/../portcullis.toml",
    ] {
        let resp = harness::client().get(w.url(other)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{other}");
    }
}

#[tokio::test]
async fn the_picker_remembers_the_last_provider_and_nothing_else() {
    let w = World::start("[providers.acme]\nkind = \"oidc\"\ndisplay_name = \"Acme SSO\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"a\"\nclient_secret = \"b\"\n").await;
    let mut b = Browser::new();
    let first = b.get(&w.url("/oauth2/sign_in")).await.text().await.unwrap();
    assert!(!first.contains("Last used"));
    assert!(
        first.find("/oauth2/start/google").unwrap() < first.find("/oauth2/start/acme").unwrap()
    );
    // Choosing Google (then signing in and out) is remembered: marked and first.
    let resp = w.sign_in(&mut b, "/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = b
        .cookie(portcullis::pages::LAST_USED_COOKIE)
        .expect("last-used cookie");
    assert_eq!(cookie.value, "google", "the provider id only");
    let raw = cookie.raw.to_ascii_lowercase();
    assert!(
        raw.contains("path=/oauth2/") && raw.contains("httponly") && raw.contains("samesite=lax"),
        "{raw}"
    );
    let out = b.get(&w.url("/oauth2/sign_out")).await;
    assert_eq!(location(&out), "/oauth2/sign_in");
    let html = b.get(&w.url("/oauth2/sign_in")).await.text().await.unwrap();
    assert_eq!(html.matches("Last used").count(), 1, "{html}");
    assert!(
        html.contains("class=\"btn last-used\" href=\"/oauth2/start/google?"),
        "{html}"
    );
    // The app never sees it (Path=/oauth2/).
    let echo = crate::common::json(w.sign_in(&mut b, "/app").await).await;
    let cookies = crate::support::upstream::header(&echo, "cookie").join("; ");
    assert!(
        !cookies.contains(portcullis::pages::LAST_USED_COOKIE),
        "{cookies}"
    );
    // Acme first once it was chosen last; a forged value marks nothing.
    b.set_cookie(
        "127.0.0.1",
        portcullis::pages::LAST_USED_COOKIE,
        "acme",
        "/oauth2/",
    );
    let html = b.get(&w.url("/oauth2/sign_in")).await.text().await.unwrap();
    assert!(html.find("/oauth2/start/acme").unwrap() < html.find("/oauth2/start/google").unwrap());
    b.set_cookie(
        "127.0.0.1",
        portcullis::pages::LAST_USED_COOKIE,
        "%3Cscript%3E",
        "/oauth2/",
    );
    let html = b.get(&w.url("/oauth2/sign_in")).await.text().await.unwrap();
    assert!(
        !html.contains("Last used") && !html.contains("script"),
        "{html}"
    );
}

#[test]
fn check_finds_a_broken_template_and_a_weak_colour() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("forbidden.html"), "{% for x in %}").unwrap();
    let config = format!(
        "{}\n[providers.google]\nclient_id = \"id.apps.googleusercontent.com\"\nclient_secret = \"s\"\n\n[pages]\ntemplates = \"{}\"\naccent_color = \"#ffcc00\"\nlogo = \"/no/such/logo.png\"\n",
        harness::base_config(4180, "http://127.0.0.1:8080", &harness::session_secret()),
        dir.path().display()
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let out = harness::command()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("pages.templates: ") && text.contains("forbidden.html"),
        "{text}"
    );
    assert!(
        text.contains("pages.accent_color: #ffcc00: white button text"),
        "{text}"
    );
    assert!(text.contains("pages.logo: /no/such/logo.png"), "{text}");
}
