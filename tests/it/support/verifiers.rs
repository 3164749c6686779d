//! Independent verifiers of the identity assertion: Python's PyJWT
//! (tests/verifiers/verify.py), Node's `jose` (tests/verifiers/verify.mjs)
//! and Go's standard library (tests/verifiers/go, the README's Go code),
//! each run once per batch of tokens, fetching the JWK Set from Portcullis
//! itself. Installed by `scripts/install-deps test` (pip --target
//! tests/verifiers/pydeps, npm ci in tests/verifiers, golang-go).
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verifier {
    /// PyJWT (PyPI), with `cryptography` for ES256.
    PyJwt,
    /// `jose` (npm).
    Jose,
    /// Go's crypto/ecdsa, no third-party module (tests/verifiers/go).
    Go,
}

/// `go build` of tests/verifiers/go once per test binary, in GOPATH mode
/// (no module download), caches under Cargo's target temp dir.
fn go_binary() -> Result<PathBuf, String> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-verifier");
            let binary = out.join("verify");
            let output = super::frameworks::go_build(&dir().join("go"), &out, &binary)
                .args(["main.go", "assertion.go"])
                .output()
                .map_err(|e| format!("cannot run go build (Debian package golang-go): {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "go build of tests/verifiers/go failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(binary)
        })
        .clone()
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifiers")
}

impl Verifier {
    pub const ALL: [Verifier; 3] = [Verifier::PyJwt, Verifier::Jose, Verifier::Go];

    pub fn name(self) -> &'static str {
        match self {
            Verifier::PyJwt => "PyJWT",
            Verifier::Jose => "jose",
            Verifier::Go => "Go",
        }
    }

    fn command(self) -> Command {
        let mut command = match self {
            Verifier::PyJwt => {
                let mut c = Command::new("python3");
                c.arg(dir().join("verify.py"));
                c
            }
            Verifier::Jose => {
                let mut c = Command::new("node");
                c.arg(dir().join("verify.mjs"));
                c
            }
            Verifier::Go => Command::new(go_binary().expect("checked by available()")),
        };
        command.current_dir(dir());
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

    /// `Err(why)` when the verifier cannot run here.
    fn available(self) -> Result<(), String> {
        let probe = match self {
            Verifier::PyJwt => Command::new("python3")
                .arg("-c")
                .arg("import sys; sys.path.insert(0, 'pydeps'); import jwt, cryptography")
                .current_dir(dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status(),
            Verifier::Jose => Command::new("node")
                .arg("-e")
                .arg("import('jose').then(() => process.exit(0), () => process.exit(1))")
                .current_dir(dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status(),
            Verifier::Go => return go_binary().map(drop),
        };
        match probe {
            Ok(s) if s.success() => Ok(()),
            Ok(_) => Err(format!(
                "{} is not installed in tests/verifiers (run scripts/install-deps test)",
                self.name()
            )),
            Err(e) => Err(format!("cannot run {}: {e}", self.name())),
        }
    }

    /// All verifiers, or `None` (the test returns: skipped) when one is
    /// missing; with `CI` set a missing one is a panic, never a skip.
    pub fn require(test: &str) -> Option<[Verifier; 3]> {
        for v in Verifier::ALL {
            if let Err(why) = v.available() {
                if super::oidc_peer::in_ci() {
                    panic!("{test}: the {} verifier is required in CI: {why}", v.name());
                }
                eprintln!("SKIPPED {test}: {why} (with CI=true this fails)");
                return None;
            }
        }
        Some(Verifier::ALL)
    }

    /// Verifies each `(seconds_ahead, token)` with the keys of `jwks_url`,
    /// expecting `issuer` and `audience`, the clock moved `seconds_ahead`;
    /// one JSON answer per token: `{"ok": true, "claims": {...}}` or
    /// `{"ok": false, "error": "..."}`.
    pub async fn verify(
        self,
        jwks_url: &str,
        issuer: &str,
        audience: &str,
        cases: &[(i64, &str)],
    ) -> Vec<Value> {
        let mut command = self.command();
        command
            .args([jwks_url, issuer, audience])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input: String = cases
            .iter()
            .map(|(seconds, token)| format!("{seconds} {token}\n"))
            .collect();
        let name = self.name();
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("spawn the verifier");
            let mut stdin = child.stdin.take().expect("verifier stdin");
            stdin.write_all(input.as_bytes()).expect("write the tokens");
            drop(stdin);
            child.wait_with_output().expect("verifier output")
        })
        .await
        .expect("verifier thread");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answers: Vec<Value> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(
            output.status.success() && answers.len() == cases.len(),
            "{name} verifier failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        answers
    }
}
