//! Enrolment decisions: which token binds which device, and when a bound device may enrol again.
//!
//! A join token is a bearer secret, so it must not be enough to take over a device it already
//! bound. A bound endpoint (a device, or a fleet member) re-enrols only when the CSR is for the key
//! of one of its unrevoked certificates: the agent keeps its key across restarts, so a device
//! whose enrolment reply was lost, or that lost its certificate file, still gets through, and a
//! second machine holding only the token (and the bound UUID) does not. Certificates recorded
//! before keys were (schema version 5) prove nothing; such a device is reset by an admin
//! ([`super::certs::reset`]).
//!
//! Refusals never name a UUID or an endpoint the request did not name, and a wrong secret is
//! answered exactly like an unknown endpoint, after a comparison against a dummy hash, so the
//! answer does not tell which endpoint ids exist.

use outpost_protocol::wire::{Refusal, RefusalReason};
use outpost_protocol::{AgentId, EndpointId};
use subtle::ConstantTimeEq;

use super::db::{params, Db, OptionalExtension, TransactionBehavior};
use super::endpoints::{columns, from_row, EndpointKind, EndpointRecord, COLUMN_COUNT};
use super::{labels, StoreError};

/// An enrolment to decide and, if accepted, record.
#[derive(Clone, Debug)]
pub struct EnrollInput {
    /// Endpoint (or fleet) named by the token.
    pub endpoint: EndpointId,
    /// Hash of the presented secret.
    pub secret_hash: [u8; 32],
    /// The device's UUID.
    pub agent_id: AgentId,
    /// Agent build version (already checked by [`outpost_protocol::text::device_text`]).
    pub agent_version: String,
    /// Serial of the certificate prepared for it.
    pub cert_serial: String,
    /// Its expiry (Unix seconds).
    pub cert_not_after: i64,
    /// SHA-256 of the SubjectPublicKeyInfo it certifies (the key of the CSR).
    pub public_key: [u8; 32],
    /// Devices a fleet token may have waiting for approval (`--max-pending-per-fleet`).
    pub max_pending: u32,
}

/// An accepted enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrollOutcome {
    /// The device endpoint the agent now is.
    pub endpoint: EndpointId,
    /// Waiting for approval.
    pub pending: bool,
    /// Earlier certificates of the endpoint were revoked: its live session must be closed.
    pub superseded: bool,
}

/// What an unknown endpoint and a wrong secret are both told.
pub const INVALID_TOKEN: &str = "this join token is not valid on this hub (wrong secret, or its \
     endpoint was removed or reset); ask the admin for a new token";
/// Stands in for a missing endpoint's hash, so both refusals cost one comparison.
const DUMMY_HASH: [u8; 32] = [0x5a; 32];

fn refuse(reason: RefusalReason, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

fn invalid_token() -> Refusal {
    refuse(RefusalReason::BadSecret, INVALID_TOKEN)
}

fn bound_elsewhere() -> Refusal {
    refuse(
        RefusalReason::AlreadyBound,
        "this agent id is already enrolled as another endpoint; remove that endpoint first, or \
         run the agent with a new data directory",
    )
}

fn taken() -> Refusal {
    refuse(
        RefusalReason::AlreadyBound,
        "this token is already bound to another device (a token enrols one device, and this \
         device's key is not the bound one); ask the admin to reset the endpoint \
         (outpost-hub endpoint reset) for a new token",
    )
}

fn unprovable() -> Refusal {
    refuse(
        RefusalReason::AlreadyBound,
        "this device enrolled before the hub recorded device keys, so re-enrolling cannot be \
         checked; ask the admin to reset the endpoint (outpost-hub endpoint reset) and enrol \
         with the new token",
    )
}

/// Whether `secret_hash` is the hash of `endpoint`'s token: the cheap check made before any CSR
/// is verified or signed. A missing endpoint is compared against a dummy hash.
pub fn token_matches(
    conn: &Db,
    endpoint: EndpointId,
    secret_hash: &[u8; 32],
) -> Result<bool, StoreError> {
    let stored: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT secret_hash FROM endpoints WHERE id = ?1",
            [endpoint.0 as i64],
            |row| row.get(0),
        )
        .optional()?;
    Ok(matches_hash(stored.flatten(), secret_hash))
}

