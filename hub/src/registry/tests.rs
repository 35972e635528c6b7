//! Liveness bookkeeping of a session over a real loopback QUIC connection.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_protocol::{AgentId, EndpointId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::agent_link::windows::WindowBudget;

const ALPN: &[u8] = b"test";
const INTERVAL: Duration = Duration::from_secs(25);
/// The hub's liveness bound at that interval (`HubContext::stale_after`).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// The hub's end of a loopback connection, with what keeps it open.
async fn hub_side(dir: &tempfile::TempDir) -> (quinn::Connection, quinn::Connection) {
    let (hub, agent, _) = connect(dir).await;
    (hub, agent)
}

/// Both ends of a loopback connection, and the agent's endpoint (to rebind it, as a NAT does).
async fn connect(
    dir: &tempfile::TempDir,
) -> (quinn::Connection, quinn::Connection, quinn::Endpoint) {
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let tls = QuicServerConfig::try_from(pki.server_config(&[ALPN]).unwrap()).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(tls)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let (tls, _) = pinned_client_config(pki.ca_fingerprint(), None, &[ALPN]).unwrap();
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let dial = client
        .connect_with(config, server.local_addr().unwrap(), HUB_SERVER_NAME)
        .unwrap();
    let (agent, hub) = tokio::join!(dial, async {
        server.accept().await.unwrap().await.unwrap()
    });
    (hub, agent.unwrap(), client)
}

fn session(conn: quinn::Connection, id: u64) -> Arc<LiveSession> {
    Arc::new(LiveSession::new(
        EndpointId(id),
        AgentId(Uuid::new_v4()),
        conn,
        false,
        0,
        INTERVAL,
    ))
}

/// `(endpoint, connected)` of each update, in order.
fn connected(updates: &[LivenessUpdate]) -> Vec<(u64, bool)> {
    updates.iter().map(|u| (u.id.0, u.connected)).collect()
}

#[tokio::test]
async fn check_ins_are_written_on_change_at_checkpoints_and_on_departure_not_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, _agent) = hub_side(&dir).await;
    let registry = Registry::default();
    let start = Instant::now();
    let session = session(conn, 7);
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

    session.record_checkin(start);

    // Nineteen check-ins (475 s) later, still nothing to write.
    let mut now = start;
    for _ in 0..19 {
        now += INTERVAL;
        assert!(!session.record_checkin(now).migrated);
        assert!(take(now).is_empty(), "a check-in writes nothing");
    }
    now = start + LIVENESS_CHECKPOINT;
    session.record_checkin(now);
    let checkpoint = take(now);
    assert_eq!(
        connected(&checkpoint),
        [(7, true)],
        "the checkpoint refreshes it"
    );
    assert!(checkpoint[0].last_checkin.is_some());

    now += INTERVAL;
    session.record_checkin(now);
    assert_eq!(session.view(now, INTERVAL * 3).checkin_interval, INTERVAL);
    registry.remove(&session);
    assert_eq!(
        connected(&take(now)),
        [(7, false)],
        "a departure writes the last check-in, disconnected"
    );
    assert!(registry.take_all(now).is_empty(), "and only once");
}

/// One endpoint's stored `connected` flag as the flusher leaves it, and how many rows it wrote.
#[derive(Debug, Default)]
struct StoredFlag {
    connected: bool,
    writes: usize,
}

impl StoredFlag {
    fn flush(&mut self, registry: &Registry, now: Instant) -> bool {
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
#[tokio::test]
async fn the_connected_flag_follows_the_registry_view_with_one_write_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, _agent) = hub_side(&dir).await;
    let registry = Registry::default();
    let flush_every = Duration::from_secs(5);
    let start = Instant::now();
    let first = session(conn, 3);
    registry.insert(first.clone());
    let mut store = StoredFlag::default();
    let status = |s: &LiveSession, now| s.view(now, STALE_AFTER).status;

