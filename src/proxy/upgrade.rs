//! WebSocket (HTTP/1.1 `Upgrade`) pass-through for signed-in users.
//!
//! pingora 0.9's proxy loop can tear an upgraded connection down right
//! after the `101` when the upstream answers before the request's own
//! (empty) body has been passed on: the client gets the `101` and then EOF
//! (cloudflare/pingora#946, open; we hit it in our WebSocket test about one
//! run in six under load). Until that is fixed upstream, upgrade requests
//! are tunnelled here with pingora's own HTTP/1 client and server sessions.

use pingora::prelude::*;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;

use super::{App, Ctx};

/// Forwards the upgrade request, relays the answer, and — when it is a
/// `101` — copies bytes both ways until either side closes.
pub(super) async fn tunnel(app: &App, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let peer = app.peer();
    let (mut up, _) = app
        .upgrade_connector
        .get_http_session(&peer)
        .await
        .map_err(|e| e.into_up())?;
    let mut req = session.req_header().clone();
    app.prepare_upstream_request(session, &mut req, ctx.identity.as_ref())?;
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
    loop {
        tokio::select! {
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