fn matches_hash(stored: Option<Vec<u8>>, presented: &[u8; 32]) -> bool {
    let (hash, real) = match stored {
        Some(hash) => (hash, true),
        None => (DUMMY_HASH.to_vec(), false),
    };
    bool::from(hash.as_slice().ct_eq(&presented[..])) && real
}

/// Decide an enrolment and, if accepted, bind the agent and record its certificate (revoking the
/// endpoint's earlier ones), all in one transaction. A refusal changes nothing.
pub fn enroll(
    conn: &mut Db,
    input: &EnrollInput,
    now: i64,
) -> Result<Result<EnrollOutcome, Refusal>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let decision = bind_agent(&tx, input, now)?;
    let Ok(outcome) = decision else {
        return Ok(decision);
    };
    let revoked = tx.execute(
        "UPDATE certificates SET revoked_at = ?2 WHERE endpoint_id = ?1 AND revoked_at IS NULL",
        params![outcome.endpoint.0 as i64, now],
    )?;
    tx.execute(
        "INSERT INTO certificates (serial, endpoint_id, agent_id, issued_at, not_after, public_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            input.cert_serial,
            outcome.endpoint.0 as i64,
            input.agent_id.to_string(),
            now,
            input.cert_not_after,
            &input.public_key[..]
        ],
    )?;
    tx.commit()?;
    Ok(Ok(EnrollOutcome {
        superseded: revoked > 0,
        ..outcome
    }))
}

