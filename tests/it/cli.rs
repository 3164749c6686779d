//! The command line: `check`, `secret`, `--version`, and start-up with a bad config.

use std::process::Output;

use base64::Engine as _;

use crate::support::harness::command;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run portcullis")
}

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[test]
fn secret_prints_32_random_bytes_in_base64() {
    let a = run(&["secret"], &[]);
    let b = run(&["secret"], &[]);
    assert!(a.status.success());
    let a = String::from_utf8(a.stdout).unwrap();
    let b = String::from_utf8(b.stdout).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .expect("base64");
    assert_eq!(raw.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn version_and_help() {
    let v = run(&["--version"], &[]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    let h = run(&["--help"], &[]);
    let help = String::from_utf8_lossy(&h.stdout);
    for word in ["check", "secret", "run", "--config"] {
        assert!(help.contains(word), "{word} missing from help:\n{help}");
    }
}

/// The example configs shipped in `config/` pass `check` (with their variables set).
#[test]
fn shipped_configs_pass_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let env = [
        ("PORTCULLIS_PUBLIC_URL", "https://app.example.com"),
        ("PORTCULLIS_SESSION_SECRET", SECRET),
        ("GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com"),
        ("GOOGLE_CLIENT_SECRET", "gsecret"),
        ("DEMO_LISTEN", "127.0.0.1:4180"),
        ("DEMO_PUBLIC_URL", "http://127.0.0.1:4180"),
        ("DEMO_UPSTREAM_URL", "http://127.0.0.1:8080"),
        ("DEMO_SESSION_SECRET", SECRET),
        ("DEMO_GOOGLE_ISSUER", "http://127.0.0.1:9000"),
        ("DEMO_X", "http://127.0.0.1:9001"),
        ("DEMO_FACEBOOK", "http://127.0.0.1:9002"),
        ("KEYCLOAK_CLIENT_SECRET", "k"),
        ("AUTH0_CLIENT_ID", "a"),
        ("AUTH0_CLIENT_SECRET", "a"),
        ("ENTRA_TENANT_ID", "00000000-0000-0000-0000-000000000000"),
        ("ENTRA_CLIENT_ID", "e"),
        ("ENTRA_CLIENT_SECRET", "e"),
    ];
    let mut files = vec![
        "config/portcullis.toml".to_owned(),
        "config/demo.toml".to_owned(),
    ];
    for entry in std::fs::read_dir(format!("{root}/config/examples")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".toml") {
            files.push(format!("config/examples/{name}"));
        }
    }
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let path = format!("{root}/{file}");
        let out = run(&["check", "--config", &path], &env);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // PORTCULLIS_CONFIG is honoured.
    let mut env2 = env.to_vec();
    let path = format!("{root}/config/portcullis.toml");
    env2.push(("PORTCULLIS_CONFIG", &path));
    assert!(run(&["check"], &env2).status.success());
}

const BAD: &str = r#"
[server]
listen = "somewhere"
public_url = "app.example.com"
threads = 0

[upstream]
url = "ftp://10.0.0.1"
connect_timeout = "soon"

[session]
secret = "c2hvcnQ="
same_site = "loose"
cookie_name = "a b"

[headers]
email = "X User"

[providers.google]
client_id = "x"
client_secret = "${NOT_SET_ANYWHERE}"
issuer = "http://accounts.example.com"
clientsecret = "typo"

[providers.acme]
client_id = "y"

[sesion]
"#;

/// At least ten distinct mistakes, each named by its key, all at once;
/// `check` and a start-up fail the same way, without a panic or a secret.
#[test]
fn bad_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, BAD).unwrap();
    let path = path.to_str().unwrap();
    let check = run(&["check", "--config", path], &[]);
    assert_eq!(check.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    for key in [
        "server.listen",
        "server.public_url",
        "server.threads",
        "upstream.url",
        "upstream.connect_timeout",
        "session.secret",
        "session.same_site",
        "session.cookie_name",
        "headers.email",
        "providers.google.client_secret",
        "providers.google.issuer",
        "providers.google.clientsecret",
        "providers.acme.kind",
        "sesion",
    ] {
        assert!(
            stderr.contains(&format!("- {key}: ")),
            "{key} not reported:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("NOT_SET_ANYWHERE"),
        "names the missing variable"
    );
    assert!(!stderr.contains("panicked"));
    assert!(!stderr.contains("typo"), "a value was echoed:\n{stderr}");

    for args in [vec!["--config", path], vec!["run", "--config", path]] {
        let start = run(&args, &[]);
        assert_eq!(start.status.code(), Some(1), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&start.stderr), stderr, "{args:?}");
    }

    let missing = run(&["check", "--config", "/nonexistent/portcullis.toml"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/portcullis.toml"));
}

/// Valid but risky settings: `check` still succeeds and names each one by
/// its key; a careful configuration gets no warning.
#[test]
fn check_warns_about_risky_settings_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let risky = |public_url: &str, access: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:4180\"\npublic_url = \"{public_url}\"\n\n[upstream]\nurl = \"http://127.0.0.1:8080\"\n\n[session]\nsecret = \"{SECRET}\"\n\n[providers.google]\nclient_id = \"id\"\nclient_secret = \"s\"\n\n[access]\n{access}\n"
        )
    };
    let path = dir.path().join("risky.toml");
    std::fs::write(
        &path,
        risky("http://app.example.com", "skip_auth = [\"/public\"]"),
    )
    .unwrap();
    let out = run(&["check", "--config", path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "warnings are not errors");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for key in ["server.public_url", "access.skip_auth[0]", "access"] {
        assert!(
            stdout.contains(&format!("warning: {key}: ")),
            "{key} not warned about:\n{stdout}"
        );
    }
    assert!(!stdout.contains(SECRET));

    let path = dir.path().join("careful.toml");
    std::fs::write(
        &path,
        risky(
            "https://app.example.com",
            "allowed_email_domains = [\"example.com\"]\nskip_auth = [\"^/public/\"]",
        ),
    )
    .unwrap();
    let out = run(&["check", "--config", path.to_str().unwrap()], &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("warning"), "{stdout}");
}

