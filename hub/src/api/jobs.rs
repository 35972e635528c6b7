//! Jobs through the API: `POST /api/jobs` creates one, `GET /api/jobs` pages through them (newest
//! first), `GET /api/jobs/{id}` shows counts by state and a page of devices (optionally those in
//! one state), `GET /api/jobs/{id}/devices/{endpoint}` one device's result and kept output, and
//! `POST /api/jobs/{id}/cancel` stops devices that have not started it.
//!
//! With several hubs on one store, every view reads the store, which every hub writes, and a
//! cancel is forwarded to the live hub that coordinates the job (`jobs.hub_id`).
//!
//! A request is checked whole before anything is stored: what runs by the protocol's own checks
//! (the ones an agent applies), the selection by the store in the same transaction that creates
//! the job, so a refused job leaves no row. Counts of a job in progress come from its dispatch in
//! memory ([`crate::jobs`]), which is ahead of the rows by up to one tick; device rows and the
//! counts that page them come from the store, so pages add up.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use crate::store::db::Db;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use outpost_api::{
    JobDetail, JobDevice, JobOutput, JobPage, JobShowQuery, JobSummary, StackListQuery,
};
use outpost_protocol::job::JobOutcome;
use outpost_protocol::EndpointId;

use super::page::{counted, page_asked, page_of, Counted};
use super::scoped;
use super::ApiError;
use crate::access::Principal;
use crate::cli::{parse_duration, HumanDuration};
use crate::context::HubContext;
use crate::jobs::{JobError, TargetState};
use crate::store::job_hubs;
use crate::store::jobs::{self, NewJob, StoredJob, TargetRow};
use crate::store::rollouts::Selector;
use crate::store::{unix_now, StoreError};

/// A duration a request may give, its default and its range.
struct Limit {
    name: &'static str,
    default: Duration,
    range: RangeInclusive<Duration>,
    /// The range as a human writes it.
    range_text: &'static str,
}

/// How long a job waits for devices that have not started it: a day covers a device that is
/// switched off overnight; a month bounds how long the hub keeps it open.
const EXPIRES: Limit = Limit {
    name: "expires",
    default: Duration::from_secs(24 * 3600),
    range: Duration::from_secs(10)..=Duration::from_secs(30 * 86_400),
    range_text: "10s to 30d",
};

/// How long one device may run a job: an image prune on a slow SD card takes minutes.
const TIMEOUT: Limit = Limit {
    name: "timeout",
    default: Duration::from_secs(600),
    range: Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
    range_text: "1s to 24h",
};

/// Devices running a job at once unless asked otherwise: enough for a fleet of thousands to
/// finish a short job within minutes, few enough that their results do not arrive all at once.
const DEFAULT_CONCURRENCY: u32 = 500;

