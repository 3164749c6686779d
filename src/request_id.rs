//! Request ids (`X-Request-Id`): generated per request, or taken from the
//! client when `[server] trust_request_id = true` and the client's value is
//! well-formed. Plain functions, no I/O: both request paths call them.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore as _;

/// The header, lower case.
pub const HEADER: &str = "x-request-id";

/// [`HEADER`] as a parsed name (lookups by `&str` parse it each time).
pub static NAME: http::HeaderName = http::HeaderName::from_static(HEADER);

/// Longest client-supplied id kept (longer ones are replaced).
pub const MAX_LEN: usize = 128;

/// A new id: a UUIDv7 (RFC 9562) — 48 bits of unix milliseconds, so ids sort
/// by time in logs, then 74 random bits from the thread's CSPRNG. The text
/// form is 36 characters; no allocation besides the returned buffer.
pub fn generate() -> [u8; 36] {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    uuid_v7(millis, random)
}

/// The UUIDv7 text of `millis` and 80 random bits (6 of them give way to
/// the version and variant).
pub fn uuid_v7(millis: u64, random: [u8; 10]) -> [u8; 36] {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    b[6..].copy_from_slice(&random);
    b[6] = 0x70 | (b[6] & 0x0f); // version 7
    b[8] = 0x80 | (b[8] & 0x3f); // variant 10
                                 // Each byte's two digits from a table, at fixed places around the
                                 // dashes (per request: a per-nibble loop cost more than the rest).
    const PLACE: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut out = [b'-'; 36];
    for (byte, at) in b.iter().zip(PLACE) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
    out
}

/// The two lower-case hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0x0f]];
        i += 1;
    }
    t
};

/// Whether a client's id may be kept: 1 to [`MAX_LEN`] bytes of letters,
/// digits and `-_.:+/=@` — nothing that could break a log line, a header or
/// a page, and no spaces.
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_layout() {
        let id = uuid_v7(0x0123_4567_89ab, [0xff; 10]);
        assert_eq!(
            std::str::from_utf8(&id).unwrap(),
            "01234567-89ab-7fff-bfff-ffffffffffff"
        );
        let id = uuid_v7(0, [0; 10]);
        assert_eq!(
            std::str::from_utf8(&id).unwrap(),
            "00000000-0000-7000-8000-000000000000"
        );
        let id = uuid_v7(
            0x0123_4567_89ab,
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x10, 0x32],
        );
        assert_eq!(
            std::str::from_utf8(&id).unwrap(),
            "01234567-89ab-7123-8567-89abcdef1032"
        );
    }

    #[test]
    fn generated_ids_are_valid_distinct_and_sorted_by_time() {
        let a = generate();
        let b = generate();
        assert!(is_valid(&a) && is_valid(&b));
        assert_ne!(a, b);
        // The first 48 bits are the time: a later id never sorts first
        // (same millisecond: equal prefixes).
        assert!(a[..13] <= b[..13]);
    }

    #[test]
    fn client_ids_are_checked() {
        assert!(is_valid(b"abc-123_x.y:z+/=@"));
        assert!(is_valid(&[b'a'; MAX_LEN]));
        assert!(!is_valid(&[b'a'; MAX_LEN + 1]));
        assert!(!is_valid(b""));
        for bad in [
            &b"a b"[..],
            b"a\"b",
            b"a\\b",
            b"a<b",
            b"a\nb",
            b"a\x7f",
            "é".as_bytes(),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
