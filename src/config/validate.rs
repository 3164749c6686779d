//! Turns the parsed TOML into `Settings`, collecting every problem at once.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use oauth2::ClientSecret;
use url::{Host, Url};

use super::reader::{Env, Issue, Reader, Section};
use super::{
    Facebook, HeaderNames, Provider, ProviderKind, Redis, RedisTarget, RedisUrl, SameSite, Server,
    Session, SessionStore, Settings, Tls, Twitter, Upstream, XProtocol,
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

    let mut telemetry = super::Telemetry::default();
    if let Some(mut t) = r.table(&mut root, "telemetry") {
        let key = t.key("otlp_endpoint");
        if let Some(v) = r.string(&mut t, "otlp_endpoint") {
            match Url::parse(&v) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.query().is_none()
                        && u.username().is_empty()
                        && u.password().is_none() =>
                {
                    telemetry.otlp_endpoint = Some(u)
                }
                _ => r.issue(
                    key,
                    format!("{v:?} is not an http:// or https:// URL of an OTLP/HTTP collector, e.g. \"http://127.0.0.1:4318\""),
                ),
            }
        }
        r.finish(t);
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

    // After the providers: "p:g" groups and route `providers` name them.
    let provider_ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
    let mut access_s = r.table_or_empty(&mut root, "access");
    let access = super::access::access(&mut r, &mut access_s, &provider_ids);
    r.finish(access_s);
    let routes = super::access::routes(&mut r, &mut root, &provider_ids);

    let mut pages_s = r.table_or_empty(&mut root, "pages");
    let pages = pages(&mut r, &mut pages_s);
    r.finish(pages_s);
    let assertion = match r.table(&mut root, "assertion") {
        Some(mut s) => {
            let a = assertion(&mut r, &mut s, server.as_ref(), headers.as_ref());
            r.finish(s);
            a
        }
        None => None,
    };

    r.finish(root);

    match (server, upstream, session, headers) {
        (Some(server), Some(upstream), Some(session), Some(headers)) if r.issues.is_empty() => {
            Ok(Settings {
                server,
                upstream,
                session,
                headers,
                access,
                routes,
                admin: admin_listen,
                providers,
                pages: pages.unwrap_or_default(),
                telemetry,
                assertion,
            })
        }
        _ => Err(r.issues),
    }
}

/// `[pages]`: read, then loaded (files read, templates compiled and tried),
/// every problem with its key.
fn pages(r: &mut Reader, s: &mut Section) -> Option<std::sync::Arc<crate::pages::Look>> {
    let config = crate::pages::PagesConfig {
        title: r.string(s, "title"),
        logo: r.string(s, "logo").map(PathBuf::from),
        accent_color: r.string(s, "accent_color"),
        footer: r.string(s, "footer"),
        custom_css: r.string(s, "custom_css").map(PathBuf::from),
        templates: r.string(s, "templates").map(PathBuf::from),
        language: r.string(s, "language"),
    };
    match crate::pages::Look::load(&config) {
        Ok(look) => Some(std::sync::Arc::new(look)),
        Err(problems) => {
            for (key, message) in problems {
                r.issue(key, message);
            }
            None
        }
    }
}

