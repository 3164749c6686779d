//! A real nginx for the forward-auth tests, configured with the shipped example
//! `examples/nginx/portcullis.conf` itself, so that the example is what is tested.
//!
//! The example is included verbatim inside a generated `http {}` block; [`render_example`]
//! replaces exactly three strings in it, each of which must occur exactly once (a test fails
//! loudly if someone edits them away):
//!
//! | in the example | replaced with |
//! |---|---|
//! | `server 127.0.0.1:4180;` | Portcullis's `host:port` |
//! | `server 127.0.0.1:8080;` | the app's `host:port` (the echo upstream) |
//! | `listen 80;` | `listen 127.0.0.1:{free port};` |
//!
//! The generated `nginx.conf` around it runs nginx in the foreground as one process
//! (`daemon off; master_process off;`, so a kill on drop stops all of it and no worker
//! switches to another user), with its pid file, logs and temp directories in a
//! [`tempfile::TempDir`]. When the tests run as root, `user root;` is added so that nginx
//! does not hand the temp directories it creates to `nobody`.
//!
//! Needs `/usr/sbin/nginx` (or `nginx` on `PATH`, or `$PORTCULLIS_TEST_NGINX`) with the
//! auth_request module: Debian's `nginx` package (`nginx-light` on bookworm is a
//! transitional package that pulls it in). Tests start with [`require!`]: without nginx they
//! are skipped with a message, unless `CI` is set, where they fail.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::harness;

/// The example configuration the tests run.
pub const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/nginx/portcullis.conf"
);
/// Portcullis's address in [`EXAMPLE`].
pub const PORTCULLIS_PLACEHOLDER: &str = "server 127.0.0.1:4180;";
/// The app's address in [`EXAMPLE`].
pub const APP_PLACEHOLDER: &str = "server 127.0.0.1:8080;";
/// nginx's own listen address in [`EXAMPLE`].
pub const LISTEN_PLACEHOLDER: &str = "listen 80;";

/// How long nginx may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(15);
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Attempts with a fresh port when the reserved one was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Availability

/// The nginx binary: `$PORTCULLIS_TEST_NGINX`, else `/usr/sbin/nginx`, else `nginx` on `PATH`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTCULLIS_TEST_NGINX").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/sbin/nginx");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("nginx")
}

/// `Ok` when nginx runs and has the auth_request module. Checked once per test binary.
pub fn available() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(check_available).clone()
}

fn check_available() -> Result<(), String> {
    let build = build_info()?;
    if !build.contains("http_auth_request_module") {
        return Err(format!(
            "{} has no auth_request module (`nginx -V` does not list \
             --with-http_auth_request_module); install Debian's `nginx` package",
            binary().display()
        ));
    }
    Ok(())
}

/// What `nginx -V` prints (version and configure arguments).
fn build_info() -> Result<String, String> {
    static INFO: OnceLock<Result<String, String>> = OnceLock::new();
    INFO.get_or_init(|| {
        let nginx = binary();
        let output = Command::new(&nginx)
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}): install nginx (`apt-get install -y nginx-light`, \
                     or `nginx` on Debian 13 and later)",
                    nginx.display()
                )
            })?;
        // nginx prints -V to stderr.
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        if !output.status.success() {
            return Err(format!(
                "`{} -V` failed ({}): {text}",
                nginx.display(),
                output.status
            ));
        }
        Ok(text)
    })
    .clone()
}

/// `false` when nginx is available. Otherwise `true` with a message on stderr (the test
/// should return: skipped), or, when `CI` is set, a panic: CI never skips silently.
pub fn skip_or_fail(test: &str) -> bool {
    match available() {
        Ok(()) => false,
        Err(why) if super::oidc_peer::in_ci() => {
            panic!("{test}: nginx is required in CI but unavailable: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: nginx is unavailable: {why} (with CI=true this fails)");
            true
        }
    }
}

