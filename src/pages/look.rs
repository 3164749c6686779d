//! The operator's look of the pages (`[pages]`): title, logo, accent colour,
//! footer, custom CSS, whole-template overrides and the languages, loaded and
//! checked once when the configuration is read, so that a broken template or
//! an unreadable logo is a configuration error, never a 500 at request time.
//!
//! Every page is a minijinja template (`templates/*.html` here, or the
//! operator's) rendered with auto-escaping on: every value is HTML-escaped
//! unless the page marked it as markup (the provider logos, the stylesheet).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, State};

use super::html::{escape, style_hash};

/// The built-in languages: `(code, the file)`.
const BUILT_IN: [(&str, &str); 5] = [
    ("en", include_str!("lang/en.toml")),
    ("de", include_str!("lang/de.toml")),
    ("fr", include_str!("lang/fr.toml")),
    ("es", include_str!("lang/es.toml")),
    ("ja", include_str!("lang/ja.toml")),
];

/// The pages an operator may replace, with the built-in text of each.
pub const TEMPLATES: [(&str, &str); 3] = [
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("error.html", include_str!("templates/error.html")),
    ("forbidden.html", include_str!("templates/forbidden.html")),
];
const LAYOUT: (&str, &str) = ("layout.html", include_str!("templates/layout.html"));

/// The largest logo Portcullis serves.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;
/// The largest custom stylesheet.
pub const MAX_CSS_BYTES: usize = 64 * 1024;
/// The largest template or language file.
const MAX_TEXT_BYTES: usize = 256 * 1024;

/// `[pages]` as written in the configuration.
#[derive(Debug, Default, Clone)]
pub struct PagesConfig {
    pub title: Option<String>,
    pub logo: Option<PathBuf>,
    pub accent_color: Option<String>,
    pub footer: Option<String>,
    pub custom_css: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    /// `None` or "auto": from `Accept-Language`.
    pub language: Option<String>,
}

/// The words of the pages in one language.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub code: String,
    /// The pages' own words (`[ui]`).
    pub ui: BTreeMap<String, String>,
    /// Error headings and sentences, keyed by their English (`[messages]`).
    pub messages: HashMap<String, String>,
}

/// The operator's logo, served at [`Logo::path`].
#[derive(Debug, Clone)]
pub struct Logo {
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
    /// `/oauth2/static/logo.{ext}`
    pub path: String,
}

/// Everything a page needs besides its own values.
pub struct Look {
    title: Option<String>,
    footer: Option<String>,
    logo: Option<Logo>,
    /// The whole stylesheet of every page (built-in, accent, custom CSS).
    style: String,
    /// `Content-Security-Policy` for the meta tag (the style by hash).
    csp: String,
    catalogs: HashMap<String, Catalog>,
    /// A language forced by `language = "de"`.
    forced: Option<String>,
    env: Environment<'static>,
}

impl std::fmt::Debug for Look {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut languages: Vec<&String> = self.catalogs.keys().collect();
        languages.sort();
        f.debug_struct("Look")
            .field("title", &self.title)
            .field("footer", &self.footer)
            .field("logo", &self.logo.as_ref().map(|l| &l.path))
            .field("languages", &languages)
            .field("forced", &self.forced)
            .finish_non_exhaustive()
    }
}

impl Default for Look {
    fn default() -> Self {
        Look::load(&PagesConfig::default()).expect("the built-in pages load")
    }
}

/// One problem with `[pages]`: `(key, message)`.
pub type Problem = (String, String);

