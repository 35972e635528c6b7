//! Live sessions, in memory: which endpoints are connected, when each last checked in, and the
//! handle to summon or revoke it.
//!
//! Liveness is memory-only by design: a hub with tens of thousands of agents must not write to disk
//! per check-in. [`Registry::take_dirty`] hands the changed entries to the batch flusher.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use outpost_common::stream::MAX_STREAMS_PER_DEVICE;
use outpost_common::wire::{CloseCode, HubMessage};
use outpost_common::{AgentId, EndpointId};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::store::LivenessUpdate;

/// What an admin sees of an endpoint's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Enrolled through a fleet token, waiting for approval.
    Pending,
    /// Not connected, or silent for longer than the liveness bound.
    Offline,
    /// Connected, no stream credit.
    Standby,
    /// Connected and summoned.
    Active,
}

/// Why a summon failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SummonError {
    /// The device has no live connection.
    #[error("endpoint {0} is offline: the device is not connected to the hub")]
    Offline(EndpointId),
    /// The device waits for approval.
    #[error(
        "endpoint {0} is pending approval: approve it with `outpost-hub endpoint approve {0}`"
    )]
    Pending(EndpointId),
    /// The device did not answer in time.
    #[error("endpoint {0} did not answer the summon within {1:?}")]
    Timeout(EndpointId, Duration),
    /// The connection ended while waiting.
    #[error("endpoint {0} disconnected while being summoned")]
    Disconnected(EndpointId),
}

/// Mutable per-session state.
#[derive(Debug)]
struct LiveState {
    /// When the session was established: proof of life until the first check-in lands.
    connected_at: Instant,
    last_checkin: Option<(Instant, SystemTime)>,
    remote: SocketAddr,
    migrations: u64,
    active: bool,
    pending: bool,
    dirty: bool,
}

/// One connected agent.
#[derive(Debug)]
pub struct LiveSession {
    /// The endpoint the agent's certificate maps to.
    pub endpoint: EndpointId,
    /// The agent.
    pub agent_id: AgentId,
    conn: quinn::Connection,
    control: mpsc::Sender<HubMessage>,
    state: Mutex<LiveState>,
    summons: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    next_summon: AtomicU32,
    proxy_slots: Arc<Semaphore>,
}

/// A point-in-time view of a live session for the API.
#[derive(Clone, Debug)]
pub struct LiveView {
    /// Standby, active or (if silent too long) offline.
    pub status: Status,
    /// Last check-in wall-clock time.
    pub last_checkin: Option<SystemTime>,
    /// Current remote address.
    pub remote_addr: SocketAddr,
    /// QUIC's smoothed round-trip estimate.
    pub rtt: Duration,
    /// Migrations on this and earlier connections.
    pub migrations: u64,
    /// UDP traffic of the current connection, as the hub counts it.
    pub wire: WireCounts,
    /// Proxied Docker requests in flight.
    pub proxy_streams: u32,
}

/// UDP datagrams and payload bytes of one connection, in each direction (hub's point of view).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WireCounts {
    /// Bytes the hub sent to the agent (UDP payload).
    pub tx_bytes: u64,
    /// Datagrams the hub sent.
    pub tx_datagrams: u64,
    /// Bytes the hub received from the agent (UDP payload).
    pub rx_bytes: u64,
    /// Datagrams the hub received.
    pub rx_datagrams: u64,
}

impl WireCounts {
    fn of(conn: &quinn::Connection) -> Self {
        let stats = conn.stats();
        Self {
            tx_bytes: stats.udp_tx.bytes,
            tx_datagrams: stats.udp_tx.datagrams,
            rx_bytes: stats.udp_rx.bytes,
            rx_datagrams: stats.udp_rx.datagrams,
        }
    }
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
        control: mpsc::Sender<HubMessage>,
        pending: bool,
        migrations: u64,
    ) -> Self {
        let remote = conn.remote_address();
        Self {
            endpoint,
            agent_id,
            conn,
            control,
            state: Mutex::new(LiveState {
                connected_at: Instant::now(),
                last_checkin: None,
                remote,
                migrations,
                active: false,
                pending,
                dirty: true,
            }),
            summons: Mutex::new(HashMap::new()),
            next_summon: AtomicU32::new(1),
            proxy_slots: Arc::new(Semaphore::new(MAX_STREAMS_PER_DEVICE as usize)),
        }
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

    /// A check-in arrived; returns whether the remote address changed (a migration).
    pub fn record_checkin(&self, now: Instant) -> bool {
        let remote = self.conn.remote_address();
        let mut state = lock(&self.state);
        state.last_checkin = Some((now, SystemTime::now()));
        state.dirty = true;
        let migrated = remote != state.remote;
        if migrated {
            state.remote = remote;
            state.migrations += 1;
        }
        migrated
    }

    /// The agent reported `Ready` for summon `id`.
    pub fn resolve_summon(&self, id: u32) {
        lock(&self.state).active = true;
        if let Some(waiter) = lock(&self.summons).remove(&id) {
            let _ = waiter.send(());
        }
    }

    /// The agent returned to standby.
    pub fn enter_standby(&self) {
        lock(&self.state).active = false;
    }

    /// An admin approved this pending device.
    pub fn approve(&self) -> bool {
        let was_pending = std::mem::replace(&mut lock(&self.state).pending, false);
        was_pending && self.control.try_send(HubMessage::Approved).is_ok()
    }

    /// The status an admin sees, with `stale_after` the liveness bound.
    pub fn view(&self, now: Instant, stale_after: Duration) -> LiveView {
        let state = lock(&self.state);
        let alive_at = state.last_checkin.map_or(state.connected_at, |(at, _)| at);
        let fresh = now.saturating_duration_since(alive_at) <= stale_after;
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
        if self.control.send(HubMessage::Summon { id }).await.is_err() {
            lock(&self.summons).remove(&id);
            return Err(SummonError::Disconnected(self.endpoint));
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
        self.conn.close(code.as_varint(), reason.as_bytes());
    }

    fn take_dirty(&self) -> Option<LivenessUpdate> {
        let mut state = lock(&self.state);
        let (_, wall) = state.last_checkin?;
        if !std::mem::take(&mut state.dirty) {
            return None;
        }
        Some(LivenessUpdate {
            id: self.endpoint,
            last_checkin: wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default(),
            addr: state.remote.to_string(),
            migrations: state.migrations as i64,
        })
    }
}

/// All live sessions of this hub.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<EndpointId, Arc<LiveSession>>>,
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

    /// Remove `session` if it is still the registered one for its endpoint.
    pub fn remove(&self, session: &Arc<LiveSession>) {
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(&session.endpoint)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.endpoint);
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

    /// Liveness changed since the last call, for the batch flusher.
    pub fn take_dirty(&self) -> Vec<LivenessUpdate> {
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        sessions.iter().filter_map(|s| s.take_dirty()).collect()
    }
}
