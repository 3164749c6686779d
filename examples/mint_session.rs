//! Mints a session cookie for benchmarks and debugging:
//!
//!     cargo run --example mint_session -- SECRET [USER_SUBJECT]
//!
//! prints `_portcullis=...` sealed with SECRET (base64, as in
//! `session.secret`) for `bench:{subject}`, valid for one hour. Anyone
//! holding the secret can do this; that is why the secret is a secret.

use std::time::Duration;

use portcullis::identity::Identity;
use portcullis::session::{Sealer, SessionCodec, SessionKey};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(secret) = args.next() else {
        eprintln!("usage: mint_session SECRET [SUBJECT]");
        std::process::exit(2);
    };
    let key = match SessionKey::from_base64(&secret) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("mint_session: {e}");
            std::process::exit(2);
        }
    };
    let subject = args.next().unwrap_or_else(|| "1".to_owned());
    let codec = SessionCodec::new(Sealer::new(&key, &[]));
    let id = Identity {
        provider: "bench".into(),
        subject,
        email: Some("bench@example.com".into()),
        name: Some("Bench Mark".into()),
        login: None,
        picture: None,
        groups: Vec::new(),
    };
    println!(
        "_portcullis={}",
        codec.seal_identity("_portcullis", &id, Duration::from_secs(3600))
    );
}
