//! The map of live sessions and the flusher's view of it, with handles that need no connection: a
//! session's state machine behind a lock, as the real handle holds it, on a virtual clock.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::SystemTime;

use super::*;
use crate::session::{ConnectionEnd, HubSession};

const INTERVAL: Duration = Duration::from_secs(25);
/// The hub's liveness bound at that interval (`HubContext::stale_after`).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// A handle without a connection: the session's state and how it was closed.
#[derive(Debug)]
struct FakeSession {
    endpoint: EndpointId,
    state: Mutex<HubSession<()>>,
    closed: Mutex<Option<CloseCode>>,
}

impl FakeSession {
    fn new(id: u64, now: Instant) -> Arc<Self> {
        let remote = SocketAddr::from(([192, 0, 2, 1], 1000));
        Arc::new(Self {
            endpoint: EndpointId(id),
            state: Mutex::new(HubSession::new(
                EndpointId(id),
                now,
                remote,
                false,
                0,
                // Probing off (the cap is the interval): these tests are about the flushes, at
                // a liveness bound that stays the hub's.
                crate::session::interval::CheckinTuner::new(
                    INTERVAL,
                    crate::session::interval::TunerTiming {
                        cap: INTERVAL,
                        ..Default::default()
                    },
                    now,
                ),
            )),
            closed: Mutex::new(None),
        })
    }

    fn checkin(&self, now: Instant) {
        let remote = SocketAddr::from(([192, 0, 2, 1], 1000));
        lock(&self.state).handle_checkin(now, SystemTime::now(), remote);
    }

    fn closed(&self) -> Option<CloseCode> {
        *lock(&self.closed)
    }
}

impl Entry for FakeSession {
    fn endpoint(&self) -> EndpointId {
        self.endpoint
    }

    fn close(&self, code: CloseCode, _reason: &str) {
        *lock(&self.closed) = Some(code);
    }

    fn save(&self, now: Instant, flush: Flush) -> Option<LivenessUpdate> {
        let save = lock(&self.state).poll_save(now, flush)?;
        Some(save.into_update(|| ConnectionEnd {
            wire: (1, 2),
            path: None,
            path_mtu: None,
        }))
    }

    fn status(&self, now: Instant, stale_after: Duration) -> Status {
        lock(&self.state).status(now, stale_after)
    }
}

/// `(endpoint, connected)` of each update, in order.
fn connected(updates: &[LivenessUpdate]) -> Vec<(u64, bool)> {
    updates.iter().map(|u| (u.id.0, u.connected)).collect()
}

#[test]
fn check_ins_are_written_on_change_at_checkpoints_and_on_departure_not_each_time() {
    let registry = Registry::default();
    let start = Instant::now();
    let session = FakeSession::new(7, start);
    registry.insert(session.clone());
    let take = |now| registry.take_dirty(now, STALE_AFTER);
    let first = take(start);
    assert_eq!(
        connected(&first),
        [(7, true)],
        "a new connection is written"
    );
    assert_eq!(first[0].last_checkin, None, "before its first check-in");
    assert!(take(start).is_empty(), "once");

    session.checkin(start);
    // Nineteen check-ins (475 s) later, still nothing to write.
    let mut now = start;
    for _ in 0..19 {
        now += INTERVAL;
        session.checkin(now);
        assert!(take(now).is_empty(), "a check-in writes nothing");
    }
    now = start + LIVENESS_CHECKPOINT;
    session.checkin(now);
    let checkpoint = take(now);
    assert_eq!(
        connected(&checkpoint),
        [(7, true)],
        "the checkpoint refreshes it"
    );
    assert!(checkpoint[0].last_checkin.is_some());

    now += INTERVAL;
    session.checkin(now);
    registry.remove(&session);
    let departed = take(now);
    assert_eq!(
        connected(&departed),
        [(7, false)],
        "a departure writes the last check-in, disconnected"
    );
    assert_eq!(departed[0].wire_ended, Some((1, 2)), "with the wire totals");
    assert!(registry.take_all(now).is_empty(), "and only once");
}