/// Check the token and the agent, and if the enrolment may go ahead bind the agent: writes the
/// endpoint's binding (a device) or a new pending member (a fleet). The caller's transaction
/// rolls a refusal back.
fn bind_agent(
    conn: &Db,
    input: &EnrollInput,
    now: i64,
) -> Result<Result<EnrollOutcome, Refusal>, StoreError> {
    let target: Option<(EndpointRecord, Option<Vec<u8>>)> = conn
        .query_row(
            &format!(
                "SELECT {}, secret_hash FROM endpoints WHERE id = ?1",
                columns(conn.dialect())
            ),
            [input.endpoint.0 as i64],
            |row| Ok((from_row(row)?, row.get(COLUMN_COUNT)?)),
        )
        .optional()?;
    let (target, hash) = match target {
        Some((record, hash)) => (Some(record), hash),
        None => (None, None),
    };
    let (Some(target), true) = (target, matches_hash(hash, &input.secret_hash)) else {
        return Ok(Err(invalid_token()));
    };
    let bound: Option<(i64, Option<i64>)> = conn
        .query_row(
            "SELECT id, fleet_id FROM endpoints WHERE agent_id = ?1",
            [input.agent_id.to_string()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    match target.kind {
        EndpointKind::Device => bind_device(conn, &target, input, bound, now),
        EndpointKind::Fleet => bind_fleet_member(conn, &target, input, bound, now),
    }
}

/// Whether the CSR's key is the key of one of `endpoint`'s unrevoked certificates; a refusal when
/// it is not, or cannot be known.
fn proves_key(
    conn: &Db,
    endpoint: EndpointId,
    key: &[u8; 32],
) -> Result<Result<(), Refusal>, StoreError> {
    let (matching, unknown): (i64, i64) = conn.query_row(
        "SELECT COUNT(CASE WHEN public_key = ?2 THEN 1 END), COUNT(CASE WHEN public_key IS NULL THEN 1 END)
         FROM certificates WHERE endpoint_id = ?1 AND revoked_at IS NULL",
        params![endpoint.0 as i64, &key[..]],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(match (matching, unknown) {
        (1.., _) => Ok(()),
        (0, 1..) => Err(unprovable()),
        _ => Err(taken()),
    })
}

/// Bind the agent to a device endpoint (writes `agent_id`, enrolment time and count), unless it
/// is reserved for another agent, bound to another, or the key does not prove a re-enrolment.
fn bind_device(
    conn: &Db,
    target: &EndpointRecord,
    input: &EnrollInput,
    bound: Option<(i64, Option<i64>)>,
    now: i64,
) -> Result<Result<EnrollOutcome, Refusal>, StoreError> {
    if target.preassigned.is_some_and(|p| p != input.agent_id) {
        return Ok(Err(refuse(
            RefusalReason::AgentIdMismatch,
            "this endpoint is reserved for another agent id; check EDGE_ID",
        )));
    }
    match target.agent_id {
        Some(agent) if agent != input.agent_id => return Ok(Err(taken())),
        Some(_) => {
            if let Err(refusal) = proves_key(conn, target.id, &input.public_key)? {
                return Ok(Err(refusal));
            }
        }
        None => {}
    }
    if bound.is_some_and(|(id, _)| id as u64 != target.id.0) {
        return Ok(Err(bound_elsewhere()));
    }
    conn.execute(
        "UPDATE endpoints SET agent_id = ?2, enrolled_at = COALESCE(enrolled_at, ?3),
             enroll_count = enroll_count + 1, agent_version = ?4 WHERE id = ?1",
        params![
            target.id.0 as i64,
            input.agent_id.to_string(),
            now,
            input.agent_version
        ],
    )?;
    Ok(Ok(EnrollOutcome {
        endpoint: target.id,
        pending: !target.approved,
        superseded: false,
    }))
}

/// Bind the agent as a member of a fleet: its existing member (writes the enrolment count) if the
/// key proves it, else a new pending member ([`new_member`]).
fn bind_fleet_member(
    conn: &Db,
    fleet: &EndpointRecord,
    input: &EnrollInput,
    bound: Option<(i64, Option<i64>)>,
    now: i64,
) -> Result<Result<EnrollOutcome, Refusal>, StoreError> {
    let member = match bound {
        Some((id, Some(fleet_id))) if fleet_id as u64 == fleet.id.0 => {
            let member = EndpointId(id as u64);
            if let Err(refusal) = proves_key(conn, member, &input.public_key)? {
                return Ok(Err(refusal));
            }
            member
        }
        Some(_) => return Ok(Err(bound_elsewhere())),
        None => match new_member(conn, fleet, input, now)? {
            Ok(member) => member,
            Err(refusal) => return Ok(Err(refusal)),
        },
    };
    conn.execute(
        "UPDATE endpoints SET enroll_count = enroll_count + 1, agent_version = ?2 WHERE id = ?1",
        params![member.0 as i64, input.agent_version],
    )?;
    let approved: bool = conn.query_row(
        "SELECT approved FROM endpoints WHERE id = ?1",
        [member.0 as i64],
        |r| r.get(0),
    )?;
    Ok(Ok(EnrollOutcome {
        endpoint: member,
        pending: !approved,
        superseded: false,
    }))
}

/// A new pending device of `fleet`, unless the fleet already has `max_pending` waiting.
fn new_member(
    conn: &Db,
    fleet: &EndpointRecord,
    input: &EnrollInput,
    now: i64,
) -> Result<Result<EndpointId, Refusal>, StoreError> {
    let pending: i64 = conn.query_row(
        "SELECT COUNT(*) FROM endpoints WHERE fleet_id = ?1 AND approved = 0",
        [fleet.id.0 as i64],
        |r| r.get(0),
    )?;
    if pending >= i64::from(input.max_pending) {
        return Ok(Err(refuse(
            RefusalReason::TooManyPending,
            format!(
                "this fleet token already has {pending} devices waiting for approval, the most \
                 the hub allows; ask the admin to approve or remove some"
            ),
        )));
    }
    let agent = input.agent_id.to_string();
    let member: i64 = conn.query_row(
        "INSERT INTO endpoints (name, kind, fleet_id, agent_id, approved, created_at, enrolled_at, agent_version)
         VALUES (?1, 'device', ?2, ?3, 0, ?4, ?4, ?5) RETURNING id",
        params![format!("{}-{}", fleet.name, &agent[..8]), fleet.id.0 as i64, agent, now, input.agent_version],
        |row| row.get(0),
    )?;
    let member = EndpointId(member as u64);
    labels::inherit(conn, fleet.id, member)?;
    Ok(Ok(member))
}
