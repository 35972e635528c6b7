//! Admin authentication: a bearer token or an admin client certificate issued by this hub and not
//! revoked (Docker's own TLS convention: `DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=dir`). Both are
//! checked on every request, so a revoked certificate or a rotated token is refused on a
//! keep-alive connection opened before, and the request's [`Revocation`] ends its stream when the
//! credential is withdrawn while it runs ([`super::credentials`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use outpost_certs::{client_identity, CertificateDer, ClientRole, Fingerprint};

use super::connections::ConnectionSlot;
use super::credentials::{Credential, Revocation, Withdrew};
use super::until_revoked::UntilRevoked;
use super::ApiError;
use crate::context::HubContext;

/// What a TLS connection showed of itself.
#[derive(Clone, Debug)]
pub(super) struct ConnectionIdentity {
    /// The serial of the admin certificate it presented, valid at the handshake.
    certificate: Option<String>,
    /// Its place under the connection cap, marked authenticated once it proved an admin
    /// credential (its certificate, or a request's): the cap sheds connections without one first.
    slot: ConnectionSlot,
}

/// Check a presented client certificate: an admin certificate of this hub, not revoked.
pub(super) async fn connection_identity(
    ctx: &HubContext,
    peer: Option<&[CertificateDer<'static>]>,
    slot: ConnectionSlot,
) -> ConnectionIdentity {
    let certificate = match peer
        .and_then(|chain| chain.first())
        .map(|leaf| client_identity(leaf))
    {
        Some(Ok((ClientRole::Admin(_), serial))) => Some(serial.to_string()),
        _ => None,
    };
    let certificate = match certificate {
        Some(serial) if Credential::Certificate(serial.clone()).is_valid(ctx).await => {
            slot.authenticate();
            Some(serial)
        }
        _ => None,
    };
    ConnectionIdentity { certificate, slot }
}

/// Reject requests without a valid admin credential; watch the credential of those let through.
pub(super) async fn require_admin(
    State(ctx): State<Arc<HubContext>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let changes = ctx.admin_credentials.watch();
    let Some(identity) = request.extensions().get::<ConnectionIdentity>().cloned() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request outside an API connection",
        ));
    };
    let credential = credential(&ctx, &identity, request.headers()).await?;
    identity.slot.authenticate();
    let revocation = Revocation::new(ctx, credential, changes);
    request.extensions_mut().insert(revocation.clone());
    // A hijacked connection outlives hyper's: the proxy holds its slot until the splice ends.
    request.extensions_mut().insert(identity.slot);
    // An upload (`docker load`) answers only at its end: it stops when its credential goes. The
    // handler is polled first, so a request that withdrew its own credential gets its answer.
    let response = tokio::select! {
        biased;
        response = next.run(request) => response,
        () = revocation.clone().withdrawn() => return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin credential of this request was revoked while it ran",
        )),
    };
    if response.extensions().get::<Withdrew>().is_some() {
        return Ok(response);
    }
    Ok(response.map(|body| Body::new(UntilRevoked::new(body, revocation))))
}

/// The credential a request is admitted on: the connection's certificate while it is valid, else
/// the bearer token.
async fn credential(
    ctx: &HubContext,
    identity: &ConnectionIdentity,
    headers: &HeaderMap,
) -> Result<Credential, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(serial) = &identity.certificate {
        let certificate = Credential::Certificate(serial.clone());
        if certificate.is_valid(ctx).await {
            return Ok(certificate);
        }
        if presented.is_none() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("admin certificate {serial} was revoked"),
            ));
        }
    }
    let Some(token) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <admin token>` (the hub wrote it to DATA_DIR/admin.token) or use an admin client certificate (outpost-hub admin-cert create)",
        ));
    };
    let hash = Fingerprint::of(token.as_bytes()).0;
    if !ctx.admin_credentials.token_hash_matches(&hash) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin token is not valid for this hub",
        ));
    }
    Ok(Credential::Token(hash))
}
