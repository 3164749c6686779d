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
    world_with_server_env(server_extra, &[]).await
}

async fn world_with_server_env(server_extra: &str, env: &[(&str, &str)]) -> World {
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    google.set_auto_approve(Some(TestUser::alice()));
    let upstream = upstream::start().await;
    let secret = harness::session_secret();
    let proxy = harness::start_with_env(
        |port| {
            harness::google_config(port, &upstream.base_url, &google, &secret, "").replacen(
                "[server]\n",
                &format!("[server]\n{server_extra}\n"),
                1,
            )
        },
        env,
    )
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

pub(crate) async fn admin_get(admin: &str, path: &str) -> String {
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

/// Sends SIGHUP to the proxy.
pub(crate) fn sighup(proxy: &harness::Portcullis) {
    // SAFETY: kill(2) with our own child's pid and a plain signal number.
    unsafe {
        libc::kill(proxy.pid() as i32, libc::SIGHUP);
    }
}

/// Traffic: `workers` clients, each on its own connection (kept alive or
/// a new one per request), sending signed-in requests until finished.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    clients: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Traffic {
    /// Started, and 50 requests answered.
    async fn start(url: String, cookies: String, workers: usize, keep_alive: bool) -> Traffic {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..workers).map(|w| {
            let (url, cookies, stop, done) =
                (url.clone(), cookies.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(usize::from(keep_alive))
                    .timeout(std::time::Duration::from_secs(30))
                    .build()
                    .unwrap();
                let (mut ok, mut failed) = (0usize, Vec::new());
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let r = client
                        .get(format!("{url}/load/{w}/{i}"))
                        .header("cookie", &cookies)
                        .header("accept", "application/json")
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status() == StatusCode::OK => {
                            let _ = resp.bytes().await;
                            ok += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => failed.push(format!("status {}", resp.status())),
                        Err(e) => failed.push(format!("error {e:?}")),
                    }
                }
                (ok, failed)
            })
        });
        let tasks: Vec<_> = tasks.collect();
        let clients = tokio::spawn(async move {
            let mut ok = 0;
            let mut failed = Vec::new();
            for t in futures_util::future::join_all(tasks).await {
                let (o, f) = t.unwrap();
                ok += o;
                failed.extend(f);
            }
            (ok, failed)
        });
        let traffic = Traffic {
            stop,
            done,
            clients,
        };
        traffic.more(50).await;
        traffic
    }

    /// Waits until `more` further requests were answered (15 s at most).
    async fn more(&self, more: usize) {
        let target = self.done.load(std::sync::atomic::Ordering::Relaxed) + more;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.done.load(std::sync::atomic::Ordering::Relaxed) < target {
            assert!(tokio::time::Instant::now() < deadline, "traffic stalled");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients; panics (with `context()`) if any request failed.
    /// Returns how many succeeded.
    async fn finish(self, context: impl Fn() -> String) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = self.clients.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} of {} failed: {:?}\n{}",
            failed.len(),
            ok + failed.len(),
            &failed[..failed.len().min(5)],
            context()
        );
        ok
    }
}

/// A signed-in request that takes 1.5 s upstream: in flight across a switch.
fn slow_request(
    url: String,
    cookies: &str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    tokio::spawn(
        harness::client()
            .get(format!("{url}/delay/1500"))
            .header("cookie", cookies)
            .send(),
    )
}

