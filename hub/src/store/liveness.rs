//! Batched liveness: what the registry's flush writes (whether a live session exists, the last
//! address and check-in, migrations, a finished connection's bytes). Per-check-in state stays in
//! memory; see `crate::registry` for when a session's liveness is written.
//!
//! How a batch is written differs by backend, with the same result. SQLite is in the process: one
//! prepared `UPDATE` per row inside one transaction costs only the row's index updates. On PostgreSQL each
//! statement is a round trip, so the batch is folded to one net change per endpoint
//! ([`fold`]) and sent as one `UPDATE … FROM json_to_recordset(…)` ([`BATCH_UPDATE`]): one
//! round trip for the whole batch, whatever its size.

use std::collections::BTreeMap;

use outpost_protocol::EndpointId;
use serde::Serialize;

use super::db::{params, Db, Dialect};
use super::endpoints::SavedPath;
use super::StoreError;

/// Liveness of one endpoint, written in batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivenessUpdate {
    /// Which endpoint.
    pub id: EndpointId,
    /// Last check-in (Unix seconds), if the session had one.
    pub last_checkin: Option<i64>,
    /// Last remote address.
    pub addr: String,
    /// Migrations so far.
    pub migrations: i64,
    /// Whether the hub holds a live session for it: connected and checked in within the liveness
    /// bound. What the list's status filters read.
    pub connected: bool,
    /// A connection ended: its UDP payload bytes (hub → agent, agent → hub), added to the
    /// endpoint's totals.
    pub wire_ended: Option<(u64, u64)>,
    /// A connection ended having measured its path: kept for the device's next connection.
    pub path_ended: Option<SavedPath>,
}

/// One endpoint's liveness, by id (`?1`): SQLite's statement, run once per row.
const UPDATE: &str = "UPDATE endpoints SET
     last_checkin = CASE WHEN CAST(?2 AS BIGINT) IS NULL OR last_checkin >= ?2
                    THEN last_checkin ELSE ?2 END,
     last_addr = ?3, migrations = ?4, connected = ?5,
     wire_tx_bytes = wire_tx_bytes + ?6, wire_rx_bytes = wire_rx_bytes + ?7,
     path_rate = COALESCE(?8, path_rate),
     path_min_rtt_us = COALESCE(?9, path_min_rtt_us),
     path_measured_at = COALESCE(?10, path_measured_at)
 WHERE id = ?1";

/// Every endpoint's net change of a batch (`?1`, a JSON array of [`NetChange`]): PostgreSQL's
/// statement, one per batch. The same assignments as [`UPDATE`], from the array's rows.
pub(super) const BATCH_UPDATE: &str = "UPDATE endpoints SET
     last_checkin = CASE WHEN u.last_checkin IS NULL OR endpoints.last_checkin >= u.last_checkin
                    THEN endpoints.last_checkin ELSE u.last_checkin END,
     last_addr = u.addr, migrations = u.migrations, connected = u.connected,
     wire_tx_bytes = endpoints.wire_tx_bytes + u.tx_bytes,
     wire_rx_bytes = endpoints.wire_rx_bytes + u.rx_bytes,
     path_rate = COALESCE(u.path_rate, endpoints.path_rate),
     path_min_rtt_us = COALESCE(u.path_min_rtt_us, endpoints.path_min_rtt_us),
     path_measured_at = COALESCE(u.path_measured_at, endpoints.path_measured_at)
 FROM json_to_recordset(CAST(?1 AS json)) AS u(
     id BIGINT, last_checkin BIGINT, addr TEXT, migrations BIGINT, connected BIGINT,
     tx_bytes BIGINT, rx_bytes BIGINT,
     path_rate BIGINT, path_min_rtt_us BIGINT, path_measured_at BIGINT)
 WHERE endpoints.id = u.id";

/// What a batch's updates of one endpoint come to, applied in order: the last address,
/// migrations and connected flag; the latest check-in; the bytes added up; the last measured
/// path. A row of [`BATCH_UPDATE`]'s array.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct NetChange {
    id: i64,
    last_checkin: Option<i64>,
    addr: String,
    migrations: i64,
    connected: i64,
    tx_bytes: i64,
    rx_bytes: i64,
    path_rate: Option<i64>,
    path_min_rtt_us: Option<i64>,
    path_measured_at: Option<i64>,
}

