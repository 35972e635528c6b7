//! Engine snapshots (the latest per endpoint) and admin client certificates.

use outpost_common::snapshot::EngineSnapshot;
use outpost_common::EndpointId;
use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// Replace an endpoint's snapshot.
pub fn save_snapshot(
    conn: &Connection,
    id: EndpointId,
    snapshot: &EngineSnapshot,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(snapshot).unwrap_or_default();
    conn.execute(
        "INSERT INTO snapshots (endpoint_id, taken_at, body) VALUES (?1, ?2, ?3)
         ON CONFLICT(endpoint_id) DO UPDATE SET taken_at = excluded.taken_at, body = excluded.body",
        params![id.0 as i64, snapshot.taken_at, body],
    )?;
    Ok(())
}

/// An endpoint's latest snapshot.
pub fn snapshot(conn: &Connection, id: EndpointId) -> Result<Option<EngineSnapshot>, StoreError> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM snapshots WHERE endpoint_id = ?1",
            [id.0 as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
}

/// Record an issued admin certificate.
pub fn record_admin_cert(
    conn: &Connection,
    serial: &str,
    name: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO admin_certs (serial, name, issued_at) VALUES (?1, ?2, ?3)",
        params![serial, name, now],
    )?;
    Ok(())
}

/// Whether an admin certificate was issued by this hub and is not revoked.
pub fn admin_cert_valid(conn: &Connection, serial: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT revoked_at IS NULL FROM admin_certs WHERE serial = ?1",
            [serial],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(false))
}