/// `check --explain` prints the rule table; with a user and a request it says which rule
/// applies and why, with the gate's own verdict. Secrets never appear.
#[test]
fn check_explain_prints_the_rules_and_judges_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:8080"
[session]
secret = "{SECRET}"
[providers.google]
client_id = "id"
client_secret = "google-secret-value"
[providers.acme]
kind = "oidc"
issuer = "https://sso.acme.example"
client_id = "id"
client_secret = "acme-secret-value"
groups_claim = "groups"
[access]
allowed_email_domains = ["example.com"]
[[routes]]
path = "^/admin/"
allowed_groups = ["admins"]
[[routes]]
path = "^/status$"
public = true
"#
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let out = run(&["check", "--config", config, "--explain"], &[]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    for text in [
        "routes[0]",
        "path ^/admin/, any host, any method",
        "groups admins",
        "routes[1]",
        "[access]",
        "emails at example.com",
    ] {
        assert!(table.contains(text), "{text:?} missing:\n{table}");
    }

    let ask = |user: &str, email: &str, groups: &str, method: &str, target: &str| {
        let out = run(
            &[
                "check",
                "--config",
                config,
                "--explain",
                "--user",
                user,
                "--email",
                email,
                "--groups",
                groups,
                method,
                target,
            ],
            &[],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let yes = ask(
        "acme:1",
        "root@ops.example",
        "staff,admins",
        "GET",
        "/%61dmin/x",
    );
    assert!(yes.contains("judged:   /admin/x"), "{yes}");
    assert!(yes.contains("routes[0]"), "{yes}");
    assert!(yes.contains("allowed_groups has \"admins\""), "{yes}");
    assert!(yes.contains("verdict:  allowed"), "{yes}");
    let no = ask("google:2", "a@example.com", "staff", "GET", "/admin/x");
    assert!(no.contains("verdict:  403"), "{no}");
    let fallback = ask("google:2", "a@example.com", "", "POST", "/reports");
    assert!(
        fallback.contains("[access]: no route applies"),
        "{fallback}"
    );
    assert!(
        fallback.contains("allowed_email_domains has \"example.com\""),
        "{fallback}"
    );
    let refused = ask("google:2", "a@example.com", "", "GET", "/admin/%2e%2e/x");
    assert!(refused.contains("400 refused"), "{refused}");
    for text in [&table.to_string(), &yes, &no] {
        assert!(
            !text.contains("secret-value") && !text.contains(SECRET),
            "{text}"
        );
    }

    // Request options without --explain are refused by the argument parser.
    let out = run(&["check", "--config", config, "--user", "google:1"], &[]);
    assert!(!out.status.success());
}