/// `[assertion]`: the signing key, the keys only published, audience,
/// lifetime and header. `None` when something is wrong (each problem
/// reported with its key).
fn assertion(
    r: &mut Reader,
    s: &mut Section,
    server: Option<&Server>,
    identity: Option<&HeaderNames>,
) -> Option<crate::assertion::Settings> {
    use crate::assertion;
    let mut ok = true;

    let header_key = s.key("header");
    let header_text = r
        .string(s, "header")
        .unwrap_or_else(|| assertion::DEFAULT_HEADER.to_owned());
    let header = match HeaderName::from_bytes(header_text.as_bytes()) {
        Ok(h) => {
            // As the proxy strips them: any case, `_` for `-`.
            let norm = |name: &str| name.to_ascii_lowercase().replace('_', "-");
            let n = norm(h.as_str());
            let taken =
                identity.is_some_and(|names| names.all().iter().any(|i| norm(i.as_str()) == n));
            if taken {
                r.issue(
                    &header_key,
                    "is already the name of an identity header in [headers]",
                );
                ok = false;
            } else if n == "cookie"
                || n == "authorization"
                || n == "host"
                || n.starts_with("x-forwarded-")
            {
                r.issue(
                    &header_key,
                    format!("{header_text:?} is reserved; use e.g. \"X-User-Assertion\""),
                );
                ok = false;
            }
            Some(h)
        }
        Err(_) => {
            r.issue(
                &header_key,
                format!("{header_text:?} is not a valid header name"),
            );
            None
        }
    };

    let key_key = s.key("key_file");
    let key = r.required_string(s, "key_file").and_then(|path| {
        match assertion::read_private_key(std::path::Path::new(&path)) {
            Ok(k) => Some(k),
            Err(why) => {
                r.issue(&key_key, why);
                None
            }
        }
    });

    let publish_key = s.key("publish_key_files");
    let publish = r
        .strings(s, "publish_key_files")
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(
            |(i, path)| match assertion::read_public_key(std::path::Path::new(path)) {
                Ok(k) => Some(k),
                Err(why) => {
                    r.issue(format!("{publish_key}[{i}]"), why);
                    ok = false;
                    None
                }
            },
        )
        .collect();

    let audience_key = s.key("audience");
    let audience = match r.string(s, "audience") {
        Some(a) if a.trim().is_empty() || a.chars().any(char::is_control) => {
            r.issue(&audience_key, "must be a non-empty string without control characters, e.g. \"https://app.example.com\"");
            None
        }
        Some(a) => Some(a),
        None => server.map(|s| s.public_url.as_str().trim_end_matches('/').to_owned()),
    };

    let lifetime_key = s.key("lifetime");
    let lifetime = r
        .duration(s, "lifetime")
        .unwrap_or(assertion::DEFAULT_LIFETIME);
    if lifetime < Duration::from_secs(30) || lifetime > Duration::from_secs(86400) {
        r.issue(lifetime_key, "must be between 30s and 24h");
        ok = false;
    }

    if !ok {
        return None;
    }
    Some(assertion::Settings {
        header: header?,
        key: key?,
        publish,
        audience: audience?,
        lifetime,
    })
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
    let header_timeout = r
        .duration(s, "header_timeout")
        .unwrap_or(Duration::from_secs(10));
    let idle_timeout = r
        .duration(s, "idle_timeout")
        .unwrap_or(Duration::from_secs(60));
    let trusted_proxies = super::access::cidrs(r, s, "trusted_proxies");
    let trust_request_id = r.bool(s, "trust_request_id").unwrap_or(false);
    let upgrade_socket = r.string(s, "upgrade_socket").map(PathBuf::from);

    Some(Server {
        header_timeout,
        idle_timeout,
        listen: listen?,
        public_url: public_url?,
        tls,
        threads,
        shutdown_grace,
        trusted_proxies,
        trust_request_id,
        upgrade_socket,
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

    let store = session_store(r, s);

    Some(Session {
        secret: secret?,
        previous_secrets,
        cookie_name: name_ok.then_some(cookie_name)?,
        lifetime,
        domain,
        secure,
        same_site,
        store: store?,
    })
}

/// The keys that say where Redis is; exactly one with `store = "redis"`.
const REDIS_WHERE: [&str; 3] = ["redis_url", "redis_sentinel_urls", "redis_cluster_urls"];

/// `session.store` and the `redis_*` keys. `None` when something is wrong.
fn session_store(r: &mut Reader, s: &mut Section) -> Option<SessionStore> {
    let store_key = s.key("store");
    let redis = match r.string(s, "store").as_deref() {
        None | Some("cookie") => false,
        Some("redis") => true,
        Some(other) => {
            r.issue(&store_key, format!("{other:?} is not one of cookie, redis"));
            return None;
        }
    };
    let present: Vec<&str> = REDIS_WHERE
        .into_iter()
        .chain(["redis_sentinel_master", "redis_key_prefix"])
        .filter(|k| s.contains(k))
        .collect();
    if !redis {
        for key in &present {
            r.discard(s, key);
            r.issue(
                s.key(key),
                "is only used with store = \"redis\"; set that or remove the key",
            );
        }
        return present.is_empty().then_some(SessionStore::Cookie);
    }
    let mut ok = true;
    let wheres: Vec<&str> = REDIS_WHERE
        .into_iter()
        .filter(|k| present.contains(k))
        .collect();
    match wheres.as_slice() {
        [] => {
            r.issue(
                s.key("redis_url"),
                "is required with store = \"redis\", e.g. \"redis://127.0.0.1:6379/0\" (or redis_sentinel_urls with redis_sentinel_master, or redis_cluster_urls)",
            );
            ok = false;
        }
        [_] => {}
        [first, rest @ ..] => {
            for key in rest {
                r.issue(
                    s.key(key),
                    format!("cannot be used together with {first}; set only one of redis_url, redis_sentinel_urls, redis_cluster_urls"),
                );
            }
            ok = false;
        }
    }
    let target = match wheres.first().copied() {
        Some("redis_sentinel_urls") => sentinel_target(r, s),
        Some("redis_cluster_urls") => cluster_target(r, s),
        _ => {
            let url_key = s.key("redis_url");
            r.string(s, "redis_url")
                .and_then(|u| match check_redis_url(&u) {
                    Ok(()) => Some(RedisTarget::Url(RedisUrl::new(u))),
                    Err(why) => {
                        r.issue(&url_key, why);
                        None
                    }
                })
        }
    };
    // Keys the chosen target did not read (a second "where", a master
    // without Sentinel) were reported above or are reported here.
    for key in REDIS_WHERE {
        r.discard(s, key);
    }
    if s.contains("redis_sentinel_master") {
        r.discard(s, "redis_sentinel_master");
        r.issue(
            s.key("redis_sentinel_master"),
            "is only used with redis_sentinel_urls",
        );
        ok = false;
    }
    let prefix_key = s.key("redis_key_prefix");
    let key_prefix = r
        .string(s, "redis_key_prefix")
        .unwrap_or_else(|| "portcullis:".to_owned());
    let prefix_ok = !key_prefix.is_empty()
        && key_prefix.len() <= 64
        && key_prefix.bytes().all(|b| b.is_ascii_graphic());
    if !prefix_ok {
        r.issue(
            &prefix_key,
            "must be 1-64 printable characters without spaces, e.g. \"portcullis:\"",
        );
    }
    if !(ok && prefix_ok) {
        return None;
    }
    Some(SessionStore::Redis(Redis {
        target: target?,
        key_prefix,
    }))
}

/// The URLs of `redis_sentinel_urls` or `redis_cluster_urls`: each checked,
/// TCP only, all with the same scheme (TLS or not). `None` after an issue.
fn url_list(r: &mut Reader, s: &mut Section, key: &str, example: &str) -> Option<Vec<RedisUrl>> {
    let path = s.key(key);
    let urls = r.strings(s, key)?;
    if urls.is_empty() {
        r.issue(
            &path,
            format!("must list at least one URL, e.g. [{example:?}]"),
        );
        return None;
    }
    let mut ok = true;
    for (i, url) in urls.iter().enumerate() {
        let item = format!("{path}[{i}]");
        if let Err(why) = check_redis_url(url) {
            r.issue(item, why);
            ok = false;
        } else if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            r.issue(item, "must be redis:// or rediss:// (a TCP address)");
            ok = false;
        }
    }
    if ok {
        let tls = urls.iter().filter(|u| u.starts_with("rediss://")).count();
        if tls != 0 && tls != urls.len() {
            r.issue(
                &path,
                "mixes redis:// and rediss://; use TLS for all of them or for none",
            );
            ok = false;
        }
    }
    ok.then(|| urls.into_iter().map(RedisUrl::new).collect())
}

fn sentinel_target(r: &mut Reader, s: &mut Section) -> Option<RedisTarget> {
    let urls = url_list(r, s, "redis_sentinel_urls", "redis://10.0.0.1:26379");
    let master_key = s.key("redis_sentinel_master");
    let master = r.string(s, "redis_sentinel_master");
    let master = match master {
        None => {
            r.issue(
                &master_key,
                "is required with redis_sentinel_urls: the name the Sentinels know the master by, e.g. \"mymaster\"",
            );
            None
        }
        Some(m) if m.is_empty() || m.len() > 128 || !m.bytes().all(|b| b.is_ascii_graphic()) => {
            r.issue(
                &master_key,
                "must be 1-128 printable characters without spaces, e.g. \"mymaster\"",
            );
            None
        }
        Some(m) => Some(m),
    };
    Some(RedisTarget::Sentinel {
        urls: urls?,
        master: master?,
    })
}

fn cluster_target(r: &mut Reader, s: &mut Section) -> Option<RedisTarget> {
    let path = s.key("redis_cluster_urls");
    let urls = url_list(r, s, "redis_cluster_urls", "redis://10.0.0.1:7000")?;
    let mut ok = true;
    for (i, url) in urls.iter().enumerate() {
        let db = Url::parse(url.expose())
            .map(|u| u.path().trim_matches('/').to_owned())
            .unwrap_or_default();
        if !(db.is_empty() || db == "0") {
            r.issue(
                format!("{path}[{i}]"),
                "has a database number; a Redis Cluster has only database 0",
            );
            ok = false;
        }
    }
    let credentials = |u: &RedisUrl| {
        Url::parse(u.expose())
            .map(|u| (u.username().to_owned(), u.password().map(str::to_owned)))
            .ok()
    };
    if ok && urls.iter().any(|u| credentials(u) != credentials(&urls[0])) {
        r.issue(
            &path,
            "the URLs have different users or passwords; a cluster's nodes share them",
        );
        ok = false;
    }
    ok.then_some(RedisTarget::Cluster(urls))
}

/// What is wrong with a Redis URL, in words that never repeat it (it may
/// carry a password).
fn check_redis_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| {
        format!("is not a URL ({e}); expected redis://, rediss:// or redis+unix://")
    })?;
    match url.scheme() {
        "redis" | "rediss" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err("has no host".to_owned());
            }
            let db = url.path().trim_matches('/');
            if !db.is_empty() && db.parse::<u16>().is_err() {
                return Err(
                    "has a path that is not a database number, e.g. redis://host:6379/0".to_owned(),
                );
            }
            if url.fragment().is_some() {
                return Err(
                    "has a #fragment; #insecure (no TLS certificate checks) is not supported"
                        .to_owned(),
                );
            }
        }
        "redis+unix" => {
            if url.path().len() < 2 {
                return Err(
                    "has no socket path, e.g. redis+unix:///run/redis/redis.sock".to_owned(),
                );
            }
        }
        other => {
            return Err(format!(
                "scheme {other:?} is not one of redis://, rediss:// (TLS), redis+unix://"
            ))
        }
    }
    redis::IntoConnectionInfo::into_connection_info(text)
        .map(|_| ())
        .map_err(|e| format!("is not accepted by the Redis client: {}", e.category()))
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
    let groups = one(r, "groups", "X-User-Groups");
    let names = HeaderNames {
        user: user?,
        provider: provider?,
        email: email?,
        name: name?,
        login: login?,
        picture: picture?,
        groups: groups?,
    };
    // Two settings naming the same header (also after '_' -> '-') would let
    // one value overwrite another.
    let all = names.all();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if super::normalize_header_name(a.as_str()) == super::normalize_header_name(b.as_str())
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

    let groups_claim = groups_claim(r, s, kind == Kind::Oidc);
    let hosted_domains = hosted_domains(r, s, kind == Kind::Google);
    let bearer = bearer(r, s, kind == Kind::Oidc, client_id.as_deref());
    let sign_out_key = s.key("sign_out_at_provider");
    let sign_out_at_provider = r.bool(s, "sign_out_at_provider").unwrap_or(false);
    if sign_out_at_provider && !matches!(kind, Kind::Oidc | Kind::Google) {
        r.issue(
            sign_out_key,
            "applies only to OpenID Connect providers (kind = \"oidc\" or \"google\")",
        );
    }
    let pass_key = s.key("pass_access_token");
    let pass_access_token = r.bool(s, "pass_access_token").unwrap_or(false);
    if pass_access_token && !matches!(kind, Kind::Oidc | Kind::Google) {
        r.issue(
            pass_key,
            "applies only to OpenID Connect providers (kind = \"oidc\" or \"google\")",
        );
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
        groups_claim: groups_claim?,
        hosted_domains: hosted_domains?,
        bearer: bearer?,
        sign_out_at_provider,
        pass_access_token,
    })
}