impl NetChange {
    fn new(update: &LivenessUpdate) -> Self {
        let mut change = Self {
            id: update.id.0 as i64,
            last_checkin: None,
            addr: String::new(),
            migrations: 0,
            connected: 0,
            tx_bytes: 0,
            rx_bytes: 0,
            path_rate: None,
            path_min_rtt_us: None,
            path_measured_at: None,
        };
        change.then(update);
        change
    }

    /// This change followed by `update`.
    fn then(&mut self, update: &LivenessUpdate) {
        self.last_checkin = self.last_checkin.max(update.last_checkin);
        self.addr.clone_from(&update.addr);
        self.migrations = update.migrations;
        self.connected = update.connected.into();
        let (tx_bytes, rx_bytes) = update.wire_ended.unwrap_or_default();
        self.tx_bytes = self.tx_bytes.saturating_add(bytes(tx_bytes));
        self.rx_bytes = self.rx_bytes.saturating_add(bytes(rx_bytes));
        if let Some(path) = update.path_ended {
            self.path_rate = Some(rate(&path));
            self.path_min_rtt_us = Some(min_rtt_us(&path));
            self.path_measured_at = Some(path.measured_at);
        }
    }
}

/// `updates` folded in order into one change per endpoint, by id: the rows of one batched
/// statement, whose plan walks them in that order, so two hubs flushing into one database take
/// the row locks they share in the same order.
pub(super) fn fold(updates: &[LivenessUpdate]) -> Vec<NetChange> {
    let mut changes: BTreeMap<EndpointId, NetChange> = BTreeMap::new();
    for update in updates {
        changes
            .entry(update.id)
            .and_modify(|change| change.then(update))
            .or_insert_with(|| NetChange::new(update));
    }
    changes.into_values().collect()
}

/// A byte count as the store holds it (a 64-bit signed integer).
fn bytes(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn rate(path: &SavedPath) -> i64 {
    i64::try_from(path.estimate.rate).unwrap_or(i64::MAX)
}

fn min_rtt_us(path: &SavedPath) -> i64 {
    i64::try_from(path.estimate.min_rtt.as_micros()).unwrap_or(i64::MAX)
}

/// Write a batch of liveness updates atomically, in order (a departure followed by a
/// reconnection in the same batch ends connected). A check-in older than the stored one is kept
/// out, so a stored check-in never moves back in time.
pub fn write_liveness(conn: &mut Db, updates: &[LivenessUpdate]) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    match conn.dialect() {
        Dialect::Sqlite => write_each(conn, updates),
        Dialect::Postgres => write_folded(conn, updates),
    }
}

/// One statement per update, in one transaction.
fn write_each(conn: &mut Db, updates: &[LivenessUpdate]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(UPDATE)?;
        for update in updates {
            let (tx_bytes, rx_bytes) = update.wire_ended.unwrap_or_default();
            let path = update.path_ended;
            stmt.execute(params![
                update.id.0 as i64,
                update.last_checkin,
                update.addr,
                update.migrations,
                update.connected,
                bytes(tx_bytes),
                bytes(rx_bytes),
                path.as_ref().map(rate),
                path.as_ref().map(min_rtt_us),
                path.map(|p| p.measured_at)
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// One statement for the whole batch (atomic on its own).
fn write_folded(conn: &Db, updates: &[LivenessUpdate]) -> Result<(), StoreError> {
    // Integers and text always encode; were it ever to fail, the empty text is refused by the
    // server, so the batch is never half written.
    let rows = serde_json::to_string(&fold(updates)).unwrap_or_default();
    conn.execute(BATCH_UPDATE, params![rows])?;
    Ok(())
}

/// Mark every endpoint disconnected: at start, before any session exists (a crash left the flags
/// of its sessions set), and after a clean shutdown. Returns how many were marked connected.
pub fn mark_all_disconnected(conn: &Db) -> Result<usize, StoreError> {
    Ok(conn.execute("UPDATE endpoints SET connected = 0 WHERE connected = 1", [])?)
}
