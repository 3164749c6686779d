//! The HTML pages Portcullis serves itself: the provider picker, error pages and the 403 page.
//!
//! Pages are self-contained (one inline stylesheet allowed by its hash, inline
//! SVG, no JavaScript, nothing loaded from elsewhere but the operator's logo
//! from our own `/oauth2/static/`). They are minijinja templates
//! (`templates/`, or the operator's `[pages] templates`) rendered with
//! auto-escaping: every interpolated value is HTML-escaped; values that go
//! into URLs are percent-encoded first. The words come from the language
//! files in `lang/` (en, de, fr, es, ja), chosen by `Accept-Language`.
//!
//! A page is built as a [`Page`] (its values) by the request code and
//! rendered when the response is sent, with the installed [`Look`] (the
//! operator's `[pages]`) in the request's language.

mod html;
mod logos;
pub mod look;

use std::sync::{Arc, RwLock};

use minijinja::Value;
use pingora::http::RequestHeader;

pub use html::content_security_policy;
use html::{encode_path_segment, encode_query_value, local_href};
pub use look::{Look, PagesConfig};

/// Which logo a provider button shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logo {
    Google,
    X,
    Facebook,
    /// Any OpenID Connect provider: a generic key.
    OpenId,
}

/// One button on the provider picker.
pub struct ProviderButton<'a> {
    /// The provider id, as in `/oauth2/start/{id}`.
    pub id: &'a str,
    /// Shown as "Continue with {display_name}".
    pub display_name: &'a str,
    pub logo: Logo,
}

/// A provider button, owned (a [`Page`] outlives the request's borrows).
#[derive(Clone, Debug)]
struct Button {
    id: String,
    name: String,
    logo: Logo,
}

impl From<&ProviderButton<'_>> for Button {
    fn from(b: &ProviderButton<'_>) -> Self {
        Button {
            id: b.id.to_owned(),
            name: b.display_name.to_owned(),
            logo: b.logo,
        }
    }
}

/// Where the picker sends "Use another account" after signing out.
const SIGN_IN_PATH: &str = "/oauth2/sign_in";

/// The cookie that remembers which provider this browser used last: the
/// provider id only, nothing about the person.
pub const LAST_USED_COOKIE: &str = "portcullis_last_provider";

/// One of our pages, with its values; rendered by [`Page::render`].
#[derive(Clone, Debug)]
pub enum Page {
    SignIn {
        app_name: Option<String>,
        buttons: Vec<ButtonSpec>,
        rd: String,
        signed_in_as: Option<String>,
    },
    Error {
        status: u16,
        title: String,
        message: String,
        retry_href: String,
    },
    Forbidden {
        who: String,
        sign_out_action: String,
        offer: Vec<ButtonSpec>,
        rd: String,
    },
}

/// A provider button of a [`Page`].
#[derive(Clone, Debug)]
pub struct ButtonSpec(Button);