/// `accept_bearer_tokens`, `bearer_audiences`, `pass_authorization_header`
/// (kind `oidc` only). `Some(None)` when bearer tokens are off.
fn bearer(
    r: &mut Reader,
    s: &mut Section,
    allowed: bool,
    client_id: Option<&str>,
) -> Option<Option<super::Bearer>> {
    const KEYS: [&str; 3] = [
        "accept_bearer_tokens",
        "bearer_audiences",
        "pass_authorization_header",
    ];
    if !KEYS.iter().any(|k| s.contains(k)) {
        return Some(None);
    }
    if !allowed {
        for k in KEYS {
            if s.contains(k) {
                r.discard(s, k);
                r.issue(
                    s.key(k),
                    "applies only to kind = \"oidc\" providers (bearer tokens are JWTs verified with the provider's keys)",
                );
            }
        }
        return None;
    }
    let on = r.bool(s, "accept_bearer_tokens").unwrap_or(false);
    let audiences_key = s.key("bearer_audiences");
    let audiences = r.strings(s, "bearer_audiences");
    let pass = r.bool(s, "pass_authorization_header");
    if !on {
        for (present, k) in [
            (audiences.is_some(), "bearer_audiences"),
            (pass.is_some(), "pass_authorization_header"),
        ] {
            if present {
                r.issue(
                    s.key(k),
                    "is only used with accept_bearer_tokens = true; set that or remove the key",
                );
            }
        }
        return if audiences.is_some() || pass.is_some() {
            None
        } else {
            Some(None)
        };
    }
    let audiences = match audiences {
        Some(list) if list.is_empty() || list.iter().any(String::is_empty) => {
            r.issue(
                audiences_key,
                "must list at least one audience, none empty, e.g. [\"api://app\"]",
            );
            return None;
        }
        Some(list) => list,
        None => vec![client_id?.to_owned()],
    };
    Some(Some(super::Bearer {
        audiences,
        pass_authorization_header: pass.unwrap_or(false),
    }))
}

