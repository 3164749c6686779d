//! The session cookie on the way in: `session::cookie::find_split` (the
//! split-cookie reader) and `SessionCodec::open_identity_at` (the opener),
//! with a fixed key.
//!
//! - Any `Cookie` headers (the input, split on `\n`): no panic, a value no
//!   longer than the scan budget, and nothing forged opens.
//! - An identity made from the input, sealed, written with `set_split` and
//!   read back through the same path (with the input's cookies after it),
//!   opens to the same identity; not after its expiry, not under another
//!   cookie name.
//! - Any single-byte change of the sealed value does not open.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use portcullis::identity::Identity;
use portcullis::session::cookie::{self, MAX_PARTS, MAX_PART_LEN, MAX_SCAN_BYTES};
use portcullis::session::{CookieAttrs, SameSite, Sealer, SessionCodec, SessionKey};

const NAME: &str = "_portcullis";
/// Bytes 0, 1, ..., 31: a fixed test key.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NOW: u64 = 1_700_000_000;
const EXPIRES: u64 = NOW + 3600;

fn codec() -> &'static SessionCodec {
    static CODEC: OnceLock<SessionCodec> = OnceLock::new();
    CODEC.get_or_init(|| {
        let key = SessionKey::from_base64(KEY).expect("fixed key");
        SessionCodec::new(Sealer::new(&key, &[]))
    })
}

/// An identity whose fields are the input's `|`-separated pieces; any
/// pieces after the picture are its groups.
fn identity(data: &[u8]) -> Identity {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('|').map(str::to_owned);
    Identity {
        provider: fields.next().unwrap_or_default(),
        subject: fields.next().unwrap_or_default(),
        email: fields.next(),
        name: fields.next(),
        login: fields.next(),
        picture: fields.next(),
        groups: fields.collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let codec = codec();
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();

    // Arbitrary headers through the reader and the opener.
    let _ = cookie::find(headers.iter().copied(), NAME);
    if let Some(value) = cookie::find_split(headers.iter().copied(), NAME) {
        assert!(value.len() <= MAX_SCAN_BYTES && value.len() <= data.len());
        if let Some(id) = codec.open_identity_at(NAME, &value, NOW) {
            // Only a seal made with the key opens (a seed may hold one).
            let resealed = codec.seal_identity_at(NAME, &id, EXPIRES);
            assert_eq!(codec.open_identity_at(NAME, &resealed, NOW), Some(id));
        }
    }

    // Round trip through the Set-Cookie and Cookie headers.
    let id = identity(data);
    let sealed = codec.seal_identity_at(NAME, &id, EXPIRES);
    let attrs = CookieAttrs {
        secure: true,
        same_site: SameSite::Lax,
        domain: None,
    };
    let Some(set) = cookie::set_split(NAME, &sealed, &attrs, Duration::from_secs(3600), []) else {
        assert!(
            sealed.len() > MAX_PARTS * MAX_PART_LEN,
            "{} bytes refused",
            sealed.len()
        );
        return;
    };
    let sent: Vec<&str> = set
        .iter()
        .filter(|c| !c.contains("Max-Age=0"))
        .filter_map(|c| c.split(';').next())
        .collect();
    let ours = sent.join("; ");
    let mut request: Vec<&[u8]> = vec![ours.as_bytes()];
    // The input's cookies come after ours (the first occurrence wins); a
    // cookie named like ours would legitimately take over.
    if !data.windows(NAME.len()).any(|w| w == NAME.as_bytes()) {
        request.extend(headers.iter().copied());
    }
    let read = cookie::find_split(request.iter().copied(), NAME)
        .unwrap_or_else(|| panic!("our own cookie is not found ({} parts)", sent.len()));
    assert_eq!(read, sealed);
    assert_eq!(codec.open_identity_at(NAME, &read, NOW).as_ref(), Some(&id));
    assert_eq!(codec.open_identity_at(NAME, &read, EXPIRES), None);
    assert_eq!(codec.open_identity_at("_portcullis_0", &read, NOW), None);

    // Any single-byte change does not open.
    let (Some(&a), Some(&b), Some(&c)) = (data.first(), data.get(1), data.get(2)) else {
        return;
    };
    let mut bytes = sealed.into_bytes();
    let at = usize::from(u16::from_le_bytes([a, b])) % bytes.len();
    let replacement = if c == bytes[at] { c.wrapping_add(1) } else { c };
    bytes[at] = replacement;
    if let Ok(changed) = String::from_utf8(bytes) {
        assert_eq!(
            codec.open_identity_at(NAME, &changed, NOW),
            None,
            "byte {at} changed to {replacement:#04x} still opens"
        );
    }
});
