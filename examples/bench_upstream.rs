//! A fast upstream for load benchmarks: answers every request with a fixed
//! 200 body. `cargo run --release --example bench_upstream -- 127.0.0.1:18080`

use axum::Router;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_owned());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_upstream: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bench_upstream: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let app = Router::new().fallback(|| async { "ok\n" });
        let _ = axum::serve(listener, app).await;
    });
}
