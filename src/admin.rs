//! The admin listener (`[admin] listen`): `/healthz`, `/readyz` and
//! Prometheus `/metrics`, on its own address so that none of it is ever
//! reachable through the public listener (SECURITY.md row 14).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::proxy::App;

/// Every outcome the proxy records per request (the access log's `outcome`).
pub const OUTCOMES: [&str; 22] = [
    "proxied",
    "upgrade",
    "upgrade_session_expired",
    "public",
    "public_upgrade",
    "bad_request",
    "forbidden",
    "unauthenticated",
    "sign_in_redirect",
    "sign_in_page",
    "start",
    "callback",
    "callback_bad_state",
    "signed_in",
    "provider_error",
    "sign_out",
    "userinfo",
    "auth_ok",
    "auth_forbidden",
    "auth_unauthenticated",
    "method_not_allowed",
    "proxy_error",
];

/// Lock-free request counters, one per outcome.
pub struct Metrics {
    requests: [AtomicU64; OUTCOMES.len()],
    other: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            other: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn count(&self, outcome: &str) {
        match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(i) => self.requests[i].fetch_add(1, Ordering::Relaxed),
            None => self.other.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, ready: &[(String, bool)]) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP portcullis_requests_total Requests by what Portcullis did with them.\n",
        );
        out.push_str("# TYPE portcullis_requests_total counter\n");
        for (name, n) in OUTCOMES.iter().zip(&self.requests) {
            out.push_str(&format!(
                "portcullis_requests_total{{outcome=\"{name}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "portcullis_requests_total{{outcome=\"other\"}} {}\n",
            self.other.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP portcullis_provider_ready Whether a provider's discovery/keys are loaded (1) or not (0).\n");
        out.push_str("# TYPE portcullis_provider_ready gauge\n");
        for (id, ok) in ready {
            out.push_str(&format!(
                "portcullis_provider_ready{{provider=\"{id}\"}} {}\n",
                u8::from(*ok)
            ));
        }
        out.push_str("# HELP portcullis_build_info Version of the running binary.\n");
        out.push_str("# TYPE portcullis_build_info gauge\n");
        out.push_str(&format!(
            "portcullis_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ));
        out
    }
}

/// The admin HTTP app.
pub struct Admin(pub Arc<App>);

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let ready = self.0.provider_readiness().await;
        let (status, content_type, body) = match path.as_str() {
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            "/readyz" => {
                let waiting: Vec<&str> = ready
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(id, _)| id.as_str())
                    .collect();
                if waiting.is_empty() {
                    (StatusCode::OK, "text/plain", "ready\n".to_owned())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!("waiting for providers: {}\n", waiting.join(", ")),
                    )
                }
            }
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.0.metrics().render(&ready),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_owned(),
            ),
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(body.into_bytes())
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::default();
        m.count("proxied");
        m.count("proxied");
        m.count("signed_in");
        m.count("something_new");
        let text = m.render(&[("google".into(), true), ("acme".into(), false)]);
        assert!(
            text.contains("portcullis_requests_total{outcome=\"proxied\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("portcullis_requests_total{outcome=\"signed_in\"} 1\n"));
        assert!(text.contains("portcullis_requests_total{outcome=\"other\"} 1\n"));
        assert!(text.contains("portcullis_provider_ready{provider=\"google\"} 1\n"));
        assert!(text.contains("portcullis_provider_ready{provider=\"acme\"} 0\n"));
    }

    #[test]
    fn every_outcome_the_proxy_sets_is_listed() {
        let src = [
            include_str!("proxy/mod.rs"),
            include_str!("proxy/upgrade.rs"),
        ]
        .concat();
        for part in src.split("ctx.outcome = \"").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                OUTCOMES.contains(&name),
                "outcome {name:?} missing from OUTCOMES"
            );
        }
    }
}
