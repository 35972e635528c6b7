//! `/api/endpoints`: create, list, show, approve, summon, remove.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_common::token::JoinToken;
use outpost_common::{AgentId, EndpointId, Secret};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::info;

use super::view::EndpointView;
use super::ApiError;
use crate::context::HubContext;
use crate::registry::{Status, SummonError};
use crate::store::{
    endpoints, extras, unix_now, EndpointKind, ListQuery, NewEndpoint, StatusFilter,
};

/// Longest endpoint name accepted.
const MAX_NAME: usize = 128;

#[derive(Debug, Deserialize)]
pub(super) struct CreateRequest {
    name: String,
    agent_id: Option<String>,
    #[serde(default)]
    fleet: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Created {
    id: u64,
    name: String,
    kind: EndpointKind,
    agent_id: Option<String>,
    edge_key: String,
}

pub(super) async fn create(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<CreateRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    let preassigned = match request.agent_id.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<AgentId>().map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("agent_id {text:?} is not a UUID: {e}"),
            )
        })?),
    };
    if request.fleet && preassigned.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a fleet token cannot pre-assign one agent id",
        ));
    }
    let secret = Secret::generate();
    let new = NewEndpoint {
        name,
        kind: if request.fleet {
            EndpointKind::Fleet
        } else {
            EndpointKind::Device
        },
        preassigned,
        secret_hash: secret.hash(),
    };
    let record = ctx
        .store
        .call(move |c| endpoints::create(c, &new, unix_now()))
        .await?;
    let token = JoinToken {
        hub_addrs: ctx.hub_addrs.clone(),
        ca_fingerprint: ctx.pki.ca_fingerprint().0,
        endpoint: record.id,
        secret,
    };
    info!(endpoint = %record.id, name = %record.name, kind = ?record.kind, "endpoint created");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: record.id.0,
            name: record.name,
            kind: record.kind,
            agent_id: preassigned.map(|a| a.to_string()),
            edge_key: token.encode(),
        }),
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    page: Option<u32>,
    per_page: Option<u32>,
    search: Option<String>,
    status: Option<String>,
    kind: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Page {
    items: Vec<EndpointView>,
    total: u64,
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
    Query(params): Query<ListParams>,
) -> Result<Json<Page>, ApiError> {
    let now = Instant::now();
    let stale = ctx.stale_after();
    let live = |wanted: &[Status]| ctx.registry.ids_with_status(now, stale, wanted);
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(StatusFilter::Pending),
        Some("standby") => Some(StatusFilter::Among(live(&[Status::Standby]))),
        Some("active") => Some(StatusFilter::Among(live(&[Status::Active]))),
        Some("offline") => Some(StatusFilter::NotAmong(live(&[
            Status::Standby,
            Status::Active,
        ]))),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown status {other:?}: use pending, offline, standby or active"),
            ))
        }
    };
    let fleets = match params.kind.as_deref() {
        None | Some("device") => false,
        Some("fleet") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown kind {other:?}: use device or fleet"),
            ))
        }
    };
    let query = ListQuery {
        page: params.page.unwrap_or(1),
        per_page: params.per_page.unwrap_or(100),
        search: params.search.filter(|s| !s.is_empty()),
        status,
        fleets,
    };
    let (records, total) = ctx.store.call(move |c| endpoints::list(c, &query)).await?;
    let items = records
        .iter()
        .map(|r| EndpointView::new(r, ctx.registry.get(r.id).map(|s| s.view(now, stale))))
        .collect();
    Ok(Json(Page { items, total }))
}

async fn view_of(ctx: &HubContext, id: EndpointId) -> Result<EndpointView, ApiError> {
    let record = ctx
        .store
        .call(move |c| endpoints::find(c, id))
        .await?
        .ok_or_else(|| not_found(id))?;
    let live = ctx
        .registry
        .get(id)
        .map(|s| s.view(Instant::now(), ctx.stale_after()));
    Ok(EndpointView::new(&record, live))
}

fn not_found(id: EndpointId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("endpoint {id} does not exist"),
    )
}

pub(super) async fn show(
    State(ctx): State<Arc<HubContext>>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = EndpointId(id);
    let view = view_of(&ctx, id).await?;
    let snapshot = ctx.store.call(move |c| extras::snapshot(c, id)).await?;
    let mut body = serde_json::to_value(view).unwrap_or_default();
    body["snapshot"] = serde_json::to_value(snapshot).unwrap_or_default();
    Ok(Json(body))
}

pub(super) async fn approve(
    State(ctx): State<Arc<HubContext>>,
    Path(id): Path<u64>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = EndpointId(id);
    if !ctx.store.call(move |c| endpoints::approve(c, id)).await? {
        return Err(not_found(id));
    }
    if let Some(session) = ctx.registry.get(id) {
        session.approve();
    }
    info!(endpoint = %id, "endpoint approved");
    Ok(Json(view_of(&ctx, id).await?))
}

pub(super) async fn remove(
    State(ctx): State<Arc<HubContext>>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = EndpointId(id);
    let removed = ctx
        .store
        .call(move |c| endpoints::remove(c, id, unix_now()))
        .await?;
    if removed.is_none() {
        return Err(not_found(id));
    }
    let disconnected = ctx.registry.revoke(id);
    info!(endpoint = %id, disconnected, "endpoint removed, certificates revoked");
    Ok(Json(
        serde_json::json!({ "removed": id.0, "disconnected": disconnected }),
    ))
}

pub(super) async fn summon(
    State(ctx): State<Arc<HubContext>>,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = EndpointId(id);
    let started = Instant::now();
    let session = match ctx.registry.get(id) {
        Some(session) => session,
        None => {
            view_of(&ctx, id).await?;
            return Err(SummonError::Offline(id).into());
        }
    };
    session.summon(ctx.summon_timeout).await?;
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(Json(
        serde_json::json!({ "id": id.0, "status": "active", "ready_ms": ready_ms }),
    ))
}
