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
