//! `store = "redis"` against a real `redis-server` (tests/it/support/redis.rs): sessions shared
//! by replicas, sign-out and revocation honoured everywhere within a second, forged tickets
//! that cost Redis nothing, and Redis trouble that is never an open door.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, COOKIE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{json, picker_link, upstream_header, CLIENT_ID, CLIENT_SECRET};
use crate::support::harness::{self, Browser, Portcullis};
use crate::support::mock_google::{self, MockGoogle, TestUser};
use crate::support::redis as test_redis;
use crate::support::upstream::{self, Upstream};

const COOKIE_NAME: &str = "_portcullis";
/// What every replica must manage after a sign-out or a revocation.
const PROPAGATION: Duration = Duration::from_secs(1);
/// portcullis::session::cache::FRESH_FOR, plus slack for a loaded machine.
const CACHE_EXPIRY_DEADLINE: Duration = Duration::from_secs(9);

/// Mock Google, the echo upstream and `n` replicas sharing one secret and one Redis.
struct Site {
    google: MockGoogle,
    upstream: Upstream,
    secret: String,
    replicas: Vec<Replica>,
}

struct Replica {
    proxy: Portcullis,
    admin: u16,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        self.proxy.url(path)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }
}

fn redis_config(
    port: u16,
    admin: u16,
    upstream: &Upstream,
    google: &MockGoogle,
    secret: &str,
    redis_url: &str,
) -> String {
    store_config(
        port,
        admin,
        upstream,
        google,
        secret,
        &format!("redis_url = \"{redis_url}\"\n"),
    )
}

/// The test config with `store = "redis"` and `lines` saying where Redis is.
fn store_config(
    port: u16,
    admin: u16,
    upstream: &Upstream,
    google: &MockGoogle,
    secret: &str,
    lines: &str,
) -> String {
    harness::google_config(
        port,
        &upstream.base_url,
        google,
        secret,
        &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    )
    .replacen(
        "[session]\n",
        &format!("[session]\nstore = \"redis\"\n{lines}redis_key_prefix = \"test:\"\n"),
        1,
    )
}

impl Site {
    async fn start(n: usize, redis_url: &str) -> Site {
        let lines = format!("redis_url = \"{redis_url}\"\n");
        Site::start_with(n, |_| lines.clone()).await
    }

    /// `n` replicas; replica `i` finds Redis with `lines(i)`.
    async fn start_with(n: usize, lines: impl Fn(usize) -> String) -> Site {
        let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
        google.set_auto_approve(Some(TestUser::alice()));
        let upstream = upstream::start().await;
        let secret = harness::session_secret();
        let mut replicas = Vec::new();
        for i in 0..n {
            let admin = harness::free_port();
            let lines = lines(i);
            let proxy = harness::start(|port| {
                store_config(port, admin, &upstream, &google, &secret, &lines)
            })
            .await;
            replicas.push(Replica { proxy, admin });
        }
        Site {
            google,
            upstream,
            secret,
            replicas,
        }
    }

    /// Waits until every replica's `/readyz` is 200 (providers loaded, Redis answering).
    async fn ready(&self) {
        for r in &self.replicas {
            wait_ready(r, Duration::from_secs(10)).await;
        }
    }
}

