//! Turns the parsed TOML into `Settings`, collecting every problem at once.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use oauth2::ClientSecret;
use regex::RegexSet;
use url::{Host, Url};

use super::reader::{Env, Issue, Reader, Section};
use super::{
    Access, Facebook, HeaderNames, Provider, ProviderKind, SameSite, Server, Session, Settings,
    Tls, Twitter, Upstream, XProtocol,
};
use crate::session::seal::SessionKey;

const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

// X's endpoints (developer.x.com: "OAuth 2.0 Authorization Code Flow with
// PKCE", "Log in with X", "GET /2/users/me", "GET account/verify_credentials").
const X_OAUTH2_AUTHORIZE: &str = "https://x.com/i/oauth2/authorize";
const X_OAUTH2_TOKEN: &str = "https://api.x.com/2/oauth2/token";
const X_OAUTH2_USERINFO: &str = "https://api.x.com/2/users/me";
const X_OAUTH1_REQUEST_TOKEN: &str = "https://api.x.com/oauth/request_token";
const X_OAUTH1_AUTHORIZE: &str = "https://api.x.com/oauth/authenticate";
const X_OAUTH1_ACCESS_TOKEN: &str = "https://api.x.com/oauth/access_token";
const X_OAUTH1_USERINFO: &str = "https://api.x.com/1.1/account/verify_credentials.json";
/// The current Graph API version (developers.facebook.com changelog, 2026-07).
const FACEBOOK_API_VERSION: &str = "v26.0";
const FACEBOOK_DEFAULT_SCOPES: [&str; 2] = ["email", "public_profile"];
/// X's scopes for signing in; add "users.email" when the app has email access.
const X_DEFAULT_SCOPES: [&str; 2] = ["users.read", "tweet.read"];

pub(super) fn build(table: toml::Table, env: &dyn Env) -> Result<Settings, Vec<Issue>> {
    let mut r = Reader::new(env);
    let mut root = Section::new("", table);

    let mut server_s = r.table_or_empty(&mut root, "server");
    let server = server(&mut r, &mut server_s);
    r.finish(server_s);

    let upstream = match r.table(&mut root, "upstream") {
        Some(mut s) => {
            let u = upstream(&mut r, &mut s);
            r.finish(s);
            u
        }
        None => {
            r.issue(
                "upstream",
                "is required: the [upstream] table with url = \"http://...\"",
            );
            None
        }
    };

    let session = match r.table(&mut root, "session") {
        Some(mut s) => {
            let https = server.as_ref().map(|s| s.is_https()).unwrap_or(false);
            let v = session(&mut r, &mut s, https);
            r.finish(s);
            v
        }
        None => {
            r.issue(
                "session",
                "is required: the [session] table with secret = \"...\" (make one with `portcullis secret`)",
            );
            None
        }
    };

    let mut headers_s = r.table_or_empty(&mut root, "headers");
    let headers = headers(&mut r, &mut headers_s);
    r.finish(headers_s);

    let mut access_s = r.table_or_empty(&mut root, "access");
    let access = access(&mut r, &mut access_s);
    r.finish(access_s);

    let mut admin_listen = None;
    if let Some(mut admin) = r.table(&mut root, "admin") {
        let key = admin.key("listen");
        if let Some(v) = r.string(&mut admin, "listen") {
            match v.parse::<SocketAddr>() {
                Ok(a) => admin_listen = Some(a),
                Err(_) => r.issue(
                    key,
                    format!("{v:?} is not an address:port such as \"127.0.0.1:9180\""),
                ),
            }
        }
        r.finish(admin);
    }
    if let (Some(a), Some(s)) = (admin_listen, server.as_ref()) {
        if a == s.listen {
            r.issue(
                "admin.listen",
                "must differ from server.listen (metrics must never be public)",
            );
        }
    }

    let mut providers_s = r.table_or_empty(&mut root, "providers");
    let mut providers = Vec::new();
    for (id, mut s) in r.tables(&mut providers_s) {
        if let Some(p) = provider(&mut r, &id, &mut s) {
            providers.push(p);
        }
        r.finish(s);
    }
    let providers_path = providers_s.path().to_owned();
    r.finish(providers_s);
    if providers.is_empty() && !r.issues.iter().any(|i| i.key.starts_with("providers")) {
        r.issue(
            providers_path,
            "at least one provider is required, e.g. [providers.google]",
        );
    }

    r.finish(root);

    match (server, upstream, session, headers, access) {
        (Some(server), Some(upstream), Some(session), Some(headers), Some(access))
            if r.issues.is_empty() =>
        {
            Ok(Settings {
                server,
                upstream,
                session,
                headers,
                access,
                admin: admin_listen,
                providers,
            })
        }
        _ => Err(r.issues),
    }
}

