//! The validated, typed configuration (`Settings`): everything the rest of
//! Portcullis reads, with no raw strings where a type belongs.

mod access;
mod reader;
mod validate;
mod warnings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use oauth2::ClientSecret;
use regex::RegexSet;
use url::Url;

use crate::session::seal::SessionKey;

pub use access::{Allow, Cidr, GroupMatch, Route, ALLOW_KEYS};
pub use reader::{parse_duration, Env, Issue, ProcessEnv};
pub use warnings::warnings;

/// Where the config is read from when no `--config` is given and
/// `$PORTCULLIS_CONFIG` is unset.
pub const DEFAULT_CONFIG_PATH: &str = "config/portcullis.toml";

/// Every problem found in a configuration, each naming its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{} problem(s) in the configuration", .0.len())]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// The lines to print, one per problem.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Settings {
    pub server: Server,
    pub upstream: Upstream,
    pub session: Session,
    pub headers: HeaderNames,
    pub access: Access,
    /// `[[routes]]`, in file order: the first that matches a request
    /// decides who may pass; no match, `[access]`.
    pub routes: Vec<Route>,
    /// `admin.listen`: where `/healthz`, `/readyz` and `/metrics` answer
    /// (default: no admin listener).
    pub admin: Option<SocketAddr>,
    pub providers: Vec<Provider>,
    /// `[pages]`: the operator's look of the pages, loaded and checked.
    pub pages: std::sync::Arc<crate::pages::Look>,
    /// `[assertion]`: present = every authenticated request carries a
    /// signed identity assertion (ES256 JWT).
    pub assertion: Option<crate::assertion::Settings>,
    /// `[telemetry]`.
    pub telemetry: Telemetry,
}

/// `[telemetry]`: traces.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// `telemetry.otlp_endpoint`, default none (no traces): where spans go,
    /// OTLP over HTTP (protobuf), e.g. `http://127.0.0.1:4318` (the path
    /// `/v1/traces` is added when the URL has none).
    pub otlp_endpoint: Option<Url>,
}

#[derive(Debug)]
pub struct Server {
    /// `server.listen`, default `0.0.0.0:4180`.
    pub listen: SocketAddr,
    /// `server.public_url`: the origin browsers use (no path).
    pub public_url: Url,
    /// `server.tls_cert` + `server.tls_key`, both or neither.
    pub tls: Option<Tls>,
    /// `server.threads`, default: the number of cores.
    pub threads: usize,
    /// `server.shutdown_grace`, default `10s`: how long in-flight requests may
    /// finish after SIGTERM (pingora's own default is 300 s).
    pub shutdown_grace: Duration,
    /// `server.header_timeout`, default `10s`: how long a client may take to
    /// send a request head (slow-header clients are closed with a 408).
    pub header_timeout: Duration,
    /// `server.idle_timeout`, default `60s`: how long an idle keep-alive
    /// client connection is kept.
    pub idle_timeout: Duration,
    /// `server.trusted_proxies`, default none: peers whose
    /// `X-Forwarded-Uri`/`X-Original-URI`, `X-Forwarded-Host` and
    /// `X-Forwarded-Method` the forward-auth check believes.
    pub trusted_proxies: Vec<Cidr>,
    /// `server.trust_request_id`, default `false`: keep a client's
    /// `X-Request-Id` (when well-formed) instead of generating one. Only for
    /// a Portcullis behind a proxy that sets it.
    pub trust_request_id: bool,
    /// `server.upgrade_socket`: the Unix socket through which a running
    /// process hands its listening sockets to a new one started with
    /// `run --upgrade` (both the fast HTTP/1 loop's per-thread sockets and
    /// pingora's listeners). Unset: [`DEFAULT_UPGRADE_SOCKET`].
    pub upgrade_socket: Option<PathBuf>,
}

/// Where `run --upgrade` looks when `server.upgrade_socket` is not set.
pub const DEFAULT_UPGRADE_SOCKET: &str = "/tmp/portcullis-upgrade.sock";

impl Server {
    /// `{public_url}/oauth2/callback/{provider}`.
    pub fn callback_url(&self, provider: &str) -> String {
        let origin = self.public_url.as_str().trim_end_matches('/');
        format!("{origin}/oauth2/callback/{provider}")
    }
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

#[derive(Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub struct Upstream {
    /// `upstream.url`.
    pub url: Url,
    /// Host name from the URL: DNS is resolved once at start-up, and it is the
    /// TLS server name for https upstreams.
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// `upstream.connect_timeout`, default `5s`.
    pub connect_timeout: Duration,
    /// `upstream.read_timeout`, default `60s`.
    pub read_timeout: Duration,
    /// `upstream.keepalive`: idle upstream connections kept for reuse,
    /// default 1024.
    pub keepalive: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug)]
