//! What the session driver does with a check-in and an engine snapshot: the two reports every
//! agent sends unasked, each checked against the session's allowance before it costs anything.

use outpost_protocol::snapshot::EngineSnapshot;
use outpost_protocol::wire::{self, Datagram};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::driver::SessionError;
use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::session::delivery::Deliver;
use crate::store::snapshots;

/// Store an engine snapshot within the session's allowance. Informational: a refusal or a store
/// hiccup loses this snapshot, never the device's session.
pub(super) async fn store_snapshot(
    ctx: &HubContext,
    session: &LiveSession,
    snapshot: EngineSnapshot,
) {
    let id = session.endpoint;
    let snapshot = match session.admit_snapshot(Instant::now(), snapshot) {
        Ok(snapshot) => snapshot,
        // Logged at 1, 2, 4, 8, … refusals: a flood costs a few lines, not one per frame.
        Err(refused) if refused.refused().is_power_of_two() => {
            return warn!(endpoint = %id, "engine snapshot refused: {refused}")
        }
        Err(refused) => return debug!(endpoint = %id, "engine snapshot refused: {refused}"),
    };
    if snapshot.error.is_none()
        && ctx.pings.restore(
            id,
            &snapshot.engine_version,
            session.ping_cache(),
            Instant::now(),
        )
    {
        debug!(endpoint = %id, "the last session's ping answer carried over");
    }
    let save = ctx
        .store
        .call(move |c| snapshots::save_snapshot(c, id, &snapshot));
    match save.await {
        Ok(()) => debug!(endpoint = %id, "engine snapshot stored"),
        Err(e) => warn!(endpoint = %id, "engine snapshot not stored: {e}"),
    }
}

/// Note a check-in and ack it with the agent's current interval; what it says of the agent's
/// stacks may ask for a delivery.
pub(super) fn answer_checkin(
    ctx: &HubContext,
    session: &LiveSession,
    bytes: &[u8],
) -> Result<Deliver, SessionError> {
    let (seq, applied) = match wire::decode::<Datagram>(bytes) {
        Ok(Datagram::CheckIn { seq }) => (seq, None),
        Ok(Datagram::CheckInApplied { seq, applied }) => (seq, Some(applied)),
        Ok(other) => {
            return Err(SessionError::Protocol(format!(
                "unexpected datagram {other:?}"
            )))
        }
        Err(e) => return Err(SessionError::Protocol(format!("bad datagram: {e}"))),
    };
    let conn = session.connection();
    let (checkin, deliver) = session.record_checkin(Instant::now(), applied);
    ctx.metrics.checkin(conn.rtt(), checkin.lag);
    if checkin.migrated {
        info!(endpoint = %session.endpoint, remote = %session.path().addr, interval_s = checkin.interval_s, "connection migrated");
    }
    let ack = Datagram::Ack {
        seq,
        interval_s: checkin.interval_s,
    };
    if let Err(e) = conn.send_datagram(wire::encode_datagram(&ack).into()) {
        debug!(endpoint = %session.endpoint, "ack not sent: {e}");
    }
    Ok(deliver)
}
