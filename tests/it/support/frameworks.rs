//! Four real web frameworks as upstreams, for the request-target differential test
//! (`tests/it/frameworks.rs`, SECURITY.md row 18): Werkzeug/Flask, Express, Go's `net/http`
//! ServeMux and Tomcat 10. Their sources are in `tests/frameworks/`; each has the same four
//! routes (`home`: GET `/`; `public`: `/public/` and under it; `admin`: `/admin` and under it;
//! `private`: everything else), answers `X-Route: <route>` with the JSON body
//! `{"route", "path" (what it routed on), "raw" (the target as it received it), "method"}`,
//! listens on 127.0.0.1 on a port the kernel picks and prints `LISTENING <port> <versions>`
//! once it accepts connections.
//!
//! Each app is started at most once per test binary: the first [`require`] starts all four
//! at once, on background threads, and the tests share them. They are killed when the test
//! binary exits, however it exits: they are spawned from one thread that lives as long as the
//! process, with `PR_SET_PDEATHSIG` = SIGKILL. Their build outputs and logs are under
//! `target/tmp/frameworks/`, removed at exit.
//!
//! What each needs (`scripts/install-deps test` installs it): Werkzeug: `python3` with the
//! pinned Flask and Werkzeug (`tests/frameworks/flask/requirements.txt`, importable directly
//! or from `tests/frameworks/flask/pydeps`); Express: `node` and `npm ci` in
//! `tests/frameworks/express`; Go: `go` (Debian's `golang-go`; standard library only, built
//! with `GO111MODULE=off`, no network); Tomcat: `java`, `javac` and Debian's
//! `libtomcat10-java` jars in `/usr/share/java` (Tomcat 10.1, embedded: the same connector,
//! URI normalisation and mapper as the `tomcat10` service, without the service). Without
//! them a test is skipped with a message, or fails when `CI` is set.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, Once, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// `tests/frameworks`.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/frameworks");

/// How long an app may take to build and print its `LISTENING` line (javac and a JVM on a
/// busy 2-core machine).
const START_DEADLINE: Duration = Duration::from_secs(90);

/// The Debian `libtomcat10-java` jars embedded Tomcat needs, in `/usr/share/java`.
const TOMCAT_JARS: [&str; 10] = [
    "tomcat10-servlet-api.jar",
    "tomcat10-api.jar",
    "tomcat10-catalina.jar",
    "tomcat10-coyote.jar",
    "tomcat10-util.jar",
    "tomcat10-util-scan.jar",
    "tomcat10-juli.jar",
    "tomcat10-jni.jar",
    "tomcat10-jaspic-api.jar",
    "tomcat10-annotations-api.jar",
];
const JAVA_LIB: &str = "/usr/share/java";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Framework {
    Werkzeug,
    Express,
    Go,
    Tomcat,
}

