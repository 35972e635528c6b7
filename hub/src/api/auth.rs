//! Admin authentication and authorization: a bearer token (the bootstrap admin token or a named
//! one) or an admin client certificate issued by this hub and not revoked (Docker's own TLS
//! convention: `DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=dir`). Both are checked on every request, so
//! a revoked certificate or token is refused on a keep-alive connection opened before, and the
//! request's [`Revocation`] ends its stream when the credential is withdrawn while it runs
//! ([`super::credentials`]). The credential's [`Principal`] must then hold the role and reach the
//! device the route needs ([`crate::access::need`]); it rides on the request for the handlers that
//! narrow a selection to its scope.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use outpost_certs::{client_identity, CertificateDer, ClientRole, Fingerprint};

use super::connections::ConnectionSlot;
use super::credentials::{Credential, Revocation, Withdrew};
use super::until_revoked::UntilRevoked;
use super::ApiError;
use crate::access::need::{self, Need, Reach};
use crate::access::Principal;
use crate::audit::{Audit, Call, CountedRequest, CountedResponse};
use crate::context::HubContext;
use crate::store::access;

/// What a TLS connection showed of itself.
#[derive(Clone, Debug)]
pub(super) struct ConnectionIdentity {
    /// The serial of the admin certificate it presented, valid at the handshake.
    certificate: Option<String>,
    /// The name of the hub whose certificate it presented: another hub of the fleet, forwarding
    /// requests for the devices this hub holds (`super::peer`).
    pub(super) hub: Option<String>,
    /// Its place under the connection cap, marked authenticated once it proved an admin
    /// credential (its certificate, or a request's): the cap sheds connections without one first.
    slot: ConnectionSlot,
}

/// Check a presented client certificate: an admin certificate of this hub, not revoked, or the
/// certificate of another hub (the TLS stack checked that it chains to the fleet's CA).
pub(super) async fn connection_identity(
    ctx: &HubContext,
    peer: Option<&[CertificateDer<'static>]>,
    slot: ConnectionSlot,
) -> ConnectionIdentity {
    let role = peer
        .and_then(|chain| chain.first())
        .map(|leaf| client_identity(leaf));
    let (certificate, hub) = match role {
        Some(Ok((ClientRole::Admin(_), serial))) => (Some(serial.to_string()), None),
        Some(Ok((ClientRole::Hub(name), _))) => {
            slot.authenticate();
            (None, Some(name))
        }
        _ => (None, None),
    };
    let certificate = match certificate {
        Some(serial) if Credential::Certificate(serial.clone()).is_valid(ctx).await => {
            slot.authenticate();
            Some(serial)
        }
        _ => None,
    };
    ConnectionIdentity {
        certificate,
        hub,
        slot,
    }
}

/// Reject requests without a valid admin credential or the role and scope their route needs;
/// watch the credential of those let through, and audit the state-changing ones.
pub(super) async fn require_admin(
    State(ctx): State<Arc<HubContext>>,
    mut request: Request,
    next: Next,
) -> Response {
    let changes = ctx.admin_credentials.watch();
    let Some(identity) = request.extensions().get::<ConnectionIdentity>().cloned() else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request outside an API connection",
        )
        .into_response();
    };
    let (credential, principal) = match authenticate(&ctx, &identity, request.headers()).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused.into_response(),
    };
    identity.slot.authenticate();
    let need = need::of(request.method(), request.uri().path());
    let audit =
        Audit::records(request.method()).then(|| ctx.audit.begin(call(&principal, need, &request)));
    if let Some(audit) = &audit {
        request.extensions_mut().insert(audit.clone());
        request = request.map(|body| Body::new(CountedRequest::new(body, audit.clone())));
    }
    let answer = match authorize(
        &ctx,
        &principal,
        need,
        request.method(),
        request.uri().path(),
    )
    .await
    {
        Ok(()) => {
            request.extensions_mut().insert(principal);
            let revocation = Revocation::new(ctx, credential, changes);
            // A hijacked connection outlives hyper's: the proxy holds its slot until the splice ends.
            request.extensions_mut().insert(identity.slot);
            serve(request, next, revocation).await
        }
        Err(refused) => refused.into_response(),
    };
    match audit {
        Some(audit) => {
            audit.answered(answer.status().as_u16());
            answer.map(|body| Body::new(CountedResponse::new(body, audit)))
        }
        None => answer,
    }
}

/// The credential a request presents and who it is, or why it is refused (400 or 401).
async fn authenticate(
    ctx: &HubContext,
    identity: &ConnectionIdentity,
    headers: &HeaderMap,
) -> Result<(Credential, Principal), ApiError> {
    let credential = credential(ctx, identity, headers)?;
    match credential.principal(ctx).await {
        Some(principal) => Ok((credential, principal)),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            refusal(&credential),
        )),
    }
}

