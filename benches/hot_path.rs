//! Criterion benchmarks of what every authenticated request pays for:
//! finding and opening the session cookie, stripping forged headers and
//! injecting the identity, matching public routes, formatting the
//! access-log line, and the signed identity assertion (cached and fresh).
//!
//!     cargo bench --bench hot_path

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderName, Method};
use pingora::http::RequestHeader;
use portcullis::proxy::request::canonicalize;

use portcullis::access_log;
use portcullis::auth::skip::{is_skipped, SkipRule};
use portcullis::config::HeaderNames;
use portcullis::identity::Identity;
use portcullis::proxy::headers::IdentityHeaders;
use portcullis::session::{cookie, Sealer, SessionCodec, SessionKey};

fn identity() -> Identity {
    Identity {
        provider: "google".into(),
        subject: "110169484474386276334".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice Example".into()),
        login: None,
        picture: Some("https://lh3.googleusercontent.com/a/ACg8ocK-example=s96-c".into()),
        groups: Vec::new(),
    }
}

fn session(c: &mut Criterion) {
    let codec = SessionCodec::new(Sealer::new(&SessionKey::generate(), &[]));
    let sealed = codec.seal_identity("_portcullis", &identity(), Duration::from_secs(3600));
    // A realistic Cookie header: analytics cookies around ours.
    let header = format!(
        "_ga=GA1.1.123456789.1700000000; theme=dark; _portcullis={sealed}; csrftoken=abcdef0123456789"
    );
    c.bench_function("session: find cookie + open + decode", |b| {
        b.iter(|| {
            let value = cookie::find_split([header.as_bytes()], "_portcullis").unwrap();
            black_box(codec.open_identity("_portcullis", &value))
        })
    });
    c.bench_function("session: seal (sign-in only)", |b| {
        let id = identity();
        b.iter(|| black_box(codec.seal_identity("_portcullis", &id, Duration::from_secs(3600))))
    });
}

fn headers(c: &mut Criterion) {
    let h = IdentityHeaders::new(HeaderNames {
        user: HeaderName::from_static("x-user"),
        provider: HeaderName::from_static("x-user-provider"),
        email: HeaderName::from_static("x-user-email"),
        name: HeaderName::from_static("x-user-name"),
        login: HeaderName::from_static("x-user-login"),
        groups: HeaderName::from_static("x-user-groups"),
        picture: HeaderName::from_static("x-user-picture"),
    });
    let id = identity();
    let mut base = RequestHeader::build("GET", b"/dashboard?tab=2", None).unwrap();
    for (k, v) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cookie", "a=b"),
    ] {
        base.append_header(k, v).unwrap();
    }
    c.bench_function("headers: strip forged + inject identity", |b| {
        b.iter(|| {
            let mut req = base.clone();
            h.strip(&mut req, true);
            h.inject(&mut req, &id).unwrap();
            black_box(req)
        })
    });
}

fn routes(c: &mut Criterion) {
    let rules: Vec<SkipRule> = ["^/public/", "GET ^/healthz$", "^/static/.*\\.(css|js)$"]
        .iter()
        .map(|r| SkipRule::parse(r).unwrap())
        .collect();
    c.bench_function("routes: skip_auth miss (3 rules)", |b| {
        b.iter(|| black_box(is_skipped(&rules, &Method::GET, "/dashboard/reports/2026")))
    });
    c.bench_function("routes: canonical target, clean path (no copy)", |b| {
        b.iter(|| {
            let t = canonicalize(
                &Method::GET,
                black_box(b"/dashboard/reports/2026?x=1"),
                None,
            )
            .unwrap();
            black_box(is_skipped(&rules, &Method::GET, t.decoded()))
        })
    });
    c.bench_function(
        "routes: canonical target, escapes and // (rewritten)",
        |b| {
            b.iter(|| {
                let t =
                    canonicalize(&Method::GET, black_box(b"/public//a%20b/%63?x=1"), None).unwrap();
                black_box(is_skipped(&rules, &Method::GET, t.decoded()))
            })
        },
    );
}

fn access_log(c: &mut Criterion) {
    let id = identity();
    let entry = access_log::Entry {
        method: "GET",
        path: "/dashboard/reports/2026",
        status: 200,
        outcome: "proxied",
        user: Some((&id.provider, &id.subject)),
        client: Some("192.0.2.7".parse().unwrap()),
        micros: 1412,
        error: None,
        request_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    };
    let mut line = Vec::with_capacity(256);
    c.bench_function("access log: format the line's fields", |b| {
        b.iter(|| {
            line.clear();
            access_log::write_fields_text(&mut line, black_box(&entry));
            black_box(line.len())
        })
    });
}

fn assertion(c: &mut Criterion) {
    use portcullis::assertion::{Settings, Signer, DEFAULT_LIFETIME};
    let key = portcullis::assertion::generate_key_pem().unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("assertion.pem");
    std::fs::write(&path, key).unwrap();
    let settings = Settings {
        header: HeaderName::from_static("x-user-assertion"),
        key: portcullis::assertion::read_private_key(&path).unwrap(),
        publish: Vec::new(),
        audience: "https://app.example.com".into(),
        lifetime: DEFAULT_LIFETIME,
    };
    let _ = std::fs::remove_dir_all(&dir);
    let signer = Signer::new(&settings, "https://app.example.com");
    let id = identity();
    let now = portcullis::session::unix_now();
    c.bench_function("assertion: per request (per-thread cache hit)", |b| {
        b.iter(|| black_box(signer.header_value(&id, now + 3600, now)))
    });
    c.bench_function("assertion: sign ES256 (once per session)", |b| {
        b.iter(|| black_box(signer.sign(&id, now + 3600, now)))
    });
}

/// What a request adds for metrics (its outcome's counter and histogram,
/// the upstream histogram) and for its id (a UUIDv7 from the thread's CSPRNG).
fn metrics_and_request_id(c: &mut Criterion) {
    let m = portcullis::metrics::Metrics::new();
    let took = std::time::Duration::from_micros(850);
    c.bench_function("metrics: record one proxied request", |b| {
        b.iter(|| {
            m.request(std::hint::black_box("proxied"), took);
            m.upstream(took);
        })
    });
    c.bench_function("request id: generate a UUIDv7", |b| {
        b.iter(portcullis::request_id::generate)
    });
}

criterion_group!(
    benches,
    session,
    headers,
    routes,
    access_log,
    metrics_and_request_id,
    assertion
);
criterion_main!(benches);
