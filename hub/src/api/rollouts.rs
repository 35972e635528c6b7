//! Rollouts through the API: `POST /api/rollouts` starts one, `GET /api/rollouts` pages through
//! them (newest first), `GET /api/rollouts/{id}` shows counts by state and a page of targets,
//! `POST /api/rollouts/{id}/{pause|resume|abort}` steers it.
//!
//! A rollout in progress is read from its controller in memory ([`crate::fleet`]); a finished
//! one, or one another hub coordinates, from its rows, rebuilt the way a restarted hub rebuilds
//! it. A command for a rollout another live hub coordinates is forwarded to that hub.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use outpost_api::{
    NewRollout, PauseRollout, RolloutDetail, RolloutPage, RolloutSummary, RolloutTarget,
    StackListQuery,
};
use outpost_protocol::stack::Phase;

use super::page::{counted, page_asked, Counted};
use super::scoped;
use super::ApiError;
use crate::access::Principal;
use crate::cli::parse_duration;
use crate::context::HubContext;
use crate::fleet::{Command, FleetError};
use crate::rollout::{Counts, Plan, Rollout, RolloutState, TargetRow};
use crate::store::db::Db;
use crate::store::rollouts::{self, Selector, StoredRollout};
use crate::store::{stacks, unix_seconds};

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        let status = match &e {
            FleetError::Unknown(_) | FleetError::NoDevice => StatusCode::BAD_REQUEST,
            FleetError::NoVersion(..) | FleetError::NotActive(_) => StatusCode::NOT_FOUND,
            FleetError::Busy(_) | FleetError::Control(_) => StatusCode::CONFLICT,
            FleetError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// The plan a request asks for, every absent part its default.
fn plan_of(request: &NewRollout) -> Result<Plan, ApiError> {
    let mut plan = Plan::default();
    if let Some(waves) = &request.waves {
        plan.waves = waves.parse().map_err(|e| bad(format!("waves: {e}")))?;
    }
    if let Some(max) = &request.max_failures {
        plan.max_failures = max.parse().map_err(|e| bad(format!("max_failures: {e}")))?;
    }
    if let Some(soak) = &request.soak {
        plan.soak = parse_duration(soak).map_err(|e| bad(format!("soak: {e}")))?;
    }
    if let Some(on_drift) = &request.on_drift {
        plan.on_drift = on_drift
            .parse()
            .map_err(|e| bad(format!("on_drift: {e}")))?;
    }
    Ok(plan)
}

pub(super) async fn start(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<NewRollout>,
) -> Result<(StatusCode, Json<RolloutSummary>), ApiError> {
    let plan = plan_of(&request)?;
    let selector = Selector {
        groups: request.groups.clone(),
        tags: request.tags.clone(),
        endpoints: request.endpoints.clone(),
    };
    if selector == Selector::default() {
        return Err(bad(
            "say which devices: at least one group, tag or endpoint",
        ));
    }
    scoped::check_selection(&ctx, &principal, &selector, "the rollout").await?;
    let stack = request.stack.clone();
    let version = match request.version {
        Some(version) => version,
        None => ctx
            .store
            .read(move |c| stacks::version(c, &stack, None))
            .await?
            .map(|v| v.version)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no stack named {:?}", request.stack),
                )
            })?,
    };
    let id = ctx
        .fleet
        .start(&ctx, request.stack.clone(), version, selector, plan)
        .await?;
    Ok((StatusCode::CREATED, Json(summary_of(&ctx, id).await?)))
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<StackListQuery>, QueryRejection>,
) -> Result<Counted<RolloutPage>, ApiError> {
    let (offset, per_page) = page_asked(query)?;
    let scope = principal.scope;
    let (stored, total) = ctx
        .store
        .read(move |c| rollouts::list(c, offset, per_page, scope.as_ref()))
        .await?;
    let mut items = Vec::with_capacity(stored.len());
    for rollout in stored {
        items.push(listed(&ctx, rollout).await?);
    }
    Ok(counted(total, RolloutPage { items, total }))
}

pub(super) async fn show(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
    query: Result<Query<StackListQuery>, QueryRejection>,
) -> Result<Counted<RolloutDetail>, ApiError> {
    let (offset, per_page) = page_asked(query)?;
    let stored = find_for(&ctx, &principal, id).await?;
    let (summary, targets) = view(&ctx, stored, offset as usize, per_page as usize).await?;
    let total = summary.counts.get("total").copied().unwrap_or_default();
    Ok(counted(total, RolloutDetail { summary, targets }))
}

/// Pause, resume or abort a rollout: here if this hub coordinates it, else on the hub that does
/// ([`crate::peers`]).
pub(super) async fn control(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    Path((id, action)): Path<(i64, String)>,
    Json(body): Json<PauseRollout>,
) -> Result<Response, ApiError> {
    command_of(&action, body.clone())?;
    find_for(&ctx, &principal, id).await?;
    if ctx.fleet.with_active(id, |_| ()).await.is_none() {
        let coordinator = move |c: &Db| rollouts::coordinator(c, id);
        let path = format!("/api/rollouts/{id}/{action}");
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let forwarded = super::peer::to_coordinator(&ctx, coordinator, path, Some(json)).await?;
        if let Some(answer) = forwarded {
            return Ok(answer);
        }
    }
    Ok(control_here(State(ctx), Path((id, action)), Json(body))
        .await?
        .into_response())
}

