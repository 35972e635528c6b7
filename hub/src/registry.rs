//! Live sessions, in memory: which endpoints are connected, when each last checked in, and the
//! handle to summon or revoke it.
//!
//! Liveness is memory-only by design: a hub with tens of thousands of agents must not write to disk
//! per check-in. [`Registry::take_dirty`] hands the batch flusher what changed durably: a session
//! going live (a new connection) or stale (silent past the liveness bound, its connection not yet
//! timed out) or live again, an address change, a departure; it refreshes each endpoint's stored
//! last check-in only every [`LIVENESS_CHECKPOINT`]. The store's `connected` flag, which the
//! endpoint list filters on, thus follows what [`LiveSession::view`] shows as of the last flush.
//! [`Registry::take_all`] writes everything at shutdown.

use outpost_transport::close::CloseCodeVarint as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use outpost_protocol::snapshot::EngineSnapshot;
use outpost_protocol::stream::MAX_STREAMS_PER_DEVICE;
use outpost_protocol::wire::CloseCode;
use outpost_protocol::{AgentId, EndpointId};
use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;

use crate::agent_link::interval::CheckinTuner;
use crate::agent_link::windows::{WindowBudget, WindowGrant};
use crate::proxy::ping::PingCache;
use crate::store::{unix_seconds, LivenessUpdate};
use snapshots::SnapshotGate;

mod control;
pub mod snapshots;
mod view;
pub use control::{Control, ControlQueue, Refused};
pub use snapshots::{SnapshotCounts, SnapshotRefused, MAX_STORED_SNAPSHOT};
pub use view::{LiveView, Status, SummonError, WireCounts};

/// How stale an endpoint's stored last check-in may get while it stays connected: what a hub crash
/// (not a clean shutdown, which writes everything) loses of "last seen". At 25,000 agents this is
/// ~42 rows a second instead of one per check-in (1,000 a second at a 25 s interval).
pub const LIVENESS_CHECKPOINT: Duration = Duration::from_secs(10 * 60);

/// Mutable per-session state.
#[derive(Debug)]
struct LiveState {
    /// When the session was established: proof of life until the first check-in lands.
    connected_at: Instant,
    last_checkin: Option<(Instant, SystemTime)>,
    /// The remote address last seen (at a check-in or a control frame).
    remote: SocketAddr,
    /// The remote address of the last check-in, for the tuner.
    checkin_remote: SocketAddr,
    migrations: u64,
    active: bool,
    pending: bool,
    /// A durable field changed (new connection, address, migrations): write soon.
    dirty: bool,
    /// A check-in arrived since liveness was last written.
    unsaved_checkin: bool,
    saved_at: Instant,
    /// Whether the store was last told this session is live (`connected`).
    saved_live: bool,
    tuner: CheckinTuner,
    windows: Option<WindowGrant>,
    snapshots: SnapshotGate,
    /// The connection's bytes were added to the endpoint's totals (it ended).
    wire_recorded: bool,
    /// The agent asked for a certificate renewal on this session (one is all it may ask).
    renewal_asked: bool,
}

/// What the session answers a check-in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckIn {
    /// The remote address changed since the last check-in.
    pub migrated: bool,
    /// The interval for the ack, in seconds.
    pub interval_s: u16,
}