/// The most devices running a job at once.
const CONCURRENCY: RangeInclusive<u32> = 1..=10_000;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let status = match &e {
            JobError::Unknown(_) | JobError::NoDevice => StatusCode::BAD_REQUEST,
            JobError::NotFound(_) => StatusCode::NOT_FOUND,
            JobError::Finished(_) => StatusCode::CONFLICT,
            JobError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

pub(super) async fn create(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    request: Result<Json<outpost_api::NewJob>, JsonRejection>,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    let Json(request) = request.map_err(|e| bad(e.body_text()))?;
    let job = new_job(&request, unix_now())?;
    scoped::check_selection(&ctx, &principal, &job.selector, "the job").await?;
    let (id, _) = ctx.jobs.create(&ctx, job).await?;
    Ok((StatusCode::CREATED, Json(summary_of(&ctx, id).await?)))
}

/// The job a request asks for, every absent part its default, created at `now`.
fn new_job(request: &outpost_api::NewJob, now: i64) -> Result<NewJob, ApiError> {
    let spec = request.what.spec().map_err(|e| bad(e.to_string()))?;
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
    let expires = duration(&EXPIRES, request.expires.as_deref())?;
    let timeout = duration(&TIMEOUT, request.timeout.as_deref())?;
    let concurrency = request.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !CONCURRENCY.contains(&concurrency) {
        return Err(bad(format!(
            "concurrency: {concurrency} is out of range ({} to {})",
            CONCURRENCY.start(),
            CONCURRENCY.end()
        )));
    }
    Ok(NewJob {
        spec,
        selector,
        concurrency,
        timeout_ms: timeout.as_millis() as u64,
        expires_at: now + expires.as_secs() as i64,
    })
}

fn duration(limit: &Limit, given: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = given else {
        return Ok(limit.default);
    };
    let value = parse_duration(text).map_err(|e| bad(format!("{}: {e}", limit.name)))?;
    if !limit.range.contains(&value) {
        return Err(bad(format!(
            "{}: {text} is out of range ({})",
            limit.name, limit.range_text
        )));
    }
    Ok(value)
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<StackListQuery>, QueryRejection>,
) -> Result<Counted<JobPage>, ApiError> {
    let (offset, per_page) = page_asked(query)?;
    let scope = principal.scope;
    let (stored, total) = ctx
        .store
        .read(move |c| {
            let (page, total) = jobs::list(c, offset, per_page, scope.as_ref())?;
            let counted = page
                .into_iter()
                .map(|job| Ok((jobs::counts(c, job.id)?, job)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((counted, total))
        })
        .await?;
    let items = stored
        .iter()
        .map(|(counts, job)| summary(&ctx, job, counts))
        .collect();
    Ok(counted(total, JobPage { items, total }))
}

pub(super) async fn show(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
    query: Result<Query<JobShowQuery>, QueryRejection>,
) -> Result<Counted<JobDetail>, ApiError> {
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let state = state_filter(query.state.as_deref())?;
    let (offset, per_page) = page_of(&StackListQuery {
        page: query.page,
        per_page: query.per_page,
    })?;
    let (job, counts, rows) = ctx
        .store
        .read(move |c| {
            let Some(job) = jobs::find(c, id)? else {
                return Ok(None);
            };
            let counts = jobs::counts(c, id)?;
            let rows = jobs::targets(c, id, state, offset, per_page)?;
            Ok(Some((job, counts, rows)))
        })
        .await?
        .ok_or(JobError::NotFound(id))?;
    scoped::check_selection(&ctx, &principal, &job.job.selector, &format!("job {id}")).await?;
    let matching: u32 = match state {
        Some(state) => counts.get(&state).copied().unwrap_or_default(),
        None => counts.values().sum(),
    };
    let detail = JobDetail {
        summary: summary(&ctx, &job, &counts),
        devices: rows
            .into_iter()
            .map(|row| {
                let progress = ctx.jobs.pulls.of(id, row.endpoint);
                JobDevice {
                    progress,
                    ..device(row)
                }
            })
            .collect(),
    };
    Ok(counted(matching, detail))
}

/// `?state=`: empty or absent for every device.
fn state_filter(given: Option<&str>) -> Result<Option<TargetState>, ApiError> {
    let Some(name) = given.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    TargetState::parse(name).map(Some).ok_or_else(|| {
        let names: Vec<_> = TargetState::ALL.iter().map(|s| s.as_str()).collect();
        bad(format!(
            "state: no state {name:?}; use one of {}",
            names.join(", ")
        ))
    })
}

pub(super) async fn output(
    State(ctx): State<Arc<HubContext>>,
    Path((id, endpoint)): Path<(i64, u64)>,
) -> Result<Json<JobOutput>, ApiError> {
    let kept = ctx
        .store
        .read(move |c| jobs::output(c, id, EndpointId(endpoint)))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("job {id} has no device {endpoint}"),
            )
        })?;
    let output_bytes = kept.row.output_bytes.unwrap_or_default();
    let held = (kept.head.len() + kept.tail.len()) as u64;
    Ok(Json(JobOutput {
        device: device(kept.row),
        head: String::from_utf8_lossy(&kept.head).into_owned(),
        tail: String::from_utf8_lossy(&kept.tail).into_owned(),
        output_bytes,
        omitted: output_bytes.saturating_sub(held),
    }))
}

/// Cancel a job: here if this hub coordinates it, else on the live hub that does
/// ([`crate::peers`]).
pub(super) async fn cancel(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let found = ctx.store.read(move |c| jobs::find(c, id)).await?;
    let job = found.ok_or(JobError::NotFound(id))?;
    scoped::check_selection(&ctx, &principal, &job.job.selector, &format!("job {id}")).await?;
    if ctx.jobs.counts(id).is_none() {
        let coordinator = move |c: &Db| job_hubs::coordinator(c, id);
        let path = format!("/api/jobs/{id}/cancel");
        if let Some(answer) = super::peer::to_coordinator(&ctx, coordinator, path, None).await? {
            return Ok(answer);
        }
    }
    Ok(cancel_here(State(ctx), Path(id)).await?.into_response())
}

/// Cancel a job this hub coordinates; for another hub, which forwarded the command, too.
pub(super) async fn cancel_here(
    State(ctx): State<Arc<HubContext>>,
    Path(id): Path<i64>,
) -> Result<Json<JobSummary>, ApiError> {
    ctx.jobs.cancel(&ctx, id).await?;
    Ok(Json(summary_of(&ctx, id).await?))
}