/// `nginx::require!();` at the top of a test: returns from it (skipped) when nginx is
/// unavailable, panics instead when `CI` is set. See [`skip_or_fail`].
macro_rules! require_nginx {
    () => {
        if $crate::support::nginx::skip_or_fail(
            ::std::thread::current()
                .name()
                .unwrap_or(::std::module_path!()),
        ) {
            return;
        }
    };
}
pub(crate) use require_nginx as require;

// ---------------------------------------------------------------------------------------------
// Configuration

/// The example with the three placeholders replaced; panics (naming the file) when one of
/// them does not occur exactly once. `portcullis` and `app` are `host:port`.
pub fn render_example(listen_port: u16, portcullis: &str, app: &str) -> String {
    let example = fs::read_to_string(EXAMPLE).unwrap_or_else(|e| panic!("read {EXAMPLE}: {e}"));
    let mut text = example;
    for (placeholder, value) in [
        (PORTCULLIS_PLACEHOLDER, format!("server {portcullis};")),
        (APP_PLACEHOLDER, format!("server {app};")),
        (
            LISTEN_PLACEHOLDER,
            format!("listen 127.0.0.1:{listen_port};"),
        ),
    ] {
        let found = text.matches(placeholder).count();
        assert_eq!(
            found, 1,
            "{EXAMPLE} must contain `{placeholder}` exactly once (the tests replace it), \
             found it {found} times"
        );
        text = text.replace(placeholder, &value);
    }
    text
}

/// The whole `nginx.conf` for a test: process settings and paths inside `dir`, and the
/// rendered example inside `http {}`.
pub fn config(dir: &Path, listen_port: u16, portcullis: &str, app: &str) -> String {
    let example = render_example(listen_port, portcullis, app);
    around(
        dir,
        &format!(
            "# ---- examples/nginx/portcullis.conf ----\n\
             {example}\n\
             # ---- end of examples/nginx/portcullis.conf ----\n"
        ),
    )
}

/// An `nginx.conf` with process settings and paths inside `dir`, and `http` inside `http {}`.
fn around(dir: &Path, http: &str) -> String {
    let dir = dir.display();
    let user = if running_as_root() {
        "user root;\n"
    } else {
        ""
    };
    // Every temp directory of a compiled-in module must be writable, or nginx refuses to start.
    let build = build_info().unwrap_or_default();
    let mut temp_paths =
        format!("    client_body_temp_path {dir}/client_body;\n    proxy_temp_path {dir}/proxy;\n");
    for module in ["fastcgi", "uwsgi", "scgi"] {
        if !build.contains(&format!("--without-http_{module}_module")) {
            temp_paths.push_str(&format!("    {module}_temp_path {dir}/{module};\n"));
        }
    }
    format!(
        "# Generated by tests/it/support/nginx.rs around examples/nginx/portcullis.conf.\n\
         {user}daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log info;\n\
         events {{\n    worker_connections 256;\n}}\n\
         http {{\n\
         \x20   access_log {dir}/access.log;\n\
         \x20   default_type application/octet-stream;\n\
         {temp_paths}\
         {http}\
         }}\n"
    )
}

/// Whether this process's effective uid is 0 (from `/proc/self/status`; `false` if unknown).
fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// The process

/// A running nginx. Killed (SIGKILL: one process, no workers) and reaped on drop; when the
/// test is panicking, its logs are printed first.
pub struct Nginx {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub port: u16,
    /// The generated `nginx.conf`.
    pub config_path: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

/// Starts nginx in front of `portcullis` and `app` (`host:port` each) on a free port,
/// retrying with another port if it was taken meanwhile.
pub async fn start(portcullis: &str, app: &str) -> Nginx {
    let mut last_logs = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match start_at(harness::free_port(), portcullis, app).await {
            Ok(nginx) => return nginx,
            Err(logs) => last_logs = logs,
        }
    }
    panic!("nginx could not bind a port in {PORT_ATTEMPTS} attempts; last logs:\n{last_logs}");
}

