//! `/api/endpoints/{id}/docker/{path}`: the Docker proxy's route. The request arrives here
//! authenticated and with a canonical id; [`crate::proxy`] carries it to the device, and its
//! refusals get their status here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::connections::ConnectionSlot;
use super::credentials::Revocation;
use super::id::{CanonicalId, IdPath};
use super::ApiError;
use crate::audit::AuditHandle;
use crate::context::HubContext;
use crate::peers::PeerError;
use crate::proxy::{self, ProxyError};

/// Proxy one request to endpoint `id`'s engine. A hijacked connection keeps its place under the
/// connection cap and its audit record until it closes, and closes when its credential is
/// withdrawn.
pub(super) async fn handle(
    State(ctx): State<Arc<HubContext>>,
    IdPath((CanonicalId(id), rest)): IdPath<(CanonicalId, String)>,
    Extension(revocation): Extension<Revocation>,
    Extension(connection): Extension<ConnectionSlot>,
    audit: Option<Extension<AuditHandle>>,
    request: Request,
) -> Response {
    let withdrawn = revocation.withdrawn();
    let closed = move |up, down| {
        drop(connection);
        if let Some(Extension(audit)) = audit {
            audit.spliced(up, down);
        }
    };
    let response = match proxy::forward(&ctx, id, &rest, request, withdrawn, closed).await {
        Ok(response) => response,
        Err(refused) => ApiError::from(refused).into_response(),
    };
    ctx.metrics.proxied(response.status());
    response
}

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        match e {
            ProxyError::Summon(e) => e.into(),
            ProxyError::Store(e) => e.into(),
            other => Self::new(status(&other), other.to_string()),
        }
    }
}

/// The status of a refusal that is the proxy's own (summon and store failures keep the status
/// the API gives them everywhere, above).
fn status(e: &ProxyError) -> StatusCode {
    match e {
        ProxyError::NoEndpoint(_) | ProxyError::NotCanonical => StatusCode::NOT_FOUND,
        ProxyError::Offline { .. } | ProxyError::HubBusy(_) | ProxyError::Disconnected { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ProxyError::DeviceBusy(_) => StatusCode::TOO_MANY_REQUESTS,
        ProxyError::NoStream { .. } => StatusCode::GATEWAY_TIMEOUT,
        ProxyError::Engine(_)
        | ProxyError::Peer(PeerError::Unreachable { .. } | PeerError::BadUrl { .. }) => {
            StatusCode::BAD_GATEWAY
        }
        ProxyError::Peer(PeerError::Certificate(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
        ProxyError::Summon(_) | ProxyError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