fn server(r: &mut Reader, s: &mut Section) -> Option<Server> {
    let listen_key = s.key("listen");
    let listen = match r.string(s, "listen") {
        None => Some(SocketAddr::from(([0, 0, 0, 0], 4180))),
        Some(v) => {
            match v.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.issue(
                    listen_key,
                    format!("{v:?} is not an address:port such as \"0.0.0.0:4180\" or \"[::]:4180\""),
                );
                    None
                }
            }
        }
    };

    let public_key = s.key("public_url");
    let public_url = r.required_string(s, "public_url").and_then(|v| {
        let url = match Url::parse(&v) {
            Ok(u) => u,
            Err(e) => {
                r.issue(&public_key, format!("{v:?} is not a URL: {e}"));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            r.issue(&public_key, "must be an http:// or https:// origin, e.g. \"https://app.example.com\"");
            return None;
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            r.issue(
                &public_key,
                "must be an origin only (scheme, host, optional port) with no path, query or fragment",
            );
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            r.issue(&public_key, "must not contain a user name or password");
            return None;
        }
        Some(url)
    });

    let cert_key = s.key("tls_cert");
    let cert = r.string(s, "tls_cert");
    let key = r.string(s, "tls_key");
    let tls = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let mut ok = true;
            for (k, p) in [(&cert_key, &cert), (&s.key("tls_key"), &key)] {
                if !std::path::Path::new(p).is_file() {
                    r.issue(k.as_str(), format!("file {p:?} does not exist"));
                    ok = false;
                }
            }
            ok.then(|| Tls {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            })
        }
        _ => {
            r.issue(cert_key, "tls_cert and tls_key must be set together");
            None
        }
    };

    let threads = r.positive_integer(s, "threads").unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let shutdown_grace = r
        .duration(s, "shutdown_grace")
        .unwrap_or(Duration::from_secs(10));

    Some(Server {
        listen: listen?,
        public_url: public_url?,
        tls,
        threads,
        shutdown_grace,
    })
}

fn upstream(r: &mut Reader, s: &mut Section) -> Option<Upstream> {
    let url_key = s.key("url");
    let url = r.required_string(s, "url").and_then(|v| {
        let url = match Url::parse(&v) {
            Ok(u) => u,
            Err(e) => {
                r.issue(&url_key, format!("{v:?} is not a URL: {e}"));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            r.issue(&url_key, "must start with http:// or https://");
            return None;
        }
        if url.host().is_none() {
            r.issue(&url_key, "must name a host");
            return None;
        }
        if url.path() != "/" || url.query().is_some() {
            r.issue(
                &url_key,
                "must be scheme://host[:port] only; requests keep their own path",
            );
            return None;
        }
        Some(url)
    });
    let connect_timeout = r
        .duration(s, "connect_timeout")
        .unwrap_or(Duration::from_secs(5));
    let read_timeout = r
        .duration(s, "read_timeout")
        .unwrap_or(Duration::from_secs(60));
    // pingora's default (128) is shared by all threads: with a few hundred
    // requests in flight, most would open a new upstream connection.
    let keepalive = r.positive_integer(s, "keepalive").unwrap_or(1024);
    let url = url?;
    let host = match url.host()? {
        Host::Domain(d) => d.to_owned(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    Some(Upstream {
        port: url.port_or_known_default().unwrap_or(80),
        tls: url.scheme() == "https",
        host,
        url,
        connect_timeout,
        read_timeout,
        keepalive,
    })
}

fn session(r: &mut Reader, s: &mut Section, https: bool) -> Option<Session> {
    let secret_key = s.key("secret");
    let secret = r
        .required_string(s, "secret")
        .and_then(|v| match SessionKey::from_base64(&v) {
            Ok(k) => Some(k),
            Err(e) => {
                r.issue(
                    &secret_key,
                    format!("{e}; generate one with `portcullis secret`"),
                );
                None
            }
        });
    let prev_key = s.key("previous_secrets");
    let previous_secrets = r
        .strings(s, "previous_secrets")
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, v)| match SessionKey::from_base64(v) {
            Ok(k) => Some(k),
            Err(e) => {
                r.issue(format!("{prev_key}[{i}]"), e.to_string());
                None
            }
        })
        .collect();

    let name_key = s.key("cookie_name");
    let cookie_name = r
        .string(s, "cookie_name")
        .unwrap_or_else(|| "_portcullis".to_owned());
    let name_ok = !cookie_name.is_empty()
        && cookie_name.len() <= 64
        && cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !name_ok {
        r.issue(
            &name_key,
            "must be 1-64 characters of letters, digits, '_', '-' or '.'",
        );
    }

    let lifetime_key = s.key("lifetime");
    let lifetime = r
        .duration(s, "lifetime")
        .unwrap_or(Duration::from_secs(7 * 86400));
    if lifetime < Duration::from_secs(60) {
        r.issue(lifetime_key, "must be at least 1m");
    }

    let domain_key = s.key("domain");
    let domain = r.string(s, "domain").and_then(|d| {
        let bare = d.trim_start_matches('.');
        let ok = !bare.is_empty()
            && bare.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Some(d.to_ascii_lowercase())
        } else {
            r.issue(domain_key, format!("{d:?} is not a domain name"));
            None
        }
    });

    let secure = r.bool(s, "secure").unwrap_or(https);

    let ss_key = s.key("same_site");
    let same_site = match r.string(s, "same_site").as_deref() {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => {
            if !secure {
                r.issue(
                    &ss_key,
                    "\"none\" requires secure = true (browsers reject it otherwise)",
                );
            }
            SameSite::None
        }
        Some(other) => {
            r.issue(
                &ss_key,
                format!("{other:?} is not one of lax, strict, none"),
            );
            SameSite::Lax
        }
    };

    let store_key = s.key("store");
    match r.string(s, "store").as_deref() {
        None | Some("cookie") => {}
        Some("redis") => r.issue(
            store_key,
            "\"redis\" is not available in this version yet; use \"cookie\"",
        ),
        Some(other) => r.issue(store_key, format!("{other:?} is not one of cookie, redis")),
    }
    if s.contains("redis_url") {
        let _ = r.string(s, "redis_url");
        r.issue(
            s.key("redis_url"),
            "the redis session store is not available in this version yet; remove the key",
        );
    }

    Some(Session {
        secret: secret?,
        previous_secrets,
        cookie_name: name_ok.then_some(cookie_name)?,
        lifetime,
        domain,
        secure,
        same_site,
    })
}

