//! The admin listener (`[admin] listen`): `/healthz`, `/readyz`,
//! Prometheus `/metrics` and, with `store = "redis"`, `GET /sessions` and
//! `POST /sessions/revoke`, on its own address so that none of it is ever
//! reachable through the public listener (SECURITY.md row 14).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::proxy::App;
use crate::session::SessionStore;

/// Every outcome the proxy records per request (the access log's `outcome`).
pub const OUTCOMES: [&str; 27] = [
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
    "session_store_unavailable",
    "jwks",
    "bearer_rejected",
    "sign_out_at_provider",
    "access_token_refused",
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
    pub fn render(&self, ready: &[(String, bool)], store: &SessionStore) -> String {
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
        let (revoked, up) = match store.redis() {
            Some(redis) => (redis.revoked_total(), Some(redis.is_up())),
            None => (0, None),
        };
        out.push_str("# HELP portcullis_sessions_revoked_total Sessions ended by an operator (admin listener or `portcullis sessions revoke`, on any replica), as announced to this replica.\n");
        out.push_str("# TYPE portcullis_sessions_revoked_total counter\n");
        out.push_str(&format!("portcullis_sessions_revoked_total {revoked}\n"));
        if let Some(up) = up {
            out.push_str("# HELP portcullis_session_store_up Whether Redis answered the last health check (1) or not (0).\n");
            out.push_str("# TYPE portcullis_session_store_up gauge\n");
            out.push_str(&format!("portcullis_session_store_up {}\n", u8::from(up)));
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
        let req = session.req_header();
        let path = req.uri.path().to_owned();
        let method = req.method.clone();
        let query = req.uri.query().map(str::to_owned);
        let cross_site = req.headers.contains_key(http::header::ORIGIN);
        let (status, content_type, body) = match path.as_str() {
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            "/readyz" => {
                let ready = self.0.provider_readiness().await;
                let mut problems: Vec<String> = Vec::new();
                let waiting: Vec<&str> = ready
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(id, _)| id.as_str())
                    .collect();
                if !waiting.is_empty() {
                    problems.push(format!("waiting for providers: {}", waiting.join(", ")));
                }
                if let Err(why) = self.0.store().readiness() {
                    problems.push(why);
                }
                if problems.is_empty() {
                    (StatusCode::OK, "text/plain", "ready\n".to_owned())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        problems.join("\n") + "\n",
                    )
                }
            }
            "/metrics" => {
                let ready = self.0.provider_readiness().await;
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.0.metrics().render(&ready, self.0.store()),
                )
            }
            "/sessions" | "/sessions/revoke" => {
                let (status, body) =
                    sessions(self.0.store(), &path, &method, query.as_deref(), cross_site).await;
                (status, "application/json", body)
            }
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

fn json_error(status: StatusCode, message: &str) -> (StatusCode, String) {
    (status, serde_json::json!({ "error": message }).to_string())
}

/// `GET /sessions?user=U` and `POST /sessions/revoke?user=U`.
async fn sessions(
    store: &SessionStore,
    path: &str,
    method: &http::Method,
    query: Option<&str>,
    cross_site: bool,
) -> (StatusCode, String) {
    let revoke = path == "/sessions/revoke";
    let expected = if revoke {
        http::Method::POST
    } else {
        http::Method::GET
    };
    if *method != expected {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            if revoke {
                "use POST /sessions/revoke?user=..."
            } else {
                "use GET /sessions?user=..."
            },
        );
    }
    // A web page open in the operator's browser could POST here (a "simple"
    // cross-site request needs no preflight); browsers always send Origin
    // with such requests, command-line clients do not.
    if revoke && cross_site {
        return json_error(
            StatusCode::FORBIDDEN,
            "requests from web pages (with an Origin header) are refused",
        );
    }
    let user = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .take(64)
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.into_owned())
    });
    let Some(user) = user.filter(|u| !u.is_empty() && u.len() <= 1024) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the query parameter user is required, e.g. ?user=google:1234",
        );
    };
    let Some(redis) = store.redis() else {
        return json_error(
            StatusCode::NOT_FOUND,
            "sessions are kept in cookies (session.store = \"cookie\"): there is no session list; set store = \"redis\"",
        );
    };
    if revoke {
        match redis.revoke(&user).await {
            Ok(n) => {
                tracing::info!(user = %user, revoked = n, "sessions revoked on the admin listener");
                (
                    StatusCode::OK,
                    serde_json::json!({ "revoked": n }).to_string(),
                )
            }
            Err(_) => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store (Redis) is unavailable",
            ),
        }
    } else {
        match redis.list(&user).await {
            Ok(list) => (
                StatusCode::OK,
                serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned()),
            ),
            Err(_) => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store (Redis) is unavailable",
            ),
        }
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
        let text = m.render(
            &[("google".into(), true), ("acme".into(), false)],
            &SessionStore::Cookie,
        );
        assert!(
            text.contains("portcullis_requests_total{outcome=\"proxied\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("portcullis_requests_total{outcome=\"signed_in\"} 1\n"));
        assert!(text.contains("portcullis_requests_total{outcome=\"other\"} 1\n"));
        assert!(text.contains("portcullis_provider_ready{provider=\"google\"} 1\n"));
        assert!(text.contains("portcullis_provider_ready{provider=\"acme\"} 0\n"));
        assert!(
            text.contains("portcullis_sessions_revoked_total 0\n"),
            "{text}"
        );
        assert!(!text.contains("portcullis_session_store_up"), "{text}");
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
