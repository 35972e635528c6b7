//! Jobs as the store keeps them (migration 11): the job (its specification once, postcard) and a
//! row per target device with its state and, once it reports, its result — output included —
//! so results survive a restart and a restarted hub resumes the jobs not yet finished that it
//! coordinates ([`super::job_hubs`]).

use std::collections::BTreeMap;

use outpost_protocol::job::{JobOutcome, JobResult, JobSpec};
use outpost_protocol::snapshot::sanitize_text;
use outpost_protocol::{wire, EndpointId};

use super::access::{self, Listed};
use super::db::{params, params_from_iter, Db, DbResult, OptionalExtension, Row, Value};
use super::rollouts::Selector;
use super::{unix_now, StoreError};
use crate::access::Scope;
use crate::jobs::TargetState;

/// A job as it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// What runs on each device.
    pub spec: JobSpec,
    /// The devices it was aimed at (kept to show; targets are resolved once, at creation).
    pub selector: Selector,
    /// Most devices running it at once.
    pub concurrency: u32,
    /// Longest one device may run it, in milliseconds.
    pub timeout_ms: u64,
    /// When queued devices stop being sent it (Unix seconds).
    pub expires_at: i64,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJob {
    /// Its id.
    pub id: i64,
    /// How it was created.
    pub job: NewJob,
    /// When (Unix seconds).
    pub created_at: i64,
    /// When an admin cancelled it.
    pub cancelled_at: Option<i64>,
    /// When every target settled.
    pub finished_at: Option<i64>,
}

/// One target's row, without its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRow {
    /// The device.
    pub endpoint: EndpointId,
    /// Its name, if the endpoint still exists.
    pub name: Option<String>,
    /// Where the job is on it.
    pub state: TargetState,
    /// How it ended, once it did.
    pub outcome: Option<JobOutcome>,
    /// Output bytes it printed, kept or not.
    pub output_bytes: Option<u64>,
    /// How long it ran, in milliseconds.
    pub duration_ms: Option<u64>,
    /// When the row last changed (Unix seconds).
    pub updated_at: i64,
}

/// An open job with each target's state, as a starting hub reloads it.
pub type OpenJob = (StoredJob, Vec<(EndpointId, TargetState)>);

/// One target's kept output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOutput {
    /// The row.
    pub row: TargetRow,
    /// The first bytes.
    pub head: Vec<u8>,
    /// The last bytes not in `head`.
    pub tail: Vec<u8>,
}

