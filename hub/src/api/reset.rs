//! `POST /api/endpoints/{id}/reset`: give an endpoint to a new device, or take it back from an
//! impostor.
//!
//! A join token is a bearer secret; once one leaks, nothing the device can prove distinguishes the
//! real device from the holder of the token and its key. The reset is the admin's way out: it
//! unbinds the agent, revokes its certificates, closes its live session (the agent is told it was
//! revoked) and replaces the token's secret, so the old token is dead and the new one, printed
//! like `endpoint create` prints one, enrols the next device.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use outpost_api::EndpointReset;
use outpost_protocol::token::JoinToken;
use outpost_protocol::Secret;
use tracing::info;

use super::endpoints::not_found;
use super::id::{CanonicalId, IdPath};
use super::view::kind;
use super::ApiError;
use crate::changes::Change;
use crate::context::HubContext;
use crate::store::{certs, unix_now};

pub(super) async fn reset(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
) -> Result<Json<EndpointReset>, ApiError> {
    let secret = Secret::generate();
    let hash = secret.hash();
    let record = ctx
        .store
        .call(move |c| certs::reset(c, id, &hash, unix_now()))
        .await?
        .ok_or_else(|| not_found(id))?;
    let disconnected = crate::changes::made(&ctx, Change::Reset(id)).await;
    info!(endpoint = %id, disconnected, "endpoint reset: agent unbound, certificates revoked, new token");
    let token = JoinToken {
        hub_addrs: ctx.hubs.addrs(),
        ca_fingerprint: ctx.pki.ca_fingerprint().0,
        endpoint: id,
        secret,
    };
    Ok(Json(EndpointReset {
        id: id.0,
        name: record.name,
        kind: kind(record.kind),
        disconnected,
        edge_key: token.encode(),
    }))
}
