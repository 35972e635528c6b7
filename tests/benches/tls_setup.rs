//! The TLS part of an agent's session set-up, full and resumed: CPU per handshake on the hub's
//! side and the agent's, one core, no network (rustls connections pumped in memory, the hub's
//! and the agent's real configs: P-256 certificates, x25519, the pinned-CA verifier, the hub's
//! store-keyed ticketer). Prints a table; run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench tls_setup -- --handshakes 2000
//! ```
//!
//! A resumed handshake still runs an ECDHE exchange (rustls offers only `psk_dhe_ke`); it skips
//! the hub's signature, the agent's signature and both chain verifications, and the certificates
//! on the wire.
#![allow(clippy::disallowed_methods)] // wall-clock measurement
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_certs::{pinned_client_config, AgentKey, ClientRole, HubPki, HUB_SERVER_NAME};
use outpost_hub::tickets::{StoreTicketer, TicketKey, TicketKeys};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, ServerConfig, ServerConnection,
};

const ALPN: &[u8] = b"outpost-session/1";

fn main() {
    let handshakes: usize = std::env::args()
        .skip_while(|a| a != "--handshakes")
        .nth(1)
        .map_or(2000, |v| v.parse().expect("--handshakes N"));
    let dir = tempfile::tempdir().unwrap();
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let mut hub = pki.server_config(&[ALPN]).unwrap();
    hub.ticketer = Arc::new(StoreTicketer::new(
        &TicketKeys::new(0, TicketKey::generate).unwrap(),
    ));
    hub.send_tls13_tickets = outpost_hub::tickets::TICKETS_PER_HANDSHAKE;
    let hub = Arc::new(hub);
    let agent = agent(&pki, true);
    let no_resumption = agent_without_resumption(&pki);

    let full = measure(&hub, &no_resumption, handshakes, HandshakeKind::Full);
    let resumed = measure(&hub, &agent, handshakes, HandshakeKind::Resumed);
    println!("\nTLS 1.3 set-up, one core, in memory ({handshakes} handshakes each)\n");
    println!("| handshake | hub CPU per set-up | agent CPU per set-up | hub set-ups/s per core | bytes hub→agent / agent→hub |");
    println!("|---|---:|---:|---:|---:|");
    for (name, m) in [("full", &full), ("resumed", &resumed)] {
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} | {} / {} |",
            m.hub.as_secs_f64() * 1e6,
            m.agent.as_secs_f64() * 1e6,
            1.0 / m.hub.as_secs_f64(),
            m.bytes_to_agent,
            m.bytes_to_hub
        );
    }
}

/// An agent's client config with its certificate; `resume` false: no session cache.
fn agent(pki: &HubPki, resume: bool) -> Arc<ClientConfig> {
    let id = uuid::Uuid::new_v4();
    let key = AgentKey::generate().unwrap();
    let csr = key.csr_der(id).unwrap();
    let cert = pki
        .issue_client_cert(&ClientRole::Agent(id), &csr, Duration::from_secs(86_400))
        .unwrap();
    let auth = (vec![cert.der], key.private_key_der());
    let (mut config, _) = pinned_client_config(pki.ca_fingerprint(), Some(auth), &[ALPN]).unwrap();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

fn agent_without_resumption(pki: &HubPki) -> Arc<ClientConfig> {
    agent(pki, false)
}

/// Mean CPU (wall time on one thread) each side spent per handshake, and the bytes each sent.
struct Measured {
    hub: Duration,
    agent: Duration,
    bytes_to_agent: usize,
    bytes_to_hub: usize,
}

fn measure(
    hub: &Arc<ServerConfig>,
    agent: &Arc<ClientConfig>,
    n: usize,
    kind: HandshakeKind,
) -> Measured {
    // One handshake first, so a resuming agent holds a ticket.
    handshake(hub, agent);
    let mut total = Measured {
        hub: Duration::ZERO,
        agent: Duration::ZERO,
        bytes_to_agent: 0,
        bytes_to_hub: 0,
    };
    for _ in 0..n {
        let one = handshake(hub, agent);
        assert_eq!(one.0, kind);
        total.hub += one.1.hub;
        total.agent += one.1.agent;
        total.bytes_to_agent = one.1.bytes_to_agent;
        total.bytes_to_hub = one.1.bytes_to_hub;
    }
    total.hub /= n as u32;
    total.agent /= n as u32;
    total
}

fn handshake(hub: &Arc<ServerConfig>, agent: &Arc<ClientConfig>) -> (HandshakeKind, Measured) {
    let mut m = Measured {
        hub: Duration::ZERO,
        agent: Duration::ZERO,
        bytes_to_agent: 0,
        bytes_to_hub: 0,
    };
    let started = Instant::now();
    let name = ServerName::try_from(HUB_SERVER_NAME).unwrap();
    let mut client = Connection::from(ClientConnection::new(agent.clone(), name).unwrap());
    m.agent += started.elapsed();
    let started = Instant::now();
    let mut server = Connection::from(ServerConnection::new(hub.clone()).unwrap());
    m.hub += started.elapsed();
    for _ in 0..4 {
        let (took, bytes) = transfer(&mut client, &mut server);
        m.hub += took;
        m.bytes_to_hub += bytes;
        let (took, bytes) = transfer(&mut server, &mut client);
        m.agent += took;
        m.bytes_to_agent += bytes;
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
    (server.handshake_kind().unwrap(), m)
}

/// Deliver what `from` has to `to`; the time `from` took to write it is not counted (it was
/// produced in the previous step), the time `to` took to process it is.
fn transfer(from: &mut Connection, to: &mut Connection) -> (Duration, usize) {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let started = Instant::now();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
    (started.elapsed(), bytes.len())
}
