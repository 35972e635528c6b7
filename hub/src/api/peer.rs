//! `/peer/v1/`: what the other hubs of the store ask of this one for the devices it holds
//! ([`crate::peers`] sends them). Served only on a connection that presented a hub certificate
//! from the fleet's CA, for a hub registered in the store; the admin behind the request was
//! authenticated, authorised and audited by the hub that received it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use tracing::debug;

use super::auth::ConnectionIdentity;
use super::id::{CanonicalId, IdPath};
use super::ApiError;
use crate::context::HubContext;
use crate::peers::FORWARDED_BY;
use crate::proxy;
use crate::store::db::Db;
use crate::store::hubs::{self, HubId};
use crate::store::StoreError;

/// The routes another hub may call, behind [`require_hub`].
pub(super) fn router(ctx: Arc<HubContext>) -> Router<Arc<HubContext>> {
    Router::new()
        .route("/peer/v1/endpoints/{id}/docker/{*rest}", any(docker))
        .route(
            "/peer/v1/endpoints/{id}/summon",
            post(super::endpoints::summon_here),
        )
        .route(
            "/peer/v1/rollouts/{id}/{action}",
            post(super::rollouts::control_here),
        )
        .route("/peer/v1/jobs/{id}/cancel", post(super::jobs::cancel_here))
        .layer(axum::middleware::from_fn_with_state(ctx, require_hub))
}

/// Let through only a registered hub's certificate.
async fn require_hub(State(ctx): State<Arc<HubContext>>, request: Request, next: Next) -> Response {
    let hub = request
        .extensions()
        .get::<ConnectionIdentity>()
        .and_then(|identity| identity.hub.clone());
    let Some(name) = hub else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "/peer/ is for the hubs of this fleet: present a hub certificate from its CA",
        )
        .into_response();
    };
    let lookup = name.clone();
    match ctx.store.read(move |c| hubs::find(c, &lookup)).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("hub {name:?} is not registered in this hub's store"),
            )
            .into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    debug!(
        hub = %name,
        by = ?request.headers().get(FORWARDED_BY),
        path = request.uri().path(),
        "request forwarded by another hub"
    );
    next.run(request).await
}

/// Send an admin's request on to `peer` (the hub holding the device, or coordinating the
/// rollout or job) and answer with what it answers; a hub that cannot be reached is a 502 naming it.
pub(super) async fn relay(
    ctx: &HubContext,
    peer: &crate::hubs::Peer,
    request: Request,
) -> Result<Response, ApiError> {
    let answer = ctx
        .peer_link
        .send(&ctx.pki, peer, request)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(answer.map(Body::new))
}

/// Send an admin's command for a rollout or job on to the live hub that coordinates it, when
/// that is another hub (`coordinator` reads which from the store): a `POST` of `path` with `json`
/// as its body, or none. `None` when this hub is to carry the command out itself.
pub(super) async fn to_coordinator(
    ctx: &HubContext,
    coordinator: impl FnOnce(&Db) -> Result<Option<HubId>, StoreError> + Send + 'static,
    path: String,
    json: Option<Vec<u8>>,
) -> Result<Option<Response>, ApiError> {
    let coordinator = ctx.store.read(coordinator).await?;
    let elsewhere = coordinator.filter(|hub| *hub != ctx.hubs.id);
    let Some(peer) = elsewhere.and_then(|hub| ctx.hubs.peer(hub)) else {
        return Ok(None);
    };
    let request = match json {
        Some(json) => Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json)),
        None => Request::post(path).body(Body::empty()),
    }
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    relay(ctx, &peer, request).await.map(Some)
}

/// A Docker API call for a device this hub holds.
async fn docker(
    State(ctx): State<Arc<HubContext>>,
    IdPath((CanonicalId(id), rest)): IdPath<(CanonicalId, String)>,
    request: Request,
) -> Response {
    let response = match proxy::forward_from_peer(&ctx, id, &rest, request).await {
        Ok(response) => response,
        Err(refused) => ApiError::from(refused).into_response(),
    };
    ctx.metrics.proxied(response.status());
    response
}
