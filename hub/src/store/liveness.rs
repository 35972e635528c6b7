//! Batched liveness: what the registry's flush writes (whether a live session exists, the last
//! address and check-in, migrations, a finished connection's bytes). Per-check-in state stays in
//! memory; see `crate::registry` for when a session's liveness is written.
//!
//! How a batch is written differs by backend, with the same result. SQLite is in the process: one
//! prepared `UPDATE` per row inside one transaction costs only the row's index updates. On PostgreSQL each
//! statement is a round trip, so the batch is folded to one net change per endpoint
//! ([`fold`]) and sent as one `UPDATE … FROM json_to_recordset(…)` ([`BATCH_UPDATE`]): one
//! round trip for the whole batch, whatever its size.
//!
//! Several hubs may share the store (`super::hubs`): `held_by` records which one holds each
//! device's session, and a write changes a device's liveness only if it is a claim or comes from
//! the holder (see [`UPDATE`]).

use std::collections::BTreeMap;

use outpost_protocol::EndpointId;
use serde::Serialize;

use super::db::{params, Db, Dialect, OptionalExtension};
use super::endpoints::SavedPath;
use super::hubs::HubId;
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
    /// The session has just gone live on this hub (its first live write, or live again after
    /// going stale): the device checks in here now, so this hub takes it over from whichever
    /// held it. Other writes change liveness only while this hub holds the device.
    pub claim: bool,
    /// A connection ended: its UDP payload bytes (hub → agent, agent → hub), added to the
    /// endpoint's totals.
    pub wire_ended: Option<(u64, u64)>,
    /// A connection ended having measured its path: kept for the device's next connection.
    pub path_ended: Option<SavedPath>,
    /// A connection over UDP ended having found this path MTU (over 1,200 bytes): kept so the
    /// next connection from the device's network starts at it (`crate::path_mtu`).
    pub path_mtu: Option<u16>,
}

/// One endpoint's liveness, by id (`?1`), written by hub `?11`: SQLite's statement, run once per
/// row. Whether the write may change the endpoint's liveness (`held`): a claim (`?12`) always
/// may; otherwise only while the device is held by this hub or by none. A hub whose session went
/// stale after the device moved to another hub would otherwise write it offline, or take it back
/// with a late check-in. A check-in, the bytes and the path of an ended connection are facts
/// whichever hub saw them, and always count.
const UPDATE: &str = "UPDATE endpoints SET
     last_checkin = CASE WHEN CAST(?2 AS BIGINT) IS NULL OR last_checkin >= ?2
                    THEN last_checkin ELSE ?2 END,
     last_addr = CASE WHEN ?12 = 1 OR held_by IS NULL OR held_by = ?11
                 THEN ?3 ELSE last_addr END,
     migrations = CASE WHEN ?12 = 1 OR held_by IS NULL OR held_by = ?11
                  THEN ?4 ELSE migrations END,
     connected = CASE WHEN ?12 = 1 OR held_by IS NULL OR held_by = ?11
                 THEN ?5 ELSE connected END,
     held_by = CASE WHEN ?12 = 1 OR held_by IS NULL OR held_by = ?11
               THEN (CASE WHEN ?5 = 1 THEN ?11 ELSE NULL END) ELSE held_by END,
     wire_tx_bytes = wire_tx_bytes + ?6, wire_rx_bytes = wire_rx_bytes + ?7,
     path_rate = COALESCE(?8, path_rate),
     path_min_rtt_us = COALESCE(?9, path_min_rtt_us),
     path_measured_at = COALESCE(?10, path_measured_at)
 WHERE id = ?1
 RETURNING held_by";

/// The path MTU an ended connection of endpoint `?1` found (`?2`), kept for the next one from
/// its network (`crate::path_mtu`). Written only for an endpoint the batch's update found.
const SAVE_PATH_MTU: &str = "INSERT INTO endpoint_paths (endpoint_id, path_mtu) VALUES (?1, ?2)
 ON CONFLICT(endpoint_id) DO UPDATE SET path_mtu = excluded.path_mtu";

