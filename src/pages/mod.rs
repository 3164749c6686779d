//! The HTML pages Portcullis serves itself: the provider picker, error pages and the 403 page.
//!
//! Pages are self-contained (inline CSS and SVG, no JavaScript, nothing loaded
//! from elsewhere) and every interpolated value is HTML-escaped; values that go
//! into URLs are percent-encoded first. They carry their own
//! `Content-Security-Policy` meta tag as a second line of defence.

mod html;
mod logos;

use html::{encode_path_segment, encode_query_value, escape, local_href, page};

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

/// Where the picker sends "Use another account" after signing out.
const SIGN_IN_PATH: &str = "/oauth2/sign_in";

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
    let (title, lead) = match app_name {
        Some(app) => (
            format!("Sign in \u{b7} {app}"),
            format!("to continue to <strong>{}</strong>", escape(app)),
        ),
        None => (
            "Sign in".to_owned(),
            "Choose how you would like to sign in.".to_owned(),
        ),
    };
    let rd = encode_query_value(rd);
    let list = if buttons.is_empty() {
        "<p class=\"notice\">No sign-in methods are set up yet.</p>\n".to_owned()
    } else {
        let mut list = String::from("<ul class=\"providers\">\n");
        for button in buttons {
            let href = format!("/oauth2/start/{}?rd={rd}", encode_path_segment(button.id));
            list.push_str(&format!(
                "<li><a class=\"btn\" href=\"{}\">{}<span>Continue with {}</span></a></li>\n",
                escape(&href),
                logos::svg(button.logo),
                escape(button.display_name),
            ));
        }
        list.push_str("</ul>\n");
        list
    };
    let signed_in = match signed_in_as {
        Some(who) => format!(
            "<div class=\"actions\">\n<p class=\"lead\">You are signed in as <strong>{}</strong>.</p>\n\
             <form method=\"post\" action=\"{}\">\
             <button class=\"btn\" type=\"submit\">Sign out</button></form>\n</div>\n",
            escape(who),
            escape(&format!("/oauth2/sign_out?rd={}", encode_query_value(SIGN_IN_PATH))),
        ),
        None => String::new(),
    };
    let card = format!(
        "{mark}\n<h1>Sign in</h1>\n<p class=\"lead\">{lead}</p>\n{list}{signed_in}",
        mark = logos::MARK,
    );
    page(&title, &card)
}

/// A readable error page: status, heading, one-sentence explanation, a
/// "Try again" link to `retry_href` and a link back to `/oauth2/sign_in`.
///
/// `title` and `message` are plain text (escaped here) and must not carry
/// internals. `retry_href` must be a local path (anything else is replaced by
/// the sign-in page).
pub fn error_page(status: u16, title: &str, message: &str, retry_href: &str) -> String {
    let card = format!(
        "{mark}\n\
         <p class=\"eyebrow\">Error {status}</p>\n\
         <h1>{title}</h1>\n\
         <p class=\"lead\">{message}</p>\n\
         <div class=\"actions\">\n\
         <a class=\"btn btn-primary\" href=\"{retry}\">Try again</a>\n\
         <a class=\"btn btn-quiet\" href=\"{SIGN_IN_PATH}\">Back to sign in</a>\n\
         </div>\n",
        mark = logos::MARK,
        title = escape(title),
        message = escape(message),
        retry = escape(local_href(retry_href)),
    );
    page(title, &card)
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
        escape(id)
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
    let switch_action = format!("/oauth2/sign_out?rd={}", encode_query_value(SIGN_IN_PATH));
    let (reason, buttons) = if offer.is_empty() {
        (
            "but this account does not have access.".to_owned(),
            String::new(),
        )
    } else {
        let rd = encode_query_value(rd);
        let mut list = String::from("<ul class=\"providers\">\n");
        for button in offer {
            let href = format!("/oauth2/start/{}?rd={rd}", encode_path_segment(button.id));
            list.push_str(&format!(
                "<li><a class=\"btn\" href=\"{}\">{}<span>Continue with {}</span></a></li>\n",
                escape(&href),
                logos::svg(button.logo),
                escape(button.display_name),
            ));
        }
        list.push_str("</ul>\n");
        let names: Vec<String> = offer
            .iter()
            .map(|b| escape(b.display_name).into_owned())
            .collect();
        (
            format!(
                "but this page needs an account from {}. Sign in with it to continue:",
                names.join(" or ")
            ),
            list,
        )
    };
    let card = format!(
        "{mark}\n\
         <p class=\"eyebrow\">Error 403</p>\n\
         <h1>No access</h1>\n\
         <p class=\"lead\">You are signed in as <strong>{who}</strong>, \
         {reason}</p>\n\
         {buttons}\
         <div class=\"actions\">\n\
         <form method=\"post\" action=\"{switch}\">\
         <button class=\"btn btn-primary\" type=\"submit\">Use another account</button></form>\n\
         <form method=\"post\" action=\"{sign_out}\">\
         <button class=\"btn\" type=\"submit\">Sign out</button></form>\n\
         </div>\n",
        mark = logos::MARK,
        who = escape(who),
        switch = escape(&switch_action),
        sign_out = escape(local_href(sign_out_action)),
    );
    page("No access", &card)
}

#[cfg(test)]
mod tests {
    use super::*;

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
