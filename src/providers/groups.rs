//! Groups and roles from an OpenID Connect provider's claims
//! (`groups_claim`), and Entra ID's "groups overage" marker. Pure: claims
//! in, a [`Lookup`] out.
//!
//! The claim path has one key per level: `["groups"]`,
//! `["realm_access", "roles"]` (Keycloak), `["https://acme.example/roles"]`
//! (an Auth0 namespaced claim, a single key holding dots).

use serde_json::{Map, Value};

/// A group name longer than this is left out (never cut: a cut name may
/// be another group's).
pub const MAX_GROUP_LEN: usize = 256;
/// Groups beyond this many are left out (with a warning).
pub const MAX_GROUPS: usize = 4096;

/// What the claims say about the user's groups.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The claim is there. `groups` are its strings in order, without
    /// duplicates, empty strings or over-long ones; `ignored` counts the
    /// values that were not strings (or were left out).
    Found { groups: Vec<String>, ignored: usize },
    /// No such claim.
    Absent,
    /// No such claim, but the token says it lives elsewhere: Entra ID's
    /// groups overage (`_claim_names` naming the claim, with
    /// `_claim_sources`; or `hasgroups: true` in implicit-flow tokens).
    Overage,
}

/// Looks `path` up in `claims`.
pub fn lookup(claims: &Map<String, Value>, path: &[String]) -> Lookup {
    let Some((first, rest)) = path.split_first() else {
        return Lookup::Absent;
    };
    let mut value = claims.get(first);
    for key in rest {
        value = value.and_then(|v| v.as_object()).and_then(|o| o.get(key));
    }
    match value {
        // `null` is no claim (OIDC Core §5.3.2 lets providers send it).
        None | Some(Value::Null) => {
            if overage(claims, first) {
                Lookup::Overage
            } else {
                Lookup::Absent
            }
        }
        Some(one @ Value::String(_)) => collect(std::slice::from_ref(one)),
        Some(Value::Array(items)) => collect(items),
        Some(_) => Lookup::Found {
            groups: Vec::new(),
            ignored: 1,
        },
    }
}

fn collect(items: &[Value]) -> Lookup {
    let mut groups: Vec<String> = Vec::new();
    let mut ignored = 0;
    for item in items {
        match item {
            Value::String(s)
                if !s.is_empty() && s.len() <= MAX_GROUP_LEN && groups.len() < MAX_GROUPS =>
            {
                if !groups.contains(s) {
                    groups.push(s.clone());
                }
            }
            Value::String(s) if s.is_empty() => {}
            _ => ignored += 1,
        }
    }
    Lookup::Found { groups, ignored }
}

/// Entra ID leaves a claim out when it would be too large (more than 200
/// groups in a JWT) and names where to fetch it instead: `_claim_names`
/// (OIDC Core §5.6.2, distributed claims) maps the claim to a source in
/// `_claim_sources`. Implicit-flow tokens say `hasgroups: true` instead.
fn overage(claims: &Map<String, Value>, first: &str) -> bool {
    let distributed = claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|names| names.contains_key(first));
    let hasgroups = first == "groups" && claims.get("hasgroups") == Some(&Value::Bool(true));
    distributed || hasgroups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn found(groups: &[&str], ignored: usize) -> Lookup {
        Lookup::Found {
            groups: groups.iter().map(|s| (*s).to_owned()).collect(),
            ignored,
        }
    }

    #[test]
    fn table() {
        let auth0 = "https://acme.example/roles";
        let cases: Vec<(Value, Vec<String>, Lookup)> = vec![
            (
                json!({"groups": ["a", "b"]}),
                path(&["groups"]),
                found(&["a", "b"], 0),
            ),
            (
                json!({"groups": "solo"}),
                path(&["groups"]),
                found(&["solo"], 0),
            ),
            (json!({"groups": []}), path(&["groups"]), found(&[], 0)),
            (
                json!({"groups": ["a", 7, {"x": 1}, null, "b", "a", ""]}),
                path(&["groups"]),
                found(&["a", "b"], 3),
            ),
            (json!({"groups": 7}), path(&["groups"]), found(&[], 1)),
            (
                json!({"groups": {"a": true}}),
                path(&["groups"]),
                found(&[], 1),
            ),
            (json!({"groups": null}), path(&["groups"]), Lookup::Absent),
            (json!({}), path(&["groups"]), Lookup::Absent),
            // Keycloak realm roles.
            (
                json!({"realm_access": {"roles": ["admin", "user"]}}),
                path(&["realm_access", "roles"]),
                found(&["admin", "user"], 0),
            ),
            (
                json!({"realm_access": ["admin"]}),
                path(&["realm_access", "roles"]),
                Lookup::Absent,
            ),
            (
                json!({"realm_access": {}}),
                path(&["realm_access", "roles"]),
                Lookup::Absent,
            ),
            // A key with dots is one level (Auth0 namespaced claims).
            (
                json!({auth0: ["editor"]}),
                vec![auth0.to_owned()],
                found(&["editor"], 0),
            ),
            (
                json!({"https://acme": {"example/roles": ["x"]}}),
                vec![auth0.to_owned()],
                Lookup::Absent,
            ),
            // Entra ID app roles.
            (
                json!({"roles": ["Task.Write"]}),
                path(&["roles"]),
                found(&["Task.Write"], 0),
            ),
            // Entra ID groups overage.
            (
                json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}}),
                path(&["groups"]),
                Lookup::Overage,
            ),
            (
                json!({"hasgroups": true}),
                path(&["groups"]),
                Lookup::Overage,
            ),
            (json!({"hasgroups": true}), path(&["roles"]), Lookup::Absent),
            (
                json!({"_claim_names": {"roles": "src1"}}),
                path(&["groups"]),
                Lookup::Absent,
            ),
            // The claim itself wins over an overage marker.
            (
                json!({"groups": ["a"], "_claim_names": {"groups": "src1"}}),
                path(&["groups"]),
                found(&["a"], 0),
            ),
            (json!({"groups": ["a"]}), path(&[]), Lookup::Absent),
        ];
        for (c, p, want) in cases {
            assert_eq!(lookup(&claims(c.clone()), &p), want, "{c} at {p:?}");
        }
    }

    #[test]
    fn long_names_and_long_lists_are_bounded() {
        let long = "x".repeat(MAX_GROUP_LEN + 1);
        let fits = "y".repeat(MAX_GROUP_LEN);
        let c = claims(json!({ "groups": [long, fits.clone()] }));
        assert_eq!(
            lookup(&c, &path(&["groups"])),
            Lookup::Found {
                groups: vec![fits],
                ignored: 1
            }
        );
        let many: Vec<String> = (0..MAX_GROUPS + 5).map(|i| format!("g{i}")).collect();
        let c = claims(json!({ "groups": many }));
        let Lookup::Found { groups, ignored } = lookup(&c, &path(&["groups"])) else {
            panic!("not found")
        };
        assert_eq!((groups.len(), ignored), (MAX_GROUPS, 5));
    }
}
