//! A proxied request for a device another hub holds: sent over the hub-to-hub link
//! ([`crate::peers`]) and answered with what that hub answers, body streaming and upgrades spliced
//! as for a device of this hub. The request keeps this hub's slot while it runs (the other hub
//! applies the device's own limit); a hijacked connection closes when its credential is
//! withdrawn here.

use std::future::Future;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use tracing::debug;

use super::{headers, slots, upgrade, ProxyError, NEXT_REQUEST};
use crate::context::HubContext;
use crate::hubs::Peer;

/// Relay `request` to `peer`, which holds the device.
pub(super) async fn relay(
    ctx: &HubContext,
    peer: &Peer,
    mut request: Request,
    withdrawn: impl Future<Output = ()> + Send + 'static,
    closed: impl FnOnce(u64, u64) + Send + 'static,
) -> Result<Response, ProxyError> {
    let slot = ctx
        .proxy_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ProxyError::HubBusy(ctx.max_proxy_streams))?;
    let request_id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
    debug!(request_id, hub = %peer.name, "relaying to the hub holding the device");
    let client_upgrade = upgrade::wants_upgrade(&request).then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    headers::strip(&mut parts.headers, client_upgrade.is_some());
    let outbound = Request::from_parts(parts, body);
    let mut response = ctx.peer_link.send(&ctx.pki, peer, outbound).await?;
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, response.status())
    {
        let peer_upgrade = hyper::upgrade::on(&mut response);
        let splice = upgrade::splice(client_upgrade, peer_upgrade, request_id);
        tokio::spawn(async move {
            let (up, down) = tokio::select! {
                crossed = splice => crossed,
                () = withdrawn => {
                    debug!(request_id, "credential withdrawn: relayed hijacked connection closed");
                    (0, 0)
                }
            };
            drop(slot);
            closed(up, down);
        });
        return Ok(response.map(Body::new));
    }
    Ok(response.map(|body| Body::new(slots::HoldingBody::new(body, slot))))
}
