//! `examples/compose/` run without containers: the same topology (nginx round-robin in front
//! of two Portcullis replicas sharing one Redis, and an app) with the example's own
//! `portcullis.toml` and `nginx.conf`, in which only the container addresses are replaced by
//! loopback ones (each replacement must match exactly once, so an edit of the example that
//! drops one fails here). Docker itself is not run: what compose adds (images, the network,
//! `depends_on`, the health check) is not exercised; `scripts/check-examples` validates
//! `compose.yaml` against the Compose specification's schema.

use std::fs;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, COOKIE};
use reqwest::StatusCode;

use crate::common::{json, picker_link, upstream_header, CLIENT_ID, CLIENT_SECRET};
use crate::support::harness::{self, Browser, Portcullis};
use crate::support::mock_google::{self, TestUser};
use crate::support::nginx as test_nginx;
use crate::support::redis as test_redis;
use crate::support::upstream;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/compose");

/// `text` with each `(from, to)` replaced; panics unless `from` occurs exactly once.
fn replace_once(file: &str, mut text: String, pairs: &[(&str, String)]) -> String {
    for (from, to) in pairs {
        let found = text.matches(from).count();
        assert_eq!(
            found, 1,
            "{DIR}/{file} must contain `{from}` exactly once (the test replaces it), found {found}"
        );
        text = text.replace(from, to);
    }
    text
}

fn read(file: &str) -> String {
    fs::read_to_string(format!("{DIR}/{file}")).unwrap_or_else(|e| panic!("read {file}: {e}"))
}

/// `portcullis_requests_total{outcome="proxied"}` on an admin listener.
async fn proxied(admin: u16) -> u64 {
    requests(admin, "proxied").await
}

/// `portcullis_requests_total{outcome=...}` on an admin listener.
async fn requests(admin: u16, outcome: &str) -> u64 {
    let text = harness::client()
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "portcullis_requests_total{{outcome=\"{outcome}\"}} "
            ))?
            .parse()
            .ok()
        })
        .unwrap_or(0)
}

/// Signs in through the load balancer, is served by both replicas, signs out, and a saved
/// copy of the cookie is then refused by both.
#[tokio::test]
async fn compose_example_two_replicas_behind_nginx_share_sessions() {
    test_redis::require!();
    test_nginx::require!();
    let redis = test_redis::start().await;
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    google.set_auto_approve(Some(TestUser::alice()));
    let app = upstream::start().await;
    let secret = harness::session_secret();
    let lb_port = harness::free_port();
    let public_url = format!("http://127.0.0.1:{lb_port}");
    let issuer = google.issuer();
    let env = [
        ("PORTCULLIS_PUBLIC_URL", public_url.as_str()),
        ("PORTCULLIS_SESSION_SECRET", secret.as_str()),
        ("GOOGLE_CLIENT_ID", google.client_id.as_str()),
        ("GOOGLE_CLIENT_SECRET", google.client_secret.as_str()),
    ];

    let mut replicas: Vec<(Portcullis, u16)> = Vec::new();
    for _ in 0..2 {
        let admin = harness::free_port();
        let proxy = harness::start_with_env(
            |port| {
                replace_once(
                    "portcullis.toml",
                    read("portcullis.toml"),
                    &[
                        ("\"0.0.0.0:4180\"", format!("\"127.0.0.1:{port}\"")),
                        ("\"0.0.0.0:9180\"", format!("\"127.0.0.1:{admin}\"")),
                        ("\"http://app:80\"", format!("\"{}\"", app.base_url)),
                        ("\"redis://redis:6379/0\"", format!("\"{}/0\"", redis.url())),
                        (
                            "[providers.google]\n",
                            format!("[providers.google]\nissuer = \"{issuer}\"\n"),
                        ),
                    ],
                )
            },
            &env,
        )
        .await;
        replicas.push((proxy, admin));
    }
    let lb_conf = replace_once(
        "nginx.conf",
        read("nginx.conf"),
        &[
            (
                "server portcullis-1:4180;",
                format!("server 127.0.0.1:{};", replicas[0].0.port),
            ),
            (
                "server portcullis-2:4180;",
                format!("server 127.0.0.1:{};", replicas[1].0.port),
            ),
            ("listen 80;", format!("listen 127.0.0.1:{lb_port};")),
        ],
    );
    let lb = test_nginx::start_http_at(lb_port, &lb_conf)
        .await
        .unwrap_or_else(|logs| panic!("nginx could not listen on {lb_port}:\n{logs}"));

    // The probes compose and Kubernetes would use.
    for (proxy, admin) in &replicas {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = harness::client()
                .get(format!("http://127.0.0.1:{admin}/readyz"))
                .send()
                .await
                .map(|r| r.status());
            if matches!(ready, Ok(StatusCode::OK)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica not ready: {ready:?}\n{}",
                proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Sign in through the load balancer (the callback lands on either replica).
    let mut browser = Browser::new();
    let picker = browser.follow(&lb.url("/dashboard"), 3).await;
    assert_eq!(picker.url().path(), "/oauth2/sign_in");
    let link = picker_link(&picker.text().await.expect("picker"), "google");
    let resp = browser.follow(&lb.url(&link), 6).await;
    assert_eq!(resp.status(), StatusCode::OK, "hops: {:#?}", browser.hops());
    let alice = format!("google:{}", TestUser::alice().sub);
    assert_eq!(
        upstream_header(&json(resp).await, "x-user").as_deref(),
        Some(alice.as_str())
    );
    let saved = browser
        .cookie("_portcullis")
        .expect("session cookie")
        .value
        .clone();

    // Round robin: both replicas serve the session.
    let before = [proxied(replicas[0].1).await, proxied(replicas[1].1).await];
    let probe = |value: String| {
        let url = lb.url("/dashboard");
        async move {
            harness::client()
                .get(url)
                .header(ACCEPT, "application/json")
                .header(COOKIE, format!("_portcullis={value}"))
                .send()
                .await
                .expect("request through nginx")
        }
    };
    for _ in 0..6 {
        let resp = probe(saved.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            upstream_header(&json(resp).await, "x-user").as_deref(),
            Some(alice.as_str())
        );
    }
    let after = [proxied(replicas[0].1).await, proxied(replicas[1].1).await];
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "both replicas must have served: before {before:?}, after {after:?}"
    );

    // Sign out through the load balancer: the saved copy is refused by both replicas.
    let out = browser.get(&lb.url("/oauth2/sign_out")).await;
    assert_eq!(out.status(), StatusCode::FOUND);
    let refused_before = [
        requests(replicas[0].1, "unauthenticated").await,
        requests(replicas[1].1, "unauthenticated").await,
    ];
    for _ in 0..4 {
        assert_eq!(
            probe(saved.clone()).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let refused_after = [
        requests(replicas[0].1, "unauthenticated").await,
        requests(replicas[1].1, "unauthenticated").await,
    ];
    assert!(
        refused_after[0] > refused_before[0] && refused_after[1] > refused_before[1],
        "both replicas must have refused it: before {refused_before:?}, after {refused_after:?}"
    );
    assert_eq!(
        [proxied(replicas[0].1).await, proxied(replicas[1].1).await],
        after,
        "nothing proxied after sign-out"
    );
    assert!(lb.access_log().lines().count() >= 10, "{}", lb.access_log());
}