impl Page {
    /// The provider picker at `/oauth2/sign_in`; with `signed_in_as`, it also
    /// says as whom, with a sign-out button (a POST form).
    pub fn sign_in(buttons: &[ProviderButton<'_>], rd: &str, signed_in_as: Option<&str>) -> Page {
        Page::SignIn {
            app_name: None,
            buttons: buttons.iter().map(|b| ButtonSpec(b.into())).collect(),
            rd: rd.to_owned(),
            signed_in_as: signed_in_as.map(str::to_owned),
        }
    }

    /// A readable error page; see [`error_page`].
    pub fn error(status: u16, title: &str, message: &str, retry_href: &str) -> Page {
        Page::Error {
            status,
            title: title.to_owned(),
            message: message.to_owned(),
            retry_href: retry_href.to_owned(),
        }
    }

    /// The 403 page; see [`forbidden_page_offering`].
    pub fn forbidden(
        who: &str,
        sign_out_action: &str,
        offer: &[ProviderButton<'_>],
        rd: &str,
    ) -> Page {
        Page::Forbidden {
            who: who.to_owned(),
            sign_out_action: sign_out_action.to_owned(),
            offer: offer.iter().map(|b| ButtonSpec(b.into())).collect(),
            rd: rd.to_owned(),
        }
    }

    /// The page in `lang` with `look`; `last_used` (a provider id from
    /// [`last_used`]) marks that button and puts it first on the picker.
    pub fn render(&self, look: &Look, lang: &look::Catalog, last_used: Option<&str>) -> String {
        let tr = |key: &str| lang.ui.get(key).cloned().unwrap_or_default();
        let message = |english: &str| {
            lang.messages
                .get(english)
                .cloned()
                .unwrap_or_else(|| english.to_owned())
        };
        match self {
            Page::SignIn {
                app_name,
                buttons,
                rd,
                signed_in_as,
            } => {
                let rd = encode_query_value(rd);
                let mut list: Vec<Value> = buttons
                    .iter()
                    .map(|ButtonSpec(b)| button_value(b, &rd, last_used == Some(b.id.as_str())))
                    .collect();
                // The last used provider first; the others keep their order.
                if let Some(at) = buttons
                    .iter()
                    .position(|ButtonSpec(b)| last_used == Some(b.id.as_str()))
                {
                    let first = list.remove(at);
                    list.insert(0, first);
                }
                let sign_out_action =
                    format!("/oauth2/sign_out?rd={}", encode_query_value(SIGN_IN_PATH));
                let mut ctx = minijinja::context! {
                    page_title => tr("sign_in"),
                    providers => list,
                    signed_in_as => signed_in_as,
                    sign_out_action => sign_out_action,
                };
                if let Some(app) = app_name {
                    ctx = minijinja::context! { brand => app, ..ctx };
                }
                look.render("sign_in.html", lang, ctx)
            }
            Page::Error {
                status,
                title,
                message: text,
                retry_href,
            } => {
                let heading = message(title);
                look.render(
                    "error.html",
                    lang,
                    minijinja::context! {
                        page_title => &heading,
                        status => status,
                        heading => &heading,
                        message => message(text),
                        retry_href => local_href(retry_href),
                        sign_in_href => SIGN_IN_PATH,
                    },
                )
            }
            Page::Forbidden {
                who,
                sign_out_action,
                offer,
                rd,
            } => {
                let rd = encode_query_value(rd);
                let offer_list: Vec<Value> = offer
                    .iter()
                    .map(|ButtonSpec(b)| button_value(b, &rd, false))
                    .collect();
                let names: Vec<&str> = offer.iter().map(|ButtonSpec(b)| b.name.as_str()).collect();
                let or = format!(" {} ", tr("or"));
                look.render(
                    "forbidden.html",
                    lang,
                    minijinja::context! {
                        page_title => tr("no_access"),
                        who => who,
                        offer => offer_list,
                        offer_names => names.join(&or),
                        switch_action => format!("/oauth2/sign_out?rd={}", encode_query_value(SIGN_IN_PATH)),
                        sign_out_action => local_href(sign_out_action),
                    },
                )
            }
        }
    }
}

fn button_value(b: &Button, rd: &str, last_used: bool) -> Value {
    minijinja::context! {
        id => &b.id,
        name => &b.name,
        href => format!("/oauth2/start/{}?rd={rd}", encode_path_segment(&b.id)),
        logo => Value::from_safe_string(logos::svg(b.logo).to_owned()),
        last_used => last_used,
    }
}

/// Sample values of each page, to try the templates when they are loaded.
fn sample_context(name: &str) -> Value {
    let button = button_value(
        &Button {
            id: "google".to_owned(),
            name: "Google".to_owned(),
            logo: Logo::Google,
        },
        "/",
        true,
    );
    match name {
        "sign_in.html" => minijinja::context! {
            page_title => "Sign in",
            providers => vec![button],
            signed_in_as => "alice@example.com",
            sign_out_action => "/oauth2/sign_out",
        },
        "error.html" => minijinja::context! {
            page_title => "Not found",
            status => 404,
            heading => "Not found",
            message => "There is nothing at this address.",
            retry_href => "/",
            sign_in_href => SIGN_IN_PATH,
        },
        _ => minijinja::context! {
            page_title => "No access",
            who => "alice@example.com",
            offer => vec![button],
            offer_names => "Google",
            switch_action => "/oauth2/sign_out",
            sign_out_action => "/oauth2/sign_out",
        },
    }
}

/// The look every page is rendered with (the running configuration's).
static CURRENT: RwLock<Option<Arc<Look>>> = RwLock::new(None);

/// Makes `look` the one pages are rendered with (at start and on reload).
pub fn install(look: Arc<Look>) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(look);
}

/// The installed look, or the built-in one.
pub fn current() -> Arc<Look> {
    if let Some(look) = CURRENT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return look.clone();
    }
    static DEFAULT: std::sync::OnceLock<Arc<Look>> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| Arc::new(Look::default())).clone()
}

