//! Endpoint rows: creation, lookup, approval, removal. Enrolment (binding an agent) is in
//! [`super::enroll`], certificates in [`super::certs`], batched liveness in [`super::liveness`],
//! engine snapshots in [`super::snapshots`], hub settings in [`super::settings`].

use std::time::Duration;

use outpost_protocol::{AgentId, EndpointId};
use outpost_transport::congestion::PathEstimate;
use serde::Serialize;

use super::db::{
    params, Db, DbError, DbResult, Dialect, OptionalExtension, Row, TransactionBehavior,
};
use super::StoreError;

/// A device, or a fleet template whose token many devices may enrol with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// One managed device.
    Device,
    /// A fleet token's template; each device enrolling with it becomes a pending device.
    Fleet,
}

impl EndpointKind {
    fn as_sql(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Fleet => "fleet",
        }
    }
}

/// What an admin asks for when creating an endpoint.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    /// Display name.
    pub name: String,
    /// Device or fleet.
    pub kind: EndpointKind,
    /// Only this agent id may enrol (devices only).
    pub preassigned: Option<AgentId>,
    /// SHA-256 of the join token's secret.
    pub secret_hash: [u8; 32],
}

/// One endpoint row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    /// Its id.
    pub id: EndpointId,
    /// Display name.
    pub name: String,
    /// Device or fleet.
    pub kind: EndpointKind,
    /// The fleet a device enrolled through.
    pub fleet_id: Option<EndpointId>,
    /// The bound agent.
    pub agent_id: Option<AgentId>,
    /// The agent id the admin pre-assigned.
    pub preassigned: Option<AgentId>,
    /// False while a fleet device waits for approval.
    pub approved: bool,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// First enrolment (Unix seconds).
    pub enrolled_at: Option<i64>,
    /// How many times a certificate was issued.
    pub enroll_count: i64,
    /// Agent build version reported at enrolment.
    pub agent_version: Option<String>,
    /// Last check-in written by the liveness flush (Unix seconds).
    pub last_checkin: Option<i64>,
    /// Last remote address written by the liveness flush.
    pub last_addr: Option<String>,
    /// Connection migrations counted so far.
    pub migrations: i64,
    /// UDP payload bytes the hub sent to it over all its finished connections.
    pub wire_tx_bytes: u64,
    /// UDP payload bytes the hub received from it over all its finished connections.
    pub wire_rx_bytes: u64,
    /// The path its last connection measured, if any.
    pub path: Option<SavedPath>,
    /// The group it is in.
    pub group: Option<String>,
    /// Its tags, by name.
    pub tags: Vec<String>,
    /// The hub holding its live session, if one does (`super::hubs`).
    pub held_by: Option<super::hubs::HubId>,
}

/// A device's path as its last connection measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedPath {
    /// Bottleneck rate and minimum round trip.
    pub estimate: PathEstimate,
    /// When it was measured (Unix seconds).
    pub measured_at: i64,
}

fn saved_path(
    rate: Option<i64>,
    min_rtt_us: Option<i64>,
    measured_at: Option<i64>,
) -> Option<SavedPath> {
    let (rate, min_rtt_us, measured_at) = (rate?, min_rtt_us?, measured_at?);
    Some(SavedPath {
        estimate: PathEstimate {
            rate: u64::try_from(rate).ok()?,
            min_rtt: Duration::from_micros(u64::try_from(min_rtt_us).ok()?),
        },
        measured_at,
    })
}

/// The columns [`from_row`] reads, group and tags resolved to names (the tags as a JSON array);
/// a query on `endpoints` selects these first.
pub(super) fn columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => SQLITE_COLUMNS,
        Dialect::Postgres => POSTGRES_COLUMNS,
    }
}

/// The columns stored in the endpoint's own row, in [`from_row`]'s order; a literal, so the column
/// lists below and the list's page ([`super::list`]) are built from one spelling.
macro_rules! stored_columns {
    () => {
        "id, name, kind, fleet_id, agent_id, preassigned_agent_id, approved, created_at, \
         enrolled_at, enroll_count, agent_version, last_checkin, last_addr, migrations, \
         wire_tx_bytes, wire_rx_bytes, path_rate, path_min_rtt_us, path_measured_at"
    };
}
pub(super) use stored_columns;

const SQLITE_COLUMNS: &str = concat!(
    stored_columns!(),
    ", (SELECT name FROM groups WHERE groups.id = endpoints.group_id), \
     (SELECT json_group_array(tags.name ORDER BY tags.name) FROM endpoint_tags \
      JOIN tags ON tags.id = endpoint_tags.tag_id WHERE endpoint_tags.endpoint_id = endpoints.id), \
     CASE WHEN connected = 1 THEN held_by END"
);

