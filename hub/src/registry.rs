//! Live sessions, in memory: a map from each connected endpoint to its handle ([`LiveSession`]),
//! which holds the connection, the control queue and the session's state machine
//! ([`crate::session::HubSession`]).
//!
//! Liveness is memory-only by design: a hub with tens of thousands of agents must not write to disk
//! per check-in. [`Registry::take_dirty`] hands the batch flusher what changed durably, as each
//! session decides it ([`crate::session::HubSession::poll_save`]): a session going live (a new
//! connection) or stale (silent past the liveness bound, its connection not yet timed out) or live
//! again, an address change, a departure; each endpoint's stored last check-in is refreshed only
//! every [`LIVENESS_CHECKPOINT`]. The store's `connected` flag, which the endpoint list filters on,
//! thus follows what [`LiveSession::view`] shows as of the last flush. [`Registry::take_all`]
//! writes everything at shutdown.
//!
//! The map holds any [`Entry`], so its own tests need no connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use outpost_protocol::wire::CloseCode;
use outpost_protocol::EndpointId;
use tokio::time::Instant;

use crate::session::Flush;
use crate::store::LivenessUpdate;

mod control;
mod handle;
pub use crate::session::{
    CheckIn, LiveView, SnapshotCounts, SnapshotRefused, Status, SummonError, WireCounts,
    LIVENESS_CHECKPOINT, MAX_STORED_SNAPSHOT,
};
pub use control::{Control, ControlQueue, Refused};
pub use handle::LiveSession;

/// What the registry needs of a session's handle.
pub trait Entry {
    /// The endpoint the session belongs to.
    fn endpoint(&self) -> EndpointId;
    /// Close the session's connection with a reason the agent understands.
    fn close(&self, code: CloseCode, reason: &str);
    /// What to write to the store now, if anything.
    fn save(&self, now: Instant, flush: Flush) -> Option<LivenessUpdate>;
    /// The status an admin sees, with `stale_after` the liveness bound.
    fn status(&self, now: Instant, stale_after: Duration) -> Status;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// All live sessions of this hub.
#[derive(Debug)]
pub struct Registry<S = LiveSession> {
    sessions: Mutex<HashMap<EndpointId, Arc<S>>>,
    /// Final liveness of sessions that ended since the last flush.
    departed: Mutex<Vec<LivenessUpdate>>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self {
            sessions: Mutex::default(),
            departed: Mutex::default(),
        }
    }
}

impl<S: Entry> Registry<S> {
    /// Every live session now (the traffic flush walks them without holding the map).
    pub fn all(&self) -> Vec<Arc<S>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Register a session; a previous session of the same endpoint is closed as replaced, and
    /// returned.
    pub fn insert(&self, session: Arc<S>) -> Option<Arc<S>> {
        let old = lock(&self.sessions).insert(session.endpoint(), session);
        if let Some(old) = &old {
            old.close(
                CloseCode::Replaced,
                "a newer connection from this device took over",
            );
        }
        old
    }

    /// Remove `session` if it is still the registered one for its endpoint, keeping its last
    /// liveness, disconnected, for the flusher (a replaced session's is superseded by its
    /// successor's).
    pub fn remove(&self, session: &Arc<S>) {
        // The departure is queued before the sessions lock is released: a flush that takes both
        // under that lock (a hub stopping) sees the session in one place or the other, never in
        // neither.
        let mut sessions = lock(&self.sessions);
        let endpoint = session.endpoint();
        if sessions
            .get(&endpoint)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&endpoint);
            if let Some(update) = session.save(Instant::now(), Flush::Final) {
                lock(&self.departed).push(update);
            }
        }
    }

    /// The live session of an endpoint.
    pub fn get(&self, endpoint: EndpointId) -> Option<Arc<S>> {
        lock(&self.sessions).get(&endpoint).cloned()
    }

    /// Drop and close the session of a removed endpoint.
    pub fn revoke(&self, endpoint: EndpointId) -> bool {
        let removed = lock(&self.sessions).remove(&endpoint);
        if let Some(session) = &removed {
            session.close(
                CloseCode::Revoked,
                "this endpoint was removed by an administrator",
            );
        }
        removed.is_some()
    }

    /// Ids of sessions whose status (with `stale_after`) is one of `wanted`.
    pub fn ids_with_status(
        &self,
        now: Instant,
        stale_after: Duration,
        wanted: &[Status],
    ) -> Vec<EndpointId> {
        lock(&self.sessions)
            .iter()
            .filter(|(_, s)| wanted.contains(&s.status(now, stale_after)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The status of every live session (with `stale_after`): what the metrics count.
    pub fn statuses(&self, now: Instant, stale_after: Duration) -> Vec<Status> {
        lock(&self.sessions)
            .values()
            .map(|s| s.status(now, stale_after))
            .collect()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Liveness to write now, for the batch flusher, in the order to write it: departures, then
    /// sessions gone live or stale (with `stale_after` the liveness bound), durable changes, and
    /// check-ins not written for a [`LIVENESS_CHECKPOINT`].
    pub fn take_dirty(&self, now: Instant, stale_after: Duration) -> Vec<LivenessUpdate> {
        self.take(now, Flush::Periodic { stale_after })
    }

    /// Every unwritten liveness change, every session disconnected: for a clean shutdown.
    pub fn take_all(&self, now: Instant) -> Vec<LivenessUpdate> {
        self.take(now, Flush::Final)
    }

    fn take(&self, now: Instant, flush: Flush) -> Vec<LivenessUpdate> {
        let sessions = lock(&self.sessions);
        let mut updates = std::mem::take(&mut *lock(&self.departed));
        updates.extend(sessions.values().filter_map(|s| s.save(now, flush)));
        updates
    }
}

#[cfg(test)]
mod tests;