impl Look {
    /// Loads and checks `[pages]`: every problem with its key.
    pub fn load(config: &PagesConfig) -> Result<Look, Vec<Problem>> {
        let mut problems: Vec<Problem> = Vec::new();

        let title = config.title.clone().filter(|t| !t.trim().is_empty());
        if title.as_ref().is_some_and(|t| t.chars().count() > 100) {
            push(
                &mut problems,
                "title",
                "is longer than 100 characters".to_owned(),
            );
        }
        let footer = config.footer.clone().filter(|t| !t.trim().is_empty());
        if footer.as_ref().is_some_and(|t| t.chars().count() > 500) {
            push(
                &mut problems,
                "footer",
                "is longer than 500 characters".to_owned(),
            );
        }

        let logo = match &config.logo {
            Some(path) => match load_logo(path) {
                Ok(logo) => Some(logo),
                Err(e) => {
                    push(&mut problems, "logo", e);
                    None
                }
            },
            None => None,
        };

        let mut style = format!("\n{}", super::html::STYLE);
        if let Some(color) = &config.accent_color {
            match accent_css(color) {
                Ok(css) => style.push_str(&css),
                Err(e) => push(&mut problems, "accent_color", e),
            }
        }
        if let Some(path) = &config.custom_css {
            match read_text(path, MAX_CSS_BYTES) {
                Ok(css) if css.to_ascii_lowercase().contains("</style") => push(
                    &mut problems,
                    "custom_css",
                    format!("{}: must not contain \"</style\"", path.display()),
                ),
                Ok(css) => {
                    style.push_str("\n/* custom_css */\n");
                    style.push_str(&css);
                    if !css.ends_with('\n') {
                        style.push('\n');
                    }
                }
                Err(e) => push(&mut problems, "custom_css", e),
            }
        }

        let mut catalogs: HashMap<String, Catalog> = HashMap::new();
        for (code, text) in BUILT_IN {
            let catalog = parse_catalog(code, text).expect("built-in language file");
            catalogs.insert(code.to_owned(), catalog);
        }
        let mut templates: Vec<(String, String)> = TEMPLATES
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        if let Some(dir) = &config.templates {
            match std::fs::read_dir(dir) {
                Err(e) => push(
                    &mut problems,
                    "templates",
                    format!("{}: {e}", dir.display()),
                ),
                Ok(entries) => {
                    let mut names: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    names.sort();
                    for path in names {
                        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                            continue;
                        };
                        if let Some(slot) = templates.iter_mut().find(|(n, _)| n == file) {
                            match read_text(&path, MAX_TEXT_BYTES) {
                                Ok(text) => slot.1 = text,
                                Err(e) => push(&mut problems, "templates", e),
                            }
                        } else if let Some(code) = file.strip_suffix(".toml") {
                            if !valid_language_code(code) {
                                push(
                                    &mut problems,
                                    "templates",
                                    format!(
                                        "{}: a language file is named by its code, e.g. de.toml",
                                        path.display()
                                    ),
                                );
                                continue;
                            }
                            match read_text(&path, MAX_TEXT_BYTES).and_then(|t| {
                                parse_catalog(code, &t)
                                    .map_err(|e| format!("{}: {e}", path.display()))
                            }) {
                                Ok(file_catalog) => {
                                    let english = catalogs["en"].clone();
                                    let base = catalogs.get(code).cloned().unwrap_or(Catalog {
                                        code: code.to_owned(),
                                        ..english.clone()
                                    });
                                    let mut merged = base;
                                    for (k, v) in file_catalog.ui {
                                        if !english.ui.contains_key(&k) {
                                            push(
&mut problems,
                                                "templates",
                                                format!("{}: [ui] {k} is not a key of the pages (see the built-in en.toml)", path.display()),
                                            );
                                        }
                                        merged.ui.insert(k, v);
                                    }
                                    merged.messages.extend(file_catalog.messages);
                                    catalogs.insert(code.to_owned(), merged);
                                }
                                Err(e) => push(&mut problems, "templates", e),
                            }
                        }
                    }
                }
            }
        }

        let forced = match config.language.as_deref() {
            None | Some("auto") => None,
            Some(code) => {
                let code = code.to_ascii_lowercase();
                if catalogs.contains_key(&code) {
                    Some(code)
                } else {
                    let mut known: Vec<&str> = catalogs.keys().map(String::as_str).collect();
                    known.sort();
                    push(
                        &mut problems,
                        "language",
                        format!(
                            "{code:?} is not a language of the pages: \"auto\" or one of {}",
                            known.join(", ")
                        ),
                    );
                    None
                }
            }
        };

