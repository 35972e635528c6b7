//! Admin authentication: a bearer token (the hub keeps only its hash and compares in constant time)
//! or an admin client certificate issued by this hub and not revoked (Docker's own TLS convention:
//! `DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=dir`). The certificate is checked once per connection.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use outpost_certs::{client_identity, CertificateDer, ClientRole, Fingerprint};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::context::HubContext;
use crate::store::extras;

/// Who the TLS connection authenticated as, if anyone.
#[derive(Clone, Debug, Default)]
pub(super) struct ConnectionIdentity {
    /// The admin named in a valid client certificate.
    pub(super) admin: Option<String>,
}

/// Check a presented client certificate: an admin certificate of this hub, not revoked.
pub(super) async fn connection_identity(
    ctx: &HubContext,
    peer: Option<&[CertificateDer<'static>]>,
) -> ConnectionIdentity {
    let Some(leaf) = peer.and_then(|chain| chain.first()) else {
        return ConnectionIdentity::default();
    };
    let Ok((ClientRole::Admin(name), serial)) = client_identity(leaf) else {
        return ConnectionIdentity::default();
    };
    let serial = serial.to_string();
    let valid = ctx
        .store
        .call(move |c| extras::admin_cert_valid(c, &serial))
        .await
        .unwrap_or(false);
    ConnectionIdentity {
        admin: valid.then_some(name),
    }
}

/// Reject requests without the admin bearer token or an admin client certificate.
pub(super) async fn require_admin(
    State(ctx): State<Arc<HubContext>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let by_certificate = request
        .extensions()
        .get::<ConnectionIdentity>()
        .is_some_and(|id| id.admin.is_some());
    if by_certificate {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <admin token>` (the hub wrote it to DATA_DIR/admin.token) or use an admin client certificate (outpost-hub admin-cert create)",
        ));
    };
    let hash = Fingerprint::of(token.as_bytes());
    if !bool::from(hash.0.ct_eq(&ctx.admin_token_hash)) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin token is not valid for this hub",
        ));
    }
    Ok(next.run(request).await)
}
