//! The memory's rules, then real quinn on loopback: a connection from a remembered network starts
//! at its MTU and sends no probe, where one from an unknown network searches.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_protocol::wire::ALPN_ENROLL;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::time::Instant;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn a_network_is_remembered_by_address_whatever_the_port() {
    let mut memory = MtuMemory::default();
    memory.remember(addr("198.18.0.7:4000"), 1_452);
    assert_eq!(memory.mtu_for(addr("198.18.0.7:5123")), Some(1_452));
    assert_eq!(memory.mtu_for(addr("198.18.0.8:4000")), None);
    // The latest finding replaces the last.
    memory.remember(addr("198.18.0.7:4001"), 1_400);
    assert_eq!(memory.mtu_for(addr("198.18.0.7:4000")), Some(1_400));
    // An IPv4 address seen on a dual-stack socket is the same network.
    assert_eq!(memory.mtu_for(addr("[::ffff:198.18.0.7]:9")), Some(1_400));
}

#[test]
fn quic_s_floor_is_not_worth_remembering() {
    let mut memory = MtuMemory::default();
    memory.remember(addr("198.18.0.7:4000"), 1_200);
    assert!(memory.is_empty());
    assert_eq!(worth_keeping(1_200), None);
    assert_eq!(worth_keeping(1_201), Some(1_201));
}

#[test]
fn saved_rows_that_do_not_parse_are_skipped() {
    let memory = MtuMemory::from_saved([
        ("198.18.0.1:1".to_string(), 1_452),
        ("not an address".to_string(), 1_452),
        ("198.18.0.2:1".to_string(), 70_000),
        ("198.18.0.3:1".to_string(), -1),
        ("198.18.0.4:1".to_string(), 1_100),
    ]);
    assert_eq!(memory.len(), 1);
    assert_eq!(memory.mtu_for(addr("198.18.0.1:2")), Some(1_452));
}

#[test]
fn past_the_bound_new_networks_are_not_remembered_but_known_ones_are_updated() {
    let mut memory = MtuMemory::default();
    for i in 0..MAX_NETWORKS as u32 {
        memory.remember(SocketAddr::from((i.to_be_bytes(), 1)), 1_400);
    }
    assert_eq!(memory.len(), MAX_NETWORKS);
    memory.remember(addr("255.255.255.255:1"), 1_400);
    assert_eq!(memory.len(), MAX_NETWORKS);
    assert_eq!(memory.mtu_for(addr("255.255.255.255:1")), None);
    memory.remember(SocketAddr::from((7u32.to_be_bytes(), 2)), 1_452);
    assert_eq!(
        memory.mtu_for(SocketAddr::from((7u32.to_be_bytes(), 3))),
        Some(1_452)
    );
}

#[tokio::test]
async fn a_liveness_batch_teaches_the_mtus_of_connections_that_ended() {
    let (mtus, _server, _dir) = loopback_server(MtuMemory::default());
    let update = |addr: &str, path_mtu| LivenessUpdate {
        id: outpost_protocol::EndpointId(1),
        last_checkin: None,
        addr: addr.into(),
        migrations: 0,
        connected: false,
        claim: false,
        wire_ended: None,
        path_ended: None,
        path_mtu,
    };
    mtus.learn(&[
        update("198.18.0.1:1", Some(1_452)),
        update("198.18.0.2:1", None),
        update("garbage", Some(1_452)),
    ]);
    assert_eq!(mtus.networks(), 1);
    assert!(mtus.config_for(addr("198.18.0.1:9")).is_some());
    assert!(mtus.config_for(addr("198.18.0.2:9")).is_none());
}

/// The hub's session transport on loopback, accepting with `memory`; the server endpoint.
fn loopback_server(memory: MtuMemory) -> (Arc<PathMtus>, quinn::Endpoint, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let tls = QuicServerConfig::try_from(pki.server_config(&[ALPN_ENROLL]).unwrap()).unwrap();
    let profile = TransportProfile::by_name("lan").unwrap();
    let mut base = quinn::ServerConfig::with_crypto(Arc::new(tls));
    base.transport_config(profile.transport_config(Role::Hub));
    let server = quinn::Endpoint::server(base.clone(), addr("127.0.0.1:0")).unwrap();
    (Arc::new(PathMtus::new(memory, base, profile)), server, dir)
}

/// A client that trusts the hub in `dir`.
fn client(dir: &tempfile::TempDir) -> quinn::Endpoint {
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let (tls, _) = pinned_client_config(pki.ca_fingerprint(), None, &[ALPN_ENROLL]).unwrap();
    let mut client = quinn::Endpoint::client(addr("127.0.0.1:0")).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).unwrap(),
    )));
    client
}

/// A new connection from `client`, accepted as the hub does: the client's side and the hub's.
async fn accept(
    mtus: &PathMtus,
    server: &quinn::Endpoint,
    client: &quinn::Endpoint,
) -> (quinn::Connection, quinn::Connection) {
    let dialed = client
        .connect(server.local_addr().unwrap(), HUB_SERVER_NAME)
        .unwrap();
    let accepted = async {
        let incoming = server.accept().await.unwrap();
        match mtus.config_for(incoming.remote_address()) {
            Some(config) => incoming.accept_with(config).unwrap().await.unwrap(),
            None => incoming.accept().unwrap().await.unwrap(),
        }
    };
    tokio::join!(async { dialed.await.unwrap() }, accepted)
}

/// The hub's side sends a datagram every 100 ms (each transmission lets the search send its
/// next probe) until a second passes with no new probe; the path as it then stands.
async fn settle(conn: &quinn::Connection) -> quinn::PathStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = conn.stats().path;
    loop {
        for _ in 0..10 {
            conn.send_datagram(b"ack".to_vec().into()).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let now = conn.stats().path;
        if now.sent_plpmtud_probes == last.sent_plpmtud_probes && now.current_mtu > 1_200 {
            return now;
        }
        assert!(Instant::now() < deadline, "the search did not end: {now:?}");
        last = now;
    }
}

#[tokio::test]
async fn a_connection_from_a_remembered_network_starts_at_its_mtu_and_sends_no_probe() {
    let (mtus, server, dir) = loopback_server(MtuMemory::default());
    let client = client(&dir);

    let (_first, unknown) = accept(&mtus, &server, &client).await;
    assert_eq!(unknown.stats().path.current_mtu, 1_200);
    let found = settle(&unknown).await;
    assert!(
        found.sent_plpmtud_probes > 0,
        "an unknown network is searched"
    );
    mtus.learn(&[LivenessUpdate {
        id: outpost_protocol::EndpointId(1),
        last_checkin: None,
        addr: unknown.remote_address().to_string(),
        migrations: 0,
        connected: false,
        claim: false,
        wire_ended: None,
        path_ended: None,
        path_mtu: worth_keeping(found.current_mtu),
    }]);
    unknown.close(0u32.into(), b"");

    let (_second, known) = accept(&mtus, &server, &client).await;
    assert_eq!(known.stats().path.current_mtu, found.current_mtu);
    let path = settle(&known).await;
    assert_eq!(
        path.sent_plpmtud_probes, 0,
        "nothing left to search: {path:?}"
    );
    assert_eq!(path.current_mtu, found.current_mtu);
}
