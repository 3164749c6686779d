//! The admin listener (`[admin] listen`): `/healthz`, `/readyz`,
//! Prometheus `/metrics` and, with `store = "redis"`, `GET /sessions` and
//! `POST /sessions/revoke`, on its own address so that none of it is ever
//! reachable through the public listener (SECURITY.md row 14).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::session::SessionStore;

/// The admin HTTP app: answers about the current configuration.
pub struct Admin(pub Arc<crate::reload::Current>);

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let app = self.0.get();
        let req = session.req_header();
        let path = req.uri.path().to_owned();
        let method = req.method.clone();
        let query = req.uri.query().map(str::to_owned);
        let cross_site = req.headers.contains_key(http::header::ORIGIN);
        let (status, content_type, body) = match path.as_str() {
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            "/readyz" => {
                let ready = app.provider_readiness().await;
                let mut problems: Vec<String> = Vec::new();
                let waiting: Vec<&str> = ready
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(id, _)| id.as_str())
                    .collect();
                if !waiting.is_empty() {
                    problems.push(format!("waiting for providers: {}", waiting.join(", ")));
                }
                if let Err(why) = app.store().readiness() {
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
                let ready = app.provider_readiness().await;
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    crate::metrics::global().render(&ready, app.store()),
                )
            }
            "/sessions" | "/sessions/revoke" => {
                let (status, body) =
                    sessions(app.store(), &path, &method, query.as_deref(), cross_site).await;
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