/// The same for every row of a batch (`?1`, a JSON array of [`NetChange`]) whose endpoint
/// exists: PostgreSQL's.
const SAVE_PATH_MTUS: &str = "INSERT INTO endpoint_paths (endpoint_id, path_mtu)
 SELECT u.id, u.path_mtu FROM json_to_recordset(CAST(?1 AS json)) AS u(id BIGINT, path_mtu BIGINT)
 JOIN endpoints ON endpoints.id = u.id
 WHERE u.path_mtu IS NOT NULL
 ON CONFLICT(endpoint_id) DO UPDATE SET path_mtu = excluded.path_mtu";

/// Every endpoint's net change of a batch (`?1`, a JSON array of [`NetChange`]): PostgreSQL's
/// statement, one per batch, written by hub `?2`. The same assignments as [`UPDATE`], from the
/// array's rows; returns each row's holder after the write.
pub(super) const BATCH_UPDATE: &str = "UPDATE endpoints SET
     last_checkin = CASE WHEN u.last_checkin IS NULL OR endpoints.last_checkin >= u.last_checkin
                    THEN endpoints.last_checkin ELSE u.last_checkin END,
     last_addr = CASE WHEN u.claim = 1 OR endpoints.held_by IS NULL OR endpoints.held_by = ?2
                 THEN u.addr ELSE endpoints.last_addr END,
     migrations = CASE WHEN u.claim = 1 OR endpoints.held_by IS NULL OR endpoints.held_by = ?2
                  THEN u.migrations ELSE endpoints.migrations END,
     connected = CASE WHEN u.claim = 1 OR endpoints.held_by IS NULL OR endpoints.held_by = ?2
                 THEN u.connected ELSE endpoints.connected END,
     held_by = CASE WHEN u.claim = 1 OR endpoints.held_by IS NULL OR endpoints.held_by = ?2
               THEN (CASE WHEN u.connected = 1 THEN ?2 ELSE NULL END) ELSE endpoints.held_by END,
     wire_tx_bytes = endpoints.wire_tx_bytes + u.tx_bytes,
     wire_rx_bytes = endpoints.wire_rx_bytes + u.rx_bytes,
     path_rate = COALESCE(u.path_rate, endpoints.path_rate),
     path_min_rtt_us = COALESCE(u.path_min_rtt_us, endpoints.path_min_rtt_us),
     path_measured_at = COALESCE(u.path_measured_at, endpoints.path_measured_at)
 FROM json_to_recordset(CAST(?1 AS json)) AS u(
     id BIGINT, last_checkin BIGINT, addr TEXT, migrations BIGINT, connected BIGINT,
     claim BIGINT, tx_bytes BIGINT, rx_bytes BIGINT,
     path_rate BIGINT, path_min_rtt_us BIGINT, path_measured_at BIGINT)
 WHERE endpoints.id = u.id
 RETURNING endpoints.id, u.connected, endpoints.held_by";

/// What a batch's updates of one endpoint come to, applied in order: the last address,
/// migrations and connected flag; the latest check-in; the bytes added up; the last measured
/// path and path MTU; a claim if any was (the writes after a claim find the device held by this hub, so the
/// batch ends as if it had claimed). A row of [`BATCH_UPDATE`]'s array.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct NetChange {
    id: i64,
    last_checkin: Option<i64>,
    addr: String,
    migrations: i64,
    connected: i64,
    claim: i64,
    tx_bytes: i64,
    rx_bytes: i64,
    path_rate: Option<i64>,
    path_min_rtt_us: Option<i64>,
    path_measured_at: Option<i64>,
    path_mtu: Option<u16>,
}