/// Store a new job and one queued row per target; its id.
pub fn create(conn: &Db, job: &NewJob, targets: &[EndpointId]) -> Result<i64, StoreError> {
    let id: i64 = conn.query_row(
        "INSERT INTO jobs (spec, summary, selector, concurrency, timeout_ms, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        params![
            wire::encode(&job.spec),
            job.spec.summary(),
            serde_json::to_string(&job.selector).unwrap_or_default(),
            job.concurrency,
            job.timeout_ms as i64,
            unix_now(),
            job.expires_at,
        ],
        |row| row.get(0),
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO job_targets (job_id, endpoint_id, state, updated_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let now = unix_now();
    for endpoint in targets {
        insert.execute(params![
            id,
            endpoint.0 as i64,
            TargetState::Queued.as_str(),
            now
        ])?;
    }
    Ok(id)
}

/// Move targets to a state without a result (sent, running, expired, cancelled). A target with a
/// result keeps it: a report that crossed a cancel or an expiry wins.
pub fn set_states(
    conn: &Db,
    job: i64,
    changes: &[(EndpointId, TargetState)],
) -> Result<(), StoreError> {
    let mut update = conn.prepare_cached(
        "UPDATE job_targets SET state = ?3, updated_at = ?4
         WHERE job_id = ?1 AND endpoint_id = ?2 AND outcome IS NULL",
    )?;
    let now = unix_now();
    for (endpoint, state) in changes {
        update.execute(params![job, endpoint.0 as i64, state.as_str(), now])?;
    }
    Ok(())
}

/// Store a device's result; false when the job has no such target (nothing is stored). A result
/// already stored is kept: the agent runs a job once, so a second one is a resend.
pub fn record_result(
    conn: &Db,
    endpoint: EndpointId,
    result: &JobResult,
) -> Result<bool, StoreError> {
    let outcome = match &result.outcome {
        JobOutcome::Failed(reason) => JobOutcome::Failed(sanitize_text(reason).into_owned()),
        other => other.clone(),
    };
    let state = TargetState::of(&outcome);
    let changed = conn.execute(
        "UPDATE job_targets SET state = ?3, outcome = ?4, head = ?5, tail = ?6,
             output_bytes = ?7, duration_ms = ?8, updated_at = ?9
         WHERE job_id = ?1 AND endpoint_id = ?2 AND outcome IS NULL",
        params![
            result.id as i64,
            endpoint.0 as i64,
            state.as_str(),
            serde_json::to_string(&outcome).unwrap_or_default(),
            result.head,
            result.tail,
            result.output_bytes as i64,
            result.duration_ms as i64,
            unix_now(),
        ],
    )?;
    if changed > 0 {
        return Ok(true);
    }
    Ok(conn
        .query_row(
            "SELECT 1 FROM job_targets WHERE job_id = ?1 AND endpoint_id = ?2",
            params![result.id as i64, endpoint.0 as i64],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Every target of the job has settled.
pub fn finish(conn: &Db, job: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE jobs SET finished_at = ?2 WHERE id = ?1 AND finished_at IS NULL",
        params![job, unix_now()],
    )?;
    Ok(())
}

/// An admin cancelled the job.
pub fn cancel(conn: &Db, job: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE jobs SET cancelled_at = ?2 WHERE id = ?1 AND cancelled_at IS NULL",
        params![job, unix_now()],
    )?;
    Ok(())
}

/// Remove jobs that finished before `finished_before` (Unix seconds), their rows and output with
/// them; how many jobs went. Open jobs are never removed, however old.
pub fn prune_finished(conn: &Db, finished_before: i64) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM job_targets WHERE job_id IN
             (SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1)",
        [finished_before],
    )?;
    Ok(conn.execute(
        "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1",
        [finished_before],
    )?)
}

/// One job's own row.
pub fn find(conn: &Db, id: i64) -> Result<Option<StoredJob>, StoreError> {
    conn.query_row(&select("WHERE id = ?1"), [id], row)
        .optional()?
        .transpose()
}

/// Every job, newest first, a page at a time, and how many there are; with a scope, only those
/// whose selection stays inside it.
pub fn list(
    conn: &Db,
    offset: u64,
    limit: u32,
    scope: Option<&Scope>,
) -> Result<(Vec<StoredJob>, u64), StoreError> {
    const JOBS: Listed<StoredJob> = Listed {
        table: "jobs",
        prefix: "",
        select,
        row,
    };
    access::page_within(conn, &JOBS, offset, limit, scope)
}

/// Every job not yet finished, with each target's state, whichever hub coordinates it (a hub
/// loads those it coordinates: [`super::job_hubs::load_coordinated`]).
#[cfg(test)]
pub fn load_open(conn: &Db) -> Result<Vec<OpenJob>, StoreError> {
    load_where(conn, "WHERE finished_at IS NULL ORDER BY id", &[])
}

/// The jobs `filter` (a `WHERE … ORDER BY …` over `jobs`) picks, with each target's state.
pub(super) fn load_where(
    conn: &Db,
    filter: &str,
    args: &[Value],
) -> Result<Vec<OpenJob>, StoreError> {
    let mut statement = conn.prepare(&select(filter))?;
    let jobs = statement
        .query_map(params_from_iter(args), row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut states = conn.prepare_cached(
        "SELECT endpoint_id, state FROM job_targets WHERE job_id = ?1 ORDER BY endpoint_id",
    )?;
    jobs.into_iter()
        .map(|job| {
            let job = job?;
            let targets = states
                .query_map([job.id], |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?)))?
                .map(|row| {
                    let (endpoint, state) = row?;
                    Ok((EndpointId(endpoint as u64), state_of(&state)?))
                })
                .collect::<Result<_, StoreError>>()?;
            Ok((job, targets))
        })
        .collect()
}

