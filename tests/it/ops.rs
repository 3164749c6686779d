//! Operations (issue 17): request ids, metrics, reload.

use reqwest::StatusCode;

use crate::common::{json, upstream_header, World, CLIENT_ID, CLIENT_SECRET};
use crate::support::harness::{self, Browser};
use crate::support::mock_google::{self, TestUser};
use crate::support::upstream;

fn cookie_header(b: &Browser, url: &str) -> String {
    b.cookie_header(&url::Url::parse(url).unwrap())
        .expect("session cookie")
}

/// A world like [`World::start`] with `server_extra` added to `[server]`.
async fn world_with_server(server_extra: &str) -> World {
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    google.set_auto_approve(Some(TestUser::alice()));
    let upstream = upstream::start().await;
    let secret = harness::session_secret();
    let proxy = harness::start(|port| {
        harness::google_config(port, &upstream.base_url, &google, &secret, "").replacen(
            "[server]\n",
            &format!("[server]\n{server_extra}\n"),
            1,
        )
    })
    .await;
    World {
        google,
        upstream,
        proxy,
        secret,
    }
}

fn is_uuid_v7(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'7',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Sends a signed-in GET with `headers`; returns the upstream's echo.
async fn echo_with(
    w: &World,
    b: &Browser,
    path: &str,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let mut req = harness::client()
        .get(w.url(path))
        .header("cookie", cookie_header(b, &w.url("/")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    json(resp).await
}

#[tokio::test]
async fn request_id_is_generated_unless_trusted_and_reaches_upstream_log_and_pages() {
    let w = World::start("").await;
    let (b, _) = w.signed_in("/").await;

    // Not trusted: the client's id (in any spelling) is replaced by a new one.
    let echo = echo_with(
        &w,
        &b,
        "/rid-untrusted",
        &[
            ("x-request-id", "client-chosen-1"),
            ("x_request_id", "forged"),
        ],
    )
    .await;
    let id = upstream_header(&echo, "x-request-id").expect("an id upstream");
    assert!(is_uuid_v7(&id), "{id}");
    assert!(upstream_header(&echo, "x_request_id").is_none());
    let logs = w.proxy.wait_for_log("path=/rid-untrusted status=200").await;
    let line = logs
        .lines()
        .find(|l| l.contains("path=/rid-untrusted "))
        .unwrap();
    assert!(line.contains(&format!("request_id={id}")), "{line}");
    assert!(!logs.contains("client-chosen-1"));

    // Each request its own id.
    let echo = echo_with(&w, &b, "/rid-again", &[]).await;
    let again = upstream_header(&echo, "x-request-id").unwrap();
    assert!(is_uuid_v7(&again) && again != id);

    // An error page names the request: the same id as the header and the log.
    let resp = harness::client()
        .get(w.url("/oauth2/start/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let page_id = resp
        .headers()
        .get("x-request-id")
        .expect("id on the answer")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(is_uuid_v7(&page_id), "{page_id}");
    let html = resp.text().await.unwrap();
    assert!(
        html.contains(&format!("Reference: <code>{page_id}</code>")),
        "{html}"
    );
    let logs = w.proxy.wait_for_log("path=/oauth2/start/nobody ").await;
    assert!(
        logs.lines()
            .any(|l| l.contains("path=/oauth2/start/nobody") && l.contains(&page_id)),
        "{logs}"
    );
}

#[tokio::test]
async fn request_id_from_the_client_is_kept_only_when_trusted_and_well_formed() {
    let w = world_with_server("trust_request_id = true").await;
    let (b, _) = w.signed_in("/").await;
    let echo = echo_with(&w, &b, "/rid-trusted", &[("x-request-id", "lb-4711.a:b")]).await;
    assert_eq!(
        upstream_header(&echo, "x-request-id").as_deref(),
        Some("lb-4711.a:b")
    );
    let logs = w.proxy.wait_for_log("request_id=lb-4711.a:b").await;
    assert!(logs
        .lines()
        .any(|l| l.contains("path=/rid-trusted ") && l.contains("request_id=lb-4711.a:b")));

    // Malformed (a space, too long): replaced.
    for bad in ["two words".to_owned(), "x".repeat(129)] {
        let echo = echo_with(&w, &b, "/rid-bad", &[("x-request-id", bad.as_str())]).await;
        let id = upstream_header(&echo, "x-request-id").unwrap();
        assert!(is_uuid_v7(&id), "{bad:?} -> {id}");
    }
}

/// The value of the series `series` (name with its labels, as rendered).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn admin_get(admin: &str, path: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match harness::client()
            .get(format!("http://{admin}{path}"))
            .send()
            .await
        {
            Ok(resp) => return resp.text().await.unwrap(),
            Err(e) if tokio::time::Instant::now() > deadline => panic!("admin listener: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// Polls `/metrics` (5 s at most) until `done` holds; returns the last text.
async fn metrics_until(admin: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = admin_get(admin, "/metrics").await;
        if done(&text) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_histograms_count_requests_and_provider_steps() {
    let admin = format!("127.0.0.1:{}", harness::free_port());
    let w = World::start(&format!("[admin]\nlisten = \"{admin}\"\n")).await;
    let (b, _) = w.signed_in("/").await;
    const SENT: usize = 25;
    let client = harness::client();
    let cookies = cookie_header(&b, &w.url("/"));
    for i in 0..SENT {
        let resp = client
            .get(w.url(&format!("/m/{i}")))
            .header("cookie", &cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // The sign-in landed on "/" (proxied) too.
    let proxied = (SENT + 1) as f64;
    let count = "portcullis_request_duration_seconds_count{outcome=\"proxied\"}";
    let text = metrics_until(&admin, |t| metric(t, count) == Some(proxied)).await;
    assert_eq!(metric(&text, count), Some(proxied), "{text}");
    assert_eq!(
        metric(&text, "portcullis_requests_total{outcome=\"proxied\"}"),
        Some(proxied)
    );
    // Buckets from 100 µs to 10 s; every request is in the +Inf bucket.
    for le in ["0.0001", "0.001", "0.1", "1", "10", "+Inf"] {
        let series = format!(
            "portcullis_request_duration_seconds_bucket{{outcome=\"proxied\",le=\"{le}\"}}"
        );
        assert!(metric(&text, &series).is_some(), "{series}\n{text}");
    }
    assert_eq!(
        metric(
            &text,
            "portcullis_request_duration_seconds_bucket{outcome=\"proxied\",le=\"+Inf\"}"
        ),
        Some(proxied)
    );
    assert_eq!(
        metric(&text, "portcullis_upstream_duration_seconds_count"),
        Some(proxied),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "portcullis_request_duration_seconds_count{outcome=\"signed_in\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "portcullis_sign_ins_total{provider=\"google\",result=\"ok\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // The sign-in's calls to the provider, by step.
    for step in ["discovery", "jwks", "token"] {
        let series = format!(
            "portcullis_provider_request_duration_seconds_count{{provider=\"google\",step=\"{step}\"}}"
        );
        assert!(
            metric(&text, &series).is_some_and(|n| n >= 1.0),
            "{series}\n{text}"
        );
    }
    for series in [
        "portcullis_config_reloads_total{result=\"failure\"}",
        "portcullis_sessions_revoked_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(metric(&text, series).is_some(), "{series}\n{text}");
    }

    // Open client connections are counted while open.
    let gauge = "portcullis_connections_active";
    let before = metric(&text, gauge).expect("connections gauge");
    let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| {
        tokio::net::TcpStream::connect(w.url("").trim_start_matches("http://").to_owned())
    }))
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let text = metrics_until(&admin, |t| metric(t, gauge) >= Some(before + 3.0)).await;
    assert!(metric(&text, gauge) >= Some(before + 3.0), "{text}");
    drop(held);
    let text = metrics_until(&admin, |t| metric(t, gauge) <= Some(before)).await;
    assert!(metric(&text, gauge) <= Some(before), "{text}");
}