/// Steer a rollout this hub coordinates; for another hub, which forwarded the command, too.
pub(super) async fn control_here(
    State(ctx): State<Arc<HubContext>>,
    Path((id, action)): Path<(i64, String)>,
    Json(body): Json<PauseRollout>,
) -> Result<Json<RolloutSummary>, ApiError> {
    let command = command_of(&action, body)?;
    ctx.fleet.command(&ctx, id, command).await?;
    Ok(Json(summary_of(&ctx, id).await?))
}

fn command_of(action: &str, body: PauseRollout) -> Result<Command, ApiError> {
    match action {
        "pause" => Ok(Command::Pause(body.note)),
        "resume" => Ok(Command::Resume),
        "abort" => Ok(Command::Abort),
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no rollout action {other:?}: use pause, resume or abort"),
        )),
    }
}

async fn find(ctx: &HubContext, id: i64) -> Result<StoredRollout, ApiError> {
    ctx.store
        .read(move |c| rollouts::find(c, id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no rollout {id}")))
}

/// Rollout `id`, when the principal's scope covers its selection.
async fn find_for(
    ctx: &HubContext,
    principal: &Principal,
    id: i64,
) -> Result<StoredRollout, ApiError> {
    let stored = find(ctx, id).await?;
    let what = format!("rollout {id}");
    scoped::check_selection(ctx, principal, &stored.selector, &what).await?;
    Ok(stored)
}

async fn summary_of(ctx: &HubContext, id: i64) -> Result<RolloutSummary, ApiError> {
    let stored = find(ctx, id).await?;
    Ok(view(ctx, stored, 0, 0).await?.0)
}

/// A rollout's summary for the list: from the controller in memory, else from the record and the
/// counts saved with it (no target row is read unless a hub that did not keep counts saved it).
async fn listed(ctx: &HubContext, stored: StoredRollout) -> Result<RolloutSummary, ApiError> {
    if let Some(summary) = ctx
        .fleet
        .with_active(stored.id, |r| summary(&stored, r))
        .await
    {
        return Ok(summary);
    }
    match stored.counts {
        Some(counts) => Ok(summary_of_record(&stored, &counts)),
        None => Ok(view(ctx, stored, 0, 0).await?.0),
    }
}

/// The summary and `limit` targets from `offset`: from the controller in memory when the
/// rollout is in progress, else from its rows.
async fn view(
    ctx: &HubContext,
    stored: StoredRollout,
    offset: usize,
    limit: usize,
) -> Result<(RolloutSummary, Vec<RolloutTarget>), ApiError> {
    let read = |rollout: &Rollout| {
        let targets = rollout
            .rows()
            .skip(offset)
            .take(limit)
            .map(target)
            .collect();
        (summary(&stored, rollout), targets)
    };
    if let Some(view) = ctx.fleet.with_active(stored.id, read).await {
        return Ok(view);
    }
    let id = stored.id;
    let rows = ctx.store.read(move |c| rollouts::targets(c, id)).await?;
    let rollout = Rollout::restore(stored.record.clone(), rows, |_| false, SystemTime::now())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(read(&rollout))
}

fn summary(stored: &StoredRollout, rollout: &Rollout) -> RolloutSummary {
    summary_with(
        stored,
        rollout.state(),
        rollout.wave(),
        rollout.plan(),
        &rollout.counts(),
    )
}

fn summary_of_record(stored: &StoredRollout, counts: &Counts) -> RolloutSummary {
    let record = &stored.record;
    summary_with(stored, &record.state, record.wave, &record.plan, counts)
}

fn summary_with(
    stored: &StoredRollout,
    state: &RolloutState,
    wave: u32,
    plan: &Plan,
    counts: &Counts,
) -> RolloutSummary {
    let (state, reason) = match state {
        RolloutState::Running => ("running", None),
        RolloutState::Paused(why) => ("paused", Some(why.to_string())),
        RolloutState::Completed => ("completed", None),
        RolloutState::Aborted => ("aborted", None),
    };
    RolloutSummary {
        id: stored.id,
        stack: stored.stack.clone(),
        version: stored.version,
        state: state.to_owned(),
        reason,
        wave,
        waves: plan.waves.count() as u32,
        plan: format!(
            "waves {} max-failures {} soak {} on-drift {}",
            plan.waves,
            plan.max_failures,
            crate::cli::HumanDuration(plan.soak),
            plan.on_drift
        ),
        counts: counts_map(counts),
        created_at: stored.created_at,
    }
}

fn counts_map(counts: &Counts) -> BTreeMap<String, u32> {
    let overlapping = [("offline", counts.offline), ("total", counts.total())];
    counts
        .by_state()
        .into_iter()
        .chain(overlapping)
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn target(row: TargetRow<'_>) -> RolloutTarget {
    RolloutTarget {
        endpoint: row.endpoint.0,
        wave: row.wave,
        state: row.state.as_str().to_owned(),
        pulled: match row.phase {
            Phase::Pulling { done, total } | Phase::Deferred { done, total, .. } => {
                Some([*done, *total])
            }
            _ => None,
        },
        online: row.online,
        since: unix_seconds(row.since),
        reason: row.reason.map(str::to_owned),
    }
}
