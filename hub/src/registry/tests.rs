//! Liveness bookkeeping of a session over a real loopback QUIC connection.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_common::{AgentId, EndpointId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::agent_link::windows::WindowBudget;

const ALPN: &[u8] = b"test";
const INTERVAL: Duration = Duration::from_secs(25);

/// The hub's end of a loopback connection, with what keeps it open.
async fn hub_side(dir: &tempfile::TempDir) -> (quinn::Connection, quinn::Connection) {
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
    (hub, agent.unwrap())
}

#[tokio::test]
async fn check_ins_are_written_on_change_at_checkpoints_and_on_departure_not_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, _agent) = hub_side(&dir).await;
    let registry = Registry::default();
    let (control, _queue) = mpsc::channel(1);
    let session = Arc::new(LiveSession::new(
        EndpointId(7),
        AgentId(Uuid::new_v4()),
        conn,
        control,
        false,
        0,
        INTERVAL,
    ));
    registry.insert(session.clone());
    let start = Instant::now();
    assert!(registry.take_dirty(start).is_empty(), "no check-in yet");

    session.record_checkin(start);
    let first = registry.take_dirty(start);
    assert_eq!(first.len(), 1, "a new connection is written");
    assert_eq!(first[0].id, EndpointId(7));

    // Nineteen check-ins (475 s) later, still nothing to write.
    let mut now = start;
    for _ in 0..19 {
        now += INTERVAL;
        assert!(!session.record_checkin(now).migrated);
        assert!(
            registry.take_dirty(now).is_empty(),
            "a check-in writes nothing"
        );
    }
    now = start + LIVENESS_CHECKPOINT;
    session.record_checkin(now);
    assert_eq!(
        registry.take_dirty(now).len(),
        1,
        "the checkpoint refreshes it"
    );

    now += INTERVAL;
    session.record_checkin(now);
    assert_eq!(session.view(now, INTERVAL * 3).checkin_interval, INTERVAL);
    registry.remove(&session);
    assert_eq!(
        registry.take_dirty(now).len(),
        1,
        "a departure writes the last check-in"
    );
    assert!(registry.take_all(now).is_empty(), "and only once");
}

#[tokio::test]
async fn summoned_sessions_hold_full_windows_while_the_budget_lasts() {
    let dir = tempfile::tempdir().unwrap();
    // A budget of nothing still holds one grant.
    let budget = WindowBudget::new(0, &outpost_common::transport::CELLULAR);
    let mut sessions = Vec::new();
    for id in 0..2 {
        let (conn, agent) = hub_side(&dir).await;
        let (control, queue) = mpsc::channel(1);
        let session = LiveSession::new(
            EndpointId(id),
            AgentId(Uuid::new_v4()),
            conn,
            control,
            false,
            0,
            INTERVAL,
        );
        sessions.push((session, agent, queue));
    }
    let full = |s: &LiveSession| s.view(Instant::now(), INTERVAL).full_windows;
    let (first, second) = (&sessions[0].0, &sessions[1].0);
    first.resolve_summon(1, &budget);
    second.resolve_summon(1, &budget);
    assert!(full(first), "the first summoned device gets the grant");
    assert!(!full(second), "the second works at standby windows");
    first.enter_standby();
    assert!(!full(first), "standby returns the grant");
    second.resolve_summon(2, &budget);
    assert!(full(second), "the next summon takes it");
}
