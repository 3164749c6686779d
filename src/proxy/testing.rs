//! Test apps built from a configuration text, for the gate's, the
//! explainer's and the fast path's unit tests.

use super::App;

/// The session secret of the test configurations.
pub const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The app a whole configuration text describes (cookie sessions).
pub fn app_from(toml: &str) -> App {
    let settings = crate::config::parse(toml, &|_: &str| None).expect("config");
    let http = crate::providers::http_client().expect("client");
    let providers = crate::providers::Providers::build(&settings, &http).expect("providers");
    App::new(
        settings,
        providers,
        "127.0.0.1:8080".parse().unwrap(),
        crate::session::SessionStore::Cookie,
    )
}

/// The usual test app: one Google provider, `example.com` allowed,
/// `^/public/` and `GET ^/$` without sign-in, `^/api/` as API; `[server]`
/// keys in `server_extra`, more tables in `extra`.
pub fn app_configured(server_extra: &str, extra: &str) -> App {
    app_from(&format!(
        r#"[server]
listen = "127.0.0.1:4180"
public_url = "http://app.example"
{server_extra}

[upstream]
url = "http://127.0.0.1:8080"

[session]
secret = "{SECRET}"

[providers.google]
client_id = "id"
client_secret = "secret"
issuer = "http://127.0.0.1:9"

[access]
allowed_email_domains = ["example.com"]
skip_auth = ["^/public/", "GET ^/$"]
api_paths = ["^/api/"]
{extra}
"#
    ))
}
