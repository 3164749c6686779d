//! The signed-in identity (who the user is, according to which provider), its compact binary encoding inside the session, and the cleaning of values bound for identity headers.

/// The user as their provider described them at sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Provider id from the config, e.g. `google`.
    pub provider: String,
    /// The provider's stable unique id for the user.
    pub subject: String,
    /// Email address, only when the provider says it is verified.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Handle or username where the provider has one (X: `jack`).
    pub login: Option<String>,
    /// Avatar URL where the provider has one.
    pub picture: Option<String>,
    /// Groups or roles from the provider's `groups_claim`, in the
    /// provider's order, without duplicates (empty for providers without one).
    pub groups: Vec<String>,
}

/// Format byte of the [`Identity::encode`] layout without groups (the login
/// state uses another, so neither ever decodes as the other).
const IDENTITY_FORMAT: u8 = 0x01;
/// Format byte of the layout with groups: [`IDENTITY_FORMAT`]'s fields, then
/// a big-endian `u16` count and that many strings. Identities without groups
/// keep the old layout, so sessions sealed before groups existed still open.
const IDENTITY_FORMAT_GROUPS: u8 = 0x02;
/// Most groups an encoded identity carries (the count is a `u16`).
pub const MAX_ENCODED_GROUPS: usize = u16::MAX as usize;

impl Identity {
    /// The stable unique id sent as `X-User`: `{provider}:{subject}`.
    pub fn user(&self) -> String {
        format!("{}:{}", self.provider, self.subject)
    }

    /// Appends the compact binary form to `out`: a format byte, then each
    /// field as a big-endian `u16` length and its bytes (`0xFFFF` for an
    /// absent optional field). A field longer than 65,534 bytes is cut at a
    /// character boundary (no provider sends such values; the sealed cookie
    /// would be far too large anyway). Groups, when there are any, follow
    /// as a `u16` count and strings (at most [`MAX_ENCODED_GROUPS`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let groups = &self.groups[..self.groups.len().min(MAX_ENCODED_GROUPS)];
        out.reserve(
            1 + 6 * 2
                + self.provider.len()
                + self.subject.len()
                + [&self.email, &self.name, &self.login, &self.picture]
                    .iter()
                    .map(|field| field.as_deref().map_or(0, str::len))
                    .sum::<usize>()
                + groups.iter().map(|g| 2 + g.len()).sum::<usize>(),
        );
        out.push(if groups.is_empty() {
            IDENTITY_FORMAT
        } else {
            IDENTITY_FORMAT_GROUPS
        });
        wire::put_str(out, &self.provider);
        wire::put_str(out, &self.subject);
        wire::put_opt(out, self.email.as_deref());
        wire::put_opt(out, self.name.as_deref());
        wire::put_opt(out, self.login.as_deref());
        wire::put_opt(out, self.picture.as_deref());
        if !groups.is_empty() {
            let count = u16::try_from(groups.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for g in groups {
                wire::put_str(out, g);
            }
        }
    }

    /// Parses what [`Identity::encode`] wrote. Strict: an unknown format
    /// byte, a length running past the end, an absent required field,
    /// invalid UTF-8 or trailing bytes all give `None`. Never panics.
    pub fn decode(bytes: &[u8]) -> Option<Identity> {
        let mut reader = wire::Reader::new(bytes);
        let format = reader.u8()?;
        if format != IDENTITY_FORMAT && format != IDENTITY_FORMAT_GROUPS {
            return None;
        }
        let mut identity = Identity {
            provider: reader.str()?,
            subject: reader.str()?,
            email: reader.opt_str()?,
            name: reader.opt_str()?,
            login: reader.opt_str()?,
            picture: reader.opt_str()?,
            groups: Vec::new(),
        };
        if format == IDENTITY_FORMAT_GROUPS {
            let count = usize::from(reader.u16()?);
            // Each string takes at least its two length bytes: a count the
            // rest cannot hold is malformed (and allocates nothing).
            if count == 0 || count > reader.remaining() / 2 {
                return None;
            }
            identity.groups.reserve_exact(count);
            for _ in 0..count {
                identity.groups.push(reader.str()?);
            }
        }
        reader.finish()?;
        Some(identity)
    }
}

/// Cleans a value for an identity header: removes every control character
/// (Unicode category Cc: `\0`..`\x1f` including `\r`, `\n`, `\t`, DEL and
/// `\u{80}`..`\u{9f}`) and trims surrounding whitespace. The caller omits the
/// header when the result is empty.
pub fn sanitize(value: &str) -> String {
    if value.chars().any(char::is_control) {
        let cleaned: String = value.chars().filter(|c| !c.is_control()).collect();
        cleaned.trim().to_owned()
    } else {
        value.trim().to_owned()
    }
}

/// The length-prefixed wire format shared by [`Identity`] and the login
/// state: strings as a big-endian `u16` length and UTF-8 bytes, `0xFFFF`
/// standing for an absent optional string.
pub(crate) mod wire {
    /// Length marker of an absent optional string.
    const NONE: u16 = u16::MAX;
    /// Longest string that can be written (`NONE` is reserved).
    pub(crate) const MAX_FIELD_LEN: usize = NONE as usize - 1;