/// One connected agent.
#[derive(Debug)]
pub struct LiveSession {
    /// The endpoint the agent's certificate maps to.
    pub endpoint: EndpointId,
    /// The agent.
    pub agent_id: AgentId,
    conn: quinn::Connection,
    control: ControlQueue,
    state: Mutex<LiveState>,
    summons: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    next_summon: AtomicU32,
    proxy_slots: Arc<Semaphore>,
    ping: PingCache,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveSession {
    /// A session for a freshly authenticated connection.
    pub fn new(
        endpoint: EndpointId,
        agent_id: AgentId,
        conn: quinn::Connection,
        pending: bool,
        migrations: u64,
        checkin_interval: Duration,
    ) -> Self {
        let remote = conn.remote_address();
        let now = Instant::now();
        Self {
            endpoint,
            agent_id,
            conn,
            control: ControlQueue::default(),
            state: Mutex::new(LiveState {
                connected_at: now,
                last_checkin: None,
                remote,
                checkin_remote: remote,
                migrations,
                active: false,
                pending,
                dirty: true,
                unsaved_checkin: false,
                saved_at: now,
                saved_live: false,
                tuner: CheckinTuner::new(checkin_interval, now),
                windows: None,
                snapshots: SnapshotGate::new(pending, now),
                wire_recorded: false,
                renewal_asked: false,
            }),
            summons: Mutex::new(HashMap::new()),
            next_summon: AtomicU32::new(1),
            proxy_slots: Arc::new(Semaphore::new(MAX_STREAMS_PER_DEVICE as usize)),
            ping: PingCache::default(),
        }
    }

    /// Note a renewal request: true for the session's first, false for any later one (which the
    /// driver refuses before it costs a signature or a store write).
    pub fn first_renewal(&self) -> bool {
        !std::mem::replace(&mut lock(&self.state).renewal_asked, true)
    }

    /// The engine's last answer to the docker CLI's `/_ping` ([`crate::proxy::ping`]).
    pub(crate) fn ping_cache(&self) -> &PingCache {
        &self.ping
    }

    /// The control messages waiting for the session driver.
    pub fn control(&self) -> &ControlQueue {
        &self.control
    }

    /// The QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The per-device limit on proxied requests in flight.
    pub fn proxy_slots(&self) -> Arc<Semaphore> {
        self.proxy_slots.clone()
    }

    /// Proxied requests in flight now.
    pub fn proxy_streams(&self) -> u32 {
        MAX_STREAMS_PER_DEVICE - self.proxy_slots.available_permits() as u32
    }

    /// A check-in arrived: note it, count a migration if the remote address changed, and adapt
    /// the check-in interval to a change since the last check-in.
    pub fn record_checkin(&self, now: Instant) -> CheckIn {
        let remote = self.conn.remote_address();
        let mut state = lock(&self.state);
        state.last_checkin = Some((now, SystemTime::now()));
        state.unsaved_checkin = true;
        let migrated = state.see(remote);
        let rebound = std::mem::replace(&mut state.checkin_remote, remote) != remote;
        state.tuner.handle_checkin(now, rebound);
        CheckIn {
            migrated,
            interval_s: state.tuner.interval_s(),
        }
    }

    /// Sample the connection's path between check-ins (each control frame): count a migration if
    /// the remote address changed. Quinn tells of no path change, so migrations are counted
    /// where the driver looks: two changes between samples count once.
    pub fn note_path(&self) -> bool {
        let remote = self.conn.remote_address();
        lock(&self.state).see(remote)
    }

    /// The agent reported `Ready` for summon `id`. Only an answer to a summon the hub sent and
    /// still waits for counts: the session is active and gets full windows if `budget` has a
    /// grant left. Anything else (an unsolicited `Ready`, as from a pending device, or one after
    /// its summon timed out) is ignored, and this returns false: windows are the hub's memory and
    /// go only where an admin is waiting.
    pub fn resolve_summon(&self, id: u32, budget: &WindowBudget) -> bool {
        let Some(waiter) = lock(&self.summons).remove(&id) else {
            return false;
        };
        {
            let mut state = lock(&self.state);
            state.active = true;
            if state.windows.is_none() {
                state.windows = budget.grant(&self.conn);
            }
        }
        let _ = waiter.send(());
        true
    }

    /// The agent sent an engine snapshot: what to store, or why not ([`snapshots`]).
    pub fn admit_snapshot(
        &self,
        now: Instant,
        snapshot: EngineSnapshot,
    ) -> Result<EngineSnapshot, SnapshotRefused> {
        lock(&self.state).snapshots.admit(now, snapshot)
    }

    /// Snapshots this session sent, by outcome.
    pub fn snapshot_counts(&self) -> SnapshotCounts {
        lock(&self.state).snapshots.counts()
    }

    /// The agent returned to standby: back to standby windows, the grant returns to the budget.
    pub fn enter_standby(&self) {
        let grant = {
            let mut state = lock(&self.state);
            state.active = false;
            state.windows.take()
        };
        drop(grant);
    }

    /// An admin approved this pending device.
    pub fn approve(&self) -> bool {
        let was_pending = {
            let mut state = lock(&self.state);
            state.snapshots.approve(Instant::now());
            std::mem::replace(&mut state.pending, false)
        };
        was_pending && self.control.push(Control::Approved).is_ok()
    }

    /// The status an admin sees, with `stale_after` the liveness bound.
    pub fn view(&self, now: Instant, stale_after: Duration) -> LiveView {
        let state = lock(&self.state);
        let fresh = state.fresh(now, stale_after);
        let status = match (state.pending, fresh, state.active) {
            (true, _, _) => Status::Pending,
            (false, false, _) => Status::Offline,
            (false, true, false) => Status::Standby,
            (false, true, true) => Status::Active,
        };
        LiveView {
            status,
            last_checkin: state.last_checkin.map(|(_, wall)| wall),
            remote_addr: state.remote,
            rtt: self.conn.rtt(),
            migrations: state.migrations,
            wire: WireCounts::of(&self.conn),
            proxy_streams: self.proxy_streams(),
            checkin_interval: state.tuner.interval(),
            full_windows: state.windows.is_some(),
        }
    }

    /// Ask the agent to open stream credit and wait for its `Ready`.
    pub async fn summon(&self, timeout: Duration) -> Result<(), SummonError> {
        if lock(&self.state).pending {
            return Err(SummonError::Pending(self.endpoint));
        }
        if lock(&self.state).active {
            return Ok(());
        }
        let id = self.next_summon.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.summons).insert(id, tx);
        if let Err(refused) = self.control.push(Control::Summon { id }) {
            lock(&self.summons).remove(&id);
            return Err(match refused {
                Refused::Full => SummonError::Busy(self.endpoint),
                Refused::Closed => SummonError::Disconnected(self.endpoint),
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SummonError::Disconnected(self.endpoint)),
            Err(_) => {
                lock(&self.summons).remove(&id);
                Err(SummonError::Timeout(self.endpoint, timeout))
            }
        }
    }

    /// Close the connection with a reason the agent understands.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.conn.close(code.to_varint(), reason.as_bytes());
    }

