//! Bearer-token authentication for the admin API. The hub keeps only the token's hash and compares
//! in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::context::HubContext;

/// Reject requests without the admin bearer token.
pub(super) async fn require_admin(
    State(ctx): State<Arc<HubContext>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <admin token>` (the hub wrote it to DATA_DIR/admin.token)",
        ));
    };
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if !bool::from(hash.ct_eq(&ctx.admin_token_hash)) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin token is not valid for this hub",
        ));
    }
    Ok(next.run(request).await)
}
