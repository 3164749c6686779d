//! Runs the real `portcullis` binary for a test, and a small cookie-keeping [`Browser`] that
//! does not follow redirects on its own, so tests can inspect every hop.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore as _;
use reqwest::header::{HeaderValue, ACCEPT, COOKIE, LOCATION, SET_COOKIE, USER_AGENT};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use super::mock_google::MockGoogle;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// How long the binary may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Poll interval while waiting for it.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Attempts with a fresh port when the reserved one was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// A running Portcullis process. Killed (SIGKILL) and reaped on drop; when the test is
/// panicking, its stderr is printed first.
pub struct Portcullis {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub port: u16,
    /// The config file it was started with.
    pub config_path: PathBuf,
    child: Child,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts Portcullis with the config `config_toml(port)` (`port` is free for
/// `[server] listen = "127.0.0.1:{port}"`, `public_url = "http://127.0.0.1:{port}"`), with
/// `RUST_LOG=info`, and waits until it accepts TCP connections.
pub async fn start(config_toml: impl Fn(u16) -> String) -> Portcullis {
    start_with_env(config_toml, &[]).await
}

/// As [`start`], with extra environment variables (e.g. for `${VAR}` in the config).
pub async fn start_with_env(
    config_toml: impl Fn(u16) -> String,
    env: &[(&str, &str)],
) -> Portcullis {
    let mut last_logs = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match try_start_at(free_port(), &config_toml, env).await {
            Ok(proxy) => return proxy,
            Err(logs) => last_logs = logs,
        }
    }
    panic!(
        "portcullis could not bind a port in {PORT_ATTEMPTS} attempts; last stderr:\n{last_logs}"
    );
}

/// As [`start`], on a port chosen by the caller (when a peer must know the
/// callback URLs before Portcullis starts). One attempt: panics if the port is taken.
pub async fn start_at(port: u16, config_toml: impl Fn(u16) -> String) -> Portcullis {
    match try_start_at(port, &config_toml, &[]).await {
        Ok(proxy) => proxy,
        Err(logs) => panic!("portcullis could not bind port {port}:\n{logs}"),
    }
}

async fn try_start_at(
    port: u16,
    config_toml: &impl Fn(u16) -> String,
    env: &[(&str, &str)],
) -> Result<Portcullis, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("portcullis.toml");
    fs::write(&config_path, config_toml(port)).expect("write config");
    let stderr_path = dir.path().join("stderr.log");
    let stdout_path = dir.path().join("stdout.log");
    let mut command = command();
    command
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"));
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().expect("spawn portcullis");
    let mut proxy = Portcullis {
        base_url: format!("http://127.0.0.1:{port}"),
        port,
        config_path,
        child,
        stderr_path,
        _dir: dir,
    };
    proxy.wait_until_listening().await.map(|()| proxy)
}

impl Portcullis {
    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Everything the process wrote to stderr so far.
    pub fn logs(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Waits (polling, 5 s at most) until the logs contain `needle`, and
    /// returns them; panics with the logs if it never appears. Logs are
    /// written by a background thread, so a line may trail its response.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut ticks = tokio::time::interval(POLL_EVERY);
        loop {
            ticks.tick().await;
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{needle:?} never appeared in the logs:\n{logs}");
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("poll child")
    }

    /// `Ok` once the port accepts connections; `Err(stderr)` when the process exited because
    /// the port was taken; panics on any other exit or after the deadline.
    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Some(status) = self.try_exit_status() {
                let logs = self.logs();
                let lower = logs.to_ascii_lowercase();
                if lower.contains("address already in use")
                    || lower.contains("addrinuse")
                    || lower.contains("os error 98")
                {
                    return Err(logs);
                }
                panic!("portcullis exited ({status}) before listening; stderr:\n{logs}");
            }
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", self.port));
            if let Ok(Ok(_stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                // Someone else may hold the port while our process is failing to bind it.
                if self.try_exit_status().is_none() {
                    return Ok(());
                }
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "portcullis did not listen on port {} within {START_DEADLINE:?}; stderr:\n{}",
                    self.port,
                    self.logs()
                );
            }
        }
    }
}