pub struct Session {
    /// `session.secret`: 32 bytes, base64.
    pub secret: SessionKey,
    /// `session.previous_secrets`: still accepted when reading.
    pub previous_secrets: Vec<SessionKey>,
    /// `session.cookie_name`, default `_portcullis`.
    pub cookie_name: String,
    /// `session.lifetime`, default `7d`.
    pub lifetime: Duration,
    /// `session.domain`, default none (host-only cookie).
    pub domain: Option<String>,
    /// `session.secure`, default: true when `public_url` is https.
    pub secure: bool,
    /// `session.same_site`, default `lax`.
    pub same_site: SameSite,
    /// `session.store`, default `cookie`.
    pub store: SessionStore,
}

/// Where sessions live (`session.store`).
#[derive(Debug)]
pub enum SessionStore {
    /// `"cookie"` (the default): the sealed identity is the cookie.
    Cookie,
    /// `"redis"`: the cookie holds a sealed ticket, the identity is in Redis.
    Redis(Redis),
}

/// `store = "redis"`: where Redis is and how its keys are named.
#[derive(Debug)]
pub struct Redis {
    /// `session.redis_url`, `session.redis_sentinel_urls` +
    /// `redis_sentinel_master`, or `session.redis_cluster_urls`: exactly one.
    pub target: RedisTarget,
    /// `session.redis_key_prefix`, default `portcullis:`: every key and the
    /// invalidation channel start with it.
    pub key_prefix: String,
}

/// Which Redis: one server, a master found through Sentinel, or a Cluster.
#[derive(Debug)]
pub enum RedisTarget {
    /// `session.redis_url`: `redis://`, `rediss://` (TLS) or `redis+unix://`.
    Url(RedisUrl),
    /// `session.redis_sentinel_urls` (`redis://` or `rediss://`, all the
    /// same scheme) and `session.redis_sentinel_master`. The master is
    /// reached with the user, password, database and TLS of the first URL.
    Sentinel { urls: Vec<RedisUrl>, master: String },
    /// `session.redis_cluster_urls`: some nodes of the cluster (`redis://` or
    /// `rediss://`, all the same scheme and credentials, database 0).
    Cluster(Vec<RedisUrl>),
}

impl RedisTarget {
    /// Where Redis is, for log lines and errors: URLs without credentials.
    pub fn redacted(&self) -> String {
        let list = |urls: &[RedisUrl]| {
            urls.iter()
                .map(RedisUrl::redacted)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            RedisTarget::Url(url) => url.redacted(),
            RedisTarget::Sentinel { urls, master } => {
                format!("master {master:?} via Sentinel {}", list(urls))
            }
            RedisTarget::Cluster(urls) => format!("cluster {}", list(urls)),
        }
    }
}

/// A Redis URL. It may carry a password, so its `Debug` shows only the
/// scheme, and [`RedisUrl::redacted`] is what logs may print.
#[derive(Clone)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub(crate) fn new(url: String) -> Self {
        RedisUrl(url)
    }

    /// The URL itself, for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without user, password and query (which may hold `pass=`).
    pub fn redacted(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.set_query(None);
                url.to_string()
            }
            Err(_) => "<unparsable>".to_owned(),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

/// Names of the identity headers (`[headers]`), defaults `X-User`, ...
#[derive(Debug, Clone)]
pub struct HeaderNames {
    pub user: HeaderName,
    pub provider: HeaderName,
    pub email: HeaderName,
    pub name: HeaderName,
    pub login: HeaderName,
    pub picture: HeaderName,
    /// `headers.groups`, default `X-User-Groups`.
    pub groups: HeaderName,
}

impl HeaderNames {
    pub fn all(&self) -> [&HeaderName; 7] {
        [
            &self.user,
            &self.provider,
            &self.email,
            &self.name,
            &self.login,
            &self.picture,
            &self.groups,
        ]
    }
}

/// `[access]`: who may pass once signed in, and how unauthenticated API calls are answered.
#[derive(Debug, Default)]
pub struct Access {
    /// `access.allowed_email_domains`, `allowed_emails`, `allowed_users`,
    /// `allowed_groups`: who may pass where no route says otherwise.
    pub allow: Allow,
    /// `access.api_paths`: requests whose path matches get 401 JSON instead of a redirect.
    pub api_paths: Option<RegexSet>,
    /// `access.skip_auth`: `[METHOD ]regex` rules on the normalised path;
    /// matching requests pass without a session (and without identity headers).
    pub skip_auth: Vec<crate::auth::skip::SkipRule>,
    /// `access.skip_auth_preflight`, default false: let CORS preflight
    /// requests (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) through.
    pub skip_auth_preflight: bool,
}

/// What kind of provider a `[providers.NAME]` table is, with its own settings.
#[derive(Debug)]
pub enum ProviderKind {
    /// Google: OpenID Connect with Google's quirks. `issuer` exactly as
    /// configured (default `https://accounts.google.com`).
    Google { issuer: String },
    /// Any OpenID Connect provider (discovery at
    /// `{issuer}/.well-known/openid-configuration`; compared with `iss`).
    Oidc { issuer: String },
    /// X (Twitter).
    Twitter(Box<Twitter>),
    /// Facebook.
    Facebook(Box<Facebook>),
}