impl Framework {
    pub const ALL: [Framework; 4] = [
        Framework::Werkzeug,
        Framework::Express,
        Framework::Go,
        Framework::Tomcat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Framework::Werkzeug => "werkzeug",
            Framework::Express => "express",
            Framework::Go => "go",
            Framework::Tomcat => "tomcat",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// `Ok` when what the app needs is installed; otherwise what is missing and how to get
    /// it. Checked once per test binary.
    pub fn available(self) -> Result<(), String> {
        static RESULTS: [OnceLock<Result<(), String>>; 4] = [const { OnceLock::new() }; 4];
        RESULTS[self.index()]
            .get_or_init(|| {
                match self {
                    Framework::Werkzeug => check_werkzeug(),
                    Framework::Express => check_express(),
                    Framework::Go => check_go(),
                    Framework::Tomcat => check_tomcat(),
                }
                .map_err(|why| format!("{why} (`scripts/install-deps test` installs it)"))
            })
            .clone()
    }
}

fn run_ok(command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if !output.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn flask_dir() -> PathBuf {
    Path::new(DIR).join("flask")
}

/// `python3` with `tests/frameworks/flask/pydeps` first on its path.
fn python() -> Command {
    let mut command = Command::new("python3");
    let pydeps = flask_dir().join("pydeps");
    let path = match std::env::var_os("PYTHONPATH") {
        Some(old) if !old.is_empty() => {
            let mut p = pydeps.into_os_string();
            p.push(":");
            p.push(old);
            p
        }
        _ => pydeps.into_os_string(),
    };
    command
        .env("PYTHONPATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    command
}

/// The pinned `Name==version` lines of requirements.txt.
fn pinned_python(name: &str) -> Option<String> {
    let text = fs::read_to_string(flask_dir().join("requirements.txt")).ok()?;
    text.lines().find_map(|line| {
        let (n, v) = line.trim().split_once("==")?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn check_werkzeug() -> Result<(), String> {
    let versions = run_ok(python().args([
        "-c",
        "from importlib.metadata import version; import flask, werkzeug; \
         print(version('flask'), version('werkzeug'))",
    ]))
    .map_err(|e| format!("python3 with Flask and Werkzeug is unavailable: {e}"))?;
    let mut found = versions.split_whitespace();
    for name in ["Flask", "Werkzeug"] {
        let want = pinned_python(name).unwrap_or_default();
        let have = found.next().unwrap_or_default();
        if have != want {
            return Err(format!(
                "{name} {have} is importable, the pinned {want} is expected \
                 (tests/frameworks/flask/requirements.txt)"
            ));
        }
    }
    Ok(())
}

fn check_express() -> Result<(), String> {
    run_ok(Command::new("node").arg("--version"))?;
    let dir = Path::new(DIR).join("express");
    let version = |path: &Path, pointer: &str| -> Option<String> {
        let json: Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
        json.pointer(pointer)?.as_str().map(str::to_owned)
    };
    let want = version(&dir.join("package.json"), "/dependencies/express").unwrap_or_default();
    let have = version(&dir.join("node_modules/express/package.json"), "/version");
    match have {
        Some(have) if have == want => Ok(()),
        Some(have) => Err(format!(
            "express {have} is installed in tests/frameworks/express, {want} is pinned: run \
             `npm ci --prefix tests/frameworks/express`"
        )),
        None => Err(
            "express is not installed: run `npm ci --prefix tests/frameworks/express`".to_owned(),
        ),
    }
}

fn check_go() -> Result<(), String> {
    run_ok(Command::new("go").arg("version")).map(drop)
}

fn check_tomcat() -> Result<(), String> {
    run_ok(Command::new("java").arg("-version"))?;
    run_ok(Command::new("javac").arg("-version"))?;
    for jar in TOMCAT_JARS {
        let path = Path::new(JAVA_LIB).join(jar);
        if !path.exists() {
            return Err(format!(
                "{} is missing (Debian package libtomcat10-java)",
                path.display()
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The running apps

/// A running framework app, shared by the tests of this binary.
pub struct App {
    pub framework: Framework,
    pub port: u16,
    /// `http://127.0.0.1:{port}`
    pub base_url: String,
    /// What its `LISTENING` line says after the port, e.g. `werkzeug 3.1.8 flask 3.1.3`.
    pub versions: String,
    /// How long building and starting it took.
    pub startup: Duration,
    child: Mutex<Child>,
    dir: PathBuf,
}

impl App {
    /// Everything it wrote to stderr so far (request logs, stack traces).
    pub fn logs(&self) -> String {
        fs::read(self.dir.join("stderr.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// `None` while it runs.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .ok()
            .flatten()
    }
}

static APPS: [OnceLock<Result<App, String>>; 4] = [const { OnceLock::new() }; 4];

/// The running app of `framework`, started on first use (all four at once, see the module
/// doc). `None` when its prerequisites are missing: the test should return (skipped); with
/// `CI` set this panics instead. Panics when the app is installed but does not start.
pub fn require(framework: Framework, test: &str) -> Option<&'static App> {
    if let Err(why) = framework.available() {
        if super::oidc_peer::in_ci() {
            panic!(
                "{test}: the {} test app is required in CI but unavailable: {why}",
                framework.name()
            );
        }
        eprintln!(
            "SKIPPED {test}: the {} test app is unavailable: {why} (with CI=true this fails)",
            framework.name()
        );
        return None;
    }
    start_all_in_background();
    match APPS[framework.index()].get_or_init(|| start(framework)) {
        Ok(app) => Some(app),
        Err(why) => panic!("{test}: {why}"),
    }
}

/// Starts every available app on its own thread, once: startup (javac, a JVM, go build)
/// then overlaps, and a test waiting for its app blocks in [`OnceLock::get_or_init`].
fn start_all_in_background() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for framework in Framework::ALL {
            if framework.available().is_ok() {
                std::thread::Builder::new()
                    .name(format!("start-{}", framework.name()))
                    .spawn(move || {
                        let _ = APPS[framework.index()].get_or_init(|| start(framework));
                    })
                    .expect("spawn a starter thread");
            }
        }
    });
}

/// `target/tmp/frameworks/run-{pid}`: this test binary's build outputs and logs, removed
/// when it exits; those of test binaries that were killed are removed by the next one.
fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("frameworks");
        let pid = std::process::id();
        for entry in fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let other = name.to_str().and_then(|n| n.strip_prefix("run-"));
            if let Some(other) = other.and_then(|p| p.parse::<u32>().ok()) {
                if other != pid && !Path::new(&format!("/proc/{other}")).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = parent.join(format!("run-{pid}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create target/tmp/frameworks/run-{pid}");
        extern "C" fn remove_run_dir() {
            if let Some(dir) = DIR.get() {
                let _ = fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a plain function without arguments, run by exit(3).
        unsafe {
            libc::atexit(remove_run_dir);
        }
        dir
    })
}

fn start(framework: Framework) -> Result<App, String> {
    let started = std::time::Instant::now();
    let dir = run_dir().join(framework.name());
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut command = match framework {
        Framework::Werkzeug => {
            let mut c = python();
            c.arg(flask_dir().join("app.py"));
            c
        }
        Framework::Express => {
            let mut c = Command::new("node");
            c.arg(Path::new(DIR).join("express/server.js"))
                .env_remove("NODE_OPTIONS")
                .env("NODE_ENV", "production");
            c
        }
        Framework::Go => Command::new(build_go(&dir)?),
        Framework::Tomcat => tomcat_command(&dir)?,
    };
    let stderr = fs::File::create(dir.join("stderr.log"))
        .map_err(|e| format!("create {}/stderr.log: {e}", dir.display()))?;
    command
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = spawn_tied(command)
        .map_err(|e| format!("cannot start the {} app: {e}", framework.name()))?;

    // The first `LISTENING` line, read on a thread that then drains stdout.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name(format!("{}-stdout", framework.name()))
        .spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("LISTENING ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line);
                    }
                }
            }
        })
        .expect("spawn a stdout reader");
    let failed = |what: String, child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
        let logs = fs::read(dir.join("stderr.log")).unwrap_or_default();
        format!(
            "the {} app {what}; its stderr:\n{}",
            framework.name(),
            String::from_utf8_lossy(&logs)
        )
    };
    let line = match rx.recv_timeout(START_DEADLINE) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(failed(
                format!("exited ({status}) before it listened"),
                &mut child,
            ));
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(failed(
                format!("did not listen within {START_DEADLINE:?}"),
                &mut child,
            ));
        }
    };
    let mut words = line["LISTENING ".len()..].splitn(2, ' ');
    let Some(port) = words.next().and_then(|p| p.parse::<u16>().ok()) else {
        return Err(failed(format!("printed a bad line {line:?}"), &mut child));
    };
    Ok(App {
        framework,
        port,
        base_url: format!("http://127.0.0.1:{port}"),
        versions: words.next().unwrap_or_default().trim().to_owned(),
        startup: started.elapsed(),
        child: Mutex::new(child),
        dir,
    })
}

/// `go build -o binary` in `source` (add the files): GOPATH mode, so no go.mod
/// and no module download, caches in `scratch`, nothing from the network.
pub fn go_build(source: &Path, scratch: &Path, binary: &Path) -> Command {
    let mut command = Command::new("go");
    command
        .args(["build", "-o"])
        .arg(binary)
        .current_dir(source)
        .env("GO111MODULE", "off")
        .env("GOCACHE", scratch.join("gocache"))
        .env("GOPATH", scratch.join("gopath"))
        .env("GOENV", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local");
    command
}

/// `go build` of `tests/frameworks/go/main.go` into `dir/server`: GOPATH mode (no go.mod,
/// no module download), caches in `dir`, nothing from the network. Cgo stays as installed:
/// with `CGO_ENABLED=0` Go 1.19 rebuilds its standard library (10 s instead of 1).
fn build_go(dir: &Path) -> Result<PathBuf, String> {
    let binary = dir.join("server");
    let mut command = go_build(&Path::new(DIR).join("go"), dir, &binary);
    command.arg("main.go");
    let output = run_tied(command).map_err(|e| format!("cannot run go build: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "go build of tests/frameworks/go/main.go failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(binary)
}

/// javac of `tests/frameworks/tomcat/*.java` into `dir/classes`, and the `java` command that
/// runs embedded Tomcat with `tests/frameworks/tomcat/webapp` as its root context.
fn tomcat_command(dir: &Path) -> Result<Command, String> {
    let source = Path::new(DIR).join("tomcat");
    let jars: Vec<String> = TOMCAT_JARS
        .iter()
        .map(|jar| format!("{JAVA_LIB}/{jar}"))
        .collect();
    let classes = dir.join("classes");
    let mut command = Command::new("javac");
    command
        .args(["-nowarn", "-encoding", "UTF-8", "-d"])
        .arg(&classes)
        .arg("-cp")
        .arg(jars.join(":"))
        .args(["Main.java", "RouteServlet.java"])
        .current_dir(&source)
        .env_remove("JAVA_TOOL_OPTIONS")
        .env_remove("CLASSPATH");
    let output = run_tied(command).map_err(|e| format!("cannot run javac: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "javac of tests/frameworks/tomcat failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut classpath = vec![classes.display().to_string()];
    classpath.extend(jars);
    let mut command = Command::new("java");
    command
        .args(["-XX:TieredStopAtLevel=1", "-Xmx256m", "-cp"])
        .arg(classpath.join(":"))
        .arg("Main")
        .arg(source.join("webapp"))
        .arg(dir.join("base"))
        .env_remove("JAVA_TOOL_OPTIONS")
        .env_remove("CLASSPATH")
        .env_remove("CATALINA_HOME")
        .env_remove("CATALINA_BASE");
    Ok(command)
}

/// Runs `command` to its end, killed with the test binary like the apps (see [`spawn_tied`]).
fn run_tied(mut command: Command) -> std::io::Result<std::process::Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn_tied(command)?.wait_with_output()
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as the test binary, with the parent-death
/// signal set to SIGKILL: the app dies with the test binary even when no destructor runs
/// (statics are never dropped, and a killed test binary runs none).
pub fn spawn_tied(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("framework-spawner".to_owned())
            .spawn(move || {
                // Never returns: the static sender is never dropped.
                for (mut command, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut command));
                }
            })
            .expect("spawn the spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

fn spawn_with_death_signal(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The test binary may have exited before prctl.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the test binary has exited"));
            }
            Ok(())
        });
    }
    command.spawn()
}