impl Portcullis {
    /// Sends `signal` (e.g. `libc::SIGINT`) and waits (10 s at most) for the
    /// process to exit; returns whether it exited successfully.
    pub async fn stop_with(&mut self, signal: i32) -> bool {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) with our own child's pid and a plain signal number.
        unsafe {
            libc::kill(pid, signal);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut ticks = tokio::time::interval(POLL_EVERY);
        loop {
            ticks.tick().await;
            if let Some(status) = self.try_exit_status() {
                return status.success();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "portcullis did not exit after signal {signal}"
            );
        }
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- portcullis stderr ({}) ----\n{}\n---- end of portcullis stderr ----",
                self.base_url,
                self.logs()
            );
        }
    }
}

/// The binary as a [`Command`], with the environment variables that would change its
/// behaviour removed (`PORTCULLIS_*`, `RUST_LOG`, HTTP proxies), for `check`, `secret` and
/// `--version` tests too.
pub fn command() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_LOG_FORMAT")
        .env_remove("RUST_LOG");
    // The peers are all on loopback: an HTTP proxy from the environment must not be used.
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost,::1");
    command
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("reserve a port")
        .port()
}

/// A fresh session secret: 32 random bytes, base64.
pub fn session_secret() -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The `[server]`, `[upstream]` and `[session]` tables every test config starts with:
/// Portcullis on `127.0.0.1:{port}` (plain HTTP) in front of `upstream`.
pub fn base_config(port: u16, upstream: &str, secret: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[upstream]
url = "{upstream}"

[session]
secret = "{secret}"
"#
    )
}

/// A config with the Google provider pointed at `google` and `[upstream] url = upstream`;
/// `extra` is appended (more tables, e.g. `[access]`). Keys as named in SPEC.md.
pub fn google_config(
    port: u16,
    upstream: &str,
    google: &MockGoogle,
    secret: &str,
    extra: &str,
) -> String {
    format!(
        r#"{base}
[providers.google]
client_id = "{client_id}"
client_secret = "{client_secret}"
issuer = "{issuer}"

{extra}
"#,
        base = base_config(port, upstream, secret),
        client_id = google.client_id,
        client_secret = google.client_secret,
        issuer = google.issuer(),
    )
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// HTTP clients

/// A client for API-style requests: no redirects followed, no proxy from the environment, no
/// cookies, a 30 s timeout.
pub fn client() -> reqwest::Client {
    builder().build().expect("reqwest client")
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
}

/// `Accept` of a browser navigation (Portcullis redirects these, and answers 401 to others).
pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A cookie in the [`Browser`]'s jar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCookie {
    pub name: String,
    pub value: String,
    /// The host that set it (host-only cookie) or its `Domain` attribute.
    pub domain: String,
    pub host_only: bool,
    pub path: String,
    pub secure: bool,
    pub http_only: bool,
    /// The `SameSite` attribute as written, if any.
    pub same_site: Option<String>,
    /// Absolute expiry (Unix seconds) from `Max-Age` or `Expires`; `None` = session cookie.
    pub expires: Option<u64>,
    /// The whole `Set-Cookie` value it came from.
    pub raw: String,
}

/// One response seen by [`Browser::follow`] / [`Browser::follow_redirects`].
#[derive(Clone, Debug)]
pub struct Hop {
    pub url: String,
    pub status: StatusCode,
    pub location: Option<String>,
}

/// A minimal browser: keeps cookies like RFC 6265 (host, path, `Max-Age`/`Expires`,
/// `Secure`), sends browser `Accept` and `User-Agent` headers, never follows redirects by
/// itself. Cookies are shared between ports of the same host, as in real browsers.
pub struct Browser {
    client: reqwest::Client,
    jar: Vec<StoredCookie>,
    hops: Vec<Hop>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    /// A browser on `client` (e.g. one that trusts a test certificate);
    /// the client should not follow redirects.
    pub fn with_client(client: reqwest::Client) -> Browser {
        Browser {
            client,
            jar: Vec::new(),
            hops: Vec::new(),
        }
    }