async fn wait_ready(r: &Replica, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let resp = harness::client().get(r.admin_url("/readyz")).send().await;
        if let Ok(resp) = resp {
            if resp.status() == StatusCode::OK {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready: {:?}\nlogs:\n{}",
                    r.proxy.base_url,
                    resp.text().await,
                    r.proxy.logs()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whole sign-in through `r` as a person does it; returns the session cookie's value
/// and the upstream's echo of the page it ends on.
async fn sign_in(b: &mut Browser, r: &Replica) -> (String, Value) {
    let picker = b.follow(&r.url("/dashboard"), 3).await;
    assert_eq!(picker.status(), StatusCode::OK);
    assert_eq!(picker.url().path(), "/oauth2/sign_in");
    let html = picker.text().await.expect("picker body");
    let link = picker_link(&html, "google");
    let resp = b.follow(&r.url(&link), 6).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "hops: {:#?}\nlogs:\n{}",
        b.hops(),
        r.proxy.logs()
    );
    let echo = json(resp).await;
    let value = b
        .cookie(COOKIE_NAME)
        .expect("session cookie after sign-in")
        .value
        .clone();
    (value, echo)
}

/// What `r` does with a request for `/dashboard` carrying the cookie `value` (an API request,
/// so "no session" is a 401): the status and, when proxied, the `X-User` the app got.
async fn probe(r: &Replica, value: &str) -> (StatusCode, Option<String>) {
    let resp = harness::client()
        .get(r.url("/dashboard"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, format!("{COOKIE_NAME}={value}"))
        .send()
        .await
        .expect("request to a replica");
    let status = resp.status();
    if status == StatusCode::OK {
        let echo = json(resp).await;
        (status, upstream_header(&echo, "x-user"))
    } else {
        (status, None)
    }
}

/// Polls every replica with `value` until each refuses it (401), for at most 10 s; returns
/// how long that took from `since`. Panics on anything but 200 or 401 meanwhile.
async fn time_until_refused_everywhere(site: &Site, value: &str, since: Instant) -> Duration {
    let mut pending: Vec<usize> = (0..site.replicas.len()).collect();
    let deadline = since + Duration::from_secs(10);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for &i in &pending {
            match probe(&site.replicas[i], value).await {
                (StatusCode::UNAUTHORIZED, _) => {}
                (StatusCode::OK, _) => still.push(i),
                other => panic!("replica {i} answered {other:?}"),
            }
        }
        pending = still;
        assert!(
            Instant::now() < deadline,
            "replicas {pending:?} still serve the session 10 s later"
        );
    }
    since.elapsed()
}

fn user_of(u: &TestUser) -> String {
    format!("google:{}", u.sub)
}

async fn metric(r: &Replica, name: &str) -> Option<u64> {
    let text = harness::client()
        .get(r.admin_url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// Waits (at most `within`) until `name` reads `want` on every replica.
async fn wait_metric(site: &Site, name: &str, want: u64, within: Duration) {
    let deadline = Instant::now() + within;
    for r in &site.replicas {
        loop {
            let got = metric(r, name).await;
            if got == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} on {} is {got:?}, expected {want}",
                r.proxy.base_url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// SECURITY.md row 9 with `store = "redis"`: after sign-out, a saved copy of the cookie is
/// refused (the session is gone from Redis), not merely cleared from the browser.
#[tokio::test]
async fn security_09_replayed_cookie_after_sign_out_is_refused_with_redis() {
    test_redis::require!();
    let redis = test_redis::start().await;
    let site = Site::start(1, &redis.url()).await;
    site.ready().await;
    let r = &site.replicas[0];

    let mut b = Browser::new();
    let (saved, echo) = sign_in(&mut b, r).await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some(user_of(&TestUser::alice()).as_str())
    );
    // The cookie holds a sealed ticket, not the identity; the identity is in Redis with the
    // session's lifetime (7 days by default) as its TTL, and indexed under its user.
    assert!(
        saved.len() < 120,
        "a ticket cookie is short: {} bytes",
        saved.len()
    );
    let sessions = redis.keys("test:s:*").await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let ttl = redis.ttl(&sessions[0]).await;
    assert!(ttl > 7 * 86400 - 60 && ttl <= 7 * 86400, "TTL {ttl}");
    let index = format!("test:u:{}", user_of(&TestUser::alice()));
    assert!(redis.ttl(&index).await > 0);
    assert_eq!(probe(r, &saved).await.0, StatusCode::OK);

    let out = b.get(&r.url("/oauth2/sign_out")).await;
    assert_eq!(out.status(), StatusCode::FOUND);
    assert!(b.cookie(COOKIE_NAME).is_none(), "cookie not cleared");
    assert!(
        redis.keys("test:s:*").await.is_empty(),
        "session left in Redis"
    );

    // The replayed copy: no session, on the proxied path and everywhere else.
    assert_eq!(probe(r, &saved).await, (StatusCode::UNAUTHORIZED, None));
    let mut replay = Browser::new();
    replay.set_cookie("127.0.0.1", COOKIE_NAME, &saved, "/");
    let resp = replay.get(&r.url("/dashboard")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|l| l.starts_with("/oauth2/sign_in")));
    assert_eq!(
        replay.get(&r.url("/oauth2/userinfo")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let auth = harness::client()
        .get(r.url("/oauth2/auth"))
        .header(COOKIE, format!("{COOKIE_NAME}={saved}"))
        .send()
        .await
        .expect("auth");
    assert_eq!(auth.status(), StatusCode::UNAUTHORIZED);
}

/// Three replicas, one Redis: a sign-in through one is served by the others; a sign-out, and
/// an operator's revocation on the admin listener, are honoured by all three within one
/// second (their caches are warm, so this is the invalidation channel at work); other users
/// are unaffected.
#[tokio::test]
async fn three_replicas_share_sessions_and_honour_sign_out_and_revocation_within_a_second() {
    test_redis::require!();
    let redis = test_redis::start().await;
    let site = Site::start(3, &redis.url()).await;
    site.ready().await;
    let [a, b, c] = [&site.replicas[0], &site.replicas[1], &site.replicas[2]];

    // Alice signs in through A (twice: two browsers); Bob through B; Carol through C.
    let mut alice = Browser::new();
    let (alice_cookie, _) = sign_in(&mut alice, a).await;
    let mut alice_phone = Browser::new();
    let (alice_phone_cookie, _) = sign_in(&mut alice_phone, a).await;
    site.google.set_auto_approve(Some(TestUser::bob()));
    let mut bob = Browser::new();
    let (bob_cookie, _) = sign_in(&mut bob, b).await;
    let carol_user = TestUser::new("117000000000000000003", "carol@example.com", "Carol C");
    site.google.set_auto_approve(Some(carol_user.clone()));
    let mut carol = Browser::new();
    let (carol_cookie, _) = sign_in(&mut carol, c).await;

    // Everyone is served by every replica (which also warms every replica's cache).
    for (cookie, user) in [
        (&alice_cookie, user_of(&TestUser::alice())),
        (&alice_phone_cookie, user_of(&TestUser::alice())),
        (&bob_cookie, user_of(&TestUser::bob())),
        (&carol_cookie, user_of(&carol_user)),
    ] {
        for r in &site.replicas {
            assert_eq!(
                probe(r, cookie).await,
                (StatusCode::OK, Some(user.clone())),
                "{} does not serve {user}",
                r.proxy.base_url
            );
        }
    }

    // The operator's view.
    let list: Value = json(
        harness::client()
            .get(c.admin_url(&format!("/sessions?user={}", user_of(&TestUser::alice()))))
            .send()
            .await
            .expect("GET /sessions"),
    )
    .await;
    let list = list.as_array().expect("a JSON list");
    assert_eq!(list.len(), 2, "{list:?}");
    for s in list {
        assert_eq!(s["provider"], "google");
        assert_eq!(s["id"].as_str().map(str::len), Some(32));
        let created = s["created"].as_u64().expect("created");
        assert!(s["last_seen"].as_u64().expect("last_seen") >= created);
        assert!(s["expires"].as_u64().expect("expires") > created);
        let id = s["id"].as_str().unwrap_or_default();
        assert!(!alice_cookie.contains(id) && !alice_phone_cookie.contains(id));
    }

    // Sign-out through B ends that one session on A, B and C within a second.
    let mut out = Browser::new();
    out.set_cookie("127.0.0.1", COOKIE_NAME, &alice_cookie, "/");
    let resp = out.get(&b.url("/oauth2/sign_out")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let took = time_until_refused_everywhere(&site, &alice_cookie, Instant::now()).await;
    assert!(
        took < PROPAGATION,
        "sign-out took {took:?} to reach every replica"
    );
    eprintln!("sign-out refused on all three replicas after {took:?}");
    for r in &site.replicas {
        assert_eq!(probe(r, &alice_phone_cookie).await.0, StatusCode::OK);
        assert_eq!(probe(r, &bob_cookie).await.0, StatusCode::OK);
    }

    // Admin endpoint misuse.
    let client = harness::client();
    let revoke_alice = c.admin_url(&format!(
        "/sessions/revoke?user={}",
        user_of(&TestUser::alice())
    ));
    let resp = client.get(&revoke_alice).send().await.expect("GET revoke");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = client
        .post(c.admin_url("/sessions/revoke"))
        .send()
        .await
        .expect("POST revoke without user");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = client
        .post(&revoke_alice)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("POST revoke from a web page");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(probe(a, &alice_phone_cookie).await.0, StatusCode::OK);

    // Revocation on C's admin listener ends every session of Alice on all three, within a
    // second; Bob and Carol stay signed in.
    let resp = client
        .post(&revoke_alice)
        .send()
        .await
        .expect("POST revoke");
    assert_eq!(resp.status(), StatusCode::OK);
    let since = Instant::now();
    assert_eq!(json(resp).await, serde_json::json!({ "revoked": 1 }));
    let took = time_until_refused_everywhere(&site, &alice_phone_cookie, since).await;
    assert!(
        took < PROPAGATION,
        "revocation took {took:?} to reach every replica"
    );
    eprintln!("revocation refused on all three replicas after {took:?}");
    for r in &site.replicas {
        assert_eq!(probe(r, &bob_cookie).await.0, StatusCode::OK);
        assert_eq!(probe(r, &carol_cookie).await.0, StatusCode::OK);
    }
    let list = client
        .get(a.admin_url(&format!("/sessions?user={}", user_of(&TestUser::alice()))))
        .send()
        .await
        .expect("GET /sessions");
    assert_eq!(json(list).await, serde_json::json!([]));
    // Counted once per revoked session, on every replica (each saw the announcement).
    wait_metric(&site, "portcullis_sessions_revoked_total", 1, PROPAGATION).await;
    wait_metric(&site, "portcullis_session_store_up", 1, PROPAGATION).await;
    // A second revocation finds nothing.
    let resp = client
        .post(&revoke_alice)
        .send()
        .await
        .expect("POST revoke");
    assert_eq!(json(resp).await, serde_json::json!({ "revoked": 0 }));
}

/// `portcullis sessions list|revoke --user U --config PATH` talks to Redis directly; the
/// revocation reaches the running replicas within a second.
#[tokio::test]
async fn cli_lists_and_revokes_a_users_sessions() {
    test_redis::require!();
    let redis = test_redis::start().await;
    let site = Site::start(2, &redis.url()).await;
    site.ready().await;
    let mut alice = Browser::new();
    let (cookie, _) = sign_in(&mut alice, &site.replicas[0]).await;
    assert_eq!(probe(&site.replicas[1], &cookie).await.0, StatusCode::OK);
    let user = user_of(&TestUser::alice());
    let config = &site.replicas[1].proxy.config_path;

    let run = |args: &[&str]| {
        let out = harness::command()
            .arg("sessions")
            .args(args)
            .arg("--user")
            .arg(&user)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run portcullis sessions");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&["list"]);
    assert!(ok, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{stdout}");
    assert_eq!(list[0]["provider"], "google");

    let (ok, stdout, stderr) = run(&["revoke"]);
    let since = Instant::now();
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).expect("JSON"),
        serde_json::json!({ "revoked": 1 })
    );
    let took = time_until_refused_everywhere(&site, &cookie, since).await;
    assert!(took < PROPAGATION, "CLI revocation took {took:?}");
    wait_metric(&site, "portcullis_sessions_revoked_total", 1, PROPAGATION).await;
    let (ok, stdout, _) = run(&["list"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "[]");

    // With Redis gone the CLI fails with a message, and never prints the URL's password.
    drop(redis);
    let (ok, _, stderr) = run(&["list"]);
    assert!(!ok);
    assert!(stderr.contains("could not be used"), "{stderr}");
}

/// A forged, random, tampered or cookie-store value is "no session" after the AEAD check
/// alone: not a single Redis command (INFO commandstats, before and after). A real ticket
/// the replica has not cached does cost a command, which shows the count can move.
#[tokio::test]
async fn forged_or_random_tickets_cost_no_redis_command() {
    test_redis::require!();
    let redis = test_redis::start().await;
    let site = Site::start(1, &redis.url()).await;
    site.ready().await;
    let r = &site.replicas[0];
    let mut b = Browser::new();
    let (real, _) = sign_in(&mut b, r).await;

    // A cookie-store session sealed with the right secret (as before switching to Redis).
    use base64::Engine as _;
    let key = portcullis::session::SessionKey::from_base64(&site.secret).expect("secret");
    let codec = portcullis::session::SessionCodec::new(portcullis::session::Sealer::new(&key, &[]));
    let identity = portcullis::identity::Identity {
        provider: "google".into(),
        subject: TestUser::alice().sub,
        email: None,
        name: None,
        login: None,
        picture: None,
        groups: Vec::new(),
    };
    let cookie_store_value = codec.seal_identity(COOKIE_NAME, &identity, Duration::from_secs(600));
    let mut tampered = real.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let mut values = vec![
        cookie_store_value,
        tampered,
        String::new(),
        "x".repeat(5000),
    ];
    for n in 0..40u8 {
        let random: Vec<u8> = (0..61)
            .map(|i| n.wrapping_mul(31).wrapping_add(i))
            .collect();
        values.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random));
    }

    // The replica's own background traffic (health and channel pings, connection set-up) and
    // our INFO are not counted; everything else is.
    let counted = |calls: &std::collections::BTreeMap<String, u64>| -> u64 {
        calls
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "ping" | "info" | "client|setinfo" | "hello" | "select" | "subscribe"
                )
            })
            .map(|(_, n)| n)
            .sum()
    };
    // What a session lookup sends (the script, by hash or in full).
    let lookups = |calls: &std::collections::BTreeMap<String, u64>| -> u64 {
        calls.get("evalsha").copied().unwrap_or(0) + calls.get("eval").copied().unwrap_or(0)
    };
    let before = redis.command_calls().await;
    for value in &values {
        assert_eq!(probe(r, value).await, (StatusCode::UNAUTHORIZED, None));
        let resp = harness::client()
            .get(r.url("/oauth2/auth"))
            .header(COOKIE, format!("{COOKIE_NAME}={value}"))
            .send()
            .await
            .expect("auth");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let after = redis.command_calls().await;
    assert_eq!(
        counted(&before),
        counted(&after),
        "forged tickets reached Redis:\nbefore {before:?}\nafter  {after:?}"
    );

    // Positive control: the real ticket on a replica that has never seen it is a miss, and
    // costs Redis a command.
    let admin = harness::free_port();
    let proxy = harness::start(|port| {
        redis_config(
            port,
            admin,
            &site.upstream,
            &site.google,
            &site.secret,
            &redis.url(),
        )
    })
    .await;
    let fresh = Replica { proxy, admin };
    wait_ready(&fresh, Duration::from_secs(10)).await;
    let before = redis.command_calls().await;
    assert_eq!(probe(&fresh, &real).await.0, StatusCode::OK);
    let after = redis.command_calls().await;
    assert_eq!(
        lookups(&after),
        lookups(&before) + 1,
        "a cache miss asks Redis once: before {before:?} after {after:?}"
    );
}

/// Redis down at start-up: the proxy starts, `/readyz` says why, a sign-in gets a clean 503
/// page (before the detour through the provider); once Redis is there, everything works
/// without a restart. The outage is logged once, not per request.
#[tokio::test]
async fn redis_down_at_start_up_then_available() {
    test_redis::require!();
    let port = harness::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let site = Site::start(1, &url).await;
    let r = &site.replicas[0];

    // /readyz: 503 with the reason, once the first health check has failed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let why = loop {
        let resp = harness::client()
            .get(r.admin_url("/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = resp.text().await.unwrap_or_default();
        if body.contains("unreachable") || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        why.contains("session store: Redis is unreachable (connection refused)"),
        "{why}"
    );

    // A sign-in: a clean 503 page at /oauth2/start, no trip to the provider.
    let hits = site.google.authorize_hits();
    let mut b = Browser::new();
    let picker = b.follow(&r.url("/dashboard"), 3).await;
    assert_eq!(picker.status(), StatusCode::OK, "the picker still works");
    let link = picker_link(&picker.text().await.unwrap_or_default(), "google");
    for _ in 0..5 {
        let resp = b.get(&r.url(&link)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("5")
        );
        let page = resp.text().await.unwrap_or_default();
        assert!(page.contains("Temporarily unavailable"), "{page}");
        assert!(
            !page.contains(&port.to_string()),
            "the page names no address: {page}"
        );
    }
    assert_eq!(site.google.authorize_hits(), hits);
    let logs = r.proxy.logs();
    assert_eq!(
        logs.matches("Redis is unreachable at start-up").count(),
        1,
        "logged once:\n{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");

    // Redis arrives: ready, and a sign-in works, without restarting Portcullis.
    let redis = test_redis::start_with(test_redis::Options {
        port,
        persistent: false,
    })
    .await;
    wait_ready(r, Duration::from_secs(10)).await;
    let (cookie, echo) = sign_in(&mut b, r).await;
    assert_eq!(
        upstream_header(&echo, "x-user").as_deref(),
        Some(user_of(&TestUser::alice()).as_str())
    );
    assert_eq!(probe(r, &cookie).await.0, StatusCode::OK);
    assert_eq!(redis.keys("test:s:*").await.len(), 1);
    r.proxy
        .wait_for_log("session store: connected to Redis")
        .await;
}

/// Redis killed while running: no panic; sessions in the cache keep working until their
/// entry's short expiry, then every request with a session gets a clean 503 (HTML for a
/// browser, JSON for an API client), never a pass without a check; `/readyz` says why. Redis
/// restarted (with its data): the same session works again without restarting Portcullis.
#[tokio::test]
async fn redis_lost_while_running_fails_closed_then_resumes() {
    test_redis::require!();
    let mut redis = test_redis::start_with(test_redis::Options {
        port: 0,
        persistent: true,
    })
    .await;
    let site = Site::start(1, &redis.url()).await;
    site.ready().await;
    let r = &site.replicas[0];
    let mut b = Browser::new();
    let (cookie, _) = sign_in(&mut b, r).await;
    let signed_in = Instant::now();
    let served_before = site.upstream.hits();

    redis.kill();
    // The entry written at sign-in is still fresh: served from the cache.
    let (status, _) = probe(r, &cookie).await;
    if signed_in.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            status,
            StatusCode::OK,
            "a fresh cache entry serves while Redis is away"
        );
    }
    // Then, within the entry's expiry, 503 and nothing else; no request reaches the app
    // after that.
    let deadline = Instant::now() + CACHE_EXPIRY_DEADLINE;
    loop {
        match probe(r, &cookie).await.0 {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => break,
            other => panic!("while Redis is down: {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "the cached session was still served {CACHE_EXPIRY_DEADLINE:?} after Redis died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hits = site.upstream.hits();
    assert!(hits >= served_before);
    for _ in 0..20 {
        assert_eq!(probe(r, &cookie).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    let resp = b.get(&r.url("/dashboard")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    assert!(resp
        .text()
        .await
        .unwrap_or_default()
        .contains("Temporarily unavailable"));
    let resp = harness::client()
        .get(r.url("/dashboard"))
        .header(ACCEPT, "application/json")
        .header(COOKIE, format!("{COOKIE_NAME}={cookie}"))
        .send()
        .await
        .expect("api request");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json(resp).await,
        serde_json::json!({ "error": "session_store_unavailable" })
    );
    assert_eq!(
        site.upstream.hits(),
        hits,
        "nothing reached the app while failing closed"
    );
    // Sign-out cannot end the session now: it says so and keeps the cookie for a retry.
    let out = b.get(&r.url("/oauth2/sign_out")).await;
    assert_eq!(out.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(b.cookie(COOKIE_NAME).is_some());
    // No session at all is still just "no session" (no Redis needed to know that).
    assert_eq!(probe(r, "forged").await.0, StatusCode::UNAUTHORIZED);
    let readyz = harness::client()
        .get(r.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(readyz
        .text()
        .await
        .unwrap_or_default()
        .contains("Redis is unreachable"));
    assert!(r.proxy.logs().contains("Redis is unreachable;"));

    // Redis is back, with its data: the same cookie works again, no restart.
    redis.restart().await;
    wait_ready(r, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match probe(r, &cookie).await {
            (StatusCode::OK, user) => {
                assert_eq!(user.as_deref(), Some(user_of(&TestUser::alice()).as_str()));
                break;
            }
            (StatusCode::SERVICE_UNAVAILABLE, _) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("after Redis came back: {other:?}"),
        }
    }
    let logs = r.proxy.wait_for_log("Redis is reachable again").await;
    assert_eq!(logs.matches("Redis is unreachable;").count(), 1, "{logs}");
    assert_eq!(
        logs.matches("Redis is reachable again").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(r.proxy_alive());
}

impl Replica {
    fn proxy_alive(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.proxy.pid())).is_ok()
    }
}

/// With the cookie store there are no sessions to list: the admin endpoints say so.
#[tokio::test]
async fn session_endpoints_explain_themselves_with_the_cookie_store() {
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    let upstream = upstream::start().await;
    let secret = harness::session_secret();
    let admin = harness::free_port();
    let proxy = harness::start(|port| {
        harness::google_config(
            port,
            &upstream.base_url,
            &google,
            &secret,
            &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
        )
    })
    .await;
    let r = Replica { proxy, admin };
    let resp = harness::client()
        .get(r.admin_url("/sessions?user=google:1"))
        .send()
        .await
        .expect("GET /sessions");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = json(resp).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cookie"),
        "{body}"
    );
    assert_eq!(
        metric(&r, "portcullis_sessions_revoked_total").await,
        Some(0)
    );
    let out = harness::command()
        .args(["sessions", "list", "--user", "google:1", "--config"])
        .arg(&r.proxy.config_path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("store is \"cookie\""));
}

/// Three replicas behind nginx round-robin (one `public_url`, one Redis): a sign-in whose
/// requests land on different replicas works; the next requests are served by each of the
/// three; a sign-out through nginx makes a saved copy of the cookie useless on all three
/// within a second; an operator's revocation ends every session of that user, and only hers.
#[tokio::test]
async fn three_replicas_behind_nginx_round_robin() {
    use crate::support::nginx;
    test_redis::require!();
    nginx::require!();
    let redis = test_redis::start().await;
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    google.set_auto_approve(Some(TestUser::alice()));
    let upstream = upstream::start().await;
    let secret = harness::session_secret();
    let front = harness::free_port();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let admin = harness::free_port();
        let proxy = harness::start(|port| {
            redis_config(port, admin, &upstream, &google, &secret, &redis.url()).replacen(
                &format!("public_url = \"http://127.0.0.1:{port}\""),
                &format!("public_url = \"http://127.0.0.1:{front}\""),
                1,
            )
        })
        .await;
        replicas.push(Replica { proxy, admin });
    }
    let backends: Vec<String> = replicas
        .iter()
        .map(|r| format!("127.0.0.1:{}", r.proxy.port))
        .collect();
    let lb = nginx::start_balancer_at(front, &backends)
        .await
        .unwrap_or_else(|logs| panic!("nginx could not listen on {front}:\n{logs}"));
    let site = Site {
        google,
        upstream,
        secret,
        replicas,
    };
    site.ready().await;
    let through_lb = |value: String| {
        let url = lb.url("/dashboard");
        async move {
            harness::client()
                .get(url)
                .header(ACCEPT, "application/json")
                .header(COOKIE, format!("{COOKIE_NAME}={value}"))
                .send()
                .await
                .expect("request through nginx")
                .status()
        }
    };
    // Alice signs in through nginx: start, callback and the return land on whichever replica
    // nginx picks.
    let mut alice = Browser::new();
    let (alice_cookie, user) = sign_in_through(&mut alice, &lb.base_url).await;
    assert_eq!(user.as_deref(), Some(user_of(&TestUser::alice()).as_str()));
    // The next requests are spread over the three, and each serves her.
    for _ in 0..6 {
        assert_eq!(through_lb(alice_cookie.clone()).await, StatusCode::OK);
    }
    let line = format!("outcome=proxied user={}", user_of(&TestUser::alice()));
    for r in &site.replicas {
        r.proxy.wait_for_log(&line).await;
    }

    // Sign-out through nginx: a saved copy is refused by all three within a second.
    let out = alice.get(&lb.url("/oauth2/sign_out")).await;
    assert_eq!(out.status(), StatusCode::FOUND);
    let took = time_until_refused_everywhere(&site, &alice_cookie, Instant::now()).await;
    assert!(took < PROPAGATION, "sign-out took {took:?}");
    for _ in 0..6 {
        assert_eq!(
            through_lb(alice_cookie.clone()).await,
            StatusCode::UNAUTHORIZED
        );
    }

    // Bob (two browsers) and Carol sign in through nginx; Bob's sessions are revoked.
    site.google.set_auto_approve(Some(TestUser::bob()));
    let (bob_1, _) = sign_in_through(&mut Browser::new(), &lb.base_url).await;
    let (bob_2, _) = sign_in_through(&mut Browser::new(), &lb.base_url).await;
    let carol_user = TestUser::new("117000000000000000003", "carol@example.com", "Carol C");
    site.google.set_auto_approve(Some(carol_user));
    let (carol, _) = sign_in_through(&mut Browser::new(), &lb.base_url).await;
    for value in [&bob_1, &bob_2, &carol] {
        for r in &site.replicas {
            assert_eq!(probe(r, value).await.0, StatusCode::OK);
        }
    }
    let resp = harness::client()
        .post(site.replicas[1].admin_url(&format!(
            "/sessions/revoke?user={}",
            user_of(&TestUser::bob())
        )))
        .send()
        .await
        .expect("POST revoke");
    let since = Instant::now();
    assert_eq!(json(resp).await, serde_json::json!({ "revoked": 2 }));
    for value in [&bob_1, &bob_2] {
        let took = time_until_refused_everywhere(&site, value, since).await;
        assert!(took < PROPAGATION, "revocation took {took:?}");
    }
    for _ in 0..6 {
        assert_eq!(through_lb(bob_2.clone()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(through_lb(carol.clone()).await, StatusCode::OK);
    }
}

/// The whole sign-in through the front at `base`; the session cookie's value and the `X-User`
/// the app got on the page it ends on.
async fn sign_in_through(b: &mut Browser, base: &str) -> (String, Option<String>) {
    let picker = b.follow(&format!("{base}/dashboard"), 3).await;
    assert_eq!(picker.status(), StatusCode::OK);
    let link = picker_link(&picker.text().await.unwrap_or_default(), "google");
    let resp = b.follow(&format!("{base}{link}"), 6).await;
    assert_eq!(resp.status(), StatusCode::OK, "hops: {:#?}", b.hops());
    let echo = json(resp).await;
    let value = b.cookie(COOKIE_NAME).expect("session cookie").value.clone();
    (value, upstream_header(&echo, "x-user"))
}

/// How many times a replica's log says it took a master named by the Sentinels.
fn masters_taken(r: &Replica) -> usize {
    r.proxy
        .logs()
        .matches("the Sentinels name this Redis master")
        .count()
}

/// `redis_sentinel_urls` + `redis_sentinel_master` with a real Sentinel (`redis-server
/// --sentinel`) watching a master and a replica; a Sentinel address that refuses connections
/// is listed first. Two replicas share a sign-in and honour a sign-out; after `SENTINEL
/// FAILOVER` both follow the new master: the session from before is still served, a new
/// sign-in is written to the new master, and a sign-out is honoured by both within a second.
#[tokio::test]
async fn sentinel_sign_in_and_out_and_a_failover() {
    test_redis::require!();
    let setup = test_redis::SentinelSetup::start().await;
    let dead = harness::free_port();
    let lines = format!(
        "redis_sentinel_urls = [\"redis://127.0.0.1:{dead}\", \"{}\"]\nredis_sentinel_master = \"{}\"\n",
        setup.sentinel.url(),
        setup.name
    );
    let site = Site::start_with(2, |_| lines.clone()).await;
    site.ready().await;
    let [a, b] = [&site.replicas[0], &site.replicas[1]];
    let alice = user_of(&TestUser::alice());

    // Two sessions through A and B, each served by the other; on the master.
    let mut browser = Browser::new();
    let (kept, _) = sign_in(&mut browser, a).await;
    let mut other = Browser::new();
    let (gone, _) = sign_in(&mut other, b).await;
    for cookie in [&kept, &gone] {
        for r in &site.replicas {
            assert_eq!(
                probe(r, cookie).await,
                (StatusCode::OK, Some(alice.clone()))
            );
        }
    }
    assert_eq!(setup.master.keys("test:s:*").await.len(), 2);

    // Sign-out through A: refused by both within a second; the other session stays.
    let resp = other.get(&a.url("/oauth2/sign_out")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let took = time_until_refused_everywhere(&site, &gone, Instant::now()).await;
    assert!(took < PROPAGATION, "sign-out took {took:?} to reach both");
    for r in &site.replicas {
        assert_eq!(probe(r, &kept).await.0, StatusCode::OK);
    }

    // The replica has the session (replication is asynchronous), then takes over.
    let deadline = Instant::now() + Duration::from_secs(10);
    while setup.replica.keys("test:s:*").await.len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the replica never got the session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(masters_taken(a), 1, "{}", a.proxy.logs());
    setup.failover().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for r in &site.replicas {
        while masters_taken(r) < 2 {
            assert!(
                Instant::now() < deadline,
                "{} did not follow the new master:\n{}",
                r.proxy.base_url,
                r.proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wait_ready(r, Duration::from_secs(10)).await;
    }

    // After the failover: the old session is served, Bob signs in through B and his
    // session is on the new master, and signing Alice out through B is honoured by both.
    for r in &site.replicas {
        assert_eq!(probe(r, &kept).await, (StatusCode::OK, Some(alice.clone())));
    }
    site.google.set_auto_approve(Some(TestUser::bob()));
    let mut bob = Browser::new();
    let (bob_cookie, _) = sign_in(&mut bob, b).await;
    assert_eq!(
        probe(a, &bob_cookie).await,
        (StatusCode::OK, Some(user_of(&TestUser::bob())))
    );
    assert_eq!(setup.replica.keys("test:s:*").await.len(), 2);
    let resp = browser.get(&b.url("/oauth2/sign_out")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let took = time_until_refused_everywhere(&site, &kept, Instant::now()).await;
    assert!(
        took < PROPAGATION,
        "sign-out after the failover took {took:?} to reach both"
    );
    eprintln!("sign-out after the failover refused on both replicas after {took:?}");
    assert_eq!(probe(a, &bob_cookie).await.0, StatusCode::OK);
}

/// `redis_cluster_urls` with a real three-node Redis Cluster (`redis-cli --cluster create`):
/// each replica lists the nodes in another order, so each listens for invalidations on
/// another node. Sessions and the per-user index land in different slots; sign-in, sharing,
/// listing, sign-out, revocation and the command line work across the nodes, and a
/// sign-out or revocation reaches every replica within a second.
#[tokio::test]
async fn cluster_sign_in_out_and_revocation() {
    test_redis::require!();
    let cluster = test_redis::ClusterSetup::start().await;
    let site = Site::start_with(3, |i| {
        let urls: Vec<String> = cluster
            .urls_from(i)
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect();
        format!("redis_cluster_urls = [{}]\n", urls.join(", "))
    })
    .await;
    site.ready().await;
    let [a, b, c] = [&site.replicas[0], &site.replicas[1], &site.replicas[2]];
    let alice = user_of(&TestUser::alice());
    let bob = user_of(&TestUser::bob());

    let mut alice_laptop = Browser::new();
    let (laptop, _) = sign_in(&mut alice_laptop, a).await;
    let mut alice_phone = Browser::new();
    let (phone, _) = sign_in(&mut alice_phone, b).await;
    site.google.set_auto_approve(Some(TestUser::bob()));
    let mut bob_browser = Browser::new();
    let (bob_cookie, _) = sign_in(&mut bob_browser, c).await;
    for (cookie, user) in [(&laptop, &alice), (&phone, &alice), (&bob_cookie, &bob)] {
        for r in &site.replicas {
            assert_eq!(probe(r, cookie).await, (StatusCode::OK, Some(user.clone())));
        }
    }
    let sessions = cluster.keys("test:s:*").await;
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    let mut nodes = Vec::new();
    for key in sessions
        .iter()
        .chain([&format!("test:u:{alice}"), &format!("test:u:{bob}")])
    {
        nodes.push(cluster.node_of(key).await.expect("the key is on a node"));
    }
    eprintln!("nodes of the three sessions and the two user indexes: {nodes:?}");

    let list = json(
        harness::client()
            .get(c.admin_url(&format!("/sessions?user={alice}")))
            .send()
            .await
            .expect("GET /sessions"),
    )
    .await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    // Sign-out through C: the laptop's session is refused by all three within a second.
    let resp = alice_laptop.get(&c.url("/oauth2/sign_out")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let took = time_until_refused_everywhere(&site, &laptop, Instant::now()).await;
    assert!(
        took < PROPAGATION,
        "sign-out took {took:?} to reach every replica"
    );
    eprintln!("cluster: sign-out refused on all three replicas after {took:?}");
    assert_eq!(probe(a, &phone).await.0, StatusCode::OK);

    // Revocation on A's admin listener: Alice's other session ends everywhere; Bob stays.
    let resp = harness::client()
        .post(a.admin_url(&format!("/sessions/revoke?user={alice}")))
        .send()
        .await
        .expect("POST revoke");
    let since = Instant::now();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await, serde_json::json!({ "revoked": 1 }));
    let took = time_until_refused_everywhere(&site, &phone, since).await;
    assert!(
        took < PROPAGATION,
        "revocation took {took:?} to reach every replica"
    );
    eprintln!("cluster: revocation refused on all three replicas after {took:?}");
    for r in &site.replicas {
        assert_eq!(probe(r, &bob_cookie).await.0, StatusCode::OK);
    }
    assert_eq!(
        cluster.keys(&format!("test:u:{alice}")).await,
        Vec::<String>::new()
    );

    // The command line reaches the cluster too.
    let out = harness::command()
        .args(["sessions", "list", "--user", &bob, "--config"])
        .arg(&b.proxy.config_path)
        .output()
        .expect("run portcullis sessions");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

/// Sentinel or Cluster unreachable at start-up: the proxy starts, `/readyz` says why without
/// naming an address, and a sign-in is a clean 503 before any trip to the provider.
#[tokio::test]
async fn sentinel_or_cluster_unreachable_at_start_up_is_a_clean_503() {
    test_redis::require!();
    let dead: Vec<u16> = (0..3).map(|_| harness::free_port()).collect();
    let site = Site::start_with(2, |i| {
        if i == 0 {
            format!(
                "redis_sentinel_urls = [\"redis://127.0.0.1:{}\", \"redis://127.0.0.1:{}\"]\nredis_sentinel_master = \"m\"\n",
                dead[0], dead[1]
            )
        } else {
            let urls: Vec<String> = dead
                .iter()
                .map(|p| format!("\"redis://127.0.0.1:{p}\""))
                .collect();
            format!("redis_cluster_urls = [{}]\n", urls.join(", "))
        }
    })
    .await;
    for (r, reason) in [
        (&site.replicas[0], "no master from the Sentinels"),
        (&site.replicas[1], "session store: Redis is unreachable"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let why = loop {
            let resp = harness::client()
                .get(r.admin_url("/readyz"))
                .send()
                .await
                .expect("readyz");
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = resp.text().await.unwrap_or_default();
            if body.contains(reason) || Instant::now() > deadline {
                break body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(why.contains(reason), "{why}");
        assert!(
            dead.iter().all(|p| !why.contains(&p.to_string())),
            "no address in /readyz: {why}"
        );
        let hits = site.google.authorize_hits();
        let mut b = Browser::new();
        let picker = b.follow(&r.url("/dashboard"), 3).await;
        assert_eq!(picker.status(), StatusCode::OK, "the picker still works");
        let link = picker_link(&picker.text().await.unwrap_or_default(), "google");
        let resp = b.get(&r.url(&link)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(site.google.authorize_hits(), hits);
        let logs = r.proxy.logs();
        assert!(!logs.contains("panicked"), "{logs}");
    }
}