        let mut env = environment();
        env.add_template_owned(LAYOUT.0, LAYOUT.1)
            .expect("built-in layout");
        for (name, text) in templates {
            let path = config
                .templates
                .as_ref()
                .map(|d| d.join(&name).display().to_string())
                .unwrap_or_else(|| name.clone());
            if let Err(e) = env.add_template_owned(name.clone(), text) {
                push(
                    &mut problems,
                    "templates",
                    format!("{path}: {}", template_error(&e)),
                );
            }
        }

        let csp = format!(
            "default-src 'none'; style-src 'sha256-{}'; {}",
            style_hash(&style),
            super::html::CSP_REST
        );
        let look = Look {
            title,
            footer,
            logo,
            style,
            csp,
            catalogs,
            forced,
            env,
        };
        // Render every page once with sample values in every language, so a
        // template that fails at render time (unknown filter, bad call) is
        // found now.
        if problems.is_empty() {
            for (name, _) in TEMPLATES {
                for code in look.catalogs.keys() {
                    if let Err(e) = look.try_render(name, code, super::sample_context(name)) {
                        push(
                            &mut problems,
                            "templates",
                            format!("{name}: {}", template_error(&e)),
                        );
                        break;
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(look)
        } else {
            Err(problems)
        }
    }

    /// The operator's logo, if any.
    pub fn logo(&self) -> Option<&Logo> {
        self.logo.as_ref()
    }

    /// The language of the pages for a request with this `Accept-Language`:
    /// the forced one, else the best match, else English.
    pub fn language(&self, accept_language: Option<&str>) -> &Catalog {
        if let Some(code) = &self.forced {
            return &self.catalogs[code];
        }
        let code = accept_language
            .and_then(|header| best_language(header, |c| self.catalogs.contains_key(c)))
            .unwrap_or_else(|| "en".to_owned());
        &self.catalogs[&code]
    }

    /// Every language the pages speak.
    pub fn languages(&self) -> Vec<&Catalog> {
        let mut all: Vec<&Catalog> = self.catalogs.values().collect();
        all.sort_by(|a, b| a.code.cmp(&b.code));
        all
    }

    /// Renders page `name` in `lang` with the page's own values `ctx`; a
    /// failing operator template falls back to the built-in one.
    pub fn render(&self, name: &str, lang: &Catalog, ctx: Value) -> String {
        match self.try_render(name, &lang.code, ctx.clone()) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = name, error = %template_error(&e), "page template failed; using the built-in page");
                let mut env = environment();
                env.add_template_owned(LAYOUT.0, LAYOUT.1).expect("layout");
                for (n, t) in TEMPLATES {
                    env.add_template_owned(n, t).expect("built-in template");
                }
                env.get_template(name)
                    .and_then(|t| t.render(self.context(&lang.code, ctx)))
                    .unwrap_or_default()
            }
        }
    }

    fn try_render(&self, name: &str, code: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(self.context(code, ctx))
    }

    /// The values every page gets, merged with the page's own.
    fn context(&self, code: &str, ctx: Value) -> Value {
        let catalog = &self.catalogs[code];
        let mark = match &self.logo {
            Some(logo) => Value::from_safe_string(format!(
                "<img class=\"mark mark-logo\" src=\"{}\" alt=\"{}\">",
                escape(&logo.path),
                escape(self.title.as_deref().unwrap_or(""))
            )),
            None => Value::from_safe_string(super::logos::MARK.to_owned()),
        };
        let brand: Option<String> = ctx
            .get_attr("brand")
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map(|v| v.to_string())
            .or_else(|| self.title.clone());
        let page_title = ctx
            .get_attr("page_title")
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_none())
            .map(|v| v.to_string());
        let page_title = match (page_title, &brand) {
            (Some(t), Some(brand)) => format!("{t} \u{b7} {brand}"),
            (Some(t), None) => t,
            (None, Some(brand)) => brand.clone(),
            (None, None) => "Portcullis".to_owned(),
        };
        minijinja::context! {
            lang => &catalog.code,
            t => Value::from_serialize(&catalog.ui),
            style => Value::from_safe_string(self.style.clone()),
            csp => &self.csp,
            mark => mark,
            footer => &self.footer,
            brand => brand,
            page_title => page_title,
            ..ctx
        }
    }
}

