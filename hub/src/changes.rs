//! Changes an admin makes on one hub that other hubs' sessions must see at once (issue #18):
//! a device removed or reset (its session closes: its certificate is revoked) and a device
//! approved (its session learns it). Rollout and job events travel on the same channel
//! ([`crate::fleet_relay`], [`crate::job_relay`]). The hub that made the change applies it to
//! its own sessions and, on PostgreSQL, announces it with `NOTIFY`; every hub `LISTEN`s and
//! applies what it hears (its own announcements too: each change is idempotent). On SQLite there
//! is one hub, and nothing to announce.
//!
//! A notification is delivered only to hubs listening when it commits: a hub whose listener was
//! down misses it, and a session the store no longer allows is refused at its next connection
//! (certificates are checked against the store at every handshake), not closed at once.

use std::sync::Arc;
use std::time::Duration;

use outpost_protocol::wire::CloseCode;
use outpost_protocol::EndpointId;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, info, warn};

use crate::announcement::decode;
use crate::context::HubContext;
use crate::store::db::{Db, Dialect};
use crate::store::StoreError;
use crate::{fleet_relay, job_relay};

/// The channel the hubs of one store announce changes on.
const CHANNEL: &str = "outpost_changes";
/// How long a listener whose connection failed waits before it connects again.
const RETRY: Duration = Duration::from_secs(2);

/// A change other hubs' sessions must see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The device was removed: its certificates are revoked and its session closes.
    Removed(EndpointId),
    /// The device was reset: unbound, its certificates revoked, its session closed.
    Reset(EndpointId),
    /// The device was approved.
    Approved(EndpointId),
}

impl Change {
    /// The notification's payload: `removed:ID`, `reset:ID` or `approved:ID`.
    pub fn encode(self) -> String {
        let (kind, id) = match self {
            Self::Removed(id) => ("removed", id),
            Self::Reset(id) => ("reset", id),
            Self::Approved(id) => ("approved", id),
        };
        format!("{kind}:{}", id.0)
    }

    /// A payload back into a change; `None` for anything else (a newer hub's change kind).
    pub fn decode(payload: &str) -> Option<Self> {
        let (kind, id) = payload.split_once(':')?;
        let id = EndpointId(id.parse().ok()?);
        match kind {
            "removed" => Some(Self::Removed(id)),
            "reset" => Some(Self::Reset(id)),
            "approved" => Some(Self::Approved(id)),
            _ => None,
        }
    }
}

/// `change` was made through this hub (and is in the store): apply it to this hub's sessions,
/// and tell the others. Returns whether this hub had a session for the device. An announcement
/// that fails is logged, not returned: the change itself stands, and the admin who made it must
/// not be told it failed (a retry would find the device gone).
pub(crate) async fn made(ctx: &Arc<HubContext>, change: Change) -> bool {
    let had_session = apply(ctx, change);
    if let Err(e) = ctx.store.call(move |conn| announce(conn, change)).await {
        warn!(?change, "the other hubs were not told of this change ({e}); a session they hold learns it when the device next connects");
    }
    had_session
}

/// Announce `change` to the other hubs of the store (PostgreSQL only).
pub fn announce(conn: &Db, change: Change) -> Result<(), StoreError> {
    announce_text(conn, &change.encode())
}

/// PostgreSQL refuses a notification payload of this many bytes or more.
pub(crate) const CHANNEL_LIMIT: usize = 8_000;

/// Send `payload` to every hub listening on the store (PostgreSQL only; one hub on SQLite).
pub(crate) fn announce_text(conn: &Db, payload: &str) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Postgres {
        conn.execute("SELECT pg_notify(?1, ?2)", [CHANNEL, payload])?;
    }
    Ok(())
}

/// Apply `change` to this hub's sessions; returns whether it had one for the device.
pub(crate) fn apply(ctx: &HubContext, change: Change) -> bool {
    match change {
        Change::Removed(id) => ctx.registry.revoke(id),
        Change::Reset(id) => match ctx.registry.get(id) {
            Some(session) => {
                session.close(
                    CloseCode::Revoked,
                    "this endpoint was reset by an administrator",
                );
                true
            }
            None => false,
        },
        Change::Approved(id) => match ctx.registry.get(id) {
            Some(session) => {
                // An agent that announced jobs while it waited is sent them from now on.
                if session.approve() && session.runs_jobs() {
                    ctx.jobs.online(id);
                }
                true
            }
            None => false,
        },
    }
}

/// Listen for the other hubs' changes on the PostgreSQL store at `url`, for as long as the hub
/// runs; a failed connection is retried every [`RETRY`].
pub(crate) async fn run_listener(ctx: Arc<HubContext>, url: String) {
    loop {
        if let Err(e) = listen(&ctx, &url).await {
            warn!("not hearing the other hubs' changes: {e}; retrying in {RETRY:?}");
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn listen(ctx: &HubContext, url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (heard, mut hearing) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message? {
                if heard.send(n.payload().to_owned()).is_err() {
                    break;
                }
            }
        }
        Ok::<_, tokio_postgres::Error>(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    info!("hearing the other hubs' changes");
    while let Some(payload) = hearing.recv().await {
        if let Some(change) = Change::decode(&payload) {
            debug!(?change, "a change from a hub");
            apply(ctx, change);
        } else if let Some(relayed) = decode::<fleet_relay::Kind>(&payload) {
            fleet_relay::apply(ctx, relayed);
        } else if let Some(relayed) = decode::<job_relay::Kind>(&payload) {
            job_relay::apply(ctx, relayed);
        } else {
            warn!(payload, "a change this hub does not know; ignored");
        }
    }
    drop(client);
    match driver.await {
        Ok(ended) => ended,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_survives_its_payload_and_a_foreign_one_is_none() {
        for change in [
            Change::Removed(EndpointId(7)),
            Change::Reset(EndpointId(0)),
            Change::Approved(EndpointId(u64::MAX)),
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        for foreign in [
            "",
            "removed",
            "removed:",
            "removed:x",
            "renamed:4",
            ":4",
            "removed:-1",
        ] {
            assert_eq!(Change::decode(foreign), None, "{foreign:?}");
        }
    }
}