/// How many of the job's targets are in each state.
pub fn counts(conn: &Db, job: i64) -> Result<BTreeMap<TargetState, u32>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT state, COUNT(*) FROM job_targets WHERE job_id = ?1 GROUP BY state",
    )?;
    let rows = statement.query_map([job], |r| Ok((r.get::<String>(0)?, r.get::<u32>(1)?)))?;
    rows.map(|row| {
        let (state, count) = row?;
        Ok((state_of(&state)?, count))
    })
    .collect()
}

/// A page of the job's targets in device order, optionally only those in `state`.
pub fn targets(
    conn: &Db,
    job: i64,
    state: Option<TargetState>,
    offset: u64,
    limit: u32,
) -> Result<Vec<TargetRow>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "{TARGET_COLUMNS}{TARGET_FROM} WHERE t.job_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR t.state = ?2)
         ORDER BY t.endpoint_id LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = statement.query_map(
        params![job, state.map(TargetState::as_str), limit, offset],
        target_row,
    )?;
    rows.map(|row| row?).collect()
}

/// One target's row and kept output.
pub fn output(
    conn: &Db,
    job: i64,
    endpoint: EndpointId,
) -> Result<Option<TargetOutput>, StoreError> {
    let sql = format!(
        "{TARGET_COLUMNS}, t.head, t.tail{TARGET_FROM}
         WHERE t.job_id = ?1 AND t.endpoint_id = ?2"
    );
    let found = conn
        .query_row(&sql, params![job, endpoint.0 as i64], |r| {
            let (head, tail): (Option<Vec<u8>>, Option<Vec<u8>>) = (r.get(7)?, r.get(8)?);
            Ok((
                target_row(r)?,
                head.unwrap_or_default(),
                tail.unwrap_or_default(),
            ))
        })
        .optional()?;
    found
        .map(|(row, head, tail)| {
            Ok(TargetOutput {
                row: row?,
                head,
                tail,
            })
        })
        .transpose()
}

const TARGET_COLUMNS: &str = "SELECT t.endpoint_id, e.name, t.state, t.outcome, t.output_bytes,
        t.duration_ms, t.updated_at";
const TARGET_FROM: &str = " FROM job_targets t LEFT JOIN endpoints e ON e.id = t.endpoint_id";

fn target_row(r: &Row<'_>) -> DbResult<Result<TargetRow, StoreError>> {
    let endpoint: i64 = r.get(0)?;
    let state: String = r.get(2)?;
    let outcome: Option<String> = r.get(3)?;
    let output_bytes: Option<i64> = r.get(4)?;
    let duration_ms: Option<i64> = r.get(5)?;
    let (name, updated_at) = (r.get(1)?, r.get(6)?);
    Ok((|| {
        Ok(TargetRow {
            endpoint: EndpointId(endpoint as u64),
            name,
            state: state_of(&state)?,
            outcome: outcome
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("a job outcome: {e}")))?,
            output_bytes: output_bytes.map(|n| n as u64),
            duration_ms: duration_ms.map(|n| n as u64),
            updated_at,
        })
    })())
}

pub(super) fn state_of(text: &str) -> Result<TargetState, StoreError> {
    TargetState::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("job target state {text:?}")))
}

fn select(rest: &str) -> String {
    format!(
        "SELECT id, spec, selector, concurrency, timeout_ms, expires_at, created_at, cancelled_at,
            finished_at FROM jobs {rest}"
    )
}

fn row(r: &Row<'_>) -> DbResult<Result<StoredJob, StoreError>> {
    let spec: Vec<u8> = r.get(1)?;
    let selector: String = r.get(2)?;
    let (id, concurrency, timeout_ms, expires_at, created_at, cancelled_at, finished_at) = (
        r.get(0)?,
        r.get(3)?,
        r.get::<i64>(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    );
    Ok((|| {
        let spec =
            wire::decode(&spec).map_err(|e| StoreError::Corrupt(format!("job {id}: {e}")))?;
        let selector = serde_json::from_str(&selector)
            .map_err(|e| StoreError::Corrupt(format!("job {id}'s selector: {e}")))?;
        Ok(StoredJob {
            id,
            job: NewJob {
                spec,
                selector,
                concurrency,
                timeout_ms: timeout_ms as u64,
                expires_at,
            },
            created_at,
            cancelled_at,
            finished_at,
        })
    })())
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