/// `groups_claim`: a dotted path (`"realm_access.roles"`) or a list of
/// keys, one per level, for keys that hold dots themselves
/// (`["https://acme.example/roles"]`). `Some(None)` when absent.
fn groups_claim(r: &mut Reader, s: &mut Section, allowed: bool) -> Option<Option<Vec<String>>> {
    let key = s.key("groups_claim");
    if !s.contains("groups_claim") {
        return Some(None);
    }
    if !allowed {
        r.discard(s, "groups_claim");
        r.issue(
            key,
            "applies only to kind = \"oidc\" providers (groups come from their ID token or UserInfo)",
        );
        return None;
    }
    let path: Vec<String> = if s.is_array("groups_claim") {
        r.strings(s, "groups_claim")?
    } else {
        let dotted = r.string(s, "groups_claim")?;
        if dotted.contains("://") {
            r.issue(
                &key,
                format!(
                    "{dotted:?} looks like a namespaced claim: a dotted path splits it at every '.'; \
                     write it as a list of keys, groups_claim = [{dotted:?}]"
                ),
            );
            return None;
        }
        dotted.split('.').map(str::to_owned).collect()
    };
    if path.is_empty() || path.iter().any(String::is_empty) {
        r.issue(
            key,
            "must name a claim, e.g. \"groups\" or \"realm_access.roles\" (no empty parts)",
        );
        return None;
    }
    Some(Some(path))
}

