//! Real TLS 1.3 handshakes, pumped in memory, between an agent's client config and hubs whose
//! server configs seal tickets with shared keys: the agent resumes on any hub of its store, a
//! restarted one included, and an old ticket costs a full handshake, never a failure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{pinned_client_config, AgentKey, ClientRole, HubPki, HUB_SERVER_NAME};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, HandshakeKind, ServerConnection};
use uuid::Uuid;

use super::{StoreTicketer, TicketKey, TicketKeys};

const ALPN: &[u8] = b"outpost-session/1";

/// A hub's server config with `ticketer`, as `server::start` builds it.
fn hub_config(pki: &HubPki, ticketer: Arc<StoreTicketer>) -> Arc<rustls::ServerConfig> {
    let mut config = pki.server_config(&[ALPN]).unwrap();
    config.ticketer = ticketer;
    Arc::new(config)
}

/// An agent of `pki`'s CA with its client config, kept across reconnects as the agent keeps it.
fn agent(pki: &HubPki) -> (Uuid, Arc<ClientConfig>) {
    let id = Uuid::new_v4();
    let key = AgentKey::generate().unwrap();
    let csr = key.csr_der(id).unwrap();
    let cert = pki
        .issue_client_cert(&ClientRole::Agent(id), &csr, Duration::from_secs(86_400))
        .unwrap();
    let auth = (vec![cert.der], key.private_key_der());
    let (config, _) = pinned_client_config(pki.ca_fingerprint(), Some(auth), &[ALPN]).unwrap();
    (id, Arc::new(config))
}

/// Connect, finish the handshake and hand the ticket to the client; how it went and who the hub
/// saw.
fn connect(client: &Arc<ClientConfig>, hub: &Arc<rustls::ServerConfig>) -> (HandshakeKind, Uuid) {
    let name = ServerName::try_from(HUB_SERVER_NAME).unwrap();
    let mut client = Connection::from(ClientConnection::new(client.clone(), name).unwrap());
    let mut server = Connection::from(ServerConnection::new(hub.clone()).unwrap());
    for _ in 0..10 {
        transfer(&mut client, &mut server);
        transfer(&mut server, &mut client);
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
    let certs = server.peer_certificates().unwrap();
    let ClientRole::Agent(id) = outpost_certs::client_identity(&certs[0]).unwrap().0 else {
        panic!("not an agent");
    };
    (server.handshake_kind().unwrap(), id)
}

fn transfer(from: &mut Connection, to: &mut Connection) {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn shared_keys() -> TicketKeys {
    TicketKeys::new(0, TicketKey::generate).unwrap()
}

fn rotate(keys: &TicketKeys) -> TicketKeys {
    keys.rotated(keys.rotated_at + 1, TicketKey::generate().unwrap())
}

#[test]
fn an_agent_resumes_on_another_hub_of_its_store_and_on_its_own_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let keys = shared_keys();
    let hub1 = hub_config(&pki, Arc::new(StoreTicketer::new(&keys)));
    let hub2 = hub_config(&pki, Arc::new(StoreTicketer::new(&keys)));
    let (id, agent) = agent(&pki);

    assert_eq!(connect(&agent, &hub1), (HandshakeKind::Full, id));
    assert_eq!(connect(&agent, &hub2), (HandshakeKind::Resumed, id));
    // Hub 1 restarts: a new process, a new ticketer on the keys it reads back from the store.
    let restarted = hub_config(&pki, Arc::new(StoreTicketer::new(&keys)));
    assert_eq!(connect(&agent, &restarted), (HandshakeKind::Resumed, id));
}

#[test]
fn a_ticket_from_before_two_rotations_costs_a_full_handshake_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let keys = shared_keys();
    let ticketer = Arc::new(StoreTicketer::new(&keys));
    let hub = hub_config(&pki, ticketer.clone());
    let (id, agent) = agent(&pki);
    assert_eq!(connect(&agent, &hub), (HandshakeKind::Full, id));

    let once = rotate(&keys);
    ticketer.install(&once);
    assert_eq!(connect(&agent, &hub), (HandshakeKind::Resumed, id));

    // That resumption's ticket was sealed with `once.current`, which two rotations retire.
    ticketer.install(&rotate(&rotate(&once)));
    assert_eq!(connect(&agent, &hub), (HandshakeKind::Full, id));
    let counts = &ticketer.counts;
    let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (
            read(&counts.issued),
            read(&counts.opened),
            read(&counts.refused)
        ),
        (3, 1, 1)
    );
}

#[test]
fn a_hub_of_another_store_makes_the_agent_hand_shake_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let ours = hub_config(&pki, Arc::new(StoreTicketer::new(&shared_keys())));
    let theirs = hub_config(&pki, Arc::new(StoreTicketer::new(&shared_keys())));
    let (id, agent) = agent(&pki);
    assert_eq!(connect(&agent, &ours), (HandshakeKind::Full, id));
    assert_eq!(connect(&agent, &theirs), (HandshakeKind::Full, id));
}