    pub fn new() -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(BROWSER_ACCEPT));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) portcullis-tests"),
        );
        Browser {
            client: builder()
                .default_headers(headers)
                .build()
                .expect("reqwest client"),
            jar: Vec::new(),
            hops: Vec::new(),
        }
    }

    /// The underlying client (browser headers, no cookies).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request to build on; pass it to [`Browser::send`] to use and update the jar.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends `request` with the jar's cookies (unless it already has a `Cookie` header) and
    /// stores the response's `Set-Cookie`s. Does not follow redirects.
    pub async fn send(&mut self, request: RequestBuilder) -> Response {
        self.try_send(request)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    /// As [`Browser::send`], returning the transport error instead of panicking.
    pub async fn try_send(&mut self, request: RequestBuilder) -> reqwest::Result<Response> {
        let mut request = request.build()?;
        if !request.headers().contains_key(COOKIE) {
            if let Some(cookies) = self.cookie_header(request.url()) {
                request.headers_mut().insert(
                    COOKIE,
                    HeaderValue::from_str(&cookies).expect("cookie header value"),
                );
            }
        }
        let url = request.url().clone();
        let response = self.client.execute(request).await?;
        for value in response.headers().get_all(SET_COOKIE) {
            if let Ok(value) = value.to_str() {
                self.store(&url, value);
            }
        }
        Ok(response)
    }

    pub async fn get(&mut self, url: &str) -> Response {
        let request = self.request(Method::GET, url);
        self.send(request).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Response {
        let request = self.request(Method::POST, url).form(form);
        self.send(request).await
    }

    /// GETs `url` and follows redirects (any host) up to `max_hops` times; returns the first
    /// non-redirect response. Panics when there are more redirects. [`Browser::hops`] lists
    /// every response seen.
    pub async fn follow(&mut self, url: &str, max_hops: usize) -> Response {
        let response = self.get(url).await;
        self.follow_redirects(response, max_hops).await
    }

    /// Follows `response` if it is a redirect, as a browser navigation does (GET), up to
    /// `max_hops` more requests; returns the first non-redirect response.
    pub async fn follow_redirects(&mut self, mut response: Response, max_hops: usize) -> Response {
        self.hops.clear();
        self.record_hop(&response);
        for _ in 0..max_hops {
            if !response.status().is_redirection() {
                return response;
            }
            let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return response;
            };
            let next = response
                .url()
                .join(location)
                .unwrap_or_else(|e| panic!("bad Location {location:?}: {e}"));
            response = self.get(next.as_str()).await;
            self.record_hop(&response);
        }
        if response.status().is_redirection() {
            panic!("more than {max_hops} redirects: {:#?}", self.hops);
        }
        response
    }

    /// The requests made by the last [`Browser::follow`] / [`Browser::follow_redirects`].
    pub fn hops(&self) -> &[Hop] {
        &self.hops
    }

    pub fn cookies(&self) -> &[StoredCookie] {
        &self.jar
    }

    /// The first live cookie called `name`.
    pub fn cookie(&self, name: &str) -> Option<&StoredCookie> {
        let now = unix_now();
        self.jar
            .iter()
            .find(|c| c.name == name && c.expires.is_none_or(|e| e > now))
    }

    /// Puts a cookie in the jar as if `host` had set it with `Path=path` (for forged or
    /// tampered cookies).
    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str, path: &str) {
        self.jar
            .retain(|c| !(c.name == name && c.domain == host && c.path == path));
        self.jar.push(StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            domain: host.to_owned(),
            host_only: true,
            path: path.to_owned(),
            secure: false,
            http_only: false,
            same_site: None,
            expires: None,
            raw: format!("{name}={value}; Path={path}"),
        });
    }

    /// Removes every cookie called `name`.
    pub fn remove_cookie(&mut self, name: &str) {
        self.jar.retain(|c| c.name != name);
    }

    pub fn clear_cookies(&mut self) {
        self.jar.clear();
    }

    /// The `Cookie` header this browser would send to `url`, if any.
    pub fn cookie_header(&self, url: &Url) -> Option<String> {
        let host = url.host_str()?.to_ascii_lowercase();
        let path = url.path();
        let now = unix_now();
        let secure_ok = url.scheme() == "https" || is_loopback(&host);
        let mut matching: Vec<&StoredCookie> = self
            .jar
            .iter()
            .filter(|c| c.expires.is_none_or(|e| e > now))
            .filter(|c| {
                if c.host_only {
                    c.domain == host
                } else {
                    domain_match(&host, &c.domain)
                }
            })
            .filter(|c| path_match(path, &c.path))
            .filter(|c| !c.secure || secure_ok)
            .collect();
        if matching.is_empty() {
            return None;
        }
        // RFC 6265 section 5.4: longer paths first; the sort is stable, so older first after.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        Some(
            matching
                .iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn record_hop(&mut self, response: &Response) {
        self.hops.push(Hop {
            url: response.url().to_string(),
            status: response.status(),
            location: response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    }

    /// RFC 6265 section 5.3, simplified: no public-suffix list.
    fn store(&mut self, url: &Url, set_cookie: &str) {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return;
        };
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return;
        }
        let mut cookie = StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            domain: host.clone(),
            host_only: true,
            path: default_path(url.path()),
            secure: false,
            http_only: false,
            same_site: None,
            expires: None,
            raw: set_cookie.to_owned(),
        };
        let now = unix_now();
        let mut max_age: Option<i64> = None;
        let mut expires: Option<u64> = None;
        for attribute in parts {
            let (key, val) = match attribute.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (attribute.trim(), ""),
            };
            match key.to_ascii_lowercase().as_str() {
                "max-age" => max_age = val.parse().ok(),
                "expires" => expires = parse_http_date(val),
                "path" if val.starts_with('/') => cookie.path = val.to_owned(),
                "domain" if !val.is_empty() => {
                    let domain = val.trim_start_matches('.').to_ascii_lowercase();
                    if !domain_match(&host, &domain) {
                        return; // a browser ignores a cookie for another domain
                    }
                    cookie.domain = domain;
                    cookie.host_only = false;
                }
                "secure" => cookie.secure = true,
                "httponly" => cookie.http_only = true,
                "samesite" => cookie.same_site = Some(val.to_owned()),
                _ => {}
            }
        }
        // Browsers drop Secure cookies from insecure origins (loopback counts as secure) and
        // SameSite=None cookies without Secure.
        if cookie.secure && url.scheme() != "https" && !is_loopback(&host) {
            return;
        }
        if cookie
            .same_site
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("none"))
            && !cookie.secure
        {
            return;
        }
        // Max-Age wins over Expires; zero or negative deletes.
        cookie.expires = match max_age {
            Some(age) if age <= 0 => Some(0),
            Some(age) => Some(now + age as u64),
            None => expires,
        };
        self.jar.retain(|c| {
            !(c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path)
        });
        if cookie.expires.is_none_or(|e| e > now) {
            self.jar.push(cookie);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// RFC 6265 section 5.1.3 (IP addresses match only themselves).
fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.ends_with(&format!(".{domain}"))
            && host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_err())
}

