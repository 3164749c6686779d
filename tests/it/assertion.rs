//! The signed identity assertion (SPEC.md "Identity for apps and APIs"):
//! `X-User-Assertion` verified by independent verifiers (PyJWT, `jose`) with
//! the keys of `/oauth2/jwks.json`; tampered, expired, foreign-key and
//! other-audience tokens rejected by them; forged copies never reach the
//! upstream; key rotation with a published next key.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use portcullis::identity::Identity;
use portcullis::session::unix_now;

use crate::support::harness::{self, Portcullis};
use crate::support::mock_google::{self, MockGoogle};
use crate::support::upstream::{self, Upstream};
use crate::support::verifiers::Verifier;

/// A fresh key from `portcullis assertion-key`, written to `dir/name`.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let out = harness::command()
        .arg("assertion-key")
        .output()
        .expect("run portcullis assertion-key");
    assert!(out.status.success(), "assertion-key failed: {out:?}");
    let pem = String::from_utf8(out.stdout).expect("PEM is text");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write the key");
    path
}

fn alice() -> Identity {
    Identity {
        provider: "google".into(),
        subject: "1001".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice".into()),
        login: None,
        picture: None,
        groups: vec!["admins".into(), "staff team".into()],
    }
}

struct Setup {
    _google: MockGoogle,
    up: Upstream,
    secret: String,
}

impl Setup {
    async fn new() -> Setup {
        Setup {
            _google: mock_google::start("assert-client", "assert-secret").await,
            up: upstream::start().await,
            secret: harness::session_secret(),
        }
    }

    /// Portcullis on its own port whose `public_url` is `public_port`'s
    /// (so that two instances can share one issuer), with `assertion` as
    /// the `[assertion]` table's body.
    async fn start(&self, public_port: Option<u16>, assertion: &str) -> Portcullis {
        harness::start(|port| {
            let public = public_port.unwrap_or(port);
            format!(
                r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{public}"

[upstream]
url = "{up}"

[session]
secret = "{secret}"

[providers.google]
client_id = "{cid}"
client_secret = "{csecret}"
issuer = "{issuer}"

[assertion]
{assertion}
"#,
                up = self.up.base_url,
                secret = self.secret,
                cid = self._google.client_id,
                csecret = self._google.client_secret,
                issuer = self._google.issuer(),
            )
        })
        .await
    }

    fn cookie(&self) -> String {
        harness::session_cookie(&self.secret, &alice(), unix_now() + 3600)
    }

    /// GET `path` through `proxy` as alice with `extra` headers; the
    /// upstream's record of it.
    async fn through(&self, proxy: &Portcullis, path: &str, extra: &[(&str, &str)]) -> Value {
        let before = self.up.hits();
        let mut req = harness::client()
            .get(proxy.url(path))
            .header("cookie", self.cookie())
            .header("accept", "application/json");
        for (n, v) in extra {
            req = req.header(*n, *v);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 200, "{}", proxy.logs());
        assert_eq!(self.up.hits(), before + 1);
        self.up.last_request().expect("the upstream's record")
    }

