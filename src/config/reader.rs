//! A walker over the parsed TOML tree that collects every problem (with its
//! key) instead of stopping at the first, expands `${VAR}` in strings and
//! reports keys nobody asked for as unknown.

use std::borrow::Cow;
use std::time::Duration;

use toml::{Table, Value};

/// One problem in the configuration, named by its dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted path of the key, e.g. `session.secret` or `providers.google.client_id`.
    pub key: String,
    /// What is wrong, in words a person can act on. Never contains a secret.
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Where environment variables come from (the process environment, or a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Collects issues while values are taken out of tables.
pub struct Reader<'e> {
    env: &'e dyn Env,
    pub issues: Vec<Issue>,
}

/// A table being read: keys are removed as they are taken, and whatever is
/// left at `finish` is reported as unknown.
pub struct Section {
    path: String,
    table: Table,
}

impl Section {
    pub fn new(path: impl Into<String>, table: Table) -> Self {
        Section {
            path: path.into(),
            table,
        }
    }

    /// The dotted path of `key` in this section, as problems name it.
    pub fn key(&self, key: &str) -> String {
        let key = display_key(key);
        if self.path.is_empty() {
            key.into_owned()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn contains(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Is the value at `key` a list?
    pub fn is_array(&self, key: &str) -> bool {
        matches!(self.table.get(key), Some(Value::Array(_)))
    }
}

/// A key as problems show it: as is when it is a bare TOML key, else
/// quoted with its special characters escaped, so that an empty key, a key
/// with a dot or a newline is still visibly named, on one line.
fn display_key(key: &str) -> Cow<'_, str> {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    }
}

impl<'e> Reader<'e> {
    pub fn new(env: &'e dyn Env) -> Self {
        Reader {
            env,
            issues: Vec::new(),
        }
    }

    pub fn issue(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Reports every key that was not taken.
    pub fn finish(&mut self, section: Section) {
        for key in section.table.keys() {
            let full = section.key(key);
            self.issue(full, "unknown key");
        }
    }

    /// Takes a key without reading it (for a key that is refused whatever
    /// its value, so that it is not also reported as unknown).
    pub fn discard(&mut self, section: &mut Section, key: &str) {
        section.table.remove(key);
    }

    /// A sub-table; a missing one is an empty section.
    pub fn table(&mut self, section: &mut Section, key: &str) -> Option<Section> {
        let path = section.key(key);
        match section.table.remove(key) {
            None => None,
            Some(Value::Table(t)) => Some(Section::new(path, t)),
            Some(other) => {
                self.issue(path, format!("must be a table, not {}", other.type_str()));
                None
            }
        }
    }

    /// A sub-table that defaults to empty when absent.
    pub fn table_or_empty(&mut self, section: &mut Section, key: &str) -> Section {
        let path = section.key(key);
        self.table(section, key)
            .unwrap_or_else(|| Section::new(path, Table::new()))
    }

    /// Sub-tables of a table, in file order, e.g. `[providers.*]`.
    pub fn tables(&mut self, section: &mut Section) -> Vec<(String, Section)> {
        let keys: Vec<String> = section.table.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            if let Some(t) = self.table(section, &key) {
                out.push((key, t));
            }
        }
        out
    }

    /// An array of tables (`[[routes]]`), each a section named `key[i]`.
    pub fn array_of_tables(&mut self, section: &mut Section, key: &str) -> Vec<Section> {
        let path = section.key(key);
        match section.table.remove(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::Table(t) => out.push(Section::new(format!("{path}[{i}]"), t)),
                        other => self.issue(
                            format!("{path}[{i}]"),
                            format!("must be a table, not {}", other.type_str()),
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.issue(
                    path,
                    format!(
                        "must be a list of tables ([[{key}]] blocks), not {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }

    /// A string, with `${VAR}` expanded.
    pub fn string(&mut self, section: &mut Section, key: &str) -> Option<String> {
        let path = section.key(key);
        match section.table.remove(key) {
            None => None,
            Some(Value::String(s)) => self.expand(&path, &s),
            Some(other) => {
                self.issue(path, format!("must be a string, not {}", other.type_str()));
                None
            }
        }
    }

    /// A string that must be present.
    pub fn required_string(&mut self, section: &mut Section, key: &str) -> Option<String> {
        let present = section.contains(key);
        let value = self.string(section, key);
        if !present {
            self.issue(section.key(key), "is required");
        }
        value
    }

    pub fn bool(&mut self, section: &mut Section, key: &str) -> Option<bool> {
        let path = section.key(key);
        match section.table.remove(key) {
            None => None,
            Some(Value::Boolean(b)) => Some(b),
            Some(Value::String(s)) => match self.expand(&path, &s)?.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => {
                    self.issue(path, "must be true or false");
                    None
                }
            },
            Some(other) => {
                self.issue(
                    path,
                    format!("must be true or false, not {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A positive integer (also accepted as a string, for `${VAR}`).
    pub fn positive_integer(&mut self, section: &mut Section, key: &str) -> Option<usize> {
        let path = section.key(key);
        let n = match section.table.remove(key) {
            None => return None,
            Some(Value::Integer(n)) => n,
            Some(Value::String(s)) => match self.expand(&path, &s)?.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    self.issue(path, "must be a whole number");
                    return None;
                }
            },
            Some(other) => {
                self.issue(
                    path,
                    format!("must be a whole number, not {}", other.type_str()),
                );
                return None;
            }
        };
        match usize::try_from(n) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.issue(path, "must be a whole number greater than 0");
                None
            }
        }
    }

    /// A list of strings, each `${VAR}`-expanded.
    pub fn strings(&mut self, section: &mut Section, key: &str) -> Option<Vec<String>> {
        let path = section.key(key);
        match section.table.remove(key) {
            None => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match item {
                        Value::String(s) => {
                            if let Some(v) = self.expand(&item_path, &s) {
                                out.push(v);
                            }
                        }
                        other => self.issue(
                            item_path,
                            format!("must be a string, not {}", other.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            Some(other) => {
                self.issue(
                    path,
                    format!("must be a list of strings, not {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A duration such as "90s", "15m", "12h", "7d" (or combined, "1h30m").
    pub fn duration(&mut self, section: &mut Section, key: &str) -> Option<Duration> {
        let path = section.key(key);
        let s = self.string(section, key)?;
        match parse_duration(&s) {
            Some(d) => Some(d),
            None => {
                self.issue(
                    path,
                    format!("{s:?} is not a duration; use a number and a unit (ms, s, m, h, d), e.g. \"90s\", \"15m\", \"7d\""),
                );
                None
            }
        }
    }

    /// Expands `${VAR}` (and `$$` to a literal `$`). A missing variable is an issue.
    pub fn expand(&mut self, path: &str, s: &str) -> Option<String> {
        if !s.contains('$') {
            return Some(s.to_owned());
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        let mut ok = true;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    self.issue(path, "has an unclosed \"${\"");
                    return None;
                };
                let name = &body[..end];
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    // Not echoed: in a secret, the text between the braces
                    // is part of the secret.
                    self.issue(
                        path,
                        "has an invalid environment variable reference: use ${NAME} (letters, digits and '_', not starting with a digit), or $$ for a literal $",
                    );
                    ok = false;
                } else {
                    match self.env.var(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            self.issue(path, format!("environment variable {name} is not set"));
                            ok = false;
                        }
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        ok.then_some(out)
    }
}

/// Parses "90s", "15m", "12h", "7d", "500ms", "1h30m". Zero is allowed ("0s").
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86400)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(43200)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604800)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in [
            "",
            "7",
            "d",
            "7 days",
            "-1s",
            "1.5h",
            "1w",
            "s7",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion() {
        let mut r = Reader::new(&env);
        assert_eq!(r.expand("k", "x${A}y").as_deref(), Some("xalphay"));
        assert_eq!(r.expand("k", "${A}${EMPTY}").as_deref(), Some("alpha"));
        assert_eq!(r.expand("k", "$$${A}").as_deref(), Some("$alpha"));
        assert_eq!(r.expand("k", "cost $5").as_deref(), Some("cost $5"));
        assert!(r.issues.is_empty());
        assert_eq!(r.expand("k", "${MISSING}"), None);
        assert_eq!(r.issues[0].key, "k");
        assert!(r.issues[0].message.contains("MISSING"));
        assert_eq!(r.expand("k2", "${A"), None);
        assert_eq!(r.expand("k3", "${1A}"), None);
        assert_eq!(r.issues.len(), 3);
    }

    /// Found by the `config` fuzz target: an invalid reference was echoed
    /// as written, control characters included, and in a secret the text
    /// between the braces is part of the secret.
    #[test]
    fn invalid_reference_is_not_echoed() {
        let mut r = Reader::new(&env);
        assert_eq!(r.expand("session.secret", "pa${ss\twor}d"), None);
        assert_eq!(r.issues.len(), 1);
        let line = r.issues[0].to_string();
        assert!(line.starts_with("session.secret: "), "{line}");
        assert!(!line.contains("wor") && !line.contains('\t'), "{line}");
    }

    /// Found by the `config` fuzz target: an empty key was reported as
    /// ": unknown key", and a key with a newline split the report's line.
    #[test]
    fn every_problem_names_a_visible_key_on_one_line() {
        let table: Table =
            "\"\" = 1\n\"a\\nb\" = 2\n\"a.b\" = 3\nplain_key-1 = 4\n[\"x y\"]\nz = 5\n"
                .parse()
                .unwrap();
        let mut r = Reader::new(&env);
        let mut root = Section::new("", table);
        let sub = r.table(&mut root, "x y").unwrap();
        r.finish(sub);
        r.finish(root);
        let lines: Vec<String> = r.issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "\"x y\".z: unknown key",
                "\"\": unknown key",
                "\"a\\nb\": unknown key",
                "\"a.b\": unknown key",
                "plain_key-1: unknown key",
            ]
        );
    }

    #[test]
    fn expanded_values_are_not_expanded_again() {
        let e = |n: &str| (n == "X").then(|| "${Y}".to_string());
        let mut r = Reader::new(&e);
        assert_eq!(r.expand("k", "${X}").as_deref(), Some("${Y}"));
    }
}
