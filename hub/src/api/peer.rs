//! `/peer/v1/`: what the other hubs of the store ask of this one for the devices it holds
//! ([`crate::peers`] sends them). Served only on a connection that presented a hub certificate
//! from the fleet's CA, for a hub registered in the store; the admin behind the request was
//! authenticated, authorised and audited by the hub that received it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
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
use crate::store::hubs;

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
    Ok(answer.map(axum::body::Body::new))
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
