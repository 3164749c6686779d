//! Pure decisions about a request: which of Portcullis's own routes it is,
//! whether it is an API call, and where an unauthenticated browser goes.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::redirect::safe_return_path;
use crate::config::Access;

/// Portcullis's own paths live under this prefix.
pub const PREFIX: &str = "/oauth2/";
pub const SIGN_IN: &str = "/oauth2/sign_in";
pub const SIGN_OUT: &str = "/oauth2/sign_out";

/// Characters left as they are in a query value: unreserved ones and `/`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    SignIn,
    Start(&'a str),
    Callback(&'a str),
    SignOut,
    UserInfo,
    Auth,
    /// `/oauth2/static/{name}`: the operator's logo.
    Static(&'a str),
    /// `/oauth2/jwks.json`: the keys that verify the identity assertion.
    Jwks,
    /// Under `/oauth2/` but nothing we serve.
    NotFound,
    /// Everything else belongs to the upstream.
    Upstream,
}

pub fn route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return if path == "/oauth2" {
            Route::NotFound
        } else {
            Route::Upstream
        };
    };
    match rest {
        "sign_in" => Route::SignIn,
        "sign_out" => Route::SignOut,
        "userinfo" => Route::UserInfo,
        "auth" => Route::Auth,
        "jwks.json" => Route::Jwks,
        _ => {
            if let Some(p) = rest.strip_prefix("start/") {
                if valid_provider_id(p) {
                    return Route::Start(p);
                }
            } else if let Some(name) = rest.strip_prefix("static/") {
                if !name.is_empty() && !name.contains('/') {
                    return Route::Static(name);
                }
            } else if let Some(p) = rest.strip_prefix("callback/") {
                if valid_provider_id(p) {
                    return Route::Callback(p);
                }
            }
            Route::NotFound
        }
    }
}

fn valid_provider_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 32
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// What the request says about itself, for the API-or-browser decision.
#[derive(Default, Debug)]
pub struct RequestKind<'a> {
    pub path: &'a str,
    pub accept: Option<&'a [u8]>,
    pub x_requested_with: Option<&'a [u8]>,
    pub sec_fetch_mode: Option<&'a [u8]>,
}

/// An API request gets 401 JSON instead of a redirect to the picker:
/// `api_paths`, `X-Requested-With: XMLHttpRequest`, a `Sec-Fetch-Mode` other
/// than `navigate`, or no `text/html` in `Accept`.
pub fn is_api_request(access: &Access, req: &RequestKind<'_>) -> bool {
    if access
        .api_paths
        .as_ref()
        .is_some_and(|set| set.is_match(req.path))
    {
        return true;
    }
    if req
        .x_requested_with
        .is_some_and(|v| v.eq_ignore_ascii_case(b"XMLHttpRequest"))
    {
        return true;
    }
    if req
        .sec_fetch_mode
        .is_some_and(|v| !v.eq_ignore_ascii_case(b"navigate"))
    {
        return true;
    }
    !req.accept.is_some_and(accepts_html)
}

fn accepts_html(accept: &[u8]) -> bool {
    accept
        .windows(9)
        .any(|w| w.eq_ignore_ascii_case(b"text/html"))
}

/// `/oauth2/sign_in?rd=...` for a request's path and query.
pub fn sign_in_location(path_and_query: &str) -> String {
    with_rd(SIGN_IN, path_and_query)
}

/// `{base}?rd={percent-encoded safe return path}`.
pub fn with_rd(base: &str, rd: &str) -> String {
    let rd = safe_return_path(rd);
    if rd == "/" {
        return format!("{base}?rd=%2F");
    }
    format!("{base}?rd={}", utf8_percent_encode(&rd, QUERY_VALUE))
}

/// The `rd` parameter of a query string, made safe (`/` when absent).
pub fn rd_param(query: Option<&str>) -> String {
    let rd = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .take(64)
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned())
    });
    match rd {
        Some(rd) => safe_return_path(&rd).into_owned(),
        None => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/oauth2/sign_in"), Route::SignIn);
        assert_eq!(route("/oauth2/start/google"), Route::Start("google"));
        assert_eq!(
            route("/oauth2/callback/acme-sso"),
            Route::Callback("acme-sso")
        );
        assert_eq!(route("/oauth2/start/Google"), Route::NotFound);
        assert_eq!(route("/oauth2/start/"), Route::NotFound);
        assert_eq!(route("/oauth2/start/a/b"), Route::NotFound);
        assert_eq!(route("/oauth2/sign_in/"), Route::NotFound);
        assert_eq!(route("/oauth2"), Route::NotFound);
        assert_eq!(route("/oauth2x"), Route::Upstream);
        assert_eq!(route("/"), Route::Upstream);
        assert_eq!(route("/app/oauth2/sign_in"), Route::Upstream);
    }

    #[test]
    fn api_or_browser() {
        let access = Access::default();
        let nav = RequestKind {
            path: "/",
            accept: Some(b"text/html,application/xhtml+xml,*/*;q=0.8"),
            ..Default::default()
        };
        assert!(!is_api_request(&access, &nav));
        let curl = RequestKind {
            path: "/",
            accept: Some(b"*/*"),
            ..Default::default()
        };
        assert!(is_api_request(&access, &curl));
        let xhr = RequestKind {
            x_requested_with: Some(b"XMLHttpRequest"),
            ..nav_like()
        };
        assert!(is_api_request(&access, &xhr));
        let fetch = RequestKind {
            sec_fetch_mode: Some(b"cors"),
            ..nav_like()
        };
        assert!(is_api_request(&access, &fetch));
        let navigate = RequestKind {
            sec_fetch_mode: Some(b"navigate"),
            ..nav_like()
        };
        assert!(!is_api_request(&access, &navigate));
        let access = Access {
            api_paths: regex::RegexSet::new(["^/api/"]).ok(),
            ..Default::default()
        };
        let api = RequestKind {
            path: "/api/items",
            ..nav_like()
        };
        assert!(is_api_request(&access, &api));
    }

    fn nav_like() -> RequestKind<'static> {
        RequestKind {
            path: "/",
            accept: Some(b"text/html"),
            ..Default::default()
        }
    }

    #[test]
    fn sign_in_location_keeps_the_path() {
        assert_eq!(sign_in_location("/"), "/oauth2/sign_in?rd=%2F");
        assert_eq!(
            sign_in_location("/a/b?x=1&y=2"),
            "/oauth2/sign_in?rd=/a/b%3Fx%3D1%26y%3D2"
        );
        assert_eq!(sign_in_location("//evil.com"), "/oauth2/sign_in?rd=%2F");
    }

    #[test]
    fn rd_param_is_made_safe() {
        assert_eq!(rd_param(Some("rd=%2Fx%3Fa%3D1")), "/x?a=1");
        assert_eq!(rd_param(Some("rd=%2F%2Fevil.com")), "/");
        assert_eq!(rd_param(Some("x=1")), "/");
        assert_eq!(rd_param(None), "/");
    }
}