async fn summary_of(ctx: &HubContext, id: i64) -> Result<JobSummary, ApiError> {
    let found = ctx.store.read(move |c| stored_with_counts(c, id)).await?;
    let (job, counts) = found.ok_or(JobError::NotFound(id))?;
    Ok(summary(ctx, &job, &counts))
}

fn stored_with_counts(c: &Db, id: i64) -> Result<Option<(StoredJob, Counts)>, StoreError> {
    let Some(job) = jobs::find(c, id)? else {
        return Ok(None);
    };
    Ok(Some((job, jobs::counts(c, id)?)))
}

type Counts = BTreeMap<TargetState, u32>;

/// The job's summary: counts from memory while it is in progress, else `stored` (its rows').
fn summary(ctx: &HubContext, job: &StoredJob, stored: &Counts) -> JobSummary {
    let counts = ctx.jobs.counts(job.id).unwrap_or_else(|| stored.clone());
    let state = match (job.cancelled_at, job.finished_at) {
        (Some(_), _) => "cancelled",
        (None, Some(_)) => "finished",
        (None, None) => "running",
    };
    let selector = &job.job.selector;
    JobSummary {
        id: job.id,
        what: job.job.spec.summary(),
        state: state.to_owned(),
        counts: count_names(&counts),
        concurrency: job.job.concurrency,
        timeout: HumanDuration(Duration::from_millis(job.job.timeout_ms)).to_string(),
        created_at: job.created_at,
        expires_at: job.job.expires_at,
        finished_at: job.finished_at,
        groups: selector.groups.clone(),
        tags: selector.tags.clone(),
        endpoints: selector.endpoints.clone(),
    }
}

/// Every state by name, those without devices as 0, and `total`.
fn count_names(counts: &Counts) -> BTreeMap<String, u32> {
    let by_state = TargetState::ALL.into_iter().map(|state| {
        let count = counts.get(&state).copied().unwrap_or_default();
        (state.as_str().to_owned(), count)
    });
    let total = ("total".to_owned(), counts.values().sum());
    by_state.chain([total]).collect()
}

fn device(row: TargetRow) -> JobDevice {
    let outcome = row.outcome.as_ref();
    JobDevice {
        endpoint: row.endpoint.0,
        name: row.name,
        state: row.state.as_str().to_owned(),
        outcome: outcome.map(outcome_text),
        exit_code: match outcome {
            Some(JobOutcome::Exited(code)) => Some(*code),
            _ => None,
        },
        http_status: match outcome {
            Some(JobOutcome::Answered(status)) => Some(*status),
            _ => None,
        },
        reason: match outcome {
            Some(JobOutcome::Failed(reason)) => Some(reason.clone()),
            _ => None,
        },
        output_bytes: row.output_bytes,
        duration_ms: row.duration_ms,
        updated_at: row.updated_at,
        progress: None,
    }
}

/// How a job ended on a device, in one line.
fn outcome_text(outcome: &JobOutcome) -> String {
    match outcome {
        JobOutcome::Exited(code) => format!("exit {code}"),
        JobOutcome::Answered(status) => format!("HTTP {status}"),
        JobOutcome::Failed(reason) => format!("failed: {reason}"),
        JobOutcome::TimedOut => "timed out".to_owned(),
        JobOutcome::Expired => "expired before it started".to_owned(),
        JobOutcome::Interrupted => "interrupted (the agent stopped while it ran)".to_owned(),
        JobOutcome::Cancelled => "cancelled".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_range_text_says_its_bounds() {
        for limit in [&EXPIRES, &TIMEOUT] {
            let (low, high) = limit.range_text.split_once(" to ").expect("a range");
            let parsed = parse_duration(low).ok()..=parse_duration(high).ok();
            assert_eq!(
                parsed.start(),
                &Some(*limit.range.start()),
                "{}",
                limit.name
            );
            assert_eq!(parsed.end(), &Some(*limit.range.end()), "{}", limit.name);
            assert!(limit.range.contains(&limit.default));
        }
    }

    #[test]
    fn every_state_is_counted_with_the_total() {
        let counts = Counts::from([(TargetState::Queued, 3), (TargetState::Failed, 1)]);
        let named = count_names(&counts);
        assert_eq!(named.len(), TargetState::ALL.len() + 1);
        assert_eq!(
            (
                named["queued"],
                named["failed"],
                named["lost"],
                named["total"]
            ),
            (3, 1, 0, 4)
        );
    }
}
