//! A small W3C WebDriver client (JSON over HTTP with reqwest) driving Debian's `chromium`
//! through `chromedriver`, for the real-browser tests (`tests/it/browser.rs`).
//!
//! One `chromedriver` per test binary, started by the first [`Session::start`] and killed
//! with the test binary (spawned like the framework apps, with the parent-death signal set);
//! every test gets a fresh browser: its own Chromium with a new user-data-dir, headless, no
//! network of its own (no background requests, no QUIC, no sync). A session is quit when it
//! is dropped.
//!
//! Needs `chromium` and `chromium-driver` (`scripts/install-deps test`); without them a test
//! is skipped with a message, or fails when `CI` is set.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::frameworks::spawn_tied;
use super::harness::free_port;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key of an element reference in W3C WebDriver.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a condition may take to become true ([`Session::wait_for`]).
pub const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// WebDriver key codes.
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const SHIFT: &str = "\u{E008}";
}

/// Whether the browser can run here: `Err(why)` when chromium or chromedriver is missing.
pub fn available() -> Result<(), String> {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !Path::new(path).exists() {
            return Err(format!(
                "{path} is missing (Debian package {package}; scripts/install-deps test installs it)"
            ));
        }
    }
    Ok(())
}

/// `true` when the test should return early: the browser is missing and `CI` is not set
/// (prints why). Under `CI=true` a missing browser panics: a failure, never a skip.
pub fn skip_or_fail(test: &str) -> bool {
    match available() {
        Ok(()) => false,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: the real-browser tests need Chromium under CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            true
        }
    }
}

/// `tests/`-relative folder for the screenshots: `target/screenshots/` of this checkout.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

struct Driver {
    url: String,
    _child: Mutex<Child>,
}

/// The chromedriver of this test binary (started on first use).
fn driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            // Next to the screenshots, one file rewritten by each run (its
            // verbose log is tens of MB: never left to pile up in /tmp).
            let log = screenshot_dir().join("chromedriver.log");
            let mut command = Command::new(CHROMEDRIVER);
            command
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = spawn_tied(command).expect("start chromedriver");
            let url = format!("http://127.0.0.1:{port}");
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if raw_http("GET", &url, "/status").is_some_and(|s| s.contains("\"ready\":true")) {
                    return Driver {
                        url,
                        _child: Mutex::new(child),
                    };
                }
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("chromedriver did not start; its log:\n{last}");
    })
}

/// A plain HTTP/1.1 request with `std::net` (for [`Drop`], which cannot await): the body.
fn raw_http(method: &str, base: &str, path: &str) -> Option<String> {
    let authority = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// A screen size for [`Session::set_viewport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    /// A phone: touch, mobile viewport rules.
    pub mobile: bool,
}

pub const PHONE: Viewport = Viewport {
    width: 390,
    height: 844,
    mobile: true,
};
pub const DESKTOP: Viewport = Viewport {
    width: 1280,
    height: 800,
    mobile: false,
};

/// An element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Element {
    fn json(&self) -> Value {
        json!({ ELEMENT: self.0 })
    }
}

/// One browser (its own Chromium and profile).
pub struct Session {
    http: reqwest::Client,
    /// `{driver}/session/{id}`
    base: String,
    id: String,
    _profile: tempfile::TempDir,
}