impl NetChange {
    fn new(update: &LivenessUpdate) -> Self {
        let mut change = Self {
            id: update.id.0 as i64,
            last_checkin: None,
            addr: String::new(),
            migrations: 0,
            connected: 0,
            claim: 0,
            tx_bytes: 0,
            rx_bytes: 0,
            path_rate: None,
            path_min_rtt_us: None,
            path_measured_at: None,
            path_mtu: None,
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
        self.claim = self.claim.max(update.claim.into());
        let (tx_bytes, rx_bytes) = update.wire_ended.unwrap_or_default();
        self.tx_bytes = self.tx_bytes.saturating_add(bytes(tx_bytes));
        self.rx_bytes = self.rx_bytes.saturating_add(bytes(rx_bytes));
        if let Some(path) = update.path_ended {
            self.path_rate = Some(rate(&path));
            self.path_min_rtt_us = Some(min_rtt_us(&path));
            self.path_measured_at = Some(path.measured_at);
        }
        self.path_mtu = update.path_mtu.or(self.path_mtu);
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

/// Each device's last address with the path MTU its last UDP connection found, for the hub's
/// memory of networks (`crate::path_mtu`), read once at start.
pub fn saved_path_mtus(conn: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT endpoints.last_addr, endpoint_paths.path_mtu
         FROM endpoint_paths JOIN endpoints ON endpoints.id = endpoint_paths.endpoint_id
         WHERE endpoints.last_addr IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
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

/// Write a batch of liveness updates from hub `hub` atomically, in order (a departure followed
/// by a reconnection in the same batch ends connected). A check-in older than the stored one is
/// kept out, so a stored check-in never moves back in time. Returns the endpoints this hub wrote
/// live but another hub holds: their sessions here are stale, for the caller to close.
pub fn write_liveness(
    conn: &mut Db,
    hub: HubId,
    updates: &[LivenessUpdate],
) -> Result<Vec<EndpointId>, StoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    match conn.dialect() {
        Dialect::Sqlite => write_each(conn, hub, updates),
        Dialect::Postgres => write_folded(conn, hub, updates),
    }
}

/// One statement per update, in one transaction.
fn write_each(
    conn: &mut Db,
    hub: HubId,
    updates: &[LivenessUpdate],
) -> Result<Vec<EndpointId>, StoreError> {
    let mut held_elsewhere = Vec::new();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(UPDATE)?;
        for update in updates {
            let (tx_bytes, rx_bytes) = update.wire_ended.unwrap_or_default();
            let path = update.path_ended;
            let holder: Option<Option<i64>> = stmt
                .query_row(
                    params![
                        update.id.0 as i64,
                        update.last_checkin,
                        update.addr,
                        update.migrations,
                        update.connected,
                        bytes(tx_bytes),
                        bytes(rx_bytes),
                        path.as_ref().map(rate),
                        path.as_ref().map(min_rtt_us),
                        path.map(|p| p.measured_at),
                        hub.0,
                        update.claim
                    ],
                    |row| row.get(0),
                )
                .optional()?;
            if update.connected && holder.is_some_and(|held_by| held_by != Some(hub.0)) {
                held_elsewhere.push(update.id);
            }
            if let (Some(mtu), Some(_)) = (update.path_mtu, holder) {
                tx.prepare_cached(SAVE_PATH_MTU)?
                    .execute(params![update.id.0 as i64, i64::from(mtu)])?;
            }
        }
    }
    tx.commit()?;
    Ok(held_elsewhere)
}

/// One statement for the whole batch (atomic on its own).
fn write_folded(
    conn: &Db,
    hub: HubId,
    updates: &[LivenessUpdate],
) -> Result<Vec<EndpointId>, StoreError> {
    // Integers and text always encode; were it ever to fail, the empty text is refused by the
    // server, so the batch is never half written.
    let rows = serde_json::to_string(&fold(updates)).unwrap_or_default();
    let mut stmt = conn.prepare_cached(BATCH_UPDATE)?;
    let written = stmt.query_map(params![rows, hub.0], |row| {
        Ok((
            row.get::<i64>(0)?,
            row.get::<i64>(1)?,
            row.get::<Option<i64>>(2)?,
        ))
    })?;
    let mut held_elsewhere = Vec::new();
    for row in written {
        let (id, connected, held_by) = row?;
        if connected == 1 && held_by != Some(hub.0) {
            held_elsewhere.push(EndpointId(id as u64));
        }
    }
    if updates.iter().any(|update| update.path_mtu.is_some()) {
        conn.prepare_cached(SAVE_PATH_MTUS)?
            .execute(params![rows])?;
    }
    Ok(held_elsewhere)
}
