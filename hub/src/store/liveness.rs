//! Batched liveness: what the registry's flush writes (whether a live session exists, the last
//! address and check-in, migrations, a finished connection's bytes). Per-check-in state stays in
//! memory; see `crate::registry` for when a session's liveness is written.

use outpost_protocol::EndpointId;

use super::db::{params, Db};
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

/// One endpoint's liveness, by id (`?1`).
pub(super) const UPDATE: &str = "UPDATE endpoints SET
     last_checkin = CASE WHEN CAST(?2 AS BIGINT) IS NULL OR last_checkin >= ?2
                    THEN last_checkin ELSE ?2 END,
     last_addr = ?3, migrations = ?4, connected = ?5,
     wire_tx_bytes = wire_tx_bytes + ?6, wire_rx_bytes = wire_rx_bytes + ?7,
     path_rate = COALESCE(?8, path_rate),
     path_min_rtt_us = COALESCE(?9, path_min_rtt_us),
     path_measured_at = COALESCE(?10, path_measured_at)
 WHERE id = ?1";

/// Write a batch of liveness updates in one transaction, in order (a departure followed by a
/// reconnection in the same batch ends connected). A check-in older than the stored one is kept
/// out, so a stored check-in never moves back in time.
pub fn write_liveness(conn: &mut Db, updates: &[LivenessUpdate]) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
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
                tx_bytes as i64,
                rx_bytes as i64,
                path.map(|p| i64::try_from(p.estimate.rate).unwrap_or(i64::MAX)),
                path.map(|p| i64::try_from(p.estimate.min_rtt.as_micros()).unwrap_or(i64::MAX)),
                path.map(|p| p.measured_at)
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Mark every endpoint disconnected: at start, before any session exists (a crash left the flags
/// of its sessions set), and after a clean shutdown. Returns how many were marked connected.
pub fn mark_all_disconnected(conn: &Db) -> Result<usize, StoreError> {
    Ok(conn.execute("UPDATE endpoints SET connected = 0 WHERE connected = 1", [])?)
}