fn headers(r: &mut Reader, s: &mut Section) -> Option<HeaderNames> {
    let mut one = |r: &mut Reader, key: &str, default: &'static str| -> Option<HeaderName> {
        let path = s.key(key);
        let v = r.string(s, key).unwrap_or_else(|| default.to_owned());
        match HeaderName::from_bytes(v.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                r.issue(path, format!("{v:?} is not a valid HTTP header name"));
                None
            }
        }
    };
    let user = one(r, "user", "X-User");
    let provider = one(r, "provider", "X-User-Provider");
    let email = one(r, "email", "X-User-Email");
    let name = one(r, "name", "X-User-Name");
    let login = one(r, "login", "X-User-Login");
    let picture = one(r, "picture", "X-User-Picture");
    let names = HeaderNames {
        user: user?,
        provider: provider?,
        email: email?,
        name: name?,
        login: login?,
        picture: picture?,
    };
    // Two settings naming the same header (also after '_' -> '-') would let
    // one value overwrite another.
    let all = names.all();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if crate::proxy::headers::normalize(a.as_str())
                == crate::proxy::headers::normalize(b.as_str())
            {
                r.issue(s.path(), format!("header name {a} is used twice"));
                return None;
            }
        }
    }
    const RESERVED: [&str; 8] = [
        "host",
        "cookie",
        "authorization",
        "connection",
        "content-length",
        "transfer-encoding",
        "upgrade",
        "te",
    ];
    for h in all {
        if RESERVED.contains(&h.as_str()) {
            r.issue(
                s.path(),
                format!("{h} cannot be used as an identity header"),
            );
            return None;
        }
    }
    Some(names)
}

