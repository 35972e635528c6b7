//! The life of an agent's certificates after enrolment: renewal over the session, the switch to
//! the renewed certificate, and an admin's reset of an endpoint.
//!
//! At most two certificates of an endpoint are unrevoked at once: the one its session presented
//! and, after a renewal, the new one. The old one is revoked when the new one is first presented
//! ([`present`]), not when it is issued, so a renewal reply lost on the way never locks a device
//! out; presenting the old one again revokes the unused new one instead.

use super::db::{params, Db, OptionalExtension, TransactionBehavior};
use super::endpoints::{find, parse_agent, EndpointRecord};
use super::StoreError;
use outpost_protocol::{AgentId, EndpointId};

/// A certificate the hub just issued, as the store records it.
#[derive(Clone, Debug)]
pub struct NewCert {
    /// Its serial (hex).
    pub serial: String,
    /// Its expiry (Unix seconds).
    pub not_after: i64,
    /// SHA-256 of the SubjectPublicKeyInfo it certifies.
    pub public_key: [u8; 32],
}

/// Look up the certificate a session presented and, when it is valid, make it the endpoint's
/// only unrevoked certificate (a renewed certificate taking over from the old, or an old one
/// presented again leaving a renewal unused). Returns the status before any change.
pub fn present(conn: &mut Db, serial: &str, now: i64) -> Result<Option<CertStatus>, StoreError> {
    let Some(status) = cert_status(conn, serial)? else {
        return Ok(None);
    };
    // Almost every session start presents the endpoint's only certificate: read before writing, so
    // a reconnect storm (600 set-ups a second) does not take a write transaction each.
    let superseded = !status.revoked
        && conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM certificates
             WHERE endpoint_id = ?1 AND serial <> ?2 AND revoked_at IS NULL)",
            params![status.endpoint.0 as i64, serial],
            |r| r.get::<bool>(0),
        )?;
    if superseded {
        conn.execute(
            "UPDATE certificates SET revoked_at = ?3
             WHERE endpoint_id = ?1 AND serial <> ?2 AND revoked_at IS NULL",
            params![status.endpoint.0 as i64, serial, now],
        )?;
    }
    Ok(Some(status))
}

/// Why a renewal was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewRefusal {
    /// The presented certificate is no longer valid for the endpoint.
    Revoked,
    /// A renewal is already outstanding: one per session.
    Outstanding,
}

/// Record `new`, a renewal of the endpoint's certificate `presented`, unless the presented one was
/// revoked meanwhile or a renewal already waits to be used.
pub fn renew(
    conn: &mut Db,
    endpoint: EndpointId,
    presented: &str,
    new: &NewCert,
    now: i64,
) -> Result<Result<(), RenewRefusal>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let status = cert_status(&tx, presented)?;
    if status.is_none_or(|s| s.revoked || s.endpoint != endpoint) {
        return Ok(Err(RenewRefusal::Revoked));
    }
    let others: i64 = tx.query_row(
        "SELECT COUNT(*) FROM certificates
         WHERE endpoint_id = ?1 AND serial <> ?2 AND revoked_at IS NULL",
        params![endpoint.0 as i64, presented],
        |r| r.get(0),
    )?;
    if others > 0 {
        return Ok(Err(RenewRefusal::Outstanding));
    }
    tx.execute(
        "INSERT INTO certificates (serial, endpoint_id, agent_id, issued_at, not_after, public_key)
         SELECT ?1, endpoint_id, agent_id, ?3, ?4, ?5 FROM certificates WHERE serial = ?2",
        params![
            new.serial,
            presented,
            now,
            new.not_after,
            &new.public_key[..]
        ],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

/// Reset an endpoint for a new device: unbind its agent, revoke its certificates and replace its
/// token's secret, so the old token (leaked, perhaps) is dead. Returns the row after the reset.
pub fn reset(
    conn: &mut Db,
    id: EndpointId,
    secret_hash: &[u8; 32],
    now: i64,
) -> Result<Option<EndpointRecord>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let updated = tx.execute(
        "UPDATE endpoints SET agent_id = NULL, secret_hash = ?2 WHERE id = ?1",
        params![id.0 as i64, &secret_hash[..]],
    )?;
    if updated == 0 {
        return Ok(None);
    }
    tx.execute(
        "UPDATE certificates SET revoked_at = ?2 WHERE endpoint_id = ?1 AND revoked_at IS NULL",
        params![id.0 as i64, now],
    )?;
    let record = find(&tx, id)?;
    tx.commit()?;
    Ok(record)
}

/// What the store knows of a presented client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertStatus {
    /// The endpoint it was issued for.
    pub endpoint: EndpointId,
    /// The agent it was issued to.
    pub agent_id: Option<AgentId>,
    /// Revoked (endpoint removed, or superseded by a newer enrolment).
    pub revoked: bool,
}

/// Look a certificate up by serial.
pub fn cert_status(conn: &Db, serial: &str) -> Result<Option<CertStatus>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT endpoint_id, agent_id, revoked_at IS NOT NULL FROM certificates WHERE serial = ?1",
            [serial],
            |row| {
                Ok(CertStatus {
                    endpoint: EndpointId(row.get::<i64>(0)? as u64),
                    agent_id: parse_agent(row.get(1)?),
                    revoked: row.get(2)?,
                })
            },
        )
        .optional()?)
}
