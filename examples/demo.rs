//! The Portcullis demo: everything on loopback, nothing from the internet.
//!
//! Starts a sample app (it shows the identity headers it receives), local
//! stand-ins for Google, X and Facebook (clearly labelled as test providers, with
//! account choosers), and Portcullis itself — the real proxy, configured by
//! the embedded `config/demo.toml`.
//!
//!     cargo run --example demo        (or: make demo)
//!
//! Then open the printed URL. `PORTCULLIS_DEMO_PORT` picks another port than 4180.

#[path = "../tests/it/support/hits.rs"]
mod hits;
#[path = "../tests/it/support/mock_facebook.rs"]
mod mock_facebook;
#[path = "../tests/it/support/mock_google.rs"]
mod mock_google;
#[path = "../tests/it/support/mock_x.rs"]
mod mock_x;
#[path = "../tests/it/support/served.rs"]
mod served;

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::http::HeaderMap;
use axum::response::Html;
use axum::Router;

use portcullis::config;
use portcullis::session::SessionKey;

const CONFIG: &str = include_str!("../config/demo.toml");
const CLIENT_ID: &str = "demo-client.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "demo-google-secret";

fn main() -> ExitCode {
    let port: u16 = std::env::var("PORTCULLIS_DEMO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4180);
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = std::net::TcpListener::bind(listen) {
        eprintln!(
            "demo: cannot listen on {listen}: {e}\n      set PORTCULLIS_DEMO_PORT to another port"
        );
        return ExitCode::FAILURE;
    }
    let public_url = format!("http://127.0.0.1:{port}");

    // The peers run on their own runtime; pingora runs its own on this thread.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (google, x, facebook, upstream) = rt.block_on(async {
        let google = mock_google::start(CLIENT_ID, CLIENT_SECRET).await;
        google.register_redirect_uri(&format!("{public_url}/oauth2/callback/google"));
        let x = mock_x::start(
            "demo-x-client",
            "demo-x-secret",
            "demo-x-consumer",
            "demo-x-consumer-secret",
        )
        .await;
        x.register_redirect_uri(&format!("{public_url}/oauth2/callback/twitter"));
        let facebook = mock_facebook::start("4242424242", "demo-facebook-secret").await;
        facebook.register_redirect_uri(&format!("{public_url}/oauth2/callback/facebook"));
        let upstream = start_sample_app().await;
        (google, x, facebook, upstream)
    });

    let env = |name: &str| -> Option<String> {
        match name {
            "DEMO_LISTEN" => Some(listen.to_string()),
            "DEMO_PUBLIC_URL" => Some(public_url.clone()),
            "DEMO_UPSTREAM_URL" => Some(format!("http://{upstream}")),
            "DEMO_GOOGLE_ISSUER" => Some(google.issuer().to_owned()),
            "DEMO_X" => Some(x.base_url.clone()),
            "DEMO_FACEBOOK" => Some(facebook.base_url.clone()),
            "DEMO_SESSION_SECRET" => Some(SessionKey::generate().to_base64()),
            _ => None,
        }
    };
    let settings = match config::parse(CONFIG, &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: config/demo.toml is invalid:");
            for l in e.lines() {
                eprintln!("  - {l}");
            }
            return ExitCode::FAILURE;
        }
    };

    let _logs = portcullis::telemetry::init();
    println!();
    println!("  Portcullis demo is running.");
    println!();
    println!("    open      {public_url}/");
    println!("    app       http://{upstream}  (the sample app; reach it through Portcullis)");
    println!(
        "    google    {}  (local test provider, NOT Google)",
        google.issuer()
    );
    println!("    x         {}  (local test provider, NOT X)", x.base_url);
    println!(
        "    facebook  {}  (local test provider, NOT Facebook)",
        facebook.base_url
    );
    println!();
    println!("  Google: Alice (verified email) or Bob (unverified: no X-User-Email).");
    println!("  X: jack (with email) or a user without one.");
    println!("  Facebook: Alice (with email) or a phone-only account.");
    println!("  Ctrl-C stops everything.");
    println!();

    // Keep the peers' runtime alive for as long as the proxy runs.
    let _keep = (rt, google, x, facebook);
    match portcullis::server::run(settings, None, false) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The protected sample app: shows what Portcullis tells it about the user.
async fn start_sample_app() -> SocketAddr {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot start the sample app: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let app = Router::new().fallback(sample_page);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn sample_page(headers: HeaderMap) -> Html<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let who = get("x-user-name")
        .or(get("x-user-email"))
        .or(get("x-user"))
        .unwrap_or("stranger");
    let mut rows = String::new();
    for name in [
        "x-user",
        "x-user-provider",
        "x-user-email",
        "x-user-name",
        "x-user-login",
        "x-user-picture",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        let value = match get(name) {
            Some(v) => format!("<code>{}</code>", escape(v)),
            None => "<span class=absent>absent</span>".to_owned(),
        };
        rows.push_str(&format!("<tr><th>{name}</th><td>{value}</td></tr>"));
    }
    Html(format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>Sample app behind Portcullis</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2230}}
main{{max-width:760px;margin:2rem auto;padding:0 1rem}}
.card{{background:#fff;border-radius:14px;box-shadow:0 1px 3px #0002;padding:1.5rem 1.75rem}}
h1{{font-size:1.5rem;margin:.2rem 0 1rem}} table{{border-collapse:collapse;width:100%}}
th,td{{text-align:left;padding:.45rem .5rem;border-top:1px solid #e5e7eb;vertical-align:top;font-size:.95rem}}
th{{white-space:nowrap;font-weight:600;color:#4b5563}} code{{word-break:break-all}}
.absent{{color:#9ca3af;font-style:italic}} .actions a{{margin-right:1rem}}
p.note{{color:#4b5563;font-size:.92rem}}
</style></head><body><main><div class=card>
<p class=note>Sample app (the upstream). It has no login code: Portcullis signed you in and sent these headers.</p>
<h1>Hello, {who}</h1>
<table>{rows}</table>
<p class=actions><a href="/oauth2/userinfo">/oauth2/userinfo</a><a href="/oauth2/sign_out">Sign out</a></p>
</div></main></body></html>"#,
        who = escape(who),
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