/// Facebook's endpoints. Defaults are built from `api_version`; an override
/// replaces the whole endpoint.
#[derive(Debug)]
pub struct Facebook {
    /// `https://www.facebook.com/{api_version}/dialog/oauth`.
    pub authorize_url: Url,
    /// `https://graph.facebook.com/{api_version}/oauth/access_token`.
    pub token_url: Url,
    /// `https://graph.facebook.com/{api_version}/me`.
    pub userinfo_url: Url,
}

/// `protocol` of `[providers.twitter]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XProtocol {
    /// OAuth 2.0 with PKCE (the default).
    OAuth2,
    /// OAuth 1.0a ("Sign in with X"), for existing apps.
    OAuth1,
}

/// X's endpoints: defaults are X's real URLs; each may be overridden.
#[derive(Debug)]
pub struct Twitter {
    pub protocol: XProtocol,
    /// OAuth 2.0: `https://x.com/i/oauth2/authorize`; OAuth 1.0a: `https://api.x.com/oauth/authenticate`.
    pub authorize_url: Url,
    /// OAuth 2.0: `https://api.x.com/2/oauth2/token`.
    pub token_url: Url,
    /// OAuth 2.0: `https://api.x.com/2/users/me`; OAuth 1.0a: `https://api.x.com/1.1/account/verify_credentials.json`.
    pub userinfo_url: Url,
    /// OAuth 1.0a: `https://api.x.com/oauth/request_token`.
    pub request_token_url: Url,
    /// OAuth 1.0a: `https://api.x.com/oauth/access_token`.
    pub access_token_url: Url,
}

#[derive(Debug)]
pub struct Provider {
    /// The table name: the id in URLs and in `X-User`.
    pub id: String,
    pub kind: ProviderKind,
    pub display_name: String,
    /// OAuth client id (X OAuth 1.0a: the consumer key).
    pub client_id: String,
    /// OAuth client secret (X OAuth 1.0a: the consumer secret).
    pub client_secret: ClientSecret,
    pub scopes: Vec<String>,
    /// `groups_claim` (kind `oidc` only): where the groups are in the ID
    /// token or UserInfo claims, one key per level (`"realm_access.roles"`
    /// is `["realm_access", "roles"]`). `None`: no groups.
    pub groups_claim: Option<Vec<String>>,
    /// `hosted_domains` (Google only), lower-cased: the ID token's `hd`
    /// claim must be one of them. Empty: any account.
    pub hosted_domains: Vec<String>,
    /// `accept_bearer_tokens = true` (kind `oidc` only): API clients may
    /// authenticate with `Authorization: Bearer <JWT from this issuer>`.
    pub bearer: Option<Bearer>,
    /// `sign_out_at_provider` (kinds `oidc` and `google`), default false:
    /// sign-out also ends the provider's session (RP-initiated logout).
    pub sign_out_at_provider: bool,
    /// `pass_access_token` (kinds `oidc` and `google`), default false: the
    /// provider's access token goes upstream as `X-Forwarded-Access-Token`,
    /// refreshed before it expires.
    pub pass_access_token: bool,
}

/// Bearer tokens accepted from an OpenID Connect provider.
#[derive(Debug, Clone)]
pub struct Bearer {
    /// `bearer_audiences`, default `[client_id]`: the token's `aud` must
    /// name one of them.
    pub audiences: Vec<String>,
    /// `pass_authorization_header`, default false: the `Authorization`
    /// header of a request authenticated by a bearer token goes upstream
    /// unchanged only when true (else it is removed).
    pub pass_authorization_header: bool,
}

/// Lower-cases and maps `_` to `-`: the form under which WSGI, PHP and
/// others treat `X_User` and `x-user` as the same header.
pub fn normalize_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            b => b.to_ascii_lowercase() as char,
        })
        .collect()
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path, env: &dyn Env) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, env)
}

/// Parses and validates config text.
pub fn parse(text: &str, env: &dyn Env) -> Result<Settings, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // toml's message quotes the offending line, which may hold a secret:
        // keep only its own description and position.
        let span = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ConfigError::Syntax(format!(
            "TOML syntax error{span}: {}",
            one_line(e.message())
        ))
    })?;
    validate::build(table, env).map_err(ConfigError::Invalid)
}

/// `message` as one printable line: its lines joined with "; ", control
/// characters escaped (each problem is printed on a line of its own).
fn one_line(message: &str) -> String {
    let joined = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = String::with_capacity(joined.len());
    for c in joined.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The config path: `--config`, else `$PORTCULLIS_CONFIG`, else the default.
pub fn resolve_path(cli: Option<PathBuf>) -> PathBuf {
    cli.or_else(|| std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}