fn access(r: &mut Reader, s: &mut Section) -> Option<Access> {
    let mut access = Access::default();
    let dom_key = s.key("allowed_email_domains");
    for (i, d) in r
        .strings(s, "allowed_email_domains")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            access.allowed_email_domains.push(d);
        } else {
            r.issue(
                format!("{dom_key}[{i}]"),
                "must be a domain name such as \"example.com\" (subdomains are not included)",
            );
        }
    }
    let em_key = s.key("allowed_emails");
    for (i, e) in r
        .strings(s, "allowed_emails")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let e = e.trim().to_ascii_lowercase();
        if crate::auth::policy::split_email(&e).is_some() {
            access.allowed_emails.push(e);
        } else {
            r.issue(format!("{em_key}[{i}]"), "is not an email address");
        }
    }
    let users_key = s.key("allowed_users");
    for (i, u) in r
        .strings(s, "allowed_users")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match u.split_once(':') {
            Some((p, sub)) if !p.is_empty() && !sub.is_empty() => access.allowed_users.push(u),
            _ => r.issue(
                format!("{users_key}[{i}]"),
                "must be an X-User value \"{provider}:{subject}\", e.g. \"google:1234\"",
            ),
        }
    }
    let skip_key = s.key("skip_auth");
    for (i, rule) in r
        .strings(s, "skip_auth")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match crate::auth::skip::SkipRule::parse(&rule) {
            Ok(rule) => access.skip_auth.push(rule),
            Err(e) => r.issue(format!("{skip_key}[{i}]"), e),
        }
    }
    access.skip_auth_preflight = r.bool(s, "skip_auth_preflight").unwrap_or(false);
    let api_key = s.key("api_paths");
    if let Some(patterns) = r.strings(s, "api_paths") {
        let mut ok = true;
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(p) {
                r.issue(
                    format!("{api_key}[{i}]"),
                    format!("invalid regex: {}", first_line(&e.to_string())),
                );
                ok = false;
            }
        }
        if ok && !patterns.is_empty() {
            access.api_paths = RegexSet::new(&patterns).ok();
        }
    }
    Some(access)
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_owned()
}

fn provider(r: &mut Reader, id: &str, s: &mut Section) -> Option<Provider> {
    let id_ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !id_ok {
        r.issue(
            s.path(),
            "a provider id must be 1-32 characters of a-z, 0-9, '-' or '_' (it appears in URLs and X-User)",
        );
    }
    let kind_key = s.key("kind");
    let kind_s = r.string(s, "kind");
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Google,
        Oidc,
        Twitter,
        Facebook,
    }
    let kind = match kind_s.as_deref().unwrap_or(id) {
        "google" => Kind::Google,
        "oidc" => Kind::Oidc,
        "twitter" | "x" => Kind::Twitter,
        "facebook" => Kind::Facebook,
        other => {
            if kind_s.is_some() {
                r.issue(
                    kind_key,
                    format!("{other:?} is not one of google, twitter, facebook, oidc"),
                );
            } else {
                r.issue(
                    kind_key,
                    "is required for this provider name: one of google, twitter, facebook, oidc",
                );
            }
            return drain(s);
        }
    };
    let display_name = r.string(s, "display_name").unwrap_or_else(|| match kind {
        Kind::Google => "Google".to_owned(),
        Kind::Twitter => "X".to_owned(),
        Kind::Facebook => "Facebook".to_owned(),
        Kind::Oidc => id.to_owned(),
    });
    let client_id = r.required_string(s, "client_id");
    if client_id.as_deref() == Some("") {
        r.issue(s.key("client_id"), "must not be empty");
    }
    let secret_key = s.key("client_secret");
    let client_secret = r.required_string(s, "client_secret");
    if client_secret.as_deref() == Some("") {
        r.issue(&secret_key, "must not be empty");
    }

    let (kind, scopes) = match kind {
        Kind::Google | Kind::Oidc => {
            let issuer_key = s.key("issuer");
            let issuer = if kind == Kind::Google {
                Some(
                    r.string(s, "issuer")
                        .unwrap_or_else(|| GOOGLE_ISSUER.to_owned()),
                )
            } else {
                r.required_string(s, "issuer")
            }
            .and_then(|v| endpoint_url(r, &issuer_key, &v).map(|_| v));
            let scopes = scopes(r, s, &DEFAULT_SCOPES);
            if scopes
                .as_ref()
                .is_some_and(|v| !v.iter().any(|s| s == "openid"))
            {
                r.issue(s.key("scopes"), "must include \"openid\"");
            }
            let issuer = issuer?;
            let kind = if kind == Kind::Google {
                ProviderKind::Google { issuer }
            } else {
                ProviderKind::Oidc { issuer }
            };
            (kind, scopes)
        }
        Kind::Twitter => {
            let (twitter, scopes) = twitter(r, s)?;
            (ProviderKind::Twitter(Box::new(twitter)), scopes)
        }
        Kind::Facebook => {
            let facebook = facebook(r, s);
            let scopes = scopes(r, s, &FACEBOOK_DEFAULT_SCOPES);
            (ProviderKind::Facebook(Box::new(facebook?)), scopes)
        }
    };
    if !id_ok {
        return None;
    }
    Some(Provider {
        id: id.to_owned(),
        kind,
        display_name,
        client_id: client_id.filter(|c| !c.is_empty())?,
        client_secret: ClientSecret::new(client_secret.filter(|c| !c.is_empty())?),
        scopes: scopes?,
    })
}