fn push(problems: &mut Vec<Problem>, key: &str, message: String) {
    problems.push((format!("pages.{key}"), message));
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Our escaping (the five characters; '/' stays readable in links).
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() || value.is_none() {
            return Ok(());
        }
        let text = value.to_string();
        if value.is_safe() {
            out.write_str(&text)
        } else {
            out.write_str(&escape(&text))
        }
        .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed"))
    });
    env.add_filter("strong", |value: Value| -> Value {
        let text = value.to_string();
        let inner = if value.is_safe() {
            text
        } else {
            escape(&text).into_owned()
        };
        Value::from_safe_string(format!("<strong>{inner}</strong>"))
    });
    env.add_function("tr", translate);
    env
}

/// `tr("key", name=value, ...)`: the page's words for `key` in the page's
/// language, escaped, with each `{name}` replaced by its value (escaped
/// unless it is markup, such as `who|strong`).
fn translate(state: &State, key: &str, args: Kwargs) -> Result<Value, minijinja::Error> {
    let words = state
        .lookup("t")
        .and_then(|t| t.get_attr(key).ok())
        .filter(|v| !v.is_undefined())
        .ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::UndefinedError,
                format!("no words for {key:?}"),
            )
        })?;
    let mut text = escape(&words.to_string()).into_owned();
    for name in args.args() {
        let value: Value = args.get(name)?;
        let rendered = if value.is_safe() {
            value.to_string()
        } else {
            escape(&value.to_string()).into_owned()
        };
        text = text.replace(&format!("{{{name}}}"), &rendered);
    }
    args.assert_all_used()?;
    Ok(Value::from_safe_string(text))
}

fn template_error(e: &minijinja::Error) -> String {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        if !message.contains("line") {
            message.push_str(&format!(" (line {line})"));
        }
    }
    message
}

/// A regular file's bytes, at most `max` of them: a device or a FIFO named by
/// mistake (`/dev/zero`) is an error, not a hang.
fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > max {
        return Err(format!(
            "{}: larger than the {} KiB allowed",
            path.display(),
            max / 1024
        ));
    }
    Ok(bytes)
}

fn read_text(path: &Path, max: usize) -> Result<String, String> {
    let bytes = read_limited(path, max)?;
    String::from_utf8(bytes).map_err(|_| format!("{}: is not UTF-8 text", path.display()))
}

fn load_logo(path: &Path) -> Result<Logo, String> {
    let bytes = read_limited(path, MAX_LOGO_BYTES)?;
    let (ext, content_type) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ("png", "image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        ("jpg", "image/jpeg")
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        ("webp", "image/webp")
    } else if std::str::from_utf8(&bytes).is_ok_and(|t| t.contains("<svg")) {
        ("svg", "image/svg+xml")
    } else {
        return Err(format!(
            "{}: not a PNG, JPEG, WebP or SVG image",
            path.display()
        ));
    };
    Ok(Logo {
        bytes: bytes::Bytes::from(bytes),
        content_type,
        path: format!("/oauth2/static/logo.{ext}"),
    })
}

/// The CSS for `accent_color = "#rrggbb"`: buttons and the mark in that
/// colour, with white text on it at a contrast of at least 4.5:1.
fn accent_css(color: &str) -> Result<String, String> {
    let rgb = parse_hex_color(color).ok_or_else(|| {
        format!("{color:?} is not a colour such as \"#4338ca\" (#rrggbb or #rgb)")
    })?;
    let ratio = contrast(rgb, [255, 255, 255]);
    if ratio < 4.5 {
        return Err(format!(
            "{color}: white button text on it has a contrast of {ratio:.2}:1, less than the 4.5:1 readable text needs; choose a darker colour"
        ));
    }
    let hover = rgb.map(|c| (f64::from(c) * 0.85).round() as u8);
    let hex = |c: [u8; 3]| format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
    Ok(format!(
        "\n/* accent_color */\n:root:root {{ --accent: {a}; --accent-hover: {h}; --link: {a}; }}\n@media (prefers-color-scheme: dark) {{ :root:root {{ --link: #a5b4fc; }} }}\n",
        a = hex(rgb),
        h = hex(hover)
    ))
}