/// The request's `Accept-Language`, if readable.
pub fn accept_language(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

/// The provider id in the request's [`LAST_USED_COOKIE`], if it looks like one.
pub fn last_used(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LAST_USED_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// `Set-Cookie` for [`LAST_USED_COOKIE`] = `provider_id`: a year, only for
/// `/oauth2/` (the app never sees it), not readable by scripts.
pub fn last_used_cookie(provider_id: &str, secure: bool) -> String {
    format!(
        "{LAST_USED_COOKIE}={provider_id}; Path=/oauth2/; Max-Age=31536000; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Renders `page` for the request `req` with the installed look: its
/// language from `Accept-Language` and its last used provider.
pub fn render_for(page: &Page, req: &RequestHeader) -> String {
    let look = current();
    let lang = look.language(accept_language(req));
    page.render(&look, lang, last_used(req))
}

/// `page` in English with the built-in look (tests, and callers without a request).
fn render_plain(page: &Page) -> String {
    let look = current();
    let lang = look.language(None);
    page.render(&look, lang, None)
}

/// The provider picker at `/oauth2/sign_in`: title "Sign in", the optional app
/// name, and one link per provider to `/oauth2/start/{id}?rd={rd}`.
///
/// `rd` must already be a safe return path; it is percent-encoded for the
/// query and HTML-escaped here, as are the id and the display names.
pub fn sign_in_page(app_name: Option<&str>, buttons: &[ProviderButton<'_>], rd: &str) -> String {
    sign_in_page_for(app_name, buttons, rd, None)
}

/// The picker for someone who may already be signed in (`signed_in_as`):
/// it then also says as whom, with a sign-out button (a POST form).
pub fn sign_in_page_for(
    app_name: Option<&str>,
    buttons: &[ProviderButton<'_>],
    rd: &str,
    signed_in_as: Option<&str>,
) -> String {
    let mut page = Page::sign_in(buttons, rd, signed_in_as);
    if let Page::SignIn { app_name: a, .. } = &mut page {
        *a = app_name.map(str::to_owned);
    }
    render_plain(&page)
}

/// A readable error page: status, heading, one-sentence explanation, a
/// "Try again" link to `retry_href` and a link back to `/oauth2/sign_in`.
///
/// `title` and `message` are plain text (escaped here) and must not carry
/// internals. `retry_href` must be a local path (anything else is replaced by
/// the sign-in page).
pub fn error_page(status: u16, title: &str, message: &str, retry_href: &str) -> String {
    render_plain(&Page::error(status, title, message, retry_href))
}

/// `page` with a support reference (the request's `X-Request-Id`) at the
/// end of its card, so that a person can quote it and an operator find the
/// request in the logs. `id` is plain text (escaped here).
pub fn with_reference(page: String, id: &str) -> String {
    let Some(at) = page.rfind("</main>") else {
        return page;
    };
    let note = format!(
        "<p class=\"reference\">Reference: <code>{}</code></p>\n",
        html::escape(id)
    );
    let mut out = String::with_capacity(page.len() + note.len());
    out.push_str(&page[..at]);
    out.push_str(&note);
    out.push_str(&page[at..]);
    out
}

/// The 403 page for a signed-in user who is not allowed in.
///
/// Both actions are POST forms, so they work without JavaScript and cannot be
/// triggered by a prefetch: "Use another account" signs out and goes to the
/// picker; "Sign out" posts to `sign_out_action` (e.g.
/// `/oauth2/sign_out?rd=%2F`; must be a local path).
pub fn forbidden_page(who: &str, sign_out_action: &str) -> String {
    forbidden_page_offering(who, sign_out_action, &[], "/")
}

/// The 403 page, offering to sign in with one of `offer` (a route that
/// takes sessions from those providers only) and come back to `rd` (a
/// safe return path; percent-encoded and escaped here). With nothing to
/// offer it is [`forbidden_page`].
pub fn forbidden_page_offering(
    who: &str,
    sign_out_action: &str,
    offer: &[ProviderButton<'_>],
    rd: &str,
) -> String {
    render_plain(&Page::forbidden(who, sign_out_action, offer, rd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/oauth2/sign_in", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn last_used_reads_only_a_provider_id_from_its_cookie() {
        let r = request(&[("cookie", "a=1; portcullis_last_provider=acme-2; b=2")]);
        assert_eq!(last_used(&r), Some("acme-2"));
        let r = request(&[
            ("cookie", "a=1"),
            ("cookie", "portcullis_last_provider=google"),
        ]);
        assert_eq!(last_used(&r), Some("google"));
        for bad in ["<script>", "", "Google", "a b", &"x".repeat(33)] {
            let r = request(&[("cookie", &format!("portcullis_last_provider={bad}"))]);
            assert_eq!(last_used(&r), None, "{bad:?}");
        }
        assert_eq!(last_used(&request(&[])), None);
        let set = last_used_cookie("google", true);
        assert_eq!(
            set,
            "portcullis_last_provider=google; Path=/oauth2/; Max-Age=31536000; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!last_used_cookie("google", false).contains("Secure"));
    }

    #[test]
    fn pages_are_rendered_in_the_request_s_language() {
        let page = Page::error(404, "Not found", "There is nothing at this address.", "/");
        let de = render_for(&page, &request(&[("accept-language", "de-CH, en;q=0.5")]));
        assert!(
            de.contains("<html lang=\"de\">") && de.contains("<h1>Nicht gefunden</h1>"),
            "{de}"
        );
        let en = render_for(&page, &request(&[]));
        assert!(en.contains("<h1>Not found</h1>"), "{en}");
        // A sentence without a translation stays English.
        let other = Page::error(400, "Bad request", "This address cannot be served: x.", "/");
        let fr = render_for(&other, &request(&[("accept-language", "fr")]));
        assert!(fr.contains("<h1>Requête incorrecte</h1>"), "{fr}");
        assert!(fr.contains("This address cannot be served: x."), "{fr}");
    }

    #[test]
    fn picker_offers_sign_out_when_signed_in() {
        let page = sign_in_page_for(None, &buttons(), "/", Some("<alice@example.com>"));
        assert!(
            page.contains("signed in as <strong>&lt;alice@example.com&gt;</strong>"),
            "{page}"
        );
        assert!(page.contains("action=\"/oauth2/sign_out?rd="), "{page}");
        assert!(!sign_in_page(None, &buttons(), "/").contains("sign_out"));
    }

    const HOSTILE: &str = "\"><script>alert(1)</script>";

    fn buttons() -> Vec<ProviderButton<'static>> {
        vec![
            ProviderButton {
                id: "google",
                display_name: "Google",
                logo: Logo::Google,
            },
            ProviderButton {
                id: "twitter",
                display_name: "X",
                logo: Logo::X,
            },
            ProviderButton {
                id: "facebook",
                display_name: "Facebook",
                logo: Logo::Facebook,
            },
            ProviderButton {
                id: "acme",
                display_name: "Acme SSO",
                logo: Logo::OpenId,
            },
        ]
    }

    fn all_pages() -> Vec<String> {
        vec![
            sign_in_page(Some("Acme Wiki"), &buttons(), "/app?tab=2#x"),
            sign_in_page(None, &buttons(), "/"),
            sign_in_page(None, &[], "/"),
            error_page(
                502,
                "Google is not answering",
                "We could not reach Google to finish signing you in.",
                "/oauth2/start/google?rd=%2F",
            ),
            forbidden_page("alice@example.com", "/oauth2/sign_out?rd=%2F"),
            forbidden_page_offering(
                "alice@example.com",
                "/oauth2/sign_out?rd=%2F",
                &buttons(),
                "/admin",
            ),
        ]
    }

    /// Every value of `attr="..."` in a page.
    fn attr_values<'p>(page: &'p str, attr: &str) -> Vec<&'p str> {
        let needle = format!(" {attr}=\"");
        page.match_indices(&needle)
            .filter_map(|(at, _)| {
                let rest = &page[at + needle.len()..];
                rest.find('"').map(|end| &rest[..end])
            })
            .collect()
    }

    #[test]
    fn every_provider_has_its_link_and_logo() {
        let page = sign_in_page(None, &buttons(), "/");
        for (id, name) in [
            ("google", "Google"),
            ("twitter", "X"),
            ("facebook", "Facebook"),
            ("acme", "Acme SSO"),
        ] {
            assert!(
                page.contains(&format!("href=\"/oauth2/start/{id}?rd=/\"")),
                "{id}"
            );
            assert!(
                page.contains(&format!("Continue with {name}</span>")),
                "{name}"
            );
        }
        for logo in [Logo::Google, Logo::X, Logo::Facebook, Logo::OpenId] {
            assert!(page.contains(logos::svg(logo)), "{logo:?}");
        }
        assert_eq!(page.matches("<li>").count(), 4);
    }

    #[test]
    fn logos_are_distinct_and_hidden_from_screen_readers() {
        let all = [Logo::Google, Logo::X, Logo::Facebook, Logo::OpenId].map(logos::svg);
        for (i, a) in all.iter().enumerate() {
            assert!(a.starts_with("<svg") && a.ends_with("</svg>"));
            assert!(a.contains("aria-hidden=\"true\""));
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn rd_is_carried_percent_encoded_into_every_link() {
        let page = sign_in_page(None, &buttons(), "/app?tab=2&x=1#frag");
        let links = attr_values(&page, "href");
        assert_eq!(links.len(), 4);
        for link in links {
            assert!(
                link.ends_with("?rd=/app%3Ftab%3D2%26x%3D1%23frag"),
                "{link}"
            );
        }
    }

    #[test]
    fn hostile_display_name_rd_and_app_name_are_escaped() {
        let hostile = [ProviderButton {
            id: "evil\"><script>",
            display_name: HOSTILE,
            logo: Logo::OpenId,
        }];
        let page = sign_in_page(Some(HOSTILE), &hostile, &format!("/{HOSTILE}"));
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("Continue with &quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<strong>&quot;&gt;&lt;script&gt;"));
        assert!(page.contains(
            "href=\"/oauth2/start/evil%22%3E%3Cscript%3E?rd=/%22%3E%3Cscript%3Ealert%281%29%3C/script%3E\""
        ));
    }

    #[test]
    fn reference_goes_inside_the_card_escaped() {
        let page = with_reference(error_page(502, "t", "m", "/"), "a<b");
        let card_end = page.find("</main>").unwrap();
        let note = page.find("Reference: <code>a&lt;b</code>").unwrap();
        assert!(note < card_end);
    }

    #[test]
    fn error_page_escapes_and_links() {
        let page = error_page(400, HOSTILE, HOSTILE, "/oauth2/start/acme?rd=%2F");
        assert!(!page.contains("<script"));
        assert!(page.contains("<h1>&quot;&gt;&lt;script&gt;"));
        assert!(page.contains("Error 400"));
        assert!(page.contains("href=\"/oauth2/start/acme?rd=%2F\">Try again</a>"));
        assert!(page.contains("href=\"/oauth2/sign_in\""));
    }

    #[test]
    fn error_page_refuses_a_foreign_retry_link() {
        for bad in ["javascript:alert(1)", "//evil.com", "https://evil.com/"] {
            let page = error_page(400, "t", "m", bad);
            assert!(
                !page.contains("evil") && !page.contains("javascript"),
                "{bad}"
            );
            assert!(page.contains("href=\"/oauth2/sign_in\">Try again</a>"));
        }
    }

    #[test]
    fn forbidden_page_names_the_account_and_posts_sign_out() {
        let page = forbidden_page("alice@example.com", "/oauth2/sign_out?rd=%2Fapp");
        assert!(page.contains(
            "You are signed in as <strong>alice@example.com</strong>, but this account does not have access."
        ));
        assert!(page.contains("<form method=\"post\" action=\"/oauth2/sign_out?rd=%2Fapp\">"));
        assert!(
            page.contains("<form method=\"post\" action=\"/oauth2/sign_out?rd=/oauth2/sign_in\">")
        );
        assert!(page.contains(">Sign out</button>"));
        assert!(page.contains(">Use another account</button>"));

        let page = forbidden_page(HOSTILE, "/oauth2/sign_out?rd=%2F&x=\"><script>");
        assert!(!page.contains("<script"));
        assert!(page.contains("action=\"/oauth2/sign_out?rd=%2F&amp;x=&quot;&gt;&lt;script&gt;\""));
    }

    #[test]
    fn forbidden_page_offers_the_route_s_providers() {
        let offer = [ProviderButton {
            id: "acme",
            display_name: "Acme <SSO>",
            logo: Logo::OpenId,
        }];
        let page = forbidden_page_offering(
            "alice@example.com",
            "/oauth2/sign_out?rd=%2F",
            &offer,
            "/admin/x?a=1&b=2",
        );
        assert!(
            page.contains("needs an account from Acme &lt;SSO&gt;"),
            "{page}"
        );
        assert!(
            page.contains("href=\"/oauth2/start/acme?rd=/admin/x%3Fa%3D1%26b%3D2\""),
            "{page}"
        );
        assert!(page.contains("Continue with Acme &lt;SSO&gt;</span>"));
        assert!(page.contains(">Use another account</button>"));
        assert_eq!(page.matches("/oauth2/start/").count(), 1);
        let plain = forbidden_page("alice@example.com", "/oauth2/sign_out?rd=%2F");
        assert!(!plain.contains("/oauth2/start/"));
        assert!(plain.contains("but this account does not have access."));
    }

    #[test]
    fn empty_picker_says_so() {
        let page = sign_in_page(None, &[], "/");
        assert!(page.contains("No sign-in methods"));
        assert!(!page.contains("<ul"));
    }

    #[test]
    fn pages_are_self_contained_and_mobile_ready() {
        for page in all_pages() {
            assert!(page.starts_with("<!doctype html>"));
            assert!(page.contains("<html lang=\"en\">"));
            assert!(page.contains("<meta charset=\"utf-8\">"));
            assert!(page.contains("<meta name=\"viewport\""));
            assert!(page.contains("<title>"));
            assert!(!page.contains("<script"), "{page}");
            assert!(!page.contains("http:") && !page.contains("https:"));
            assert!(!page.contains("<link") && !page.contains("<img") && !page.contains("@import"));
            assert!(!page.contains("url("), "CSS must not load anything");
            for attr in ["href", "src", "action", "srcset", "xlink:href"] {
                for value in attr_values(&page, attr) {
                    assert!(
                        value.starts_with('/') && !value.starts_with("//"),
                        "{attr}={value:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn app_name_is_optional() {
        let with = sign_in_page(Some("Acme Wiki"), &buttons(), "/");
        assert!(with.contains("to continue to <strong>Acme Wiki</strong>"));
        assert!(with.contains("<title>Sign in \u{b7} Acme Wiki</title>"));
        let without = sign_in_page(None, &buttons(), "/");
        assert!(without.contains("<title>Sign in</title>"));
        assert!(without.contains("<h1>Sign in</h1>"));
    }
}