const POSTGRES_COLUMNS: &str = concat!(
    stored_columns!(),
    ", (SELECT name FROM groups WHERE groups.id = endpoints.group_id), \
     COALESCE((SELECT CAST(json_agg(tags.name ORDER BY tags.name) AS TEXT) FROM endpoint_tags \
      JOIN tags ON tags.id = endpoint_tags.tag_id WHERE endpoint_tags.endpoint_id = endpoints.id), \
      '[]'), \
     CASE WHEN connected = 1 THEN held_by END"
);

/// How many columns [`columns`] holds.
pub(super) const COLUMN_COUNT: usize = 22;

pub(super) fn parse_agent(text: Option<String>) -> Option<AgentId> {
    text.and_then(|t| t.parse().ok())
}

pub(super) fn from_row(row: &Row<'_>) -> DbResult<EndpointRecord> {
    let kind: String = row.get(2)?;
    Ok(EndpointRecord {
        id: EndpointId(row.get::<i64>(0)? as u64),
        name: row.get(1)?,
        kind: if kind == "fleet" {
            EndpointKind::Fleet
        } else {
            EndpointKind::Device
        },
        fleet_id: row.get::<Option<i64>>(3)?.map(|v| EndpointId(v as u64)),
        agent_id: parse_agent(row.get(4)?),
        preassigned: parse_agent(row.get(5)?),
        approved: row.get(6)?,
        created_at: row.get(7)?,
        enrolled_at: row.get(8)?,
        enroll_count: row.get(9)?,
        agent_version: row.get(10)?,
        last_checkin: row.get(11)?,
        last_addr: row.get(12)?,
        migrations: row.get(13)?,
        wire_tx_bytes: row.get::<i64>(14)? as u64,
        wire_rx_bytes: row.get::<i64>(15)? as u64,
        path: saved_path(row.get(16)?, row.get(17)?, row.get(18)?),
        group: row.get(19)?,
        tags: serde_json::from_str(&row.get::<String>(20)?).unwrap_or_default(),
        held_by: row.get::<Option<i64>>(21)?.map(super::hubs::HubId),
    })
}

/// Of `ids`, those connected to a hub of the store (any hub: `connected` is set by the liveness
/// flush of the hub holding the session).
pub fn connected_of(
    conn: &Db,
    ids: &[EndpointId],
) -> Result<std::collections::HashSet<EndpointId>, StoreError> {
    let mut connected = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let marks = (1..=chunk.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT id FROM endpoints WHERE connected = 1 AND id IN ({marks})");
        let mut statement = conn.prepare(&sql)?;
        let args: Vec<i64> = chunk.iter().map(|id| id.0 as i64).collect();
        let rows = statement.query_map(super::db::params_from_iter(&args), |r| r.get::<i64>(0))?;
        for id in rows {
            connected.insert(EndpointId(id? as u64));
        }
    }
    Ok(connected)
}

/// Insert a new endpoint.
pub fn create(conn: &Db, new: &NewEndpoint, now: i64) -> Result<EndpointRecord, StoreError> {
    let id: i64 = conn.query_row(
        "INSERT INTO endpoints (name, kind, secret_hash, preassigned_agent_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        params![
            new.name,
            new.kind.as_sql(),
            &new.secret_hash[..],
            new.preassigned.map(|a| a.to_string()),
            now
        ],
        |row| row.get(0),
    )?;
    Ok(find(conn, EndpointId(id as u64))?.ok_or(DbError::NoRow)?)
}

/// One endpoint by id.
pub fn find(conn: &Db, id: EndpointId) -> Result<Option<EndpointRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM endpoints WHERE id = ?1",
        columns(conn.dialect())
    );
    Ok(conn.query_row(&sql, [id.0 as i64], from_row).optional()?)
}

/// Approve a pending device. Returns whether it exists.
pub fn approve(conn: &Db, id: EndpointId) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE endpoints SET approved = 1 WHERE id = ?1 AND kind = 'device'",
        [id.0 as i64],
    )? == 1)
}

/// Remove an endpoint and revoke every certificate issued to it. Returns the removed row.
pub fn remove(
    conn: &mut Db,
    id: EndpointId,
    now: i64,
) -> Result<Option<EndpointRecord>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(record) = find(&tx, id)? else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE certificates SET revoked_at = ?2 WHERE endpoint_id = ?1 AND revoked_at IS NULL",
        params![id.0 as i64, now],
    )?;
    tx.execute("DELETE FROM endpoints WHERE id = ?1", [id.0 as i64])?;
    tx.commit()?;
    Ok(Some(record))
}