fn scopes(r: &mut Reader, s: &mut Section, default: &[&str]) -> Option<Vec<String>> {
    let key = s.key("scopes");
    let scopes = r
        .strings(s, "scopes")
        .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
    if scopes
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        r.issue(key, "each scope must be one word");
        return None;
    }
    Some(scopes)
}

/// `[providers.facebook]`: the Graph API version and the endpoints built from it.
fn facebook(r: &mut Reader, s: &mut Section) -> Option<Facebook> {
    let version_key = s.key("api_version");
    let version = r
        .string(s, "api_version")
        .unwrap_or_else(|| FACEBOOK_API_VERSION.to_owned());
    let version_ok = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
    if !version_ok {
        r.issue(
            version_key,
            format!("{version:?} is not a Graph API version such as \"v26.0\""),
        );
        return None;
    }
    let mut url = |r: &mut Reader, key: &str, default: String| -> Option<Url> {
        let path = s.key(key);
        let v = r.string(s, key).unwrap_or(default);
        endpoint_url(r, &path, &v)
    };
    let authorize_url = url(
        r,
        "authorize_url",
        format!("https://www.facebook.com/{version}/dialog/oauth"),
    );
    let token_url = url(
        r,
        "token_url",
        format!("https://graph.facebook.com/{version}/oauth/access_token"),
    );
    let userinfo_url = url(
        r,
        "userinfo_url",
        format!("https://graph.facebook.com/{version}/me"),
    );
    Some(Facebook {
        authorize_url: authorize_url?,
        token_url: token_url?,
        userinfo_url: userinfo_url?,
    })
}

/// `[providers.twitter]`: the protocol, and each endpoint (X's by default).
fn twitter(r: &mut Reader, s: &mut Section) -> Option<(Twitter, Option<Vec<String>>)> {
    let protocol_key = s.key("protocol");
    let protocol = match r.string(s, "protocol").as_deref() {
        None | Some("oauth2") => XProtocol::OAuth2,
        Some("oauth1") => XProtocol::OAuth1,
        Some(other) => {
            r.issue(
                protocol_key,
                format!("{other:?} is not one of oauth2, oauth1"),
            );
            XProtocol::OAuth2
        }
    };
    let (only_here, elsewhere): (&[&str], &[&str]) = match protocol {
        XProtocol::OAuth2 => (
            &["token_url", "scopes"],
            &["request_token_url", "access_token_url"],
        ),
        XProtocol::OAuth1 => (
            &["request_token_url", "access_token_url"],
            &["token_url", "scopes"],
        ),
    };
    let _ = only_here;
    for key in elsewhere {
        if s.contains(key) {
            let _ = r.string(s, key);
            let other = match protocol {
                XProtocol::OAuth2 => "oauth1",
                XProtocol::OAuth1 => "oauth2",
            };
            r.issue(
                s.key(key),
                format!("applies only with protocol = \"{other}\""),
            );
        }
    }
    let mut url = |r: &mut Reader, key: &str, default: &str| -> Option<Url> {
        let path = s.key(key);
        let v = r.string(s, key).unwrap_or_else(|| default.to_owned());
        endpoint_url(r, &path, &v)
    };
    let (authorize_url, userinfo_url) = match protocol {
        XProtocol::OAuth2 => (
            url(r, "authorize_url", X_OAUTH2_AUTHORIZE),
            url(r, "userinfo_url", X_OAUTH2_USERINFO),
        ),
        XProtocol::OAuth1 => (
            url(r, "authorize_url", X_OAUTH1_AUTHORIZE),
            url(r, "userinfo_url", X_OAUTH1_USERINFO),
        ),
    };
    let token_url = url(r, "token_url", X_OAUTH2_TOKEN);
    let request_token_url = url(r, "request_token_url", X_OAUTH1_REQUEST_TOKEN);
    let access_token_url = url(r, "access_token_url", X_OAUTH1_ACCESS_TOKEN);
    let scopes = match protocol {
        XProtocol::OAuth2 => scopes(r, s, &X_DEFAULT_SCOPES),
        XProtocol::OAuth1 => Some(Vec::new()),
    };
    Some((
        Twitter {
            protocol,
            authorize_url: authorize_url?,
            token_url: token_url?,
            userinfo_url: userinfo_url?,
            request_token_url: request_token_url?,
            access_token_url: access_token_url?,
        },
        scopes,
    ))
}

/// Consumes every key of a provider table we cannot use, so that the one
/// real problem is reported rather than a list of "unknown key".
fn drain(s: &mut Section) -> Option<Provider> {
    *s = Section::new(s.path().to_owned(), toml::Table::new());
    None
}

