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
        // A deep accept backlog (tokio's bind uses 1024): at c = 1000 the
        // proxies under test open many upstream connections at once, and a
        // dropped SYN costs a 1 s retransmit that would land in their p99.
        let listen = || -> std::io::Result<tokio::net::TcpListener> {
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(8192)
        };
        let listener = match listen() {
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
