//! Mints a session cookie for benchmarks and debugging:
//!
//!     cargo run --example mint_session -- SECRET [USER_SUBJECT]
//!
//! prints `_portcullis=...` sealed with SECRET (base64, as in
//! `session.secret`) for `bench:{subject}`, valid for one hour. Anyone
//! holding the secret can do this; that is why the secret is a secret.
//!
//! With `REDIS_URL` set (and `REDIS_KEY_PREFIX`, default `portcullis:`),
//! the session is written to that Redis and the cookie is a ticket for
//! `store = "redis"`.

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
    if let Ok(url) = std::env::var("REDIS_URL") {
        let prefix = std::env::var("REDIS_KEY_PREFIX").unwrap_or_else(|_| "portcullis:".into());
        println!("_portcullis={}", in_redis(&codec, &id, &url, &prefix));
        return;
    }
    println!(
        "_portcullis={}",
        codec.seal_identity("_portcullis", &id, Duration::from_secs(3600))
    );
}

/// Stores the session in Redis as Portcullis does; returns the sealed ticket.
fn in_redis(codec: &SessionCodec, id: &Identity, url: &str, prefix: &str) -> String {
    use portcullis::session::{redis, store, unix_now};
    let now = unix_now();
    let expires_at = now + 3600;
    let (ticket, sealed) = store::new_ticket(codec, "_portcullis", expires_at);
    let pipe = redis::put_session(
        &redis::Keys::new(prefix),
        &store::session_id(&ticket),
        id,
        expires_at,
        now,
    );
    let stored = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let con = redis::connect_url(url).await?;
                redis::put(con, pipe).await.map_err(|e| redis::describe(&e))
            })
        });
    if let Err(e) = stored {
        eprintln!("mint_session: Redis: {e}");
        std::process::exit(1);
    }
    sealed
}