/// Starts nginx on `port` and waits until it accepts connections. `Err(logs)` when the port
/// is taken (the caller may retry with another one); panics on any other failure.
pub async fn start_at(port: u16, portcullis: &str, app: &str) -> Result<Nginx, String> {
    launch(port, |dir| config(dir, port, portcullis, app)).await
}

/// nginx on `port` as a round-robin load balancer in front of `backends` (`host:port` each),
/// passing the client's `Host` on. `Err(logs)` when the port is taken.
pub async fn start_balancer_at(port: u16, backends: &[String]) -> Result<Nginx, String> {
    let servers: String = backends
        .iter()
        .map(|b| format!("        server {b};\n"))
        .collect();
    let http = format!(
        "    upstream replicas {{\n{servers}        keepalive 16;\n    }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://replicas;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20           proxy_set_header Host $http_host;\n\
         \x20       }}\n\
         \x20   }}\n"
    );
    launch(port, |dir| around(dir, &http)).await
}

/// nginx on `port` with `http` (e.g. a `conf.d` file of an example, addresses replaced)
/// inside the generated `http {}` block. `Err(logs)` when the port is taken.
pub async fn start_http_at(port: u16, http: &str) -> Result<Nginx, String> {
    launch(port, |dir| around(dir, http)).await
}

async fn launch(port: u16, make_config: impl FnOnce(&Path) -> String) -> Result<Nginx, String> {
    if let Err(why) = available() {
        panic!("nginx is unavailable: {why}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("nginx.conf");
    fs::write(&config_path, make_config(dir.path())).expect("write nginx.conf");
    let stderr = fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
    let stdout = fs::File::create(dir.path().join("stdout.log")).expect("stdout file");
    let child = Command::new(binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config_path)
        // Early messages (before the config's error_log applies) go here too, not to
        // the compiled-in /var/log/nginx/error.log.
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary().display()));
    let mut nginx = Nginx {
        base_url: format!("http://127.0.0.1:{port}"),
        port,
        config_path,
        child,
        dir,
    };
    nginx.wait_until_listening().await.map(|()| nginx)
}

impl Nginx {
    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// nginx's error log (level info) and anything it wrote to stderr.
    pub fn logs(&self) -> String {
        let mut logs = read_lossy(&self.dir.path().join("error.log"));
        logs.push_str(&read_lossy(&self.dir.path().join("stderr.log")));
        logs
    }

    /// nginx's access log (combined format), one line per client request.
    pub fn access_log(&self) -> String {
        read_lossy(&self.dir.path().join("access.log"))
    }

    /// The generated configuration.
    pub fn config(&self) -> String {
        read_lossy(&self.config_path)
    }

    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Some(status) = self.child.try_wait().expect("poll nginx") {
                let logs = self.logs();
                if logs.contains("Address already in use") {
                    return Err(logs);
                }
                panic!(
                    "nginx exited ({status}) before listening; logs:\n{logs}\nconfig:\n{}",
                    self.config()
                );
            }
            // nginx writes its pid file only after it has bound its listening sockets, so a
            // pid file with our child's pid means the port is ours (a bare successful connect
            // could be someone else who took the port while this nginx fails to bind it).
            if self.pid_file_written() {
                let connect = tokio::net::TcpStream::connect(("127.0.0.1", self.port));
                if let Ok(Ok(_stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await
                {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "nginx did not listen on port {} within {START_DEADLINE:?}; logs:\n{}",
                    self.port,
                    self.logs()
                );
            }
        }
    }
}

impl Nginx {
    fn pid_file_written(&self) -> bool {
        fs::read_to_string(self.dir.path().join("nginx.pid"))
            .is_ok_and(|pid| pid.trim() == self.child.id().to_string())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- nginx logs ({}) ----\n{}\n---- nginx access log ----\n{}\n---- end of nginx logs ----",
                self.base_url,
                self.logs(),
                self.access_log()
            );
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
