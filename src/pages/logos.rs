//! Inline SVG logos for the provider buttons and the Portcullis mark, drawn for this project.
//!
//! Every logo is a 24x24 viewBox, `aria-hidden` (the button text names the
//! provider) and `focusable="false"`; none loads anything.

use super::Logo;

/// Google "G": a ring in four colours with the blue bar.
const GOOGLE: &str = concat!(
    r#"<svg class="logo" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">"#,
    r##"<g fill="none" stroke-width="4">"##,
    r##"<path stroke="#EA4335" d="M5.5 8.25A7.5 7.5 0 0 1 17.75 7.18"/>"##,
    r##"<path stroke="#FBBC05" d="M5.5 15.75A7.5 7.5 0 0 1 5.5 8.25"/>"##,
    r##"<path stroke="#34A853" d="M17.3 17.3A7.5 7.5 0 0 1 5.5 15.75"/>"##,
    r##"<path stroke="#4285F4" d="M19.5 12A7.5 7.5 0 0 1 17.3 17.3"/>"##,
    r##"</g><path fill="#4285F4" d="M12 10h9.5v4H12z"/>"##,
    "</svg>"
);

/// X: the hollow long diagonal crossed by a thin one, in the text colour.
const X: &str = concat!(
    r#"<svg class="logo" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">"#,
    r#"<path fill="currentColor" fill-rule="evenodd" "#,
    r#"d="M3 3h5.6L21 21h-5.6zM5.7 4.4h2.2l10.4 15.2h-2.2z"/>"#,
    r#"<path fill="none" stroke="currentColor" stroke-width="1.9" "#,
    r#"d="M20.4 3l-7.06 7.56M10.66 13.44L3.6 21"/>"#,
    "</svg>"
);

/// Facebook: a white "f" in a blue circle, its stem running to the edge.
const FACEBOOK: &str = concat!(
    r#"<svg class="logo" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">"#,
    r##"<circle cx="12" cy="12" r="12" fill="#1877F2"/>"##,
    r##"<path fill="#fff" d="M13.3 23.9V13.3h2.9l.45-3.2H13.3V8.3c0-.95.3-1.6 1.65-1.6h1.75V3.85"##,
    r##"a23 23 0 0 0-2.55-.14c-2.5 0-4.2 1.5-4.2 4.3v2.1H7.1v3.2h2.85v10.6z"/>"##,
    "</svg>"
);

/// OpenID Connect and other single sign-on: a key, in the text colour.
const OPEN_ID: &str = concat!(
    r#"<svg class="logo" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">"#,
    r#"<g fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">"#,
    r#"<circle cx="7.5" cy="16.5" r="4.5"/>"#,
    r#"<path d="M10.7 13.3L20.5 3.5M17.5 6.5l2.5 2.5M14.8 9.2l2 2"/>"#,
    "</g></svg>"
);

/// The Portcullis mark: an arched gate with a spiked grille, on an accent tile.
pub const MARK: &str = concat!(
    r#"<svg class="mark" viewBox="0 0 48 48" width="48" height="48" aria-hidden="true" focusable="false">"#,
    r#"<rect class="mark-tile" width="48" height="48" rx="12"/>"#,
    r##"<g fill="none" stroke="#fff" stroke-width="2.6" stroke-linecap="round" stroke-linejoin="round">"##,
    r#"<path d="M10 39V21a14 14 0 0 1 28 0v18"/>"#,
    r#"<path d="M17 9.5V34M24 7.5V34M31 9.5V34M10 22h28M10 29.5h28"/>"#,
    "</g>",
    r##"<path fill="#fff" d="M15.3 33.5h3.4L17 39.5zM22.3 33.5h3.4L24 39.5zM29.3 33.5h3.4L31 39.5z"/>"##,
    "</svg>"
);

/// The inline SVG for a provider's button.
pub fn svg(logo: Logo) -> &'static str {
    match logo {
        Logo::Google => GOOGLE,
        Logo::X => X,
        Logo::Facebook => FACEBOOK,
        Logo::OpenId => OPEN_ID,
    }
}