/// One endpoint's stored `connected` flag as the flusher leaves it, and how many rows it wrote.
#[derive(Debug, Default)]
struct StoredFlag {
    connected: bool,
    writes: usize,
}

impl StoredFlag {
    fn flush(&mut self, registry: &Registry<FakeSession>, now: Instant) -> bool {
        for update in registry.take_dirty(now, STALE_AFTER) {
            self.connected = update.connected;
            self.writes += 1;
        }
        self.connected
    }
}

/// The stored `connected` flag follows what the registry shows over an hour of check-ins, a
/// silence past the liveness bound, a return, a reconnection and a shutdown, on a virtual clock:
/// each change is written once, within one flush, and a connected session is never written stale.
#[test]
fn the_connected_flag_follows_the_registry_view_with_one_write_per_change() {
    let registry = Registry::default();
    let flush_every = Duration::from_secs(5);
    let start = Instant::now();
    let first = FakeSession::new(3, start);
    registry.insert(first.clone());
    let mut store = StoredFlag::default();
    let status = |s: &FakeSession, now| s.status(now, STALE_AFTER);

    // An hour of check-ins every 25 s, flushed every 5 s: online throughout, 6 writes in all.
    let mut now = start;
    let mut next_checkin = start;
    while now < start + Duration::from_secs(3600) {
        if now >= next_checkin {
            first.checkin(now);
            next_checkin += INTERVAL;
        }
        assert!(store.flush(&registry, now), "online at {:?}", now - start);
        now += flush_every;
    }
    assert_eq!(
        store.writes,
        1 + 5,
        "connect, then one checkpoint per 10 minutes"
    );

    // Silent: online while the registry shows it so, offline from the first flush after.
    let silent_since = now;
    while now - silent_since <= STALE_AFTER + flush_every {
        assert_eq!(
            store.flush(&registry, now),
            status(&first, now) == Status::Standby
        );
        now += flush_every;
    }
    assert_eq!(status(&first, now), Status::Offline);
    assert_eq!(
        registry.ids_with_status(now, STALE_AFTER, &[Status::Offline]),
        [EndpointId(3)]
    );
    assert!(!store.flush(&registry, now));
    // Its check-ins resume on the same connection: online again at once.
    first.checkin(now);
    assert!(store.flush(&registry, now));

    // It reconnects: the old session departs after the new one took over; the flag stays set.
    let second = FakeSession::new(3, now);
    registry.insert(second.clone());
    assert_eq!(first.closed(), Some(CloseCode::Replaced));
    registry.remove(&first);
    assert!(
        store.flush(&registry, now),
        "the replaced session's departure is not written"
    );
    let before = store.writes;
    registry.remove(&second);
    let third = FakeSession::new(3, now);
    registry.insert(third.clone());
    assert!(
        store.flush(&registry, now),
        "a departure then a reconnection, in that order"
    );
    assert_eq!(store.writes - before, 2);
    assert_eq!(
        connected(&registry.take_all(now)),
        [(3, false)],
        "shutdown disconnects"
    );
    assert_eq!(
        second.closed(),
        None,
        "a departing session is not closed by the map"
    );
}

#[test]
fn a_revoked_endpoint_is_closed_and_dropped_without_a_departure() {
    let registry = Registry::default();
    let now = Instant::now();
    let session = FakeSession::new(4, now);
    registry.insert(session.clone());
    assert!(registry.revoke(EndpointId(4)));
    assert_eq!(session.closed(), Some(CloseCode::Revoked));
    assert!(registry.get(EndpointId(4)).is_none());
    assert!(!registry.revoke(EndpointId(4)));
    registry.remove(&session);
    assert!(
        registry.take_all(now).is_empty(),
        "its row went with the endpoint"
    );
}