    /// The liveness to write now, if any, with `live` what the store's `connected` flag should
    /// say: durable changes and a change of `live` at once, check-ins once per
    /// [`LIVENESS_CHECKPOINT`], or everything unsaved when `all`.
    fn take_update(&self, now: Instant, live: bool, all: bool) -> Option<LivenessUpdate> {
        let mut state = lock(&self.state);
        let checkpoint = state.unsaved_checkin
            && (all || now.saturating_duration_since(state.saved_at) >= LIVENESS_CHECKPOINT);
        // Not live and everything asked for: the session is ending (removed, or the hub stops).
        let ending = !live && all && !state.wire_recorded;
        if !(state.dirty || checkpoint || ending || live != state.saved_live) {
            return None;
        }
        let wire_ended = ending.then(|| {
            state.wire_recorded = true;
            let wire = WireCounts::of(&self.conn);
            (wire.tx_bytes, wire.rx_bytes)
        });
        state.dirty = false;
        state.unsaved_checkin = false;
        state.saved_at = now;
        state.saved_live = live;
        Some(LivenessUpdate {
            id: self.endpoint,
            last_checkin: state.last_checkin.map(|(_, wall)| unix_seconds(wall)),
            addr: state.remote.to_string(),
            migrations: state.migrations as i64,
            connected: live,
            wire_ended,
        })
    }

    /// Whether the store should count this session live now: checked in within `stale_after`.
    fn live(&self, now: Instant, stale_after: Duration) -> bool {
        lock(&self.state).fresh(now, stale_after)
    }
}

impl LiveState {
    /// The connection was seen at `remote`: count a migration if that is new.
    fn see(&mut self, remote: SocketAddr) -> bool {
        let moved = remote != self.remote;
        if moved {
            self.remote = remote;
            self.migrations += 1;
            self.dirty = true;
        }
        moved
    }

    /// Heard from within `stale_after`: a check-in, or the connection itself until the first one.
    fn fresh(&self, now: Instant, stale_after: Duration) -> bool {
        let alive_at = self.last_checkin.map_or(self.connected_at, |(at, _)| at);
        now.saturating_duration_since(alive_at) <= stale_after
    }
}

/// All live sessions of this hub.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<EndpointId, Arc<LiveSession>>>,
    /// Final liveness of sessions that ended since the last flush.
    departed: Mutex<Vec<LivenessUpdate>>,
}

impl Registry {
    /// Register a session; a previous session of the same endpoint is closed as replaced.
    pub fn insert(&self, session: Arc<LiveSession>) {
        let old = lock(&self.sessions).insert(session.endpoint, session);
        if let Some(old) = old {
            old.close(
                CloseCode::Replaced,
                "a newer connection from this device took over",
            );
        }
    }

    /// Remove `session` if it is still the registered one for its endpoint, keeping its last
    /// liveness, disconnected, for the flusher (a replaced session's is superseded by its
    /// successor's).
    pub fn remove(&self, session: &Arc<LiveSession>) {
        // The departure is queued before the sessions lock is released: a flush that takes both
        // under that lock (a hub stopping) sees the session in one place or the other, never in
        // neither.
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(&session.endpoint)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.endpoint);
            if let Some(update) = session.take_update(Instant::now(), false, true) {
                lock(&self.departed).push(update);
            }
        }
    }

    /// The live session of an endpoint.
    pub fn get(&self, endpoint: EndpointId) -> Option<Arc<LiveSession>> {
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

    /// Close every live session (the hub is stopping); each session's task removes it as it ends.
    pub fn close_all(&self, code: CloseCode, reason: &str) {
        for session in lock(&self.sessions).values() {
            session.close(code, reason);
        }
    }

    /// Ids of sessions whose status (with `stale_after`) is one of `wanted`.
    pub fn ids_with_status(
        &self,
        now: Instant,
        stale_after: Duration,
        wanted: &[Status],
    ) -> Vec<EndpointId> {
        lock(&self.sessions)
            .values()
            .filter(|s| wanted.contains(&s.view(now, stale_after).status))
            .map(|s| s.endpoint)
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
        let sessions = lock(&self.sessions);
        let mut updates = std::mem::take(&mut *lock(&self.departed));
        updates.extend(
            sessions
                .values()
                .filter_map(|s| s.take_update(now, s.live(now, stale_after), false)),
        );
        updates
    }

    /// Every unwritten liveness change, every session disconnected: for a clean shutdown.
    pub fn take_all(&self, now: Instant) -> Vec<LivenessUpdate> {
        let sessions = lock(&self.sessions);
        let mut updates = std::mem::take(&mut *lock(&self.departed));
        updates.extend(
            sessions
                .values()
                .filter_map(|s| s.take_update(now, false, true)),
        );
        updates
    }
}

#[cfg(test)]
mod tests;
