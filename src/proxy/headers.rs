//! Identity headers: remove every client-supplied copy (any case, `_` for
//! `-`), then add the signed-in identity.

use crate::config::normalize_header_name;
use http::{HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pingora::http::RequestHeader;

use crate::config::HeaderNames;
use crate::identity::Identity;

/// Headers that govern framing, the connection or the forwarding chain.
/// Spelled with `_` they mean nothing to Portcullis or pingora, but CGI,
/// WSGI and PHP map `_` to `-`: `Transfer_Encoding: chunked` would reach
/// such an app as a second framing header.
const CONTROL_HEADERS: [&str; 14] = [
    "transfer-encoding",
    "content-length",
    "connection",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "host",
    "http2-settings",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
];

/// Headers that frameworks use to re-route a request or change its method
/// after the gate judged it (Symfony, Zend, IIS route on the first two;
/// Express, Rails, Symfony take the method from the others).
const OVERRIDE_HEADERS: [&str; 5] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// `name` equals `want` (lower case, with `-`) when `_` is read as `-`,
/// in any letter case.
fn same_header(name: &str, want: &str) -> bool {
    name.len() == want.len()
        && name.bytes().zip(want.bytes()).all(|(got, want)| {
            let got = if got == b'_' {
                b'-'
            } else {
                got.to_ascii_lowercase()
            };
            got == want
        })
}

/// A framing, hop-by-hop or forwarding header spelled with `_`
/// (`Transfer_Encoding`, `Proxy_Authorization`, `X_Forwarded_For`).
pub fn is_smuggled(name: &str) -> bool {
    name.contains('_')
        && (CONTROL_HEADERS.iter().any(|h| same_header(name, h))
            || (name.len() > 6 && same_header(&name[..6], "proxy-")))
}

/// A routing or method override header, in any spelling.
pub fn is_override(name: &str) -> bool {
    OVERRIDE_HEADERS.iter().any(|h| same_header(name, h))
}

/// The request's id: the client's `X-Request-Id` when `trust_client` and it
/// is well-formed ([`crate::request_id::is_valid`]), else a new one.
pub fn request_id(req: &RequestHeader, trust_client: bool) -> HeaderValue {
    request_id_in(&req.headers, trust_client)
}

/// [`request_id`] of a request's fields.
pub fn request_id_in(fields: &http::HeaderMap, trust_client: bool) -> HeaderValue {
    if trust_client {
        if let Some(v) = fields
            .get(&crate::request_id::NAME)
            .filter(|v| crate::request_id::is_valid(v.as_bytes()))
        {
            return v.clone();
        }
    }
    let id = crate::request_id::generate();
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Puts the request's id on a request (every copy the client sent is
/// replaced; spellings with `_` go in [`IdentityHeaders::strip`]).
pub fn set_request_id(req: &mut RequestHeader, id: &HeaderValue) -> pingora::Result<()> {
    req.insert_header(crate::request_id::HEADER, id.clone())
}

/// The identity header names, precomputed for the per-request check.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub names: HeaderNames,
    normalized: Vec<Vec<u8>>,
    /// Which names these are, for the header lines prebuilt with them (a
    /// reload's new names never reuse lines built with the old ones).
    generation: u64,
}

impl IdentityHeaders {
    pub fn new(names: HeaderNames) -> Self {
        let normalized = names
            .all()
            .iter()
            .map(|h| normalize_header_name(h.as_str()).into_bytes())
            .collect();
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        IdentityHeaders {
            names,
            normalized,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Also strips every client-supplied spelling of `name` (the signed
    /// assertion's header).
    pub fn also_strip(&mut self, name: &HeaderName) {
        self.normalized
            .push(normalize_header_name(name.as_str()).into_bytes());
    }

    /// Is `name` (as received) a spelling of one of our identity headers?
    pub fn is_forged(&self, name: &str) -> bool {
        let b = name.as_bytes();
        self.normalized.iter().any(|n| {
            n.len() == b.len()
                && n.iter().zip(b).all(|(&want, &got)| {
                    let got = if got == b'_' {
                        b'-'
                    } else {
                        got.to_ascii_lowercase()
                    };
                    want == got
                })
        })
    }

    /// Removes every client-supplied copy of the identity headers, the
    /// framing and hop-by-hop headers spelled with `_` ([`is_smuggled`]),
    /// and — on a request passed without a session — the routing and
    /// method override headers ([`is_override`]).
    pub fn strip(&self, req: &mut RequestHeader, with_session: bool) {
        self.strip_noting(req, with_session);
    }

    /// [`Self::strip`], noting in the same pass over the names which of
    /// the fields the proxy sets itself the client sent (usually none: no
    /// lookup for each then).
    pub fn strip_noting(&self, req: &mut RequestHeader, with_session: bool) -> Present {
        // No allocation unless something must go.
        let mut drop: Vec<HeaderName> = Vec::new();
        let mut present = Present::default();
        for name in req.headers.keys() {
            let n = name.as_str();
            if self.is_forged(n) || is_smuggled(n) || (!with_session && is_override(n)) {
                drop.push(name.clone());
            } else if let Some(which) = n.strip_prefix("x-forwarded-") {
                match which {
                    "for" => present.forwarded_for = true,
                    "proto" => present.forwarded_proto = true,
                    "host" => present.forwarded_host = true,
                    _ => {}
                }
            }
        }
        for name in drop {
            req.remove_header(&name);
        }
        present
    }

    /// Calls `f` with each identity header to send: absent values are
    /// absent headers, never empty ones. The values come from a per-thread
    /// cache ([`prebuilt`]): a user's next request clones them (reference
    /// counts) instead of formatting and copying each one again (issue 12).
    fn each<E>(
        &self,
        id: &Identity,
        f: impl FnMut(&HeaderName, &HeaderValue) -> Result<(), E>,
    ) -> Result<(), E> {
        self.each_of(&prebuilt::values(id), f)
    }

    fn each_of<E>(
        &self,
        v: &prebuilt::Values,
        mut f: impl FnMut(&HeaderName, &HeaderValue) -> Result<(), E>,
    ) -> Result<(), E> {
        let n = &self.names;
        f(&n.user, &v.user)?;
        f(&n.provider, &v.provider)?;
        for (name, value) in [
            (&n.email, &v.email),
            (&n.name, &v.name),
            (&n.login, &v.login),
            (&n.picture, &v.picture),
            (&n.groups, &v.groups),
        ] {
            if let Some(value) = value {
                f(name, value)?;
            }
        }
        Ok(())
    }

    /// Adds the identity to a request going upstream.
    pub fn inject(&self, req: &mut RequestHeader, id: &Identity) -> pingora::Result<()> {
        self.each(id, |name, v| req.insert_header(name.clone(), v.clone()))
    }

    /// The identity as header lines (`name: value` and CRLF) for a request
    /// head being written: the fast path's [`Self::inject`], for a request
    /// that [`Self::strip`] left without any copy of these names.
    /// The lines are built once per user, thread and set of names.
    pub fn write_lines(&self, out: &mut Vec<u8>, id: &Identity) {
        let v = prebuilt::values(id);
        let mut lines = v.lines.borrow_mut();
        let (generation, lines) = &mut *lines;
        if *generation != self.generation {
            lines.clear();
            let _ = self.each_of(&v, |name, value| {
                put_line(lines, name.as_str().as_bytes(), value.as_bytes());
                Ok::<(), std::convert::Infallible>(())
            });
            *generation = self.generation;
        }
        out.extend_from_slice(lines);
    }

    /// Does a header we strip (an identity header, in any spelling) share
    /// its name with one the proxy sets itself (`X-Request-Id`,
    /// `X-Forwarded-*`, `traceparent`)? Then the headers must be added one
    /// by one into the request's map, where a later one replaces an earlier
    /// one of the same name.
    pub fn shares_a_managed_name(&self) -> bool {
        self.normalized.iter().any(|n| {
            n.as_slice() == crate::request_id::HEADER.as_bytes()
                || n.starts_with(b"x-forwarded-")
                || n.as_slice() == b"traceparent"
                || n.as_slice() == b"tracestate"
        })
    }

    /// The identity as response headers (forward-auth `/oauth2/auth`).
    pub fn pairs(&self, id: &Identity) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(7);
        let _ = self.each(id, |name, v| {
            out.push((name.clone(), v.clone()));
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }
}

/// Which of the `X-Forwarded-*` fields the proxy sets a request came with
/// (after [`IdentityHeaders::strip_noting`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Present {
    pub forwarded_for: bool,
    pub forwarded_proto: bool,
    pub forwarded_host: bool,
}

/// `X-Forwarded-For`, parsed once.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`, parsed once.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`, parsed once.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// One header line of a head being written: `name: value` and CRLF.
pub fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The hops an `X-Forwarded-For` already lists, every copy of the field in
/// order joined as one list (RFC 9110 §5.3), followed by `, ` when there
/// are any: the client's address goes after them.
/// Whether there were any.
pub fn earlier_hops(out: &mut Vec<u8>, req: &RequestHeader) -> bool {
    let mut any = false;
    for prev in req.headers.get_all(&X_FORWARDED_FOR) {
        out.extend_from_slice(prev.as_bytes());
        out.extend_from_slice(b", ");
        any = true;
    }
    any
}

/// Everything but RFC 3986's unreserved characters is percent-encoded in
/// a group: `,` separates groups, and no byte of a value can end a header.
const GROUP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `X-User-Groups` value: each group percent-encoded (UTF-8, RFC 3986
/// unreserved characters kept), joined with `,`. `None` without groups.
pub fn groups_value(groups: &[String]) -> Option<String> {
    if groups.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(groups.iter().map(|g| g.len() + 1).sum());
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.extend(utf8_percent_encode(g, GROUP));
    }
    Some(out)
}

/// Identity values are sanitised when the session is made; anything that
/// still is not a valid header value is dropped to empty rather than sent raw.
fn value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Identity header values built once per user and thread: every request of
/// a signed-in user sends the same values, and a cloned `HeaderValue` is a
/// reference count where building one is an allocation and a copy.
mod prebuilt {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use http::HeaderValue;

    use super::{groups_value, value};
    use crate::identity::Identity;

    /// Users per thread; when full the map starts over.
    const CAPACITY: usize = 1024;

    pub(super) struct Values {
        /// Whose values these are: a changed name or email is a new entry.
        identity: Identity,
        pub user: HeaderValue,
        pub provider: HeaderValue,
        pub email: Option<HeaderValue>,
        pub name: Option<HeaderValue>,
        pub login: Option<HeaderValue>,
        pub picture: Option<HeaderValue>,
        pub groups: Option<HeaderValue>,
        /// These values as header lines, with the names of the
        /// `IdentityHeaders` of that generation (0: none yet).
        pub lines: RefCell<(u64, Vec<u8>)>,
    }

    thread_local! {
        static VALUES: RefCell<HashMap<String, Rc<Values>>> = RefCell::new(HashMap::new());
    }

    fn shared(s: String) -> HeaderValue {
        HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn build(id: &Identity) -> Values {
        let optional = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(value);
        Values {
            identity: id.clone(),
            user: shared(id.user()),
            provider: value(&id.provider),
            email: optional(&id.email),
            name: optional(&id.name),
            login: optional(&id.login),
            picture: optional(&id.picture),
            groups: groups_value(&id.groups).map(shared),
            lines: RefCell::new((0, Vec::new())),
        }
    }

    /// The values of `id`, from the cache when they are there and still
    /// describe exactly this identity.
    pub(super) fn values(id: &Identity) -> Rc<Values> {
        VALUES.with(|m| {
            let mut m = m.borrow_mut();
            // Keyed by subject (short, unique per provider); the provider and
            // every other field are compared below.
            if let Some(v) = m.get(id.subject.as_str()) {
                if v.identity == *id {
                    return v.clone();
                }
            }
            let v = Rc::new(build(id));
            crate::thread_cache::insert_bounded(&mut m, CAPACITY, id.subject.clone(), v.clone());
            v
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn built_once_per_identity_and_again_when_it_changes() {
            let mut id = Identity {
                provider: "google".into(),
                subject: "prebuilt-1".into(),
                email: Some("a@example.com".into()),
                name: Some("A".into()),
                login: None,
                picture: None,
                groups: vec!["x y".into()],
            };
            let first = values(&id);
            assert!(Rc::ptr_eq(&first, &values(&id)), "reused");
            assert_eq!(first.user, "google:prebuilt-1");
            assert_eq!(first.groups.as_ref().unwrap(), "x%20y");
            assert!(first.login.is_none());
            // Same subject, another provider or a new name: other values.
            id.name = Some("B".into());
            let renamed = values(&id);
            assert!(!Rc::ptr_eq(&first, &renamed));
            assert_eq!(renamed.name.as_ref().unwrap(), "B");
            id.provider = "facebook".into();
            assert_eq!(values(&id).user, "facebook:prebuilt-1");
        }
    }
}

#[cfg(test)]
mod request_id_tests {
    use super::*;

    fn req(id: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(id) = id {
            r.insert_header("X-Request-Id", id).unwrap();
        }
        r
    }

    #[test]
    fn client_id_kept_only_when_trusted_and_well_formed() {
        let r = req(Some("abc-123"));
        assert_eq!(request_id(&r, true), "abc-123");
        let generated = request_id(&r, false);
        assert_ne!(generated, "abc-123");
        assert_eq!(generated.len(), 36);
        let r = req(Some("has space"));
        assert_eq!(request_id(&r, true).len(), 36);
        assert_eq!(request_id(&req(None), true).len(), 36);
    }

    #[test]
    fn set_replaces_every_copy() {
        let mut r = req(Some("one"));
        r.append_header("x-request-id", "two").unwrap();
        set_request_id(&mut r, &HeaderValue::from_static("mine")).unwrap();
        let all: Vec<_> = r.headers.get_all("x-request-id").iter().collect();
        assert_eq!(all, ["mine"]);
        assert!(is_smuggled("X_Request_Id"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> IdentityHeaders {
        IdentityHeaders::new(HeaderNames {
            user: HeaderName::from_static("x-user"),
            provider: HeaderName::from_static("x-user-provider"),
            email: HeaderName::from_static("x-user-email"),
            name: HeaderName::from_static("x-user-name"),
            login: HeaderName::from_static("x-user-login"),
            picture: HeaderName::from_static("x-user-picture"),
            groups: HeaderName::from_static("x-user-groups"),
        })
    }

    #[test]
    fn identity_lines_are_built_with_the_names_in_force() {
        let id = Identity {
            provider: "google".into(),
            subject: "lines-1".into(),
            email: Some("a@example.com".into()),
            name: None,
            login: None,
            picture: None,
            groups: Vec::new(),
        };
        let mut out = Vec::new();
        headers().write_lines(&mut out, &id);
        let expected =
            "x-user: google:lines-1\r\nx-user-provider: google\r\nx-user-email: a@example.com\r\n";
        assert_eq!(String::from_utf8_lossy(&out), expected);
        // Reused for the same names (the same `IdentityHeaders`) ...
        let h = headers();
        out.clear();
        h.write_lines(&mut out, &id);
        h.write_lines(&mut out, &id);
        assert_eq!(String::from_utf8_lossy(&out), expected.repeat(2));
        // ... never for others (a reload renamed one).
        let mut names = h.names.clone();
        names.email = HeaderName::from_static("x-mail");
        out.clear();
        IdentityHeaders::new(names).write_lines(&mut out, &id);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "x-user: google:lines-1\r\nx-user-provider: google\r\nx-mail: a@example.com\r\n"
        );
        out.clear();
        h.write_lines(&mut out, &id);
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn forged_spellings_are_recognised() {
        let h = headers();
        for name in [
            "X-User",
            "x_user",
            "X-USER",
            "X_USER_EMAIL",
            "x-User-pIcture",
            "X-User_Login",
            "x_user_groups",
            "X-USER-GROUPS",
        ] {
            assert!(h.is_forged(name), "{name}");
        }
        for name in [
            "X-Users",
            "X-User-Emails",
            "X-Forwarded-User",
            "user",
            "x-userx",
        ] {
            assert!(!h.is_forged(name), "{name}");
        }
    }

    #[test]
    fn strip_then_inject() {
        let h = headers();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-User", "evil").unwrap();
        req.append_header("x_user", "evil2").unwrap();
        req.append_header("X-USER-EMAIL", "evil@x").unwrap();
        req.append_header("X_User_Name", "evil").unwrap();
        req.append_header("Accept", "text/html").unwrap();
        h.strip(&mut req, true);
        let names: Vec<String> = req.headers.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, vec!["accept"]);
        let id = Identity {
            provider: "google".into(),
            subject: "1".into(),
            email: None,
            name: Some("Alice".into()),
            login: Some(String::new()),
            picture: None,
            groups: Vec::new(),
        };
        h.inject(&mut req, &id).unwrap();
        assert_eq!(req.headers.get("x-user").unwrap(), "google:1");
        assert_eq!(req.headers.get("x-user-name").unwrap(), "Alice");
        assert!(req.headers.get("x-user-email").is_none());
        assert!(
            req.headers.get("x-user-login").is_none(),
            "empty values are absent"
        );
        assert_eq!(req.headers.get_all("x-user").iter().count(), 1);
        assert!(
            req.headers.get("x-user-groups").is_none(),
            "no groups: absent"
        );
    }

    #[test]
    fn groups_are_percent_encoded_and_comma_separated() {
        assert_eq!(groups_value(&[]), None);
        let groups: Vec<String> = [
            "admins",
            "a,b",
            "Zürich team",
            "/org/unit~x_y.z-1",
            "100%",
            "evil\r\nX-User: root",
            "",
        ]
        .iter()
        .map(|g| g.to_string())
        .collect();
        let v = groups_value(&groups).unwrap();
        assert_eq!(
            v,
            "admins,a%2Cb,Z%C3%BCrich%20team,%2Forg%2Funit~x_y.z-1,100%25,evil%0D%0AX-User%3A%20root,"
        );
        // Splitting on ',' and decoding gives the groups back.
        let back: Vec<String> = v
            .split(',')
            .map(|g| {
                percent_encoding::percent_decode_str(g)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            })
            .collect();
        assert_eq!(back, groups);
        let h = headers();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-User-Groups", "forged").unwrap();
        h.strip(&mut req, true);
        assert!(req.headers.get("x-user-groups").is_none());
        let id = Identity {
            provider: "acme".into(),
            subject: "1".into(),
            email: None,
            name: None,
            login: None,
            picture: None,
            groups: vec!["a b".into(), "c".into()],
        };
        h.inject(&mut req, &id).unwrap();
        assert_eq!(req.headers.get("x-user-groups").unwrap(), "a%20b,c");
        let pairs = h.pairs(&id);
        assert!(pairs
            .iter()
            .any(|(n, v)| n == "x-user-groups" && v == "a%20b,c"));
    }

    #[test]
    fn framing_headers_spelled_with_underscores_are_dropped() {
        for name in [
            "Transfer_Encoding",
            "content_length",
            "CONNECTION_",
            "Keep_Alive",
            "Proxy_Authorization",
            "proxy_connection",
            "X_Forwarded_For",
            "x_forwarded_host",
            "HTTP2_Settings",
        ] {
            assert_eq!(is_smuggled(name), !name.ends_with('_'), "{name}");
        }
        for name in [
            "Transfer-Encoding",
            "X-Forwarded-For",
            "x_custom_header",
            "proxy_",
            "X_Api_Key",
            "te_x",
        ] {
            assert!(!is_smuggled(name), "{name}");
        }
        assert!(!is_smuggled("TE_"));
        assert!(!is_smuggled("t_e"));
    }

    #[test]
    fn override_headers_go_only_without_a_session() {
        let h = headers();
        let build = || {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            for name in [
                "X-Original-URL",
                "x_rewrite_url",
                "X-HTTP-Method-Override",
                "X-Http-Method",
                "X-Method-Override",
                "Transfer_Encoding",
                "Accept",
            ] {
                req.append_header(name.to_owned(), "v").unwrap();
            }
            req
        };
        let mut public = build();
        h.strip(&mut public, false);
        let names: Vec<String> = public.headers.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, vec!["accept"]);
        let mut signed_in = build();
        h.strip(&mut signed_in, true);
        assert_eq!(signed_in.headers.len(), 6, "only Transfer_Encoding goes");
    }
}
