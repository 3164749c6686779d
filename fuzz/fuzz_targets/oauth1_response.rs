//! The OAuth 1.0a token endpoints' answers (`providers::oauth1::
//! request_token_response` / `access_token_response`), any body: no panic;
//! an accepted answer has a non-empty token and secret that are the first
//! values of their names among the first 32 pairs; a request token also has
//! `oauth_callback_confirmed=true` first and no newline in either value
//! (they travel as `token\nsecret` and must split back); what the request
//! parser accepts the access parser accepts too; errors and `Debug` never
//! show the secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::providers::oauth1::{access_token_response, request_token_response};

/// A secret no input is expected to hold (the property is skipped if it does).
const MARKER: &str = "tok3n-S3cret-5a1d";

fn first<'a>(kept: &'a [(String, String)], name: &str) -> Option<&'a str> {
    kept.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fuzz_target!(|body: &[u8]| {
    let all: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let kept = &all[..all.len().min(32)];

    let request = request_token_response(body);
    let access = access_token_response(body);
    match &access {
        Ok(t) => {
            assert!(!t.token.is_empty() && !t.secret.is_empty());
            assert_eq!(first(kept, "oauth_token"), Some(t.token.as_str()));
            assert_eq!(first(kept, "oauth_token_secret"), Some(t.secret.as_str()));
        }
        Err(e) => {
            assert_eq!(e.status(), 502);
            let token = first(kept, "oauth_token").unwrap_or_default();
            let secret = first(kept, "oauth_token_secret").unwrap_or_default();
            assert!(token.is_empty() || secret.is_empty(), "refused: {e}");
        }
    }
    match &request {
        Ok(t) => {
            assert_eq!(access.as_ref().ok(), Some(t), "request ok, access not");
            assert_eq!(first(kept, "oauth_callback_confirmed"), Some("true"));
            assert!(!t.token.contains('\n') && !t.secret.contains('\n'));
            let packed = format!("{}\n{}", t.token, t.secret);
            assert_eq!(
                packed.split_once('\n'),
                Some((t.token.as_str(), t.secret.as_str()))
            );
        }
        Err(e) => assert_eq!(e.status(), 502),
    }

    if body.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
        || all
            .iter()
            .any(|(k, v)| k.contains(MARKER) || v.contains(MARKER))
    {
        return;
    }
    // A secret set first is the secret read, and is never shown.
    let mut with_secret = format!("oauth_token_secret={MARKER}&").into_bytes();
    with_secret.extend_from_slice(body);
    for result in [
        request_token_response(&with_secret),
        access_token_response(&with_secret),
    ] {
        match result {
            Ok(t) => {
                assert_eq!(t.secret, MARKER);
                let shown = format!("{t:?}");
                assert!(!shown.contains(MARKER), "Debug shows the secret: {shown}");
            }
            Err(e) => {
                let shown = format!("{e} {e:?}");
                assert!(!shown.contains(MARKER), "error shows the secret: {shown}");
            }
        }
    }
});
