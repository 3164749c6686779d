//! The config reader and validator (`config::parse`, what `portcullis
//! check` and start-up run on the file's text), on any text: no panic; an
//! error is a TOML syntax error with its line, or a non-empty list of
//! problems each naming a key of this config (or a required one), printed
//! one per line; no secret (`session.secret`, `session.previous_secrets`,
//! `providers.*.client_secret`) ever appears in an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::{self, ConfigError};
use toml::{Table, Value};

/// Part of every injected secret (never valid base64, so never a valid
/// key); inputs holding it are not checked for it.
const MARKER: &str = "Zq7!s3cr3t!Marker";
/// Sections that may be reported although absent from the text.
const SECTIONS: [&str; 7] = [
    "server",
    "upstream",
    "session",
    "headers",
    "access",
    "admin",
    "providers",
];

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        "EMPTY" => Some(String::new()),
        "PORT" => Some("4180".into()),
        _ => None,
    }
}

/// Checks the shape of an error and returns its printed lines.
fn check_error(e: &ConfigError, table: Option<&Table>) -> Vec<String> {
    let lines = e.lines();
    match e {
        ConfigError::Read { .. } => panic!("parse does not read files"),
        ConfigError::Syntax(m) => {
            assert!(m.starts_with("TOML syntax error"), "{m}");
            assert_eq!(lines.len(), 1);
        }
        ConfigError::Invalid(issues) => {
            assert!(!issues.is_empty(), "invalid, but no problem named");
            assert_eq!(lines.len(), issues.len());
            for (issue, line) in issues.iter().zip(&lines) {
                assert!(!issue.key.is_empty(), "a problem without a key: {line:?}");
                assert_eq!(*line, format!("{}: {}", issue.key, issue.message));
                let head_known = |k: &str| {
                    issue.key == k
                        || issue.key.starts_with(&format!("{k}."))
                        || issue.key.starts_with(&format!("{k}["))
                };
                let in_text = table.is_some_and(|t| t.keys().any(|k| head_known(k)))
                    || SECTIONS.iter().any(|k| head_known(k));
                // A key that is not a bare TOML key is shown quoted.
                assert!(
                    in_text || issue.key.starts_with('"'),
                    "{line:?} names no key of the config"
                );
            }
        }
    }
    for line in &lines {
        assert!(
            !line.chars().any(char::is_control),
            "a control character in the output: {line:?}"
        );
    }
    lines
}

/// Every secret of the config prefixed with the marker (added where
/// missing), so that any echo of a secret shows.
fn with_marked_secrets(mut table: Table) -> Table {
    let mark = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Value::String(format!("{MARKER}{s}")),
        _ => Value::String(MARKER.to_owned()),
    };
    let session = table
        .entry("session")
        .or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(s) = session {
        let secret = mark(s.get("secret"));
        s.insert("secret".into(), secret);
        let previous = match s.get("previous_secrets") {
            Some(Value::Array(items)) => items.iter().map(|v| mark(Some(v))).collect(),
            _ => vec![mark(None)],
        };
        s.insert("previous_secrets".into(), Value::Array(previous));
    }
    if let Some(Value::Table(providers)) = table.get_mut("providers") {
        for (_, p) in providers.iter_mut() {
            if let Value::Table(p) = p {
                let secret = mark(p.get("client_secret"));
                p.insert("client_secret".into(), secret);
            }
        }
    }
    table
}

fn assert_no_marker(lines: &[String]) {
    for line in lines {
        assert!(!line.contains(MARKER), "a secret in an error: {line:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let table: Option<Table> = text.parse().ok();
    if let Err(e) = config::parse(&text, &env) {
        let lines = check_error(&e, table.as_ref());
        if let (ConfigError::Syntax(_), Some(_)) = (&e, &table) {
            panic!("toml parses the text, config::parse says: {lines:?}");
        }
    }
    if text.contains(MARKER) {
        return;
    }

    // Syntax errors quote no line: a secret on the line in error, or on a
    // good line before it, is not shown.
    for wrapped in [
        format!("{text}\nsecret = \"{MARKER}\n"),
        format!("secret = \"{MARKER}\"\n{text}"),
        format!("{text}\n{MARKER}"),
    ] {
        if let Err(e) = config::parse(&wrapped, &env) {
            let table: Option<Table> = wrapped.parse().ok();
            assert_no_marker(&check_error(&e, table.as_ref()));
        }
    }

    // Secrets are never echoed by the validator.
    let Some(table) = table else { return };
    let marked = with_marked_secrets(table);
    let Ok(marked_text) = toml::to_string(&marked) else {
        return;
    };
    match config::parse(&marked_text, &env) {
        Ok(_) => panic!("a marked secret is not a valid key"),
        Err(e) => assert_no_marker(&check_error(&e, Some(&marked))),
    }
});