    /// Appends `s` (cut at a character boundary to [`MAX_FIELD_LEN`] bytes).
    pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
        let s = truncate(s, MAX_FIELD_LEN);
        let len = u16::try_from(s.len()).unwrap_or(0);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(s.get(..usize::from(len)).unwrap_or_default().as_bytes());
    }

    /// Appends an optional string.
    pub(crate) fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => put_str(out, s),
            None => out.extend_from_slice(&NONE.to_be_bytes()),
        }
    }

    /// The longest prefix of `s` of at most `max` bytes ending on a
    /// character boundary.
    fn truncate(s: &str, max: usize) -> &str {
        if s.len() <= max {
            return s;
        }
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.get(..end).unwrap_or_default()
    }

    /// A strict cursor over encoded bytes; every read checks the length
    /// first and gives `None` when the input is malformed.
    pub(crate) struct Reader<'a> {
        rest: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub(crate) fn new(bytes: &'a [u8]) -> Self {
            Reader { rest: bytes }
        }

        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = self.rest.split_at_checked(n)?;
            self.rest = rest;
            Some(head)
        }

        pub(crate) fn u8(&mut self) -> Option<u8> {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            Some(byte)
        }

        /// Bytes not read yet.
        pub(crate) fn remaining(&self) -> usize {
            self.rest.len()
        }

        pub(crate) fn u16(&mut self) -> Option<u16> {
            let bytes: [u8; 2] = self.take(2)?.try_into().ok()?;
            Some(u16::from_be_bytes(bytes))
        }

        /// A required string.
        pub(crate) fn str(&mut self) -> Option<String> {
            self.opt_str()?
        }

        /// An optional string: outer `None` when malformed, inner `None`
        /// when absent.
        pub(crate) fn opt_str(&mut self) -> Option<Option<String>> {
            let len = self.u16()?;
            if len == NONE {
                return Some(None);
            }
            let bytes = self.take(usize::from(len))?;
            let s = std::str::from_utf8(bytes).ok()?;
            Some(Some(s.to_owned()))
        }

        /// Succeeds only when every byte was consumed.
        pub(crate) fn finish(self) -> Option<()> {
            self.rest.is_empty().then_some(())
        }
    }
}