/// `hosted_domains` (Google only): Workspace domains, lower-cased.
fn hosted_domains(r: &mut Reader, s: &mut Section, allowed: bool) -> Option<Vec<String>> {
    let key = s.key("hosted_domains");
    if !s.contains("hosted_domains") {
        return Some(Vec::new());
    }
    if !allowed {
        r.discard(s, "hosted_domains");
        r.issue(key, "applies only to the Google provider");
        return None;
    }
    let list = r.strings(s, "hosted_domains")?;
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, d) in list.iter().enumerate() {
        let d = d.trim().to_ascii_lowercase();
        let valid = d.contains('.')
            && d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            out.push(d);
        } else {
            r.issue(
                format!("{key}[{i}]"),
                "must be a Google Workspace domain such as \"example.com\"",
            );
            ok = false;
        }
    }
    if ok && out.is_empty() {
        r.issue(
            key,
            "must name at least one domain (leave the key out to accept every Google account)",
        );
        return None;
    }
    ok.then_some(out)
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
    fn assertion_keys_are_checked_each_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, crate::assertion::generate_key_pem().unwrap()).unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        // An Ed25519 key in PKCS#8: any key but P-256 is refused.
        let ed25519 = dir.path().join("ed25519.pem");
        std::fs::write(
            &ed25519,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.pem");

        let ok = good() + &format!("[assertion]\nkey_file = {key:?}\n");
        let s = parse(&ok, &env).expect("valid");
        let a = s.assertion.expect("assertion on");
        assert_eq!(a.header.as_str(), "x-user-assertion");
        assert_eq!(a.audience, "https://app.example.com");
        assert_eq!(a.lifetime, std::time::Duration::from_secs(300));
        assert!(parse(&good(), &env).unwrap().assertion.is_none());

        let bad = good()
            + &format!(
                "[assertion]\nkey_file = {missing:?}\npublish_key_files = [{key:?}, {not_pem:?}, {ed25519:?}]\nlifetime = \"5s\"\nheader = \"X-User\"\naudience = \"\"\n"
            );
        let got = issues(&bad);
        let keys: Vec<&str> = got.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "assertion.header",
                "assertion.key_file",
                "assertion.publish_key_files[1]",
                "assertion.publish_key_files[2]",
                "assertion.audience",
                "assertion.lifetime"
            ],
            "{got:#?}"
        );
        assert!(got[1].contains("cannot read"), "{got:#?}");
        assert!(got[2].contains("P-256"), "{got:#?}");
        assert!(got[3].contains("P-256"), "{got:#?}");
        assert!(issues(&(good() + "[assertion]\n"))
            .iter()
            .any(|l| l.starts_with("assertion.key_file")));
        assert!(
            issues(&(good() + &format!("[assertion]\nkey_file = {key:?}\nkeyfile = 1\n")))
                .iter()
                .any(|l| l.starts_with("assertion.keyfile"))
        );
    }

    #[test]
    fn bearer_keys_are_checked() {
        let oidc = "[providers.acme]\nkind = \"oidc\"\nissuer = \"https://sso.example\"\nclient_id = \"web\"\nclient_secret = \"s\"\n";
        let s = parse(&(good() + oidc + "accept_bearer_tokens = true\n"), &env).expect("valid");
        let b = s.providers[1].bearer.as_ref().expect("bearer on");
        assert_eq!(b.audiences, ["web"]);
        assert!(!b.pass_authorization_header);
        assert!(s.providers[0].bearer.is_none());
        let got = issues(&(good() + oidc + "bearer_audiences = [\"api\"]\n"));
        assert!(
            got[0].starts_with(
                "providers.acme.bearer_audiences: is only used with accept_bearer_tokens"
            ),
            "{got:?}"
        );
        let got = issues(&(good() + oidc + "accept_bearer_tokens = true\nbearer_audiences = []\n"));
        assert!(
            got[0].starts_with("providers.acme.bearer_audiences: must list"),
            "{got:?}"
        );
        let got = issues(&good().replace(
            "[providers.google]",
            "[providers.google]\naccept_bearer_tokens = true",
        ));
        assert!(
            got[0].starts_with(
                "providers.google.accept_bearer_tokens: applies only to kind = \"oidc\""
            ),
            "{got:?}"
        );
    }

    #[test]
    fn sign_out_at_provider_only_for_openid_connect() {
        let x = "[providers.x]\nclient_id = \"x\"\nclient_secret = \"s\"\nsign_out_at_provider = true\n";
        let got = issues(&(good() + x));
        assert!(
            got[0].starts_with("providers.x.sign_out_at_provider: applies only to OpenID Connect"),
            "{got:?}"
        );
        let s = parse(
            &good().replace(
                "[providers.google]",
                "[providers.google]\nsign_out_at_provider = true",
            ),
            &env,
        )
        .expect("valid");
        assert!(s.providers[0].sign_out_at_provider);
        let x =
            "[providers.x]\nclient_id = \"x\"\nclient_secret = \"s\"\npass_access_token = true\n";
        let got = issues(&(good() + x));
        assert!(
            got[0].starts_with("providers.x.pass_access_token: applies only to OpenID Connect"),
            "{got:?}"
        );
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
                "[telemetry]\notlp_endpoint = \"grpc://collector:4317\"\n[session]",
                "telemetry.otlp_endpoint",
            ),
            (
                "[session]",
                "[telemetry]\notlp_endpoint = \"http://collector:4318/?key=x\"\n[session]",
                "telemetry.otlp_endpoint",
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
            ("[session]", "[session]\nstore = \"redis\"", "session.redis_url"),
            ("[session]", "[session]\nstore = \"memcached\"", "session.store"),
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

    const ACME: &str = "[providers.acme]\nkind = \"oidc\"\nissuer = \"https://sso.acme.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\n";

    /// Groups, hosted domains, routes and trusted proxies: each mistake is
    /// named by its key (`routes[1].path`).
    #[test]
    fn policy_mistakes_are_reported_with_their_keys() {
        let cases: &[(&str, &str)] = &[
            (
                "[access]\nallowed_groups = [\"nope:admins\"]",
                "access.allowed_groups[0]",
            ),
            (
                "[access]\nallowed_groups = [\"acme:\"]",
                "access.allowed_groups[0]",
            ),
            (
                "[access]\nallowed_groups = [\"\"]",
                "access.allowed_groups[0]",
            ),
            (
                "[access]\nallowed_groups = \"admins\"",
                "access.allowed_groups",
            ),
            (
                "[[routes]]\nallowed_groups = [\"admins\"]",
                "routes[0].path",
            ),
            (
                "[[routes]]\npath = \"^/a\"\n[[routes]]\npath = \"(\"",
                "routes[1].path",
            ),
            ("[[routes]]\npath = \"\"", "routes[0].path"),
            (
                "[[routes]]\npath = \"^/a\"\nhost = \"a.example:8080\"",
                "routes[0].host",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nhost = \"a b\"",
                "routes[0].host",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nmethods = [\"get\"]",
                "routes[0].methods[0]",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nmethods = []",
                "routes[0].methods",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nproviders = [\"github\"]",
                "routes[0].providers[0]",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nproviders = []",
                "routes[0].providers",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nallowed_emails = [\"x\"]",
                "routes[0].allowed_emails[0]",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nallowed_email_domains = [\"@@\"]",
                "routes[0].allowed_email_domains[0]",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nallowed_users = [\"x\"]",
                "routes[0].allowed_users[0]",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nallowed_groups = [\"github:x\"]",
                "routes[0].allowed_groups[0]",
            ),
            (
                "[[routes]]\npath = \"^/a\"\npublic = true\nallowed_groups = [\"x\"]",
                "routes[0].public",
            ),
            (
                "[[routes]]\npath = \"^/a\"\npublic = true\nproviders = [\"google\"]",
                "routes[0].public",
            ),
            (
                "[[routes]]\npath = \"^/a\"\npublic = \"yes\"",
                "routes[0].public",
            ),
            (
                "[[routes]]\npath = \"^/a\"\nskip_auth = [\"^/\"]",
                "routes[0].skip_auth",
            ),
            ("routes = \"^/a\"", "routes"),
            ("routes = [\"^/a\"]", "routes[0]"),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.1/8\"]",
                "server.trusted_proxies[0]",
            ),
            (
                "[server]\ntrusted_proxies = [\"proxy.local\"]",
                "server.trusted_proxies[0]",
            ),
            ("[headers]\ngroups = \"X-User\"", "headers"),
            ("[headers]\ngroups = \"X Groups\"", "headers.groups"),
            (
                "[providers.google]\ngroups_claim = \"groups\"",
                "providers.google.groups_claim",
            ),
            (
                "[providers.acme]\ngroups_claim = \"https://acme.example/roles\"",
                "providers.acme.groups_claim",
            ),
            (
                "[providers.acme]\ngroups_claim = \"realm_access..roles\"",
                "providers.acme.groups_claim",
            ),
            (
                "[providers.acme]\ngroups_claim = []",
                "providers.acme.groups_claim",
            ),
            (
                "[providers.acme]\ngroups_claim = 7",
                "providers.acme.groups_claim",
            ),
            (
                "[providers.acme]\nhosted_domains = [\"example.com\"]",
                "providers.acme.hosted_domains",
            ),
            (
                "[providers.google]\nhosted_domains = [\"not a domain\"]",
                "providers.google.hosted_domains[0]",
            ),
            (
                "[providers.google]\nhosted_domains = []",
                "providers.google.hosted_domains",
            ),
        ];
        for (edit, key) in cases {
            // Into its table when the config has it; a new table at the
            // end; a top-level key before every table.
            let base = good() + "\n" + ACME;
            let text = match edit.split_once('\n') {
                Some((table, _))
                    if table.starts_with('[')
                        && !table.starts_with("[[")
                        && base.contains(table) =>
                {
                    base.replacen(table, edit, 1)
                }
                _ if edit.starts_with('[') => format!("{base}\n{edit}\n"),
                _ => format!("{edit}\n{base}"),
            };
            let got = issues(&text);
            assert!(
                got.iter().any(|l| l.starts_with(&format!("{key}:"))),
                "expected an issue for {key} from {edit:?}, got {got:?}\n{text}"
            );
        }
    }

    #[test]
    fn policy_settings_load() {
        use super::super::{GroupMatch, ProviderKind};
        let text = good().replace(
            "[server]",
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\", \"::1\"]",
        ) + "\n"
            + &ACME.replace(
                "client_id",
                "groups_claim = [\"https://acme.example/roles\"]\nclient_id",
            )
            + r#"
[providers.keycloak]
kind = "oidc"
issuer = "https://kc.example/realms/x"
client_id = "a"
client_secret = "b"
groups_claim = "realm_access.roles"

[access]
allowed_groups = ["admins", "acme:urn:staff"]

[[routes]]
path = "^/admin/"
host = "Admin.Example.com"
methods = ["GET", "POST"]
allowed_groups = ["keycloak:admin"]

[[routes]]
path = "^/ops/"
providers = ["acme"]

[[routes]]
path = "^/healthz$"
public = true

[[routes]]
path = "^/lobby"
allowed_users = []
"#;
        let text = text.replace(
            "[providers.google]\n",
            "[providers.google]\nhosted_domains = [\"Example.com\", \"example.org\"]\n",
        );
        let s = parse(&text, &env).unwrap_or_else(|e| panic!("{:?}", e.lines()));
        assert_eq!(s.server.trusted_proxies.len(), 2);
        assert_eq!(s.headers.groups.as_str(), "x-user-groups");
        assert_eq!(
            s.providers[0].hosted_domains,
            vec!["example.com", "example.org"]
        );
        assert!(matches!(s.providers[0].kind, ProviderKind::Google { .. }));
        assert_eq!(
            s.providers[1].groups_claim,
            Some(vec!["https://acme.example/roles".to_owned()])
        );
        assert_eq!(
            s.providers[2].groups_claim,
            Some(vec!["realm_access".to_owned(), "roles".to_owned()])
        );
        assert_eq!(
            s.access.allow.allowed_groups,
            vec![
                GroupMatch {
                    provider: None,
                    group: "admins".into()
                },
                GroupMatch {
                    provider: Some("acme".into()),
                    group: "urn:staff".into()
                },
            ]
        );
        assert_eq!(s.routes.len(), 4);
        let admin = &s.routes[0];
        assert_eq!(admin.host.as_deref(), Some("admin.example.com"));
        assert_eq!(admin.methods.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            admin.allow.as_ref().map(|a| a.allowed_groups.clone()),
            Some(vec![GroupMatch {
                provider: Some("keycloak".into()),
                group: "admin".into()
            }])
        );
        assert!(s.routes[1].allow.is_none(), "no lists: [access]'s apply");
        assert_eq!(s.routes[1].providers, Some(vec!["acme".to_owned()]));
        assert!(s.routes[2].public);
        let lobby = s.routes[3]
            .allow
            .as_ref()
            .expect("an empty list names a list");
        assert!(!lobby.restricts());
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

    #[test]
    fn redis_store_keys_are_checked_each_with_its_key() {
        use super::super::{RedisTarget, SessionStore};
        let with = |lines: &str| good().replace("[session]", &format!("[session]\n{lines}"));
        let cases: &[(&str, &str)] = &[
            ("store = \"redis\"", "session.redis_url"),
            ("redis_url = \"redis://127.0.0.1:6379\"", "session.redis_url"),
            ("redis_key_prefix = \"p:\"", "session.redis_key_prefix"),
            (
                "store = \"redis\"\nredis_url = \"http://127.0.0.1:6379\"",
                "session.redis_url",
            ),
            (
                "store = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/zero\"",
                "session.redis_url",
            ),
            (
                "store = \"redis\"\nredis_url = \"rediss://127.0.0.1:6379/#insecure\"",
                "session.redis_url",
            ),
            ("store = \"redis\"\nredis_url = \"redis+unix://\"", "session.redis_url"),
            ("store = \"redis\"\nredis_url = \"not a url\"", "session.redis_url"),
            (
                "store = \"redis\"\nredis_url = \"redis://h\"\nredis_key_prefix = \"\"",
                "session.redis_key_prefix",
            ),
            (
                "store = \"redis\"\nredis_url = \"redis://h\"\nredis_key_prefix = \"a b\"",
                "session.redis_key_prefix",
            ),
            (
                "store = \"redis\"\nredis_url = \"redis://h\"\nredis_cluster_urls = [\"redis://10.0.0.1:7000\"]",
                "session.redis_cluster_urls",
            ),
            (
                "store = \"redis\"\nredis_sentinel_urls = [\"redis://10.0.0.1:26379\"]",
                "session.redis_sentinel_master",
            ),
            (
                "store = \"redis\"\nredis_url = \"redis://h\"\nredis_sentinel_master = \"m\"",
                "session.redis_sentinel_master",
            ),
            (
                "store = \"redis\"\nredis_sentinel_urls = [\"redis://10.0.0.1:26379\"]\nredis_sentinel_master = \"a b\"",
                "session.redis_sentinel_master",
            ),
            (
                "store = \"redis\"\nredis_sentinel_urls = [\"redis://a:26379\", \"rediss://b:26379\"]\nredis_sentinel_master = \"m\"",
                "session.redis_sentinel_urls",
            ),
            ("store = \"redis\"\nredis_cluster_urls = []", "session.redis_cluster_urls"),
            (
                "store = \"redis\"\nredis_cluster_urls = \"redis://a:7000\"",
                "session.redis_cluster_urls",
            ),
            (
                "store = \"redis\"\nredis_cluster_urls = [\"redis+unix:///run/r.sock\"]",
                "session.redis_cluster_urls[0]",
            ),
            (
                "store = \"redis\"\nredis_cluster_urls = [\"redis://a:7000\", \"redis://b:7000/1\"]",
                "session.redis_cluster_urls[1]",
            ),
            (
                "store = \"redis\"\nredis_cluster_urls = [\"redis://:x@a:7000\", \"redis://:y@b:7000\"]",
                "session.redis_cluster_urls",
            ),
            (
                "redis_cluster_urls = [\"redis://a:7000\"]",
                "session.redis_cluster_urls",
            ),
            (
                "redis_sentinel_urls = [\"redis://a:26379\"]\nredis_sentinel_master = \"m\"",
                "session.redis_sentinel_urls",
            ),
        ];
        for (lines, key) in cases {
            let got = issues(&with(lines));
            assert!(
                got.iter().any(|l| l.starts_with(&format!("{key}:"))),
                "{lines:?}: expected an issue for {key}, got {got:?}"
            );
            assert!(
                got.iter().all(|l| !l.contains("unknown key")),
                "{lines:?}: {got:?}"
            );
        }
        // A password in a bad URL is never repeated.
        let got = issues(&with(
            "store = \"redis\"\nredis_url = \"redis://:hunter2pw@127.0.0.1:6379/x\"",
        ));
        assert!(!got.is_empty());
        assert!(got.iter().all(|l| !l.contains("hunter2pw")), "{got:?}");

        for (url, shown) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "rediss://user:hunter2pw@redis.example.com:6380",
                "rediss://redis.example.com:6380",
            ),
            (
                "redis+unix:///run/redis/redis.sock?pass=hunter2pw",
                "redis+unix:///run/redis/redis.sock",
            ),
        ] {
            let s = parse(
                &with(&format!("store = \"redis\"\nredis_url = \"{url}\"")),
                &env,
            )
            .unwrap_or_else(|e| panic!("{url}: {:?}", e.lines()));
            let SessionStore::Redis(redis) = &s.session.store else {
                panic!("{url}: not the redis store");
            };
            let RedisTarget::Url(got) = &redis.target else {
                panic!("{url}: not one URL");
            };
            assert_eq!(got.expose(), url);
            assert_eq!(redis.key_prefix, "portcullis:");
            assert!(got.redacted().starts_with(shown), "{}", got.redacted());
            let debug = format!("{:?}", s.session);
            assert!(!debug.contains("hunter2pw"), "{debug}");
        }
        let s = parse(&good(), &env).expect("valid");
        assert!(matches!(s.session.store, SessionStore::Cookie));

        // Sentinel and Cluster.
        let s = parse(
            &with("store = \"redis\"\nredis_sentinel_urls = [\"redis://:hunter2pw@10.0.0.1:26379/2\", \"redis://10.0.0.2:26379\"]\nredis_sentinel_master = \"mymaster\""),
            &env,
        )
        .unwrap_or_else(|e| panic!("sentinel: {:?}", e.lines()));
        let SessionStore::Redis(redis) = &s.session.store else {
            panic!("not the redis store");
        };
        let RedisTarget::Sentinel { urls, master } = &redis.target else {
            panic!("not Sentinel: {:?}", redis.target);
        };
        assert_eq!((urls.len(), master.as_str()), (2, "mymaster"));
        let shown = redis.target.redacted();
        assert!(
            shown.contains("\"mymaster\"") && shown.contains("10.0.0.2:26379"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2pw") && !format!("{:?}", s.session).contains("hunter2pw"));
        let s = parse(
            &with("store = \"redis\"\nredis_cluster_urls = [\"rediss://:hunter2pw@a:7000\", \"rediss://:hunter2pw@b:7000/0\"]"),
            &env,
        )
        .unwrap_or_else(|e| panic!("cluster: {:?}", e.lines()));
        let SessionStore::Redis(redis) = &s.session.store else {
            panic!("not the redis store");
        };
        assert!(matches!(&redis.target, RedisTarget::Cluster(urls) if urls.len() == 2));
        assert!(!redis.target.redacted().contains("hunter2pw"));
    }
}
