//! Numbers and addresses written as text without `core::fmt`: on the
//! per-request path (heads, `X-Forwarded-For`, the access line) the
//! formatting machinery cost more than the bytes it wrote.

use std::net::IpAddr;

/// Decimal digits of `n`, as `Display` writes them.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `n` in exactly six digits, zero-padded (`{n:06}`); `n` < 1,000,000.
pub fn push_six(out: &mut Vec<u8>, n: u32) {
    let mut digits = [b'0'; 6];
    let mut n = n % 1_000_000;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits);
}

/// An address as `Display` writes it: IPv4 by hand, IPv6 (rare here)
/// through `Display`.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => {
            use std::io::Write as _;
            let _ = write!(out, "{ip}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 65535, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for n in [0, 5, 42, 999_999, 123_456] {
            let mut out = Vec::new();
            push_six(&mut out, n);
            assert_eq!(out, format!("{n:06}").into_bytes());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.30.4",
            "255.255.255.255",
            "100.9.99.109",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }
}
