//! Named API tokens: `POST /api/tokens` makes one with a role and an optional scope and shows it
//! once (the hub keeps its SHA-256), `GET /api/tokens` lists them, `DELETE /api/tokens/{name}`
//! revokes the live one with that name; requests on it are refused from then on and its open
//! streams end ([`super::credentials`]).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use outpost_api::{NewToken, TokenInfo, TokenIssued};
use tracing::info;

use super::auth::NAMED_TOKEN_PREFIX;
use super::credentials::{new_admin_token, Withdrew};
use super::ApiError;
use crate::access::{credential_name, AccessError, Role, Scope};
use crate::context::HubContext;
use crate::store::access::{self, TokenRow};
use crate::store::unix_now;

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

/// The role and scope a request asks for, checked: known role, valid labels that exist.
pub(super) async fn role_and_scope(
    ctx: &HubContext,
    role: Option<&str>,
    scope: Option<&outpost_api::Scope>,
) -> Result<(Role, Option<Scope>), ApiError> {
    let role = role.map_or(Ok(Role::Admin), str::parse).map_err(bad)?;
    let Some(scope) = scope else {
        return Ok((role, None));
    };
    let scope = Scope::new(&scope.groups, &scope.tags).map_err(bad)?;
    let checked = scope.clone();
    let unknown = ctx
        .store
        .read(move |c| access::first_unknown_label(c, &checked))
        .await?;
    if let Some(unknown) = unknown {
        return Err(bad(format!("scope: no {unknown} exists on this hub")));
    }
    Ok((role, Some(scope)))
}

/// A token's row as the API shows it.
pub(super) fn info(row: TokenRow) -> TokenInfo {
    TokenInfo {
        name: row.name,
        role: row.role.to_string(),
        scope: row.scope.as_ref().map(scope_body),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}

/// A scope as the API shows it.
pub(super) fn scope_body(scope: &Scope) -> outpost_api::Scope {
    outpost_api::Scope {
        groups: scope.groups().to_vec(),
        tags: scope.tags().to_vec(),
    }
}

pub(super) async fn create(
    State(ctx): State<Arc<HubContext>>,
    request: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<TokenIssued>), ApiError> {
    let Json(request) = request.map_err(|e| bad(e.body_text()))?;
    let name = credential_name(&request.name).map_err(bad)?;
    if request.role.is_empty() {
        return Err(bad(AccessError::UnknownRole(String::new())));
    }
    let (role, scope) = role_and_scope(&ctx, Some(&request.role), request.scope.as_ref()).await?;
    let (secret, _) = new_admin_token();
    let token = format!("{NAMED_TOKEN_PREFIX}{secret}");
    let hash = outpost_certs::Fingerprint::of(token.as_bytes()).to_string();
    let row = TokenRow {
        name: name.clone(),
        role,
        scope,
        created_at: unix_now(),
        revoked_at: None,
    };
    let stored = row.clone();
    let created = ctx
        .store
        .call(move |c| {
            if access::token_name_taken(c, &stored.name)? {
                return Ok(false);
            }
            access::create_token(c, &stored, &hash).map(|()| true)
        })
        .await?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a token named {name:?} exists; revoke it first or pick another name"),
        ));
    }
    info!(%name, role = %row.role, scope = ?row.scope.as_ref().map(ToString::to_string), "API token created");
    Ok((
        StatusCode::CREATED,
        Json(TokenIssued {
            info: info(row),
            token,
        }),
    ))
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let rows = ctx.store.read(access::list_tokens).await?;
    Ok(Json(rows.into_iter().map(info).collect()))
}

pub(super) async fn revoke(
    State(ctx): State<Arc<HubContext>>,
    Path(name): Path<String>,
) -> Result<(Extension<Withdrew>, Json<TokenInfo>), ApiError> {
    let which = name.clone();
    let revoked = ctx
        .store
        .call(move |c| access::revoke_token(c, &which, unix_now()))
        .await?;
    let Some(row) = revoked else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live token is named {name:?}"),
        ));
    };
    ctx.admin_credentials.credentials_revoked();
    info!(%name, "API token revoked");
    Ok((Extension(Withdrew), Json(info(row))))
}
