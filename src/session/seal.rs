//! The session envelope: AES-256-GCM sealing of a payload and its expiry, bound to the cookie name; pure, with the clock as a parameter.
//!
//! Sealed value: `base64url-no-pad(0x01 || nonce[12] || ciphertext+tag)`,
//! where the plaintext is `expires_at` (unix seconds, u64 big-endian)
//! followed by the payload, and the associated data is the version byte
//! followed by the cookie name, so a value moved to another cookie fails.
//! Opening returns `None` on every failure, whatever it was.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// Version byte of the current envelope.
pub const VERSION: u8 = 0x01;
/// Longest sealed (base64) value [`Sealer::open_at`] will look at.
pub const MAX_SEALED_LEN: usize = 16 * 1024;
/// Length of a session key in bytes.
pub const KEY_LEN: usize = 32;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const EXPIRY_LEN: usize = 8;
/// Version byte and nonce.
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// A sealed empty payload.
const MIN_BLOB_LEN: usize = HEADER_LEN + EXPIRY_LEN + TAG_LEN;
/// [`MIN_BLOB_LEN`] in unpadded base64.
const MIN_SEALED_LEN: usize = (MIN_BLOB_LEN * 4).div_ceil(3);
/// Longest base64 text considered as a key (48 bytes decoded).
const MAX_KEY_TEXT_LEN: usize = 64;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// What is wrong with a configured session secret. Never echoes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the session secret is empty")]
    Empty,
    #[error("the session secret is too long; expected 32 bytes in base64 (44 characters)")]
    TooLong,
    #[error("the session secret is not valid base64 (standard or URL-safe alphabet)")]
    NotBase64,
    #[error("the session secret decodes to {len} bytes, expected 32")]
    WrongLength { len: usize },
}

/// A 32-byte AES-256-GCM session key. Its `Debug` is redacted and it has no
/// `Display`.
#[derive(Clone)]
pub struct SessionKey([u8; KEY_LEN]);

impl SessionKey {
    /// Parses a key from base64, standard or URL-safe alphabet, padded or
    /// not, surrounding whitespace ignored; it must decode to exactly 32
    /// bytes.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        if s.len() > MAX_KEY_TEXT_LEN {
            return Err(KeyError::TooLong);
        }
        let mut buf = [0u8; MAX_KEY_TEXT_LEN * 3 / 4];
        let len = STANDARD_LENIENT
            .decode_slice(s, &mut buf)
            .or_else(|_| URL_SAFE_LENIENT.decode_slice(s, &mut buf))
            .map_err(|_| KeyError::NotBase64)?;
        let key = buf
            .get(..len)
            .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
            .ok_or(KeyError::WrongLength { len });
        buf.fill(0);
        key.map(SessionKey)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        SessionKey(key)
    }

    /// The key in standard, padded base64 (what `portcullis secret` prints).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SessionKey {}

/// Seals with the current key and opens with the current or any previous
/// key (key rotation). The ciphers are built once, here.
#[derive(Clone)]
pub struct Sealer {
    current: Aes256Gcm,
    previous: Vec<Aes256Gcm>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("previous_keys", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// `current` seals and opens; `previous` only open.
    pub fn new(current: &SessionKey, previous: &[SessionKey]) -> Self {
        Sealer {
            current: Aes256Gcm::new(&current.0.into()),
            previous: previous
                .iter()
                .map(|key| Aes256Gcm::new(&key.0.into()))
                .collect(),
        }
    }

    /// Seals `payload` for the cookie `name`, valid until `expires_at`
    /// (unix seconds, exclusive). Keep payloads small: a value longer than
    /// [`MAX_SEALED_LEN`] would never open.
    pub fn seal_at(&self, name: &str, payload: &[u8], expires_at: u64) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut blob = Vec::with_capacity(MIN_BLOB_LEN + payload.len());
        blob.push(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&expires_at.to_be_bytes());
        blob.extend_from_slice(payload);
        let Some(plaintext) = blob.get_mut(HEADER_LEN..) else {
            return String::new();
        };
        // Encryption only fails for messages of 64 GiB and more; an empty
        // value is simply "no session" when read back.
        match self
            .current
            .encrypt_in_place_detached(&Nonce::from(nonce), &aad(name), plaintext)
        {
            Ok(tag) => blob.extend_from_slice(&tag),
            Err(_) => return String::new(),
        }
        URL_SAFE_NO_PAD.encode(&blob)
    }

    /// Opens a value sealed for the cookie `name`, if it is authentic under
    /// one of the keys and `now < expires_at`. `None` on any failure.
    pub fn open_at(&self, name: &str, sealed: &str, now: u64) -> Option<Vec<u8>> {
        self.open_with_expiry_at(name, sealed, now)
            .map(|(payload, _)| payload)
    }

