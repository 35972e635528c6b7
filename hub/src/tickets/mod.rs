//! TLS session tickets the hubs of one store share (issue #18, fast reconnects).
//!
//! A reconnecting agent that presents a ticket resumes: no certificate signature on either side,
//! no chains on the wire or to verify (the key exchange is still a fresh ECDHE, so a leaked key
//! exposes no session's traffic). The ticket carries the agent's certificate, so the hub still
//! knows which device it is and checks its serial against the store as on a full handshake.
//!
//! Flow:
//! 1. At start a hub settles the keys ([`settle`]): the store's set if there is one, else a new
//!    set it stores (the first hub of a store; two starting at once keep the first insert). A
//!    set due to rotate is rotated on the way ([`keys`] says how and why three keys).
//! 2. Its QUIC server config seals and opens tickets with them ([`StoreTicketer`]).
//! 3. Every [`CHECK_INTERVAL`] it settles again ([`run_rotation`]) and installs what it reads:
//!    the rotation another hub wrote, or its own if it is the first to find the set due. A
//!    rotation replaces exactly the value read, so hubs rotate once between them.
//!
//! So every hub on a store, and a hub after its own restart, opens every other's tickets. A
//! ticket lives [`TICKET_LIFETIME`] (7 days, the most TLS 1.3 allows) from the handshake that
//! issued it; a session older than that reconnects with a full handshake.
//!
//! The keys are secrets (they forge tickets, and so an agent's identity): they live in the store
//! beside the shared CA key, which forges certificates, and are never logged.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::context::HubContext;
use crate::store::db::Db;
use crate::store::{self, ticket_keys, StoreError};

pub mod keys;
#[cfg(test)]
mod tests;
pub mod ticketer;

pub use keys::{TicketKey, TicketKeyError, TicketKeys, ROTATION_PERIOD, TICKET_LIFETIME};
pub use ticketer::{StoreTicketer, TicketCounts};

/// How often a hub reads the shared keys, and rotates them when due: a rotation happens at most
/// this late, and a hub takes another's rotation at most this late (its `next` key covers it).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Tickets a hub sends per handshake. An agent spends one on each attempt (a ticket is used once),
/// and an attempt refused in a reconnect storm spent it for nothing: with one ticket, half of
/// 20,000 agents sent back at once lost theirs to a refusal and came back in full (`scale` bench,
/// BENCHMARKS.md). A second covers one failed attempt for ~1 KB more per set-up.
pub const TICKETS_PER_HANDSHAKE: usize = 2;

/// Why the shared ticket keys could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum TicketsError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No key could be made, or the stored ones are unreadable.
    #[error(transparent)]
    Keys(#[from] TicketKeyError),
}

/// The store's ticket keys at `now` (Unix seconds): made and stored if there are none, rotated if
/// they are `period` old (or taken from the hub that rotated them first).
pub fn settle(conn: &Db, now: i64, period: Duration) -> Result<TicketKeys, TicketsError> {
    let keys = match read(conn)? {
        Some(keys) => keys,
        None => {
            let made = TicketKeys::new(now, TicketKey::generate)?;
            ticket_keys::insert_first(conn, &made.encode())?;
            // Two hubs that started on an empty store at once: the first insert is the fleet's.
            read(conn)?.ok_or(TicketKeyError::Malformed("the stored keys vanished"))?
        }
    };
    if !keys.rotation_due(now, period) {
        return Ok(keys);
    }
    let rotated = keys.rotated(now, TicketKey::generate()?);
    if ticket_keys::replace(conn, &keys.encode(), &rotated.encode())? {
        return Ok(rotated);
    }
    // Another hub rotated between the read and the write: its set is the fleet's.
    Ok(read(conn)?.ok_or(TicketKeyError::Malformed("the stored keys vanished"))?)
}

fn read(conn: &Db) -> Result<Option<TicketKeys>, TicketsError> {
    Ok(ticket_keys::stored(conn)?
        .map(|text| TicketKeys::decode(&text))
        .transpose()?)
}

/// Where a hub's ticket keys come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TicketKeySource {
    /// The store, shared by every hub on it and kept across restarts (the default).
    #[default]
    Store,
    /// This process only (rustls' own ticketer): tickets die with the process. For measuring
    /// what the shared keys save (`serve --ticket-keys process`, hidden).
    Process,
}

/// The ticketer for a hub on `store`, with the keys it holds now; `None` if the keys could not
/// be settled (logged: the hub then serves with per-process tickets, as `Process` does).
pub fn start(store: &store::Store) -> Option<(Arc<StoreTicketer>, TicketKeys)> {
    match settle(&store.lock(), store::unix_now(), ROTATION_PERIOD) {
        Ok(keys) => {
            info!(
                rotates_at = keys.rotation_due_at(ROTATION_PERIOD),
                "TLS ticket keys shared through the store"
            );
            Some((Arc::new(StoreTicketer::new(&keys)), keys))
        }
        Err(e) => {
            warn!("TLS tickets will not survive a restart or reach other hubs: {e}");
            None
        }
    }
}

/// Settle the keys every [`CHECK_INTERVAL`] and install what changed into `ticketer`.
pub(crate) async fn run_rotation(
    ctx: Arc<HubContext>,
    ticketer: Arc<StoreTicketer>,
    mut keys: TicketKeys,
) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let settled = ctx
            .store
            .call(|conn| Ok(settle(conn, store::unix_now(), ROTATION_PERIOD)))
            .await
            .map_err(TicketsError::from)
            .and_then(|settled| settled);
        match settled {
            Ok(now) if now != keys => {
                ticketer.install(&now);
                info!(
                    rotated_at = now.rotated_at,
                    "TLS ticket keys rotated; tickets sealed before the previous rotation are refused"
                );
                keys = now;
            }
            Ok(_) => {}
            Err(e) => warn!("TLS ticket keys not read (the ones held stay in use): {e}"),
        }
    }
}