/// RFC 6265 section 5.1.4.
fn default_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => request_path[..i].to_owned(),
    }
}

/// RFC 6265 section 5.1.4 path-match.
fn path_match(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) or its `-`-separated variant, to Unix seconds.
fn parse_http_date(value: &str) -> Option<u64> {
    let rest = value.split_once(',').map_or(value, |(_, r)| r).trim();
    let fields: Vec<&str> = rest.split([' ', '-']).filter(|s| !s.is_empty()).collect();
    let [day, month, year, time, ..] = fields.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| month.to_ascii_lowercase().starts_with(m))? as u64
        + 1;
    let mut year: u64 = year.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let hms: Vec<u64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if year < 1970 {
        return Some(0);
    }
    // Days from civil (Howard Hinnant's algorithm), for dates from 1970 on.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// A session cookie (`_portcullis=...`) for `id`, sealed with `secret` as
/// Portcullis seals it, valid until `expires_at` (unix seconds): a signed-in
/// client without going through a provider.
pub fn session_cookie(
    secret: &str,
    id: &portcullis::identity::Identity,
    expires_at: u64,
) -> String {
    use portcullis::session::{Sealer, SessionCodec, SessionKey};
    let key = SessionKey::from_base64(secret).expect("session key");
    let codec = SessionCodec::new(Sealer::new(&key, &[]));
    format!(
        "_portcullis={}",
        codec.seal_identity_at("_portcullis", id, expires_at)
    )
}