/// Splits an address into (local part, domain), strictly: exactly one `@`,
/// no quotes, whitespace or control characters, a non-empty local part and a
/// domain made of non-empty DNS labels (no trailing dot). Anything else is
/// not an address we will match on (`a@evil.com@example.com`,
/// `"a@evil.com"@example.com`, `a@example.com.`).
pub fn split_email(email: &str) -> Option<(&str, &str)> {
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.contains('@') || local.len() > 64 || domain.len() > 253 {
        return None;
    }
    let bad = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '"' | '\\' | '(' | ')' | ',' | ';' | ':' | '<' | '>' | '[' | ']'
            )
    };
    if local.chars().any(bad) {
        return None;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !domain.split('.').all(label_ok) || !domain.contains('.') {
        return None;
    }
    Some((local, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Identity {
        Identity {
            provider: "google".into(),
            subject: "110169484474386276334".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice Ünïcødé 🦀".into()),
            login: Some("alice".into()),
            picture: Some("https://example.com/a.png".into()),
            groups: vec!["admins".into(), "staff, Zürich".into()],
        }
    }

    fn minimal() -> Identity {
        Identity {
            provider: "twitter".into(),
            subject: "783214".into(),
            email: None,
            name: None,
            login: None,
            picture: None,
            groups: Vec::new(),
        }
    }

    fn encoded(identity: &Identity) -> Vec<u8> {
        let mut out = Vec::new();
        identity.encode(&mut out);
        out
    }

    #[test]
    fn user_is_provider_colon_subject() {
        assert_eq!(full().user(), "google:110169484474386276334");
        assert_eq!(minimal().user(), "twitter:783214");
    }

    #[test]
    fn round_trip_full_and_minimal() {
        for identity in [full(), minimal()] {
            assert_eq!(Identity::decode(&encoded(&identity)), Some(identity));
        }
    }

    #[test]
    fn round_trip_keeps_empty_strings_distinct_from_none() {
        let identity = Identity {
            provider: String::new(),
            subject: String::new(),
            email: Some(String::new()),
            name: None,
            login: Some(String::new()),
            picture: None,
            groups: vec![String::new()],
        };
        assert_eq!(Identity::decode(&encoded(&identity)), Some(identity));
    }

    #[test]
    fn groups_use_the_second_layout_and_keep_their_order() {
        let mut identity = minimal();
        let plain = encoded(&identity);
        identity.groups = vec!["b".into(), "a".into()];
        let bytes = encoded(&identity);
        assert_eq!(bytes[0], 2);
        let mut expected = plain.clone();
        expected[0] = 2;
        expected.extend_from_slice(&[0, 2, 0, 1, b'b', 0, 1, b'a']);
        assert_eq!(bytes, expected);
        assert_eq!(Identity::decode(&bytes), Some(identity));
        // A count of zero, or more than the bytes can hold, is malformed.
        let mut zero = plain.clone();
        zero[0] = 2;
        zero.extend_from_slice(&[0, 0]);
        assert_eq!(Identity::decode(&zero), None);
        let mut huge = plain;
        huge[0] = 2;
        huge.extend_from_slice(&[0xFF, 0xFF, 0, 0]);
        assert_eq!(Identity::decode(&huge), None);
    }

    #[test]
    fn three_hundred_groups_round_trip() {
        let mut identity = full();
        identity.groups = (0..300)
            .map(|i| format!("team-{i:03}-engineering"))
            .collect();
        assert_eq!(Identity::decode(&encoded(&identity)), Some(identity));
    }

    #[test]
    fn encode_appends_to_existing_buffer() {
        let mut out = vec![0xAA, 0xBB];
        minimal().encode(&mut out);
        assert_eq!(out.get(..2), Some(&[0xAA, 0xBB][..]));
        assert_eq!(
            Identity::decode(out.get(2..).unwrap_or_default()),
            Some(minimal())
        );
    }

    #[test]
    fn layout_is_format_byte_then_length_prefixed_fields() {
        let bytes = encoded(&minimal());
        let mut expected = vec![1, 0, 7];
        expected.extend_from_slice(b"twitter");
        expected.extend_from_slice(&[0, 6]);
        expected.extend_from_slice(b"783214");
        expected.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn decode_rejects_every_truncation() {
        let bytes = encoded(&full());
        for len in 0..bytes.len() {
            assert_eq!(Identity::decode(&bytes[..len]), None, "length {len}");
        }
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        let mut bytes = encoded(&full());
        bytes.push(0);
        assert_eq!(Identity::decode(&bytes), None);
    }

    #[test]
    fn decode_rejects_unknown_format() {
        let mut bytes = encoded(&full());
        bytes[0] = 3;
        assert_eq!(Identity::decode(&bytes), None);
        bytes[0] = 0;
        assert_eq!(Identity::decode(&bytes), None);
    }

    #[test]
    fn decode_rejects_absent_required_fields() {
        // provider absent
        let mut bytes = vec![1, 0xFF, 0xFF, 0, 1, b's'];
        bytes.extend_from_slice(&[0xFF; 8]);
        assert_eq!(Identity::decode(&bytes), None);
        // subject absent
        let mut bytes = vec![1, 0, 1, b'p', 0xFF, 0xFF];
        bytes.extend_from_slice(&[0xFF; 8]);
        assert_eq!(Identity::decode(&bytes), None);
    }

    #[test]
    fn decode_rejects_invalid_utf8() {
        let mut bytes = vec![1, 0, 2, 0xC3, 0x28, 0, 1, b's'];
        bytes.extend_from_slice(&[0xFF; 8]);
        assert_eq!(Identity::decode(&bytes), None);
    }

    #[test]
    fn decode_rejects_length_past_end() {
        let bytes = [1, 0xFF, 0xFE, b'a'];
        assert_eq!(Identity::decode(&bytes), None);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes() {
        // Deterministic pseudo-random inputs (xorshift), plus every single
        // byte flip of a valid encoding.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = Identity::decode(&bytes);
        }
        let valid = encoded(&full());
        for i in 0..valid.len() {
            for bit in 0..8 {
                let mut bytes = valid.clone();
                bytes[i] ^= 1 << bit;
                let _ = Identity::decode(&bytes);
            }
        }
        assert_eq!(Identity::decode(&[]), None);
    }

    #[test]
    fn overlong_field_is_cut_at_char_boundary() {
        let mut identity = minimal();
        // 3-byte characters: 65_534 is not a multiple of 3.
        identity.name = Some("€".repeat(30_000));
        let decoded = Identity::decode(&encoded(&identity));
        let name = decoded.and_then(|i| i.name).unwrap_or_default();
        assert!(name.len() <= wire::MAX_FIELD_LEN);
        assert_eq!(name.len() % 3, 0);
        assert!(name.chars().all(|c| c == '€'));
    }

    #[test]
    fn sanitize_removes_control_characters_and_trims() {
        assert_eq!(sanitize("Alice"), "Alice");
        assert_eq!(sanitize("  Alice  "), "Alice");
        assert_eq!(sanitize("Al\r\nice"), "Alice");
        assert_eq!(sanitize("a\tb\0c\x7fd"), "abcd");
        assert_eq!(sanitize("x\u{85}y\u{9f}z"), "xyz");
        assert_eq!(
            sanitize("\r\n  evil\r\nX-User: admin  \t"),
            "evilX-User: admin"
        );
        assert_eq!(sanitize("\n \n"), "");
        assert_eq!(sanitize(""), "");
    }

    #[test]
    fn sanitize_keeps_non_control_unicode() {
        assert_eq!(sanitize("Zoë 🦀 山田"), "Zoë 🦀 山田");
        assert_eq!(sanitize("a b"), "a b");
    }
}