/// Waits (30 s at most) for the old process of a hand-over to exit on its own.
async fn exits_on_its_own(proxy: &mut harness::Portcullis) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = proxy.try_exit_status() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old process did not exit:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_providers_rules_and_secret_under_traffic_without_a_failure() {
    let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
    google.set_auto_approve(Some(TestUser::alice()));
    let acme = mock_google::start("acme-client", "acme-secret").await;
    acme.set_auto_approve(Some(TestUser::alice()));
    let upstream = upstream::start().await;
    let old_secret = harness::session_secret();
    let new_secret = harness::session_secret();
    let admin = format!("127.0.0.1:{}", harness::free_port());
    let admin_table = format!("[admin]\nlisten = \"{admin}\"\n");
    let before = |port: u16| {
        harness::google_config(port, &upstream.base_url, &google, &old_secret, &admin_table)
    };
    // After: a second provider, new routes, the secret rotated.
    let after = |port: u16| {
        let base =
            harness::google_config(port, &upstream.base_url, &google, &new_secret, &admin_table);
        let base = base.replacen(
            &format!("secret = \"{new_secret}\"\n"),
            &format!("secret = \"{new_secret}\"\nprevious_secrets = [\"{old_secret}\"]\n"),
            1,
        );
        format!(
            r#"{base}
[providers.acme]
kind = "oidc"
display_name = "Acme SSO"
issuer = "{issuer}"
client_id = "acme-client"
client_secret = "acme-secret"

[[routes]]
path = "^/open/"
public = true

[[routes]]
path = "^/closed/"
allowed_emails = ["nobody@example.com"]
"#,
            issuer = acme.issuer()
        )
    };
    let proxy = harness::start(before).await;
    proxy.wait_for_log("SIGHUP reloads the configuration").await;
    let after = after(proxy.port);
    let w = World {
        google,
        upstream,
        proxy,
        secret: old_secret.clone(),
    };
    let (b, _) = w.signed_in("/").await;
    let cookies = cookie_header(&b, &w.url("/"));
    let client = harness::client();
    let get = |path: &str, with_cookie: bool| {
        let mut r = client.get(w.url(path)).header("accept", "application/json");
        if with_cookie {
            r = r.header("cookie", &cookies);
        }
        r.send()
    };
    // Before: /open/ needs a session, /closed/ lets Alice in, one provider.
    assert_eq!(
        get("/open/x", false).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/closed/x", true).await.unwrap().status(),
        StatusCode::OK
    );
    let picker = get("/oauth2/sign_in", false)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!picker.contains("/oauth2/start/acme"));

    let load = Traffic::start(w.url(""), cookies.clone(), 4, true).await;
    // A slow request in flight across the reload finishes.
    let slow = slow_request(w.url(""), &cookies);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    std::fs::write(&w.proxy.config_path, &after).unwrap();
    sighup(&w.proxy);
    w.proxy.wait_for_log("configuration reloaded").await;
    load.more(200).await;

    // After: the new rules apply to new requests, the new provider signs in.
    assert_eq!(
        get("/open/x", false).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/closed/x", true).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let picker = get("/oauth2/sign_in", false)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link = crate::common::picker_link(&picker, "acme");
    let mut b2 = Browser::new();
    let landed = b2.follow(&w.url(&link), 6).await;
    assert_eq!(
        landed.status(),
        StatusCode::OK,
        "hops: {:#?}\nlogs:\n{}",
        b2.hops(),
        w.proxy.logs()
    );
    let echo = json(landed).await;
    assert!(
        upstream_header(&echo, "x-user").is_some_and(|u| u.starts_with("acme:")),
        "{echo}"
    );
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), StatusCode::OK);

    // An invalid file is refused with every problem, and nothing changes.
    std::fs::write(
        &w.proxy.config_path,
        after.replacen("[server]\n", "[server]\nthreads = 0\nbogus = 1\n", 1),
    )
    .unwrap();
    sighup(&w.proxy);
    let logs = w
        .proxy
        .wait_for_log("configuration reload refused: the running configuration stays")
        .await;
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("configuration reload refused: "))
        .collect();
    assert!(
        refused.iter().any(|l| l.contains("server.threads")),
        "{logs}"
    );
    assert!(refused.iter().any(|l| l.contains("bogus")), "{logs}");
    load.more(100).await;
    assert_eq!(
        get("/open/x", false).await.unwrap().status(),
        StatusCode::OK
    );
    let picker = get("/oauth2/sign_in", false)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(picker.contains("/oauth2/start/acme"));

    let ok = load.finish(String::new).await;
    assert!(ok >= 350, "{ok}");
    eprintln!("reload under traffic: {ok} requests, none failed");
    // The old session (sealed with the previous secret) kept working, and
    // still does.
    assert_eq!(get("/after", true).await.unwrap().status(), StatusCode::OK);

    let text = metrics_until(&admin, |t| {
        metric(t, "portcullis_config_reloads_total{result=\"failure\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        metric(&text, "portcullis_config_reloads_total{result=\"success\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "portcullis_config_reloads_total{result=\"failure\"}"),
        Some(1.0),
        "{text}"
    );
    // The upstream saw no connection break: every request answered.
    assert!(
        w.proxy.logs().matches("error=").count() == 0,
        "{}",
        w.proxy.logs()
    );
}

/// A tiny OTLP/HTTP collector: every span POSTed to `/v1/traces`.
struct Collector {
    url: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn collector() -> Collector {
    use axum::body::Bytes;
    use axum::extract::State;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    type Spans = std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>;
    async fn export(State(spans): State<Spans>, body: Bytes) -> axum::http::StatusCode {
        let Ok(req) = ExportTraceServiceRequest::decode(body) else {
            return axum::http::StatusCode::BAD_REQUEST;
        };
        let mut all = spans.lock().unwrap();
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                all.extend(ss.spans);
            }
        }
        axum::http::StatusCode::OK
    }
    let spans: Spans = Default::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Collector {
        url,
        spans,
        _task: task,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn otlp_spans_of_a_sign_in_with_parent_links_and_traceparent_upstream() {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    let c = collector().await;
    let w = World::start(&format!("[telemetry]\notlp_endpoint = \"{}\"\n", c.url)).await;
    let (b, _) = w.signed_in("/traced").await;
    // A proxied request under a client's trace.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let echo = echo_with(
        &w,
        &b,
        "/traced-again?token=secret-in-query",
        &[(
            "traceparent",
            &format!("00-{client_trace}-{client_span}-01"),
        )],
    )
    .await;
    let sent = upstream_header(&echo, "traceparent").expect("traceparent upstream");

    let find = |name: &str| {
        c.spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name)
            .cloned()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while find("GET /traced-again").is_none() || find("provider token").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans: {:?}\nlogs:\n{}",
            c.spans
                .lock()
                .unwrap()
                .iter()
                .map(|s| &s.name)
                .collect::<Vec<_>>(),
            w.proxy.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let spans = c.spans.lock().unwrap().clone();

    // The callback's request span is the parent of the token call.
    let callback = spans
        .iter()
        .find(|s| s.name == "GET /oauth2/callback/google")
        .expect("callback span");
    assert_eq!(callback.kind, SpanKind::Server as i32);
    let token = spans.iter().find(|s| s.name == "provider token").unwrap();
    assert_eq!(token.kind, SpanKind::Client as i32);
    assert_eq!(token.trace_id, callback.trace_id);
    assert_eq!(token.parent_span_id, callback.span_id);

    // The proxied request: child of the client's span, and the upstream got
    // the traceparent of its own "upstream" child span.
    let request = spans
        .iter()
        .find(|s| s.name == "GET /traced-again")
        .unwrap();
    assert_eq!(hex(&request.trace_id), client_trace);
    assert_eq!(hex(&request.parent_span_id), client_span);
    let upstream = spans
        .iter()
        .find(|s| s.name == "upstream" && s.trace_id == request.trace_id)
        .expect("upstream span");
    assert_eq!(upstream.parent_span_id, request.span_id);
    assert_eq!(
        sent,
        format!("00-{client_trace}-{}-01", hex(&upstream.span_id))
    );
    // Sign-in steps are traces of their own requests; no query in any span.
    for name in [
        "GET /traced",
        "GET /oauth2/sign_in",
        "GET /oauth2/start/google",
    ] {
        assert!(spans.iter().any(|s| s.name == name), "{name}");
    }
    let dump = format!("{spans:?}");
    assert!(
        !dump.contains("secret-in-query") && !dump.contains("code="),
        "{dump}"
    );
}

#[tokio::test]
async fn upgrade_hands_the_listening_socket_to_a_new_process_without_refusing_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let server_extra = format!(
        "upgrade_socket = \"{}\"\nshutdown_grace = \"2s\"",
        sock.display()
    );
    let w = world_with_server(&server_extra).await;
    let (b, _) = w.signed_in("/").await;
    let cookies = cookie_header(&b, &w.url("/"));
    let old_pid = w.proxy.pid();

    // A new connection per request: any moment without a listener would
    // show as a refused connection.
    let load = Traffic::start(w.url(""), cookies.clone(), 4, false).await;
    let slow = slow_request(w.url(""), &cookies);

    // The new process waits for the sockets; the old one hands them over on SIGQUIT.
    let log = dir.path().join("new.log");
    let mut new = harness::command()
        .arg("--config")
        .arg(&w.proxy.config_path)
        .arg("run")
        .arg("--upgrade")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let new_logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no upgrade socket; new process:\n{}",
            new_logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // SAFETY: kill(2) with our own child's pid and a plain signal number.
    unsafe {
        libc::kill(old_pid as i32, libc::SIGQUIT);
    }
    // The old process finishes its requests and exits on its own.
    let mut proxy = w.proxy;
    let status = exits_on_its_own(&mut proxy).await;
    assert!(status.success(), "{status}\n{}", proxy.logs());
    assert!(
        proxy.logs().contains("listener sockets sent"),
        "{}",
        proxy.logs()
    );
    // Only the new process answers now, on the same port.
    load.more(100).await;
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
    let ok = load
        .finish(|| format!("new process:\n{}", new_logs()))
        .await;
    let _ = new.kill();
    let _ = new.wait();
    // The proxy's own HTTP/1 loop took part: its per-thread sockets came
    // over (not only pingora's admin listener).
    assert!(
        new_logs().contains("listening socket taken over from the previous process"),
        "{}",
        new_logs()
    );
    eprintln!("binary upgrade under traffic: {ok} requests, none failed");
}

/// Kills a process that is not our child (a successor started by the
/// proxy) when the test ends, passing or not.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid and a plain signal number.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

/// The pid of `parent`'s one child process (10 s at most), from
/// `/proc/<parent>/task/*/children`.
async fn child_of(parent: i32) -> i32 {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).unwrap();
        let children: Vec<i32> = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
            .flat_map(|c| {
                c.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        if let [one] = children[..] {
            return one;
        }
        assert!(children.len() < 2, "more than one child: {children:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new process within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The next datagram on the fake `NOTIFY_SOCKET` (10 s at most).
async fn notified(socket: &tokio::net::UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .expect("no notification to systemd within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn sigusr2_starts_the_binary_again_which_takes_over_and_becomes_systemds_main_process() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    // systemd's side of Type=notify: a datagram socket named by NOTIFY_SOCKET.
    let notify_path = dir.path().join("notify");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let server_extra = format!(
        "upgrade_socket = \"{}\"\nshutdown_grace = \"2s\"",
        sock.display()
    );
    let w = world_with_server_env(
        &server_extra,
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap())],
    )
    .await;
    assert_eq!(notified(&notify).await, "READY=1");
    let (b, _) = w.signed_in("/").await;
    let cookies = cookie_header(&b, &w.url("/"));
    let old_pid = w.proxy.pid() as i32;
    let usr2 = || {
        // SAFETY: kill(2) with our own child's pid and a plain signal number.
        unsafe {
            libc::kill(old_pid, libc::SIGUSR2);
        }
    };

    // A configuration that no longer loads: the new process refuses to
    // start, nothing is handed over, the running one keeps serving.
    let good = std::fs::read_to_string(&w.proxy.config_path).unwrap();
    std::fs::write(
        &w.proxy.config_path,
        good.replace("[server]", "[server]\nthreads = 0"),
    )
    .unwrap();
    usr2();
    w.proxy
        .wait_for_log("binary upgrade failed: the new process exited before taking the sockets")
        .await;
    let mut buf = [0u8; 64];
    assert!(
        notify.try_recv(&mut buf).is_err(),
        "systemd was told of a new main process that never served"
    );
    let answer = harness::client()
        .get(w.url("/"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    std::fs::write(&w.proxy.config_path, &good).unwrap();

    // A new connection per request across the switch.
    let load = Traffic::start(w.url(""), cookies.clone(), 4, false).await;
    let slow = slow_request(w.url(""), &cookies);
    usr2();
    // The successor is the old process's child (killed when the test ends,
    // whatever happens).
    let child = child_of(old_pid).await;
    let _new = KillOnDrop(child);
    // Once it holds the sockets, the old process (systemd's main one) names
    // it as the unit's main process.
    let message = notified(&notify).await;
    assert_eq!(message, format!("MAINPID={child}"));

    // The old process finishes its requests and exits on its own, after
    // hearing that the new one serves.
    let mut proxy = w.proxy;
    let status = exits_on_its_own(&mut proxy).await;
    assert!(status.success(), "{status}\n{}", proxy.logs());
    let logs = proxy.logs();
    assert!(logs.contains("listener sockets sent"), "{logs}");
    assert!(
        logs.contains("binary upgrade: the new process serves"),
        "{logs}"
    );
    assert!(
        logs.contains("listening socket taken over from the previous process"),
        "{logs}"
    );
    // Only the new process answers now, on the same port.
    load.more(100).await;
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
    let ok = load.finish(|| proxy.logs()).await;
    // SAFETY: kill(2) with signal 0 only checks that the pid exists.
    assert_eq!(
        unsafe { libc::kill(child, 0) },
        0,
        "the new process is gone"
    );
    eprintln!("SIGUSR2 upgrade under traffic: {ok} requests, none failed");
}
