//! Portcullis: an authentication reverse-proxy sidecar. The binary is in
//! `main.rs`; this library holds everything it runs, so that tests and
//! benchmarks can reach the pieces.

pub mod access_log;
pub mod access_token;
pub mod admin;
pub mod assertion;
pub mod auth;
pub mod cli;
pub mod config;
pub mod digits;
pub mod fast;
pub mod identity;
pub mod metrics;
pub mod pages;
pub mod providers;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod sd_notify;
pub mod server;
pub mod session;
pub mod successor;
pub mod telemetry;
pub mod thread_cache;
pub mod tls;
pub mod traces;