    // An hour of check-ins every 25 s, flushed every 5 s: online throughout, 6 writes in all.
    let mut now = start;
    let mut next_checkin = start;
    while now < start + Duration::from_secs(3600) {
        if now >= next_checkin {
            first.record_checkin(now);
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
    assert!(!store.flush(&registry, now));
    // Its check-ins resume on the same connection: online again at once.
    first.record_checkin(now);
    assert!(store.flush(&registry, now));

    // It reconnects: the old session departs after the new one took over; the flag stays set.
    let (conn, _agent2) = hub_side(&dir).await;
    let second = session(conn, 3);
    registry.insert(second.clone());
    // (Its first check-in, on the test's clock: the session was made on the real one.)
    second.record_checkin(now);
    registry.remove(&first);
    assert!(
        store.flush(&registry, now),
        "the replaced session's departure is not written"
    );
    let before = store.writes;
    registry.remove(&second);
    let (conn, _agent3) = hub_side(&dir).await;
    let third = session(conn, 3);
    registry.insert(third.clone());
    third.record_checkin(now);
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
}

/// Summon `session` as the API does and answer as its agent would; returns whether the `Ready`
/// resolved the summon.
async fn summon_and_answer(session: &Arc<LiveSession>, budget: &WindowBudget) -> bool {
    let waiting = tokio::spawn({
        let session = session.clone();
        async move { session.summon(Duration::from_secs(5)).await }
    });
    let Control::Summon { id } = session.control().pop().await else {
        panic!("expected a summon")
    };
    let resolved = session.resolve_summon(id, budget);
    waiting.await.unwrap().unwrap();
    resolved
}

fn full(session: &LiveSession) -> bool {
    session.view(Instant::now(), INTERVAL).full_windows
}

#[tokio::test]
async fn summoned_sessions_hold_full_windows_while_the_budget_lasts() {
    let dir = tempfile::tempdir().unwrap();
    // A budget of nothing still holds one grant.
    let budget = WindowBudget::new(0, &outpost_transport::profile::CELLULAR);
    let mut sessions = Vec::new();
    for id in 0..2 {
        let (conn, agent) = hub_side(&dir).await;
        sessions.push((session(conn, id), agent));
    }
    let (first, second) = (&sessions[0].0, &sessions[1].0);
    assert!(summon_and_answer(first, &budget).await);
    assert!(summon_and_answer(second, &budget).await);
    assert!(full(first), "the first summoned device gets the grant");
    assert!(!full(second), "the second works at standby windows");
    first.enter_standby();
    assert!(!full(first), "standby returns the grant");
    second.enter_standby();
    assert!(summon_and_answer(second, &budget).await);
    assert!(full(second), "the next summon takes it");
}

#[tokio::test]
async fn a_ready_the_hub_did_not_ask_for_takes_no_grant() {
    let dir = tempfile::tempdir().unwrap();
    let budget = WindowBudget::new(0, &outpost_transport::profile::CELLULAR);
    let (conn, _agent) = hub_side(&dir).await;
    let pending = Arc::new(LiveSession::new(
        EndpointId(1),
        AgentId(Uuid::new_v4()),
        conn,
        true,
        0,
        INTERVAL,
    ));
    // A pending device is never summoned, so any id it names is unsolicited.
    for id in [0, 1, 2, u32::MAX] {
        assert!(!pending.resolve_summon(id, &budget));
    }
    assert_eq!(
        pending.summon(Duration::from_secs(1)).await,
        Err(SummonError::Pending(EndpointId(1)))
    );
    assert!(!full(&pending));
    assert_eq!(
        pending.view(Instant::now(), INTERVAL).status,
        Status::Pending
    );

    // An approved device's late answer to a summon that timed out is ignored too.
    let (conn, _agent) = hub_side(&dir).await;
    let approved = session(conn, 2);
    let timed_out = approved.summon(Duration::from_millis(10)).await;
    assert!(matches!(timed_out, Err(SummonError::Timeout(..))));
    let Control::Summon { id } = approved.control().pop().await else {
        panic!("expected a summon")
    };
    assert!(!approved.resolve_summon(id, &budget));
    assert_eq!(
        approved.view(Instant::now(), INTERVAL).status,
        Status::Standby
    );
    // The one grant was never taken, so a real summon still gets it.
    assert!(summon_and_answer(&approved, &budget).await);
    assert!(full(&approved));
}

#[tokio::test]
async fn every_rebind_seen_between_check_ins_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, agent, agent_endpoint) = connect(&dir).await;
    let session = session(conn.clone(), 5);
    let start = Instant::now();
    assert!(!session.record_checkin(start).migrated);
    // Eleven NAT rebinds, each followed by one packet (a control frame's, say) the driver samples.
    for round in 1..=11u8 {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        agent_endpoint.rebind(socket).unwrap();
        agent.send_datagram(vec![round].into()).unwrap();
        assert_eq!(conn.read_datagram().await.unwrap()[..], [round]);
        assert!(session.note_path(), "rebind {round} seen");
    }
    assert!(!session.note_path(), "no change, no count");
    let view = session.view(start, STALE_AFTER);
    assert_eq!(view.migrations, 11);
    assert_eq!(view.remote_addr, conn.remote_address());
    // The next check-in counts nothing more, while the tuner still hears of the new address.
    let checkin = session.record_checkin(start + INTERVAL);
    assert!(!checkin.migrated);
    assert_eq!(session.view(start, STALE_AFTER).migrations, 11);
}