impl Session {
    /// A fresh headless Chromium at `viewport`.
    pub async fn start(viewport: Viewport) -> Session {
        let driver = tokio::task::spawn_blocking(driver)
            .await
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("webdriver client");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication".to_owned(),
            "--password-store=basic".to_owned(),
            "--lang=en-US".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", viewport.width, viewport.height),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": args,
                        "prefs": { "intl.accept_languages": "en-US,en" },
                    },
                }
            }
        });
        let answer = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .expect("new session");
        let value: Value = answer.json().await.expect("new session JSON");
        let id = value["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {value}"))
            .to_owned();
        let session = Session {
            http,
            base: format!("{}/session/{id}", driver.url),
            id,
            _profile: profile,
        };
        session
            .post(
                "/timeouts",
                json!({"script": 20_000, "pageLoad": 30_000, "implicit": 0}),
            )
            .await;
        session.set_viewport(viewport).await;
        session
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: not JSON: {e}"));
        if !status.is_success() {
            panic!("webdriver {method} {path} answered {status}: {value}");
        }
        value["value"].clone()
    }

    async fn try_post(&self, path: &str, body: Value) -> Result<Value, Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver POST {path}: {e}"));
        let ok = response.status().is_success();
        let value: Value = response.json().await.expect("webdriver JSON");
        if ok {
            Ok(value["value"].clone())
        } else {
            Err(value["value"].clone())
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A Chrome DevTools command on the current tab.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Emulates `viewport` (CSS pixels, device scale 1) on the current tab.
    pub async fn set_viewport(&self, viewport: Viewport) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": viewport.width,
                "height": viewport.height,
                "deviceScaleFactor": 1,
                "mobile": viewport.mobile,
            }),
        )
        .await;
        self.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": viewport.mobile}),
        )
        .await;
    }

    /// `prefers-color-scheme: dark` (or light) on the current tab.
    pub async fn set_dark(&self, dark: bool) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" }}]}),
        )
        .await;
    }

    /// Sends `Accept-Language: value` with every request of the current tab.
    pub async fn set_accept_language(&self, value: &str) {
        self.cdp(
            "Emulation.setUserAgentOverride",
            json!({"userAgent": self.execute("return navigator.userAgent", json!([])).await, "acceptLanguage": value}),
        )
        .await;
    }

    /// Navigates (waits for the load).
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn title(&self) -> String {
        self.get("/title")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn back(&self) {
        self.post("/back", json!({})).await;
    }

    pub async fn forward(&self) {
        self.post("/forward", json!({})).await;
    }

    pub async fn refresh(&self) {
        self.post("/refresh", json!({})).await;
    }

    /// The first element matching the CSS `selector`, waiting for it ([`WAIT`]).
    pub async fn find(&self, selector: &str) -> Element {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self
                .try_post(
                    "/element",
                    json!({"using": "css selector", "value": selector}),
                )
                .await
            {
                Ok(v) => {
                    return Element(v[ELEMENT].as_str().expect("element reference").to_owned())
                }
                Err(e) if tokio::time::Instant::now() > deadline => panic!(
                    "no element {selector:?} at {} within {WAIT:?}: {e}\npage:\n{}",
                    self.url().await,
                    self.text().await
                ),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Every element matching `selector` now.
    pub async fn find_all(&self, selector: &str) -> Vec<Element> {
        self.post(
            "/elements",
            json!({"using": "css selector", "value": selector}),
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v[ELEMENT].as_str().map(|s| Element(s.to_owned())))
        .collect()
    }

    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Clicks the first element matching `selector`.
    pub async fn click_on(&self, selector: &str) {
        let element = self.find(selector).await;
        self.click(&element).await;
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Presses `key` (e.g. [`keys::TAB`]) on whatever has the focus.
    pub async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
            ]}]}),
        )
        .await;
        self.call(reqwest::Method::DELETE, "/actions", None).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1](result)` when done.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : ''",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The page's HTML as the browser holds it.
    pub async fn html(&self) -> String {
        self.execute("return document.documentElement.outerHTML", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Polls until the JavaScript expression `condition` is truthy; panics after [`WAIT`].
    pub async fn wait_for(&self, condition: &str) {
        let script = format!("try {{ return !!({condition}); }} catch (e) {{ return false; }}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(v) = self
                .try_post("/execute/sync", json!({"script": script, "args": []}))
                .await
            {
                if v.as_bool() == Some(true) {
                    return;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{condition:?} never became true within {WAIT:?}; at {}:\n{}",
                    self.url().await,
                    self.text().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the current page's path is `path` and it has loaded.
    pub async fn wait_for_path(&self, path: &str) {
        self.wait_for(&format!(
            "location.pathname === {} && document.readyState === 'complete'",
            json!(path)
        ))
        .await;
    }

    /// Saves a PNG of the viewport as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("screenshot base64"))
            .expect("screenshot PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }

    /// Opens a new tab and switches to it; returns its handle.
    pub async fn new_tab(&self) -> String {
        let v = self.post("/window/new", json!({"type": "tab"})).await;
        let handle = v["handle"].as_str().expect("tab handle").to_owned();
        self.switch_to(&handle).await;
        handle
    }

    pub async fn current_tab(&self) -> String {
        self.get("/window")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn switch_to(&self, handle: &str) {
        self.post("/window", json!({ "handle": handle })).await;
    }

    /// Every cookie the browser holds for the current page: `(name, value)`.
    pub async fn cookies(&self) -> Vec<(String, String)> {
        self.get("/cookie")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_owned(),
                    c["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let (base, path) = self
            .base
            .split_once("/session/")
            .map(|(b, _)| (b.to_owned(), format!("/session/{}", self.id)))
            .expect("session URL");
        let _ = raw_http("DELETE", &base, &path);
    }
}