/// What the audit trail records of a call: who, the device, method, path and query.
fn call(principal: &Principal, need: Need, request: &Request) -> Call {
    let uri = request.uri();
    Call {
        who: principal.name.clone(),
        endpoint: match need.reach {
            Reach::Device(id) => Some(id.0),
            _ => None,
        },
        method: request.method().to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
    }
}

/// Run an admitted request, ending it when its credential is withdrawn.
async fn serve(mut request: Request, next: Next, revocation: Revocation) -> Response {
    request.extensions_mut().insert(revocation.clone());
    // An upload (`docker load`) answers only at its end: it stops when its credential goes. The
    // handler is polled first, so a request that withdrew its own credential gets its answer.
    let response = tokio::select! {
        biased;
        response = next.run(request) => response,
        () = revocation.clone().withdrawn() => return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin credential of this request was revoked while it ran",
        ).into_response(),
    };
    if response.extensions().get::<Withdrew>().is_some() {
        return response;
    }
    response.map(|body| Body::new(UntilRevoked::new(body, revocation)))
}

/// Why a credential that parsed is refused.
fn refusal(credential: &Credential) -> String {
    match credential {
        Credential::Certificate(serial) => format!("admin certificate {serial} was revoked"),
        Credential::Token(_) => "the admin token is not valid for this hub".to_owned(),
        Credential::Named(_) => {
            "the token is not valid for this hub (revoked, or never issued here)".to_owned()
        }
    }
}

/// Longest bearer token read; Outpost's are 43 or 47 characters.
const MAX_TOKEN: usize = 128;

/// Prefix of named API tokens, so the hub (and a secret scanner) tells them from the bootstrap one.
pub(super) const NAMED_TOKEN_PREFIX: &str = "opt_";

/// The credential a request is admitted on: the connection's certificate while it is valid, else
/// the bearer token.
fn credential(
    ctx: &HubContext,
    identity: &ConnectionIdentity,
    headers: &HeaderMap,
) -> Result<Credential, ApiError> {
    let presented = bearer(headers)?;
    if let Some(serial) = &identity.certificate {
        if presented.is_none() {
            return Ok(Credential::Certificate(serial.clone()));
        }
    }
    let Some(token) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <token>` (the hub wrote its admin token to DATA_DIR/admin.token; `outpost-hub token create` makes named ones) or use an admin client certificate (outpost-hub admin-cert create)",
        ));
    };
    let hash = Fingerprint::of(token.as_bytes()).0;
    if token.starts_with(NAMED_TOKEN_PREFIX) {
        return Ok(Credential::Named(hash));
    }
    if !ctx.admin_credentials.token_hash_matches(&hash) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin token is not valid for this hub",
        ));
    }
    Ok(Credential::Token(hash))
}

/// The bearer token of `Authorization`, if one is sent; a 400 for one that cannot be a token.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the Authorization header is malformed: {why}"),
        )
    };
    let text = value
        .to_str()
        .map_err(|_| malformed("it is not printable ASCII"))?;
    let Some(token) = text.strip_prefix("Bearer ").map(str::trim) else {
        return Ok(None);
    };
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(malformed(&format!(
            "a bearer token is 1 to {MAX_TOKEN} characters"
        )));
    }
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !token.bytes().all(base64url) {
        return Err(malformed(
            "a bearer token holds only letters, digits, '-' and '_'",
        ));
    }
    Ok(Some(token))
}

/// Refuse a request its principal may not make: too weak a role (403 naming both), a fleet-wide
/// route for a scoped credential, or a device outside its scope (403 saying which scope).
async fn authorize(
    ctx: &HubContext,
    principal: &Principal,
    need: Need,
    method: &axum::http::Method,
    path: &str,
) -> Result<(), ApiError> {
    let forbidden = |why: String| ApiError::new(StatusCode::FORBIDDEN, why);
    if principal.role < need.role {
        return Err(forbidden(format!(
            "credential {:?} has role {}; {method} {path} needs {}",
            principal.name, principal.role, need.role
        )));
    }
    let Some(scope) = &principal.scope else {
        return Ok(());
    };
    match need.reach {
        Reach::Anywhere | Reach::Selection => Ok(()),
        Reach::Fleet => Err(forbidden(format!(
            "credential {:?} is scoped ({scope}); {method} {path} reaches the whole fleet",
            principal.name
        ))),
        Reach::Device(id) => {
            let owned = scope.clone();
            let inside = ctx
                .store
                .read(move |c| access::endpoint_in_scope(c, id.0, &owned))
                .await?;
            if inside {
                return Ok(());
            }
            Err(forbidden(format!(
                "endpoint {} is outside the scope of credential {:?} ({scope})",
                id.0, principal.name
            )))
        }
    }
}
