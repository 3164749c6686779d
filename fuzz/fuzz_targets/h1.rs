//! The fast path's HTTP/1 wire code (`fast::wire`): whatever the bytes,
//! - a request head that parses is, after the proxy's hop-by-hop strip,
//!   written upstream as a head that parses again to the same method,
//!   target, framing and header fields, with one framing field (our writer
//!   and httparse agree: the upstream reads what the gate judged);
//! - the chunked decoder gives the same result fed whole or byte by byte,
//!   and what we re-encode decodes to the same data.
//!
//! Input: one selector byte (bit 0: read the rest as a chunked body,
//! otherwise as a request head).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use portcullis::fast::wire::{self, Chunked, Framing};

fn decode_whole(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut c = Chunked::default();
    let mut out = Vec::new();
    let mut at = 0;
    while at < input.len() && !c.is_done() {
        let (n, data) = c.step(&input[at..]).ok()?;
        if let Some(r) = data {
            out.extend_from_slice(&input[at..][r]);
        }
        at += n;
    }
    c.is_done().then_some((out, at))
}

fn decode_bytewise(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut c = Chunked::default();
    let mut out = Vec::new();
    for (i, b) in input.iter().enumerate() {
        if c.is_done() {
            return Some((out, i));
        }
        let one = std::slice::from_ref(b);
        let (n, data) = c.step(one).ok()?;
        assert_eq!(n, 1);
        if let Some(r) = data {
            out.extend_from_slice(&one[r]);
        }
    }
    c.is_done().then_some((out, input.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 1 {
        let whole = decode_whole(rest);
        assert_eq!(whole, decode_bytewise(rest));
        if let Some((body, _)) = whole {
            let mut again = BytesMut::new();
            for piece in body.chunks(7) {
                wire::put_chunk(&mut again, piece);
            }
            again.extend_from_slice(wire::LAST_CHUNK);
            assert_eq!(decode_whole(&again), Some((body, again.len())));
        }
        return;
    }
    let input = Bytes::copy_from_slice(rest);
    let Ok(Some(head)) = wire::parse_request(&input) else {
        return;
    };
    assert!(head.len <= input.len());
    let framing = match head.framing {
        Framing::UntilClose => unreachable!("requests are never delimited by close"),
        f => f,
    };
    let mut req = head.req;
    // As the proxy does (conn.rs): hop-by-hop and framing fields go, the
    // writer adds the framing it will use.
    wire::strip_hop_by_hop(&mut req);
    if !req.headers.contains_key(http::header::HOST) {
        // An HTTP/1.0 request without Host: the proxy adds one (conn.rs).
        req.insert_header(http::header::HOST, "a").unwrap();
    }
    let head_len = head.len;
    let mut out = Vec::new();
    wire::write_request_head(&mut out, &req, req.raw_path(), framing);
    let written = Bytes::from(out);
    let again = match wire::parse_request(&written) {
        Ok(Some(h)) => h,
        // A head at the limits plus the framing field we add: the
        // upstream's limits are its own business (ours were checked).
        Err(wire::BadRequest::TooLarge)
            if req.headers.len() + 1 > wire::MAX_HEADERS || written.len() > wire::MAX_HEAD =>
        {
            return
        }
        other => panic!(
            "our own head does not parse ({:?}): {:?}",
            other.err(),
            String::from_utf8_lossy(&written)
        ),
    };
    assert!(head_len <= input.len());
    assert_eq!(again.len, written.len());
    assert_eq!(again.req.method, req.method);
    assert_eq!(again.req.raw_path(), req.raw_path());
    assert_eq!(again.framing, framing);
    // Exactly one framing field, ours.
    let framing_fields = again
        .req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .count()
        + again
            .req
            .headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .count();
    assert!(framing_fields <= 1, "framing sent twice");
    // Every field went across with its value (names in lower case).
    for (name, value) in req.headers.iter() {
        assert!(
            again.req.headers.get_all(name).iter().any(|v| v == value),
            "{name} lost"
        );
    }
});