    /// The assertion the upstream got for alice (exactly one).
    async fn assertion(&self, proxy: &Portcullis) -> String {
        let seen = self.through(proxy, "/app", &[]).await;
        let values = upstream::header(&seen, "x-user-assertion");
        assert_eq!(values.len(), 1, "{seen}");
        values[0].to_owned()
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// `token` with `sub` changed in the payload and the signature kept.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims(token);
    c["sub"] = Value::from("google:1002");
    let payload = URL_SAFE_NO_PAD.encode(c.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn ok(answer: &Value) -> bool {
    answer["ok"] == Value::Bool(true)
}

fn error(answer: &Value) -> &str {
    assert!(!ok(answer), "accepted but should not be: {answer}");
    answer["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn assertion_verified_by_pyjwt_jose_and_go_and_forgeries_rejected() {
    let Some(verifiers) = Verifier::require("assertion_verified_by_pyjwt_jose_and_go") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let current = new_key(keys.path(), "current.pem");
    let stranger = new_key(keys.path(), "stranger.pem");
    let setup = Setup::new().await;
    let proxy = setup
        .start(None, &format!("key_file = {current:?}\n"))
        .await;
    // An instance with a key nobody published: its tokens are forgeries.
    let rogue = setup
        .start(Some(proxy.port), &format!("key_file = {stranger:?}\n"))
        .await;

    // The JWK Set: one P-256 key, cacheable.
    let jwks = harness::client()
        .get(proxy.url("/oauth2/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(jwks.status(), 200);
    assert_eq!(
        jwks.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=300"
    );
    let set: Value = jwks.json().await.expect("JWKS JSON");
    assert_eq!(set["keys"].as_array().map(Vec::len), Some(1), "{set}");
    assert_eq!(set["keys"][0]["kty"], "EC");
    assert_eq!(set["keys"][0]["crv"], "P-256");
    assert!(set["keys"][0].get("d").is_none(), "no private part: {set}");

    // Forged copies in every spelling never reach the upstream; ours does.
    let seen = setup
        .through(
            &proxy,
            "/app",
            &[
                ("X-User-Assertion", "forged.forged.forged"),
                ("x_user_assertion", "forged2"),
                ("X-USER-ASSERTION", "forged3"),
            ],
        )
        .await;
    let sent = upstream::header(&seen, "x-user-assertion");
    assert_eq!(sent.len(), 1, "{seen}");
    assert!(!sent[0].starts_with("forged"), "{seen}");
    assert!(
        !seen.to_string().contains("forged"),
        "a forged copy reached the upstream: {seen}"
    );
    let names: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[0].as_str())
        .collect();
    assert!(!names.contains(&"x_user_assertion"), "{names:?}");

    // Signed once per session: the next request carries the same token.
    let token = sent[0].to_owned();
    assert_eq!(setup.assertion(&proxy).await, token);
    // Without a session nothing is forwarded with a token; skip_auth is not
    // configured, so the request is refused (401 JSON).
    let anonymous = harness::client()
        .get(proxy.url("/app"))
        .header("accept", "application/json")
        .header("x-user-assertion", token.as_str())
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);

    let c = claims(&token);
    let issuer = proxy.base_url.clone();
    assert_eq!(c["iss"], issuer.as_str());
    assert_eq!(c["aud"], issuer.as_str());
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);

    let forged = setup.assertion(&rogue).await;
    assert_eq!(claims(&forged)["iss"], issuer.as_str());
    let tampered = tampered(&token);
    let cases = [
        (0, token.as_str()),
        (360, token.as_str()),
        (0, tampered.as_str()),
        (0, forged.as_str()),
    ];
    let jwks_url = proxy.url("/oauth2/jwks.json");
    for v in verifiers {
        let answers = v.verify(&jwks_url, &issuer, &issuer, &cases).await;
        let name = v.name();
        assert!(
            ok(&answers[0]),
            "{name} rejected a good token: {}",
            answers[0]
        );
        let got = &answers[0]["claims"];
        assert_eq!(got["sub"], "google:1001", "{name}: {got}");
        assert_eq!(got["provider"], "google");
        assert_eq!(got["email"], "alice@example.com");
        assert_eq!(got["name"], "Alice");
        assert_eq!(got["groups"], serde_json::json!(["admins", "staff team"]));
        assert!(got.get("login").is_none() && got.get("picture").is_none());
        let expected = match v {
            Verifier::PyJwt => [
                "ExpiredSignatureError",
                "InvalidSignatureError",
                "PyJWKClientError",
            ],
            Verifier::Jose => [
                "ERR_JWT_EXPIRED",
                "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
                "ERR_JWKS_NO_MATCHING_KEY",
            ],
            Verifier::Go => ["ErrExpired", "ErrSignature", "ErrUnknownKey"],
        };
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(error(&answers[i + 1]), *want, "{name}, case {}", i + 1);
        }
        // An app with another audience refuses it.
        let other = v
            .verify(&jwks_url, &issuer, "https://other.example", &cases[..1])
            .await;
        let want = match v {
            Verifier::PyJwt => "InvalidAudienceError",
            Verifier::Jose => "ERR_JWT_CLAIM_VALIDATION_FAILED",
            Verifier::Go => "ErrAudience",
        };
        assert_eq!(error(&other[0]), want, "{name}");
    }
}

#[tokio::test]
async fn key_rotation_verifies_across_the_switch() {
    let Some(verifiers) = Verifier::require("key_rotation_verifies_across_the_switch") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let old = new_key(keys.path(), "old.pem");
    let new = new_key(keys.path(), "new.pem");
    let setup = Setup::new().await;
    let audience = "https://app.example.com";
    // Step 1: the new key is published before it signs.
    let before = setup
        .start(
            None,
            &format!(
                "key_file = {old:?}\npublish_key_files = [{new:?}]\naudience = \"{audience}\"\n"
            ),
        )
        .await;
    // Step 2 (same issuer): the new key signs, the old one stays published.
    let after = setup
        .start(
            Some(before.port),
            &format!(
                "key_file = {new:?}\npublish_key_files = [{old:?}]\naudience = \"{audience}\"\n"
            ),
        )
        .await;
    // Without the publishing step: the old key's tokens no longer verify.
    let only_new = setup
        .start(
            Some(before.port),
            &format!("key_file = {new:?}\naudience = \"{audience}\"\n"),
        )
        .await;

    let jwks_before: Value = harness::client()
        .get(before.url("/oauth2/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("JSON");
    assert_eq!(jwks_before["keys"].as_array().map(Vec::len), Some(2));

    let old_token = setup.assertion(&before).await;
    let new_token = setup.assertion(&after).await;
    assert_ne!(
        serde_json::from_slice::<Value>(
            &URL_SAFE_NO_PAD
                .decode(old_token.split('.').next().unwrap())
                .unwrap()
        )
        .unwrap()["kid"],
        serde_json::from_slice::<Value>(
            &URL_SAFE_NO_PAD
                .decode(new_token.split('.').next().unwrap())
                .unwrap()
        )
        .unwrap()["kid"],
        "the switch changes the kid"
    );
    let issuer = before.base_url.clone();
    let both = [(0, old_token.as_str()), (0, new_token.as_str())];
    for v in verifiers {
        let name = v.name();
        for proxy in [&before, &after] {
            let answers = v
                .verify(&proxy.url("/oauth2/jwks.json"), &issuer, audience, &both)
                .await;
            assert!(
                answers.iter().all(ok),
                "{name} with the keys of port {}: {answers:?}",
                proxy.port
            );
        }
        let answers = v
            .verify(&only_new.url("/oauth2/jwks.json"), &issuer, audience, &both)
            .await;
        assert!(!ok(&answers[0]), "{name}: {answers:?}");
        assert!(ok(&answers[1]), "{name}: {answers:?}");
    }
}

#[tokio::test]
async fn forward_auth_and_websockets_carry_the_assertion_and_jwks_is_absent_without_it() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let keys = tempfile::tempdir().expect("temp dir");
    let key = new_key(keys.path(), "k.pem");
    let setup = Setup::new().await;
    let proxy = setup.start(None, &format!("key_file = {key:?}\n")).await;

    // A WebSocket upgrade gets it too; a forged copy does not pass.
    let mut req = proxy
        .url("/ws")
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", setup.cookie().parse().unwrap());
    req.headers_mut()
        .insert("x-user-assertion", "forged".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket through Portcullis");
    ws.close(None).await.ok();
    let upgrade = setup
        .up
        .requests()
        .into_iter()
        .find(|r| r["path"] == "/ws")
        .expect("the upgrade reached the upstream");
    let sent = upstream::header(&upgrade, "x-user-assertion");
    assert_eq!(sent.len(), 1, "{upgrade}");
    assert_eq!(claims(sent[0])["sub"], "google:1001");
    let resp = harness::client()
        .get(proxy.url("/oauth2/auth"))
        .header("cookie", setup.cookie())
        .send()
        .await
        .expect("auth");
    assert_eq!(resp.status(), 202);
    let token = resp.headers()["x-user-assertion"].to_str().unwrap();
    assert_eq!(claims(token)["sub"], "google:1001");

    // Without [assertion]: no JWKS, no assertion header.
    let plain = harness::start(|port| {
        harness::base_config(port, &setup.up.base_url, &setup.secret)
            + &format!(
                "\n[providers.google]\nclient_id = \"a\"\nclient_secret = \"b\"\nissuer = \"{}\"\n",
                setup._google.issuer()
            )
    })
    .await;
    let jwks = harness::client()
        .get(plain.url("/oauth2/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(jwks.status(), 404);
    let seen = setup.through(&plain, "/app", &[]).await;
    assert!(upstream::header(&seen, "x-user-assertion").is_empty());
}
