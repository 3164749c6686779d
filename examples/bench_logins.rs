//! Sign-in throughput: complete logins per second through a running
//! Portcullis binary against the local Google stand-in (auto-approving).
//! Each login is start -> authorize -> callback (code exchange, RS256
//! ID-token verification, session sealing). Used by `scripts/bench`:
//!
//!     bench_logins PATH_TO_PORTCULLIS [SECONDS] [CONCURRENCY]

#[path = "../tests/it/support/hits.rs"]
mod hits;
#[path = "../tests/it/support/mock_google.rs"]
mod mock_google;
#[path = "../tests/it/support/served.rs"]
mod served;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::session::SessionKey;

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .unwrap_or_else(|| "target/release/portcullis".to_owned());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_logins: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(run(bin, seconds, concurrency));
}

async fn run(bin: String, seconds: u64, concurrency: usize) {
    let google = mock_google::start("bench-client", "bench-secret").await;
    google.set_auto_approve(Some(mock_google::TestUser::alice()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18090);
    let dir = std::env::temp_dir().join(format!("portcullis-bench-logins-{port}"));
    let _ = std::fs::create_dir_all(&dir);
    let config = dir.join("logins.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\nthreads = 1\n\
         [upstream]\nurl = \"http://127.0.0.1:9\"\n[session]\nsecret = \"{}\"\n\
         [providers.google]\nclient_id = \"bench-client\"\nclient_secret = \"bench-secret\"\nissuer = \"{}\"\n",
        SessionKey::generate().to_base64(),
        google.issuer()
    );
    if let Err(e) = std::fs::write(&config, text) {
        eprintln!("bench_logins: {e}");
        return;
    }
    let mut child = match Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench_logins: cannot start {bin}: {e}");
            return;
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_default();
    // Wait for the listener.
    for _ in 0..200 {
        if client
            .get(format!("{base}/oauth2/sign_in"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, base, done, failed) =
            (client.clone(), base.clone(), done.clone(), failed.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                match login(&client, &base).await {
                    Some(()) => done.fetch_add(1, Ordering::Relaxed),
                    None => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let ok = done.load(Ordering::Relaxed);
    println!(
        "sign-in throughput: {:.0} logins/s ({ok} logins, {} failed, {concurrency} concurrent, {secs:.1} s; mock provider signs RS256 on the same machine)",
        ok as f64 / secs,
        failed.load(Ordering::Relaxed)
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One whole login; Some when it ended with a session cookie.
async fn login(client: &reqwest::Client, base: &str) -> Option<()> {
    let start = client
        .get(format!("{base}/oauth2/start/google?rd=/"))
        .send()
        .await
        .ok()?;
    let login_cookie = start
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("_portcullis_login_"))?
        .split(';')
        .next()?
        .to_owned();
    let authorize = start.headers().get("location")?.to_str().ok()?.to_owned();
    let at_provider = client.get(&authorize).send().await.ok()?;
    let callback = at_provider
        .headers()
        .get("location")?
        .to_str()
        .ok()?
        .to_owned();
    let back = client
        .get(&callback)
        .header("cookie", login_cookie)
        .send()
        .await
        .ok()?;
    let ok = back.status().as_u16() == 302
        && back
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|c| c.starts_with("_portcullis=") && !c.contains("Max-Age=0"));
    ok.then_some(())
}
