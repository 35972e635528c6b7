//! Deployments: which version of which stack each device should run, and the last phase the
//! device reported for it. A device's desired state is its deployments' specs, read from the
//! versions (stored once, never copied per device).

use outpost_protocol::snapshot::sanitize_text;
use outpost_protocol::stack::{DesiredOrder, Phase, StackReport, StackSpec, MAX_REASON};
use outpost_protocol::{wire, EndpointId};

use super::db::{params, Db, OptionalExtension};
use super::{unix_now, StoreError};

/// One deployment as the endpoint view and the rollout show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentRow {
    /// The stack.
    pub stack: String,
    /// The version the device should run.
    pub version: u32,
    /// The last phase the device reported for that version (`Queued` until it reports).
    pub phase: Phase,
    /// When it reported it (Unix seconds).
    pub reported_at: Option<i64>,
}

/// What assigning did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assigned {
    /// The device should now run the version, or handle its drift differently (its phase
    /// starts over at `Queued`).
    Changed,
    /// It already should.
    Unchanged,
    /// No such endpoint or stack version.
    Missing,
}

/// Make `version` of stack `stack` what `endpoint` should run, its drift re-applied or (with
/// `report_drift`) only reported.
pub fn assign(
    conn: &Db,
    endpoint: EndpointId,
    stack: &str,
    version: u32,
    report_drift: bool,
) -> Result<Assigned, StoreError> {
    let stack_id: Option<i64> = conn
        .query_row(
            "SELECT s.id FROM stacks s JOIN stack_versions v ON v.stack_id = s.id
             WHERE s.name = ?1 AND v.version = ?2",
            params![stack, version],
            |r| r.get(0),
        )
        .optional()?;
    let exists = super::labels::exists(conn, endpoint)?;
    let (Some(stack_id), true) = (stack_id, exists) else {
        return Ok(Assigned::Missing);
    };
    let changed = conn.execute(
        "INSERT INTO deployments (endpoint_id, stack_id, version, assigned_at, report_drift)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (endpoint_id, stack_id) DO UPDATE SET
             version = excluded.version, assigned_at = excluded.assigned_at, phase = 'queued',
             reason = NULL, pull_done = NULL, pull_total = NULL, reported_at = NULL,
             report_drift = excluded.report_drift
         WHERE deployments.version != excluded.version
             OR deployments.report_drift != excluded.report_drift",
        params![
            endpoint.0 as i64,
            stack_id,
            version,
            unix_now(),
            report_drift
        ],
    )?;
    Ok(if changed > 0 {
        Assigned::Changed
    } else {
        Assigned::Unchanged
    })
}

/// Everything `endpoint` should run, by stack name, and which stacks' drift it only reports.
pub fn desired_state(conn: &Db, endpoint: EndpointId) -> Result<DesiredOrder, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT v.spec, d.report_drift FROM deployments d
         JOIN stacks s ON s.id = d.stack_id
         JOIN stack_versions v ON v.stack_id = d.stack_id AND v.version = d.version
         WHERE d.endpoint_id = ?1 ORDER BY s.name",
    )?;
    let rows = statement.query_map([endpoint.0 as i64], |r| {
        Ok((r.get::<Vec<u8>>(0)?, r.get::<bool>(1)?))
    })?;
    let mut order = DesiredOrder::default();
    for row in rows {
        let (spec, report_drift) = row?;
        let spec = wire::decode::<StackSpec>(&spec)
            .map_err(|e| StoreError::Corrupt(format!("a deployed stack version: {e}")))?;
        if report_drift {
            order.report_drift.push(spec.project.clone());
        }
        order.state.stacks.push(spec);
    }
    order.report_drift.sort();
    Ok(order)
}

/// Record a device's report: each stack's phase, for the version it should run (a report on an
/// older version, from before a new assignment reached it, changes nothing). Returns how many
/// deployments it updated.
pub fn record_report(
    conn: &Db,
    endpoint: EndpointId,
    report: &StackReport,
) -> Result<usize, StoreError> {
    let now = unix_now();
    let mut statement = conn.prepare_cached(
        "UPDATE deployments SET phase = ?3, reason = ?4, pull_done = ?5, pull_total = ?6,
             reported_at = ?7
         WHERE endpoint_id = ?1 AND version = ?2
             AND stack_id = (SELECT id FROM stacks WHERE name = ?8)",
    )?;
    let mut updated = 0;
    for status in &report.stacks {
        let (phase, reason, done, total) = phase_columns(&status.phase);
        updated += statement.execute(params![
            endpoint.0 as i64,
            status.version,
            phase,
            reason,
            done,
            total,
            now,
            status.project
        ])?;
    }
    Ok(updated)
}