/// A provider endpoint: https, or http on a loopback host only.
fn endpoint_url(r: &mut Reader, key: &str, v: &str) -> Option<Url> {
    let url = match Url::parse(v) {
        Ok(u) => u,
        Err(e) => {
            r.issue(key, format!("{v:?} is not a URL: {e}"));
            return None;
        }
    };
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Some(url),
        "http" if loopback => Some(url),
        "http" => {
            r.issue(
                key,
                "must use https:// (http:// is allowed only for a loopback host such as 127.0.0.1 or localhost)",
            );
            None
        }
        _ => {
            r.issue(key, "must be an https:// URL");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, ConfigError};

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some(SECRET.to_owned()),
            "GOOGLE_SECRET" => Some("gsecret-value".to_owned()),
            _ => None,
        }
    }

    fn good() -> String {
        r#"
[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:8080"
[session]
secret = "${SECRET}"
[providers.google]
client_id = "id.apps.googleusercontent.com"
client_secret = "${GOOGLE_SECRET}"
"#
        .to_owned()
    }

    fn issues(text: &str) -> Vec<String> {
        match parse(text, &env) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(v)) => v.into_iter().map(|i| i.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let s = parse(&good(), &env).expect("valid");
        assert_eq!(s.session.cookie_name, "_portcullis");
        assert!(s.session.secure, "https public_url means Secure cookies");
        assert_eq!(s.session.lifetime.as_secs(), 7 * 86400);
        assert_eq!(s.headers.user.as_str(), "x-user");
        assert_eq!(s.providers.len(), 1);
        assert!(
            matches!(&s.providers[0].kind, super::super::ProviderKind::Google { issuer } if issuer == "https://accounts.google.com")
        );
        assert_eq!(s.providers[0].display_name, "Google");
        assert_eq!(s.upstream.connect_timeout.as_secs(), 5);
        assert_eq!(s.upstream.keepalive, 1024);
        assert_eq!(
            s.server.callback_url("google"),
            "https://app.example.com/oauth2/callback/google"
        );
        assert!(s.server.threads >= 1);
    }

    /// Each mistake is reported with its key, all at once, and never echoes a secret.
    #[test]
    fn every_mistake_is_reported_with_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "listen = \"127.0.0.1:4180\"",
                "listen = \"nowhere\"",
                "server.listen",
            ),
            (
                "public_url = \"https://app.example.com\"",
                "public_url = \"app.example.com\"",
                "server.public_url",
            ),
            (
                "public_url = \"https://app.example.com\"",
                "public_url = \"https://app.example.com/sub\"",
                "server.public_url",
            ),
            (
                "url = \"http://127.0.0.1:8080\"",
                "url = \"ftp://127.0.0.1\"",
                "upstream.url",
            ),
            (
                "secret = \"${SECRET}\"",
                "secret = \"c2hvcnQ=\"",
                "session.secret",
            ),
            (
                "secret = \"${SECRET}\"",
                "secret = \"${NOPE}\"",
                "session.secret",
            ),
            (
                "[session]",
                "[session]\nlifetime = \"forever\"",
                "session.lifetime",
            ),
            (
                "[session]",
                "[session]\nsame_site = \"loose\"",
                "session.same_site",
            ),
            (
                "[session]",
                "[session]\ncookie_name = \"bad name;\"",
                "session.cookie_name",
            ),
            ("[session]", "[session]\nsecure = \"yes\"", "session.secure"),
            ("[server]", "[server]\nthreads = 0", "server.threads"),
            ("[upstream]", "[upstream]\nkeepalive = -1", "upstream.keepalive"),
            (
                "[server]",
                "[server]\nlisten_port = 1",
                "server.listen_port",
            ),
            (
                "[upstream]",
                "[upstream]\nconnect_timeout = 5",
                "upstream.connect_timeout",
            ),
            (
                "client_id = \"id.apps.googleusercontent.com\"\n",
                "",
                "providers.google.client_id",
            ),
            (
                "[providers.google]",
                "[providers.google]\nissuer = \"http://accounts.example.com\"",
                "providers.google.issuer",
            ),
            (
                "[providers.google]",
                "[providers.google]\nscopes = [\"email\"]",
                "providers.google.scopes",
            ),
            (
                "[providers.google]",
                "[providers.google]\nclient_scret = \"x\"",
                "providers.google.client_scret",
            ),
            (
                "[providers.google]",
                "[providers.acme]\nclient_id = \"x\"\n[providers.google]",
                "providers.acme.kind",
            ),
            (
                "[providers.google]",
                "[providers.\"Bad!\"]\nkind = \"oidc\"\n[providers.google]",
                "providers.\"Bad!\"",
            ),
            (
                "[server]",
                "[headers]\nuser = \"X User\"\n[server]",
                "headers.user",
            ),
            (
                "[server]",
                "[headers]\nemail = \"X-User\"\n[server]",
                "headers",
            ),
            (
                "[server]",
                "[access]\nallowed_email_domains = [\"@@\"]\n[server]",
                "access.allowed_email_domains[0]",
            ),
            (
                "[server]",
                "[access]\napi_paths = [\"(\"]\n[server]",
                "access.api_paths[0]",
            ),
            ("[server]", "[sesion]\n[server]", "sesion"),
            ("[session]", "[session]\nstore = \"redis\"", "session.store"),
            ("[server]", "[providers.twitter]\nclient_id = \"a\"\nclient_secret = \"b\"\nprotocol = \"oauth3\"\n[server]", "providers.twitter.protocol"),
            ("[server]", "[providers.twitter]\nclient_id = \"a\"\nclient_secret = \"b\"\ntoken_url = \"http://api.x.example/t\"\n[server]", "providers.twitter.token_url"),
            ("[server]", "[providers.twitter]\nclient_id = \"a\"\nclient_secret = \"b\"\nrequest_token_url = \"https://x.example/r\"\n[server]", "providers.twitter.request_token_url"),
            ("[server]", "[providers.twitter]\nclient_id = \"a\"\nclient_secret = \"b\"\nprotocol = \"oauth1\"\nscopes = [\"users.read\"]\n[server]", "providers.twitter.scopes"),
            ("[server]", "[providers.twitter]\nclient_id = \"a\"\nclient_secret = \"b\"\nissuer = \"https://x.com\"\n[server]", "providers.twitter.issuer"),
            ("[server]", "[providers.facebook]\nclient_id = \"a\"\nclient_secret = \"b\"\napi_version = \"26\"\n[server]", "providers.facebook.api_version"),
            ("[server]", "[providers.facebook]\nclient_id = \"a\"\nclient_secret = \"b\"\nprotocol = \"oauth1\"\n[server]", "providers.facebook.protocol"),
            (
                "[server]",
                "[access]\nskip_auth = [\"GET (\"]\n[server]",
                "access.skip_auth[0]",
            ),
            (
                "[server]",
                "[access]\nskip_auth_preflight = \"sometimes\"\n[server]",
                "access.skip_auth_preflight",
            ),
            (
                "[session]",
                "[session]\nsame_site = \"none\"\nsecure = false",
                "session.same_site",
            ),
        ];
        for (from, to, key) in cases {
            let text = good().replacen(from, to, 1);
            assert_ne!(text, good(), "case {key} did not change the config");
            let got = issues(&text);
            assert!(
                got.iter().any(|l| l.starts_with(&format!("{key}:"))),
                "expected an issue for {key}, got {got:?}"
            );
            for l in &got {
                assert!(
                    !l.contains(SECRET) && !l.contains("gsecret-value"),
                    "secret leaked: {l}"
                );
            }
        }
    }

    #[test]
    fn many_mistakes_are_reported_together() {
        let text = good()
            .replace("listen = \"127.0.0.1:4180\"", "listen = \"x\"")
            .replace("url = \"http://127.0.0.1:8080\"", "url = \"nope\"")
            .replace("secret = \"${SECRET}\"", "secret = \"${MISSING_VAR}\"")
            + "\n[bogus]\n";
        let got = issues(&text);
        let keys: Vec<&str> = got
            .iter()
            .map(|l| l.split(':').next().unwrap_or(""))
            .collect();
        for k in ["server.listen", "upstream.url", "session.secret", "bogus"] {
            assert!(keys.contains(&k), "{k} missing from {got:?}");
        }
    }

    #[test]
    fn missing_tables_are_named() {
        let got = issues("");
        for k in ["server.public_url", "upstream", "session", "providers"] {
            assert!(
                got.iter().any(|l| l.starts_with(&format!("{k}:"))),
                "{k}: {got:?}"
            );
        }
    }

    #[test]
    fn syntax_error_does_not_echo_the_line() {
        let text = "[session]\nsecret = \"supersecretvalue\n";
        let got = issues(text);
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("line"), "{got:?}");
        assert!(!got[0].contains("supersecretvalue"), "{got:?}");
    }

    /// Found by the `config` fuzz target: toml's messages span lines
    /// ("invalid table header\nexpected ..."), which broke the one problem
    /// per line that `check` prints.
    #[test]
    fn syntax_error_is_one_line() {
        for text in [
            "[a",
            "[session]\nsecret = \"x",
            "a = \"\\q\"",
            "a = 1\na = 2",
        ] {
            let got = issues(text);
            assert_eq!(got.len(), 1, "{text:?}");
            assert!(got[0].starts_with("TOML syntax error (line "), "{got:?}");
            assert!(!got[0].chars().any(char::is_control), "{got:?}");
        }
    }

    #[test]
    fn twitter_defaults_are_xs_endpoints() {
        use super::super::{ProviderKind, XProtocol};
        let text = good() + "\n[providers.twitter]\nclient_id = \"a\"\nclient_secret = \"b\"\n";
        let s = parse(&text, &env).expect("valid");
        let ProviderKind::Twitter(x) = &s.providers[1].kind else {
            panic!("not twitter")
        };
        assert_eq!(x.protocol, XProtocol::OAuth2);
        assert_eq!(x.authorize_url.as_str(), "https://x.com/i/oauth2/authorize");
        assert_eq!(x.token_url.as_str(), "https://api.x.com/2/oauth2/token");
        assert_eq!(x.userinfo_url.as_str(), "https://api.x.com/2/users/me");
        assert_eq!(s.providers[1].display_name, "X");
        assert_eq!(s.providers[1].scopes, vec!["users.read", "tweet.read"]);
        let text = good()
            + "\n[providers.twitter]\nclient_id = \"a\"\nclient_secret = \"b\"\nprotocol = \"oauth1\"\nauthorize_url = \"http://127.0.0.1:9/oauth/authenticate\"\n";
        let s = parse(&text, &env).expect("valid");
        let ProviderKind::Twitter(x) = &s.providers[1].kind else {
            panic!("not twitter")
        };
        assert_eq!(x.protocol, XProtocol::OAuth1);
        assert_eq!(
            x.authorize_url.as_str(),
            "http://127.0.0.1:9/oauth/authenticate"
        );
        assert_eq!(
            x.request_token_url.as_str(),
            "https://api.x.com/oauth/request_token"
        );
        assert_eq!(
            x.userinfo_url.as_str(),
            "https://api.x.com/1.1/account/verify_credentials.json"
        );
    }

    #[test]
    fn facebook_endpoints_follow_the_api_version() {
        use super::super::ProviderKind;
        let text = good() + "\n[providers.facebook]\nclient_id = \"a\"\nclient_secret = \"b\"\n";
        let s = parse(&text, &env).expect("valid");
        let ProviderKind::Facebook(f) = &s.providers[1].kind else {
            panic!("not facebook")
        };
        assert_eq!(
            f.authorize_url.as_str(),
            "https://www.facebook.com/v26.0/dialog/oauth"
        );
        assert_eq!(
            f.token_url.as_str(),
            "https://graph.facebook.com/v26.0/oauth/access_token"
        );
        assert_eq!(
            f.userinfo_url.as_str(),
            "https://graph.facebook.com/v26.0/me"
        );
        assert_eq!(s.providers[1].scopes, vec!["email", "public_profile"]);
        let text = good()
            + "\n[providers.facebook]\nclient_id = \"a\"\nclient_secret = \"b\"\napi_version = \"v27.1\"\ntoken_url = \"http://127.0.0.1:9/t\"\n";
        let s = parse(&text, &env).expect("valid");
        let ProviderKind::Facebook(f) = &s.providers[1].kind else {
            panic!("not facebook")
        };
        assert_eq!(
            f.authorize_url.as_str(),
            "https://www.facebook.com/v27.1/dialog/oauth"
        );
        assert_eq!(f.token_url.as_str(), "http://127.0.0.1:9/t");
    }

    #[test]
    fn loopback_http_issuer_is_allowed() {
        for host in ["127.0.0.1:9000", "localhost:9000", "[::1]:9000"] {
            let text = good().replace(
                "[providers.google]",
                &format!("[providers.google]\nissuer = \"http://{host}\""),
            );
            assert!(issues(&text).is_empty(), "{host}: {:?}", issues(&text));
        }
    }

    #[test]
    fn oidc_provider_needs_an_issuer() {
        let text = good()
            + "\n[providers.acme]\nkind = \"oidc\"\nclient_id = \"a\"\nclient_secret = \"b\"\n";
        let got = issues(&text);
        assert!(
            got.iter().any(|l| l.starts_with("providers.acme.issuer:")),
            "{got:?}"
        );
        let text = good()
            + "\n[providers.acme]\nkind = \"oidc\"\nclient_id = \"a\"\nclient_secret = \"b\"\nissuer = \"https://sso.acme.example\"\ndisplay_name = \"Acme SSO\"\n";
        let s = parse(&text, &env).expect("valid");
        assert_eq!(s.providers[1].display_name, "Acme SSO");
    }
}
