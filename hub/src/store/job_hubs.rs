//! Jobs across the hubs of one store (issue #18, migration 21): which hub coordinates each job,
//! and what the hub holding a device reads and writes for a job another hub coordinates.
//!
//! A job is coordinated by one hub (`jobs.hub_id`), as a rollout is (`store::rollouts`): the
//! hub it was created on, or the one that took it over when that hub died. The coordinator alone
//! decides which targets are sent the job (it keeps the concurrency and the expiry), and writes
//! `sent`; the hub holding a device reads the order from here, stores the device's `running` and
//! its result, and the coordinator reads those rows back ([`states_of`]).

use std::collections::HashMap;

use outpost_protocol::EndpointId;

use super::db::{params, params_from_iter, Db, OptionalExtension, Value};
use super::hubs::HubId;
use super::jobs::{load_where, state_of, OpenJob};
use super::{unix_now, StoreError};
use crate::jobs::TargetState;

/// Ids read or written in one statement.
const CHUNK: usize = 500;

/// Job `job` is coordinated by `hub` (the hub it was created on).
pub fn coordinate(conn: &Db, job: i64, hub: HubId) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE jobs SET hub_id = ?2 WHERE id = ?1",
        params![job, hub.0],
    )?;
    Ok(())
}

/// The hub coordinating job `job`, if any.
pub fn coordinator(conn: &Db, job: i64) -> Result<Option<HubId>, StoreError> {
    Ok(conn
        .query_row("SELECT hub_id FROM jobs WHERE id = ?1", [job], |r| {
            r.get::<Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .map(HubId))
}

/// Take the unfinished jobs no live hub coordinates (none, a hub silent since before
/// `alive_since`, or a stopped one) for `hub`; how many it took.
pub fn claim_orphans(conn: &Db, hub: HubId, alive_since: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE jobs SET hub_id = ?1 WHERE finished_at IS NULL AND (hub_id IS NULL OR hub_id NOT IN
           (SELECT id FROM hubs WHERE stopped_at IS NULL AND heartbeat_at >= ?2))",
        params![hub.0, alive_since],
    )?)
}

/// Move the unfinished jobs `from` coordinated to `to` (`from` died); their ids. Of hubs
/// adopting at once, the first takes them and the others find none.
pub fn adopt(conn: &Db, from: HubId, to: HubId) -> Result<Vec<i64>, StoreError> {
    let mut statement = conn.prepare(
        "UPDATE jobs SET hub_id = ?2 WHERE finished_at IS NULL AND hub_id = ?1 RETURNING id",
    )?;
    let ids = statement
        .query_map(params![from.0, to.0], |r| r.get::<i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// The unfinished jobs `hub` coordinates (`only`: those of these ids), with each target's state:
/// for a hub that starts or takes over a dead hub's jobs.
pub fn load_coordinated(
    conn: &Db,
    hub: HubId,
    only: Option<&[i64]>,
) -> Result<Vec<OpenJob>, StoreError> {
    let mut args = vec![Value::from(hub.0)];
    let mut filter = "WHERE finished_at IS NULL AND hub_id = ?".to_owned();
    if let Some(ids) = only {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        filter.push_str(&format!(" AND id IN ({})", marks(ids.len())));
        args.extend(ids.iter().map(|id| Value::from(*id)));
    }
    filter.push_str(" ORDER BY id");
    load_where(conn, &filter, &args)
}

/// A device said it started job `job`: `running`, unless it has moved on already (a result, an
/// expiry or a cancel the coordinator wrote first wins, as in one hub's dispatch).
pub fn mark_started(conn: &Db, job: i64, endpoint: EndpointId) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE job_targets SET state = ?3, updated_at = ?4
         WHERE job_id = ?1 AND endpoint_id = ?2 AND outcome IS NULL AND state IN (?5, ?6)",
        params![
            job,
            endpoint.0 as i64,
            TargetState::Running.as_str(),
            unix_now(),
            TargetState::Queued.as_str(),
            TargetState::Sent.as_str(),
        ],
    )?;
    Ok(changed > 0)
}

/// The stored states of `endpoints` in job `job` (those it targets).
pub fn states_of(
    conn: &Db,
    job: i64,
    endpoints: &[EndpointId],
) -> Result<Vec<(EndpointId, TargetState)>, StoreError> {
    let mut states = Vec::with_capacity(endpoints.len());
    for chunk in endpoints.chunks(CHUNK) {
        let sql = format!(
            "SELECT endpoint_id, state FROM job_targets WHERE job_id = ? AND endpoint_id IN ({})
             ORDER BY endpoint_id",
            marks(chunk.len())
        );
        let args: Vec<Value> = std::iter::once(Value::from(job))
            .chain(chunk.iter().map(|id| Value::from(id.0 as i64)))
            .collect();
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(params_from_iter(&args), |r| {
            Ok((r.get::<i64>(0)?, r.get::<String>(1)?))
        })?;
        for row in rows {
            let (endpoint, state) = row?;
            states.push((EndpointId(endpoint as u64), state_of(&state)?));
        }
    }
    Ok(states)
}

/// The jobs another hub than `hub` coordinates that `endpoints` were sent or run and have not
/// reported: what a device's new session on `hub` is sent again, as `(job, endpoint)`.
pub fn pending_elsewhere(
    conn: &Db,
    hub: HubId,
    endpoints: &[EndpointId],
) -> Result<Vec<(i64, EndpointId)>, StoreError> {
    let mut pending = Vec::new();
    for chunk in endpoints.chunks(CHUNK) {
        let sql = format!(
            "SELECT t.job_id, t.endpoint_id FROM jobs j JOIN job_targets t ON t.job_id = j.id
             WHERE j.finished_at IS NULL AND j.hub_id IS NOT NULL AND j.hub_id <> ?
               AND t.state IN (?, ?) AND t.endpoint_id IN ({})
             ORDER BY t.job_id, t.endpoint_id",
            marks(chunk.len())
        );
        let args: Vec<Value> = [
            Value::from(hub.0),
            Value::from(TargetState::Sent.as_str().to_owned()),
            Value::from(TargetState::Running.as_str().to_owned()),
        ]
        .into_iter()
        .chain(chunk.iter().map(|id| Value::from(id.0 as i64)))
        .collect();
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(params_from_iter(&args), |r| {
            Ok((r.get(0)?, r.get::<i64>(1)?))
        })?;
        for row in rows {
            let (job, endpoint) = row?;
            pending.push((job, EndpointId(endpoint as u64)));
        }
    }
    Ok(pending)
}

/// Which hub holds each of `endpoints` that is connected somewhere.
pub fn holders_of(
    conn: &Db,
    endpoints: &[EndpointId],
) -> Result<HashMap<EndpointId, HubId>, StoreError> {
    let mut held = HashMap::new();
    for chunk in endpoints.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, held_by FROM endpoints
             WHERE connected = 1 AND held_by IS NOT NULL AND id IN ({})",
            marks(chunk.len())
        );
        let args: Vec<i64> = chunk.iter().map(|id| id.0 as i64).collect();
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(params_from_iter(&args), |r| {
            Ok((r.get::<i64>(0)?, r.get::<i64>(1)?))
        })?;
        for row in rows {
            let (endpoint, hub) = row?;
            held.insert(EndpointId(endpoint as u64), HubId(hub));
        }
    }
    Ok(held)
}

/// `n` bare placeholders.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
#[path = "job_hubs_tests.rs"]
mod tests;
