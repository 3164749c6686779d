//! WebSocket (HTTP/1.1 `Upgrade`) tunnels: the only upgrade Portcullis
//! passes on (`GET` + `Upgrade: websocket`; any other `Upgrade`, `h2c`
//! above all, is removed before the request is judged).
//!
//! The upstream request is built here from an allow-list of headers: no
//! `HTTP2-Settings`, no hop-by-hop header, nothing named in `Connection`,
//! no forged identity. A tunnel opened with a session is closed when that
//! session expires.
//!
//! pingora 0.9's proxy loop can tear an upgraded connection down right
//! after the `101` when the upstream answers before the request's own
//! (empty) body has been passed on: the client gets the `101` and then EOF
//! (cloudflare/pingora#946, open; we hit it in our WebSocket test about one
//! run in six under load). Until that is fixed upstream, upgrade requests
//! are tunnelled here with pingora's own HTTP/1 client and server sessions.

use std::time::Duration;

use http::header;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;

use super::{judged_target, App, Ctx};

/// Client headers a WebSocket handshake may carry upstream (a browser sends
/// no others on a WebSocket; `Authorization` for non-browser clients).
const ALLOWED: [header::HeaderName; 11] = [
    header::HOST,
    header::ORIGIN,
    header::COOKIE,
    header::USER_AGENT,
    header::ACCEPT_LANGUAGE,
    header::AUTHORIZATION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::HeaderName::from_static("x-forwarded-for"),
];

/// The handshake for the upstream: the judged target, allow-listed client
/// headers, then the usual forwarding and identity headers.
fn handshake(app: &App, session: &Session, ctx: &Ctx) -> Result<RequestHeader> {
    let req = session.req_header();
    let target = judged_target(req, ctx);
    let mut up = handshake_for(
        app,
        req,
        target.as_bytes(),
        super::client_ip(session),
        ctx.identity.as_deref(),
        &ctx.request_id,
    )?;
    app.add_identity_extras(
        &mut up,
        ctx.identity.as_deref(),
        ctx.session_expires_at,
        ctx.access_token.as_ref(),
    )?;
    Ok(up)
}

/// [`handshake`] from plain inputs (the fast path's tunnel uses it too).
pub(crate) fn handshake_for(
    app: &App,
    req: &RequestHeader,
    target: &[u8],
    client: Option<std::net::IpAddr>,
    identity: Option<&crate::identity::Identity>,
    request_id: &http::HeaderValue,
) -> Result<RequestHeader> {
    let mut up = RequestHeader::build("GET", target, Some(ALLOWED.len() + 10))?;
    for name in &ALLOWED {
        for value in req.headers.get_all(name) {
            up.append_header(name.clone(), value.clone())?;
        }
    }
    up.insert_header(header::CONNECTION, "Upgrade")?;
    up.insert_header(header::UPGRADE, "websocket")?;
    app.prepare_upstream_request(client, &mut up, identity, request_id)?;
    Ok(up)
}

/// Forwards the upgrade request, relays the answer, and — when it is a
/// `101` — copies bytes both ways until either side closes.
pub(super) async fn tunnel(app: &App, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let peer = app.peer();
    let (mut up, _) = app
        .upgrade_connector
        .get_http_session(&peer)
        .await
        .map_err(|e| e.into_up())?;
    let req = handshake(app, session, ctx)?;
    up.write_request_header(Box::new(req))
        .await
        .map_err(|e| e.into_up())?;
    let resp = up.read_resp_header_parts().await.map_err(|e| e.into_up())?;
    let switched = up.was_upgraded();
    session.write_response_header(resp, false).await?;

    if !switched {
        // The app refused the upgrade: relay its answer as it is.
        loop {
            match up.read_response_task().await.map_err(|e| e.into_up())? {
                HttpTask::Body(data, end) | HttpTask::UpgradedBody(data, end) => {
                    session.write_response_body(data, end).await?;
                    if end {
                        break;
                    }
                }
                HttpTask::Done => {
                    session.write_response_body(None, true).await?;
                    break;
                }
                _ => {}
            }
        }
        return Ok(());
    }

    // An idle WebSocket is normal: no read timeouts once upgraded.
    session.set_read_timeout(None);
    up.read_timeout = None;
    up.maybe_upgrade_body_writer();
    // A tunnel outlives nothing it should not: it ends with the session
    // that opened it (a public one has no session and no such end).
    let session_end = (ctx.identity.is_some()).then(|| {
        let left = ctx
            .session_expires_at
            .saturating_sub(crate::session::unix_now());
        tokio::time::Instant::now() + Duration::from_secs(left)
    });
    let expired = async {
        match session_end {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        tokio::select! {
            _ = &mut expired => {
                ctx.outcome = "upgrade_session_expired";
                break;
            }
            from_client = session.read_request_body() => match from_client? {
                Some(bytes) => {
                    up.write_body(&bytes).await.map_err(|e| e.into_up())?;
                }
                None => break,
            },
            from_app = up.read_body_bytes() => match from_app.map_err(|e| e.into_up())? {
                Some(bytes) => session.write_response_body(Some(bytes), false).await?,
                None => break,
            },
        }
    }
    let _ = session.write_response_body(None, true).await;
    Ok(())
}
