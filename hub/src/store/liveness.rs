//! Batched liveness: what the registry's flush writes (whether a live session exists, the last
//! address and check-in, migrations, a finished connection's bytes). Per-check-in state stays in
//! memory; see `crate::registry` for when a session's liveness is written.

use outpost_protocol::EndpointId;

use super::db::{params, Db, OptionalExtension};
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
}

/// One endpoint's liveness, by id (`?1`), written by hub `?11`. Whether the write may change the
/// endpoint's liveness (`held`): a claim (`?12`) always may; otherwise only while the device is
/// held by this hub or by none. A hub whose session went stale after the device moved to another
/// hub would otherwise write it offline, or take it back with a late check-in. A check-in, the
/// bytes and the path of an ended connection are facts whichever hub saw them, and always count.
pub(super) const UPDATE: &str = "UPDATE endpoints SET
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

/// Write a batch of liveness updates from hub `hub` in one transaction, in order (a departure
/// followed by a reconnection in the same batch ends connected). A check-in older than the stored
/// one is kept out, so a stored check-in never moves back in time. Returns the endpoints this hub
/// wrote live but another hub holds: their sessions here are stale, for the caller to close.
pub fn write_liveness(
    conn: &mut Db,
    hub: HubId,
    updates: &[LivenessUpdate],
) -> Result<Vec<EndpointId>, StoreError> {
    let mut held_elsewhere = Vec::new();
    if updates.is_empty() {
        return Ok(held_elsewhere);
    }
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
                        tx_bytes as i64,
                        rx_bytes as i64,
                        path.map(|p| i64::try_from(p.estimate.rate).unwrap_or(i64::MAX)),
                        path.map(|p| {
                            i64::try_from(p.estimate.min_rtt.as_micros()).unwrap_or(i64::MAX)
                        }),
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
        }
    }
    tx.commit()?;
    Ok(held_elsewhere)
}
