//! `/api/endpoints`: create, show, approve, summon, remove.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_api::{Endpoint, EndpointCreated, EndpointDetail, EndpointStatus, Removed, Summoned};
use outpost_protocol::token::JoinToken;
use outpost_protocol::{AgentId, EndpointId, Secret};
use tokio::time::Instant;
use tracing::info;

use super::id::{CanonicalId, IdPath};
use super::labels::{parse_group, parse_tags};
use super::view::{self, kind};
use super::ApiError;
use crate::changes::Change;
use crate::context::HubContext;
use crate::registry::SummonError;
use crate::store::{
    deployments, endpoints, labels, snapshots, unix_now, EndpointKind, NewEndpoint,
};

/// Longest endpoint name accepted.
const MAX_NAME: usize = 128;

pub(super) async fn create(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<outpost_api::NewEndpoint>,
) -> Result<(StatusCode, Json<EndpointCreated>), ApiError> {
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
    let group = parse_group(request.group.as_deref())?;
    let tags = parse_tags(&request.tags)?;
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
        .call(move |c| {
            let tx = c.transaction()?;
            let record = endpoints::create(&tx, &new, unix_now())?;
            labels::set_group(&tx, record.id, group.as_ref())?;
            // parse_tags bounded the count, so every tag lands.
            labels::set_tags(&tx, record.id, &tags)?;
            tx.commit()?;
            Ok(endpoints::find(c, record.id)?.unwrap_or(record))
        })
        .await?;
    let token = JoinToken {
        hub_addrs: ctx.hubs.addrs(),
        ca_fingerprint: ctx.pki.ca_fingerprint().0,
        endpoint: record.id,
        secret,
    };
    info!(endpoint = %record.id, name = %record.name, kind = ?record.kind, "endpoint created");
    if record.kind == EndpointKind::Device && (record.group.is_some() || !record.tags.is_empty()) {
        ctx.fleet.labelled(record.id);
    }
    Ok((
        StatusCode::CREATED,
        Json(EndpointCreated {
            id: record.id.0,
            name: record.name,
            kind: kind(record.kind),
            agent_id: preassigned.map(|a| a.to_string()),
            group: record.group,
            tags: record.tags,
            edge_key: token.encode(),
        }),
    ))
}

pub(super) async fn view_of(ctx: &HubContext, id: EndpointId) -> Result<Endpoint, ApiError> {
    let record = ctx
        .store
        .call(move |c| endpoints::find(c, id))
        .await?
        .ok_or_else(|| not_found(id))?;
    let live = ctx
        .registry
        .get(id)
        .map(|s| s.detail_view(Instant::now(), ctx.stale_after()));
    Ok(view::endpoint(&record, live, &ctx.hubs))
}

pub(super) fn not_found(id: EndpointId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("endpoint {id} does not exist"),
    )
}

pub(super) async fn show(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
) -> Result<Json<EndpointDetail>, ApiError> {
    let endpoint = view_of(&ctx, id).await?;
    let (snapshot, deployed) = ctx
        .store
        .read(move |c| {
            Ok((
                snapshots::snapshot(c, id)?,
                deployments::deployments_of(c, id)?,
            ))
        })
        .await?;
    let stacks = deployed.into_iter().map(view::device_stack).collect();
    let traffic = super::budgets::traffic_of(&ctx, id).await?;
    Ok(Json(EndpointDetail {
        endpoint,
        snapshot,
        stacks,
        traffic: Some(traffic),
    }))
}

pub(super) async fn approve(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
) -> Result<Json<Endpoint>, ApiError> {
    if !ctx.store.call(move |c| endpoints::approve(c, id)).await? {
        return Err(not_found(id));
    }
    crate::changes::made(&ctx, Change::Approved(id)).await;
    info!(endpoint = %id, "endpoint approved");
    Ok(Json(view_of(&ctx, id).await?))
}

pub(super) async fn remove(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
) -> Result<Json<Removed>, ApiError> {
    let removed = ctx
        .store
        .call(move |c| endpoints::remove(c, id, unix_now()))
        .await?;
    if removed.is_none() {
        return Err(not_found(id));
    }
    let disconnected = crate::changes::made(&ctx, Change::Removed(id)).await;
    info!(endpoint = %id, disconnected, "endpoint removed, certificates revoked");
    Ok(Json(Removed {
        removed: id.0,
        disconnected,
    }))
}

/// Summon a device: here if this hub holds it, else through the hub that does
/// ([`crate::peers`]).
pub(super) async fn summon(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
    request: Request,
) -> Result<Response, ApiError> {
    if ctx.registry.get(id).is_none() {
        if let Some(peer) = crate::peers::holder(&ctx, id).await? {
            return super::peer::relay(&ctx, &peer, request).await;
        }
    }
    Ok(summon_here(State(ctx), IdPath(CanonicalId(id)))
        .await?
        .into_response())
}

/// Summon a device this hub holds; for another hub, which forwarded the summon, too.
pub(super) async fn summon_here(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
) -> Result<Json<Summoned>, ApiError> {
    let started = Instant::now();
    let session = match ctx.registry.get(id) {
        Some(session) => session,
        None => {
            view_of(&ctx, id).await?;
            return Err(SummonError::Offline(id).into());
        }
    };
    let waited = session.summon(ctx.summon_timeout).await?;
    ctx.metrics.summoned(waited);
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(Json(Summoned {
        id: id.0,
        status: EndpointStatus::Active,
        ready_ms,
    }))
}