    /// [`Sealer::open_at`], also giving the expiry sealed with the value
    /// (unix seconds, exclusive).
    pub fn open_with_expiry_at(
        &self,
        name: &str,
        sealed: &str,
        now: u64,
    ) -> Option<(Vec<u8>, u64)> {
        // Length checks before any decoding work.
        if sealed.len() < MIN_SEALED_LEN || sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let blob = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if blob.len() < MIN_BLOB_LEN {
            return None;
        }
        let (header, ciphertext) = blob.split_at_checked(HEADER_LEN)?;
        let (&version, nonce) = header.split_first()?;
        if version != VERSION {
            return None;
        }
        let nonce = Nonce::from(<[u8; NONCE_LEN]>::try_from(nonce).ok()?);
        let aad = aad(name);
        let mut plaintext = std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|cipher| {
                let payload = Payload {
                    msg: ciphertext,
                    aad: &aad,
                };
                cipher.decrypt(&nonce, payload).ok()
            })?;
        let expiry = <[u8; EXPIRY_LEN]>::try_from(plaintext.get(..EXPIRY_LEN)?).ok()?;
        let expires_at = u64::from_be_bytes(expiry);
        if now >= expires_at {
            return None;
        }
        plaintext.drain(..EXPIRY_LEN);
        Some((plaintext, expires_at))
    }

    /// [`Sealer::seal_at`] with an expiry `ttl` from now (whole seconds).
    pub fn seal(&self, name: &str, payload: &[u8], ttl: Duration) -> String {
        self.seal_at(name, payload, unix_now().saturating_add(ttl.as_secs()))
    }

    /// [`Sealer::open_at`] at the current time.
    pub fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        self.open_at(name, sealed, unix_now())
    }
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Associated data: the version byte, then the cookie name.
fn aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + name.len());
    aad.push(VERSION);
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "_portcullis";
    const NOW: u64 = 1_700_000_000;
    const LATER: u64 = NOW + 3600;

    fn key(byte: u8) -> SessionKey {
        SessionKey([byte; KEY_LEN])
    }

    fn sealer() -> Sealer {
        Sealer::new(&key(1), &[])
    }

    fn decode(sealed: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(sealed).unwrap_or_default()
    }

    #[test]
    fn open_with_expiry_returns_the_sealed_expiry() {
        let s = sealer();
        let sealed = s.seal_at(NAME, b"x", LATER);
        assert_eq!(
            s.open_with_expiry_at(NAME, &sealed, NOW),
            Some((b"x".to_vec(), LATER))
        );
        assert_eq!(s.open_with_expiry_at(NAME, &sealed, LATER), None);
        assert_eq!(s.open_with_expiry_at("_other", &sealed, NOW), None);
    }

    #[test]
    fn round_trip() {
        let s = sealer();
        for payload in [&b""[..], b"x", b"hello world", &[0u8; 3000]] {
            let sealed = s.seal_at(NAME, payload, LATER);
            assert_eq!(s.open_at(NAME, &sealed, NOW).as_deref(), Some(payload));
        }
    }

    #[test]
    fn layout_is_version_nonce_ciphertext_tag() {
        let payload = b"payload";
        let sealed = sealer().seal_at(NAME, payload, LATER);
        assert!(sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let blob = decode(&sealed);
        assert_eq!(blob.first(), Some(&VERSION));
        assert_eq!(
            blob.len(),
            1 + NONCE_LEN + EXPIRY_LEN + payload.len() + TAG_LEN
        );
    }

    #[test]
    fn empty_payload_has_minimum_length() {
        let sealed = sealer().seal_at(NAME, b"", LATER);
        assert_eq!(sealed.len(), MIN_SEALED_LEN);
        assert_eq!(decode(&sealed).len(), MIN_BLOB_LEN);
        assert_eq!(sealer().open_at(NAME, &sealed, NOW), Some(Vec::new()));
    }

    #[test]
    fn tampering_with_any_bit_fails() {
        let s = sealer();
        let sealed = s.seal_at(NAME, b"some identity bytes", LATER);
        let blob = decode(&sealed);
        for i in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[i] ^= 1 << bit;
                let bad = URL_SAFE_NO_PAD.encode(&bad);
                assert_eq!(s.open_at(NAME, &bad, NOW), None, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = sealer().seal_at(NAME, b"data", LATER);
        let other = Sealer::new(&key(2), &[key(3)]);
        assert_eq!(other.open_at(NAME, &sealed, NOW), None);
    }

    #[test]
    fn previous_keys_still_open_and_new_seals_use_current() {
        let old = Sealer::new(&key(1), &[]);
        let sealed_old = old.seal_at(NAME, b"data", LATER);
        let rotated = Sealer::new(&key(2), &[key(9), key(1)]);
        assert_eq!(
            rotated.open_at(NAME, &sealed_old, NOW).as_deref(),
            Some(&b"data"[..])
        );
        let sealed_new = rotated.seal_at(NAME, b"new", LATER);
        assert_eq!(old.open_at(NAME, &sealed_new, NOW), None);
        assert_eq!(
            Sealer::new(&key(2), &[])
                .open_at(NAME, &sealed_new, NOW)
                .as_deref(),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn value_is_bound_to_cookie_name() {
        let s = sealer();
        let sealed = s.seal_at("a", b"data", LATER);
        assert_eq!(s.open_at("b", &sealed, NOW), None);
        assert_eq!(s.open_at("", &sealed, NOW), None);
        assert_eq!(s.open_at("a ", &sealed, NOW), None);
        let sealed = s.seal_at(NAME, b"data", LATER);
        assert_eq!(s.open_at("_portcullis_login_x", &sealed, NOW), None);
        assert!(s.open_at(NAME, &sealed, NOW).is_some());
    }

    #[test]
    fn expiry_boundary() {
        let s = sealer();
        let sealed = s.seal_at(NAME, b"data", LATER);
        assert!(s.open_at(NAME, &sealed, 0).is_some());
        assert!(s.open_at(NAME, &sealed, LATER - 1).is_some());
        assert_eq!(s.open_at(NAME, &sealed, LATER), None);
        assert_eq!(s.open_at(NAME, &sealed, LATER + 1), None);
        assert_eq!(s.open_at(NAME, &sealed, u64::MAX), None);
        let already = s.seal_at(NAME, b"data", 0);
        assert_eq!(s.open_at(NAME, &already, 0), None);
    }

    #[test]
    fn truncated_at_every_length_fails() {
        let s = sealer();
        let sealed = s.seal_at(NAME, b"some payload", LATER);
        for len in 0..sealed.len() {
            assert_eq!(s.open_at(NAME, &sealed[..len], NOW), None, "text {len}");
        }
        let blob = decode(&sealed);
        for len in 0..blob.len() {
            let cut = URL_SAFE_NO_PAD.encode(&blob[..len]);
            assert_eq!(s.open_at(NAME, &cut, NOW), None, "blob {len}");
        }
    }

    #[test]
    fn extended_value_fails() {
        let s = sealer();
        let sealed = s.seal_at(NAME, b"data", LATER);
        let mut blob = decode(&sealed);
        blob.push(0);
        assert_eq!(s.open_at(NAME, &URL_SAFE_NO_PAD.encode(&blob), NOW), None);
        assert_eq!(s.open_at(NAME, &format!("{sealed}A"), NOW), None);
        assert_eq!(s.open_at(NAME, &format!("{sealed}="), NOW), None);
    }

    #[test]
    fn oversized_input_is_rejected_before_decoding() {
        let s = sealer();
        // A genuine seal just over the limit does not open ...
        let big = s.seal_at(NAME, &vec![7u8; MAX_SEALED_LEN], LATER);
        assert!(big.len() > MAX_SEALED_LEN);
        assert_eq!(s.open_at(NAME, &big, NOW), None);
        // ... and a huge input returns at once (a length check, no decode).
        let huge = "A".repeat(64 * 1024 * 1024);
        let start = std::time::Instant::now();
        assert_eq!(s.open_at(NAME, &huge, NOW), None);
        assert!(start.elapsed() < std::time::Duration::from_millis(50));
        // The largest accepted payload still opens.
        let max_payload = MAX_SEALED_LEN * 3 / 4 - MIN_BLOB_LEN;
        let sealed = s.seal_at(NAME, &vec![7u8; max_payload], LATER);
        assert!(sealed.len() <= MAX_SEALED_LEN);
        assert!(s.open_at(NAME, &sealed, NOW).is_some());
    }

    #[test]
    fn garbage_inputs_fail() {
        let s = sealer();
        let valid = s.seal_at(NAME, b"data", LATER);
        let with_padding = URL_SAFE_NO_PAD.encode(decode(&valid)) + "==";
        let standard_alphabet = STANDARD.encode(decode(&valid));
        for input in [
            "",
            "=",
            "not base64 at all!!",
            &"*".repeat(100),
            &"A".repeat(200),
            &"é".repeat(60),
            &valid.replace(|c: char| c.is_ascii_lowercase(), "\u{0}"),
            &with_padding,
            &format!(" {valid}"),
            &format!("{valid}\n"),
        ] {
            assert_eq!(s.open_at(NAME, input, NOW), None, "{input:?}");
        }
        // The standard alphabet is not accepted for sealed values (unless
        // the value happens to contain neither '+' nor '/').
        if standard_alphabet != valid {
            assert_eq!(s.open_at(NAME, &standard_alphabet, NOW), None);
        }
    }

    #[test]
    fn wrong_version_byte_fails() {
        let s = sealer();
        let blob = decode(&s.seal_at(NAME, b"data", LATER));
        for version in [0x00, 0x02, 0xFF] {
            let mut bad = blob.clone();
            bad[0] = version;
            assert_eq!(s.open_at(NAME, &URL_SAFE_NO_PAD.encode(&bad), NOW), None);
        }
    }

    #[test]
    fn same_payload_seals_differently() {
        let s = sealer();
        let a = s.seal_at(NAME, b"data", LATER);
        let b = s.seal_at(NAME, b"data", LATER);
        assert_ne!(a, b);
        assert_ne!(decode(&a).get(1..HEADER_LEN), decode(&b).get(1..HEADER_LEN));
    }

    #[test]
    fn clock_variants_use_system_time() {
        let s = sealer();
        let sealed = s.seal(NAME, b"data", Duration::from_secs(60));
        assert_eq!(s.open(NAME, &sealed).as_deref(), Some(&b"data"[..]));
        let now = unix_now();
        assert!(s.open_at(NAME, &sealed, now + 120).is_none());
        let expired = s.seal(NAME, b"data", Duration::ZERO);
        assert_eq!(s.open(NAME, &expired), None);
        let forever = s.seal(NAME, b"data", Duration::MAX);
        assert!(s.open(NAME, &forever).is_some());
    }

    #[test]
    fn key_parsing_accepts_both_alphabets_with_or_without_padding() {
        let bytes: [u8; KEY_LEN] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xFB);
        let key = SessionKey(bytes);
        let standard = STANDARD.encode(bytes);
        assert!(standard.contains('+') || standard.contains('/'));
        let url = base64::engine::general_purpose::URL_SAFE.encode(bytes);
        for text in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url.clone(),
            url.trim_end_matches('=').to_owned(),
            format!("  {standard}\n"),
        ] {
            assert_eq!(SessionKey::from_base64(&text), Ok(key.clone()), "{text}");
        }
        assert_eq!(key.to_base64(), standard);
        assert_eq!(standard.len(), 44);
    }

    #[test]
    fn key_parsing_errors_say_what_is_wrong_without_the_input() {
        let cases = [
            ("", KeyError::Empty),
            ("   ", KeyError::Empty),
            (
                "c2VjcmV0LXZhbHVlLXRoYXQtaXMtZmFyLXRvby1sb25nLWZvci1hLWtleS0xMjM0NTY3OA",
                KeyError::TooLong,
            ),
            ("sekrit!sekrit!", KeyError::NotBase64),
            (
                "a+b_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw",
                KeyError::NotBase64,
            ),
            ("c2hvcnQ=", KeyError::WrongLength { len: 5 }),
            (
                &STANDARD.encode([0u8; 31]),
                KeyError::WrongLength { len: 31 },
            ),
            (
                &STANDARD.encode([0u8; 33]),
                KeyError::WrongLength { len: 33 },
            ),
            (
                &STANDARD.encode([0u8; 48]),
                KeyError::WrongLength { len: 48 },
            ),
        ];
        for (input, expected) in cases {
            let err = SessionKey::from_base64(input).err();
            assert_eq!(err.as_ref(), Some(&expected), "{input:?}");
            let message = expected.to_string();
            assert!(message.contains("session secret"));
            if !input.trim().is_empty() {
                assert!(!message.contains(input.trim()), "{message}");
            }
        }
    }

    #[test]
    fn generated_keys_are_random_and_round_trip() {
        let a = SessionKey::generate();
        let b = SessionKey::generate();
        assert_ne!(a, b);
        assert_eq!(SessionKey::from_base64(&a.to_base64()), Ok(a));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let parsed = SessionKey::from_base64(&STANDARD.encode([0x42u8; 32]));
        let text = format!("{parsed:?}");
        assert_eq!(text, "Ok(SessionKey(<redacted>))");
        let sealer = Sealer::new(&key(1), &[key(2)]);
        let text = format!("{sealer:?}");
        assert!(text.starts_with("Sealer"));
        assert!(!text.contains("01"), "{text}");
    }
}