pub(crate) fn parse_hex_color(color: &str) -> Option<[u8; 3]> {
    let hex = color.strip_prefix('#')?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        6 => Some([
            u8::from_str_radix(&hex[0..2], 16).ok()?,
            u8::from_str_radix(&hex[2..4], 16).ok()?,
            u8::from_str_radix(&hex[4..6], 16).ok()?,
        ]),
        3 => {
            let d = |i: usize| u8::from_str_radix(&hex[i..=i], 16).ok().map(|v| v * 17);
            Some([d(0)?, d(1)?, d(2)?])
        }
        _ => None,
    }
}

/// WCAG 2 contrast ratio of two sRGB colours.
pub(crate) fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    fn luminance(c: [u8; 3]) -> f64 {
        let lin = |v: u8| {
            let v = f64::from(v) / 255.0;
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
    }
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

fn valid_language_code(code: &str) -> bool {
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A language file: `name`, `[ui]` and `[messages]`, all strings.
fn parse_catalog(code: &str, text: &str) -> Result<Catalog, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let mut catalog = Catalog {
        code: code.to_owned(),
        ..Catalog::default()
    };
    for (key, value) in table {
        match (key.as_str(), value) {
            ("name", toml::Value::String(_)) => {}
            ("ui", toml::Value::Table(t)) => {
                for (k, v) in t {
                    let toml::Value::String(v) = v else {
                        return Err(format!("[ui] {k} must be a string"));
                    };
                    catalog.ui.insert(k, v);
                }
            }
            ("messages", toml::Value::Table(t)) => {
                for (k, v) in t {
                    let toml::Value::String(v) = v else {
                        return Err(format!("[messages] {k:?} must be a string"));
                    };
                    catalog.messages.insert(k, v);
                }
            }
            (other, _) => return Err(format!("unknown key {other:?} (name, [ui], [messages])")),
        }
    }
    Ok(catalog)
}

/// The best of `Accept-Language` that `known` accepts: by q-value, exact tag
/// first, then its primary language (`de-AT` -> `de`).
pub fn best_language(header: &str, known: impl Fn(&str) -> bool) -> Option<String> {
    let mut wanted: Vec<(f32, usize, String)> = header
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut fields = part.split(';');
            let tag = fields.next()?.trim().to_ascii_lowercase();
            if tag.is_empty() || tag == "*" || tag.len() > 35 {
                return None;
            }
            let q = fields
                .find_map(|f| f.trim().strip_prefix("q=").map(str::trim))
                .map_or(Some(1.0), |q| q.parse::<f32>().ok())?;
            (q > 0.0).then_some((q, i, tag))
        })
        .take(32)
        .collect();
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, tag) in &wanted {
        if known(tag) {
            return Some(tag.clone());
        }
        let primary = tag.split('-').next().unwrap_or_default();
        if known(primary) {
            return Some(primary.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::{Page, ProviderButton};

    fn placeholders(text: &str) -> Vec<&str> {
        let mut out: Vec<&str> = text
            .match_indices('{')
            .filter_map(|(i, _)| text[i + 1..].find('}').map(|end| &text[i + 1..i + 1 + end]))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_built_in_string_is_in_every_language() {
        let look = Look::default();
        let en = look.language(Some("en"));
        assert_eq!(look.languages().len(), 5);
        for lang in look.languages() {
            let code = &lang.code;
            for (key, english) in &en.ui {
                let text = lang
                    .ui
                    .get(key)
                    .unwrap_or_else(|| panic!("{code}: [ui] {key} missing"));
                assert!(!text.trim().is_empty(), "{code}: [ui] {key} empty");
                assert_eq!(
                    placeholders(text),
                    placeholders(english),
                    "{code}: [ui] {key}"
                );
            }
            assert_eq!(lang.ui.len(), en.ui.len(), "{code}: extra [ui] keys");
            for english in en.messages.keys() {
                let text = lang
                    .messages
                    .get(english)
                    .unwrap_or_else(|| panic!("{code}: [messages] {english:?} missing"));
                assert!(!text.trim().is_empty(), "{code}: {english:?} empty");
            }
            assert_eq!(
                lang.messages.len(),
                en.messages.len(),
                "{code}: extra messages"
            );
        }
        for (english, text) in &en.messages {
            assert_eq!(english, text, "en.toml translates {english:?}");
        }
    }

    /// Every sentence the request code shows on an error page has its translations.
    #[test]
    fn every_error_sentence_of_the_code_is_translated() {
        let en = Look::default().language(None).clone();
        let sources = [
            include_str!("../proxy/mod.rs"),
            include_str!("../providers/mod.rs"),
        ];
        let mut checked = 0;
        for source in sources {
            let mut rest = source;
            while let Some(at) = rest
                .find("Page::error(")
                .or_else(|| rest.find("fn user_message"))
            {
                let window: String = rest[at..].chars().take(2000).collect();
                let end = if window.starts_with("fn user_message") {
                    window.find("\n    }\n").unwrap_or(window.len())
                } else {
                    window
                        .find("\n        )")
                        .unwrap_or(window.len())
                        .min(window.find(");").unwrap_or(window.len()))
                };
                let window = &window[..end];
                let mut parts = window.split('"');
                parts.next();
                while let (Some(literal), _) = (parts.next(), parts.next()) {
                    let words = literal.contains(' ')
                        && !literal.contains('{')
                        && literal.bytes().any(|b| b.is_ascii_lowercase());
                    if words {
                        assert!(
                            en.messages.contains_key(literal),
                            "{literal:?} is not in the language files"
                        );
                        checked += 1;
                    }
                }
                rest = &rest[at + 10..];
            }
        }
        assert!(checked >= 25, "only {checked} sentences found");
    }

    #[test]
    fn accept_language_picks_the_best_known_language() {
        let look = Look::default();
        let pick = |h: &str| look.language(Some(h)).code.clone();
        assert_eq!(pick("de-DE,de;q=0.9,en;q=0.8"), "de");
        assert_eq!(pick("fr-CA"), "fr");
        assert_eq!(pick("pt-BR, es;q=0.5, en;q=0.4"), "es");
        assert_eq!(pick("en;q=0.5, ja"), "ja");
        assert_eq!(pick("zh, *"), "en");
        assert_eq!(pick("de;q=0, fr;q=0.1"), "fr");
        assert_eq!(pick(""), "en");
        assert_eq!(look.language(None).code, "en");
        let page = Page::error(404, "Not found", "There is nothing at this address.", "/");
        let html = page.render(&look, look.language(Some("ja")), None);
        assert!(html.contains("<html lang=\"ja\">"), "{html}");
        assert!(html.contains("ページが見つかりません"), "{html}");
        assert!(html.contains("エラー 404"), "{html}");
    }

    fn config_with(f: impl FnOnce(&mut PagesConfig)) -> PagesConfig {
        let mut c = PagesConfig::default();
        f(&mut c);
        c
    }

    fn problems(config: &PagesConfig) -> Vec<String> {
        Look::load(config)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, m)| format!("{k}: {m}"))
            .collect()
    }

    #[test]
    fn language_can_be_forced() {
        let look = Look::load(&config_with(|c| c.language = Some("fr".into()))).unwrap();
        assert_eq!(look.language(Some("de")).code, "fr");
        let bad = problems(&config_with(|c| c.language = Some("xx".into())));
        assert!(
            bad[0].starts_with("pages.language: \"xx\" is not a language"),
            "{bad:?}"
        );
    }

    #[test]
    fn accent_color_is_checked_for_contrast() {
        assert!(Look::load(&config_with(|c| c.accent_color = Some("#4338ca".into()))).is_ok());
        for (color, want) in [
            ("#ffd700", "contrast of 1."),
            ("red", "is not a colour"),
            ("#12345", "is not a colour"),
            ("#fff", "contrast of 1.00:1"),
        ] {
            let p = problems(&config_with(|c| c.accent_color = Some(color.into())));
            assert_eq!(p.len(), 1, "{color}: {p:?}");
            assert!(
                p[0].starts_with("pages.accent_color: ") && p[0].contains(want),
                "{p:?}"
            );
        }
        let look = Look::load(&config_with(|c| c.accent_color = Some("#0a5c36".into()))).unwrap();
        let html = Page::error(404, "a", "b", "/").render(&look, look.language(None), None);
        assert!(html.contains("--accent: #0a5c36;"), "{html}");
        // Contrast of known pairs (WCAG 2).
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 0.01);
        assert!((contrast([0x43, 0x38, 0xca], [255, 255, 255]) - 7.9).abs() < 0.2);
    }

    #[test]
    fn logo_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("logo.svg");
        std::fs::write(
            &svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
        )
        .unwrap();
        let look = Look::load(&config_with(|c| {
            c.logo = Some(svg.clone());
            c.title = Some("Acme <Intranet>".into());
        }))
        .unwrap();
        let logo = look.logo().unwrap();
        assert_eq!(logo.path, "/oauth2/static/logo.svg");
        assert_eq!(logo.content_type, "image/svg+xml");
        let html = Page::sign_in(&[], "/", None).render(&look, look.language(None), None);
        assert!(
            html.contains("<img class=\"mark mark-logo\" src=\"/oauth2/static/logo.svg\" alt=\"Acme &lt;Intranet&gt;\">"),
            "{html}"
        );
        assert!(
            html.contains("<title>Sign in \u{b7} Acme &lt;Intranet&gt;</title>"),
            "{html}"
        );

        let big = dir.path().join("big.png");
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.resize(MAX_LOGO_BYTES + 1, 0);
        std::fs::write(&big, bytes).unwrap();
        let p = problems(&config_with(|c| c.logo = Some(big)));
        assert!(
            p[0].starts_with("pages.logo: ") && p[0].contains("larger than the 256 KiB"),
            "{p:?}"
        );
        let text = dir.path().join("logo.txt");
        std::fs::write(&text, "hello").unwrap();
        let p = problems(&config_with(|c| c.logo = Some(text)));
        assert!(p[0].contains("not a PNG, JPEG, WebP or SVG"), "{p:?}");
        let p = problems(&config_with(|c| {
            c.logo = Some(dir.path().join("missing.png"))
        }));
        assert!(p[0].starts_with("pages.logo: "), "{p:?}");
    }

    #[test]
    fn custom_css_and_footer_reach_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let css = dir.path().join("custom.css");
        std::fs::write(&css, ".card { border-width: 3px; }").unwrap();
        let look = Look::load(&config_with(|c| {
            c.custom_css = Some(css.clone());
            c.footer = Some("Help: it@acme.example <desk>".into());
        }))
        .unwrap();
        for page in [
            Page::sign_in(&[], "/", None),
            Page::error(500, "x", "y", "/"),
            Page::forbidden("a@b", "/oauth2/sign_out", &[], "/"),
        ] {
            let html = page.render(&look, look.language(None), None);
            assert!(html.contains(".card { border-width: 3px; }"), "{html}");
            assert!(
                html.contains("<p>Help: it@acme.example &lt;desk&gt;</p>"),
                "{html}"
            );
            // The policy allows exactly this page's stylesheet.
            let csp = crate::pages::content_security_policy(&html);
            let meta = format!("content=\"{}\"", crate::pages::html::escape(&csp));
            assert!(html.contains(&meta), "{csp}");
        }
        std::fs::write(&css, "</style><script>alert(1)</script>").unwrap();
        let p = problems(&config_with(|c| c.custom_css = Some(css)));
        assert!(p[0].starts_with("pages.custom_css: "), "{p:?}");
    }

    #[test]
    fn operator_templates_are_auto_escaped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sign_in.html"),
            "<!doctype html><title>{{ page_title }}</title><ul>{% for p in providers %}<li><a href=\"{{ p.href }}\">{{ p.name }}</a></li>{% endfor %}</ul>",
        )
        .unwrap();
        let look = Look::load(&config_with(|c| c.templates = Some(dir.path().into()))).unwrap();
        let hostile = [ProviderButton {
            id: "acme",
            display_name: "<script>alert(1)</script>",
            logo: crate::pages::Logo::OpenId,
        }];
        let html = Page::sign_in(&hostile, "/", None).render(&look, look.language(None), None);
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;</a>"),
            "{html}"
        );
        assert!(html.contains("href=\"/oauth2/start/acme?rd=/\""), "{html}");
        // The other pages stay the built-in ones.
        let error =
            Page::error(404, "Not found", "x", "/").render(&look, look.language(None), None);
        assert!(error.contains("class=\"eyebrow\""), "{error}");
    }

    #[test]
    fn a_broken_template_is_a_configuration_error() {
        for (text, want) in [
            ("{% if %}", "syntax error"),
            ("{{ providers | no_such_filter }}", "no_such_filter"),
            ("{{ tr(\"no_such_key\") }}", "no_such_key"),
            ("{{ not_a_variable.x }}", "undefined"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("error.html"), text).unwrap();
            let p = problems(&config_with(|c| c.templates = Some(dir.path().into())));
            assert_eq!(p.len(), 1, "{text}: {p:?}");
            assert!(p[0].starts_with("pages.templates: "), "{p:?}");
            assert!(p[0].to_lowercase().contains(want), "{text}: {p:?}");
        }
        let p = problems(&config_with(|c| c.templates = Some("/no/such/dir".into())));
        assert!(p[0].starts_with("pages.templates: /no/such/dir"), "{p:?}");
    }

    #[test]
    fn an_operator_language_file_overrides_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("de.toml"),
            "[ui]\nsign_in = \"Einloggen\"\n[messages]\n\"Not found\" = \"Gibt es nicht\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("nl.toml"),
            "name = \"Nederlands\"\n[ui]\nsign_in = \"Inloggen\"\ncontinue_with = \"Doorgaan met {name}\"\n",
        )
        .unwrap();
        let look = Look::load(&config_with(|c| c.templates = Some(dir.path().into()))).unwrap();
        let de = look.language(Some("de"));
        assert_eq!(de.ui["sign_in"], "Einloggen");
        assert_eq!(de.ui["sign_out"], "Abmelden", "the rest stays built-in");
        let html = Page::error(404, "Not found", "x", "/").render(&look, de, None);
        assert!(html.contains("<h1>Gibt es nicht</h1>"), "{html}");
        let nl = look.language(Some("nl-BE"));
        assert_eq!(nl.code, "nl");
        assert_eq!(nl.ui["sign_in"], "Inloggen");
        assert_eq!(nl.ui["sign_out"], "Sign out", "English for the rest");

        std::fs::write(dir.path().join("fr.toml"), "[ui]\nsign_inn = \"x\"\n").unwrap();
        let p = problems(&config_with(|c| c.templates = Some(dir.path().into())));
        assert!(
            p.iter().any(|p| p.contains("sign_inn is not a key")),
            "{p:?}"
        );
    }

    #[test]
    fn the_last_used_provider_is_marked_and_first() {
        let look = Look::default();
        let buttons = [
            ProviderButton {
                id: "google",
                display_name: "Google",
                logo: crate::pages::Logo::Google,
            },
            ProviderButton {
                id: "acme",
                display_name: "Acme SSO",
                logo: crate::pages::Logo::OpenId,
            },
        ];
        let html =
            Page::sign_in(&buttons, "/", None).render(&look, look.language(None), Some("acme"));
        let acme = html.find("/oauth2/start/acme").unwrap();
        let google = html.find("/oauth2/start/google").unwrap();
        assert!(acme < google, "{html}");
        assert_eq!(html.matches("Last used").count(), 1, "{html}");
        assert!(
            html.contains("class=\"btn last-used\" href=\"/oauth2/start/acme"),
            "{html}"
        );
        // An unknown id marks nothing.
        let html =
            Page::sign_in(&buttons, "/", None).render(&look, look.language(None), Some("nope"));
        assert!(!html.contains("Last used"));
        assert!(
            html.find("/oauth2/start/google").unwrap() < html.find("/oauth2/start/acme").unwrap()
        );
    }
}