/// `endpoint`'s deployments, by stack name.
pub fn deployments_of(conn: &Db, endpoint: EndpointId) -> Result<Vec<DeploymentRow>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT s.name, d.version, d.phase, d.reason, d.pull_done, d.pull_total, d.reported_at
         FROM deployments d JOIN stacks s ON s.id = d.stack_id
         WHERE d.endpoint_id = ?1 ORDER BY s.name",
    )?;
    let rows = statement.query_map([endpoint.0 as i64], |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<u32>(1)?,
            r.get::<String>(2)?,
            r.get::<Option<String>>(3)?,
            r.get::<Option<u64>>(4)?,
            r.get::<Option<u64>>(5)?,
            r.get::<Option<i64>>(6)?,
        ))
    })?;
    rows.map(|row| {
        let (stack, version, phase, reason, done, total, reported_at) = row?;
        Ok(DeploymentRow {
            stack,
            version,
            phase: phase_of(&phase, reason, done, total)?,
            reported_at,
        })
    })
    .collect()
}

/// How many devices should run some version of stack `name`.
pub fn devices_running(conn: &Db, name: &str) -> Result<u64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM deployments d JOIN stacks s ON s.id = d.stack_id WHERE s.name = ?1",
        [name],
        |r| r.get(0),
    )?)
}

/// A phase as its columns: name, reason (device text, made safe to print), pull bytes.
fn phase_columns(phase: &Phase) -> (&'static str, Option<String>, Option<u64>, Option<u64>) {
    match phase {
        Phase::Queued => ("queued", None, None, None),
        Phase::Pulling { done, total } => ("pulling", None, Some(*done), Some(*total)),
        Phase::Starting => ("starting", None, None, None),
        Phase::Running => ("running", None, None, None),
        Phase::Healthy => ("healthy", None, None, None),
        Phase::Failed { reason } => ("failed", Some(printable(reason)), None, None),
        Phase::Drifted { reason } => ("drifted", Some(printable(reason)), None, None),
        Phase::RolledBack { reason } => ("rolled_back", Some(printable(reason)), None, None),
        Phase::Deferred {
            reason,
            done,
            total,
        } => (
            "deferred",
            Some(printable(reason)),
            Some(*done),
            Some(*total),
        ),
    }
}

fn phase_of(
    name: &str,
    reason: Option<String>,
    done: Option<u64>,
    total: Option<u64>,
) -> Result<Phase, StoreError> {
    let reason = || reason.clone().unwrap_or_default();
    Ok(match name {
        "queued" => Phase::Queued,
        "pulling" => Phase::Pulling {
            done: done.unwrap_or_default(),
            total: total.unwrap_or_default(),
        },
        "starting" => Phase::Starting,
        "running" => Phase::Running,
        "healthy" => Phase::Healthy,
        "failed" => Phase::Failed { reason: reason() },
        "drifted" => Phase::Drifted { reason: reason() },
        "rolled_back" => Phase::RolledBack { reason: reason() },
        "deferred" => Phase::Deferred {
            reason: reason(),
            done: done.unwrap_or_default(),
            total: total.unwrap_or_default(),
        },
        other => return Err(StoreError::Corrupt(format!("deployment phase {other:?}"))),
    })
}

/// A device's reason as the hub keeps it: line breaks as spaces (engine messages have them), any
/// other control or bidirectional character replaced ([`sanitize_text`]), since it reaches
/// admins' terminals; then at most [`MAX_REASON`] bytes, cut at a character boundary.
fn printable(text: &str) -> String {
    let flat = text.replace(['\n', '\r', '\t'], " ");
    let safe = sanitize_text(&flat);
    let mut end = safe.len().min(MAX_REASON);
    while !safe.is_char_boundary(end) {
        end -= 1;
    }
    safe[..end].to_owned()
}

#[cfg(test)]
mod tests;
